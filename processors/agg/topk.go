package agg

import (
	"encoding/binary"
	"math"
	"strings"
)

// TopK finds the most frequent categories of a window that cannot remove:
// counts are exact while at most capacity categories have been seen, then it
// runs Space-Saving (Metwally, Agrawal and El Abbadi, "Efficient computation
// of frequent and top-k elements in data streams", ICDT 2005) with capacity
// counters: a new category takes over the smallest counter, inheriting its
// count as the new counter's error.
//
// Guarantees, for N values added (Total) and m = capacity: every estimate
// overcounts by at most its error and err ≤ N/m, so f ≤ count ≤ f + N/m;
// and every category with f > N/m is tracked, so Top(m) reports it.
//
// Merge is the parallel Space-Saving merge (Cafaro, Pulimeno and Tempesta,
// Information Sciences 2016; cf. Agarwal et al., "Mergeable summaries",
// PODS 2012): a category's merged count and error add its counter on each
// side, or that side's smallest counter when the side is full and does not
// track it (a category one side does not track occurred there at most that
// often), and the m largest merged counters are kept. Merging two TopK of
// capacity m keeps both guarantees with N the sum of both sides' totals, so
// they hold over any tree of merges.
//
// Add costs O(log m), Top(k) O(m log k). A zero TopK has no capacity: make
// one with NewTopK or Decode.
type TopK struct {
	capacity int
	total    uint64
	idx      map[string]int32 // category → index in h
	h        []topEntry       // a min-heap of the counters by count
	scratch  []int32
}

type topEntry struct {
	cat    string
	n, err uint64
}

// NewTopK returns a TopK with capacity counters. It panics if capacity < 1.
func NewTopK(capacity int) *TopK {
	if capacity < 1 {
		panic("agg: NewTopK: capacity < 1")
	}
	return &TopK{capacity: capacity}
}

// Capacity returns the number of counters.
func (t *TopK) Capacity() int { return t.capacity }

// Total returns the number of values added, over merges too.
func (t *TopK) Total() uint64 { return t.total }

// Add counts one occurrence of cat.
func (t *TopK) Add(cat string) {
	if t.capacity < 1 {
		panic("agg: TopK.Add on a TopK not made by NewTopK or Decode")
	}
	t.total++
	if i, ok := t.idx[cat]; ok {
		t.h[i].n++
		t.down(int(i))
		return
	}
	if t.idx == nil {
		t.idx = make(map[string]int32)
	}
	cat = strings.Clone(cat)
	if len(t.h) < t.capacity {
		t.h = append(t.h, topEntry{cat: cat, n: 1})
		t.idx[cat] = int32(len(t.h) - 1)
		t.up(len(t.h) - 1)
		return
	}
	e := &t.h[0]
	delete(t.idx, e.cat)
	*e = topEntry{cat: cat, n: e.n + 1, err: e.n}
	t.idx[cat] = 0
	t.down(0)
}

// Count returns cat's estimated count and the most it overcounts by: the
// true count lies in [n-err, n]. It returns 0, 0 for a category not tracked,
// whose true count is at most the smallest tracked count.
func (t *TopK) Count(cat string) (n, err uint64) {
	if i, ok := t.idx[cat]; ok {
		return t.h[i].n, t.h[i].err
	}
	return 0, 0
}

// Top appends to dst the k tracked categories with the highest estimated
// counts, highest first; equal counts are ordered by category (ascending
// bytes).
func (t *TopK) Top(k int, dst []string) []string {
	if k <= 0 {
		return dst
	}
	ids := t.scratch[:0]
	for i := range t.h {
		ids = append(ids, int32(i))
	}
	for _, i := range selectBest(ids, k, t.better) {
		dst = append(dst, t.h[i].cat)
	}
	t.scratch = ids[:0]
	return dst
}

func (t *TopK) better(a, b int32) bool {
	x, y := &t.h[a], &t.h[b]
	return x.n > y.n || x.n == y.n && x.cat < y.cat
}

// floor is the count a category not tracked can have had at most.
func (t *TopK) floor() uint64 {
	if len(t.h) < t.capacity {
		return 0 // never evicted: untracked means never seen
	}
	return t.h[0].n
}

