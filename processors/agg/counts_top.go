package agg

import "slices"

// TopK keeps a cache of the best categories, best first, that Add and Remove
// maintain in O(cache size) without looking at the other categories:
//
//   - the cache always holds exactly the len(top) best categories in order,
//     and complete says it holds all of them;
//   - Add moves its category up in the cache, or into it when it now beats
//     the cache's last (every category outside ranks below that one);
//   - Remove moves its category down; one that reaches the last place of an
//     incomplete cache leaves it, as a category outside might now beat it.
//
// So repeated TopK(k) calls cost O(k) while the cache holds k; when removals
// have shrunk it below k, TopK rebuilds it with 2k+8 categories by one
// partial selection over all categories, O(n log k).

// TopK appends to dst the k most frequent categories, most frequent first;
// equal counts are ordered by category (ascending bytes). It appends fewer
// when fewer categories are counted.
func (c *Counts) TopK(k int, dst []string) []string {
	if k <= 0 {
		return dst
	}
	if !c.complete && k > len(c.top) {
		c.rebuildTop(k)
	}
	for _, s := range c.top[:min(k, len(c.top))] {
		dst = append(dst, c.ents[s].cat)
	}
	return dst
}

// dropTop empties the cache.
func (c *Counts) dropTop() {
	for _, s := range c.top {
		c.ents[s].pos = -1
	}
	c.top = c.top[:0]
	c.complete = false
}

// rebuildTop fills the cache with the best 2k+8 categories.
func (c *Counts) rebuildTop(k int) {
	c.dropTop()
	c.topCap = 2*k + 8
	h := topHeap{better: c.betterSlot, s: c.top}
	for s := range c.ents {
		switch {
		case c.ents[s].n == 0:
		case len(h.s) < c.topCap:
			h.push(int32(s))
		case c.betterSlot(int32(s), h.s[0]):
			h.s[0] = int32(s)
			h.down(0)
		}
	}
	c.top = h.s
	c.complete = len(c.top) == len(c.idx)
	sortBest(c.top, c.betterSlot)
	for i, s := range c.top {
		c.ents[s].pos = int32(i)
	}
}

func (c *Counts) betterSlot(a, b int32) bool { return better(&c.ents[a], &c.ents[b]) }

// topRaised updates the cache after slot s's count went up.
func (c *Counts) topRaised(s int32) {
	e := &c.ents[s]
	if e.pos < 0 {
		last := len(c.top) - 1
		if !c.complete && (last < 0 || !better(e, &c.ents[c.top[last]])) {
			return // still below the cache's last
		}
		e.pos = int32(len(c.top))
		c.top = append(c.top, s)
	}
	for i := int(e.pos); i > 0 && better(e, &c.ents[c.top[i-1]]); i-- {
		c.swapTop(i, i-1)
	}
	if len(c.top) > c.topCap {
		c.ents[c.top[len(c.top)-1]].pos = -1
		c.top = c.top[:len(c.top)-1]
		c.complete = false
	}
}

// topLowered updates the cache after slot s's count went down.
func (c *Counts) topLowered(s int32) {
	e := &c.ents[s]
	if e.pos < 0 {
		return
	}
	i := int(e.pos)
	if e.n == 0 {
		copy(c.top[i:], c.top[i+1:])
		c.top = c.top[:len(c.top)-1]
		for ; i < len(c.top); i++ {
			c.ents[c.top[i]].pos = int32(i)
		}
		e.pos = -1
		return
	}
	for ; i+1 < len(c.top) && better(&c.ents[c.top[i+1]], e); i++ {
		c.swapTop(i, i+1)
	}
	if !c.complete && i == len(c.top)-1 {
		c.top = c.top[:i]
		e.pos = -1
	}
}

func (c *Counts) swapTop(i, j int) {
	c.top[i], c.top[j] = c.top[j], c.top[i]
	c.ents[c.top[i]].pos = int32(i)
	c.ents[c.top[j]].pos = int32(j)
}

// topHeap is a binary heap of ids with the worst-ranked at the root: the
// best len(s) seen so far while selecting.
type topHeap struct {
	better func(a, b int32) bool // a ranks before b; ids are never equal in rank
	s      []int32
}

func (h *topHeap) worse(i, j int) bool { return h.better(h.s[j], h.s[i]) }

func (h *topHeap) push(id int32) {
	h.s = append(h.s, id)
	for i := len(h.s) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.worse(i, p) {
			break
		}
		h.s[i], h.s[p] = h.s[p], h.s[i]
		i = p
	}
}

func (h *topHeap) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(h.s) {
			return
		}
		m := l
		if r := l + 1; r < len(h.s) && h.worse(r, l) {
			m = r
		}
		if !h.worse(m, i) {
			return
		}
		h.s[i], h.s[m] = h.s[m], h.s[i]
		i = m
	}
}

// selectBest reorders ids so that they start with the best k, best first,
// and returns those: O(n log k).
func selectBest(ids []int32, k int, better func(a, b int32) bool) []int32 {
	if k < len(ids) {
		h := topHeap{better: better, s: ids[:0]}
		for _, id := range ids { // the heap's writes stay at or behind the read
			switch {
			case len(h.s) < k:
				h.push(id)
			case better(id, h.s[0]):
				h.s[0] = id
				h.down(0)
			}
		}
		ids = h.s
	}
	sortBest(ids, better)
	return ids
}

func sortBest(ids []int32, better func(a, b int32) bool) {
	slices.SortFunc(ids, func(a, b int32) int {
		switch {
		case a == b:
			return 0
		case better(a, b):
			return -1
		}
		return 1
	})
}
