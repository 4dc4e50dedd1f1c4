// Package model holds the model formats Weir scores in pure Go, each behind
// the [Model] interface and loaded by [Load] from the format named in the
// registry record:
//
//   - "logreg-json" ([LogReg]): Weir's logistic-regression artifact, a JSON
//     document carrying everything needed to turn a raw feature vector
//     into a probability, so that a scorer needs nothing but the artifact.
//   - "xgboost-json" ([ParseXGBoostJSON]): XGBoost's own JSON model file,
//     evaluated as XGBoost does to the float32 bit.
//   - "lightgbm-text" ([ParseLightGBMText]): LightGBM's text model file.
//
// The tree formats are checked against the libraries themselves: golden
// vectors that testdata/gen.py makes with PyPI xgboost and lightgbm.
//
// Tree models compile into an [Ensemble]: one flat node array evaluated
// without allocation.
//
// An artifact is immutable once published: the model registry records its
// SHA-256 (see [SHA256]) and refuses to load bytes that do not match.
//
// Scoring a vector x of raw feature values with a LogReg (in Features
// order):
//
//	t_i = log1p(max(x_i, 0))  if Transforms[i] == "log1p"
//	t_i = x_i                 if Transforms[i] == ""
//	z   = Bias + sum_i Weights[i] * (t_i - Mean[i]) / Std[i]
//	p   = 1 / (1 + exp(-z))
//
// The package exports no metrics.
package model

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
)

// Format is the value of the format field of a logistic-regression artifact
// and of schemas.ModelRecord.Format for it.
const Format = "logreg-json"

// Transforms a feature may have.
const (
	TransformNone  = ""
	TransformLog1p = "log1p"
)

// LogReg is a logistic-regression artifact. Parse returns only valid ones;
// a LogReg built by hand should be checked with Validate before use.
type LogReg struct {
	Format string `json:"format"` // always Format
	Name   string `json:"name"`   // model name
	// Features are "view.feature" names in vector order.
	Features []string `json:"features"`
	// Transforms, per feature: TransformNone or TransformLog1p. log1p is
	// applied to max(x, 0), so that a negative value never scores NaN.
	Transforms []string `json:"transforms"`
	// Mean and Std standardize each transformed feature; Std > 0.
	Mean    []float64 `json:"mean"`
	Std     []float64 `json:"std"`
	Weights []float64 `json:"weights"`
	Bias    float64   `json:"bias"`
	// Metadata is free-form provenance (trainer, options, row counts).
	Metadata map[string]string `json:"metadata,omitempty"`
}

// maxArtifact bounds what Parse accepts; a real artifact is a few KB.
const maxArtifact = 16 << 20

// Parse decodes and validates an artifact. Unknown fields, trailing data,
// lengths that disagree, non-finite numbers and non-positive standard
// deviations are errors that say what is wrong.
func Parse(b []byte) (*LogReg, error) {
	if len(b) > maxArtifact {
		return nil, fmt.Errorf("model: parse: artifact is %d bytes, more than the %d allowed", len(b), maxArtifact)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m LogReg
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("model: parse: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("model: parse: trailing data after the artifact")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// Validate checks the artifact's shape.
func (m *LogReg) Validate() error {
	if m.Format != Format {
		return fmt.Errorf("model: format %q, want %q", m.Format, Format)
	}
	if m.Name == "" {
		return errors.New("model: name is empty")
	}
	n := len(m.Features)
	if n == 0 {
		return errors.New("model: no features")
	}
	for _, c := range []struct {
		name string
		len  int
	}{{"transforms", len(m.Transforms)}, {"means", len(m.Mean)}, {"stds", len(m.Std)}, {"weights", len(m.Weights)}} {
		if c.len != n {
			return fmt.Errorf("model: %d %s for %d features", c.len, c.name, n)
		}
	}
	seen := make(map[string]bool, n)
	for i, f := range m.Features {
		if f == "" {
			return fmt.Errorf("model: feature %d has an empty name", i)
		}
		if seen[f] {
			return fmt.Errorf("model: feature %q appears twice", f)
		}
		seen[f] = true
		switch m.Transforms[i] {
		case TransformNone, TransformLog1p:
		default:
			return fmt.Errorf("model: feature %q: unknown transform %q (want \"\" or %q)", f, m.Transforms[i], TransformLog1p)
		}
		if !finite(m.Mean[i]) || !finite(m.Std[i]) || !finite(m.Weights[i]) {
			return fmt.Errorf("model: feature %q: mean %v, std %v, weight %v: all must be finite", f, m.Mean[i], m.Std[i], m.Weights[i])
		}
		if m.Std[i] <= 0 {
			return fmt.Errorf("model: feature %q: std %v, must be > 0", f, m.Std[i])
		}
	}
	if !finite(m.Bias) {
		return fmt.Errorf("model: bias %v is not finite", m.Bias)
	}
	return nil
}

func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }

// Marshal validates the artifact and encodes it as JSON. The encoding is
// deterministic (metadata keys are sorted), so equal models have equal
// SHA-256.
func (m *LogReg) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("model: marshal: %w", err)
	}
	return append(b, '\n'), nil
}

// Score returns the probability of the positive class for x, raw feature
// values in Features order. It does not allocate. A NaN in x gives NaN.
// Score panics if len(x) != len(Features): the caller builds x from
// Features, so a mismatch is a programmer error.
func (m *LogReg) Score(x []float64) float64 {
	return Sigmoid(m.Logit(x))
}

// Logit is the linear predictor z of x (see the package doc).
func (m *LogReg) Logit(x []float64) float64 {
	if len(x) != len(m.Weights) {
		panic(fmt.Sprintf("model: score %d values with a %d-feature model", len(x), len(m.Weights)))
	}
	z := m.Bias
	for i, v := range x {
		if m.Transforms[i] == TransformLog1p {
			v = math.Log1p(math.Max(v, 0))
		}
		z += m.Weights[i] * (v - m.Mean[i]) / m.Std[i]
	}
	return z
}

// Sigmoid is the logistic function, computed without overflow for any z.
func Sigmoid(z float64) float64 {
	if z >= 0 {
		return 1 / (1 + math.Exp(-z))
	}
	e := math.Exp(z)
	return e / (1 + e)
}

// SHA256 is the lower-case hex SHA-256 of an artifact's bytes, as recorded
// in schemas.ModelRecord.SHA256.
func SHA256(artifact []byte) string {
	s := sha256.Sum256(artifact)
	return hex.EncodeToString(s[:])
}
