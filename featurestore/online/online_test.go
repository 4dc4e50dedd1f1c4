package online_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/weirhq/weir/featurestore/online"
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
		SourcePartition: 3, SourceOffset: off,
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

// TestRandomReplay writes a random history with duplicates, in shuffled
// batches of random sizes, and compares every key with the newest row by
// (event time, offset), computed here.
func TestRandomReplay(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	s := online.New(rdb, prefix, views)
	rng := rand.New(rand.NewPCG(1, 2))

	var rows []schemas.FeatureRow
	for e := range 50 {
		ent := fmt.Sprintf("card-%d", e)
		var off int64
		for range 1 + rng.IntN(20) {
			off += 1 + rng.Int64N(3)
			r := row(ent, rng.Int64N(5), off, rng.Float64()) // few event times: many ties
			if rng.IntN(3) == 0 {
				r.View, r.ViewVersion = "merchant", "v9"
			}
			rows = append(rows, r)
			if rng.IntN(4) == 0 {
				rows = append(rows, r) // duplicate delivery
			}
		}
	}
	newest := map[online.Key]schemas.FeatureRow{}
	for _, r := range rows {
		k := online.Key{View: r.View, Version: r.ViewVersion, Entity: r.Entity}
		if n, ok := newest[k]; !ok || r.EventTime > n.EventTime || r.EventTime == n.EventTime && r.SourceOffset > n.SourceOffset {
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
		if g.Entity != k.Entity || g.View != k.View || g.Version != k.Version ||
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
