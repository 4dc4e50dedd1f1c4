package processors

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
)

// ErrLate is returned for an event behind its partition's watermark by more
// than every view's allowed lateness: no window it belongs to is still held.
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
	aggDistinct
	aggTopK
	aggLastN
	aggQuantile
	aggRatio
)

var aggKinds = map[string]aggKind{"count": aggCount, "sum": aggSum, "mean": aggMean, "min": aggMin, "max": aggMax, "last": aggLast,
	"variance": aggVariance, "stddev": aggStddev, "time_since_last": aggTimeSinceLast, "distinct": aggDistinct, "top_k": aggTopK,
	"last_n": aggLastN, "quantile": aggQuantile, "ratio": aggRatio}

// quantileAccuracy is the relative accuracy of the quantile sketches.
const quantileAccuracy = 0.01

// distinctExact is how many distinct values a window's distinct count keeps
// exactly before it switches to HyperLogLog (tumbling, hopping and session
// windows; sliding windows count exactly, since they hold their events).
const distinctExact = 1000

// topKCapacity is how many categories a top_k of a tumbling, hopping or
// session window tracks (exactly below it, Space-Saving beyond).
const topKCapacity = 256

type feature struct {
	name  string
	agg   aggKind
	win   int // sliding views: index into Engine.slide
	group int // index into the window's groups; -1 for time_since_last and ratio
	k     int // top_k's k, last_n's n
	q     float64
	of    [2]int // ratio: numerator and denominator, features of the view
}

// group is the input that one or more features of a window aggregate: the
// same field (numeric or categorical) and the same filter. It says which
// accumulators the window keeps for it.
type group struct {
	field, cat, flag int // indexes into an event's values and categories; -1: none
	moments          bool
	min, max         bool
	counts           bool // sliding: exact category counts (distinct, top_k)
	distinct, topk   bool // windowed
	quant            bool
	lastN            int // newest values kept: the largest last_n, or 1 for last
}

type slideWindow struct {
	length int64 // ms; unbounded for last
	groups []group
}

// unbounded is the length of the window of "last": the whole retained history.
const unbounded = math.MaxInt64 / 4

type view struct {
	name, version string
	kind          string
	window, hop   int64 // tumbling and hopping
	gap           int64 // session
	emitUpdate    bool
	emitClose     bool
	lateness      int64
	features      []feature
	groups        []group // windowed views
	slot          int     // windowed views: index into entityState.wins
}

// Engine computes the views of one source. It holds no state of its own:
// state lives in the caller's entity states, so one Engine serves every
// partition.
type Engine struct {
	fields   []string
	cats     []string
	filters  []*config.Filter // an event's values are fields, then one 0/1 flag per filter
	views    []view
	slide    []slideWindow // the distinct windows of the sliding views
	sliding  []int         // indexes of the sliding views
	windowed []int         // indexes of the tumbling, hopping and session views
	maxSlide int64         // longest bounded sliding window
	retain   int64         // ms of sliding history kept behind an entity's newest event
	outOfOrd int64
	maxLate  int64
	// slideLate is the largest lateness of the sliding views.
	slideLate int64
	// fingerprint is of what the state depends on; legacyFP is the
	// fingerprint changelog version 2 carried for the same definition.
	fingerprint, legacyFP uint64
	rows                  []Row
}

// Row is one emitted feature row of a view.
type Row struct {
	View        int   // index of the view
	Time        int64 // the event time the values hold at
	WindowStart int64 // windowed views; 0 for sliding
	WindowEnd   int64
	Offset      int64 // source offset of the event that produced this version
	Revises     int64 // -1, or the offset of the version this one corrects
	Values      []schemas.FeatureValue
}

// Input is one event for Apply.
type Input struct {
	Time   int64     // event time, ms
	Offset int64     // source offset, increasing in processing order
	Vals   []float64 // Fields, then Filters' 0/1 flags
	Cats   []string  // CatFields
	// Watermark is the partition's watermark before this event (newest
	// event time minus the out-of-orderness); math.MinInt64 if none.
	Watermark int64
}

