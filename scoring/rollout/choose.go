package rollout

import (
	"math"
	"math/rand/v2"

	"github.com/cespare/xxhash/v2"
)

// hash64 is xxhash64 of a, a zero byte and b.
func hash64(a, b string) uint64 {
	var d xxhash.Digest
	d.Reset()
	_, _ = d.WriteString(a)
	_, _ = d.Write([]byte{0})
	_, _ = d.WriteString(b)
	return d.Sum64()
}

// Bucket returns a number in [0, 1), uniform over keys, fixed for (model,
// key): the entity's place in a canary or A/B split.
func Bucket(model, key string) float64 {
	return float64(hash64(model, key)>>11) / (1 << 53)
}

// Canary reports whether bucket u falls in the canary's percent (0-100).
func Canary(percent, u float64) bool { return u*100 < percent }

// Weighted returns the index of the arm whose cumulative share of the
// weights first exceeds u; an arm of weight 0 is never chosen. The weights
// must have a positive sum.
func Weighted(weights []float64, u float64) int {
	var sum float64
	for _, w := range weights {
		sum += w
	}
	x, last := u*sum, 0
	var cum float64
	for i, w := range weights {
		if w <= 0 {
			continue
		}
		cum += w
		last = i
		if x < cum {
			return i
		}
	}
	return last // rounding at u close to 1
}

// Seed is the bandit's random seed for one event of a model.
func Seed(model, eventID string) uint64 { return hash64(model, eventID) }

// Beta is a Beta(Alpha, Beta) posterior; both are positive.
type Beta struct{ Alpha, Beta float64 }

// Thompson returns the index of the arm one event is served by: with
// probability len(arms)*floor an arm drawn uniformly, else the arm whose
// posterior sample is largest. The draws come from a PCG generator seeded
// with seed, so the same seed and posteriors give the same arm. It panics
// when arms is empty.
func Thompson(seed uint64, arms []Beta, floor float64) int {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	k := len(arms)
	if r.Float64() < float64(k)*floor {
		return r.IntN(k)
	}
	best, bi := math.Inf(-1), 0
	for i, a := range arms {
		if x := SampleBeta(r, a.Alpha, a.Beta); x > best {
			best, bi = x, i
		}
	}
	return bi
}

// SampleBeta draws from Beta(a, b) as X/(X+Y), X ~ Gamma(a), Y ~ Gamma(b).
func SampleBeta(r *rand.Rand, a, b float64) float64 {
	x := sampleGamma(r, a)
	y := sampleGamma(r, b)
	if x+y == 0 {
		return 0.5
	}
	return x / (x + y)
}

// sampleGamma draws from Gamma(shape, 1) by Marsaglia and Tsang (2000);
// a shape below 1 is boosted: Gamma(a) = Gamma(a+1) * U^(1/a).
func sampleGamma(r *rand.Rand, shape float64) float64 {
	if shape < 1 {
		u := r.Float64()
		return sampleGamma(r, shape+1) * math.Pow(u, 1/shape)
	}
	d := shape - 1.0/3
	c := 1 / math.Sqrt(9*d)
	for {
		x := r.NormFloat64()
		v := 1 + c*x
		if v <= 0 {
			continue
		}
		v = v * v * v
		u := r.Float64()
		if u < 1-0.0331*x*x*x*x || math.Log(u) < 0.5*x*x+d*(1-v+math.Log(v)) {
			return d * v
		}
	}
}
