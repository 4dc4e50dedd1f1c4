package processors

import (
	"math"
	"slices"
	"sort"

	"github.com/weirhq/weir/processors/agg"
)

// Sliding windows are exact, (t-length, t] ending at each event, and cost
// O(1) amortized per event and feature: every window keeps running
// accumulators over the entity's retained events (which it must hold
// anyway, since any of them may be the window's next tail), adds the new
// event at the head and removes the events that fall out at the tail.
// Sums and moments are rebuilt from the window's events once the removals
// since the last rebuild outnumber the events in it, so rounding stays that
// of a batch sum; min and max are monotonic deques; distinct and top_k keep
// exact category counts; quantiles a DDSketch with removal.
//
// An event older than the entity's newest is inserted in time order, the
// windows are rebuilt at it, and the rows of all the entity's later events
// are emitted again as corrections. They are all within the out-of-orderness
// plus the lateness of it, so their windows include it unless a window is
// shorter than that; a row whose values did not change is emitted too.

// pastEvent is one retained event of an entity.
type pastEvent struct {
	time int64
	off  int64 // source offset
	// The event's values (Engine.NumValues of them): the first inline,
	// the rest in x, so that an event of views that read one or two fields
	// and no category is no allocation, and no object for the collector,
	// of its own.
	v [inlineValues]float64
	x *eventExtra // nil when there is nothing more
}

// eventExtra holds an event's values past the inline ones and its
// categories.
type eventExtra struct {
	more []float64
	cats []string
}

// inlineValues is how many of an event's values pastEvent holds inline:
// most views read one field, perhaps with a where-filter's flag.
const inlineValues = 2

// val is the event's value i.
func (ev *pastEvent) val(i int) float64 {
	if i < inlineValues {
		return ev.v[i]
	}
	return ev.x.more[i-inlineValues]
}

// cats are the event's categories.
func (ev *pastEvent) cats() []string {
	if ev.x == nil {
		return nil
	}
	return ev.x.cats
}

// set sets the event's values and categories to copies of vals and cats.
func (ev *pastEvent) set(vals []float64, cats []string) {
	n := copy(ev.v[:], vals)
	ev.x = nil
	if len(vals) > n || len(cats) > 0 {
		ev.x = &eventExtra{}
		if len(vals) > n {
			ev.x.more = slices.Clone(vals[n:])
		}
		if len(cats) > 0 {
			ev.x.cats = slices.Clone(cats)
		}
	}
}

// setVal sets value i of an event made with room for it (makeRoom).
func (ev *pastEvent) setVal(i int, x float64) {
	if i < inlineValues {
		ev.v[i] = x
		return
	}
	ev.x.more[i-inlineValues] = x
}

// makeRoom makes room in the event for nv values and nc categories.
func (ev *pastEvent) makeRoom(nv, nc int) {
	if nv <= inlineValues && nc == 0 {
		return
	}
	ev.x = &eventExtra{}
	if nv > inlineValues {
		ev.x.more = make([]float64, nv-inlineValues)
	}
	if nc > 0 {
		ev.x.cats = make([]string, nc)
	}
}

// slideState is the sliding views' state of an entity: its events within
// the retention, in time order (equal times in processing order), and the
// windows' accumulators as of the newest event.
type slideState struct {
	events []pastEvent
	base   int64 // absolute position of events[0]
	wins   []slideWinState
	// The offsets of the events added and dropped since the state was
	// last written to the changelog (one record per event).
	added, dropped []int64
}

type slideWinState struct {
	lo, hi int64 // absolute positions: the window holds [lo, hi)
	ops    int   // removals since the moments were rebuilt
	acc    []slideAcc
}

type slideAcc struct {
	n             int64
	sum, mean, m2 float64
	mins, maxs    []int64 // monotonic deques of absolute positions
	counts        *agg.Counts
	quant         *agg.Quantiles
	last          []int64 // absolute positions of the newest passing events, oldest first
	nval          int64   // passing events with a value (moments)
}

