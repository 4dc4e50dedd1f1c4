// Package train fits Weir's built-in model, the logistic regression of
// scoring/model, in process: deterministic, with no dependency beyond the
// standard library. It is the "local" backend's trainer; the reference
// Python trainer (XGBoost) is a later issue.
//
// # Procedure
//
//  1. Split: the last HoldoutFraction of the rows (callers pass rows in
//     event-time order, so the holdout is the most recent data) is held out;
//     the rest trains.
//  2. Transform: a feature gets log1p when, on the training rows, its minimum
//     is >= 0 and its skewness (the population third standardized moment)
//     is > 1: non-negative and heavy-tailed, such as amounts and counts of
//     bursty events. Other features are left as they are.
//  3. Standardize each transformed feature by its training mean and
//     population standard deviation (1 for a constant feature).
//  4. Fit by Newton's method (IRLS) with a backtracking line search,
//     minimizing the mean log loss plus (L2/2)·||w||² (the intercept is not
//     penalized), until the largest step is below Tol. This is
//     scikit-learn's LogisticRegression with C = 1/(n_train·L2).
//  5. Report AUC (monitors/metric.AUC, equal to scikit-learn's
//     roc_auc_score, ties counting one half) and log loss on both parts,
//     and build the reference profile (monitors/profile.Build, Bins bins)
//     of every feature's raw value and of the score over all rows.
//
// The package exports no metrics.
package train

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/weirhq/weir/monitors/metric"
	"github.com/weirhq/weir/monitors/profile"
	"github.com/weirhq/weir/scoring/model"
)

// Options tune Fit. Zero values take the defaults.
type Options struct {
	// Name is the model name written into the artifact.
	Name string
	// L2 is the ridge penalty on the standardized weights (default 1e-3).
	L2 float64
	// HoldoutFraction is the share of rows, taken from the end, held out
	// for evaluation (default 0.2; negative means none).
	HoldoutFraction float64
	// MaxIter bounds the Newton iterations (default 100).
	MaxIter int
	// Tol is the convergence threshold on the largest step (default 1e-10).
	Tol float64
	// Bins is the number of reference-profile bins (default 10).
	Bins int
	// Metadata is copied into the artifact.
	Metadata map[string]string
}

func (o *Options) defaults() {
	if o.L2 == 0 {
		o.L2 = 1e-3
	}
	if o.HoldoutFraction == 0 {
		o.HoldoutFraction = 0.2
	}
	if o.HoldoutFraction < 0 {
		o.HoldoutFraction = 0
	}
	if o.MaxIter == 0 {
		o.MaxIter = 100
	}
	if o.Tol == 0 {
		o.Tol = 1e-10
	}
	if o.Bins == 0 {
		o.Bins = 10
	}
}

// Metrics describe a fit. AUCs and log losses of a part with no rows, or
// with one class only (AUC), are NaN.
type Metrics struct {
	TrainRows, HoldoutRows           int
	TrainPositives, HoldoutPositives int
	TrainAUC, HoldoutAUC             float64
	TrainLogLoss, HoldoutLogLoss     float64
	Iterations                       int
	// Profile is the reference profile of the training set.
	Profile profile.Profile
}

// Map returns the finite metrics by name, for schemas.ModelRecord.Metrics.
func (m Metrics) Map() map[string]float64 {
	out := map[string]float64{}
	for k, v := range map[string]float64{
		"train_rows": float64(m.TrainRows), "holdout_rows": float64(m.HoldoutRows),
		"train_positives": float64(m.TrainPositives), "holdout_positives": float64(m.HoldoutPositives),
		"train_auc": m.TrainAUC, "holdout_auc": m.HoldoutAUC,
		"train_log_loss": m.TrainLogLoss, "holdout_log_loss": m.HoldoutLogLoss,
		"iterations": float64(m.Iterations),
	} {
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			out[k] = v
		}
	}
	return out
}

// Skewed reports whether a feature's training values get log1p: all >= 0
// and skewness > 1.
func Skewed(values []float64) bool {
	if len(values) < 3 {
		return false
	}
	var mean float64
	for _, v := range values {
		if v < 0 {
			return false
		}
		mean += v
	}
	mean /= float64(len(values))
	var m2, m3 float64
	for _, v := range values {
		d := v - mean
		m2 += d * d
		m3 += d * d * d
	}
	n := float64(len(values))
	m2, m3 = m2/n, m3/n
	if m2 == 0 {
		return false
	}
	return m3/math.Pow(m2, 1.5) > 1
}

