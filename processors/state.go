package processors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
)

// entityState is everything an entity's features need.
type entityState struct {
	maxTime int64
	slide   *slideState // nil when the source has no sliding views
	wins    [][]window  // per windowed view (view.slot): its open windows, by start
	// legacy: the changelog holds this entity in a version 2 or 3 record
	// under its plain key, to be replaced by version 4 records.
	legacy bool
	// size caches SizeBytes; 0: not known. The task refreshes it after
	// each change, while the state is still in the CPU's cache: the
	// store reads it at commit, when it no longer is.
	size int32
}

func (s *entityState) clone() *entityState {
	c := &entityState{maxTime: s.maxTime, legacy: s.legacy}
	if s.slide != nil {
		c.slide = s.slide.clone()
	}
	if s.wins != nil {
		c.wins = cloneWindows(s.wins)
	}
	return c
}

// snapshotVersion is the first byte of a whole entity's state encoded by
// appendState (the on-disk store's values; changelog values before version
// 4).
const snapshotVersion = 3

var errCorruptState = errors.New("corrupt changelog state")

// errOtherDefinition is returned for state written under another definition
// of the source's views.
var errOtherDefinition = errors.New("changelog state was written for another definition of the views")

// appendState encodes a whole entity's state (see docs/format/changelog.md,
// version 3). It carries the engine's fingerprint: state written under
// another definition of the views is refused.
func (e *Engine) appendState(dst []byte, s *entityState) []byte {
	nv := e.NumValues()
	dst = append(dst, snapshotVersion)
	dst = binary.LittleEndian.AppendUint64(dst, e.fingerprint)
	dst = binary.AppendVarint(dst, s.maxTime)
	var flags byte
	if s.legacy {
		flags |= 1
	}
	dst = append(dst, flags)
	if len(e.sliding) > 0 {
		sl := s.slide
		dst = binary.AppendUvarint(dst, uint64(len(sl.events)))
		var prev int64
		for _, ev := range sl.events {
			dst = binary.AppendVarint(dst, s.maxTime-ev.time)
			dst = binary.AppendVarint(dst, ev.off-prev)
			prev = ev.off
			for i := range nv {
				dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(ev.val(i)))
			}
			for _, c := range ev.cats() {
				dst = appendString(dst, c)
			}
		}
	}
	return e.appendWindows(dst, s)
}

// appendWindows encodes the windowed views' open windows.
func (e *Engine) appendWindows(dst []byte, s *entityState) []byte {
	for _, vi := range e.windowed {
		v := &e.views[vi]
		ws := s.wins[v.slot]
		dst = binary.AppendUvarint(dst, uint64(len(ws)))
		for _, w := range ws {
			dst = binary.AppendVarint(dst, w.start)
			dst = binary.AppendVarint(dst, w.end-w.start)
			closed := byte(0)
			if w.closed {
				closed = 1
			}
			dst = append(dst, closed)
			dst = binary.AppendVarint(dst, w.lastOff)
			dst = binary.AppendVarint(dst, w.finalOff)
			for gi, g := range v.groups {
				dst = appendWinAcc(dst, &w.acc[gi], g)
			}
		}
	}
	return dst
}

func appendWinAcc(dst []byte, a *winAcc, g group) []byte {
	dst = binary.AppendVarint(dst, a.n)
	dst = binary.AppendVarint(dst, a.nval)
	for _, f := range []float64{a.sum, a.mean, a.m2, a.min, a.max} {
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(f))
	}
	dst = binary.AppendUvarint(dst, uint64(len(a.last)))
	for _, tv := range a.last {
		dst = binary.AppendVarint(dst, tv.time)
		dst = binary.AppendVarint(dst, tv.off)
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(tv.v))
	}
	if g.distinct {
		dst = appendBlob(dst, a.distinct.AppendBinary(nil))
	}
	if g.topk {
		dst = appendBlob(dst, a.topk.AppendBinary(nil))
	}
	if g.quant {
		dst = appendBlob(dst, a.quant.AppendBinary(nil))
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendBlob(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// reader decodes a changelog value, remembering the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", errCorruptState, what)
	}
}

