package online_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/featurestore"
	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/featurestore/storetest"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
)

var views = []config.View{
	{Name: "card", TTL: config.Duration(time.Hour)},
	{Name: "merchant", TTL: config.Duration(2 * time.Hour)},
}

// row is a card row of entity e with event time et, offset off and value x.
func row(e string, et, off int64, x float64) schemas.FeatureRow {
	return schemas.FeatureRow{
		Entity: e, View: "card", ViewVersion: "v1", EventTime: et, KnownTime: et + 5,
		SourcePartition: 3, SourceOffset: off, RevisesOffset: -1,
		Values: []schemas.FeatureValue{{Name: "x", Value: x}, {Name: "y", Value: -x}},
	}
}

// TestNewerWins is the online store's conformance table: batches written in
// order, then the value each entity must hold.
func TestNewerWins(t *testing.T) {
	tests := []struct {
		name    string
		batches [][]schemas.FeatureRow
		want    map[string]float64 // entity -> x; absent: not found
	}{
		{"single", [][]schemas.FeatureRow{{row("a", 10, 1, 1)}}, map[string]float64{"a": 1}},
		{"newer event time wins", [][]schemas.FeatureRow{{row("a", 10, 1, 1)}, {row("a", 20, 2, 2)}}, map[string]float64{"a": 2}},
		{"older event time never regresses", [][]schemas.FeatureRow{{row("a", 20, 2, 2)}, {row("a", 10, 9, 1)}}, map[string]float64{"a": 2}},
		{"equal event time, higher offset wins", [][]schemas.FeatureRow{{row("a", 10, 1, 1)}, {row("a", 10, 2, 2)}}, map[string]float64{"a": 2}},
		{"equal event time, lower offset loses", [][]schemas.FeatureRow{{row("a", 10, 2, 2)}, {row("a", 10, 1, 1)}}, map[string]float64{"a": 2}},
		{"replay of the same pair is ignored", [][]schemas.FeatureRow{{row("a", 10, 1, 1)}, {row("a", 10, 1, 7)}}, map[string]float64{"a": 1}},
		{"out of order within a batch", [][]schemas.FeatureRow{{row("a", 30, 3, 3), row("a", 10, 1, 1), row("a", 20, 2, 2)}}, map[string]float64{"a": 3}},
		{"out of order batches", [][]schemas.FeatureRow{{row("a", 20, 2, 2), row("b", 5, 7, 5)}, {row("a", 10, 1, 1), row("b", 6, 8, 6)}, {row("a", 20, 2, 2)}}, map[string]float64{"a": 2, "b": 6}},
		{"entities independent", [][]schemas.FeatureRow{{row("a", 10, 1, 1), row("b", 5, 2, 5)}}, map[string]float64{"a": 1, "b": 5}},
		{"NaN and infinities round trip", [][]schemas.FeatureRow{{row("a", 10, 1, math.NaN()), row("b", 1, 1, math.Inf(-1))}}, map[string]float64{"a": math.NaN(), "b": math.Inf(-1)}},
		{"empty batch", [][]schemas.FeatureRow{{}}, map[string]float64{}},
	}
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := online.New(rdb, fmt.Sprintf("%s:%d", prefix, i), views)
			var last map[string]schemas.FeatureRow = map[string]schemas.FeatureRow{}
			for _, b := range tt.batches {
				if err := s.Write(ctx, b); err != nil {
					t.Fatal(err)
				}
				for _, r := range b {
					if l, ok := last[r.Entity]; !ok || r.EventTime > l.EventTime || r.EventTime == l.EventTime && r.SourceOffset > l.SourceOffset {
						last[r.Entity] = r
					}
				}
			}
			for _, e := range []string{"a", "b", "c"} {
				got, ok, err := s.Get(ctx, "card", "v1", e)
				if err != nil {
					t.Fatal(err)
				}
				want, wantOK := tt.want[e]
				if ok != wantOK {
					t.Fatalf("entity %s: found %v, want %v", e, ok, wantOK)
				}
				if !ok {
					continue
				}
				if x := got.Values["x"]; !(x == want || math.IsNaN(x) && math.IsNaN(want)) {
					t.Errorf("entity %s: x = %v, want %v", e, x, want)
				}
				if y, x := got.Values["y"], got.Values["x"]; !(y == -x || math.IsNaN(x) && math.IsNaN(y)) {
					t.Errorf("entity %s: y = %v, not from the same row as x = %v", e, y, x)
				}
				l := last[e]
				if got.EventTime != l.EventTime || got.Offset != l.SourceOffset || got.Partition != 3 || got.KnownTime != l.EventTime+5 || len(got.Values) != 2 {
					t.Errorf("entity %s: metadata %+v, want event time %d offset %d", e, got, l.EventTime, l.SourceOffset)
				}
			}
		})
	}
}

