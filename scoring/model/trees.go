package model

import (
	"fmt"
	"math"
	"unsafe"
)

// Ensemble is a compiled tree ensemble, XGBoost's or LightGBM's, evaluated
// exactly as its library does. It is immutable and safe for concurrent
// use; Score, Predict and Margin do not allocate (but for models of more
// than 64 outputs).
//
// Layout: every tree's nodes sit in one flat array, 16 bytes a node, a
// tree's nodes in breadth-first order with the two children of a split
// side by side, so that a split is one step without a branch:
//
//	i = left + (x >= thr | isNaN(x) & defaultRight)
//
// What the library compares differently is folded into thr when the model
// is loaded:
//
//   - XGBoost rounds x to float32 and goes left when float32(x) < t; thr is
//     the least float64 that rounds to t or above (see xgbLeftBelow), so
//     comparing the float64 x needs no rounding.
//   - LightGBM goes left when x <= t; thr is the float64 after t. Where it
//     compares a missing value as 0, the default direction is where 0 goes.
//
// A leaf loops to itself (thr -Inf, left one before it, default right), so
// every tree is walked a fixed number of steps, its depth, without a
// branch on the way, and its leaf value read from leafVal at the end; so
// can eight trees be walked side by side (see sum).
// Categorical splits and LightGBM's zero-as-missing splits are flagged and
// taken by a function call.
type Ensemble struct {
	format   string
	features []string
	nFeat    int
	nGroup   int // raw outputs (margins): classes, or 1
	obj      objective

	nodes   []node
	leafVal []float64 // per node; the value of leaves
	aux     []uint8   // per node: the aux bits of a special split (see decide)
	roots   []uint32  // first node of each tree
	depth   []uint8   // steps from each tree's root to its deepest leaf
	depth8  []uint8   // the deepest of trees 8c..8c+7, for the full groups of eight
	group   []int32   // output group of each tree; nil when nGroup == 1
	cats    []uint32  // bitsets of categorical splits
	base    []float64

	f32     bool    // XGBoost: float32 leaves and sums; LightGBM: float64
	special bool    // some split needs decide
	avgDiv  float64 // LightGBM random forest: outputs are margins divided by this (not Margin's); 0 otherwise

	objName string
}

// node is a split or a leaf. feat holds the feature index in its low 24
// bits, flagDefRight, and flagSpecial for splits that decide takes; left
// is the index of the left child (the right one is left+1); thr the
// threshold (see Ensemble). For a categorical split thr holds the bitset's
// offset and length (catRef).
type node struct {
	thr  float64
	feat uint32
	left uint32
}

const (
	featMask     = 1<<24 - 1
	flagDefRight = 1 << 24 // a missing value goes right
	flagSpecial  = 1 << 31 // categorical or zero-as-missing: see decide

	auxCat      = 1 << 0 // categorical split
	auxCatLeft  = 1 << 1 // categorical: a category in the set goes left (LightGBM), else right (XGBoost)
	auxZeroMis  = 1 << 2 // LightGBM: |x| <= 1e-35 and NaN are missing
	auxNaNZero  = 1 << 3 // LightGBM: NaN is compared as 0
	auxTinyZero = 1 << 4 // LightGBM: a threshold within 1e-35 of zero

	maxFeatures = featMask
	maxGroups   = 1 << 16
	maxDepth    = 255
	maxCatWords = 1 << 22 // 16 MiB of categorical bitsets in a model
)

func catRef(off, n uint32) float64 { return math.Float64frombits(uint64(off)<<32 | uint64(n)) }

func (n *node) catSet() (off, words uint32) {
	b := math.Float64bits(n.thr)
	return uint32(b >> 32), uint32(b)
}

// ModelFormat implements Model.
func (e *Ensemble) ModelFormat() string { return e.format }

// FeatureNames implements Model.
func (e *Ensemble) FeatureNames() []string { return e.features }

// NumFeatures implements Model.
func (e *Ensemble) NumFeatures() int { return e.nFeat }

// NumOutputs implements Model.
func (e *Ensemble) NumOutputs() int { return e.obj.outputs(e.nGroup) }

// NumGroups is the number of raw outputs Margin appends: the number of
// classes of a multi-class model, else 1.
func (e *Ensemble) NumGroups() int { return e.nGroup }

// NumTrees is the number of trees.
func (e *Ensemble) NumTrees() int { return len(e.roots) }

// Objective is the library's name of the model's objective, e.g.
// "binary:logistic" or "binary".
func (e *Ensemble) Objective() string { return e.objName }

