package agg

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
)

var testQuantiles = []float64{0, .01, .25, .5, .75, .9, .99, 1}

// exactQuantile is DDSketch's rank convention over the sorted values: the
// value of 0-based rank floor(p*(n-1)).
func exactQuantile(sorted []float64, p float64) float64 {
	return sorted[int(math.Floor(p*float64(len(sorted)-1)))]
}

// checkAccuracy fails t unless every test quantile of q is within q's
// relative accuracy of the exact quantile of values.
func checkAccuracy(t *testing.T, q *Quantiles, values []float64, when string) {
	t.Helper()
	if got := q.Count(); got != uint64(len(values)) {
		t.Fatalf("%s: Count() = %d, want %d", when, got, len(values))
	}
	if len(values) == 0 {
		if got := q.Quantile(0.5); !math.IsNaN(got) {
			t.Fatalf("%s: empty sketch: Quantile(0.5) = %v, want NaN", when, got)
		}
		return
	}
	sorted := slices.Sorted(slices.Values(values))
	a := q.RelativeAccuracy()
	for _, p := range testQuantiles {
		want := exactQuantile(sorted, p)
		got := q.Quantile(p)
		if math.Abs(got-want) > a*math.Abs(want)*(1+1e-9) {
			t.Fatalf("%s: n=%d: Quantile(%v) = %v, exact %v: relative error %.4g > %v",
				when, len(values), p, got, want, math.Abs(got-want)/math.Abs(want), a)
		}
	}
}

var valueGens = []struct {
	name string
	gen  func(r *rand.Rand) float64
}{
	{"normal", func(r *rand.Rand) float64 { return r.NormFloat64()*10 + 3 }},
	{"lognormal", func(r *rand.Rand) float64 { return math.Exp(r.NormFloat64() * 3) }},
	{"signs-and-zeros", func(r *rand.Rand) float64 {
		switch r.IntN(10) {
		case 0, 1:
			return 0
		case 2, 3, 4, 5:
			return -math.Pow(10, r.Float64()*16-8)
		}
		return math.Pow(10, r.Float64()*16-8)
	}},
	{"small-ints", func(r *rand.Rand) float64 { return float64(r.IntN(30) - 10) }},
	{"tiny-and-huge", func(r *rand.Rand) float64 {
		if r.IntN(2) == 0 {
			return 1e-300 * (1 + r.Float64())
		}
		return -1e300 * (1 + r.Float64())
	}},
}

func TestQuantilesAccuracy(t *testing.T) {
	for _, acc := range []float64{0.01, 0.05, 0.001} {
		for _, g := range valueGens {
			t.Run(g.name, func(t *testing.T) {
				r := rand.New(rand.NewPCG(1, uint64(acc*1e6)))
				q, err := NewQuantiles(acc)
				if err != nil {
					t.Fatal(err)
				}
				var values []float64
				for i := range 3000 {
					x := g.gen(r)
					q.Add(x)
					values = append(values, x)
					if i%300 == 299 {
						checkAccuracy(t, q, values, "after adds")
					}
				}
				// Removals of random earlier values, interleaved with adds,
				// down to nothing.
				for len(values) > 0 {
					j := r.IntN(len(values))
					q.Remove(values[j])
					values[j] = values[len(values)-1]
					values = values[:len(values)-1]
					if r.IntN(3) == 0 {
						x := g.gen(r)
						q.Add(x)
						values = append(values, x)
					}
					if len(values)%250 == 0 {
						checkAccuracy(t, q, values, "after removals")
						// Bins that emptied are gone: the sketch is the one
						// built from the current values alone.
						fresh, _ := NewQuantiles(acc)
						for _, x := range values {
							fresh.Add(x)
						}
						if !bytes.Equal(q.AppendBinary(nil), fresh.AppendBinary(nil)) {
							t.Fatalf("n=%d: sketch after removals differs from one built from its values", len(values))
						}
					}
				}
				if len(q.pos.keys)+len(q.neg.keys) != 0 || q.zero != 0 {
					t.Fatalf("empty sketch keeps %d+%d bins, zero count %d", len(q.neg.keys), len(q.pos.keys), q.zero)
				}
			})
		}
	}
}

