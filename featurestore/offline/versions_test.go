package offline_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir/featurestore/offline"
	"github.com/weirhq/weir/featurestore/storetest"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
)

// conf is the view of the storetest rows (features x and y), plus a last_n
// and a top_k feature.
var conf = config.View{Name: "conf", Source: "tx", Entity: "card", TTL: config.Duration(time.Hour),
	Features: []config.Feature{{Name: "x", Agg: "last", Field: "amount"}, {Name: "y", Agg: "min", Field: "amount", Window: config.Duration(time.Minute)},
		{Name: "recent", Agg: "last_n", Field: "amount", N: 3}, {Name: "top", Agg: "top_k", Field: "merchant", K: 2}}}

// TestConformance writes every storetest case, one entity each, with every
// batch written twice (a retried insert), and checks each read path: Latest,
// LatestKnownAt, the training set (a label at the newest row's event time),
// and that a merge keeps every distinct version.
func TestConformance(t *testing.T) {
	conn, db := testenv.ClickHouse(t)
	s, err := offline.New(conn, db, []config.View{conf})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	version := conf.Version()
	// Event times of the cases are tiny: put them in 2026.
	const t0 = 1_767_225_600_000
	cases := storetest.Cases(func(name string) string { return strings.ReplaceAll(name, " ", "_") })
	distinct := 0
	var labels []schemas.Label
	for _, c := range cases {
		keys := map[string]bool{}
		var maxET int64
		for _, b := range c.Batches {
			for i := range b {
				r := &b[i]
				r.View, r.ViewVersion = conf.Name, version
				r.EventTime += t0
				r.KnownTime += t0
				if r.WindowEnd != 0 {
					r.WindowStart += t0
					r.WindowEnd += t0
				}
				keys[fmt.Sprint(r.EventTime, r.SourcePartition, r.SourceOffset, r.WindowStart, r.RevisesOffset)] = true
				maxET = max(maxET, r.EventTime)
			}
			for range 2 {
				if err := s.Write(ctx, b); err != nil {
					t.Fatal(err)
				}
			}
		}
		distinct += len(keys)
		// Labelled at the newest event time, the label known before
		// every row.
		labels = append(labels, schemas.Label{TxnID: c.Batches[0][0].Entity, CardID: c.Batches[0][0].Entity, EventTime: maxET, LabelTime: t0})
	}
	if err := s.WriteLabels(ctx, labels); err != nil {
		t.Fatal(err)
	}

	sets := map[int64]map[string]float64{}
	training := func(knownAt int64) map[string]float64 {
		t.Helper()
		if set, ok := sets[knownAt]; ok {
			return set
		}
		ts, err := s.TrainingSet(ctx, offline.TrainingSetSpec{Views: []offline.ViewRequest{{View: conf.Name, Features: []string{"x", "y"}}}, KnownAt: knownAt})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for i, id := range ts.IDs {
			if ts.X[i][1] != -ts.X[i][0] {
				t.Errorf("%s: training row mixes rows: x %v, y %v", id, ts.X[i][0], ts.X[i][1])
			}
			out[id] = ts.X[i][0]
		}
		sets[knownAt] = out
		return out
	}
	now := training(0)
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			e := c.Batches[0][0].Entity
			got, ok, err := s.Latest(ctx, conf.Name, version, e)
			if err != nil || !ok {
				t.Fatalf("Latest: found %v, err %v", ok, err)
			}
			if got.Values["x"] != c.Newest || got.Values["y"] != -c.Newest {
				t.Errorf("Latest: x = %v, y = %v (%+v), want x = %v", got.Values["x"], got.Values["y"], got, c.Newest)
			}
			if x := now[e]; x != c.Newest {
				t.Errorf("training set: x = %v, want %v", x, c.Newest)
			}
			for k, want := range c.KnownAt {
				got, ok, err := s.LatestKnownAt(ctx, conf.Name, version, e, t0+k)
				if err != nil || !ok {
					t.Fatalf("LatestKnownAt(%d): found %v, err %v", k, ok, err)
				}
				if got.Values["x"] != want {
					t.Errorf("LatestKnownAt(%d): x = %v, want %v", k, got.Values["x"], want)
				}
				if x, ok := training(t0 + k)[e]; !ok || x != want {
					t.Errorf("training set known at %d: x = %v (row %v), want %v", k, x, ok, want)
				}
			}
		})
	}

	// A merge collapses the retried inserts and nothing else.
	table := "`" + db + "`." + offline.TableName(conf.Name, version)
	if err := conn.Exec(ctx, "OPTIMIZE TABLE "+table+" FINAL"); err != nil {
		t.Fatal(err)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if int(n) != distinct {
		t.Errorf("after OPTIMIZE FINAL: %d rows, want the %d distinct versions", n, distinct)
	}
}

