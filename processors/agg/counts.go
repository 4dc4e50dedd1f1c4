package agg

import (
	"encoding/binary"
	"strings"
)

// Counts are exact category counts with removal: sliding windows add an
// event's category when it enters the window and remove it when it leaves.
// Memory follows the distinct categories currently counted.
//
// The zero value is an empty Counts ready to use.
type Counts struct {
	idx  map[string]int32 // category → slot in ents
	ents []countEntry     // slots; a free slot has n == 0
	free []int32          // free slots, reused before ents grows

	// A cache of the best categories for TopK (see counts_top.go).
	top      []int32 // slots, best first: exactly the len(top) best categories
	topCap   int     // most slots top keeps
	complete bool    // top holds every category
}

type countEntry struct {
	cat string
	n   uint64
	pos int32 // index in Counts.top, -1 when not there
}

// better reports whether a ranks before b: higher count, then smaller category.
func better(a, b *countEntry) bool {
	return a.n > b.n || a.n == b.n && a.cat < b.cat
}

// Add counts one occurrence of cat.
func (c *Counts) Add(cat string) { c.add(cat, 1) }

func (c *Counts) add(cat string, n uint64) {
	s, ok := c.idx[cat]
	if !ok {
		if c.idx == nil {
			c.idx = make(map[string]int32)
		}
		cat = strings.Clone(cat) // don't retain the caller's buffer
		if k := len(c.free); k > 0 {
			s = c.free[k-1]
			c.free = c.free[:k-1]
		} else {
			s = int32(len(c.ents))
			c.ents = append(c.ents, countEntry{})
		}
		c.ents[s] = countEntry{cat: cat, pos: -1}
		c.idx[cat] = s
	}
	c.ents[s].n += n
	c.topRaised(s)
}

// Remove removes one occurrence of cat; removing a category that is not
// counted does nothing.
func (c *Counts) Remove(cat string) {
	s, ok := c.idx[cat]
	if !ok {
		return
	}
	e := &c.ents[s]
	e.n--
	c.topLowered(s)
	if e.n > 0 {
		return
	}
	delete(c.idx, e.cat)
	*e = countEntry{pos: -1}
	c.free = append(c.free, s)
	if len(c.free) >= 64 && 2*len(c.free) > len(c.ents) {
		c.compact()
	}
}

// compact drops the free slots, so that memory follows the current
// categories rather than the most there ever were.
func (c *Counts) compact() {
	remap := make([]int32, len(c.ents))
	ents := make([]countEntry, 0, len(c.idx))
	for s := range c.ents {
		if c.ents[s].n == 0 {
			continue
		}
		remap[s] = int32(len(ents))
		ents = append(ents, c.ents[s])
		c.idx[c.ents[s].cat] = remap[s]
	}
	for i, s := range c.top {
		c.top[i] = remap[s]
	}
	c.ents, c.free = ents, nil
}

func (c *Counts) has(cat string) bool {
	_, ok := c.idx[cat]
	return ok
}

// Count returns the count of cat.
func (c *Counts) Count(cat string) uint64 {
	if s, ok := c.idx[cat]; ok {
		return c.ents[s].n
	}
	return 0
}

// Len returns the number of distinct categories with a count above zero.
func (c *Counts) Len() int { return len(c.idx) }

// Merge adds o's counts to c.
func (c *Counts) Merge(o *Counts) {
	c.dropTop()
	for i := range o.ents {
		if e := &o.ents[i]; e.n > 0 {
			c.add(e.cat, e.n)
		}
	}
}

// Clone returns a deep copy of c.
func (c *Counts) Clone() *Counts {
	o := &Counts{
		ents:     append([]countEntry(nil), c.ents...),
		free:     append([]int32(nil), c.free...),
		top:      append([]int32(nil), c.top...),
		topCap:   c.topCap,
		complete: c.complete,
	}
	if c.idx != nil {
		o.idx = make(map[string]int32, len(c.idx))
		for k, v := range c.idx {
			o.idx[k] = v
		}
	}
	return o
}

// AppendBinary appends c's encoding to dst. The categories are written in
// slot order, so the same history of calls gives the same bytes.
func (c *Counts) AppendBinary(dst []byte) []byte {
	dst = append(dst, headerCounts)
	dst = binary.AppendUvarint(dst, uint64(len(c.idx)))
	for i := range c.ents {
		if e := &c.ents[i]; e.n > 0 {
			dst = appendString(dst, e.cat)
			dst = binary.AppendUvarint(dst, e.n)
		}
	}
	return dst
}

// Decode replaces c with the Counts encoded at the front of b and returns the
// bytes after it. On error c is unchanged.
func (c *Counts) Decode(b []byte) (rest []byte, err error) {
	d := decoder{b: b, what: "counts"}
	d.header(headerCounts)
	n := d.count(2)
	o := Counts{ents: make([]countEntry, 0, n)}
	if n > 0 {
		o.idx = make(map[string]int32, n)
	}
	for i := 0; i < n && d.err == nil; i++ {
		cat := string(d.bytes())
		cnt := d.uvarint()
		switch {
		case d.err != nil:
		case cnt == 0:
			d.fail("category %q has count 0", cat)
		case o.has(cat):
			d.fail("category %q repeated", cat)
		default:
			o.idx[cat] = int32(i)
			o.ents = append(o.ents, countEntry{cat: cat, n: cnt, pos: -1})
		}
	}
	if d.err != nil {
		return b, d.err
	}
	*c = o
	return d.b, nil
}
