package model

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// LightGBM objectives Weir evaluates, by the first word of the model's
// objective line, and their transform of the raw score.
var lgbObjectives = map[string]uint8{
	"binary":        objSigmoid,
	"cross_entropy": objSigmoid,
	"regression":    objIdentity,
	"regression_l1": objIdentity,
	"huber":         objIdentity,
	"fair":          objIdentity,
	"quantile":      objIdentity,
	"mape":          objIdentity,
	"poisson":       objExp,
	"gamma":         objExp,
	"tweedie":       objExp,
	"multiclass":    objSoftmax,
	"multiclassova": objSigmoidOVA,
	"lambdarank":    objIdentity,
	"rank_xendcg":   objIdentity,
}

// ParseLightGBMText loads a LightGBM text model (Booster.save_model, model
// format v2 to v4): gbdt, dart, goss and rf boosting (average_output),
// numerical and categorical splits, the missing-value types None, Zero and
// NaN, and the objectives binary, cross_entropy, regression (not with
// sqrt), regression_l1, huber, fair, quantile, mape, poisson, gamma,
// tweedie, multiclass, multiclassova, lambdarank and rank_xendcg.
// Predictions equal LightGBM's (Booster.predict, raw_score for Margin) to
// 1e-6; testdata/gen.py makes the golden vectors that show it. Linear
// trees are refused.
//
// As in LightGBM's predictor, a value within 1e-35 of zero is zero, NaN is
// missing where the split says so and 0 elsewhere, and a categorical input
// is cast to an int: categories in the split's set go left, negative ones
// and NaN right.
func ParseLightGBMText(b []byte) (*Ensemble, error) {
	e, err := parseLightGBM(b)
	if err != nil {
		return nil, fmt.Errorf("model: lightgbm text: %w", err)
	}
	return e, nil
}

// lgbSection is the key=value lines of the header or of one tree.
type lgbSection map[string]string

func parseLightGBM(b []byte) (*Ensemble, error) {
	text := string(b)
	if end := strings.Index(text, "\nend of trees"); end >= 0 {
		text = text[:end]
	} else {
		return nil, errors.New(`no "end of trees" line`)
	}
	parts := strings.Split(text, "\nTree=")
	head := readSection(parts[0])
	if head == nil || !strings.HasPrefix(strings.TrimLeft(parts[0], " \r\n"), "tree") {
		return nil, errors.New(`not a LightGBM model: no "tree" header`)
	}
	switch v := head["version"]; v {
	case "v2", "v3", "v4":
	default:
		return nil, fmt.Errorf("model version %q (want v2, v3 or v4)", v)
	}
	nClass, err := lgbInt(head, "num_class", 1, maxGroups)
	if err != nil {
		return nil, err
	}
	perIter, err := lgbInt(head, "num_tree_per_iteration", 1, maxGroups)
	if err != nil {
		return nil, err
	}
	maxFeat, err := lgbInt(head, "max_feature_idx", -1, maxFeatures-1)
	if err != nil {
		return nil, err
	}
	nFeat := maxFeat + 1
	obj, objName, err := lgbObjective(head["objective"], nClass)
	if err != nil {
		return nil, err
	}
	if (obj.kind == objSoftmax || obj.kind == objSigmoidOVA) != (nClass > 1) || perIter != nClass {
		return nil, fmt.Errorf("objective %q with num_class %d and num_tree_per_iteration %d", head["objective"], nClass, perIter)
	}
	e := &Ensemble{
		format:  FormatLightGBMText,
		nFeat:   nFeat,
		nGroup:  nClass,
		obj:     obj,
		base:    make([]float64, nClass),
		objName: objName,
	}
	if names := strings.Fields(head["feature_names"]); len(names) > 0 {
		if len(names) != nFeat {
			return nil, fmt.Errorf("%d feature_names for max_feature_idx %d", len(names), maxFeat)
		}
		e.features = names
	}
	trees := parts[1:]
	if len(trees)%perIter != 0 {
		return nil, fmt.Errorf("%d trees, not a multiple of num_tree_per_iteration %d", len(trees), perIter)
	}
	bld := newBuilder(e)
	var spec []specNode
	for t, s := range trees {
		id, body, _ := strings.Cut(s, "\n")
		if strings.TrimSpace(id) != strconv.Itoa(t) {
			return nil, fmt.Errorf("tree %d is numbered %q", t, strings.TrimSpace(id))
		}
		spec, err = lgbTreeSpec(readSection(body), nFeat, spec[:0])
		if err != nil {
			return nil, fmt.Errorf("tree %d: %w", t, err)
		}
		if err := bld.addTree(spec, int32(t%perIter), 1); err != nil {
			return nil, fmt.Errorf("tree %d: %w", t, err)
		}
	}
	e = bld.finish()
	if _, ok := head["average_output"]; ok && len(trees) > 0 {
		e.avgDiv = float64(len(trees) / perIter)
	}
	return e, nil
}