// Fit trains a logistic regression of y on X, whose columns are named by
// names (the model's "view.feature" names in vector order).
func Fit(X [][]float64, y []bool, names []string, o Options) (*model.LogReg, Metrics, error) {
	o.defaults()
	fail := func(err error) (*model.LogReg, Metrics, error) {
		return nil, Metrics{}, fmt.Errorf("train: fit %s: %w", o.Name, err)
	}
	if len(X) != len(y) {
		return fail(fmt.Errorf("%d rows of features for %d labels", len(X), len(y)))
	}
	d := len(names)
	if d == 0 {
		return fail(errors.New("no features"))
	}
	for i, row := range X {
		if len(row) != d {
			return fail(fmt.Errorf("row %d has %d values for %d features", i, len(row), d))
		}
		for j, v := range row {
			if math.IsNaN(v) || math.IsInf(v, 0) {
				return fail(fmt.Errorf("row %d feature %s: %v is not finite", i, names[j], v))
			}
		}
	}
	if o.L2 < 0 {
		return fail(fmt.Errorf("l2 %v is negative", o.L2))
	}
	nHold := int(float64(len(X)) * o.HoldoutFraction)
	nTrain := len(X) - nHold
	var pos int
	for _, v := range y[:nTrain] {
		if v {
			pos++
		}
	}
	if pos == 0 || pos == nTrain {
		return fail(fmt.Errorf("%d training rows with %d positives: both classes are needed", nTrain, pos))
	}

	m := &model.LogReg{
		Format: model.Format, Name: o.Name, Features: append([]string(nil), names...),
		Transforms: make([]string, d), Mean: make([]float64, d), Std: make([]float64, d), Weights: make([]float64, d),
	}
	col := make([]float64, nTrain)
	for j := range d {
		for i := range nTrain {
			col[i] = X[i][j]
		}
		if Skewed(col) {
			m.Transforms[j] = model.TransformLog1p
			for i := range col {
				col[i] = math.Log1p(col[i])
			}
		}
		var mean, v float64
		for _, c := range col {
			mean += c
		}
		mean /= float64(nTrain)
		for _, c := range col {
			v += (c - mean) * (c - mean)
		}
		std := math.Sqrt(v / float64(nTrain))
		if std == 0 || math.IsNaN(std) {
			std = 1
		}
		m.Mean[j], m.Std[j] = mean, std
	}

	// Standardized design matrix of the training rows.
	Z := make([][]float64, nTrain)
	for i := range nTrain {
		Z[i] = standardize(m, X[i], make([]float64, d))
	}
	beta, iters, err := newton(Z, y[:nTrain], o)
	if err != nil {
		return fail(err)
	}
	m.Bias = beta[0]
	copy(m.Weights, beta[1:])
	m.Metadata = map[string]string{
		"trainer": "weir-logreg-newton", "l2": strconv.FormatFloat(o.L2, 'g', -1, 64),
		"iterations": strconv.Itoa(iters), "train_rows": strconv.Itoa(nTrain), "holdout_rows": strconv.Itoa(nHold),
	}
	for k, v := range o.Metadata {
		m.Metadata[k] = v
	}
	if err := m.Validate(); err != nil {
		return fail(err)
	}

	scores := make([]float64, len(X))
	for i, row := range X {
		scores[i] = m.Score(row)
	}
	met := Metrics{TrainRows: nTrain, HoldoutRows: nHold, Iterations: iters}
	met.TrainPositives = pos
	for _, v := range y[nTrain:] {
		if v {
			met.HoldoutPositives++
		}
	}
	met.TrainAUC, met.TrainLogLoss = metric.AUC(scores[:nTrain], y[:nTrain]), LogLoss(scores[:nTrain], y[:nTrain])
	met.HoldoutAUC, met.HoldoutLogLoss = math.NaN(), math.NaN()
	if nHold > 0 {
		met.HoldoutAUC, met.HoldoutLogLoss = metric.AUC(scores[nTrain:], y[nTrain:]), LogLoss(scores[nTrain:], y[nTrain:])
	}
	met.Profile = profile.Profile{Rows: len(X), Features: map[string]profile.Histogram{}}
	all := make([]float64, len(X))
	for j, name := range names {
		for i, row := range X {
			all[i] = row[j]
		}
		met.Profile.Features[name] = profile.Build(all, o.Bins)
	}
	met.Profile.Features[profile.ScoreName] = profile.Build(scores, o.Bins)
	return m, met, nil
}

// standardize writes the transformed, standardized row into z.
func standardize(m *model.LogReg, row, z []float64) []float64 {
	for j, v := range row {
		if m.Transforms[j] == model.TransformLog1p {
			v = math.Log1p(math.Max(v, 0))
		}
		z[j] = (v - m.Mean[j]) / m.Std[j]
	}
	return z
}

// LogLoss is the mean negative log-likelihood of labels under predicted
// probabilities, with probabilities clipped to [1e-15, 1-1e-15]; NaN for
// no rows.
func LogLoss(p []float64, y []bool) float64 {
	if len(p) == 0 {
		return math.NaN()
	}
	const eps = 1e-15
	var s float64
	for i, v := range p {
		v = math.Min(math.Max(v, eps), 1-eps)
		if y[i] {
			s -= math.Log(v)
		} else {
			s -= math.Log1p(-v)
		}
	}
	return s / float64(len(p))
}