// TestListsAndLabels checks that last_n lists, top_k labels and the window
// bounds round-trip, and that a missing feature reads as NaN and empty
// arrays.
func TestListsAndLabels(t *testing.T) {
	conn, db := testenv.ClickHouse(t)
	s, err := offline.New(conn, db, []config.View{conf})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	r := storetest.Row("c1", base, 7, 3, base-60_000, base+1, base+5, 2)
	r.View, r.ViewVersion = conf.Name, conf.Version()
	r.Values = append(r.Values, schemas.FeatureValue{Name: "recent", Value: 2, List: []float64{2, 1.5, -3}},
		schemas.FeatureValue{Name: "top", Value: 2, Labels: []string{"shop", "café"}})
	r2 := storetest.Row("c2", base, 7, -1, 0, 0, base+5, 2)
	r2.View, r2.ViewVersion = conf.Name, conf.Version()
	if err := s.Write(ctx, []schemas.FeatureRow{r, r2}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Latest(ctx, conf.Name, conf.Version(), "c1")
	if err != nil || !ok {
		t.Fatalf("found %v, err %v", ok, err)
	}
	if !slices.Equal(got.Lists["recent"], []float64{2, 1.5, -3}) || !slices.Equal(got.Labels["top"], []string{"shop", "café"}) ||
		got.Values["recent"] != 2 || got.Values["top"] != 2 || got.Revises != 3 || got.WindowStart != base-60_000 || got.WindowEnd != base+1 {
		t.Errorf("got %+v", got)
	}
	got, _, err = s.Latest(ctx, conf.Name, conf.Version(), "c2")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Lists["recent"]) != 0 || len(got.Labels["top"]) != 0 || got.Values["recent"] == got.Values["recent"] || got.Revises != -1 || got.WindowEnd != 0 {
		t.Errorf("row without the array features: got %+v", got)
	}
}

// TestMigrateUpgrade creates a table in the layout before window bounds,
// revisions and arrays were stored, with a row in it, and upgrades it from
// two stores at once: the table gets the current columns (in the fresh
// table's order) and sorting key, the old row reads as a first version, and
// its correction is a row of its own that Latest prefers.
func TestMigrateUpgrade(t *testing.T) {
	conn, db := testenv.ClickHouse(t)
	ctx := context.Background()
	table := offline.TableName(conf.Name, conf.Version())
	qualified := "`" + db + "`.`" + table + "`"
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS `" + db + "`",
		"CREATE TABLE " + qualified + ` (
  entity String, event_time DateTime, event_time_ms Int64, known_time_ms Int64,
  source_topic String, source_partition Int32, source_offset Int64, event_id String,
  x Float64, y Float64, recent Float64, top Float64,
  ingested_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree PARTITION BY toYYYYMM(event_time)
ORDER BY (entity, event_time_ms, source_partition, source_offset)`,
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+qualified+" (entity, event_time, event_time_ms, known_time_ms, source_topic, source_partition, source_offset, event_id, x, y, recent, top)")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Append("c1", time.UnixMilli(base), base, base+5, "tx", int32(3), int64(2), "ev", 1.0, -1.0, 0.0, 0.0); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	stores := make([]*offline.Store, 2)
	for i := range stores {
		s, err := offline.New(conn, db, []config.View{conf})
		if err != nil {
			t.Fatal(err)
		}
		stores[i] = s
		wg.Go(func() {
			if err := s.Migrate(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := stores[0].Migrate(ctx); err != nil { // idempotent after the upgrade
		t.Fatal(err)
	}

	fresh, freshDB := testenv.ClickHouse(t)
	fs, err := offline.New(fresh, freshDB, []config.View{conf})
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	columns := func(db string) string {
		t.Helper()
		rows, err := conn.Query(ctx, "SELECT name, type, default_kind FROM system.columns WHERE database = ? AND table = ?", db, table)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var cols []string
		for rows.Next() {
			var n, ty, dk string
			if err := rows.Scan(&n, &ty, &dk); err != nil {
				t.Fatal(err)
			}
			cols = append(cols, strings.TrimSpace(n+" "+ty+" "+dk))
		}
		return strings.Join(cols, ", ")
	}
	if got, want := columns(db), columns(freshDB); got != want {
		t.Errorf("upgraded columns\n%s\nfresh table's\n%s", got, want)
	}
	if key := sortingKey(t, ctx, conn, db, table); key != wantKey {
		t.Errorf("upgraded sorting key %q, want %q", key, wantKey)
	}

	s := stores[0]
	got, ok, err := s.Latest(ctx, conf.Name, conf.Version(), "c1")
	if err != nil || !ok || got.Revises != -1 || got.WindowStart != 0 || got.WindowEnd != 0 || got.Values["x"] != 1 {
		t.Fatalf("old row: %+v (found %v, err %v), want a first version of a sliding row", got, ok, err)
	}
	c := storetest.Row("c1", base, 9, 2, 0, 0, base+50, 4)
	c.View, c.ViewVersion = conf.Name, conf.Version()
	if err := s.Write(ctx, []schemas.FeatureRow{c}); err != nil {
		t.Fatal(err)
	}
	if err := conn.Exec(ctx, "OPTIMIZE TABLE "+qualified+" FINAL"); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.Latest(ctx, conf.Name, conf.Version(), "c1"); got.Values["x"] != 4 || got.Revises != 2 {
		t.Errorf("after the correction: %+v, want x = 4 revising offset 2", got)
	}
	if got, _, _ := s.LatestKnownAt(ctx, conf.Name, conf.Version(), "c1", base+10); got.Values["x"] != 1 {
		t.Errorf("as known before the correction: %+v, want the old row", got)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+qualified).Scan(&n); err != nil || n != 2 {
		t.Errorf("%d rows after OPTIMIZE FINAL (err %v), want the old row and its correction", n, err)
	}
}
