package processors

import (
	"math"
	"slices"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/processors/agg"
)

// Tumbling, hopping and session windows keep one set of mergeable
// accumulators per open window of an entity: no events. A window closes
// when the partition watermark reaches its end: its final row is emitted
// (emit: close or both) as of its last instant. It is kept for the view's
// allowed lateness after that: a late event within it updates the window
// and emits a corrected final row, which revises the previous one. After
// that the window is purged and an event for it is late.

// window is one open window of an entity.
type window struct {
	start, end int64 // [start, end); a session's end is its last event plus the gap
	closed     bool  // the watermark passed end
	lastOff    int64 // offset of the newest event added: a final row's provenance
	finalOff   int64 // offset the last final row carried; -1: none emitted
	acc        []winAcc
}

// winAcc accumulates one group of a window.
type winAcc struct {
	n             int64
	nval          int64
	sum, mean, m2 float64
	min, max      float64
	last          []timedValue // the newest passing values, newest first
	distinct      *agg.Distinct
	topk          *agg.TopK
	quant         *agg.Quantiles
}

type timedValue struct {
	time, off int64
	v         float64
}

func cloneWindows(ws [][]window) [][]window {
	c := make([][]window, len(ws))
	for i, vs := range ws {
		c[i] = make([]window, len(vs), len(vs)+1)
		for j, w := range vs {
			c[i][j] = w.clone()
		}
	}
	return c
}

func (w window) clone() window {
	c := w
	c.acc = make([]winAcc, len(w.acc))
	for i, a := range w.acc {
		ca := a
		ca.last = slices.Clone(a.last)
		if a.distinct != nil {
			ca.distinct = a.distinct.Clone()
		}
		if a.topk != nil {
			ca.topk = a.topk.Clone()
		}
		if a.quant != nil {
			ca.quant = a.quant.Clone()
		}
		c.acc[i] = ca
	}
	return c
}

func (e *Engine) newWindow(v *view, start, end int64) window {
	w := window{start: start, end: end, finalOff: -1, acc: make([]winAcc, len(v.groups))}
	for i, g := range v.groups {
		a := &w.acc[i]
		a.min, a.max = math.Inf(1), math.Inf(-1)
		if g.distinct {
			a.distinct = agg.NewDistinct(distinctExact)
		}
		if g.topk {
			a.topk = agg.NewTopK(topKCapacity)
		}
		if g.quant {
			a.quant = newQuantiles()
		}
	}
	return w
}

// applyWindowed adds the event to the windows of view vi it falls in.
func (e *Engine) applyWindowed(vi int, ws *[]window, in Input, emit func(*Row)) {
	v := &e.views[vi]
	if v.kind == config.KindSession {
		e.applySession(vi, ws, in, emit)
		return
	}
	// The windows [s, s+window) with s a multiple of hop and s <= t < s+window.
	first := floorDiv(in.Time-v.window, v.hop)*v.hop + v.hop
	for start := first; start <= in.Time; start += v.hop {
		i, found := slices.BinarySearchFunc(*ws, start, func(w window, s int64) int { return cmp64(w.start, s) })
		if !found {
			*ws = slices.Insert(*ws, i, e.newWindow(v, start, start+v.window))
		}
		e.addToWindow(vi, &(*ws)[i], in, emit)
	}
}

// applySession adds the event to the entity's session it extends, merging
// sessions it bridges, or starts a new one.
func (e *Engine) applySession(vi int, ws *[]window, in Input, emit func(*Row)) {
	v := &e.views[vi]
	nw := e.newWindow(v, in.Time, in.Time+v.gap)
	// Sessions overlapping [t, t+gap) merge with it; they are sorted by start.
	var merged []int
	for i, w := range *ws {
		if w.start < in.Time+v.gap && in.Time < w.end {
			merged = append(merged, i)
		}
	}
	target := nw
	revises := int64(-1)
	closed := false
	for _, i := range merged {
		w := &(*ws)[i]
		if len(merged) == 1 && w.start <= in.Time {
			revises, closed = w.finalOff, w.closed
		}
		target.start, target.end = min(target.start, w.start), max(target.end, w.end)
		target.lastOff = max(target.lastOff, w.lastOff)
		for gi := range target.acc {
			mergeAcc(&target.acc[gi], &w.acc[gi])
		}
	}
	if len(merged) > 0 {
		*ws = slices.Delete(*ws, merged[0], merged[len(merged)-1]+1)
	}
	// A session that only grew keeps its identity (start) and, if its final
	// row went out, its corrections revise that row; merged sessions are a
	// new window whose final row supersedes theirs.
	target.finalOff, target.closed = revises, closed && in.Watermark >= target.end
	i, _ := slices.BinarySearchFunc(*ws, target.start, func(w window, s int64) int { return cmp64(w.start, s) })
	*ws = slices.Insert(*ws, i, target)
	e.addToWindow(vi, &(*ws)[i], in, emit)
}