func (e *Ensemble) check(x []float64) {
	if len(x) != e.nFeat {
		panic(fmt.Sprintf("model: score %d values with a %d-feature model", len(x), e.nFeat))
	}
}

// Score implements Model.
func (e *Ensemble) Score(x []float64) float64 {
	e.check(x)
	if e.nGroup == 1 {
		return e.obj.transform1(e.out1(x))
	}
	var buf [64]float64
	var out []float64
	if e.nGroup <= len(buf) {
		out = e.Predict(buf[:0], x)
	} else {
		out = e.Predict(nil, x)
	}
	return out[0]
}

// Predict implements Model.
func (e *Ensemble) Predict(dst, x []float64) []float64 {
	e.check(x)
	if e.nGroup == 1 {
		return append(dst, e.obj.transform1(e.out1(x)))
	}
	n := len(dst)
	dst = e.Margin(dst, x)
	if e.avgDiv != 0 {
		for g := n; g < len(dst); g++ {
			dst[g] /= e.avgDiv
		}
	}
	return e.obj.transform(dst, n)
}

// Margin appends the raw outputs for x, NumGroups of them: the sum of the
// trees' leaves and the base score, before the objective's transform
// (XGBoost's output_margin, LightGBM's raw_score).
func (e *Ensemble) Margin(dst, x []float64) []float64 {
	e.check(x)
	if e.nGroup == 1 {
		return append(dst, e.margin1(x))
	}
	n := len(dst)
	dst = append(dst, e.base...)
	out := dst[n:]
	switch {
	case e.special && e.f32:
		for t, root := range e.roots {
			g := e.group[t]
			out[g] = float64(float32(out[g]) + float32(e.leafVal[e.walk(root, e.depth[t], x)]))
		}
	case e.special:
		for t, root := range e.roots {
			out[e.group[t]] += e.leafVal[e.walk(root, e.depth[t], x)]
		}
	case e.f32:
		sumGroups[float32](e, x, out)
	default:
		sumGroups[float64](e, x, out)
	}
	return dst
}

// sumGroups adds each tree's leaf for x to its group's margin in out, in
// tree order and in F, eight trees at a time as sum does, for a
// multi-output model without special splits.
func sumGroups[F float32 | float64](e *Ensemble, x, out []float64) {
	t := 0
	for _, d := range e.depth8 {
		ls := walk8(e.nodes, e.roots[t:t+8:t+8], d, x)
		g := e.group[t : t+8 : t+8]
		for k, i := range ls {
			out[g[k]] = float64(F(out[g[k]]) + F(e.leafVal[i]))
		}
		t += 8
	}
	for ; t < len(e.roots); t++ {
		i := e.walk(e.roots[t], e.depth[t], x)
		out[e.group[t]] = float64(F(out[e.group[t]]) + F(e.leafVal[i]))
	}
}

// walk8 walks eight trees d steps side by side and returns their leaves.
func walk8(nodes []node, r []uint32, d uint8, x []float64) [8]uint32 {
	i0, i1, i2, i3, i4, i5, i6, i7 := r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]
	for ; d > 0; d-- {
		n0, n1, n2, n3 := &nodes[i0], &nodes[i1], &nodes[i2], &nodes[i3]
		v0, v1, v2, v3 := x[n0.feat&featMask], x[n1.feat&featMask], x[n2.feat&featMask], x[n3.feat&featMask]
		i0 = n0.left + (b2u(v0 >= n0.thr) | b2u(v0 != v0)&(n0.feat>>24))
		i1 = n1.left + (b2u(v1 >= n1.thr) | b2u(v1 != v1)&(n1.feat>>24))
		i2 = n2.left + (b2u(v2 >= n2.thr) | b2u(v2 != v2)&(n2.feat>>24))
		i3 = n3.left + (b2u(v3 >= n3.thr) | b2u(v3 != v3)&(n3.feat>>24))
		n4, n5, n6, n7 := &nodes[i4], &nodes[i5], &nodes[i6], &nodes[i7]
		v4, v5, v6, v7 := x[n4.feat&featMask], x[n5.feat&featMask], x[n6.feat&featMask], x[n7.feat&featMask]
		i4 = n4.left + (b2u(v4 >= n4.thr) | b2u(v4 != v4)&(n4.feat>>24))
		i5 = n5.left + (b2u(v5 >= n5.thr) | b2u(v5 != v5)&(n5.feat>>24))
		i6 = n6.left + (b2u(v6 >= n6.thr) | b2u(v6 != v6)&(n6.feat>>24))
		i7 = n7.left + (b2u(v7 >= n7.thr) | b2u(v7 != v7)&(n7.feat>>24))
	}
	return [8]uint32{i0, i1, i2, i3, i4, i5, i6, i7}
}

