package agg

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/DataDog/sketches-go/ddsketch/mapping"
)

// DefaultRelativeAccuracy is the relative accuracy of a zero Quantiles.
const DefaultRelativeAccuracy = 0.01

// MinRelativeAccuracy is the finest relative accuracy NewQuantiles accepts;
// finer ones would need bin keys beyond 32 bits.
const MinRelativeAccuracy = 1e-6

// Quantiles is a DDSketch (Masson, Rim and Lee, "DDSketch: a fast and
// fully-mergeable quantile sketch with relative-error guarantees", VLDB 2019)
// that also supports removal, so that a sliding window can keep one.
//
// A value x > 0 counts in the bin with key floor(log_γ(x)) of the positive
// store, where γ = (1+α)/(1-α) for relative accuracy α; a value x < 0 in the
// bin of |x| in the negative store, and values too close to zero to index in
// a zero count. The mapping is sketches-go's LogarithmicMapping. Bin counts
// are exact integers and a bin whose count drops to zero is freed, so memory
// and the cost of Quantile follow the number of non-empty bins, and removing
// a value leaves the sketch exactly as if it had never been added.
//
// Every quantile is within α of the exact quantile of the current values
// (relative error |q̂-q| ≤ α|q|). NaN values are ignored; values beyond the
// largest indexable magnitude (about 1.7e308/γ, and ±Inf) count as that
// magnitude.
//
// The zero value is an empty sketch of DefaultRelativeAccuracy.
type Quantiles struct {
	m        *mapping.LogarithmicMapping // nil in a zero Quantiles until used
	gamma    float64
	minValue float64 // |x| ≤ minValue counts as zero
	maxValue float64 // |x| > maxValue counts as maxValue
	minKey   int32   // key of minValue
	maxKey   int32   // key of maxValue

	zero     uint64
	neg, pos binStore
}

// NewQuantiles returns an empty sketch of the relative accuracy α, which must
// lie in [MinRelativeAccuracy, 1).
func NewQuantiles(relativeAccuracy float64) (*Quantiles, error) {
	a := relativeAccuracy
	if !(a >= MinRelativeAccuracy && a < 1) {
		return nil, fmt.Errorf("agg: quantiles: relative accuracy %v outside [%v, 1)", a, MinRelativeAccuracy)
	}
	q := &Quantiles{}
	if err := q.setGamma((1 + a) / (1 - a)); err != nil {
		return nil, err
	}
	return q, nil
}

// setGamma sets up the mapping for γ. It is the same mapping as
// mapping.NewLogarithmicMapping(α) builds, made from γ so that Decode
// rebuilds exactly the one that was encoded.
func (q *Quantiles) setGamma(gamma float64) error {
	if !(gamma >= minGamma && gamma < math.Inf(1)) {
		return fmt.Errorf("agg: quantiles: gamma %v outside [%v, +Inf)", gamma, minGamma)
	}
	m, err := mapping.NewLogarithmicMappingWithGamma(gamma, 0)
	if err != nil {
		return fmt.Errorf("agg: quantiles: gamma %v: %w", gamma, err)
	}
	q.m, q.gamma = m, gamma
	q.minValue, q.maxValue = m.MinIndexableValue(), m.MaxIndexableValue()
	q.minKey, q.maxKey = int32(m.Index(q.minValue)), int32(m.Index(q.maxValue))
	return nil
}

var (
	defaultGamma = (1 + DefaultRelativeAccuracy) / (1 - DefaultRelativeAccuracy)
	minGamma     = (1 + MinRelativeAccuracy) / (1 - MinRelativeAccuracy)
)

func (q *Quantiles) init() {
	if q.m == nil {
		_ = q.setGamma(defaultGamma)
	}
}

// RelativeAccuracy returns the sketch's α; sketches merge only with sketches
// of the same one.
func (q *Quantiles) RelativeAccuracy() float64 {
	q.init()
	return q.m.RelativeAccuracy()
}

func (q *Quantiles) key(abs float64) int32 {
	return int32(q.m.Index(min(abs, q.maxValue)))
}