// addToWindow adds the event to w and emits the rows that changes.
func (e *Engine) addToWindow(vi int, w *window, in Input, emit func(*Row)) {
	v := &e.views[vi]
	for gi, g := range v.groups {
		if g.flag >= 0 && in.Vals[g.flag] == 0 {
			continue
		}
		a := &w.acc[gi]
		a.n++
		var x float64
		if g.field >= 0 {
			x = in.Vals[g.field]
			a.nval++
			a.sum += x
			d := x - a.mean
			a.mean += d / float64(a.nval)
			a.m2 += d * (x - a.mean)
			a.min, a.max = min(a.min, x), max(a.max, x)
		}
		if g.lastN > 0 {
			tv := timedValue{time: in.Time, off: in.Offset, v: x}
			i, _ := slices.BinarySearchFunc(a.last, tv, newerFirst)
			if i < g.lastN {
				a.last = slices.Insert(a.last, i, tv)
				if len(a.last) > g.lastN {
					a.last = a.last[:g.lastN]
				}
			}
		}
		if g.distinct {
			a.distinct.Add(in.Cats[g.cat])
		}
		if g.topk {
			a.topk.Add(in.Cats[g.cat])
		}
		if g.quant {
			a.quant.Add(x)
		}
	}
	w.lastOff = max(w.lastOff, in.Offset)
	if v.emitUpdate {
		e.emitWindow(vi, w, in.Time, in.Offset, -1, emit)
	}
	if w.closed && v.emitClose {
		e.emitWindow(vi, w, w.end-1, in.Offset, w.finalOff, emit)
		w.finalOff = in.Offset
	}
}

// newerFirst orders timed values newest first; equal times by offset.
func newerFirst(a, b timedValue) int {
	if c := cmp64(b.time, a.time); c != 0 {
		return c
	}
	return cmp64(b.off, a.off)
}

// mergeAcc merges b into a (session windows).
func mergeAcc(a, b *winAcc) {
	if b.nval > 0 {
		if a.nval == 0 {
			a.mean, a.m2 = b.mean, b.m2
		} else { // Chan et al.'s parallel update
			n := float64(a.nval + b.nval)
			d := b.mean - a.mean
			a.m2 += b.m2 + d*d*float64(a.nval)*float64(b.nval)/n
			a.mean += d * float64(b.nval) / n
		}
	}
	a.n += b.n
	a.nval += b.nval
	a.sum += b.sum
	a.min, a.max = min(a.min, b.min), max(a.max, b.max)
	if len(b.last) > 0 {
		n := max(len(a.last), len(b.last))
		all := append(slices.Clone(a.last), b.last...)
		slices.SortFunc(all, newerFirst)
		a.last = all[:min(n, len(all))]
	}
	if b.distinct != nil {
		a.distinct.Merge(b.distinct)
	}
	if b.topk != nil {
		a.topk.Merge(b.topk)
	}
	if b.quant != nil {
		a.quant.Merge(b.quant)
	}
}

// emitWindow emits view vi's row for window w as of time at.
func (e *Engine) emitWindow(vi int, w *window, at, off, revises int64, emit func(*Row)) {
	v := &e.views[vi]
	r := &e.rows[vi]
	r.Time, r.WindowStart, r.WindowEnd, r.Offset, r.Revises = at, w.start, w.end, off, revises
	for fi, f := range v.features {
		fv := &r.Values[fi]
		fv.List, fv.Labels = fv.List[:0], fv.Labels[:0]
		if f.agg == aggRatio {
			continue
		}
		a := &w.acc[f.group]
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
			if a.nval > 0 {
				fv.Value = a.min
			}
		case aggMax:
			if a.nval > 0 {
				fv.Value = a.max
			}
		case aggLast:
			if len(a.last) > 0 {
				fv.Value = a.last[0].v
			}
		case aggLastN:
			for i := 0; i < len(a.last) && i < f.k; i++ {
				fv.List = append(fv.List, a.last[i].v)
			}
			fv.Value = float64(len(fv.List))
		case aggDistinct:
			fv.Value = float64(a.distinct.Estimate())
		case aggTopK:
			fv.Labels = a.topk.Top(f.k, fv.Labels)
			fv.Value = float64(len(fv.Labels))
		case aggQuantile:
			fv.Value = a.quant.Quantile(f.q)
		}
	}
	ratios(v, r)
	emit(r)
}

// Advance closes the entity's windows the watermark wm has passed,
// emitting their final rows, and purges those past their allowed lateness.
// It returns the time the entity next needs Advance (math.MaxInt64: never)
// and whether it changed st, which must then be the caller's private copy.
func (e *Engine) Advance(st *entityState, wm int64, emit func(*Row)) (next int64, changed bool) {
	next = math.MaxInt64
	for _, vi := range e.windowed {
		v := &e.views[vi]
		ws := &st.wins[v.slot]
		keep := (*ws)[:0]
		for _, w := range *ws {
			if !w.closed && wm >= w.end {
				w.closed, changed = true, true
				if v.emitClose {
					e.emitWindow(vi, &w, w.end-1, w.lastOff, w.finalOff, emit)
					w.finalOff = w.lastOff
				}
			}
			if w.closed && wm >= w.end+v.lateness {
				changed = true
				continue // purged
			}
			keep = append(keep, w)
			if w.closed {
				next = min(next, w.end+v.lateness)
			} else {
				next = min(next, w.end)
			}
		}
		clear((*ws)[len(keep):])
		*ws = keep
	}
	return next, changed
}

// NextTimer is the time the entity next needs Advance (math.MaxInt64: never).
func (e *Engine) NextTimer(st *entityState) int64 {
	next := int64(math.MaxInt64)
	for _, vi := range e.windowed {
		v := &e.views[vi]
		for _, w := range st.wins[v.slot] {
			if w.closed {
				next = min(next, w.end+v.lateness)
			} else {
				next = min(next, w.end)
			}
		}
	}
	return next
}

// openWindows reports whether the entity has windows not yet purged.
func (st *entityState) openWindows() bool {
	for _, ws := range st.wins {
		if len(ws) > 0 {
			return true
		}
	}
	return false
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func cmp64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
