package processors

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/weirhq/weir/internal/config"
)

// ErrLate is returned for an event older than its entity's newest event by
// more than the source's lateness: its windows may have lost events it needs.
var ErrLate = errors.New("event later than the allowed lateness")

type aggKind int

const (
	aggCount aggKind = iota
	aggSum
	aggMean
	aggMin
	aggMax
	aggLast
	aggVariance
	aggStddev
	aggTimeSinceLast
)

var aggKinds = map[string]aggKind{"count": aggCount, "sum": aggSum, "mean": aggMean, "min": aggMin, "max": aggMax, "last": aggLast,
	"variance": aggVariance, "stddev": aggStddev, "time_since_last": aggTimeSinceLast}

type feature struct {
	name   string
	agg    aggKind
	field  int   // index into the event's values; -1 for count
	window int64 // ms
	flag   int   // index of the where-filter's flag in the event's values; -1: none
}

type view struct {
	name, version string
	features      []feature
}

// Engine computes the views of one source. It holds no state of its own:
// state lives in a Store, so one Engine serves every partition.
type Engine struct {
	fields      []string
	filters     []*config.Filter // an event's values are fields, then one 0/1 flag per filter
	views       []view
	retain      int64 // ms of history kept behind an entity's newest event
	lateness    int64
	fingerprint uint64 // of what the state depends on: fields, retention
}

// NewEngine compiles the views of a source. Every view must aggregate by the
// source's key (the topic's partitioning), so an entity's events are all in
// one partition.
func NewEngine(src config.Source, views []*config.View, entities []config.Entity) (*Engine, error) {
	e := &Engine{lateness: src.Lateness.D().Milliseconds()}
	fieldIdx := map[string]int{}
	filterIdx := map[string]int{}
	var maxWindow int64
	for _, v := range views {
		key := ""
		for _, ent := range entities {
			if ent.Name == v.Entity {
				key = ent.Key
			}
		}
		if key != src.Key {
			return nil, fmt.Errorf("processors: view %s: entity %s is keyed by %q but source %s is keyed by %q: compute it from the source's repartition by %s (see Rekey)", v.Name, v.Entity, key, src.Name, src.Key, key)
		}
		cv := view{name: v.Name, version: v.Version()}
		for _, f := range v.Features {
			k, ok := aggKinds[f.Agg]
			if !ok {
				return nil, fmt.Errorf("processors: view %s feature %s: unknown aggregation %q", v.Name, f.Name, f.Agg)
			}
			cf := feature{name: f.Name, agg: k, field: -1, window: f.Window.D().Milliseconds(), flag: -1}
			if f.Where != nil {
				canon := f.Where.String()
				i, ok := filterIdx[canon]
				if !ok {
					i = len(e.filters)
					filterIdx[canon] = i
					e.filters = append(e.filters, f.Where)
				}
				cf.flag = i // made relative to the fields below
			}
			if k != aggCount && k != aggTimeSinceLast {
				i, ok := fieldIdx[f.Field]
				if !ok {
					i = len(e.fields)
					fieldIdx[f.Field] = i
					e.fields = append(e.fields, f.Field)
				}
				cf.field = i
			}
			maxWindow = max(maxWindow, cf.window)
			cv.features = append(cv.features, cf)
		}
		e.views = append(e.views, cv)
	}
	e.retain = maxWindow + e.lateness
	for vi := range e.views {
		for fi := range e.views[vi].features {
			if f := &e.views[vi].features[fi]; f.flag >= 0 {
				f.flag += len(e.fields)
			}
		}
	}
	h := sha256.New()
	fmt.Fprintf(h, "%q %d", e.fields, e.retain)
	for _, f := range e.filters {
		fmt.Fprintf(h, " where %s", f)
	}
	e.fingerprint = binary.LittleEndian.Uint64(h.Sum(nil))
	return e, nil
}

// Fields are the numeric source fields the views read, in the order Apply
// expects their values; the filters' flags follow them.
func (e *Engine) Fields() []string { return e.fields }

// Filters are the distinct where-clauses of the views: Apply expects, after
// the fields' values, one value per filter, 1 when the event passes it and 0
// when not.
func (e *Engine) Filters() []*config.Filter { return e.filters }

// NumValues is how many values Apply expects per event.
func (e *Engine) NumValues() int { return len(e.fields) + len(e.filters) }

// NumViews is the number of views computed.
func (e *Engine) NumViews() int { return len(e.views) }

// View returns the name, version and feature names of view i.
func (e *Engine) View(i int) (name, version string, features []string) {
	v := e.views[i]
	features = make([]string, len(v.features))
	for j, f := range v.features {
		features[j] = f.name
	}
	return v.name, v.version, features
}

// NewOutput returns a buffer for Apply: one slice per view, one value per feature.
func (e *Engine) NewOutput() [][]float64 {
	out := make([][]float64, len(e.views))
	for i, v := range e.views {
		out[i] = make([]float64, len(v.features))
	}
	return out
}

