package verify_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir/featurestore"
	"github.com/weirhq/weir/featurestore/offline"
	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/featurestore/verify"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
)

var view = config.View{Name: "card", Source: "tx", Entity: "card", TTL: config.Duration(time.Hour),
	Features: []config.Feature{{Name: "n", Agg: "count", Window: config.Duration(time.Hour)}, {Name: "amt", Agg: "last", Field: "amount"}}}

func row(e string, et, off, rev, kt int64, n, amt float64) schemas.FeatureRow {
	return schemas.FeatureRow{Entity: e, View: view.Name, ViewVersion: view.Version(), EventTime: et, KnownTime: kt,
		SourceTopic: "tx", SourcePartition: 1, SourceOffset: off, RevisesOffset: rev, EventID: fmt.Sprint("ev", off),
		Values: []schemas.FeatureValue{{Name: "n", Value: n}, {Name: "amt", Value: amt}}}
}

// onlineHook runs after once, after the first GetMany returned.
type onlineHook struct {
	verify.Online
	once  sync.Once
	after func()
}

func (h *onlineHook) GetMany(ctx context.Context, keys []online.Key) ([]featurestore.Row, []bool, error) {
	rows, found, err := h.Online.GetMany(ctx, keys)
	h.once.Do(h.after)
	return rows, found, err
}

// TestVerify writes the same history (with corrections, duplicates and a
// row that lacks a feature) to Redis and ClickHouse and checks that verify
// finds them equal; then it breaks one entity in each way verify knows and
// checks each is reported, with both values, and that a mismatch repaired
// before the recheck is not.
func TestVerify(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	conn, db := testenv.ClickHouse(t)
	ctx := context.Background()
	views := []config.View{view}
	on := online.New(rdb, prefix, views)
	off, err := offline.New(conn, db, views)
	if err != nil {
		t.Fatal(err)
	}
	if err := off.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	var rows []schemas.FeatureRow
	for e := range 40 {
		ent := fmt.Sprintf("card-%02d", e)
		for k := range 5 {
			et := now - int64(10-k)*1000
			rows = append(rows, row(ent, et, int64(100*e+k), -1, now-100+int64(k), float64(k+1), float64(e*10+k)))
		}
		if e%4 == 0 { // a correction of the newest row, and a duplicate
			c := row(ent, now-6000, int64(100*e+7), int64(100*e+4), now-50, 99, -1)
			rows = append(rows, c, c)
		}
	}
	partial := row("partial", now, 1, -1, now, 1, 0)
	partial.Values = partial.Values[:1] // no amt: absent in Redis, NaN in ClickHouse
	rows = append(rows, partial)
	if err := on.Write(ctx, rows); err != nil {
		t.Fatal(err)
	}
	if err := off.Write(ctx, rows); err != nil {
		t.Fatal(err)
	}
	// Known two TTLs ago, in ClickHouse only: the key may rightly be gone.
	if err := off.Write(ctx, []schemas.FeatureRow{row("old", now-3*3600_000, 5, -1, now-2*3600_000, 1, 1)}); err != nil {
		t.Fatal(err)
	}

	cfg := verify.Config{Views: views, Sample: 100, Seed: 7}
	rep, err := verify.Run(ctx, cfg, on, off)
	if err != nil {
		t.Fatal(err)
	}
	v := rep.Views[0]
	if rep.Mismatches() != 0 || v.Counts[verify.Match] != 41 || v.Counts[verify.Expired] != 1 || v.Checked() != 42 {
		t.Fatalf("consistent stores: counts %v, mismatches %+v", v.Counts, v.Mismatches)
	}

	// Break five entities, one way each.
	key := func(e string) string {
		return online.RedisKey(prefix, online.Key{View: view.Name, Version: view.Version(), Entity: e})
	}
	if err := rdb.HSet(ctx, key("card-03"), "amt", "999").Err(); err != nil { // a corrupted value
		t.Fatal(err)
	}
	if err := rdb.Del(ctx, key("card-04")).Err(); err != nil { // a lost key
		t.Fatal(err)
	}
	if err := on.Write(ctx, []schemas.FeatureRow{row("ghost", now, 1, -1, now, 1, 1)}); err != nil { // never reached ClickHouse
		t.Fatal(err)
	}
	if err := on.Write(ctx, []schemas.FeatureRow{row("card-05", now+1000, 900, -1, now, 7, 7)}); err != nil { // offline behind
		t.Fatal(err)
	}
	if err := off.Write(ctx, []schemas.FeatureRow{row("card-06", now+1000, 900, -1, now, 7, 7)}); err != nil { // online behind
		t.Fatal(err)
	}
	if err := rdb.HSet(ctx, key("card-07"), "n", "-1").Err(); err != nil { // repaired before the recheck
		t.Fatal(err)
	}
	repair := func() {
		if err := rdb.HSet(ctx, key("card-07"), "n", "5").Err(); err != nil {
			t.Error(err)
		}
	}
	cfg.Recheck = 10 * time.Millisecond
	rep, err = verify.Run(ctx, cfg, &onlineHook{Online: on, after: repair}, off)
	if err != nil {
		t.Fatal(err)
	}
	v = rep.Views[0]
	got := map[string]verify.Result{}
	for _, m := range v.Mismatches {
		got[m.Entity] = m
	}
	want := map[string]verify.Kind{"card-03": verify.ValuesDiffer, "card-04": verify.MissingOnline, "ghost": verify.MissingOffline,
		"card-05": verify.OnlineAhead, "card-06": verify.OnlineBehind}
	for e, k := range want {
		if got[e].Kind != k {
			t.Errorf("%s: %q, want %q (%+v)", e, got[e].Kind, k, got[e])
		}
	}
	if len(got) != len(want) {
		t.Errorf("mismatches %v, want %v", slices.Sorted(maps.Keys(got)), want)
	}
	if d := got["card-03"].Diffs; len(d) != 1 || d[0] != (verify.Diff{Field: "amt", Online: "999", Offline: "34"}) {
		t.Errorf("card-03 diffs %+v, want amt 999 online, 34 offline", d)
	}
	if r := got["card-04"]; r.Online != nil || r.Offline == nil || r.Offline.Values["amt"] != -1 {
		t.Errorf("card-04: %+v", r)
	}
	if r := got["card-05"]; r.Online.Offset != 900 || r.Offline.Offset != 504 {
		t.Errorf("card-05 rows: online %+v, offline %+v", r.Online, r.Offline)
	}
	if v.Counts[verify.Match] != 37 || v.Checked() != 43 {
		t.Errorf("counts %v, want 37 matches of 43", v.Counts)
	}
}
