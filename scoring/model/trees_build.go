package model

import (
	"fmt"
	"math"
	"slices"
)

// specNode is a tree node as a loader reads it, before layout: children
// by index into the tree's nodes (-1 for a leaf), the threshold already in
// the evaluator's "right when x >= thr" form (NaN: never; the loader has
// refused a NaN in the file), or the leaf value.
type specNode struct {
	left, right int32
	feat        int32
	thr         float64
	defLeft     bool    // a missing value goes left
	catLeft     bool    // categorical: the set goes left (LightGBM), else right (XGBoost)
	zeroMis     bool    // LightGBM: |x| <= 1e-35 is missing too
	nanZero     bool    // LightGBM: NaN is compared as 0 (by decide)
	tinyZero    bool    // LightGBM: a threshold within 1e-35 of 0 (see decide)
	cats        []int64 // categorical split: the categories of the set (XGBoost)
	catBits     []int64 // categorical split: the set as a bitset of uint32 words (LightGBM)
}

// builder assembles an Ensemble tree by tree.
type builder struct {
	e         *Ensemble
	treeFirst []uint32 // scratch: index in e.nodes of each spec node
	queue     []struct {
		si    int32
		depth int
	}
}

func newBuilder(e *Ensemble) *builder { return &builder{e: e} }

// addTree validates a tree read from a file and appends it, laid out
// breadth-first with siblings side by side. Nodes no path from the root
// reaches (XGBoost's deleted nodes) are dropped. Cycles, shared children,
// a node with one child, indices or features out of range and NaN
// thresholds are errors.
func (b *builder) addTree(spec []specNode, group int32, scale float64) error {
	e := b.e
	n := len(spec)
	if n == 0 {
		return fmt.Errorf("no nodes")
	}
	if int(group) < 0 || int(group) >= e.nGroup {
		return fmt.Errorf("output group %d of %d", group, e.nGroup)
	}
	if len(e.nodes)+n >= math.MaxInt32 {
		return fmt.Errorf("more than %d nodes", math.MaxInt32)
	}
	// placed[i] is 1 + the position of spec node i in e.nodes, 0 when not
	// yet placed; it doubles as the visited set.
	if cap(b.treeFirst) < n {
		b.treeFirst = make([]uint32, n)
	}
	placed := b.treeFirst[:n]
	clear(placed)
	root := uint32(len(e.nodes))
	e.grow(1)
	placed[0] = root + 1
	type item struct {
		si    int32
		depth int
	}
	queue := append(b.queue[:0], item{0, 0})
	depth := 0
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		si := it.si
		s := &spec[si]
		at := placed[si] - 1
		if s.left == -1 && s.right == -1 {
			if math.IsNaN(s.thr) || math.IsInf(s.thr, 0) {
				return fmt.Errorf("node %d: leaf value %v", si, s.thr)
			}
			v := s.thr
			if scale != 1 {
				v = float64(float32(v) * float32(scale))
			}
			// A leaf loops to itself: every x goes right (x >= -Inf, or
			// missing and default right) to left+1 = at.
			e.nodes[at] = node{thr: math.Inf(-1), feat: flagDefRight, left: at - 1}
			e.leafVal[at] = v
			depth = max(depth, it.depth)
			continue
		}
		if s.left == s.right {
			return fmt.Errorf("node %d: child %d is reached twice (a cycle or a shared node)", si, s.left)
		}
		for _, c := range []int32{s.left, s.right} {
			if c < 0 || int(c) >= n {
				return fmt.Errorf("node %d: child %d of %d nodes", si, c, n)
			}
			if placed[c] != 0 {
				return fmt.Errorf("node %d: child %d is reached twice (a cycle or a shared node)", si, c)
			}
		}
		if s.feat < 0 || int(s.feat) >= e.nFeat {
			return fmt.Errorf("node %d: split on feature %d of %d", si, s.feat, e.nFeat)
		}
		if it.depth >= maxDepth {
			return fmt.Errorf("deeper than %d levels", maxDepth)
		}
		left := uint32(len(e.nodes))
		e.grow(2)
		placed[s.left], placed[s.right] = left+1, left+2
		queue = append(queue, item{s.left, it.depth + 1}, item{s.right, it.depth + 1})
		nd := node{thr: s.thr, feat: uint32(s.feat), left: left}
		var aux uint8
		if !s.defLeft {
			nd.feat |= flagDefRight
		}
		if s.cats != nil || s.catBits != nil {
			var ref float64
			var err error
			if s.cats != nil {
				ref, err = b.catSet(s.cats)
			} else {
				ref, err = b.catWords(s.catBits)
			}
			if err != nil {
				return fmt.Errorf("node %d: %w", si, err)
			}
			nd.thr = ref
			aux |= auxCat
			if s.catLeft {
				aux |= auxCatLeft
			}
		}
		if s.zeroMis {
			aux |= auxZeroMis
		}
		if s.tinyZero {
			aux |= auxTinyZero
		}
		if s.nanZero && aux != 0 {
			aux |= auxNaNZero // only decide reads it
		}
		if aux != 0 {
			nd.feat |= flagSpecial
			e.special = true
		}
		e.nodes[at] = nd
		e.aux[at] = aux
	}
	b.queue = queue
	e.roots = append(e.roots, root)
	e.depth = append(e.depth, uint8(depth))
	e.group = append(e.group, group)
	return nil
}

// grow appends n blank nodes.
func (e *Ensemble) grow(n int) {
	for range n {
		e.nodes = append(e.nodes, node{})
		e.leafVal = append(e.leafVal, 0)
		e.aux = append(e.aux, 0)
	}
}

// catSet appends a categorical split's bitset and returns its reference.
func (b *builder) catSet(cats []int64) (float64, error) {
	if len(cats) == 0 {
		return 0, fmt.Errorf("categorical split with no categories")
	}
	maxc := int64(-1)
	for _, c := range cats {
		if c < 0 || c >= 1<<31 {
			return 0, fmt.Errorf("category %d out of range", c)
		}
		maxc = max(maxc, c)
	}
	words := maxc/32 + 1
	e := b.e
	if int64(len(e.cats))+words > maxCatWords {
		return 0, fmt.Errorf("categorical splits need more than %d bitset words", maxCatWords)
	}
	off := len(e.cats)
	e.cats = append(e.cats, make([]uint32, words)...)
	for _, c := range cats {
		e.cats[off+int(c/32)] |= 1 << (c % 32)
	}
	return catRef(uint32(off), uint32(words)), nil
}

// catWords appends a categorical split's bitset given as words.
func (b *builder) catWords(words []int64) (float64, error) {
	e := b.e
	if int64(len(e.cats))+int64(len(words)) > maxCatWords {
		return 0, fmt.Errorf("categorical splits need more than %d bitset words", maxCatWords)
	}
	off := len(e.cats)
	for _, w := range words {
		e.cats = append(e.cats, uint32(w))
	}
	return catRef(uint32(off), uint32(len(words))), nil
}

// finish drops what a single-output model does not read.
func (b *builder) finish() *Ensemble {
	e := b.e
	for t := 0; t+8 <= len(e.roots); t += 8 {
		e.depth8 = append(e.depth8, slices.Max(e.depth[t:t+8]))
	}
	if e.nGroup == 1 {
		e.group = nil
	}
	return e
}
