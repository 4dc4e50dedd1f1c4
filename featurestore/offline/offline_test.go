package offline_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/weirhq/weir/featurestore"
	"github.com/weirhq/weir/featurestore/offline"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
)

// Two views: card (a, at: the row's own event time, so a training row shows
// which feature row it used) and velocity (c), with different TTLs.
var views = []config.View{
	{Name: "card", Source: "tx", Entity: "card", TTL: config.Duration(time.Hour),
		Features: []config.Feature{{Name: "a", Agg: "last", Field: "amount"}, {Name: "at", Agg: "max", Field: "ts", Window: config.Duration(time.Minute)}}},
	{Name: "velocity", Source: "tx", Entity: "card", TTL: config.Duration(10 * time.Minute),
		Features: []config.Feature{{Name: "c", Agg: "count", Window: config.Duration(5 * time.Minute)}}},
}

func open(t *testing.T) (*offline.Store, context.Context) {
	t.Helper()
	conn, db := testenv.ClickHouse(t)
	s, err := offline.New(conn, db, views)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 2 { // idempotent
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return s, ctx
}

func TestSchema(t *testing.T) {
	conn, db := testenv.ClickHouse(t)
	s, err := offline.New(conn, db, views)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, "SELECT name, type FROM system.columns WHERE database = ? AND table = ?", db, offline.TableName("card", views[0].Version()))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var n, ty string
		if err := rows.Scan(&n, &ty); err != nil {
			t.Fatal(err)
		}
		got = append(got, n+" "+ty)
	}
	want := []string{"entity String", "event_time DateTime", "event_time_ms Int64", "known_time_ms Int64",
		"source_topic String", "source_partition Int32", "source_offset Int64", "event_id String",
		"window_start_ms Int64", "window_end_ms Int64", "revises_offset Int64",
		"a Float64", "at Float64", "ingested_at DateTime"}
	if !slices.Equal(got, want) {
		t.Errorf("columns\n got %v\nwant %v", got, want)
	}
	if key := sortingKey(t, ctx, conn, db, offline.TableName("card", views[0].Version())); key != wantKey {
		t.Errorf("sorting key %q, want %q", key, wantKey)
	}
}

const wantKey = "entity, event_time_ms, source_partition, source_offset, window_start_ms, revises_offset"