// TestQuantilesSlidingMemory checks that a sliding window's sketch holds
// the bins of its current contents, not of its history.
func TestQuantilesSlidingMemory(t *testing.T) {
	q, _ := NewQuantiles(0.01)
	r := rand.New(rand.NewPCG(2, 2))
	const window = 100
	var ring [window]float64
	for i := range 200_000 {
		// A slowly drifting level, so the window's bins keep moving.
		x := math.Exp(float64(i)/5000) * (1 + r.Float64())
		if i >= window {
			q.Remove(ring[i%window])
		}
		ring[i%window] = x
		q.Add(x)
	}
	if n := len(q.pos.keys); n > window {
		t.Fatalf("%d bins for %d values", n, window)
	}
	if c := cap(q.pos.keys); c > 4*window {
		t.Fatalf("bins capacity %d for a window of %d", c, window)
	}
	checkAccuracy(t, q, ring[:], "sliding")
}

type goldenQuantiles struct {
	Cases []struct {
		Name             string    `json:"name"`
		RelativeAccuracy float64   `json:"relative_accuracy"`
		Values           []float64 `json:"values"`
		Quantiles        []float64 `json:"quantiles"`
		Want             []float64 `json:"want"`
	} `json:"cases"`
}

// TestQuantilesGolden compares with DataDog's Python DDSketch on the same
// inputs (testdata/gen_quantiles.py).
//
// The two bin the same except on a bin boundary, a value x = γ^i exactly
// (in practice ±1, as log(1) = 0 in any base): sketches-go's mapping, which
// we use, has bins [γ^i, γ^(i+1)) (as sketches-java), ddsketch's (γ^(i-1), γ^i]
// (as the paper), so there ddsketch answers one bin lower, by a factor γ.
func TestQuantilesGolden(t *testing.T) {
	b, err := os.ReadFile("testdata/quantiles_golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var g goldenQuantiles
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if len(g.Cases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range g.Cases {
		t.Run(c.Name, func(t *testing.T) {
			q, err := NewQuantiles(c.RelativeAccuracy)
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range c.Values {
				q.Add(x)
			}
			sorted := slices.Sorted(slices.Values(c.Values))
			for i, p := range c.Quantiles {
				got, want := q.Quantile(p), c.Want[i]
				if x := math.Abs(exactQuantile(sorted, p)); x > q.minValue && q.m.LowerBound(q.m.Index(x)) == x {
					want *= q.gamma
					t.Logf("Quantile(%v): %v on a bin boundary: want ddsketch's %v times gamma", p, exactQuantile(sorted, p), c.Want[i])
				}
				if math.Abs(got-want) > 1e-9*math.Abs(want) {
					t.Errorf("Quantile(%v) = %v, ddsketch %v", p, got, want)
				}
			}
		})
	}
}

func TestQuantilesMerge(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	for _, g := range valueGens {
		t.Run(g.name, func(t *testing.T) {
			all, _ := NewQuantiles(0.01)
			parts := make([]*Quantiles, 4)
			var values []float64
			for i := range parts {
				parts[i], _ = NewQuantiles(0.01)
				for range r.IntN(500) {
					x := g.gen(r)
					parts[i].Add(x)
					all.Add(x)
					values = append(values, x)
				}
			}
			var merged Quantiles // zero value adopts the parts' accuracy
			for _, p := range parts {
				merged.Merge(p)
			}
			if !bytes.Equal(merged.AppendBinary(nil), all.AppendBinary(nil)) {
				t.Fatal("merge of parts differs from adding all")
			}
			checkAccuracy(t, &merged, values, "merged")
		})
	}
}

func TestQuantilesEdges(t *testing.T) {
	for _, a := range []float64{0, -0.1, 1, 2, math.NaN(), 1e-9} {
		if _, err := NewQuantiles(a); err == nil {
			t.Errorf("NewQuantiles(%v): no error", a)
		}
	}
	var q Quantiles // zero value: DefaultRelativeAccuracy
	if got := q.Quantile(0.5); !math.IsNaN(got) {
		t.Errorf("empty: Quantile = %v, want NaN", got)
	}
	q.Add(math.NaN())
	if q.Count() != 0 {
		t.Errorf("NaN counted")
	}
	q.Add(5)
	q.Remove(7) // another bin: nothing to remove
	q.Remove(0) // no zeros
	if q.Count() != 1 {
		t.Errorf("Count() = %d after removing absent values, want 1", q.Count())
	}
	for _, p := range []float64{-0.1, 1.1, math.NaN()} {
		if got := q.Quantile(p); !math.IsNaN(got) {
			t.Errorf("Quantile(%v) = %v, want NaN", p, got)
		}
	}
	if got := q.RelativeAccuracy(); math.Abs(got-DefaultRelativeAccuracy) > 1e-12 {
		t.Errorf("RelativeAccuracy() = %v", got)
	}
	q.Add(math.Inf(1))
	q.Add(math.Inf(-1))
	q.Add(math.MaxFloat64)
	if top, bottom := q.Quantile(1), q.Quantile(0); math.IsInf(top, 0) || math.IsInf(bottom, 0) || top < 1e307 || bottom > -1e307 {
		t.Errorf("infinities: max %v, min %v", top, bottom)
	}
	q.Remove(math.Inf(1))
	q.Remove(math.Inf(-1))
	q.Remove(math.MaxFloat64)
	if q.Count() != 1 || q.Quantile(1) != q.Quantile(0) {
		t.Errorf("after removing the infinities: Count %d", q.Count())
	}
	q.Add(math.Copysign(0, -1))
	q.Add(1e-320) // subnormal: zero
	if q.zero != 2 {
		t.Errorf("zero count %d, want 2", q.zero)
	}

	defer func() {
		if recover() == nil {
			t.Error("merging different accuracies did not panic")
		}
	}()
	other, _ := NewQuantiles(0.02)
	other.Add(1)
	q.Merge(other)
}

func TestQuantilesRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for _, g := range valueGens {
		for _, n := range []int{0, 1, 10, 5000} {
			q, _ := NewQuantiles(0.02)
			for range n {
				q.Add(g.gen(r))
			}
			b := q.AppendBinary([]byte("prefix"))
			var got Quantiles
			rest, err := got.Decode(append(b[len("prefix"):], "tail"...))
			if err != nil {
				t.Fatalf("%s n=%d: %v", g.name, n, err)
			}
			if string(rest) != "tail" {
				t.Fatalf("%s n=%d: rest %q", g.name, n, rest)
			}
			if !bytes.Equal(got.AppendBinary(nil), b[len("prefix"):]) {
				t.Fatalf("%s n=%d: re-encoding differs", g.name, n)
			}
			for _, p := range testQuantiles {
				if a, b := got.Quantile(p), q.Quantile(p); a != b && !(math.IsNaN(a) && math.IsNaN(b)) {
					t.Fatalf("%s n=%d: Quantile(%v) = %v after round trip, %v before", g.name, n, p, a, b)
				}
			}
			c := q.Clone()
			c.Add(1)
			if c.Count() != q.Count()+1 {
				t.Fatal("clone shares state")
			}
		}
	}
	if len(mustEncodeSize(t)) > 40 {
		t.Errorf("a 100-value sketch of one magnitude takes %d bytes", len(mustEncodeSize(t)))
	}
}

func mustEncodeSize(t *testing.T) []byte {
	q, _ := NewQuantiles(0.01)
	for i := range 100 {
		q.Add(100 + float64(i%3)*3)
	}
	return q.AppendBinary(nil)
}

func BenchmarkQuantilesAdd(b *testing.B) {
	q, _ := NewQuantiles(0.01)
	xs := benchValues(4096)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		q.Add(xs[i&4095])
	}
}

// BenchmarkQuantilesRemove is a sliding window of 1000 values: one Add and
// one Remove per op.
func BenchmarkQuantilesRemove(b *testing.B) {
	q, _ := NewQuantiles(0.01)
	xs := benchValues(4096)
	for i := range 1000 {
		q.Add(xs[i])
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		q.Remove(xs[i&4095])
		q.Add(xs[(i+1000)&4095])
	}
}

func BenchmarkQuantilesQuantile(b *testing.B) {
	q, _ := NewQuantiles(0.01)
	for _, x := range benchValues(10000) {
		q.Add(x)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		q.Quantile(float64(i%100) / 100)
	}
	b.ReportMetric(float64(len(q.pos.keys)+len(q.neg.keys)), "bins")
}

func benchValues(n int) []float64 {
	r := rand.New(rand.NewPCG(5, 5))
	xs := make([]float64, n)
	for i := range xs {
		xs[i] = math.Exp(r.NormFloat64() * 2) // lognormal amounts
	}
	return xs
}