// NewEngine compiles the views of a source. Every view must aggregate by the
// source's key (the topic's partitioning), so an entity's events are all in
// one partition.
func NewEngine(src config.Source, views []*config.View, entities []config.Entity) (*Engine, error) {
	e := &Engine{outOfOrd: src.OutOfOrder.D().Milliseconds()}
	fieldIdx, catIdx, filterIdx := map[string]int{}, map[string]int{}, map[string]int{}
	numeric := func(name string) int {
		i, ok := fieldIdx[name]
		if !ok {
			i = len(e.fields)
			fieldIdx[name] = i
			e.fields = append(e.fields, name)
		}
		return i
	}
	categorical := func(name string) int {
		i, ok := catIdx[name]
		if !ok {
			i = len(e.cats)
			catIdx[name] = i
			e.cats = append(e.cats, name)
		}
		return i
	}
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
		kind, emit := v.Kind, v.Emit
		if kind == "" {
			kind = config.KindSliding
		}
		if emit == "" {
			emit = config.EmitClose
			if kind == config.KindSliding {
				emit = config.EmitUpdate
			}
		}
		lateness := v.Lateness.D().Milliseconds()
		if v.Lateness == 0 {
			lateness = src.Lateness.D().Milliseconds()
		}
		cv := view{name: v.Name, version: v.Version(), kind: kind, window: v.Window.D().Milliseconds(), hop: v.Hop.D().Milliseconds(),
			gap: v.Gap.D().Milliseconds(), emitUpdate: emit != config.EmitClose, emitClose: emit != config.EmitUpdate, lateness: lateness}
		if kind == config.KindHopping && (cv.hop <= 0 || cv.window%cv.hop != 0) {
			return nil, fmt.Errorf("processors: view %s: hop %s must divide the window %s", v.Name, v.Hop.D(), v.Window.D())
		}
		if kind == config.KindTumbling {
			cv.hop = cv.window
		}
		e.maxLate = max(e.maxLate, lateness)
		if kind == config.KindSliding {
			e.slideLate = max(e.slideLate, lateness)
		}
		for _, f := range v.Features {
			k, ok := aggKinds[f.Agg]
			if !ok {
				return nil, fmt.Errorf("processors: view %s feature %s: unknown aggregation %q", v.Name, f.Name, f.Agg)
			}
			cf := feature{name: f.Name, agg: k, group: -1, k: f.K + f.N, q: f.Q}
			if k == aggTimeSinceLast || k == aggRatio {
				cv.features = append(cv.features, cf)
				continue
			}
			g := group{field: -1, cat: -1, flag: -1}
			if f.Where != nil {
				canon := f.Where.String()
				i, ok := filterIdx[canon]
				if !ok {
					i = len(e.filters)
					filterIdx[canon] = i
					e.filters = append(e.filters, f.Where)
				}
				g.flag = i // made relative to the fields below
			}
			switch k {
			case aggCount:
			case aggDistinct, aggTopK:
				g.cat = categorical(f.Field)
			default:
				g.field = numeric(f.Field)
			}
			groups := &cv.groups
			if kind == config.KindSliding {
				length := f.Window.D().Milliseconds()
				if k == aggLast {
					length = unbounded
				} else {
					e.maxSlide = max(e.maxSlide, length)
				}
				cf.win = -1
				for i := range e.slide {
					if e.slide[i].length == length {
						cf.win = i
					}
				}
				if cf.win < 0 {
					cf.win = len(e.slide)
					e.slide = append(e.slide, slideWindow{length: length})
				}
				groups = &e.slide[cf.win].groups
			}
			cf.group = -1
			for i, og := range *groups {
				if og.field == g.field && og.cat == g.cat && og.flag == g.flag {
					cf.group = i
				}
			}
			if cf.group < 0 {
				cf.group = len(*groups)
				*groups = append(*groups, g)
			}
			gp := &(*groups)[cf.group]
			switch k {
			case aggCount, aggSum, aggMean, aggVariance, aggStddev:
				gp.moments = true
			case aggMin:
				gp.min = true
			case aggMax:
				gp.max = true
			case aggLast:
				gp.lastN = max(gp.lastN, 1)
			case aggLastN:
				gp.lastN = max(gp.lastN, f.N)
			case aggQuantile:
				gp.quant = true
			case aggDistinct:
				gp.counts, gp.distinct = kind == config.KindSliding, kind != config.KindSliding
			case aggTopK:
				gp.counts, gp.topk = kind == config.KindSliding, kind != config.KindSliding
			}
			cv.features = append(cv.features, cf)
		}
		for fi, f := range v.Features {
			if f.Agg != "ratio" {
				continue
			}
			if len(f.Of) != 2 {
				return nil, fmt.Errorf("processors: view %s feature %s: ratio needs two features in of", v.Name, f.Name)
			}
			for j, name := range f.Of {
				cv.features[fi].of[j] = -1
				for oi, o := range v.Features {
					if o.Name == name && o.Agg != "ratio" && o.Agg != "top_k" && o.Agg != "last_n" {
						cv.features[fi].of[j] = oi
					}
				}
				if cv.features[fi].of[j] < 0 {
					return nil, fmt.Errorf("processors: view %s feature %s: %q is not a numeric feature of the view", v.Name, f.Name, name)
				}
			}
		}
		if kind == config.KindSliding {
			e.sliding = append(e.sliding, len(e.views))
		} else {
			if kind != config.KindTumbling && kind != config.KindHopping && kind != config.KindSession {
				return nil, fmt.Errorf("processors: view %s: unknown window kind %q", v.Name, kind)
			}
			if (kind == config.KindSession && cv.gap <= 0) || (kind != config.KindSession && cv.window <= 0) {
				return nil, fmt.Errorf("processors: view %s: a %s view needs a positive window or gap", v.Name, kind)
			}
			cv.slot = len(e.windowed)
			e.windowed = append(e.windowed, len(e.views))
		}
		e.views = append(e.views, cv)
	}
	e.mergeCountGroups()
	e.retain = e.maxSlide + e.slideLate + e.outOfOrd
	nf := len(e.fields)
	for i := range e.slide {
		for j := range e.slide[i].groups {
			if g := &e.slide[i].groups[j]; g.flag >= 0 {
				g.flag += nf
			}
		}
	}
	for i := range e.views {
		for j := range e.views[i].groups {
			if g := &e.views[i].groups[j]; g.flag >= 0 {
				g.flag += nf
			}
		}
	}
	e.fingerprint, e.legacyFP = e.fingerprints()
	for vi, v := range e.views {
		r := Row{View: vi, Values: make([]schemas.FeatureValue, len(v.features))}
		for fi, f := range v.features {
			r.Values[fi].Name = f.name
		}
		e.rows = append(e.rows, r)
	}
	return e, nil
}

