package agg

import (
	"bytes"
	"math"
	"testing"
)

// Every decoder takes garbage without panicking or allocating beyond its
// input, and whatever it accepts encodes to something it accepts again,
// with the same answers, and keeps working.

func addSeeds(f *testing.F, encs ...[]byte) {
	for _, b := range encs {
		f.Add(b)
		f.Add(b[:len(b)/2])
		f.Add(append(bytes.Clone(b), 0xff))
	}
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
}

// checkRest fails unless rest is a suffix of in.
func checkRest(t *testing.T, in, rest []byte) {
	if len(rest) > len(in) || !bytes.Equal(in[len(in)-len(rest):], rest) {
		t.Fatalf("rest %x is not a suffix of the input", rest)
	}
}

func FuzzDecodeCounts(f *testing.F) {
	var c Counts
	for _, s := range []string{"a", "b", "a", "", "long category"} {
		c.Add(s)
	}
	addSeeds(f, c.AppendBinary(nil), (&Counts{}).AppendBinary(nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		var c Counts
		rest, err := c.Decode(in)
		if err != nil {
			return
		}
		checkRest(t, in, rest)
		var again Counts
		if _, err := again.Decode(c.AppendBinary(nil)); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		top := c.TopK(3, nil)
		if got := again.TopK(3, nil); len(got) != len(top) || again.Len() != c.Len() {
			t.Fatalf("re-decoded: TopK %q, Len %d; want %q, %d", got, again.Len(), top, c.Len())
		}
		for _, cat := range top {
			c.Remove(cat)
			c.Add(cat + "x")
		}
		c.TopK(5, nil)
	})
}

func FuzzDecodeDistinct(f *testing.F) {
	exact := NewDistinct(10)
	sketch := NewDistinct(2)
	for _, s := range []string{"a", "b", "c", "d"} {
		exact.Add(s)
		sketch.Add(s)
	}
	dense, _ := NewDistinctPrecision(0, 6) // small, for the fuzzer to minimize
	for i := range 2000 {
		dense.Add(string(rune(i)))
	}
	addSeeds(f, exact.AppendBinary(nil), sketch.AppendBinary(nil), dense.AppendBinary(nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		var d Distinct
		rest, err := d.Decode(in)
		if err != nil {
			return
		}
		checkRest(t, in, rest)
		est := d.Estimate()
		var again Distinct
		if _, err := again.Decode(d.AppendBinary(nil)); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if again.Estimate() != est || again.Exact() != d.Exact() {
			t.Fatalf("re-decoded: Estimate %d, want %d", again.Estimate(), est)
		}
		d.Add("x")
		d.Merge(exact)
		d.Estimate()
	})
}

func FuzzDecodeTopK(f *testing.F) {
	tk := NewTopK(3)
	for _, s := range []string{"a", "b", "a", "c", "d", "d", "d"} {
		tk.Add(s)
	}
	addSeeds(f, tk.AppendBinary(nil), NewTopK(1).AppendBinary(nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		var tk TopK
		rest, err := tk.Decode(in)
		if err != nil {
			return
		}
		checkRest(t, in, rest)
		top := tk.Top(3, nil)
		var again TopK
		if _, err := again.Decode(tk.AppendBinary(nil)); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if got := again.Top(3, nil); len(got) != len(top) {
			t.Fatalf("re-decoded: Top %q, want %q", got, top)
		}
		for _, s := range []string{"x", "y", "x", "z"} {
			tk.Add(s)
		}
		tk.Merge(&again)
		tk.Top(2, nil)
	})
}

func FuzzDecodeQuantiles(f *testing.F) {
	q, _ := NewQuantiles(0.01)
	for _, x := range []float64{-3, 0, 1, 2, 2, 1e9} {
		q.Add(x)
	}
	coarse, _ := NewQuantiles(0.5)
	coarse.Add(7)
	addSeeds(f, q.AppendBinary(nil), coarse.AppendBinary(nil), (&Quantiles{}).AppendBinary(nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		var q Quantiles
		rest, err := q.Decode(in)
		if err != nil {
			return
		}
		checkRest(t, in, rest)
		med := q.Quantile(0.5)
		var again Quantiles
		if _, err := again.Decode(q.AppendBinary(nil)); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if got := again.Quantile(0.5); got != med && !(math.IsNaN(got) && math.IsNaN(med)) {
			t.Fatalf("re-decoded: median %v, want %v", got, med)
		}
		if q.Count() > 0 && (math.IsNaN(med) || math.IsInf(med, 0)) {
			t.Fatalf("median %v of %d values", med, q.Count())
		}
		q.Add(1)
		q.Remove(med)
		q.Merge(&again)
		q.Quantile(0.99)
	})
}
