package profile

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestBuildQuantileBins(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	v := make([]float64, 10000)
	for i := range v {
		v[i] = r.NormFloat64()
	}
	h := Build(v, 10)
	if len(h.Fractions) != 10 {
		t.Fatalf("%d bins, want 10", len(h.Fractions))
	}
	var sum float64
	for _, f := range h.Fractions {
		sum += f
		if math.Abs(f-0.1) > 0.01 {
			t.Fatalf("quantile bin fraction %g, want ~0.1", f)
		}
	}
	if math.Abs(sum-1) > 1e-9 {
		t.Fatalf("fractions sum to %g", sum)
	}
}

func TestBuildRepeatedValues(t *testing.T) {
	h := Build([]float64{1, 1, 1, 1, 2, 2, 3}, 10)
	if len(h.Fractions) != len(h.Edges)+1 || len(h.Fractions) > 3 {
		t.Fatalf("bins on 3 distinct values: %+v", h)
	}
	if h.Fractions[h.Bin(1)] != 4.0/7 {
		t.Fatalf("fraction of 1: %+v", h)
	}
}

// TestPSI checks PSI against a hand-derived value and its basic properties.
func TestPSI(t *testing.T) {
	cases := []struct {
		name     string
		e, a     []float64
		want     float64
		tolerant bool
	}{
		{"same", []float64{0.5, 0.5}, []float64{0.5, 0.5}, 0, false},
		// (0.7-0.5)ln(0.7/0.5) + (0.3-0.5)ln(0.3/0.5)
		{"shift", []float64{0.5, 0.5}, []float64{0.7, 0.3}, 0.2*math.Log(1.4) + -0.2*math.Log(0.6), false},
	}
	for _, c := range cases {
		if got := PSI(c.e, c.a); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("%s: PSI %g, want %g", c.name, got, c.want)
		}
	}
	r := rand.New(rand.NewPCG(3, 4))
	ref := make([]float64, 20000)
	for i := range ref {
		ref[i] = r.NormFloat64()
	}
	h := Build(ref, 10)
	same, shifted := h.NewCounter(), h.NewCounter()
	for range 20000 {
		same.Add(r.NormFloat64())
		shifted.Add(r.NormFloat64() + 1)
	}
	if p := same.PSI(); p > 0.01 {
		t.Errorf("PSI of a sample of the reference: %g, want ~0", p)
	}
	if p := shifted.PSI(); p < 0.5 {
		t.Errorf("PSI of a 1-sigma shift: %g, want > 0.5", p)
	}
}

func TestParseRejectsBadShape(t *testing.T) {
	if _, err := Parse(`{"features":{"x":{"edges":[1,2],"fractions":[1]}}}`); err == nil {
		t.Fatal("accepted mismatched edges and fractions")
	}
	p := &Profile{Rows: 3, Features: map[string]Histogram{"x": Build([]float64{1, 2, 3}, 2)}}
	s, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse(s); err != nil {
		t.Fatal(err)
	}
}
