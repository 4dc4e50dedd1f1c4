package agg

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/axiomhq/hyperloglog"
	"github.com/cespare/xxhash/v2"
)

// DefaultPrecision is the HyperLogLog precision of NewDistinct: 2^14
// registers, a standard error of about 0.8%.
const DefaultPrecision = 14

// Distinct counts distinct categories: exactly up to a limit, then with a
// HyperLogLog sketch (axiomhq/hyperloglog; categories hashed with xxHash64,
// which this package's encoding fixes). It cannot remove.
//
// The zero value has limit 0: it sketches from the first category at
// DefaultPrecision.
type Distinct struct {
	limit     int
	precision uint8 // 0: DefaultPrecision

	// Exact mode: the categories in insertion order, and a set of them.
	items []string
	set   map[string]struct{}

	hll *hyperloglog.Sketch // sketch mode when not nil
	est uint64              // hll's estimate when !dirty
	// dirty: hll may have changed since est. axiomhq's dense Estimate costs
	// a math.Pow per register (about 0.5ms at precision 14), so repeated
	// Estimates without an Add in between reuse est.
	dirty bool
}

// NewDistinct returns a Distinct that is exact while it has seen at most
// exactLimit categories (0 or less: never) and then sketches them at
// DefaultPrecision.
func NewDistinct(exactLimit int) *Distinct {
	return &Distinct{limit: max(exactLimit, 0)}
}

// NewDistinctPrecision is NewDistinct with a HyperLogLog precision in [4, 18]
// (2^precision registers, standard error 1.04/sqrt(2^precision)).
func NewDistinctPrecision(exactLimit int, precision uint8) (*Distinct, error) {
	if precision < 4 || precision > 18 {
		return nil, fmt.Errorf("agg: distinct: precision %d outside [4, 18]", precision)
	}
	return &Distinct{limit: max(exactLimit, 0), precision: precision}, nil
}

func (d *Distinct) prec() uint8 {
	if d.precision == 0 {
		return DefaultPrecision
	}
	return d.precision
}

// Add counts cat.
func (d *Distinct) Add(cat string) {
	if d.hll != nil {
		d.hll.InsertHash(xxhash.Sum64String(cat))
		d.dirty = true
		return
	}
	if _, ok := d.set[cat]; ok {
		return
	}
	if len(d.items) >= d.limit {
		d.toSketch(d.prec())
		d.Add(cat)
		return
	}
	if d.set == nil {
		d.set = make(map[string]struct{})
	}
	cat = strings.Clone(cat)
	d.items = append(d.items, cat)
	d.set[cat] = struct{}{}
}

func (d *Distinct) toSketch(precision uint8) {
	d.hll, _ = hyperloglog.NewSketch(precision, true)
	d.precision = precision
	for _, cat := range d.items {
		d.hll.InsertHash(xxhash.Sum64String(cat))
	}
	d.items, d.set = nil, nil
	d.dirty = true
}

// Exact reports whether Estimate is exact.
func (d *Distinct) Exact() bool { return d.hll == nil }

// Estimate returns the number of distinct categories added: exact while
// Exact, else HyperLogLog's estimate. It may compact the sketch. In sketch
// mode the first Estimate after a change costs O(2^precision) (dense) or
// O(sketch size) (sparse); later ones are free.
func (d *Distinct) Estimate() uint64 {
	if d.hll == nil {
		return uint64(len(d.items))
	}
	if d.dirty {
		d.est, d.dirty = d.hll.Estimate(), false
	}
	return d.est
}

// Merge adds o's categories to d. An exact d that must sketch takes o's
// precision; it panics if both sketch with different precisions.
func (d *Distinct) Merge(o *Distinct) {
	if o.hll == nil {
		for _, cat := range o.items {
			d.Add(cat)
		}
		return
	}
	if d.hll == nil {
		d.toSketch(o.prec())
	}
	if err := d.hll.Merge(o.hll); err != nil {
		panic(fmt.Sprintf("agg: merge distinct: %v", err))
	}
	d.dirty = true
}

// Clone returns a deep copy of d.
func (d *Distinct) Clone() *Distinct {
	o := *d
	o.items = slices.Clone(d.items)
	if d.set != nil {
		o.set = make(map[string]struct{}, len(d.set))
		for k := range d.set {
			o.set[k] = struct{}{}
		}
	}
	if d.hll != nil {
		o.hll = d.hll.Clone()
	}
	return &o
}

// AppendBinary appends d's encoding to dst. It compacts the sketch first, so
// that the same categories give the same bytes.
func (d *Distinct) AppendBinary(dst []byte) []byte {
	dst = append(dst, headerDistinct)
	dst = binary.AppendUvarint(dst, uint64(d.limit))
	dst = append(dst, d.prec())
	if d.hll == nil {
		dst = append(dst, 0)
		dst = binary.AppendUvarint(dst, uint64(len(d.items)))
		for _, cat := range d.items {
			dst = appendString(dst, cat)
		}
		return dst
	}
	dst = append(dst, 1)
	d.Estimate() // merges the sparse sketch's unsorted buffer into its list
	start := len(dst)
	dst, err := d.hll.AppendBinary(dst)
	if err != nil {
		panic(fmt.Sprintf("agg: encode distinct: %v", err)) // only a zero Sketch fails
	}
	var n [binary.MaxVarintLen64]byte
	return slices.Insert(dst, start, n[:binary.PutUvarint(n[:], uint64(len(dst)-start))]...)
}

// Decode replaces d with the Distinct encoded at the front of b and returns
// the bytes after it. On error d is unchanged.
func (d *Distinct) Decode(b []byte) (rest []byte, err error) {
	dec := decoder{b: b, what: "distinct"}
	dec.header(headerDistinct)
	limit := dec.uvarint()
	precision := dec.byte()
	mode := dec.byte()
	o := Distinct{limit: int(limit), precision: precision}
	switch {
	case dec.err != nil:
	case limit > math.MaxInt32:
		dec.fail("limit %d", limit)
	case precision < 4 || precision > 18:
		dec.fail("precision %d", precision)
	case mode == 0:
		n := dec.count(1)
		if uint64(n) > limit {
			dec.fail("%d categories over the limit %d", n, limit)
			break
		}
		o.items = make([]string, 0, n)
		o.set = make(map[string]struct{}, n)
		for i := 0; i < n && dec.err == nil; i++ {
			cat := string(dec.bytes())
			if _, dup := o.set[cat]; dup {
				dec.fail("category %q repeated", cat)
			}
			o.items = append(o.items, cat)
			o.set[cat] = struct{}{}
		}
	case mode == 1:
		data := dec.bytes()
		if dec.err != nil {
			break
		}
		if len(data) < 2 || data[1] != precision {
			dec.fail("sketch precision differs from %d", precision)
			break
		}
		o.hll, o.dirty = new(hyperloglog.Sketch), true
		if err := o.hll.UnmarshalBinary(data); err != nil {
			dec.fail("%v", err)
		}
	default:
		dec.fail("mode %d", mode)
	}
	if dec.err != nil {
		return b, dec.err
	}
	*d = o
	return dec.b, nil
}
