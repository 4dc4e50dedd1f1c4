package rollout

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// within fails unless got successes out of n is within 5 standard
// deviations of a binomial with probability p.
func within(t *testing.T, what string, got, n int, p float64) {
	t.Helper()
	sd := math.Sqrt(float64(n) * p * (1 - p))
	if d := math.Abs(float64(got) - float64(n)*p); d > 5*sd+1 {
		t.Errorf("%s: %d of %d (%.4f), want %.4f ± %.4f (5 sd)", what, got, n, float64(got)/float64(n), p, 5*sd/float64(n))
	}
}

func TestBucket(t *testing.T) {
	if Bucket("fraud", "card-1") != Bucket("fraud", "card-1") {
		t.Fatal("not deterministic")
	}
	if Bucket("fraud", "card-1") == Bucket("fraud2", "card-1") || Bucket("fraud", "card-1") == Bucket("frau", "dcard-1") {
		t.Fatal("the model name does not separate buckets")
	}
	const n = 100_000
	var bins [10]int
	for i := range n {
		u := Bucket("fraud", fmt.Sprintf("card-%06d", i))
		if u < 0 || u >= 1 {
			t.Fatalf("bucket %v out of [0, 1)", u)
		}
		bins[int(u*10)]++
	}
	for i, c := range bins {
		within(t, fmt.Sprintf("bin %d", i), c, n, 0.1)
	}
}

func TestCanaryAndWeighted(t *testing.T) {
	for _, c := range []struct {
		percent, u float64
		want       bool
	}{{10, 0.0999, true}, {10, 0.1, false}, {0, 0, false}, {100, 0.99999, true}, {12.5, 0.124, true}} {
		if got := Canary(c.percent, c.u); got != c.want {
			t.Errorf("Canary(%v, %v) = %v", c.percent, c.u, got)
		}
	}
	for _, c := range []struct {
		w    []float64
		u    float64
		want int
	}{
		{[]float64{3, 1}, 0, 0}, {[]float64{3, 1}, 0.7499, 0}, {[]float64{3, 1}, 0.75, 1}, {[]float64{3, 1}, 0.999999, 1},
		{[]float64{0, 1, 1}, 0, 1}, {[]float64{1, 0, 1}, 0.5, 2}, {[]float64{1, 1, 0}, 0.9999999999, 1},
	} {
		if got := Weighted(c.w, c.u); got != c.want {
			t.Errorf("Weighted(%v, %v) = %d, want %d", c.w, c.u, got, c.want)
		}
	}
}

// TestSampleBeta checks the sampler's mean and variance against the Beta
// distribution's closed forms, for shapes below and above 1.
func TestSampleBeta(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range [][2]float64{{1, 1}, {0.5, 0.5}, {2, 8}, {30, 3}, {0.2, 5}, {500, 700}} {
		a, b := c[0], c[1]
		const n = 200_000
		var sum, sum2 float64
		for range n {
			x := SampleBeta(r, a, b)
			if x < 0 || x > 1 {
				t.Fatalf("Beta(%v, %v) sample %v", a, b, x)
			}
			sum += x
			sum2 += x * x
		}
		mean := sum / n
		variance := sum2/n - mean*mean
		wm := a / (a + b)
		wv := a * b / ((a + b) * (a + b) * (a + b + 1))
		if d := math.Abs(mean - wm); d > 5*math.Sqrt(wv/n) {
			t.Errorf("Beta(%v, %v): mean %v, want %v", a, b, mean, wm)
		}
		if d := math.Abs(variance-wv) / wv; d > 0.03 {
			t.Errorf("Beta(%v, %v): variance %v, want %v", a, b, variance, wv)
		}
	}
}

// probBGreater is P(X_B > X_A), X_A ~ Beta(aA, bA), X_B ~ Beta(aB, bB),
// integer aB: the closed form of Evan Miller, "Formulas for Bayesian A/B
// testing" (2015).
func probBGreater(aA, bA, aB, bB float64) float64 {
	lbeta := func(a, b float64) float64 {
		x, _ := math.Lgamma(a)
		y, _ := math.Lgamma(b)
		z, _ := math.Lgamma(a + b)
		return x + y - z
	}
	var p float64
	for i := 0.0; i < aB; i++ {
		p += math.Exp(lbeta(aA+i, bB+bA) - math.Log(bB+i) - lbeta(1+i, bB) - lbeta(aA, bA))
	}
	return p
}