// PredictBatch writes the outputs of rows, len(rows)/NumFeatures() of them
// back to back, to dst (NumOutputs() values per row) and returns it. It
// does not allocate when dst has room.
func (e *Ensemble) PredictBatch(dst, rows []float64) []float64 {
	if e.nFeat == 0 || len(rows)%e.nFeat != 0 {
		panic(fmt.Sprintf("model: batch of %d values with a %d-feature model", len(rows), e.nFeat))
	}
	for i := 0; i < len(rows); i += e.nFeat {
		dst = e.Predict(dst, rows[i:i+e.nFeat:i+e.nFeat])
	}
	return dst
}

// b2u is 1 for true, 0 for false, without a branch.
func b2u(b bool) uint32 { return uint32(*(*uint8)(unsafe.Pointer(&b))) }

// walk takes depth steps from node i and returns the leaf it reached.
func (e *Ensemble) walk(i uint32, depth uint8, x []float64) uint32 {
	nodes := e.nodes
	for range depth {
		n := &nodes[i]
		f := n.feat
		if f >= flagSpecial {
			i = e.decide(i, x)
			continue
		}
		v := x[f&featMask]
		i = n.left + (b2u(v >= n.thr) | b2u(v != v)&(f>>24))
	}
	return i
}

// out1 is the output of a single-output model before its transform: the
// margin, averaged over the iterations for a LightGBM random forest.
func (e *Ensemble) out1(x []float64) float64 {
	if e.avgDiv != 0 {
		return e.margin1(x) / e.avgDiv
	}
	return e.margin1(x)
}

// margin1 is the margin of a single-output model, summed in the
// library's precision.
func (e *Ensemble) margin1(x []float64) float64 {
	if e.special {
		if e.f32 {
			acc := float32(e.base[0])
			for t, root := range e.roots {
				acc += float32(e.leafVal[e.walk(root, e.depth[t], x)])
			}
			return float64(acc)
		}
		acc := e.base[0]
		for t, root := range e.roots {
			acc += e.leafVal[e.walk(root, e.depth[t], x)]
		}
		return acc
	}
	if e.f32 {
		return float64(sum(e.nodes, e.leafVal, e.roots, e.depth8, e.depth, x, float32(e.base[0])))
	}
	return sum(e.nodes, e.leafVal, e.roots, e.depth8, e.depth, x, e.base[0])
}

// sum adds the trees' leaves for x to acc in F, in tree order, for a
// model without special splits: the hot loop. It walks eight trees at
// once, as deep as the deepest of them (a leaf loops to itself), so that
// the CPU overlaps eight chains of dependent loads instead of waiting on
// one (about 2.5x less CPU than one tree at a time on issue 6's
// benchmark model); it makes no call, so that its state stays in
// registers.
func sum[F float32 | float64](nodes []node, leafVal []float64, roots []uint32, depth8, depth []uint8, x []float64, acc F) F {
	t := 0
	for _, d := range depth8 {
		r := roots[t : t+8 : t+8]
		i0, i1, i2, i3, i4, i5, i6, i7 := r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]
		for ; d > 0; d-- {
			n0, n1, n2, n3 := &nodes[i0], &nodes[i1], &nodes[i2], &nodes[i3]
			v0, v1, v2, v3 := x[n0.feat&featMask], x[n1.feat&featMask], x[n2.feat&featMask], x[n3.feat&featMask]
			i0 = n0.left + (b2u(v0 >= n0.thr) | b2u(v0 != v0)&(n0.feat>>24))
			i1 = n1.left + (b2u(v1 >= n1.thr) | b2u(v1 != v1)&(n1.feat>>24))
			i2 = n2.left + (b2u(v2 >= n2.thr) | b2u(v2 != v2)&(n2.feat>>24))
			i3 = n3.left + (b2u(v3 >= n3.thr) | b2u(v3 != v3)&(n3.feat>>24))
			n4, n5, n6, n7 := &nodes[i4], &nodes[i5], &nodes[i6], &nodes[i7]
			v4, v5, v6, v7 := x[n4.feat&featMask], x[n5.feat&featMask], x[n6.feat&featMask], x[n7.feat&featMask]
			i4 = n4.left + (b2u(v4 >= n4.thr) | b2u(v4 != v4)&(n4.feat>>24))
			i5 = n5.left + (b2u(v5 >= n5.thr) | b2u(v5 != v5)&(n5.feat>>24))
			i6 = n6.left + (b2u(v6 >= n6.thr) | b2u(v6 != v6)&(n6.feat>>24))
			i7 = n7.left + (b2u(v7 >= n7.thr) | b2u(v7 != v7)&(n7.feat>>24))
		}
		acc += F(leafVal[i0])
		acc += F(leafVal[i1])
		acc += F(leafVal[i2])
		acc += F(leafVal[i3])
		acc += F(leafVal[i4])
		acc += F(leafVal[i5])
		acc += F(leafVal[i6])
		acc += F(leafVal[i7])
		t += 8
	}
	for ; t < len(roots); t++ {
		i := roots[t]
		for d := depth[t]; d > 0; d-- {
			n := &nodes[i]
			v := x[n.feat&featMask]
			i = n.left + (b2u(v >= n.thr) | b2u(v != v)&(n.feat>>24))
		}
		acc += F(leafVal[i])
	}
	return acc
}