// readSection reads key=value lines; a line without '=' (the "tree" and
// "end of trees" markers, blank lines) is skipped.
func readSection(s string) lgbSection {
	m := lgbSection{}
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimRight(line, "\r")
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		} else if line == "average_output" {
			m[line] = ""
		}
	}
	return m
}

func lgbInt(m lgbSection, key string, lo, hi int) (int, error) {
	v, err := strconv.Atoi(m[key])
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("%s %q: want an integer in [%d, %d]", key, m[key], lo, hi)
	}
	return v, nil
}

// lgbObjective reads an objective line such as "binary sigmoid:1" or
// "multiclass num_class:3".
func lgbObjective(line string, nClass int) (objective, string, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return objective{}, "", errors.New("no objective")
	}
	kind, ok := lgbObjectives[f[0]]
	if !ok {
		return objective{}, "", fmt.Errorf("objective %q is not supported", f[0])
	}
	o := objective{kind: kind, scale: 1}
	for _, p := range f[1:] {
		k, v, _ := strings.Cut(p, ":")
		switch k {
		case "sigmoid":
			s, err := strconv.ParseFloat(v, 64)
			if err != nil || !(s > 0) || math.IsInf(s, 0) {
				return objective{}, "", fmt.Errorf("objective %q: sigmoid %q", line, v)
			}
			o.scale = s
		case "sqrt":
			return objective{}, "", fmt.Errorf("objective %q: sqrt-transformed regression is not supported", line)
		case "num_class":
			if n, err := strconv.Atoi(v); err != nil || n != nClass {
				return objective{}, "", fmt.Errorf("objective %q and num_class %d", line, nClass)
			}
		}
	}
	return o, f[0], nil
}

// lgbFloats reads n numbers; thresholds may be infinite (LightGBM splits
// NaN from everything else at +inf), nothing may be NaN.
func lgbFloats(m lgbSection, key string, n int) ([]float64, error) {
	f := strings.Fields(m[key])
	if len(f) != n {
		return nil, fmt.Errorf("%d %s for %d", len(f), key, n)
	}
	out := make([]float64, n)
	for i, s := range f {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsNaN(v) || (math.IsInf(v, 0) && key != "threshold") {
			return nil, fmt.Errorf("%s[%d] = %q", key, i, s)
		}
		out[i] = v
	}
	return out, nil
}

func lgbInts(m lgbSection, key string, n int, lo, hi int64) ([]int64, error) {
	f := strings.Fields(m[key])
	if len(f) != n {
		return nil, fmt.Errorf("%d %s for %d", len(f), key, n)
	}
	out := make([]int64, n)
	for i, s := range f {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < lo || v > hi {
			return nil, fmt.Errorf("%s[%d] = %q (want [%d, %d])", key, i, s, lo, hi)
		}
		out[i] = v
	}
	return out, nil
}

// LightGBM's decision_type bits.
const (
	lgbCategorical = 1
	lgbDefaultLeft = 2
	lgbMissingZero = 1 // (decision_type >> 2) & 3
	lgbMissingNaN  = 2
)

