package model

import (
	"fmt"
	"math"
)

// Ensemble is a compiled tree ensemble, XGBoost's or LightGBM's, evaluated
// exactly as its library does. It is immutable and safe for concurrent
// use; Score, Predict and Margin do not allocate (but for models of more
// than 64 outputs).
//
// Layout: every tree's nodes sit in one flat array, 16 bytes a node, a
// tree's nodes in breadth-first order with the two children of a split
// side by side, so that a split is one compare: left when x < thr, else
// left+1. What the library compares differently is folded into thr when
// the model is loaded:
//
//   - XGBoost rounds x to float32 and goes left when float32(x) < t; thr is
//     the least float64 that rounds to t or above (see xgbLeftBelow), so
//     comparing the float64 x needs no rounding.
//   - LightGBM goes left when x <= t; thr is the float64 after t.
//
// A row without NaN goes through the fast loop, where a split costs a
// compare and an add; NaN (a missing value), categorical splits and
// LightGBM's zero-as-missing splits take the general one.
type Ensemble struct {
	format   string
	features []string
	nFeat    int
	nGroup   int // raw outputs (margins): classes, or 1
	obj      objective

	nodes []node
	aux   []uint8  // per node: auxDefLeft, auxNaNZero, auxCatLeft
	roots []uint32 // first node of each tree
	group []int32  // output group of each tree; nil when nGroup == 1
	cats  []uint32 // bitsets of categorical splits
	base  []float64

	f32 bool // XGBoost: float32 leaves and sums; LightGBM: float64

	// Where the evaluation came from, for Describe-like tooling.
	objName string
}

// node is a split or a leaf. For a split, feat holds the feature index in
// its low 24 bits and, for splits the fast loop cannot take, flagCat or
// flagZeroMis; left is the index of the left child (the right one is
// left+1); thr the threshold (see Ensemble). For a categorical split thr
// holds the bitset's offset and length (catRef). For a leaf, feat is
// flagLeaf and thr the leaf value. What only the general loop reads (the
// default direction) is in Ensemble.aux.
type node struct {
	thr  float64
	feat uint32
	left uint32
}

const (
	featMask    = 1<<24 - 1
	flagLeaf    = 1 << 31
	flagCat     = 1 << 30 // categorical split
	flagZeroMis = 1 << 29 // LightGBM: |x| <= 1e-35 (and NaN) is missing

	auxDefLeft = 1 << 0 // missing goes left
	auxNaNZero = 1 << 1 // LightGBM: NaN is compared as 0
	auxCatLeft = 1 << 2 // categorical: a category in the set goes left (LightGBM), else right (XGBoost)

	maxFeatures = featMask
	maxGroups   = 1 << 16
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
		return e.obj.transform1(e.margin1(x))
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
		return append(dst, e.obj.transform1(e.margin1(x)))
	}
	n := len(dst)
	dst = e.Margin(dst, x)
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
	fast := noNaN(x)
	for t, root := range e.roots {
		g := e.group[t]
		v := e.leaf(root, x, fast)
		if e.f32 {
			out[g] = float64(float32(out[g]) + float32(v))
		} else {
			out[g] += v
		}
	}
	return dst
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

func noNaN(x []float64) bool {
	for _, v := range x {
		if v != v {
			return false
		}
	}
	return true
}

// margin1 is the margin of a single-output model.
func (e *Ensemble) margin1(x []float64) float64 {
	nodes := e.nodes
	if !noNaN(x) {
		return e.margin1Slow(x)
	}
	if e.f32 {
		acc := float32(e.base[0])
		for _, i := range e.roots {
			for {
				n := &nodes[i]
				if n.feat > featMask {
					if n.feat&flagLeaf != 0 {
						acc += float32(n.thr)
						break
					}
					i = e.decide(i, x)
					continue
				}
				i = n.left
				if !(x[n.feat] < n.thr) {
					i++
				}
			}
		}
		return float64(acc)
	}
	acc := e.base[0]
	for _, i := range e.roots {
		for {
			n := &nodes[i]
			if n.feat > featMask {
				if n.feat&flagLeaf != 0 {
					acc += n.thr
					break
				}
				i = e.decide(i, x)
				continue
			}
			i = n.left
			if !(x[n.feat] < n.thr) {
				i++
			}
		}
	}
	return acc
}

func (e *Ensemble) margin1Slow(x []float64) float64 {
	if e.f32 {
		acc := float32(e.base[0])
		for _, root := range e.roots {
			acc += float32(e.leaf(root, x, false))
		}
		return float64(acc)
	}
	acc := e.base[0]
	for _, root := range e.roots {
		acc += e.leaf(root, x, false)
	}
	return acc
}

// leaf walks one tree to its leaf value. fast says x holds no NaN.
func (e *Ensemble) leaf(i uint32, x []float64, fast bool) float64 {
	nodes := e.nodes
	for {
		n := &nodes[i]
		if n.feat&flagLeaf != 0 {
			return n.thr
		}
		if fast && n.feat <= featMask {
			i = n.left
			if !(x[n.feat] < n.thr) {
				i++
			}
			continue
		}
		i = e.decide(i, x)
	}
}

// decide is the general split: missing values, categorical and
// zero-as-missing splits.
func (e *Ensemble) decide(i uint32, x []float64) uint32 {
	n, aux := &e.nodes[i], e.aux[i]
	v := x[n.feat&featMask]
	left, right := n.left, n.left+1
	def := right
	if aux&auxDefLeft != 0 {
		def = left
	}
	if v != v {
		if aux&auxNaNZero == 0 {
			return def
		}
		v = 0
	}
	if n.feat&flagZeroMis != 0 && v >= -lgbZero && v <= lgbZero {
		return def
	}
	if n.feat&flagCat == 0 {
		if v < n.thr {
			return left
		}
		return right
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