func (r *reader) varint(what string) int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(what)
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) uvarint(what string, limit uint64) uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 || v > limit {
		r.fail(what)
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) float(what string) float64 {
	if len(r.b) < 8 {
		r.fail(what)
		r.b = nil
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return v
}

func (r *reader) byte1(what string) byte {
	if len(r.b) < 1 {
		r.fail(what)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *reader) bytes(what string) []byte {
	n := r.uvarint(what, uint64(len(r.b)))
	if r.err != nil || n > uint64(len(r.b)) {
		r.fail(what)
		r.b = nil
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// decodeState decodes a whole entity's state written by appendState, or a
// version 2 changelog value of sliding-only views.
func (e *Engine) decodeState(b []byte) (*entityState, error) {
	if len(b) == 0 || (b[0] != snapshotVersion && b[0] != 2) {
		return nil, fmt.Errorf("%w: unknown version byte", errCorruptState)
	}
	if len(b) < 9 {
		return nil, fmt.Errorf("%w: fingerprint", errCorruptState)
	}
	want := e.fingerprint
	if b[0] == 2 {
		want = e.legacyFP
		if len(e.windowed) > 0 || len(e.cats) > 0 {
			want = ^e.legacyFP // version 2 held sliding numeric views only
		}
	}
	if got := binary.LittleEndian.Uint64(b[1:9]); got != want {
		return nil, fmt.Errorf("%w (fingerprint %016x, the views now %016x): the windows, fields or lateness changed; delete the changelog topic and the processor's consumer group offsets to rebuild from the source, or revert the change", errOtherDefinition, got, want)
	}
	if b[0] == 2 {
		return e.decodeV2(b[9:])
	}
	r := &reader{b: b[9:]}
	st := e.newState()
	st.maxTime = r.varint("max time")
	flags := r.byte1("flags")
	st.legacy = flags&1 != 0
	if flags > 1 {
		r.fail("flags")
	}
	nv := e.NumValues()
	if len(e.sliding) > 0 {
		sl := st.slide
		ne := r.uvarint("event count", uint64(len(r.b)))
		sl.events = make([]pastEvent, 0, ne)
		var off int64
		for range int(ne) {
			if r.err != nil {
				break
			}
			ev := pastEvent{time: st.maxTime - r.varint("event time")}
			off += r.varint("event offset")
			ev.off = off
			ev.makeRoom(nv, len(e.cats))
			for j := range nv {
				ev.setVal(j, r.float("event value"))
			}
			for j := range e.cats {
				ev.x.cats[j] = string(r.bytes("event category"))
			}
			if n := len(sl.events); n > 0 && ev.time < sl.events[n-1].time {
				r.fail("events out of time order")
			}
			sl.events = append(sl.events, ev)
		}
		if r.err == nil && len(sl.events) > 0 {
			e.rebuildSliding(sl)
		}
	}
	e.decodeWindows(r, st)
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errCorruptState, len(r.b))
	}
	return st, nil
}

// decodeWindows decodes what appendWindows wrote into st.
func (e *Engine) decodeWindows(r *reader, st *entityState) {
	for _, vi := range e.windowed {
		v := &e.views[vi]
		nw := r.uvarint("window count", uint64(len(r.b)))
		for range nw {
			if r.err != nil {
				break
			}
			start := r.varint("window start")
			w := e.newWindow(v, start, start+r.varint("window length"))
			w.closed = r.byte1("window closed") == 1
			w.lastOff = r.varint("window offset")
			w.finalOff = r.varint("window final offset")
			for gi, g := range v.groups {
				decodeWinAcc(r, &w.acc[gi], g)
			}
			st.wins[v.slot] = append(st.wins[v.slot], w)
		}
	}
}

func decodeWinAcc(r *reader, a *winAcc, g group) {
	a.n = r.varint("count")
	a.nval = r.varint("value count")
	a.sum, a.mean, a.m2, a.min, a.max = r.float("sum"), r.float("mean"), r.float("m2"), r.float("min"), r.float("max")
	nl := r.uvarint("last count", uint64(len(r.b)))
	for range nl {
		if r.err != nil {
			return
		}
		a.last = append(a.last, timedValue{time: r.varint("last time"), off: r.varint("last offset"), v: r.float("last value")})
	}
	sketch := func(what string, dec func([]byte) ([]byte, error)) {
		b := r.bytes(what)
		if r.err != nil {
			return
		}
		if rest, err := dec(b); err != nil || len(rest) != 0 {
			r.fail(what)
		}
	}
	if g.distinct {
		sketch("distinct sketch", a.distinct.Decode)
	}
	if g.topk {
		sketch("top-k sketch", a.topk.Decode)
	}
	if g.quant {
		sketch("quantile sketch", a.quant.Decode)
	}
}

// rebuildSliding recomputes every sliding window's accumulators to end at
// the newest retained event.
func (e *Engine) rebuildSliding(sl *slideState) {
	last := sl.end() - 1
	for wi := range sl.wins {
		e.slideRebuild(sl, wi, last)
	}
}

// decodeV2 decodes the body of a version 2 changelog value: sliding views,
// numeric fields, events in processing order without offsets (they get
// distinct negative ones).
func (e *Engine) decodeV2(b []byte) (*entityState, error) {
	r := &reader{b: b}
	st := e.newState()
	st.maxTime = r.varint("max time")
	nv := e.NumValues()
	if nf := r.uvarint("field count", 1<<16); r.err == nil && int(nf) != nv {
		return nil, fmt.Errorf("%w: %d fields, the views need %d", errCorruptState, nf, nv)
	}
	ne := r.uvarint("event count", uint64(len(r.b)))
	for range ne {
		if r.err != nil {
			break
		}
		ev := pastEvent{time: st.maxTime - r.varint("event time"), off: -1<<40 + int64(len(st.slide.events))}
		ev.makeRoom(nv, 0)
		for j := range nv {
			ev.setVal(j, r.float("event value"))
		}
		st.slide.events = append(st.slide.events, ev)
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errCorruptState, len(r.b))
	}
	sl := st.slide
	// Version 2 kept processing order; sort by time (stable keeps ties).
	slices.SortStableFunc(sl.events, func(a, b pastEvent) int { return cmp64(a.time, b.time) })
	if len(sl.events) > 0 {
		e.rebuildSliding(sl)
	}
	return st, nil
}
