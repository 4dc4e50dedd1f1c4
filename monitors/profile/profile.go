// Package profile holds reference profiles: the distribution of each model
// input and of the score on a model's training set, binned at the training
// set's quantiles, against which monitors measure drift (PSI). A profile is
// stored as JSON in the model registry record of the version it describes.
package profile

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
)

// ScoreName is the profile entry of the model's output.
const ScoreName = "score"

// Histogram is a binned distribution: Edges are the upper bounds of all
// bins but the last (ascending, len(Fractions)-1 of them); a value v falls
// in the first bin whose edge is >= v. Fractions sum to 1.
type Histogram struct {
	Edges     []float64 `json:"edges"`
	Fractions []float64 `json:"fractions"`
	Count     int       `json:"count"`
}

// Profile is the reference of one model version.
type Profile struct {
	Rows     int                  `json:"rows"`
	Features map[string]Histogram `json:"features"` // by model feature name, plus ScoreName
}

// Build bins values at their quantiles into at most bins bins (fewer when
// values repeat, e.g. counts), and records each bin's fraction. NaNs are
// ignored.
func Build(values []float64, bins int) Histogram {
	v := make([]float64, 0, len(values))
	for _, x := range values {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	sort.Float64s(v)
	h := Histogram{Count: len(v)}
	if len(v) == 0 || bins < 1 {
		return Histogram{Fractions: []float64{1}}
	}
	for i := 1; i < bins; i++ {
		e := v[(len(v)*i)/bins]
		if len(h.Edges) > 0 && e <= h.Edges[len(h.Edges)-1] {
			continue
		}
		if e >= v[len(v)-1] { // an edge at the max leaves the last bin empty
			break
		}
		h.Edges = append(h.Edges, e)
	}
	h.Fractions = make([]float64, len(h.Edges)+1)
	for _, x := range v {
		h.Fractions[h.Bin(x)]++
	}
	for i := range h.Fractions {
		h.Fractions[i] /= float64(len(v))
	}
	return h
}

// Bin returns the index of the bin v falls in.
func (h Histogram) Bin(v float64) int {
	return sort.SearchFloat64s(h.Edges, v)
}

// Counter accumulates observed values into a histogram's bins.
type Counter struct {
	h      Histogram
	counts []float64
	n      int
}

// NewCounter returns an empty counter over h's bins.
func (h Histogram) NewCounter() *Counter {
	return &Counter{h: h, counts: make([]float64, len(h.Fractions))}
}

// Add counts one observation; NaN is ignored.
func (c *Counter) Add(v float64) {
	if math.IsNaN(v) {
		return
	}
	c.counts[c.h.Bin(v)]++
	c.n++
}

// N is the number of observations counted.
func (c *Counter) N() int { return c.n }

// PSI is the population stability index of the observed distribution
// against the reference: sum over bins of (a-e)*ln(a/e), with fractions
// floored at epsilon so empty bins stay finite.
func (c *Counter) PSI() float64 {
	if c.n == 0 {
		return 0
	}
	actual := make([]float64, len(c.counts))
	for i, x := range c.counts {
		actual[i] = x / float64(c.n)
	}
	return PSI(c.h.Fractions, actual)
}

// epsilon floors bin fractions in PSI.
const epsilon = 1e-4

// PSI of actual against expected fractions (same bins).
func PSI(expected, actual []float64) float64 {
	var psi float64
	for i := range expected {
		e := math.Max(expected[i], epsilon)
		a := math.Max(actual[i], epsilon)
		psi += (a - e) * math.Log(a/e)
	}
	return psi
}

// Marshal encodes a profile for the registry record.
func (p *Profile) Marshal() (string, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("profile: encode: %w", err)
	}
	return string(b), nil
}

// Parse decodes a profile from a registry record, checking its shape.
func Parse(s string) (*Profile, error) {
	var p Profile
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		return nil, fmt.Errorf("profile: decode: %w", err)
	}
	for name, h := range p.Features {
		if len(h.Fractions) != len(h.Edges)+1 {
			return nil, fmt.Errorf("profile: feature %q: %d fractions for %d edges, want edges+1", name, len(h.Fractions), len(h.Edges))
		}
		if !sort.Float64sAreSorted(h.Edges) {
			return nil, fmt.Errorf("profile: feature %q: edges not ascending", name)
		}
	}
	return &p, nil
}
