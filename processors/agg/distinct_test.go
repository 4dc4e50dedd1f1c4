package agg

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"testing"
)

func TestDistinctExact(t *testing.T) {
	for _, tc := range []struct {
		limit, n int
	}{
		{1, 1}, {10, 0}, {10, 10}, {1000, 999}, {1000, 1000}, {5000, 4321},
	} {
		d := NewDistinct(tc.limit)
		for rep := range 3 { // repeats count once
			for i := range tc.n {
				d.Add(fmt.Sprintf("user-%d", (i*7+rep)%tc.n))
			}
		}
		if !d.Exact() || d.Estimate() != uint64(tc.n) {
			t.Errorf("limit %d, %d distinct: Exact() = %v, Estimate() = %d", tc.limit, tc.n, d.Exact(), d.Estimate())
		}
		d.Add("one-more")
		if d.Exact() != (tc.n < tc.limit) {
			t.Errorf("limit %d, %d+1 distinct: Exact() = %v", tc.limit, tc.n, d.Exact())
		}
	}
	var zero Distinct // limit 0: sketches from the start
	zero.Add("a")
	zero.Add("a")
	if zero.Exact() || zero.Estimate() != 1 {
		t.Errorf("zero value: Exact() = %v, Estimate() = %d", zero.Exact(), zero.Estimate())
	}
	if _, err := NewDistinctPrecision(10, 3); err == nil {
		t.Error("precision 3 accepted")
	}
}

// TestDistinctSketch wants HyperLogLog within 2% at precision 14, whose
// standard error is 1.04/sqrt(2^14) = 0.81%. The inputs and the hash are
// fixed, so the errors logged are too.
func TestDistinctSketch(t *testing.T) {
	for _, n := range []int{2_000, 100_000, 1_000_000} {
		d := NewDistinct(1000)
		for i := range n {
			d.Add("user-" + strconv.Itoa(i))
			if i%3 == 0 {
				d.Add("user-" + strconv.Itoa(i/2)) // a repeat
			}
		}
		est := d.Estimate()
		relErr := math.Abs(float64(est)-float64(n)) / float64(n)
		t.Logf("%d distinct: estimate %d, error %.3f%%", n, est, 100*relErr)
		if d.Exact() || relErr > 0.02 {
			t.Errorf("%d distinct: estimate %d (Exact %v), error %.2f%% > 2%%", n, est, d.Exact(), 100*relErr)
		}
	}
}

func TestDistinctMerge(t *testing.T) {
	for _, tc := range []struct {
		name       string
		limit      int
		a, b, over int // sizes of a and b and of their overlap
	}{
		{"exact", 100, 30, 40, 10},
		{"exact-to-sketch", 100, 80, 80, 20},
		{"exact-into-sketch", 100, 50, 5000, 25},
		{"sketch-into-exact", 100, 5000, 50, 25},
		{"sparse-sketches", 10, 300, 500, 100},
		{"dense-sketches", 1000, 100_000, 150_000, 50_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, all := NewDistinct(tc.limit), NewDistinct(tc.limit), NewDistinct(tc.limit)
			for i := range tc.a {
				a.Add(strconv.Itoa(i))
				all.Add(strconv.Itoa(i))
			}
			for i := tc.a - tc.over; i < tc.a-tc.over+tc.b; i++ {
				b.Add(strconv.Itoa(i))
				all.Add(strconv.Itoa(i))
			}
			a.Merge(b)
			if a.Exact() != all.Exact() || a.Estimate() != all.Estimate() {
				t.Errorf("merged: Exact %v, Estimate %d; adding all: Exact %v, Estimate %d",
					a.Exact(), a.Estimate(), all.Exact(), all.Estimate())
			}
			if a.Exact() && a.Estimate() != uint64(tc.a+tc.b-tc.over) {
				t.Errorf("exact merge: %d, want %d", a.Estimate(), tc.a+tc.b-tc.over)
			}
		})
	}
}

func TestDistinctRoundTrip(t *testing.T) {
	for _, n := range []int{0, 5, 100, 101, 3000, 200_000} {
		d, _ := NewDistinctPrecision(100, 12)
		for i := range n {
			d.Add(strconv.Itoa(i))
		}
		b := d.AppendBinary(nil)
		var got Distinct
		rest, err := got.Decode(append(b, 1, 2))
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if !bytes.Equal(rest, []byte{1, 2}) {
			t.Fatalf("n=%d: rest %x", n, rest)
		}
		if got.Exact() != d.Exact() || got.Estimate() != d.Estimate() {
			t.Fatalf("n=%d: decoded Exact %v Estimate %d, want %v %d", n, got.Exact(), got.Estimate(), d.Exact(), d.Estimate())
		}
		if !bytes.Equal(got.AppendBinary(nil), b) {
			t.Fatalf("n=%d: re-encoding differs", n)
		}
		// Both go on alike.
		c := d.Clone()
		for i := range 1000 {
			c.Add("more" + strconv.Itoa(i))
			got.Add("more" + strconv.Itoa(i))
		}
		if c.Estimate() != got.Estimate() || d.Estimate() == c.Estimate() {
			t.Fatalf("n=%d: after more adds: clone %d, decoded %d, original %d", n, c.Estimate(), got.Estimate(), d.Estimate())
		}
		t.Logf("n=%d: %d bytes", n, len(b))
	}
}

func BenchmarkDistinctAdd(b *testing.B) {
	cats := benchCats(100_000)
	for _, limit := range []int{1 << 20, 0} {
		b.Run(fmt.Sprintf("limit=%d", limit), func(b *testing.B) {
			d := NewDistinct(limit)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				d.Add(cats[i&4095])
			}
		})
	}
}

// BenchmarkDistinctEstimate is one Add of a category already counted and an
// Estimate per op, as a window emitting on every event does: exact, sparse
// and dense HyperLogLog (precision 14). The dense sketch recomputes its
// estimate after every Add (a math.Pow per register in axiomhq).
func BenchmarkDistinctEstimate(b *testing.B) {
	for _, tc := range []struct {
		name string
		n    int
	}{{"exact", 100}, {"sparse", 5000}, {"dense", 1_000_000}} {
		b.Run(tc.name, func(b *testing.B) {
			d := NewDistinct(1000)
			for i := range tc.n {
				d.Add(strconv.Itoa(i))
			}
			cats := make([]string, 64)
			for i := range cats {
				cats[i] = strconv.Itoa(i)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				d.Add(cats[i&63])
				d.Estimate()
			}
		})
	}
}