func (s *slideState) clone() *slideState {
	c := &slideState{events: make([]pastEvent, len(s.events), len(s.events)+1), base: s.base, wins: make([]slideWinState, len(s.wins)),
		added: slices.Clone(s.added), dropped: slices.Clone(s.dropped)}
	copy(c.events, s.events) // vals and cats are never mutated after creation
	for i, w := range s.wins {
		cw := slideWinState{lo: w.lo, hi: w.hi, ops: w.ops, acc: make([]slideAcc, len(w.acc))}
		for j, a := range w.acc {
			ca := a
			ca.mins, ca.maxs, ca.last = slices.Clone(a.mins), slices.Clone(a.maxs), slices.Clone(a.last)
			if a.counts != nil {
				ca.counts = a.counts.Clone()
			}
			if a.quant != nil {
				ca.quant = a.quant.Clone()
			}
			cw.acc[j] = ca
		}
		c.wins[i] = cw
	}
	return c
}

func (s *slideState) at(p int64) *pastEvent { return &s.events[p-s.base] }

func (s *slideState) end() int64 { return s.base + int64(len(s.events)) }

// applySliding adds the event to the sliding state and emits the sliding
// views' rows. maxTime is the entity's newest event time, this one included.
func (e *Engine) applySliding(s *slideState, maxTime int64, in Input, emit func(*Row)) {
	// Drop events no window of a future (not too late) event can reach,
	// but the newest of them, which stays as the previous event of the
	// oldest in reach (time_since_last).
	horizon := maxTime - e.retain
	drop := 0
	for drop+1 < len(s.events) && s.events[drop+1].time <= horizon {
		drop++
	}
	if drop > 0 {
		newBase := s.base + int64(drop)
		for wi := range s.wins {
			w := &s.wins[wi]
			for ; w.lo < newBase && w.lo < w.hi; w.lo++ {
				e.slideRemove(s, wi, w.lo)
			}
			w.lo = max(w.lo, newBase)
		}
		for _, ev := range s.events[:drop] {
			s.dropped = append(s.dropped, ev.off)
		}
		// Re-slice rather than shift: append reallocates once the capacity
		// runs out, copying only the live events, so dropping stays O(1)
		// amortized.
		clear(s.events[:drop])
		s.events = s.events[drop:]
		s.base = newBase
	}
	ev := pastEvent{time: in.Time, off: in.Offset}
	ev.set(in.Vals, in.Cats)
	s.added = append(s.added, in.Offset)
	if len(s.events) == 0 || in.Time >= s.events[len(s.events)-1].time {
		s.events = append(s.events, ev)
		p := s.end() - 1
		for wi := range s.wins {
			e.slideAdvance(s, wi, p)
		}
		e.emitSliding(s, p, in.Offset, -1, emit)
		return
	}
	// Out of order: insert after the events at or before it, rebuild the
	// windows there and sweep forward, correcting the rows that change.
	i := sort.Search(len(s.events), func(j int) bool { return s.events[j].time > in.Time })
	s.events = slices.Insert(s.events, i, ev)
	p := s.base + int64(i)
	for wi := range s.wins {
		e.slideRebuild(s, wi, p)
	}
	e.emitSliding(s, p, in.Offset, -1, emit)
	// Every later event's row may change: its window, last, last_n or
	// time_since_last can include this one. They are all within the
	// out-of-orderness plus the lateness of it.
	for q := p + 1; q < s.end(); q++ {
		for wi := range s.wins {
			e.slideAdvance(s, wi, q)
		}
		e.emitSliding(s, q, in.Offset, s.at(q).off, emit)
	}
}

// push appends v to a deque of positions whose front is dropped by
// re-slicing. Once the capacity left behind the front runs out it
// reallocates with room for at least four more, so that a short deque does
// not reallocate at almost every push; the live elements are copied,
// keeping it O(1) amortized.
func push(q []int64, v int64) []int64 {
	if len(q) == cap(q) {
		n := make([]int64, len(q), max(2*len(q), 4))
		copy(n, q)
		q = n
	}
	return append(q, v)
}