func lgbTreeSpec(m lgbSection, nFeat int, spec []specNode) ([]specNode, error) {
	if m["is_linear"] != "" && m["is_linear"] != "0" {
		return nil, errors.New("linear trees are not supported")
	}
	nLeaves, err := lgbInt(m, "num_leaves", 1, math.MaxInt32/2)
	if err != nil {
		return nil, err
	}
	if n := len(strings.Fields(m["leaf_value"])); n != nLeaves {
		// Checked before anything is sized by num_leaves.
		return nil, fmt.Errorf("%d leaf_value for %d leaves", n, nLeaves)
	}
	leaves, err := lgbFloats(m, "leaf_value", nLeaves)
	if err != nil {
		return nil, err
	}
	nInner := nLeaves - 1
	spec = append(spec, make([]specNode, nInner+nLeaves)...)
	for l, v := range leaves {
		spec[nInner+l] = specNode{left: -1, right: -1, thr: v}
	}
	if nInner == 0 {
		return spec, nil
	}
	feat, err := lgbInts(m, "split_feature", nInner, 0, int64(nFeat-1))
	if err != nil {
		return nil, err
	}
	thr, err := lgbFloats(m, "threshold", nInner)
	if err != nil {
		return nil, err
	}
	dt, err := lgbInts(m, "decision_type", nInner, 0, 127)
	if err != nil {
		return nil, err
	}
	left, err := lgbInts(m, "left_child", nInner, -int64(nLeaves), int64(nInner-1))
	if err != nil {
		return nil, err
	}
	right, err := lgbInts(m, "right_child", nInner, -int64(nLeaves), int64(nInner-1))
	if err != nil {
		return nil, err
	}
	numCat, err := lgbInt(m, "num_cat", 0, nInner)
	if m["num_cat"] == "" {
		numCat, err = 0, nil
	}
	if err != nil {
		return nil, err
	}
	var bounds []int64
	var words []int64
	if numCat > 0 {
		if bounds, err = lgbInts(m, "cat_boundaries", numCat+1, 0, math.MaxInt32); err != nil {
			return nil, err
		}
		nWords := len(strings.Fields(m["cat_threshold"]))
		if words, err = lgbInts(m, "cat_threshold", nWords, 0, math.MaxUint32); err != nil {
			return nil, err
		}
		for i := range numCat {
			if bounds[i] > bounds[i+1] || bounds[i+1] > int64(nWords) || bounds[0] != 0 {
				return nil, fmt.Errorf("cat_boundaries %v for %d cat_threshold words", bounds, nWords)
			}
		}
	}
	child := func(c int64) int32 {
		if c < 0 {
			return int32(nInner) + int32(^c)
		}
		return int32(c)
	}
	for i := range nInner {
		s := &spec[i]
		s.left, s.right, s.feat = child(left[i]), child(right[i]), int32(feat[i])
		d := dt[i]
		missing := (d >> 2) & 3
		s.defLeft = d&lgbDefaultLeft != 0
		if d&lgbCategorical != 0 {
			c := int64(thr[i])
			if float64(c) != thr[i] || c < 0 || c >= int64(numCat) {
				return nil, fmt.Errorf("node %d: categorical threshold %v of %d", i, thr[i], numCat)
			}
			s.catBits = words[bounds[c]:bounds[c+1]]
			s.catLeft = true
			s.defLeft = false // NaN goes right (Tree::CategoricalDecision)
			continue
		}
		// left when x <= t, that is unless x >= the float64 after t; at
		// t = +inf always (a NaN thr: x >= NaN is false).
		t := thr[i]
		s.thr = math.Nextafter(t, math.Inf(1))
		if math.IsInf(t, 1) {
			s.thr = math.NaN()
		}
		switch missing {
		case lgbMissingNaN:
		case lgbMissingZero:
			s.zeroMis = true
		default:
			// NaN is compared as 0: it goes where 0 goes.
			s.defLeft = 0 <= t
		}
		s.nanZero = missing != lgbMissingNaN
		// LightGBM's predictor reads a value within 1e-35 of zero as
		// zero, which only a threshold that close to zero tells apart:
		// decide takes such splits.
		s.tinyZero = t >= -lgbZero && t <= lgbZero
	}
	return spec, nil
}
