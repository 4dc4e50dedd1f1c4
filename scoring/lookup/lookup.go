// Package lookup gathers the features the inline scorer scores an event
// with. A model's features ("view.feature", models[].features) come from
// two places:
//
//   - the event's own entity (the source's key): the rows its processor
//     task computed for this very event, in the same transaction, so they
//     include the event itself;
//   - other entities (a card event's merchant, a device, or the same key's
//     views of another source): the online store (Redis), read by the
//     event's key of that entity (processors.Event.Keys), all of an
//     event's views in one pipelined round trip (online.Store.GetFeatures,
//     one HMGET per entity view). The same read serves an own-entity view
//     that emitted no row for the event (a windowed view that emits on
//     close, or a view the event was too late for): its newest
//     materialized row.
//
// An other entity's row in Redis is the newest the online materializer
// has written when the event is scored. It never includes the event
// itself, which reaches the other entity's processor task through the
// repartition topic only after this transaction commits; and after a
// rewind (an aborted transaction, a restart) it may be newer than the
// event, so that the feature's age is negative. The prediction logs the
// value and age used either way.
//
// # Missing and stale features
//
// A feature is missing when its view has no row (never written, or
// expired by its TTL), the row lacks the feature, or the event has no key
// of the view's entity: Feature answers false, and the scorer fills it
// (models[].defaults for logistic regression, NaN for trees) and counts
// it (weir_scoring_missing_features_total). A feature is stale when its
// age exceeds its max age: models[].max_ages for that feature, else
// models[].max_age, else its view's ttl (a view without a ttl is never
// stale). The scorer asks through scoring.StaleChecker, flags it in the
// prediction and scores the value anyway; this package counts it.
//
// # Redis errors
//
// A failed read fails Fetch: the scorer's hook returns it as retriable,
// so the processor's transaction aborts and the whole batch is processed
// again from the committed offsets after a backoff (100 ms doubling to
// 10 s). No event is scored with features the outage hid, none is lost,
// and none is scored twice (an aborted transaction's predictions are
// never read under read_committed); while Redis is down the source's
// processor stalls and its lag grows. The client's timeouts (go-redis:
// 3 s reads by default) bound one attempt. Failed reads are counted.
//
// # Metrics
//
//	weir_scoring_lookup_seconds{model}             one event's Redis read (events that read Redis)
//	weir_scoring_lookup_errors_total{model}        failed reads (each aborts its transaction)
//	weir_scoring_stale_features_total{model,feature}  features flagged stale, per prediction (a shadow arm's too)
package lookup

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring"
)

// Store is what a Lookup reads of the online store.
type Store interface {
	// GetFeatures reads the event time and the named features of every
	// lookup in one pipelined round trip (online.Store.GetFeatures).
	GetFeatures(ctx context.Context, lookups []online.Lookup) ([]online.Features, error)
}

var _ Store = (*online.Store)(nil)

// Keys gives an event's entity keys (processors.Event implements it).
type Keys interface {
	// EntityKey returns the event's key of the named entity; nil or empty
	// when it has none.
	EntityKey(entity string) []byte
}

// Event is what Fetch reads of one processed event.
type Event struct {
	Time int64                 // event time, Unix ms
	Rows []*schemas.FeatureRow // the own entity's rows computed for the event
	Keys Keys
}

// Config is what a Lookup is built from: one model and the config it
// refers to.
type Config struct {
	Model    config.Model
	Source   config.Source
	Views    []config.View
	Entities []config.Entity
}

// Options configure a Lookup.
type Options struct {
	Registerer prometheus.Registerer // nil registers nothing
}

// Lookup fetches one model's features for events of its source. It is
// safe for concurrent use.
type Lookup struct {
	model  string
	index  map[string]int // model feature -> position
	maxAge []int64        // ms, per model feature; 0: never stale
	views  []view
	store  Store
	pool   sync.Pool // *Vector

	seconds prometheus.Observer
	errors  prometheus.Counter
	stale   []prometheus.Counter // per model feature
}