// slideAdvance makes window wi end at absolute position p == hi: it adds
// the event at p and removes the events that fall out of the window.
func (e *Engine) slideAdvance(s *slideState, wi int, p int64) {
	w := &s.wins[wi]
	w.hi = p + 1
	e.slideAdd(s, wi, p)
	length := e.slide[wi].length
	if length == unbounded {
		return
	}
	t := s.at(p).time
	for w.lo < w.hi && s.at(w.lo).time <= t-length {
		e.slideRemove(s, wi, w.lo)
		w.lo++
		w.ops++
	}
	if w.ops > 64 && w.ops > 2*int(w.hi-w.lo) {
		e.slideRebuildMoments(s, wi)
	}
}

// slideRebuild recomputes window wi from scratch to end at position p.
func (e *Engine) slideRebuild(s *slideState, wi int, p int64) {
	w := &s.wins[wi]
	for j := range w.acc {
		a := &w.acc[j]
		*a = slideAcc{mins: a.mins[:0], maxs: a.maxs[:0], last: a.last[:0], counts: a.counts, quant: a.quant}
		if a.counts != nil {
			a.counts = new(agg.Counts)
		}
		if a.quant != nil {
			a.quant = newQuantiles()
		}
	}
	lo := s.base
	if length := e.slide[wi].length; length != unbounded {
		t := s.at(p).time
		i := sort.Search(int(p-s.base)+1, func(j int) bool { return s.events[j].time > t-length })
		lo = s.base + int64(i)
	}
	w.lo, w.hi, w.ops = lo, p+1, 0
	for q := lo; q <= p; q++ {
		e.slideAdd(s, wi, q)
	}
}

// slideRebuildMoments recomputes the counts, sums and moments of window wi
// from its events, so removals do not accumulate rounding.
func (e *Engine) slideRebuildMoments(s *slideState, wi int) {
	w := &s.wins[wi]
	for j, g := range e.slide[wi].groups {
		if !g.moments {
			continue
		}
		a := &w.acc[j]
		a.n, a.nval, a.sum, a.mean, a.m2 = 0, 0, 0, 0, 0
		for q := w.lo; q < w.hi; q++ {
			ev := s.at(q)
			if g.flag >= 0 && ev.val(g.flag) == 0 {
				continue
			}
			a.n++
			if g.field >= 0 {
				a.addMoment(ev.val(g.field))
			}
		}
	}
	w.ops = 0
}

func (a *slideAcc) addMoment(x float64) {
	a.nval++
	a.sum += x
	d := x - a.mean
	a.mean += d / float64(a.nval)
	a.m2 += d * (x - a.mean)
}

func (a *slideAcc) removeMoment(x float64) {
	a.nval--
	if a.nval == 0 {
		a.sum, a.mean, a.m2 = 0, 0, 0
		return
	}
	a.sum -= x
	d := x - a.mean
	a.mean -= d / float64(a.nval)
	a.m2 -= d * (x - a.mean)
	a.m2 = max(a.m2, 0)
}

func (e *Engine) slideAdd(s *slideState, wi int, p int64) {
	ev := s.at(p)
	w := &s.wins[wi]
	for j, g := range e.slide[wi].groups {
		if g.flag >= 0 && ev.val(g.flag) == 0 {
			continue
		}
		a := &w.acc[j]
		if g.moments {
			a.n++
			if g.field >= 0 {
				a.addMoment(ev.val(g.field))
			}
		}
		if g.min {
			x := ev.val(g.field)
			for len(a.mins) > 0 && s.at(a.mins[len(a.mins)-1]).val(g.field) >= x {
				a.mins = a.mins[:len(a.mins)-1]
			}
			a.mins = push(a.mins, p)
		}
		if g.max {
			x := ev.val(g.field)
			for len(a.maxs) > 0 && s.at(a.maxs[len(a.maxs)-1]).val(g.field) <= x {
				a.maxs = a.maxs[:len(a.maxs)-1]
			}
			a.maxs = push(a.maxs, p)
		}
		if g.lastN > 0 {
			a.last = append(a.last, p)
			if len(a.last) > g.lastN {
				a.last = append(a.last[:0], a.last[1:]...)
			}
		}
		if g.counts {
			if a.counts == nil {
				a.counts = new(agg.Counts)
			}
			a.counts.Add(ev.x.cats[g.cat])
		}
		if g.quant {
			if a.quant == nil {
				a.quant = newQuantiles()
			}
			a.quant.Add(ev.val(g.field))
		}
	}
}