// decide is the split the fast step cannot take: categorical splits,
// LightGBM's zero-as-missing splits and its splits at thresholds within
// 1e-35 of zero.
func (e *Ensemble) decide(i uint32, x []float64) uint32 {
	n, aux := &e.nodes[i], e.aux[i]
	v := x[n.feat&featMask]
	left, right := n.left, n.left+1
	def := left + (n.feat>>24)&1
	if v != v {
		if aux&auxNaNZero == 0 {
			return def
		}
		v = 0
	}
	if !e.f32 && v >= -lgbZero && v <= lgbZero {
		v = 0 // LightGBM's predictor keeps no value this close to zero
	}
	if aux&auxZeroMis != 0 && v >= -lgbZero && v <= lgbZero {
		return def
	}
	if aux&auxCat == 0 {
		if v >= n.thr {
			return right
		}
		return left
	}
	in, ok := false, true
	var c uint32
	if e.f32 {
		// XGBoost: common::Decision. Categories are float32 values
		// truncated to int; negative ones and those of 2^24 or more are
		// invalid and, like one not in the set, go left.
		f := float32(v)
		if f < 0 || f >= 1<<24 {
			ok = false
		} else {
			c = uint32(int32(f))
		}
	} else {
		// LightGBM: Tree::CategoricalDecision casts to int; a negative
		// category goes right.
		if v <= -1 || v >= 1<<31 {
			ok = false
		} else {
			c = uint32(int32(v))
		}
	}
	if ok {
		off, words := n.catSet()
		if w := c / 32; w < words {
			in = e.cats[off+w]&(1<<(c%32)) != 0
		}
	}
	if aux&auxCatLeft != 0 {
		if in {
			return left
		}
		return right
	}
	if in {
		return right
	}
	return left
}

// lgbZero is LightGBM's kZeroThreshold, the float 1e-35f as a double.
var lgbZero = float64(float32(1e-35))

// xgbLeftBelow returns the least float64 b such that, for every float64 x,
// float32(x) < t exactly when x < b; float32(x) rounds to nearest, ties to
// even. t must not be NaN.
func xgbLeftBelow(t float32) float64 {
	if math.IsInf(float64(t), -1) {
		return math.Inf(-1) // nothing is below -Inf
	}
	// float32(x) < t  <=>  float32(x) <= p, p the float32 before t,
	// <=> x is below the midpoint m of p and t, or equal to it when
	// the tie rounds to p (p's last mantissa bit is 0).
	p := math.Nextafter32(t, float32(math.Inf(-1)))
	var m float64
	switch {
	case math.IsInf(float64(t), 1):
		// p = MaxFloat32; above it float32 rounds to +Inf from the
		// midpoint to the next power of two on.
		m = float64(math.MaxFloat32) + math.Pow(2, 103)
	case math.IsInf(float64(p), -1):
		// t = -MaxFloat32: float32(x) < t only when it is -Inf.
		m = -(float64(math.MaxFloat32) + math.Pow(2, 103))
		p = -math.MaxFloat32 // the tie's neighbour whose parity decides
		if math.Float32bits(p)&1 == 1 {
			// The tie rounds to the even one, -Inf: x == m goes left.
			return math.Nextafter(m, math.Inf(1))
		}
		return m
	default:
		m = (float64(p) + float64(t)) / 2 // exact in float64
	}
	if math.Float32bits(p)&1 == 0 {
		// A tie rounds to p, which is < t: x == m goes left too.
		return math.Nextafter(m, math.Inf(1))
	}
	return m
}
