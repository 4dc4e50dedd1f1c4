// Package metric holds the performance metrics monitors compute over a
// window's labelled predictions. It exports no Prometheus metrics; the
// monitors package publishes what these functions return.
package metric

import (
	"math"
	"sort"
)

// AUC is the area under the ROC curve of scores against labels (true =
// positive class), computed from ranks as the Mann-Whitney statistic: the
// probability that a random positive scores above a random negative, ties
// counting one half. This equals scikit-learn's roc_auc_score.
//
// The pair count is kept in integers (twice the concordant pairs plus the
// tied ones), so for fewer than 2^26 scores both it and the denominator are
// exact in a float64 and the result is the correctly rounded quotient.
//
// AUC is undefined, and NaN is returned, when there is no positive or no
// negative (including no scores at all); scikit-learn raises or returns NaN
// there too. Scores that are NaN are left out, with their labels. AUC panics
// if the slices differ in length (a programmer error).
func AUC(scores []float64, positive []bool) float64 {
	if len(scores) != len(positive) {
		panic("metric: AUC of scores and labels of different lengths")
	}
	idx := make([]int, 0, len(scores))
	for i, s := range scores {
		if !math.IsNaN(s) {
			idx = append(idx, i)
		}
	}
	sort.Slice(idx, func(a, b int) bool { return scores[idx[a]] < scores[idx[b]] })

	// Walk groups of equal score in ascending order. Each positive in a
	// group beats every negative below the group (2 half-points each) and
	// ties every negative inside it (1 half-point each).
	var halves, negBelow, pos, neg uint64
	for i := 0; i < len(idx); {
		j := i
		var gp, gn uint64
		for ; j < len(idx) && scores[idx[j]] == scores[idx[i]]; j++ {
			if positive[idx[j]] {
				gp++
			} else {
				gn++
			}
		}
		halves += gp * (2*negBelow + gn)
		negBelow += gn
		pos += gp
		neg += gn
		i = j
	}
	if pos == 0 || neg == 0 {
		return math.NaN()
	}
	return float64(halves) / (2 * float64(pos) * float64(neg))
}
