package roles

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/processors"
	"github.com/weirhq/weir/scoring"
	"github.com/weirhq/weir/scoring/lookup"
	"github.com/weirhq/weir/streams"
)

// modelLookup gathers one model's features for the processor's events:
// its fetch hook runs before the model's scorer hook, in the same task
// (so one event at a time), and leaves the event's vector for features.
type modelLookup struct {
	model string
	l     *lookup.Lookup
	// The event cur was fetched for.
	ev     *processors.Event
	id     string
	offset int64
	cur    *lookup.Vector
	took   time.Duration // Fetch's time for cur
}

// lookup returns the feature lookup of model m of source src. It dials
// Redis (a client of its own, closed with the Env) only when the model
// has features that only Redis holds (other entities' views, own views
// that emit on window close); otherwise an own view without a row for an
// event (too late for it) is missing, as before lookups existed.
func (e *Env) lookup(ctx context.Context, src config.Source, m config.Model) (*modelLookup, error) {
	c := lookup.Config{Model: m, Source: src, Views: e.Cfg.Views, Entities: e.Cfg.Entities}
	probe, err := lookup.New(c, nil, lookup.Options{})
	if err != nil {
		return nil, err
	}
	var store lookup.Store
	if probe.NeedsStore() {
		rdb, err := e.Redis(ctx)
		if err != nil {
			return nil, fmt.Errorf("scorer %s: its features of other entities are read from Redis: %w", m.Name, err)
		}
		e.mu.Lock()
		e.closers = append(e.closers, func() { rdb.Close() })
		e.mu.Unlock()
		store = online.New(rdb, e.Cfg.Redis.KeyPrefix, e.Cfg.Views)
	}
	l, err := lookup.New(c, store, lookup.Options{Registerer: e.Metrics})
	if err != nil {
		return nil, err
	}
	return &modelLookup{model: m.Name, l: l}, nil
}

// fetch is the processor hook that gathers the event's features before
// the model's scorer hook runs. A failed Redis read is retriable: the
// transaction aborts and its events are processed again (see
// scoring/lookup), so no event is scored without them, lost or scored
// twice.
func (k *modelLookup) fetch(ctx context.Context, ev *processors.Event, out []*kgo.Record) ([]*kgo.Record, error) {
	if k.cur != nil {
		k.cur.Release()
		k.cur, k.ev = nil, nil
	}
	began := time.Now()
	v, err := k.l.Fetch(ctx, lookup.Event{Time: ev.Time, Rows: ev.Rows, Keys: ev})
	if err != nil {
		return out, streams.Retry(fmt.Errorf("scorer %s: %w", k.model, err))
	}
	k.cur, k.ev, k.id, k.offset, k.took = v, ev, ev.ID, ev.Offset, time.Since(began)
	return out, nil
}

// features returns the vector fetch gathered for ev and the time it took.
func (k *modelLookup) features(ev *processors.Event) (scoring.Features, time.Duration) {
	if k.cur == nil || k.ev != ev || k.id != ev.ID || k.offset != ev.Offset {
		// fetch did not run for this event (a hook order bug): score
		// with its own rows rather than another event's features.
		return rowFeatures(ev.Rows), 0
	}
	return k.cur, k.took
}