// TestConformance writes every storetest case and checks the row each
// entity holds.
func TestConformance(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	conformance(t, online.New(rdb, prefix, views))
}

// conformance runs the storetest cases on s.
func conformance(t *testing.T, s *online.Store) {
	ctx := context.Background()
	for _, c := range storetest.Cases(func(name string) string { return name }) {
		t.Run(c.Name, func(t *testing.T) {
			var entity string
			for _, b := range c.Batches {
				if err := s.Write(ctx, b); err != nil {
					t.Fatal(err)
				}
				entity = b[0].Entity
			}
			got, ok, err := s.Get(ctx, "card", "v1", entity)
			if err != nil || !ok {
				t.Fatalf("found %v, err %v", ok, err)
			}
			if got.Values["x"] != c.Newest || got.Values["y"] != -c.Newest {
				t.Errorf("holds x = %v, y = %v (%+v), want x = %v", got.Values["x"], got.Values["y"], got, c.Newest)
			}
			// The metadata is the newest row's.
			for _, b := range c.Batches {
				for _, r := range b {
					if r.Values[0].Value != c.Newest {
						continue
					}
					if got.EventTime != r.EventTime || got.Offset != r.SourceOffset || got.Revises != r.RevisesOffset ||
						got.WindowStart != r.WindowStart || got.WindowEnd != r.WindowEnd || got.KnownTime != r.KnownTime || got.Partition != r.SourcePartition {
						t.Errorf("metadata %+v, want that of %+v", got, r)
					}
				}
			}
		})
	}
}

