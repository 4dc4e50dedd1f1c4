package processors

import (
	"container/heap"
	"math"
)

// timers schedule the entities of one partition whose windows close or are
// purged at a watermark: a min-heap of (time, entity) with the entity's
// current time in a map, so superseded heap entries are skipped. Changes
// are staged per transaction like the state: Commit keeps them, Abort puts
// back what the transaction took and forgets what it added.
type timers struct {
	h      timerHeap
	at     map[string]int64 // committed: each entity's next time
	staged map[string]int64 // this transaction's changes; MaxInt64: none
	taken  []timer          // popped in this transaction
}

type timer struct {
	at  int64
	key string
}

type timerHeap []timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func newTimers() *timers {
	return &timers{at: map[string]int64{}, staged: map[string]int64{}}
}

// current is the entity's next time as of this transaction.
func (t *timers) current(key string) int64 {
	if v, ok := t.staged[key]; ok {
		return v
	}
	if v, ok := t.at[key]; ok {
		return v
	}
	return math.MaxInt64
}

// set stages the entity's next time (MaxInt64: none).
func (t *timers) set(key string, at int64) {
	if t.current(key) != at {
		t.staged[key] = at
	}
}

// due pops the entities whose time is at or before wm, as of this
// transaction (staged times included), calling fn for each once.
func (t *timers) due(wm int64, fn func(key string)) {
	// Staged times are not in the heap yet: look at them first.
	var keys []string
	for k, at := range t.staged {
		if at <= wm {
			keys = append(keys, k)
		}
	}
	for _, k := range keys {
		fn(k)
	}
	for len(t.h) > 0 && t.h[0].at <= wm {
		e := heap.Pop(&t.h).(timer)
		t.taken = append(t.taken, e)
		if _, staged := t.staged[e.key]; staged || t.at[e.key] != e.at {
			continue // superseded
		}
		fn(e.key)
	}
}

// min is the earliest time scheduled (MaxInt64: none).
func (t *timers) min() int64 {
	m := int64(math.MaxInt64)
	for len(t.h) > 0 {
		e := t.h[0]
		if at, ok := t.at[e.key]; ok && at == e.at {
			m = e.at
			break
		}
		heap.Pop(&t.h) // superseded: drop for good (not part of any transaction's view)
	}
	for _, at := range t.staged {
		m = min(m, at)
	}
	return m
}

func (t *timers) commit() {
	for k, at := range t.staged {
		if at == math.MaxInt64 {
			delete(t.at, k)
			continue
		}
		t.at[k] = at
		heap.Push(&t.h, timer{at: at, key: k})
	}
	clear(t.staged)
	t.taken = t.taken[:0]
}

func (t *timers) abort() {
	for _, e := range t.taken {
		heap.Push(&t.h, e)
	}
	t.taken = t.taken[:0]
	clear(t.staged)
}

// len is the number of entities scheduled (committed).
func (t *timers) len() int { return len(t.at) }