// view is one view the model reads.
type view struct {
	name, version, entity string
	own                   bool     // keyed by the source's key: the event's rows first
	closeOnly             bool     // windowed, emits on close: no row per event
	features              []string // the model's features of the view (bare names)
	pos                   []int    // their positions in the model's features
	rowPos                []int    // their positions in the view's rows (Values)
}

// New returns a Lookup of c.Model reading other entities from store. With
// a nil store (see NeedsStore), what Fetch would read is missing.
func New(c Config, store Store, o Options) (*Lookup, error) {
	m := c.Model
	if m.Name == "" || len(m.Features) == 0 {
		return nil, errors.New("lookup: a model with a name and features is required")
	}
	l := &Lookup{model: m.Name, index: make(map[string]int, len(m.Features)), maxAge: make([]int64, len(m.Features)), store: store}
	byView := map[string]int{}
	for i, ref := range m.Features {
		vn, fn, ok := config.SplitFeature(ref)
		if !ok {
			return nil, fmt.Errorf("lookup: model %s: feature %q is not of the form view.feature", m.Name, ref)
		}
		if _, dup := l.index[ref]; dup {
			return nil, fmt.Errorf("lookup: model %s: feature %q is named twice", m.Name, ref)
		}
		l.index[ref] = i
		var v *config.View
		for j := range c.Views {
			if c.Views[j].Name == vn {
				v = &c.Views[j]
			}
		}
		if v == nil {
			return nil, fmt.Errorf("lookup: model %s: feature %q: unknown view %q", m.Name, ref, vn)
		}
		fi := -1
		for j, f := range v.Features {
			if f.Name == fn {
				fi = j
			}
		}
		if fi < 0 {
			return nil, fmt.Errorf("lookup: model %s: view %s has no feature %q", m.Name, vn, fn)
		}
		vi, ok := byView[vn]
		if !ok {
			key := ""
			for _, e := range c.Entities {
				if e.Name == v.Entity {
					key = e.Key
				}
			}
			vi = len(l.views)
			byView[vn] = vi
			closeOnly := v.Kind != "" && v.Kind != config.KindSliding && (v.Emit == "" || v.Emit == "close")
			l.views = append(l.views, view{name: vn, version: v.Version(), entity: v.Entity, own: v.Source == c.Source.Name && key == c.Source.Key, closeOnly: closeOnly})
		}
		pv := &l.views[vi]
		pv.features = append(pv.features, fn)
		pv.pos = append(pv.pos, i)
		pv.rowPos = append(pv.rowPos, fi)
		switch {
		case m.MaxAges[ref] > 0:
			l.maxAge[i] = m.MaxAges[ref].D().Milliseconds()
		case m.MaxAge > 0:
			l.maxAge[i] = m.MaxAge.D().Milliseconds()
		default:
			l.maxAge[i] = v.TTL.D().Milliseconds()
		}
	}
	cl := prometheus.Labels{"model": m.Name}
	seconds := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "weir_scoring_lookup_seconds", Help: "Time to read one event's other-entity features from the online store.", ConstLabels: cl,
		Buckets: prometheus.ExponentialBuckets(25e-6, 2, 14)})
	errs := prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_scoring_lookup_errors_total", Help: "Failed online-store reads; each aborts the processor's transaction, which is retried.", ConstLabels: cl})
	stale := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_scoring_stale_features_total", Help: "Features scored while older than their max age (flagged stale in the prediction).", ConstLabels: cl}, []string{"feature"})
	if reg := o.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{seconds, errs, stale} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("lookup: register metrics of model %s: %w", m.Name, err)
			}
		}
	}
	l.seconds, l.errors = seconds, errs
	for _, ref := range m.Features {
		l.stale = append(l.stale, stale.WithLabelValues(ref))
	}
	return l, nil
}

// NeedsStore reports whether the model has features that only the store
// holds: of other entities, or of own views that emit on window close
// (no row per event).
func (l *Lookup) NeedsStore() bool {
	for _, v := range l.views {
		if !v.own || v.closeOnly {
			return true
		}
	}
	return false
}