// Merge adds o's counts to t (see TopK for the merge and its bounds); t keeps
// its capacity.
func (t *TopK) Merge(o *TopK) {
	if len(o.h) == 0 {
		t.total += o.total
		return
	}
	ft, fo := t.floor(), o.floor()
	all := make([]topEntry, 0, len(t.h)+len(o.h))
	for _, e := range t.h {
		if i, ok := o.idx[e.cat]; ok {
			e.n, e.err = e.n+o.h[i].n, e.err+o.h[i].err
		} else {
			e.n, e.err = e.n+fo, e.err+fo
		}
		all = append(all, e)
	}
	for _, e := range o.h {
		if _, ok := t.idx[e.cat]; !ok {
			all = append(all, topEntry{cat: e.cat, n: e.n + ft, err: e.err + ft})
		}
	}
	t.total += o.total
	t.h = all
	ids := make([]int32, len(all))
	for i := range ids {
		ids[i] = int32(i)
	}
	keep := selectBest(ids, t.capacity, t.better)
	// Best first is a valid min-heap only reversed.
	h := make([]topEntry, len(keep))
	for i, id := range keep {
		h[len(keep)-1-i] = all[id]
	}
	t.h = h
	t.idx = make(map[string]int32, len(h))
	for i := range h {
		t.idx[h[i].cat] = int32(i)
	}
}

// Clone returns a deep copy of t.
func (t *TopK) Clone() *TopK {
	o := &TopK{capacity: t.capacity, total: t.total, h: append([]topEntry(nil), t.h...)}
	if t.idx != nil {
		o.idx = make(map[string]int32, len(t.idx))
		for k, v := range t.idx {
			o.idx[k] = v
		}
	}
	return o
}

// AppendBinary appends t's encoding to dst.
func (t *TopK) AppendBinary(dst []byte) []byte {
	dst = append(dst, headerTopK)
	dst = binary.AppendUvarint(dst, uint64(t.capacity))
	dst = binary.AppendUvarint(dst, t.total)
	dst = binary.AppendUvarint(dst, uint64(len(t.h)))
	for _, e := range t.h {
		dst = appendString(dst, e.cat)
		dst = binary.AppendUvarint(dst, e.n)
		dst = binary.AppendUvarint(dst, e.err)
	}
	return dst
}

// Decode replaces t with the TopK encoded at the front of b and returns the
// bytes after it. On error t is unchanged.
func (t *TopK) Decode(b []byte) (rest []byte, err error) {
	d := decoder{b: b, what: "top-k"}
	d.header(headerTopK)
	capacity := d.uvarint()
	total := d.uvarint()
	n := d.count(3)
	if d.err == nil && (capacity < 1 || capacity > math.MaxInt32 || uint64(n) > capacity) {
		d.fail("%d counters, capacity %d", n, capacity)
	}
	o := TopK{capacity: int(capacity), total: total, h: make([]topEntry, 0, n)}
	if n > 0 {
		o.idx = make(map[string]int32, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		e := topEntry{cat: string(d.bytes()), n: d.uvarint(), err: d.uvarint()}
		_, dup := o.idx[e.cat]
		switch {
		case d.err != nil:
		case e.err >= e.n:
			d.fail("category %q: count %d, error %d", e.cat, e.n, e.err)
		case dup:
			d.fail("category %q repeated", e.cat)
		case i > 0 && o.h[(i-1)/2].n > e.n:
			d.fail("counters out of heap order")
		default:
			o.idx[e.cat] = int32(i)
			o.h = append(o.h, e)
		}
	}
	if d.err != nil {
		return b, d.err
	}
	*t = o
	return d.b, nil
}

func (t *TopK) swap(i, j int) {
	t.h[i], t.h[j] = t.h[j], t.h[i]
	t.idx[t.h[i].cat] = int32(i)
	t.idx[t.h[j].cat] = int32(j)
}

func (t *TopK) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if t.h[p].n <= t.h[i].n {
			return
		}
		t.swap(i, p)
		i = p
	}
}

func (t *TopK) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(t.h) {
			return
		}
		m := l
		if r := l + 1; r < len(t.h) && t.h[r].n < t.h[l].n {
			m = r
		}
		if t.h[i].n <= t.h[m].n {
			return
		}
		t.swap(i, m)
		i = m
	}
}