// mergeCountGroups points sliding count features at a group of the same
// window and filter that reads a numeric field (every event has a value, so
// its count is the same) and drops the groups left unused: one accumulator
// less per window in every entity's state.
func (e *Engine) mergeCountGroups() {
	for wi := range e.slide {
		groups := e.slide[wi].groups
		remap := make([]int, len(groups))
		for gi, g := range groups {
			remap[gi] = gi
			if g.field >= 0 || g.cat >= 0 || g.min || g.max || g.quant || g.lastN > 0 || g.counts {
				continue
			}
			for oi, o := range groups {
				if oi != gi && o.field >= 0 && o.flag == g.flag {
					remap[gi] = oi
					groups[oi].moments = true
					break
				}
			}
		}
		var kept []group
		newIdx := make([]int, len(groups))
		for gi, g := range groups {
			if remap[gi] == gi {
				newIdx[gi] = len(kept)
				kept = append(kept, g)
			}
		}
		for _, vi := range e.sliding {
			for fi := range e.views[vi].features {
				if f := &e.views[vi].features[fi]; f.group >= 0 && f.win == wi {
					f.group = newIdx[remap[f.group]]
				}
			}
		}
		e.slide[wi].groups = kept
	}
}

// fingerprints hash what the changelog state depends on: the fields and
// filters events carry, the sliding retention, and the windowed views'
// windows and accumulators.
func (e *Engine) fingerprints() (fp, legacy uint64) {
	h := sha256.New()
	fmt.Fprintf(h, "%q %d", e.fields, e.retain)
	for _, f := range e.filters {
		fmt.Fprintf(h, " where %s", f)
	}
	legacy = binary.LittleEndian.Uint64(h.Sum(nil))
	fmt.Fprintf(h, " v3 cats %q", e.cats)
	for _, vi := range e.windowed {
		v := e.views[vi]
		fmt.Fprintf(h, " %s %d %d %d %d %+v", v.kind, v.window, v.hop, v.gap, v.lateness, v.groups)
	}
	return binary.LittleEndian.Uint64(h.Sum(nil)), legacy
}

// Fields are the numeric source fields the views read, in the order Apply
// expects their values; the filters' flags follow them.
func (e *Engine) Fields() []string { return e.fields }

// CatFields are the string source fields the views read (distinct, top_k),
// in the order Apply expects them in Input.Cats.
func (e *Engine) CatFields() []string { return e.cats }

// Filters are the distinct where-clauses of the views: Apply expects, after
// the fields' values, one value per filter, 1 when the event passes it and 0
// when not.
func (e *Engine) Filters() []*config.Filter { return e.filters }

// NumValues is how many values Apply expects per event.
func (e *Engine) NumValues() int { return len(e.fields) + len(e.filters) }

// NumViews is the number of views computed.
func (e *Engine) NumViews() int { return len(e.views) }

// OutOfOrder is the source's out-of-orderness in ms: the partition
// watermark is its newest event time minus this.
func (e *Engine) OutOfOrder() int64 { return e.outOfOrd }

