package processors

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The changelog (version 4) keeps one record per retained sliding event and
// one head record per entity with windowed views, so a transaction writes
// what changed (the events added and dropped, the heads of entities whose
// windows changed), not whole states: the cost per event does not grow with
// the window. See docs/format/changelog.md.

const changelogVersion = 4

// Record kinds, the last byte of a version 4 key and the second of its value.
const (
	kindHead  = 0x00
	kindEvent = 0x01
)

// appendEventKey appends an event record's key: the entity, the event's
// offset (big-endian, so that an entity's events sort in offset order) and
// kindEvent.
func appendEventKey(dst []byte, entity string, off int64) []byte {
	dst = append(dst, entity...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(off))
	return append(dst, kindEvent)
}

func headKey(entity string) []byte {
	return append([]byte(entity), kindHead)
}

// appendChangelog appends the changelog records that make the changelog
// hold st (nil: the entity expired) for the entity, whose committed state
// was prev (nil: none). It clears st's record of added and dropped events.
// The records, keys and values come from a.
func (e *Engine) appendChangelog(out []*kgo.Record, a *arena, topic string, part int32, entity string, prev, st *entityState) []*kgo.Record {
	rec := func(key, value []byte) {
		out = append(out, a.record(topic, part, key, value))
	}
	evKey := func(off int64) []byte {
		a.scratch = appendEventKey(a.scratch[:0], entity, off)
		return a.copy(a.scratch)
	}
	if st == nil {
		if prev == nil {
			return out
		}
		if prev.slide != nil {
			for _, ev := range prev.slide.events {
				rec(evKey(ev.off), nil)
			}
		}
		if len(e.windowed) > 0 {
			rec(headKey(entity), nil)
		}
		if prev.legacy {
			rec([]byte(entity), nil)
		}
		return out
	}
	if sl := st.slide; sl != nil {
		if st.legacy { // every event is new to version 4
			sl.added = sl.added[:0]
			for _, ev := range sl.events {
				sl.added = append(sl.added, ev.off)
			}
		}
		for _, off := range sl.added {
			if slices.Contains(sl.dropped, off) {
				continue
			}
			if ev := sl.find(off); ev != nil {
				k := evKey(off)
				a.scratch = e.appendEvent(a.scratch[:0], ev)
				rec(k, a.copy(a.scratch))
			}
		}
		for _, off := range sl.dropped {
			rec(evKey(off), nil)
		}
		sl.added, sl.dropped = sl.added[:0], sl.dropped[:0]
	}
	if len(e.windowed) > 0 {
		h := append(make([]byte, 0, 64), changelogVersion, kindHead)
		h = binary.LittleEndian.AppendUint64(h, e.fingerprint)
		h = binary.AppendVarint(h, st.maxTime)
		rec(headKey(entity), e.appendWindows(h, st))
	}
	if st.legacy {
		rec([]byte(entity), nil)
		st.legacy = false
	}
	return out
}

// written forgets which events were added and dropped since the state was
// last written, for states that are not written to a changelog.
func (s *entityState) written() {
	if s.slide != nil {
		s.slide.added, s.slide.dropped = s.slide.added[:0], s.slide.dropped[:0]
	}
}

// find returns the retained event with source offset off: events added in
// a transaction are near the end.
func (s *slideState) find(off int64) *pastEvent {
	for i := len(s.events) - 1; i >= 0; i-- {
		if s.events[i].off == off {
			return &s.events[i]
		}
	}
	return nil
}

func (e *Engine) appendEvent(dst []byte, ev *pastEvent) []byte {
	dst = append(dst, changelogVersion, kindEvent)
	dst = binary.LittleEndian.AppendUint64(dst, e.fingerprint)
	dst = binary.AppendVarint(dst, ev.time)
	for i := range e.NumValues() {
		dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(ev.val(i)))
	}
	for _, c := range ev.cats() {
		dst = appendString(dst, c)
	}
	return dst
}

// restorer rebuilds entity states from changelog records read in offset
// order.
type restorer struct {
	e        *Engine
	entities map[string]*restoring
}

type restoring struct {
	head   *entityState // the head's windows and max time; nil: none
	events map[int64]pastEvent
	legacy *entityState // a version 2 or 3 whole state
}

func (e *Engine) newRestorer() *restorer {
	return &restorer{e: e, entities: map[string]*restoring{}}
}

func (r *restorer) entity(name string) *restoring {
	x := r.entities[name]
	if x == nil {
		x = &restoring{}
		r.entities[name] = x
	}
	return x
}

