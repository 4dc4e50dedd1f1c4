package offline_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/weirhq/weir/featurestore/offline"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
)

// part is a data part of a table as system.parts lists it.
type part struct {
	Name       string
	Rows       uint64
	Bytes      uint64
	ModifiedAt time.Time
}

// TestInherit adds a feature (a Float64 and a last_n) to a view with
// history: the new version's table starts with the old table's rows, whose
// parts are the old parts (same names, rows and bytes: attached, not
// rewritten), the added features read NaN (empty lists) on them and real
// values on rows written after; the old table and its reads are untouched;
// Inherit refuses a second time and a definition that is not an extension.
func TestInherit(t *testing.T) {
	conn, db := testenv.ClickHouse(t)
	ctx := context.Background()
	old := config.View{Name: "ext", Source: "tx", Entity: "card", TTL: config.Duration(time.Hour),
		Features: []config.Feature{{Name: "n", Agg: "count", Window: config.Duration(time.Hour)}, {Name: "amt", Agg: "last", Field: "amount"},
			{Name: "recent", Agg: "last_n", Field: "amount", N: 2}}}
	cur := old
	cur.Features = slices.Insert(slices.Clone(old.Features), 1, config.Feature{Name: "mx", Agg: "max", Field: "amount", Window: config.Duration(time.Hour)})
	cur.Features = append(cur.Features, config.Feature{Name: "last3", Agg: "last_n", Field: "amount", N: 3})

	so, err := offline.New(conn, db, []config.View{old})
	if err != nil {
		t.Fatal(err)
	}
	if err := so.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	// 600 rows over three months, two inserts: several parts.
	const t0 = 1_767_225_600_000 // 2026-01-01
	row := func(view config.View, i int, mx bool) schemas.FeatureRow {
		r := schemas.FeatureRow{Entity: fmt.Sprintf("c%02d", i%20), View: view.Name, ViewVersion: view.Version(),
			EventTime: t0 + int64(i)*4*3600_000, KnownTime: t0 + int64(i)*4*3600_000 + 5, SourceTopic: "tx", SourceOffset: int64(i), RevisesOffset: -1,
			Values: []schemas.FeatureValue{{Name: "n", Value: float64(i)}, {Name: "amt", Value: float64(i) / 4}, {Name: "recent", Value: 1, List: []float64{float64(i), 1}}}}
		if mx {
			r.Values = append(r.Values, schemas.FeatureValue{Name: "mx", Value: float64(2 * i)}, schemas.FeatureValue{Name: "last3", Value: 3, List: []float64{1, 2, 3}})
		}
		return r
	}
	var batch []schemas.FeatureRow
	for i := range 600 {
		batch = append(batch, row(old, i, false))
		if i == 299 || i == 599 {
			if err := so.Write(ctx, batch); err != nil {
				t.Fatal(err)
			}
			batch = nil
		}
	}
	oldTable, newTable := offline.TableName("ext", old.Version()), offline.TableName("ext", cur.Version())
	readParts := func(table string) []part {
		t.Helper()
		rows, err := conn.Query(ctx, "SELECT name, rows, bytes_on_disk, modification_time FROM system.parts WHERE database = ? AND table = ? AND active ORDER BY name", db, table)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []part
		for rows.Next() {
			var p part
			if err := rows.Scan(&p.Name, &p.Rows, &p.Bytes, &p.ModifiedAt); err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
		return out
	}
	before := readParts(oldTable)
	if len(before) < 3 {
		t.Fatalf("old table has %d parts, want one per month at least: %v", len(before), before)
	}

	sn, err := offline.New(conn, db, []config.View{cur})
	if err != nil {
		t.Fatal(err)
	}
	// Not an extension: a changed feature of the old definition.
	changed := old
	changed.Features = slices.Clone(old.Features)
	changed.Features[1].Agg = "sum"
	if err := sn.Inherit(ctx, changed); !errors.Is(err, offline.ErrNotExtension) {
		t.Errorf("inherit from a definition with a changed feature: %v, want ErrNotExtension", err)
	}
	start := time.Now()
	if err := sn.Inherit(ctx, old); err != nil {
		t.Fatal(err)
	}
	t.Logf("inherited %d parts in %v", len(before), time.Since(start))
	if err := sn.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := sn.Inherit(ctx, old); err == nil {
		t.Error("a second Inherit succeeded; want it refused (the new table exists)")
	}

	// The new table's parts are the old ones: no rewrite for the attach or
	// for the added columns (a mutation would rename them).
	after, oldAfter := readParts(newTable), readParts(oldTable)
	if len(after) != len(before) {
		t.Fatalf("new table parts %v, old %v", after, before)
	}
	for i := range before {
		if after[i].Name != before[i].Name || after[i].Rows != before[i].Rows || after[i].Bytes != before[i].Bytes {
			t.Errorf("part %d: new table %+v, old table %+v", i, after[i], before[i])
		}
		if oldAfter[i] != before[i] {
			t.Errorf("old table part %d changed: %+v, was %+v", i, oldAfter[i], before[i])
		}
	}
	var cols []string
	if err := conn.QueryRow(ctx, "SELECT groupArray(name) FROM system.columns WHERE database = ? AND table = ?", db, newTable).Scan(&cols); err != nil {
		t.Fatal(err)
	}
	if i, j := slices.Index(cols, "mx"), slices.Index(cols, "amt"); i < 0 || j < 0 || i > j {
		t.Errorf("new table columns %v: want mx before amt, in view order", cols)
	}

	// Old rows: NaN and empty lists for the added features, the rest as written.
	var n, nanMx, emptyLast3, amtOK uint64
	if err := conn.QueryRow(ctx, "SELECT count(), countIf(isNaN(mx)), countIf(empty(last3_list)), countIf(amt = source_offset / 4) FROM `"+db+"`.`"+newTable+"`").Scan(&n, &nanMx, &emptyLast3, &amtOK); err != nil {
		t.Fatal(err)
	}
	if n != 600 || nanMx != 600 || emptyLast3 != 600 || amtOK != 600 {
		t.Errorf("inherited rows: %d, NaN mx %d, empty last3 %d, amt as written %d; want 600 each", n, nanMx, emptyLast3, amtOK)
	}
	// New rows carry the added features.
	if err := sn.Write(ctx, []schemas.FeatureRow{row(cur, 600, true)}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := sn.Latest(ctx, "ext", cur.Version(), "c00")
	if err != nil || !ok {
		t.Fatalf("latest: %v %v", ok, err)
	}
	if got.Values["mx"] != 1200 || got.Values["amt"] != 150 {
		t.Errorf("new row read back %+v", got.Values)
	}
	prev, ok, err := sn.LatestKnownAt(ctx, "ext", cur.Version(), "c00", t0+580*4*3600_000+5)
	if err != nil || !ok {
		t.Fatalf("latest known at: %v %v", ok, err)
	}
	if !math.IsNaN(prev.Values["mx"]) || prev.Values["amt"] != 145 {
		t.Errorf("inherited row read back %+v, want mx NaN and amt 145", prev.Values)
	}
	// The old version reads as before.
	if o, ok, err := so.Latest(ctx, "ext", old.Version(), "c00"); err != nil || !ok || o.Values["amt"] != 145 {
		t.Errorf("old version latest %+v %v %v", o, ok, err)
	}
}