// Apply adds an event at time t with field values vals to the entity's
// state st (nil for a new entity; st must be the caller's private copy) and
// writes every view's features as of the event into out. It returns the new
// state, or ErrLate, leaving st unchanged.
func (e *Engine) Apply(st *entityState, t int64, vals []float64, out [][]float64) (*entityState, error) {
	prev := int64(math.MinInt64) // the entity's newest event before this one
	if st == nil {
		st = &entityState{maxTime: math.MinInt64}
	} else if prev = st.maxTime; t < st.maxTime-e.lateness {
		return st, fmt.Errorf("%w: %s behind the entity's newest event (allowed %s)", ErrLate,
			time.Duration(st.maxTime-t)*time.Millisecond, time.Duration(e.lateness)*time.Millisecond)
	}
	st.maxTime = max(st.maxTime, t)
	// Drop events no window of a future (not too late) event can reach.
	horizon := st.maxTime - e.retain
	drop := 0
	for drop < len(st.events) && st.events[drop].time <= horizon {
		drop++
	}
	if drop > 0 {
		st.events = append(st.events[:0], st.events[drop:]...)
	}
	st.events = append(st.events, pastEvent{time: t, vals: append([]float64(nil), vals...)})

	for vi, v := range e.views {
		for fi, f := range v.features {
			if f.agg == aggTimeSinceLast {
				out[vi][fi] = timeSinceLast(st.events, prev, t)
				continue
			}
			out[vi][fi] = aggregate(st.events, f, t)
		}
	}
	return st, nil
}

// timeSinceLast is the time in ms from the entity's newest earlier event (at
// or before t, processed before this one) to t; NaN for its first event.
func timeSinceLast(events []pastEvent, prev, t int64) float64 {
	if prev != math.MinInt64 && prev <= t {
		return float64(t - prev)
	}
	// Out of order: the newest retained earlier event at or before t.
	best := int64(math.MinInt64)
	for _, ev := range events[:len(events)-1] {
		if ev.time <= t {
			best = max(best, ev.time)
		}
	}
	if best == math.MinInt64 {
		return math.NaN()
	}
	return float64(t - best)
}

// aggregate computes f over the events in (t-window, t]. The newest event,
// the one being processed, is always last in events.
func aggregate(events []pastEvent, f feature, t int64) float64 {
	if f.agg == aggLast {
		if f.flag < 0 {
			return events[len(events)-1].vals[f.field]
		}
		// The newest event at or before t that passes the filter.
		best, v := int64(math.MinInt64), math.NaN()
		for i := len(events) - 1; i >= 0; i-- {
			if ev := &events[i]; ev.vals[f.flag] != 0 && ev.time <= t && ev.time > best {
				best, v = ev.time, ev.vals[f.field]
			}
		}
		return v
	}
	lo := t - f.window
	var n int
	var sum, mean, m2 float64 // m2: Welford's sum of squared deviations
	mn, mx := math.Inf(1), math.Inf(-1)
	for i := range events {
		ev := &events[i]
		if ev.time <= lo || ev.time > t || (f.flag >= 0 && ev.vals[f.flag] == 0) {
			continue
		}
		n++
		if f.field >= 0 {
			x := ev.vals[f.field]
			sum += x
			mn = min(mn, x)
			mx = max(mx, x)
			d := x - mean
			mean += d / float64(n)
			m2 += d * (x - mean)
		}
	}
	switch f.agg {
	case aggCount:
		return float64(n)
	case aggSum:
		return sum
	case aggMean:
		return sum / float64(n) // NaN when a filter left the window empty
	case aggMin:
		if n == 0 {
			return math.NaN() // a filter left the window empty
		}
		return mn
	case aggMax:
		if n == 0 {
			return math.NaN()
		}
		return mx
	case aggVariance: // population variance of the window's values
		return m2 / float64(n)
	case aggStddev:
		return math.Sqrt(m2 / float64(n))
	}
	panic("processors: unhandled aggregation")
}

// Memory computes views over events held in memory, exactly as a task does
// for one partition processed in the same order. Bootstrap training sets and
// tests use it; it is not safe for concurrent use.
type Memory struct {
	eng    *Engine
	states map[string]*entityState
	out    [][]float64
}

// NewMemory returns an empty in-memory state for e.
func (e *Engine) NewMemory() *Memory {
	return &Memory{eng: e, states: map[string]*entityState{}, out: e.NewOutput()}
}

// Apply processes one event of entity key at time t with field values vals
// (in Fields order) and returns every view's features as of the event. The
// result is overwritten by the next call.
func (m *Memory) Apply(key string, t int64, vals []float64) ([][]float64, error) {
	st, err := m.eng.Apply(m.states[key], t, vals, m.out)
	if err != nil {
		return nil, err
	}
	m.states[key] = st
	return m.out, nil
}
