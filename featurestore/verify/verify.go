// Package verify checks that the online store serves what the offline
// store's history says it should: for a sample of entities of every view
// version, the row Redis holds must be the newest row ClickHouse holds, by
// featurestore.Compare, with the same values and metadata.
//
// Entities are sampled from both stores, so that a key missing from Redis
// and a row missing from ClickHouse are both found: up to Sample entities
// from the offline table (a pseudo-random choice fixed by Seed) and up to
// Sample from a scan of the online keys (Redis's hash order). Each entity
// gets one of these outcomes:
//
//   - match: the same version (event time, revised offset, source offset,
//     window start) with the same known time, partition, window end and
//     values; a feature absent from the Redis hash matches NaN in
//     ClickHouse, and last_n lists and top_k labels (not kept in Redis) are
//     not compared;
//   - expired: no Redis key, and the newest offline row was known more than
//     the view's TTL ago, so its key may rightly have expired;
//   - missing_online, missing_offline: one store has a row, the other none;
//   - online_behind, online_ahead: Redis holds an older or newer version
//     than ClickHouse's newest (a materializer behind the other, or a lost
//     write);
//   - values_differ: the same version with other values or metadata.
//
// The last four are mismatches. In a running system one materializer may
// be a moment behind the other, so Recheck reads a mismatched entity again
// after a pause; only an entity that mismatches both times is reported.
//
// This package exports no metrics.
package verify

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/weirhq/weir/featurestore"
	"github.com/weirhq/weir/featurestore/offline"
	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/internal/config"
)

// Online is what verify reads of the online store.
type Online interface {
	GetMany(ctx context.Context, keys []online.Key) ([]featurestore.Row, []bool, error)
	SampleEntities(ctx context.Context, view, version string, n int) ([]string, error)
}

// Offline is what verify reads of the offline store.
type Offline interface {
	Latest(ctx context.Context, view, version, entity string) (featurestore.Row, bool, error)
	SampleEntities(ctx context.Context, view, version string, n int, seed uint64) ([]string, error)
}

var (
	_ Online  = (*online.Store)(nil)
	_ Offline = (*offline.Store)(nil)
)

// Kind is an entity's outcome.
type Kind string

// Outcomes; see the package doc.
const (
	Match          Kind = "match"
	Expired        Kind = "expired"
	MissingOnline  Kind = "missing_online"
	MissingOffline Kind = "missing_offline"
	OnlineBehind   Kind = "online_behind"
	OnlineAhead    Kind = "online_ahead"
	ValuesDiffer   Kind = "values_differ"
)

// Mismatch reports whether k is a mismatch.
func (k Kind) Mismatch() bool { return k != Match && k != Expired }

// Config says what to check.
type Config struct {
	// Views are checked at their current version (config.View.Version).
	Views []config.View
	// Sample is how many entities per view are taken from each store
	// (default 100).
	Sample int
	// Seed picks the offline sample.
	Seed uint64
	// Recheck is how long to wait before reading mismatched entities again
	// (0: report the first reading).
	Recheck time.Duration
	// Now is the clock that decides expiry (default time.Now).
	Now func() time.Time
}

// Result is one entity's outcome.
type Result struct {
	View, Version, Entity string
	Kind                  Kind
	// Online and Offline are the rows read, nil where a store has none.
	Online, Offline *featurestore.Row
	// Diffs are the fields that differ, for a mismatch with rows on both
	// sides.
	Diffs []Diff
}

// Diff is one field with its value in each store.
type Diff struct {
	Field           string
	Online, Offline string
}

// ViewReport is the outcome of one view version.
type ViewReport struct {
	View, Version string
	// Counts has the number of entities per outcome.
	Counts map[Kind]int
	// Mismatches are the results of the mismatched entities, by entity.
	Mismatches []Result
}

// Checked is the number of entities checked.
func (r *ViewReport) Checked() int {
	n := 0
	for _, c := range r.Counts {
		n += c
	}
	return n
}

// Report is the outcome of every view.
type Report struct {
	Views []ViewReport
}

// Mismatches is the number of mismatched entities over every view.
func (r *Report) Mismatches() int {
	n := 0
	for _, v := range r.Views {
		n += len(v.Mismatches)
	}
	return n
}

