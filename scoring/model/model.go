package model

import (
	"bytes"
	"fmt"
)

// Formats Load understands, as written in schemas.ModelRecord.Format.
const (
	// FormatLogReg is Weir's logistic-regression artifact (see LogReg).
	FormatLogReg = Format
	// FormatXGBoostJSON is XGBoost's JSON model, Booster.save_model("m.json").
	FormatXGBoostJSON = "xgboost-json"
	// FormatLightGBMText is LightGBM's text model, Booster.save_model("m.txt").
	FormatLightGBMText = "lightgbm-text"
)

// Model is a parsed model of any format, immutable and safe for concurrent
// use. Inputs are raw feature values in the model's feature order; NaN is
// a missing value for the tree formats (each split's default direction
// takes it) and scores NaN with LogReg.
type Model interface {
	// ModelFormat is the format the model was loaded from.
	ModelFormat() string
	// FeatureNames are the feature names the artifact records, in vector
	// order, or nil when it records none (an XGBoost model trained
	// without feature names).
	FeatureNames() []string
	// NumFeatures is the length of the vectors Score and Predict take.
	NumFeatures() int
	// NumOutputs is how many values Predict appends: 1, or the number of
	// classes of a multi-class probability model.
	NumOutputs() int
	// Score is the model's first output for x: the probability of the
	// positive class of a binary classifier, a regression's value. It
	// does not allocate. It panics if len(x) != NumFeatures().
	Score(x []float64) float64
	// Predict appends the model's outputs for x to dst, transformed as
	// the model's objective says (probabilities, counts, values).
	Predict(dst, x []float64) []float64
}

var (
	_ Model = (*LogReg)(nil)
	_ Model = (*Ensemble)(nil)
)

// Load parses an artifact of the named format. The error says which
// format failed and why; it never panics on malformed input.
func Load(format string, b []byte) (Model, error) {
	switch format {
	case FormatLogReg:
		m, err := Parse(b)
		if err != nil {
			return nil, err
		}
		return m, nil
	case FormatXGBoostJSON:
		m, err := ParseXGBoostJSON(b)
		if err != nil {
			return nil, err
		}
		return m, nil
	case FormatLightGBMText:
		m, err := ParseLightGBMText(b)
		if err != nil {
			return nil, err
		}
		return m, nil
	}
	return nil, fmt.Errorf("model: unknown format %q (want %q, %q or %q)", format, FormatLogReg, FormatXGBoostJSON, FormatLightGBMText)
}

// Detect guesses an artifact's format from its first bytes, for tools
// that register a file without being told its format; "" when it looks
// like none of them. Load never guesses.
func Detect(b []byte) string {
	t := bytes.TrimLeft(b, " \t\r\n")
	switch {
	case bytes.HasPrefix(t, []byte("tree\n")) || bytes.HasPrefix(t, []byte("tree\r\n")):
		return FormatLightGBMText
	case len(t) > 0 && t[0] == '{':
		head := t[:min(len(t), 4096)]
		if bytes.Contains(head, []byte(`"format"`)) && bytes.Contains(head, []byte(`"`+Format+`"`)) {
			return FormatLogReg
		}
		if bytes.Contains(head, []byte(`"learner"`)) {
			return FormatXGBoostJSON
		}
	}
	return ""
}

// ModelFormat implements Model.
func (m *LogReg) ModelFormat() string { return Format }

// FeatureNames implements Model.
func (m *LogReg) FeatureNames() []string { return m.Features }

// NumFeatures implements Model.
func (m *LogReg) NumFeatures() int { return len(m.Features) }

// NumOutputs implements Model: one probability.
func (m *LogReg) NumOutputs() int { return 1 }

// Predict implements Model: it appends Score(x).
func (m *LogReg) Predict(dst, x []float64) []float64 { return append(dst, m.Score(x)) }