// Add adds x.
func (q *Quantiles) Add(x float64) {
	q.init()
	switch {
	case x > q.minValue:
		q.pos.add(q.key(x))
	case x < -q.minValue:
		q.neg.add(q.key(-x))
	case x == x: // not NaN
		q.zero++
	}
}

// Remove removes x, one value that was added. Removing a value whose bin is
// empty does nothing.
func (q *Quantiles) Remove(x float64) {
	q.init()
	switch {
	case x > q.minValue:
		q.pos.remove(q.key(x))
	case x < -q.minValue:
		q.neg.remove(q.key(-x))
	case x == x && q.zero > 0:
		q.zero--
	}
}

// Count returns the number of values in the sketch.
func (q *Quantiles) Count() uint64 { return q.zero + q.neg.total + q.pos.total }

// Quantile returns the value at quantile p in [0, 1] within the relative
// accuracy, or NaN when the sketch is empty or p is not in [0, 1]. Like
// DDSketch it returns the value of 0-based rank floor(p*(n-1)) among the n
// values in ascending order. It costs O(non-empty bins).
func (q *Quantiles) Quantile(p float64) float64 {
	n := q.Count()
	if n == 0 || !(p >= 0 && p <= 1) {
		return math.NaN()
	}
	// Explicit conversions keep the compiler from fusing operations, so the
	// rounding is DDSketch's.
	rank := float64(p * float64(n-1))
	negN := float64(q.neg.total)
	switch {
	case rank < negN:
		return -q.m.Value(int(q.neg.keyAtRank(float64(negN-rank-1), false)))
	case rank < float64(q.zero)+negN:
		return 0
	}
	return q.m.Value(int(q.pos.keyAtRank(float64(rank-float64(q.zero)-negN), true)))
}

// Merge adds o's values to q. It panics if the two have different relative
// accuracies (compare RelativeAccuracy first where that can happen).
func (q *Quantiles) Merge(o *Quantiles) {
	if o.Count() == 0 {
		return
	}
	switch {
	case q.m == nil:
		q.m, q.gamma = o.m, o.gamma
		q.minValue, q.maxValue, q.minKey, q.maxKey = o.minValue, o.maxValue, o.minKey, o.maxKey
	case q.gamma != o.gamma:
		panic(fmt.Sprintf("agg: merge quantiles of relative accuracy %v into %v", o.m.RelativeAccuracy(), q.m.RelativeAccuracy()))
	}
	q.zero += o.zero
	q.neg.merge(&o.neg)
	q.pos.merge(&o.pos)
}

// Clone returns a deep copy of q.
func (q *Quantiles) Clone() *Quantiles {
	o := *q
	o.neg, o.pos = q.neg.clone(), q.pos.clone()
	return &o
}

// AppendBinary appends q's encoding to dst.
func (q *Quantiles) AppendBinary(dst []byte) []byte {
	q.init()
	dst = append(dst, headerQuantiles)
	dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(q.gamma))
	dst = binary.AppendUvarint(dst, q.zero)
	dst = q.neg.appendBinary(dst)
	return q.pos.appendBinary(dst)
}

// Decode replaces q with the sketch encoded at the front of b and returns the
// bytes after it. On error q is unchanged.
func (q *Quantiles) Decode(b []byte) (rest []byte, err error) {
	d := decoder{b: b, what: "quantiles"}
	d.header(headerQuantiles)
	gamma := d.float64()
	if d.err != nil {
		return b, d.err
	}
	o := Quantiles{}
	if q.m != nil && q.gamma == gamma {
		o.m, o.gamma = q.m, q.gamma // reuse the mapping
		o.minValue, o.maxValue, o.minKey, o.maxKey = q.minValue, q.maxValue, q.minKey, q.maxKey
	} else if err := o.setGamma(gamma); err != nil {
		d.fail("%v", err)
		return b, d.err
	}
	o.zero = d.uvarint()
	o.neg.decode(&d, o.minKey, o.maxKey)
	o.pos.decode(&d, o.minKey, o.maxKey)
	if d.err == nil && (o.neg.total+o.pos.total < o.neg.total || o.Count() < o.zero) {
		d.fail("count overflows")
	}
	if d.err != nil {
		return b, d.err
	}
	*q = o
	return d.b, nil
}