// TestMetadataFields checks the hash's optional fields: _rev only for a
// correction, _ws and _we only for a windowed row, and that a hash written
// before they existed reads as a first version of a sliding row and is
// replaced by its correction.
func TestMetadataFields(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	s := online.New(rdb, prefix, views)
	fields := func(e string) map[string]string {
		t.Helper()
		h, err := rdb.HGetAll(ctx, online.RedisKey(prefix, online.Key{View: "card", Version: "v1", Entity: e})).Result()
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	rows := []schemas.FeatureRow{
		storetest.Row("sliding", 10, 1, -1, 0, 0, 100, 1),
		storetest.Row("corrected", 10, 4, 1, 0, 0, 100, 1),
		storetest.Row("windowed", 59, 4, -1, 0, 60, 100, 1),
	}
	if err := s.Write(ctx, rows); err != nil {
		t.Fatal(err)
	}
	for e, want := range map[string]string{"sliding": "_et _kt _off _part x y", "corrected": "_et _kt _off _part _rev x y", "windowed": "_et _kt _off _part _we _ws x y"} {
		var names []string
		for n := range fields(e) {
			names = append(names, n)
		}
		slices.Sort(names)
		if got := strings.Join(names, " "); got != want {
			t.Errorf("%s: fields %s, want %s", e, got, want)
		}
	}
	if got, _, _ := s.Get(ctx, "card", "v1", "windowed"); got.WindowStart != 0 || got.WindowEnd != 60 || got.Revises != -1 {
		t.Errorf("windowed row read back as %+v", got)
	}
	if got, _, _ := s.Get(ctx, "card", "v1", "corrected"); got.Revises != 1 || got.WindowEnd != 0 {
		t.Errorf("correction read back as %+v", got)
	}

	// A hash in the format before corrections were stored.
	key := online.RedisKey(prefix, online.Key{View: "card", Version: "v1", Entity: "old"})
	if err := rdb.HSet(ctx, key, "_et", "20", "_off", "2", "_part", "3", "_kt", "100", "x", "2", "y", "-2").Err(); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := s.Get(ctx, "card", "v1", "old"); err != nil || !ok || got.Revises != -1 || got.WindowStart != 0 || got.Values["x"] != 2 {
		t.Fatalf("old hash read as %+v (found %v, err %v)", got, ok, err)
	}
	if err := s.Write(ctx, []schemas.FeatureRow{storetest.Row("old", 20, 1, -1, 0, 0, 100, 9), storetest.Row("old", 20, 5, 2, 0, 0, 200, 3)}); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Get(ctx, "card", "v1", "old"); got.Values["x"] != 3 || got.Revises != 2 || got.Offset != 5 {
		t.Errorf("old hash after its correction: %+v, want x = 3 revising offset 2", got)
	}
	// A first version replacing a correction drops _rev.
	if err := s.Write(ctx, []schemas.FeatureRow{storetest.Row("corrected", 11, 5, -1, 0, 0, 100, 2)}); err != nil {
		t.Fatal(err)
	}
	if _, ok := fields("corrected")["_rev"]; ok {
		t.Error("_rev left behind by a newer first version")
	}
}

// TestRandomReplay writes a random history with corrections and
// duplicates, in shuffled batches of random sizes, and compares every key
// with the newest row by featurestore.Compare.
func TestRandomReplay(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	s := online.New(rdb, prefix, views)
	rng := rand.New(rand.NewPCG(1, 2))

	var rows []schemas.FeatureRow
	for e := range 50 {
		ent := fmt.Sprintf("card-%d", e)
		var off int64
		var earlier []schemas.FeatureRow
		for range 1 + rng.IntN(20) {
			off += 1 + rng.Int64N(3)
			r := row(ent, rng.Int64N(5), off, rng.Float64()) // few event times: many ties
			if rng.IntN(3) == 0 {
				r.View, r.ViewVersion = "merchant", "v9"
			}
			if len(earlier) > 0 && rng.IntN(3) == 0 {
				// A correction of an earlier row, caused by this offset.
				c := earlier[rng.IntN(len(earlier))]
				r.EventTime, r.View, r.ViewVersion = c.EventTime, c.View, c.ViewVersion
				r.RevisesOffset = featurestore.Revised(c.SourceOffset, c.RevisesOffset)
			}
			earlier = append(earlier, r)
			rows = append(rows, r)
			if rng.IntN(4) == 0 {
				rows = append(rows, r) // duplicate delivery
			}
		}
	}
	newest := map[online.Key]schemas.FeatureRow{}
	for _, r := range rows {
		k := online.Key{View: r.View, Version: r.ViewVersion, Entity: r.Entity}
		if n, ok := newest[k]; !ok || featurestore.Compare(featurestore.RankOf(&r), featurestore.RankOf(&n)) > 0 {
			newest[k] = r
		}
	}
	rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	for len(rows) > 0 {
		n := min(len(rows), 1+rng.IntN(40))
		if err := s.Write(ctx, rows[:n]); err != nil {
			t.Fatal(err)
		}
		rows = rows[n:]
	}

	keys := []online.Key{{View: "card", Version: "v1", Entity: "nobody"}}
	for k := range newest {
		keys = append(keys, k)
	}
	got, found, err := s.GetMany(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	if found[0] {
		t.Errorf("found a row for an entity never written: %+v", got[0])
	}
	for i, k := range keys[1:] {
		i++
		want := newest[k]
		if !found[i] {
			t.Errorf("%+v: not found", k)
			continue
		}
		g := got[i]
		if g.Entity != k.Entity || g.View != k.View || g.Version != k.Version || g.Revises != want.RevisesOffset ||
			g.EventTime != want.EventTime || g.Offset != want.SourceOffset || g.Values["x"] != want.Values[0].Value {
			t.Errorf("%+v: got %+v, want event time %d offset %d x %v", k, g, want.EventTime, want.SourceOffset, want.Values[0].Value)
		}
	}
}

// TestTTL checks that every applied write sets the view's TTL, that stale
// writes leave the key alone, and that a key expires.
func TestTTL(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	short := []config.View{{Name: "card", TTL: config.Duration(300 * time.Millisecond)}, {Name: "merchant", TTL: config.Duration(2 * time.Hour)}}
	s := online.New(rdb, prefix, short)

	m := row("m1", 10, 1, 1)
	m.View = "merchant"
	if err := s.Write(ctx, []schemas.FeatureRow{m}); err != nil {
		t.Fatal(err)
	}
	key := online.RedisKey(prefix, online.Key{View: "merchant", Version: "v1", Entity: "m1"})
	ttl, err := rdb.PTTL(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= time.Hour || ttl > 2*time.Hour {
		t.Errorf("merchant key TTL %v, want close to 2h", ttl)
	}
	// A stale write neither changes the value nor the TTL.
	if err := rdb.PExpire(ctx, key, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	old := row("m1", 5, 1, 9)
	old.View = "merchant"
	if err := s.Write(ctx, []schemas.FeatureRow{old}); err != nil {
		t.Fatal(err)
	}
	if ttl, _ := rdb.PTTL(ctx, key).Result(); ttl > time.Hour {
		t.Errorf("a stale write reset the TTL to %v", ttl)
	}

	if err := s.Write(ctx, []schemas.FeatureRow{row("c1", 10, 1, 1)}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Get(ctx, "card", "v1", "c1"); err != nil || !ok {
		t.Fatalf("card row right after writing: found %v, err %v", ok, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, ok, err := s.Get(ctx, "card", "v1", "c1")
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("card row did not expire after its 300ms TTL")
		}
		time.Sleep(50 * time.Millisecond) // waiting on Redis's clock, not ours
	}
}

func TestWriteRejects(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	s := online.New(rdb, prefix, views)
	ctx := context.Background()
	unknown := row("a", 1, 1, 1)
	unknown.View = "nope"
	if err := s.Write(ctx, []schemas.FeatureRow{unknown}); !errors.Is(err, online.ErrUnknownView) {
		t.Errorf("unknown view: err %v, want ErrUnknownView", err)
	}
	reserved := row("a", 1, 1, 1)
	reserved.Values[0].Name = "_et"
	if err := s.Write(ctx, []schemas.FeatureRow{reserved}); !errors.Is(err, online.ErrReservedName) {
		t.Errorf("reserved name: err %v, want ErrReservedName", err)
	}
}

// TestScans checks SampleEntities, CountKeys and DeleteAll on one node,
// under a prefix with SCAN pattern characters, beside a sibling prefix they
// must not touch.
func TestScans(t *testing.T) {
	rdb, base := testenv.Redis(t)
	ctx := context.Background()
	prefix, sibling := base+":p[1]*?", base+":p[1]*?x"
	s, other := online.New(rdb, prefix, views), online.New(rdb, sibling, views)
	var rows []schemas.FeatureRow
	for i := range 2500 {
		r := row(fmt.Sprintf("e%04d", i), 10, int64(i), 1)
		if i%5 == 0 {
			r.ViewVersion = "v2" // an older definition's key
		}
		rows = append(rows, r)
	}
	for _, st := range []*online.Store{s, other} {
		if err := st.Write(ctx, rows); err != nil {
			t.Fatal(err)
		}
	}
	sample, err := s.SampleEntities(ctx, "card", "v2", 10_000)
	if err != nil {
		t.Fatal(err)
	}
	if len(sample) != 500 || !strings.HasPrefix(sample[0], "e") {
		t.Errorf("sampled %d entities of v2 (%.3q), want 500", len(sample), sample)
	}
	if sample, _ := s.SampleEntities(ctx, "card", "v1", 7); len(sample) != 7 {
		t.Errorf("sampled %d entities, asked for 7", len(sample))
	}
	kc, err := s.CountKeys(ctx, "card", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !kc.Complete || kc.Versions["v1"] != 2000 || kc.Versions["v2"] != 500 || len(kc.Versions) != 2 {
		t.Errorf("CountKeys = %+v, want v1: 2000, v2: 500", kc)
	}
	if kc, _ := s.CountKeys(ctx, "card", 1000); kc.Complete {
		t.Errorf("a scan of a budget of 1000 keys counted everything: %+v", kc)
	}
	n, err := s.DeleteAll(ctx)
	if err != nil || n != 2500 {
		t.Fatalf("DeleteAll deleted %d keys (%v), want 2500", n, err)
	}
	if kc, _ := other.CountKeys(ctx, "card", 0); kc.Versions["v1"] != 2000 {
		t.Errorf("the sibling prefix lost keys: %+v", kc)
	}
}