// View returns the name, version and feature names of view i.
func (e *Engine) View(i int) (name, version string, features []string) {
	v := e.views[i]
	features = make([]string, len(v.features))
	for j, f := range v.features {
		features[j] = f.name
	}
	return v.name, v.version, features
}

// Windowed reports whether view i is a tumbling, hopping or session view
// (its rows carry their window).
func (e *Engine) Windowed(i int) bool { return e.views[i].kind != config.KindSliding }

// HasTimers reports whether any view emits or purges windows as the
// watermark passes them.
func (e *Engine) HasTimers() bool { return len(e.windowed) > 0 }

// Apply adds an event to the entity's state st (nil for a new entity; st
// must be the caller's private copy) and emits the rows it produces: for
// each sliding view the event's own row, plus corrected rows of the
// entity's later events when it arrived out of order; for each windowed view
// that emits on update, the rows of the windows it falls in, and corrected
// final rows of windows already closed. It returns the new state, and
// ErrLate when every view found the event too late (st unchanged). late
// counts, per view, whether the view skipped the event as too late; it may
// be nil. emit must not keep the row.
func (e *Engine) Apply(st *entityState, in Input, emit func(*Row), late []bool) (*entityState, error) {
	taken := 0
	for vi := range e.views {
		isLate := in.Watermark != math.MinInt64 && in.Time < in.Watermark-e.lateness(vi)
		if late != nil {
			late[vi] = isLate
		}
		if !isLate {
			taken++
		}
	}
	if taken == 0 {
		return st, fmt.Errorf("%w: %s behind the partition watermark (allowed %s)", ErrLate,
			time.Duration(in.Watermark-in.Time)*time.Millisecond, time.Duration(e.maxLate)*time.Millisecond)
	}
	if st == nil {
		st = e.newState()
	}
	st.maxTime = max(st.maxTime, in.Time)
	for vi := range e.views {
		if in.Watermark != math.MinInt64 && in.Time < in.Watermark-e.lateness(vi) {
			continue
		}
		if v := &e.views[vi]; v.kind != config.KindSliding {
			e.applyWindowed(vi, &st.wins[v.slot], in, emit)
		} else if vi == e.sliding[0] { // the sliding views share one history
			e.applySliding(st.slide, st.maxTime, in, emit)
		}
	}
	return st, nil
}

// lateness is view vi's allowed lateness. The sliding views of a source
// share their retained events, so they share the largest lateness among
// them.
func (e *Engine) lateness(vi int) int64 {
	if e.views[vi].kind == config.KindSliding {
		return e.slideLate
	}
	return e.views[vi].lateness
}

func (e *Engine) newState() *entityState {
	st := &entityState{maxTime: math.MinInt64}
	if len(e.sliding) > 0 {
		st.slide = &slideState{wins: make([]slideWinState, len(e.slide))}
		for i := range st.slide.wins {
			st.slide.wins[i].acc = make([]slideAcc, len(e.slide[i].groups))
		}
	}
	if len(e.windowed) > 0 {
		st.wins = make([][]window, len(e.windowed))
	}
	return st
}

// Memory computes views over events held in memory, exactly as a task does
// for one partition processed in the same order. Bootstrap training sets and
// tests use it; it is not safe for concurrent use.
type Memory struct {
	eng    *Engine
	states map[string]*entityState
	out    [][]float64
	wm     int64
	off    int64
}

// NewMemory returns an empty in-memory state for e.
func (e *Engine) NewMemory() *Memory {
	out := make([][]float64, len(e.views))
	for i, v := range e.views {
		out[i] = make([]float64, len(v.features))
	}
	return &Memory{eng: e, states: map[string]*entityState{}, out: out, wm: math.MinInt64}
}

// Apply processes one event of entity key at time t with field values vals
// (in Fields order, then the filters' flags) and returns every sliding
// view's features as of the event (corrections of earlier rows are not
// returned). The result is overwritten by the next call.
func (m *Memory) Apply(key string, t int64, vals []float64) ([][]float64, error) {
	in := Input{Time: t, Offset: m.off, Vals: vals, Watermark: m.wm}
	m.off++
	st, err := m.eng.Apply(m.states[key], in, func(r *Row) {
		if r.Revises < 0 && !m.eng.Windowed(r.View) {
			for i, v := range r.Values {
				m.out[r.View][i] = v.Value
			}
		}
	}, nil)
	if err != nil {
		return nil, err
	}
	st.written()
	m.states[key] = st
	m.wm = max(m.wm, t-m.eng.outOfOrd)
	return m.out, nil
}