// slideRemove removes the event at p, the window's oldest, from window wi.
func (e *Engine) slideRemove(s *slideState, wi int, p int64) {
	ev := s.at(p)
	w := &s.wins[wi]
	for j, g := range e.slide[wi].groups {
		if g.flag >= 0 && ev.val(g.flag) == 0 {
			continue
		}
		a := &w.acc[j]
		if g.moments {
			a.n--
			if g.field >= 0 {
				a.removeMoment(ev.val(g.field))
			}
		}
		if len(a.mins) > 0 && a.mins[0] == p {
			a.mins = a.mins[1:]
		}
		if len(a.maxs) > 0 && a.maxs[0] == p {
			a.maxs = a.maxs[1:]
		}
		if len(a.last) > 0 && a.last[0] == p {
			a.last = a.last[1:]
		}
		if g.counts {
			a.counts.Remove(ev.x.cats[g.cat])
		}
		if g.quant {
			a.quant.Remove(ev.val(g.field))
		}
	}
}

// emitSliding emits every sliding view's row as of the event at absolute
// position p; the windows must end there. off is the offset of the event
// being applied; revises is -1 for an event's own row, else the offset of
// the event whose row this corrects.
func (e *Engine) emitSliding(s *slideState, p, off, revises int64, emit func(*Row)) {
	ev := s.at(p)
	for _, vi := range e.sliding {
		v := &e.views[vi]
		r := &e.rows[vi]
		r.Time, r.WindowStart, r.WindowEnd, r.Offset, r.Revises = ev.time, 0, 0, off, revises
		for fi, f := range v.features {
			fv := &r.Values[fi]
			fv.List, fv.Labels = fv.List[:0], fv.Labels[:0]
			if f.agg == aggTimeSinceLast {
				fv.Value = math.NaN()
				if p > s.base {
					fv.Value = float64(ev.time - s.at(p-1).time)
				}
				continue
			}
			if f.agg == aggRatio {
				continue
			}
			g := &e.slide[f.win].groups[f.group]
			a := &s.wins[f.win].acc[f.group]
			fv.Value = math.NaN()
			switch f.agg {
			case aggCount:
				fv.Value = float64(a.n)
			case aggSum:
				fv.Value = a.sum
			case aggMean:
				if a.nval > 0 {
					fv.Value = a.sum / float64(a.nval)
				}
			case aggVariance:
				if a.nval > 0 {
					fv.Value = a.m2 / float64(a.nval)
				}
			case aggStddev:
				if a.nval > 0 {
					fv.Value = math.Sqrt(a.m2 / float64(a.nval))
				}
			case aggMin:
				if len(a.mins) > 0 {
					fv.Value = s.at(a.mins[0]).val(g.field)
				}
			case aggMax:
				if len(a.maxs) > 0 {
					fv.Value = s.at(a.maxs[0]).val(g.field)
				}
			case aggLast:
				if len(a.last) > 0 {
					fv.Value = s.at(a.last[len(a.last)-1]).val(g.field)
				}
			case aggLastN:
				for i := len(a.last) - 1; i >= 0 && len(fv.List) < f.k; i-- {
					fv.List = append(fv.List, s.at(a.last[i]).val(g.field))
				}
				fv.Value = float64(len(fv.List))
			case aggDistinct:
				fv.Value = 0
				if a.counts != nil {
					fv.Value = float64(a.counts.Len())
				}
			case aggTopK:
				if a.counts != nil {
					fv.Labels = a.counts.TopK(f.k, fv.Labels)
				}
				fv.Value = float64(len(fv.Labels))
			case aggQuantile:
				if a.quant != nil {
					fv.Value = a.quant.Quantile(f.q)
				}
			}
		}
		ratios(v, r)
		emit(r)
	}
}

// ratios fills a row's ratio features from the features they divide.
func ratios(v *view, r *Row) {
	for fi, f := range v.features {
		if f.agg == aggRatio {
			r.Values[fi].Value = r.Values[f.of[0]].Value / r.Values[f.of[1]].Value
		}
	}
}

func newQuantiles() *agg.Quantiles {
	q, err := agg.NewQuantiles(quantileAccuracy)
	if err != nil {
		panic(err) // a constant accuracy
	}
	return q
}