// apply takes one changelog record (value nil: a tombstone).
func (r *restorer) apply(key, value []byte) error {
	if len(value) > 0 && value[0] != changelogVersion {
		st, err := r.e.decodeState(value)
		if err != nil {
			return err
		}
		st.legacy = true
		r.entity(string(key)).legacy = st
		return nil
	}
	if len(key) == 0 {
		return fmt.Errorf("%w: empty key", errCorruptState)
	}
	switch key[len(key)-1] {
	case kindEvent:
		if len(key) < 9 {
			return fmt.Errorf("%w: event key too short", errCorruptState)
		}
		name := string(key[:len(key)-9])
		off := int64(binary.BigEndian.Uint64(key[len(key)-9:]))
		x := r.entities[name]
		if value == nil {
			if x != nil {
				delete(x.events, off)
			}
			return nil
		}
		ev, err := r.e.decodeEvent(value)
		if err != nil {
			return err
		}
		ev.off = off
		x = r.entity(name)
		if x.events == nil {
			x.events = map[int64]pastEvent{}
		}
		x.events[off] = ev
	case kindHead:
		name := string(key[:len(key)-1])
		if value == nil {
			if x := r.entities[name]; x != nil {
				x.head = nil
			}
			return nil
		}
		st, err := r.e.decodeHead(value)
		if err != nil {
			return err
		}
		r.entity(name).head = st
	default:
		if value == nil { // a version 2 or 3 record's tombstone
			if x := r.entities[string(key)]; x != nil {
				x.legacy = nil
			}
			return nil
		}
		return fmt.Errorf("%w: key kind %#x", errCorruptState, key[len(key)-1])
	}
	return nil
}

func (e *Engine) checkFingerprint(b []byte, kind byte) ([]byte, error) {
	if len(b) < 10 || b[1] != kind {
		return nil, fmt.Errorf("%w: record kind", errCorruptState)
	}
	if got := binary.LittleEndian.Uint64(b[2:10]); got != e.fingerprint {
		return nil, fmt.Errorf("%w (fingerprint %016x, the views now %016x): the windows, fields or lateness changed; delete the changelog topic and the processor's consumer group offsets to rebuild from the source, or revert the change", errOtherDefinition, got, e.fingerprint)
	}
	return b[10:], nil
}

func (e *Engine) decodeEvent(b []byte) (pastEvent, error) {
	body, err := e.checkFingerprint(b, kindEvent)
	if err != nil {
		return pastEvent{}, err
	}
	r := &reader{b: body}
	ev := pastEvent{time: r.varint("event time")}
	ev.makeRoom(e.NumValues(), len(e.cats))
	for i := range e.NumValues() {
		ev.setVal(i, r.float("event value"))
	}
	for i := range e.cats {
		ev.x.cats[i] = string(r.bytes("event category"))
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("trailing bytes")
	}
	return ev, r.err
}

func (e *Engine) decodeHead(b []byte) (*entityState, error) {
	body, err := e.checkFingerprint(b, kindHead)
	if err != nil {
		return nil, err
	}
	r := &reader{b: body}
	st := &entityState{maxTime: r.varint("max time"), wins: make([][]window, len(e.windowed))}
	e.decodeWindows(r, st)
	if r.err == nil && len(r.b) != 0 {
		r.fail("trailing bytes")
	}
	return st, r.err
}

// finish returns the restored states.
func (r *restorer) finish() map[string]*entityState {
	out := make(map[string]*entityState, len(r.entities))
	for name, x := range r.entities {
		if x.head == nil && len(x.events) == 0 {
			if x.legacy != nil {
				out[name] = x.legacy
			}
			continue
		}
		st := r.e.newState()
		if x.head != nil {
			st.maxTime = x.head.maxTime
			if st.wins != nil {
				st.wins = x.head.wins
			}
		}
		if st.slide != nil && len(x.events) > 0 {
			evs := make([]pastEvent, 0, len(x.events))
			for _, ev := range x.events {
				evs = append(evs, ev)
			}
			slices.SortFunc(evs, func(a, b pastEvent) int {
				if c := cmp64(a.time, b.time); c != 0 {
					return c
				}
				return cmp64(a.off, b.off)
			})
			st.slide.events = evs
			st.maxTime = max(st.maxTime, evs[len(evs)-1].time)
			r.e.rebuildSliding(st.slide)
		}
		out[name] = st
	}
	return out
}