// Run samples entities of every view and checks them. An error means a
// store could not be read; mismatches are in the report.
func Run(ctx context.Context, cfg Config, on Online, off Offline) (*Report, error) {
	if cfg.Sample <= 0 {
		cfg.Sample = 100
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	rep := &Report{}
	for i := range cfg.Views {
		v := &cfg.Views[i]
		vr, err := checkView(ctx, cfg, v, on, off)
		if err != nil {
			return nil, err
		}
		rep.Views = append(rep.Views, vr)
	}
	return rep, nil
}

func checkView(ctx context.Context, cfg Config, v *config.View, on Online, off Offline) (ViewReport, error) {
	version := v.Version()
	vr := ViewReport{View: v.Name, Version: version, Counts: map[Kind]int{}}
	fromOff, err := off.SampleEntities(ctx, v.Name, version, cfg.Sample, cfg.Seed)
	if err != nil {
		return vr, fmt.Errorf("verify %s@%s: %w", v.Name, version, err)
	}
	fromOn, err := on.SampleEntities(ctx, v.Name, version, cfg.Sample)
	if err != nil {
		return vr, fmt.Errorf("verify %s@%s: %w", v.Name, version, err)
	}
	entities := slices.Compact(slices.Sorted(slices.Values(append(fromOff, fromOn...))))
	results, err := check(ctx, cfg, v, version, entities, on, off)
	if err != nil {
		return vr, err
	}
	var again []string
	for _, r := range results {
		if r.Kind.Mismatch() {
			again = append(again, r.Entity)
		}
	}
	if len(again) > 0 && cfg.Recheck > 0 {
		t := time.NewTimer(cfg.Recheck)
		select {
		case <-ctx.Done():
			t.Stop()
			return vr, ctx.Err()
		case <-t.C:
		}
		second, err := check(ctx, cfg, v, version, again, on, off)
		if err != nil {
			return vr, err
		}
		byEntity := make(map[string]Result, len(second))
		for _, r := range second {
			byEntity[r.Entity] = r
		}
		for i, r := range results {
			if s, ok := byEntity[r.Entity]; ok {
				results[i] = s
			}
		}
	}
	for _, r := range results {
		vr.Counts[r.Kind]++
		if r.Kind.Mismatch() {
			vr.Mismatches = append(vr.Mismatches, r)
		}
	}
	return vr, nil
}

// check reads entities from both stores and compares them.
func check(ctx context.Context, cfg Config, v *config.View, version string, entities []string, on Online, off Offline) ([]Result, error) {
	keys := make([]online.Key, len(entities))
	for i, e := range entities {
		keys[i] = online.Key{View: v.Name, Version: version, Entity: e}
	}
	onRows, found, err := on.GetMany(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("verify %s@%s: %w", v.Name, version, err)
	}
	now := cfg.Now().UnixMilli()
	out := make([]Result, len(entities))
	for i, e := range entities {
		latest, ok, err := off.Latest(ctx, v.Name, version, e)
		if err != nil {
			return nil, fmt.Errorf("verify %s@%s: %w", v.Name, version, err)
		}
		r := Result{View: v.Name, Version: version, Entity: e}
		if found[i] {
			r.Online = &onRows[i]
		}
		if ok {
			r.Offline = &latest
		}
		switch {
		case r.Online == nil && r.Offline == nil: // sampled, then gone from both: expired meanwhile
			r.Kind = Expired
		case r.Online == nil && latest.KnownTime+v.TTL.D().Milliseconds() <= now:
			r.Kind = Expired
		case r.Online == nil:
			r.Kind = MissingOnline
		case r.Offline == nil:
			r.Kind = MissingOffline
		default:
			r.Kind, r.Diffs = compare(v, r.Online, r.Offline)
		}
		out[i] = r
	}
	return out, nil
}

func rank(r *featurestore.Row) featurestore.Rank {
	return featurestore.Rank{EventTime: r.EventTime, Revised: featurestore.Revised(r.Offset, r.Revises), Offset: r.Offset, WindowStart: r.WindowStart}
}

// compare returns the outcome of two rows of one entity and the fields in
// which they differ.
func compare(v *config.View, on, off *featurestore.Row) (Kind, []Diff) {
	var diffs []Diff
	num := func(field string, a, b int64) {
		if a != b {
			diffs = append(diffs, Diff{Field: field, Online: strconv.FormatInt(a, 10), Offline: strconv.FormatInt(b, 10)})
		}
	}
	num("event_time_ms", on.EventTime, off.EventTime)
	num("source_offset", on.Offset, off.Offset)
	num("revises_offset", on.Revises, off.Revises)
	num("window_start_ms", on.WindowStart, off.WindowStart)
	num("window_end_ms", on.WindowEnd, off.WindowEnd)
	num("known_time_ms", on.KnownTime, off.KnownTime)
	num("source_partition", int64(on.Partition), int64(off.Partition))
	features := map[string]bool{}
	for _, f := range v.Features {
		features[f.Name] = true
		a, aok := on.Values[f.Name]
		b := off.Values[f.Name]
		if !aok {
			a = math.NaN() // Redis leaves out what a row does not carry; ClickHouse stores NaN
		}
		if !(a == b || math.IsNaN(a) && math.IsNaN(b)) || (a == 0 && b == 0 && math.Signbit(a) != math.Signbit(b)) {
			diffs = append(diffs, Diff{Field: f.Name, Online: format(a, aok), Offline: format(b, true)})
		}
	}
	for _, name := range slices.Sorted(maps.Keys(on.Values)) {
		if !features[name] {
			diffs = append(diffs, Diff{Field: name, Online: format(on.Values[name], true), Offline: "-"})
		}
	}
	switch c := featurestore.Compare(rank(on), rank(off)); {
	case c < 0:
		return OnlineBehind, diffs
	case c > 0:
		return OnlineAhead, diffs
	case len(diffs) > 0:
		return ValuesDiffer, diffs
	}
	return Match, nil
}

func format(x float64, present bool) string {
	if !present {
		return "(absent)"
	}
	return strconv.FormatFloat(x, 'g', -1, 64)
}