func sortingKey(t *testing.T, ctx context.Context, conn driver.Conn, db, table string) string {
	t.Helper()
	var key string
	if err := conn.QueryRow(ctx, "SELECT sorting_key FROM system.tables WHERE database = ? AND name = ?", db, table).Scan(&key); err != nil {
		t.Fatal(err)
	}
	return key
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name string
		db   string
		v    config.View
		want string
	}{
		{"bad database", "a-b", views[0], "database name"},
		{"bad view name", "db", config.View{Name: "a b"}, "view name"},
		{"feature named like a column", "db", config.View{Name: "v", Features: []config.Feature{{Name: "entity"}}}, `column "entity" of feature entity is already a fixed column`},
		{"feature not an identifier", "db", config.View{Name: "v", Features: []config.Feature{{Name: "x;drop"}}}, "feature name"},
		{"feature named like a list column", "db", config.View{Name: "v", Features: []config.Feature{{Name: "x", Agg: "last_n", N: 3}, {Name: "x_list", Agg: "count"}}}, `column "x_list" of last_n feature x is already feature x_list`},
		{"feature named like a labels column", "db", config.View{Name: "v", Features: []config.Feature{{Name: "x_labels", Agg: "count"}, {Name: "x", Agg: "top_k", K: 3}}}, `column "x_labels" of top_k feature x is already feature x_labels`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := offline.New(nil, tt.db, []config.View{tt.v})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// fixture is a random feature and label history with the awkward cases:
// equal event times, retried duplicates, rows outside TTL, spine rows before
// any feature row, relabelled transactions, and a month boundary.
type fixture struct {
	rows   []schemas.FeatureRow // unique rows
	labels []schemas.Label      // unique labels
}

// base is one hour before a month boundary, so rows span two partitions.
var base = time.Date(2026, 1, 31, 23, 0, 0, 0, time.UTC).UnixMilli()

func newFixture(rng *rand.Rand, entities int) fixture {
	var f fixture
	ver := map[string]string{"card": views[0].Version(), "velocity": views[1].Version()}
	for e := range entities {
		card := fmt.Sprintf("card-%03d", e)
		var off int64 = int64(rng.IntN(100))
		nrows := rng.IntN(12) // some entities have none
		type key struct {
			et       int64
			part     int32
			off, rev int64
		}
		used := map[key]bool{}
		var earlier []key
		for range nrows {
			// Mostly one partition per entity, as the topic is keyed by
			// entity; sometimes another (a repartitioned topic), so that
			// equal event times are also ordered by partition.
			part := int32(e % 4)
			off += 1 + int64(rng.IntN(3))
			rowOff := off
			if rng.IntN(4) == 0 {
				part = (part + 1) % 4
				rowOff = int64(rng.IntN(200)) // another partition's offsets
			}
			// Minutes over 3 hours: many equal event times.
			et := base + int64(rng.IntN(60))*180_000
			kt := et + int64(rng.IntN(600_000))
			rev := int64(-1)
			if len(earlier) > 0 && rng.IntN(4) == 0 {
				// A correction of an earlier row: its event time and
				// partition, revising its offset, known later.
				c := earlier[rng.IntN(len(earlier))]
				et, part, rev = c.et, c.part, featurestore.Revised(c.off, c.rev)
				kt = et + 600_000 + int64(rng.IntN(600_000))
			}
			k := key{et, part, rowOff, rev}
			if used[k] {
				continue // one row per sorting key: any other would be a different row with the same identity
			}
			used[k] = true
			earlier = append(earlier, k)
			for _, view := range []string{"card", "velocity"} {
				if rng.IntN(3) == 0 {
					continue
				}
				r := schemas.FeatureRow{Entity: card, View: view, ViewVersion: ver[view], EventTime: et, KnownTime: kt,
					SourceTopic: "tx", SourcePartition: part, SourceOffset: rowOff, EventID: fmt.Sprintf("ev-%d-%d-%d", e, part, rowOff),
					RevisesOffset: rev}
				if view == "card" {
					r.Values = []schemas.FeatureValue{{Name: "at", Value: float64(et)}, {Name: "a", Value: rng.NormFloat64()}}
				} else {
					r.Values = []schemas.FeatureValue{{Name: "c", Value: float64(rng.IntN(50))}}
				}
				f.rows = append(f.rows, r)
			}
		}
		for k := range rng.IntN(8) {
			// Spine times start an hour before the features: some precede
			// any feature row; with the 10m and 1h TTLs some fall outside.
			et := base - 3_600_000 + int64(rng.IntN(5*3600))*1000
			if last := len(f.rows) - 1; nrows > 0 {
				switch rng.IntN(8) {
				case 0:
					et = f.rows[last].EventTime // equal to a feature row's time
				case 1:
					et = f.rows[last].EventTime + time.Hour.Milliseconds() // at the card TTL
				case 2:
					et = f.rows[last].EventTime + (10 * time.Minute).Milliseconds() // at the velocity TTL
				}
			}
			l := schemas.Label{TxnID: fmt.Sprintf("tx-%d-%d", e, k), CardID: card, EventTime: et,
				LabelTime: et + int64(rng.IntN(3_600_000)), IsFraud: rng.IntN(4) == 0}
			f.labels = append(f.labels, l)
			if rng.IntN(6) == 0 { // relabelled later
				l.LabelTime += 1 + int64(rng.IntN(3_600_000))
				l.IsFraud = !l.IsFraud
				f.labels = append(f.labels, l)
			}
		}
	}
	return f
}

// load writes the fixture in shuffled batches, retrying about a fifth of
// them (a duplicate insert of the same rows).
func (f fixture) load(t *testing.T, ctx context.Context, s *offline.Store, rng *rand.Rand) {
	t.Helper()
	rows := slices.Clone(f.rows)
	rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	for len(rows) > 0 {
		n := min(len(rows), 1+rng.IntN(400))
		for range 1 + bool2int(rng.IntN(5) == 0) {
			if err := s.Write(ctx, rows[:n]); err != nil {
				t.Fatal(err)
			}
		}
		rows = rows[n:]
	}
	labels := slices.Clone(f.labels)
	rng.Shuffle(len(labels), func(i, j int) { labels[i], labels[j] = labels[j], labels[i] })
	for len(labels) > 0 {
		n := min(len(labels), 1+rng.IntN(300))
		for range 1 + bool2int(rng.IntN(4) == 0) {
			if err := s.WriteLabels(ctx, labels[:n]); err != nil {
				t.Fatal(err)
			}
		}
		labels = labels[n:]
	}
}

func bool2int(b bool) int {
	if b {
		return 1
	}
	return 0
}

type want struct {
	entity string
	et     int64
	fraud  bool
	x      []float64
}

// oracle computes the training set by brute force, straight from the
// definition, over the unique rows and labels.
func (f fixture) oracle(spec offline.TrainingSetSpec) map[string]want {
	ttl := map[string]int64{"card": time.Hour.Milliseconds(), "velocity": (10 * time.Minute).Milliseconds()}
	// The newest label of each transaction known at KnownAt.
	type lk struct{ card, txn string }
	newest := map[lk]schemas.Label{}
	for _, l := range f.labels {
		if l.EventTime < spec.Since || spec.Until != 0 && l.EventTime >= spec.Until || spec.KnownAt != 0 && l.LabelTime > spec.KnownAt {
			continue
		}
		if n, ok := newest[lk{l.CardID, l.TxnID}]; !ok || l.LabelTime > n.LabelTime {
			newest[lk{l.CardID, l.TxnID}] = l
		}
	}
	out := map[string]want{}
	for _, l := range newest {
		w := want{entity: l.CardID, et: l.EventTime, fraud: l.IsFraud}
		for _, vr := range spec.Views {
			var best *schemas.FeatureRow
			for i := range f.rows {
				r := &f.rows[i]
				if r.View != vr.View || r.Entity != l.CardID || r.EventTime > l.EventTime || l.EventTime-r.EventTime > ttl[vr.View] ||
					spec.KnownAt != 0 && r.KnownTime > spec.KnownAt {
					continue
				}
				if best == nil || newer(r, best) {
					best = r
				}
			}
			for _, name := range vr.Features {
				v := math.NaN()
				if best != nil {
					for _, fv := range best.Values {
						if fv.Name == name {
							v = fv.Value
						}
					}
				}
				w.x = append(w.x, v)
			}
		}
		out[l.TxnID] = w
	}
	return out
}

// newer reports whether a is newer than b, two rows of one entity: by event
// time, partition, revised offset (the offset a correction revises, or the
// row's own), offset, window start.
func newer(a, b *schemas.FeatureRow) bool {
	ka := []int64{a.EventTime, int64(a.SourcePartition), featurestore.Revised(a.SourceOffset, a.RevisesOffset), a.SourceOffset, a.WindowStart}
	kb := []int64{b.EventTime, int64(b.SourcePartition), featurestore.Revised(b.SourceOffset, b.RevisesOffset), b.SourceOffset, b.WindowStart}
	return slices.Compare(ka, kb) > 0
}

func sameFloat(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }

func TestTrainingSet(t *testing.T) {
	s, ctx := open(t)
	rng := rand.New(rand.NewPCG(7, 11))
	f := newFixture(rng, 300)
	f.load(t, ctx, s, rng)
	t.Logf("fixture: %d unique feature rows, %d unique labels", len(f.rows), len(f.labels))

	all := []offline.ViewRequest{{View: "card", Features: []string{"at", "a"}}, {View: "velocity", Features: []string{"c"}}}
	specs := []struct {
		name string
		spec offline.TrainingSetSpec
	}{
		{"everything", offline.TrainingSetSpec{Views: all}},
		{"time range", offline.TrainingSetSpec{Views: all, Since: base - 600_000, Until: base + 3_600_000}},
		{"known at", offline.TrainingSetSpec{Views: all, KnownAt: base + 5_400_000}},
		{"one view, reversed features", offline.TrainingSetSpec{Views: []offline.ViewRequest{{View: "velocity", Version: views[1].Version()}, {View: "card", Features: []string{"a", "at"}}}, Since: base}},
	}
	for _, sc := range specs {
		t.Run(sc.name, func(t *testing.T) {
			spec := sc.spec
			// The oracle needs the defaulted feature lists.
			for i := range spec.Views {
				if len(spec.Views[i].Features) == 0 {
					j := slices.IndexFunc(views, func(v config.View) bool { return v.Name == spec.Views[i].View })
					for _, ft := range views[j].Features {
						spec.Views[i].Features = append(spec.Views[i].Features, ft.Name)
					}
				}
			}
			wants := f.oracle(spec)
			ts, err := s.TrainingSet(ctx, sc.spec)
			if err != nil {
				t.Fatal(err)
			}
			if len(ts.IDs) != len(wants) {
				t.Errorf("%d rows, oracle has %d", len(ts.IDs), len(wants))
			}
			if len(wants) < 100 {
				t.Fatalf("fixture too small: oracle has %d rows", len(wants))
			}
			seen := map[string]bool{}
			var nan, matched int
			for i, id := range ts.IDs {
				if seen[id] {
					t.Errorf("txn %s twice", id)
				}
				seen[id] = true
				w, ok := wants[id]
				if !ok {
					t.Errorf("txn %s not in the oracle's set", id)
					continue
				}
				if ts.Entities[i] != w.entity || ts.EventTimes[i] != w.et || ts.Y[i] != w.fraud {
					t.Errorf("txn %s: (%s, %d, %v), want (%s, %d, %v)", id, ts.Entities[i], ts.EventTimes[i], ts.Y[i], w.entity, w.et, w.fraud)
				}
				if len(ts.X[i]) != len(w.x) {
					t.Fatalf("txn %s: %d features, want %d", id, len(ts.X[i]), len(w.x))
				}
				for k := range w.x {
					if !sameFloat(ts.X[i][k], w.x[k]) {
						t.Errorf("txn %s feature %s: %v, want %v", id, ts.Description.Features[k], ts.X[i][k], w.x[k])
					}
					if math.IsNaN(w.x[k]) {
						nan++
					} else {
						matched++
					}
				}
			}
			if nan == 0 || matched == 0 {
				t.Errorf("fixture does not exercise both found (%d) and missing (%d) features", matched, nan)
			}

			// Point in time, independently of the oracle: card.at is the
			// event time of the feature row used.
			at := slices.Index(ts.Description.Features, "card.at")
			for i := range ts.IDs {
				if v := ts.X[i][at]; !math.IsNaN(v) && (int64(v) > ts.EventTimes[i] || ts.EventTimes[i]-int64(v) > time.Hour.Milliseconds()) {
					t.Errorf("txn %s at %d used a card row of %d", ts.IDs[i], ts.EventTimes[i], int64(v))
				}
			}

			d := ts.Description
			if d.Rows != len(ts.IDs) || len(d.SQL) != 1+len(spec.Views) || len(d.Views) != len(spec.Views) || d.Since != spec.Since || d.Until != spec.Until || d.KnownAt != spec.KnownAt {
				t.Errorf("description %+v", d)
			}
			if _, err := json.Marshal(d); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestLatest(t *testing.T) {
	s, ctx := open(t)
	rng := rand.New(rand.NewPCG(3, 5))
	f := newFixture(rng, 60)
	f.load(t, ctx, s, rng)

	newest := map[string]schemas.FeatureRow{}
	for _, r := range f.rows {
		if r.View != "card" {
			continue
		}
		n, ok := newest[r.Entity]
		if !ok || newer(&r, &n) {
			newest[r.Entity] = r
		}
	}
	if len(newest) < 20 {
		t.Fatalf("only %d entities with card rows", len(newest))
	}
	for e, w := range newest {
		got, ok, err := s.Latest(ctx, "card", views[0].Version(), e)
		if err != nil {
			t.Fatal(err)
		}
		if !ok || got.EventTime != w.EventTime || got.Offset != w.SourceOffset || got.Partition != w.SourcePartition || got.Revises != w.RevisesOffset ||
			got.KnownTime != w.KnownTime || got.Values["at"] != float64(w.EventTime) || got.Values["a"] != w.Values[1].Value || len(got.Values) != 2 {
			t.Errorf("%s: got %+v (found %v), want %+v", e, got, ok, w)
		}
	}
	if _, ok, err := s.Latest(ctx, "card", views[0].Version(), "nobody"); ok || err != nil {
		t.Errorf("entity without rows: found %v, err %v", ok, err)
	}
	if _, _, err := s.Latest(ctx, "card", "v00000000", "x"); err == nil {
		t.Error("unknown version: no error")
	}
}