// Vector is one event's features: a scoring.Features and a
// scoring.StaleChecker. Release it after scoring.
type Vector struct {
	l      *Lookup
	values []float64
	times  []int64 // event time of each value's row, Unix ms
	has    []bool
	// reads are the store reads of this event and the view of each.
	reads     []online.Lookup
	readViews []int
}

var (
	_ scoring.Features     = (*Vector)(nil)
	_ scoring.StaleChecker = (*Vector)(nil)
)

// Fetch gathers ev's features: the own entity's from ev.Rows and the
// rest from the store in one pipelined round trip. An error (the store
// failed) means the event must not be scored now: the caller should retry
// it (see the package doc).
func (l *Lookup) Fetch(ctx context.Context, ev Event) (*Vector, error) {
	v, _ := l.pool.Get().(*Vector)
	if v == nil {
		n := len(l.index)
		v = &Vector{l: l, values: make([]float64, n), times: make([]int64, n), has: make([]bool, n)}
	}
	clear(v.has)
	v.reads, v.readViews = v.reads[:0], v.readViews[:0]
	for vi := range l.views {
		pv := &l.views[vi]
		if pv.own && v.fromRows(pv, ev.Rows) {
			continue
		}
		var key []byte
		if ev.Keys != nil {
			key = ev.Keys.EntityKey(pv.entity)
		}
		if len(key) == 0 {
			continue // missing: the event has no key of the entity
		}
		v.reads = append(v.reads, online.Lookup{Key: online.Key{View: pv.name, Version: pv.version, Entity: string(key)}, Features: pv.features})
		v.readViews = append(v.readViews, vi)
	}
	if len(v.reads) == 0 || l.store == nil {
		return v, nil
	}
	start := time.Now()
	got, err := l.store.GetFeatures(ctx, v.reads)
	if err != nil {
		l.errors.Inc()
		v.Release()
		return nil, fmt.Errorf("lookup: model %s: %w", l.model, err)
	}
	l.seconds.Observe(time.Since(start).Seconds())
	for i, f := range got {
		if !f.Found {
			continue
		}
		pv := &l.views[v.readViews[i]]
		for j, p := range pv.pos {
			if f.Has[j] {
				v.values[p], v.times[p], v.has[p] = f.Values[j], f.EventTime, true
			}
		}
	}
	return v, nil
}

// fromRows fills pv's features from the event's own row of the view;
// false when the event has none.
func (v *Vector) fromRows(pv *view, rows []*schemas.FeatureRow) bool {
	for _, row := range rows {
		if row.View != pv.name {
			continue
		}
		for j, p := range pv.pos {
			k := pv.rowPos[j]
			if k >= len(row.Values) || row.Values[k].Name != pv.features[j] {
				k = -1 // not in the view's order: search
				for q := range row.Values {
					if row.Values[q].Name == pv.features[j] {
						k = q
					}
				}
				if k < 0 {
					continue
				}
			}
			v.values[p], v.times[p], v.has[p] = row.Values[k].Value, row.EventTime, true
		}
		return true
	}
	return false
}

// Feature implements scoring.Features.
func (v *Vector) Feature(name string) (float64, int64, bool) {
	i, ok := v.l.index[name]
	if !ok || !v.has[i] {
		return 0, 0, false
	}
	return v.values[i], v.times[i], true
}

// Stale implements scoring.StaleChecker: ageMs is more than the feature's
// max age. It counts what it reports stale.
func (v *Vector) Stale(name string, ageMs int64) bool {
	i, ok := v.l.index[name]
	if !ok || v.l.maxAge[i] <= 0 || ageMs <= v.l.maxAge[i] {
		return false
	}
	v.l.stale[i].Inc()
	return true
}

// Release returns v for reuse by a later Fetch; v must not be used after.
func (v *Vector) Release() {
	clear(v.reads) // drop the entity strings
	v.l.pool.Put(v)
}
