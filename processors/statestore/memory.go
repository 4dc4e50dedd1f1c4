package statestore

import (
	"slices"
	"sync/atomic"
	"unsafe"
)

// bucketShift sets the width of the memory store's time buckets: 2^20 ms,
// about 17 minutes. Expired visits whole buckets before the horizon and
// checks each entity's time only in the horizon's own bucket.
const bucketShift = 20

// memory is the in-memory Store: a map of entities and, as the time index,
// buckets of entities by newest event time. An entity is in exactly one
// bucket, at position pos, so moving it to a newer bucket is O(1).
type memory[S any] struct {
	m       map[string]*memEntry[S]
	buckets map[int64]*bucket[S] // by time >> bucketShift
	order   []int64              // bucket ids ascending; may hold empty buckets until Expired passes them

	perEntry int64        // estimated heap per entity besides its key and state
	sizer    bool         // S implements Sizer
	n        atomic.Int64 // entities
	held     atomic.Int64 // bytes of keys and Sizer states
}

// memEntry is an entity's entry, updated in place: an update of an entity
// whose time stays in its bucket costs one map lookup.
type memEntry[S any] struct {
	key   string
	state S
	time  int64
	b     *bucket[S] // the bucket of time
	size  int32      // the state's SizeBytes when Put, if it is a Sizer
	pos   int32      // index in b
}

// bucket holds the entries whose times share a bucket id. An entity moved
// out of a bucket is replaced by the bucket's last, whose entry the slot
// points at, so a move costs no map lookup.
type bucket[S any] struct {
	slots []slot[S]
}

type slot[S any] struct {
	e    *memEntry[S]
	time int64
}

var _ Store[int] = (*memory[int])(nil)

// NewMemory returns an empty in-memory store. It keeps states as given,
// without encoding them.
func NewMemory[S any]() Store[S] {
	s := &memory[S]{m: map[string]*memEntry[S]{}, buckets: map[int64]*bucket[S]{}}
	_, s.sizer = any(*new(S)).(Sizer)
	// A map slot (key header and entry pointer) in a table half full on
	// average (Go's maps double at 7/8), the entry, a bucket slot with
	// slack for growth, and the key's allocation rounding.
	slotBytes := int64(unsafe.Sizeof("")) + int64(unsafe.Sizeof((*memEntry[S])(nil)))
	s.perEntry = slotBytes*2 + int64(unsafe.Sizeof(memEntry[S]{})) + int64(unsafe.Sizeof(slot[S]{}))*3/2 + 8
	return s
}

func (s *memory[S]) Get(key string) (S, bool, error) {
	if e := s.m[key]; e != nil {
		return e.state, true, nil
	}
	var zero S
	return zero, false, nil
}

func (s *memory[S]) Apply(puts []Put[S]) error {
	if err := checkKeys(puts); err != nil {
		return err
	}
	var dn, dheld int64
	for i := range puts {
		p := &puts[i]
		e := s.m[p.Key]
		if e != nil {
			dheld -= int64(len(p.Key)) + int64(e.size)
		}
		if p.Delete {
			if e != nil {
				s.unindex(e)
				delete(s.m, p.Key)
				dn--
			}
			continue
		}
		switch {
		case e == nil:
			e = &memEntry[S]{key: p.Key, time: p.Time}
			s.index(e)
			s.m[p.Key] = e
			dn++
		case e.time>>bucketShift == p.Time>>bucketShift:
			e.time = p.Time
			e.b.slots[e.pos].time = p.Time
		default:
			s.unindex(e)
			e.time = p.Time
			s.index(e)
		}
		e.state, e.size = p.State, 0
		if s.sizer {
			e.size = int32(min(any(p.State).(Sizer).SizeBytes(), 1<<31-1))
		}
		dheld += int64(len(p.Key)) + int64(e.size)
	}
	s.n.Add(dn)
	s.held.Add(dheld)
	return nil
}

// index adds e to the bucket of its time.
func (s *memory[S]) index(e *memEntry[S]) {
	id := e.time >> bucketShift
	b := s.buckets[id]
	if b == nil {
		b = &bucket[S]{}
		s.buckets[id] = b
		i, _ := slices.BinarySearch(s.order, id)
		s.order = slices.Insert(s.order, i, id)
	}
	b.slots = append(b.slots, slot[S]{e: e, time: e.time})
	e.b, e.pos = b, int32(len(b.slots)-1)
}

// unindex removes e from its bucket, moving the bucket's last entity into
// its place.
func (s *memory[S]) unindex(e *memEntry[S]) {
	b := e.b
	last := int32(len(b.slots) - 1)
	if e.pos != last {
		moved := b.slots[last]
		b.slots[e.pos] = moved
		moved.e.pos = e.pos
	}
	e.b = nil
	if last == 0 {
		b.slots = nil // an empty bucket gives its memory back
		return
	}
	b.slots[last] = slot[S]{}
	b.slots = b.slots[:last]
}

func (s *memory[S]) Expired(horizon int64, fn func(key string) bool) error {
	hb := horizon >> bucketShift
	visited, empty := 0, 0
	defer func() {
		if empty == 0 {
			return
		}
		// Forget the empty buckets Expired passed.
		kept := s.order[:0]
		for _, id := range s.order[:visited] {
			if len(s.buckets[id].slots) == 0 {
				delete(s.buckets, id)
				continue
			}
			kept = append(kept, id)
		}
		s.order = append(kept, s.order[visited:]...)
	}()
	for _, id := range s.order {
		if id > hb {
			break
		}
		visited++
		b := s.buckets[id]
		if len(b.slots) == 0 {
			empty++
			continue
		}
		for _, sl := range b.slots {
			if (id < hb || sl.time < horizon) && !fn(sl.e.key) {
				return nil
			}
		}
	}
	return nil
}

func (s *memory[S]) Len() int { return int(s.n.Load()) }

func (s *memory[S]) SizeBytes() int64 {
	return s.held.Load() + s.n.Load()*s.perEntry
}

func (s *memory[S]) Close() error {
	s.m, s.buckets, s.order = nil, nil, nil
	s.n.Store(0)
	s.held.Store(0)
	return nil
}