// argmaxProbs is P(arm i's sample is the largest) by numerical integration
// of f_i(x) * prod_{j != i} F_j(x) on a fine grid (midpoint rule, CDFs by
// cumulative sums of the densities).
func argmaxProbs(arms []Beta) []float64 {
	const n = 200_000
	h := 1.0 / n
	pdf := func(a Beta, x float64) float64 {
		la, _ := math.Lgamma(a.Alpha)
		lb, _ := math.Lgamma(a.Beta)
		lab, _ := math.Lgamma(a.Alpha + a.Beta)
		return math.Exp(lab - la - lb + (a.Alpha-1)*math.Log(x) + (a.Beta-1)*math.Log1p(-x))
	}
	cdf := make([]float64, len(arms))
	out := make([]float64, len(arms))
	for k := range n {
		x := (float64(k) + 0.5) * h
		f := make([]float64, len(arms))
		for i, a := range arms {
			f[i] = pdf(a, x)
		}
		for i := range arms {
			prod := f[i] * h
			for j := range arms {
				if j != i {
					prod *= cdf[j] + f[j]*h/2 // F_j at the midpoint
				}
			}
			out[i] += prod
		}
		for i := range arms {
			cdf[i] += f[i] * h
		}
	}
	return out
}

// TestThompsonMatchesOracle checks the share of events each arm serves
// against floor + (1 - K*floor) * P(arm's sample is largest), computed in
// closed form (two arms) and by numerical integration (three arms), and
// that the choice is a function of the seed.
func TestThompsonMatchesOracle(t *testing.T) {
	if p, q := probBGreater(3, 5, 4, 4), argmaxProbs([]Beta{{3, 5}, {4, 4}})[1]; math.Abs(p-q) > 1e-4 {
		t.Fatalf("the two oracles disagree: closed form %v, integration %v", p, q)
	}
	for _, c := range []struct {
		arms  []Beta
		floor float64
		p     []float64 // P(argmax), nil: integrate
	}{
		{[]Beta{{3, 5}, {4, 4}}, 0.05, nil},
		{[]Beta{{1, 1}, {1, 1}}, 0, []float64{0.5, 0.5}},
		{[]Beta{{20, 80}, {25, 75}}, 0.1, []float64{1 - probBGreater(20, 80, 25, 75), probBGreater(20, 80, 25, 75)}},
		{[]Beta{{2, 6}, {3, 5}, {4, 4}}, 0.05, nil},
		{[]Beta{{0.5, 0.5}, {2, 2}, {1, 3}}, 0.2, nil},
		{[]Beta{{900, 100}, {100, 900}}, 0.05, []float64{1, 0}}, // the floor alone keeps arm 1 alive
	} {
		p := c.p
		if p == nil {
			p = argmaxProbs(c.arms)
		}
		const n = 100_000
		counts := make([]int, len(c.arms))
		for i := range n {
			seed := Seed("fraud", fmt.Sprintf("txn-%d", i))
			a := Thompson(seed, c.arms, c.floor)
			if b := Thompson(seed, c.arms, c.floor); a != b {
				t.Fatalf("seed %d chose %d then %d", seed, a, b)
			}
			counts[a]++
		}
		k := float64(len(c.arms))
		for i := range c.arms {
			want := c.floor + (1-k*c.floor)*p[i]
			within(t, fmt.Sprintf("%v floor %v arm %d", c.arms, c.floor, i), counts[i], n, want)
			if float64(counts[i]) < float64(n)*c.floor-5*math.Sqrt(float64(n)*c.floor) {
				t.Errorf("%v: arm %d served %d of %d, below the floor %v", c.arms, i, counts[i], n, c.floor)
			}
		}
	}
}
