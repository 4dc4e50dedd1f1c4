package model

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// XGBoost's JSON model, as Booster.save_model("m.json") writes it (schema
// doc/model.schema in XGBoost's repository). Only what prediction reads is
// decoded; unknown fields are ignored, since every release adds some.
type xgbModel struct {
	Learner *struct {
		FeatureNames    []string `json:"feature_names"`
		GradientBooster *struct {
			Name   string     `json:"name"`
			Model  *xgbGBTree `json:"model"` // gbtree
			GBTree *struct {  // dart
				Model *xgbGBTree `json:"model"`
			} `json:"gbtree"`
			WeightDrop []float64 `json:"weight_drop"`
		} `json:"gradient_booster"`
		LearnerModelParam struct {
			BaseScore  string `json:"base_score"`
			NumClass   string `json:"num_class"`
			NumFeature string `json:"num_feature"`
			NumTarget  string `json:"num_target"`
		} `json:"learner_model_param"`
		Objective struct {
			Name string `json:"name"`
		} `json:"objective"`
	} `json:"learner"`
	Version []int `json:"version"`
}

type xgbGBTree struct {
	Param struct {
		NumTrees        string `json:"num_trees"`
		NumParallelTree string `json:"num_parallel_tree"`
	} `json:"gbtree_model_param"`
	TreeInfo []int64   `json:"tree_info"`
	Trees    []xgbTree `json:"trees"`
}

type xgbTree struct {
	Param struct {
		NumNodes       string `json:"num_nodes"`
		SizeLeafVector string `json:"size_leaf_vector"`
	} `json:"tree_param"`
	Left               []int64   `json:"left_children"`
	Right              []int64   `json:"right_children"`
	SplitIndices       []int64   `json:"split_indices"`
	SplitConditions    []float64 `json:"split_conditions"`
	DefaultLeft        []flexBit `json:"default_left"`
	SplitType          []int64   `json:"split_type"`
	Categories         []int64   `json:"categories"`
	CategoriesNodes    []int64   `json:"categories_nodes"`
	CategoriesSegments []int64   `json:"categories_segments"`
	CategoriesSizes    []int64   `json:"categories_sizes"`
}

// flexBit is 0/1 (XGBoost 1.6 on) or false/true (earlier).
type flexBit bool

func (b *flexBit) UnmarshalJSON(p []byte) error {
	switch string(p) {
	case "1", "true":
		*b = true
	case "0", "false":
		*b = false
	default:
		return fmt.Errorf("default_left value %s, want 0, 1, true or false", p)
	}
	return nil
}

// XGBoost objectives Weir evaluates: the transform of the margin and how
// base_score (stored in output space) becomes a margin.
var xgbObjectives = map[string]struct {
	kind uint8
	base func(float32) (float32, bool) // base_score to margin; false when invalid
}{
	"binary:logistic":      {objSigmoid, xgbLogit},
	"reg:logistic":         {objSigmoid, xgbLogit},
	"binary:logitraw":      {objIdentity, xgbIdentity}, // base_score is a margin
	"reg:squarederror":     {objIdentity, xgbIdentity},
	"reg:pseudohubererror": {objIdentity, xgbIdentity},
	"reg:absoluteerror":    {objIdentity, xgbIdentity},
	"count:poisson":        {objExp, xgbLog},
	"reg:gamma":            {objExp, xgbLog},
	"reg:tweedie":          {objExp, xgbLog},
	"multi:softprob":       {objSoftmax, xgbIdentity},
	"multi:softmax":        {objArgmax, xgbIdentity},
}

func xgbIdentity(b float32) (float32, bool) { return b, true }

// xgbLogit is LogisticRegression::ProbToMargin: -logf(1/b - 1).
func xgbLogit(b float32) (float32, bool) {
	if !(b > 0 && b < 1) {
		return 0, false
	}
	return -float32(math.Log(float64(1/b - 1))), true
}

// xgbLog is the log link's ProbToMargin: logf(b).
func xgbLog(b float32) (float32, bool) {
	if !(b > 0) {
		return 0, false
	}
	return float32(math.Log(float64(b))), true
}

// ParseXGBoostJSON loads an XGBoost JSON model (gbtree or dart booster)
// with one of the objectives binary:logistic, reg:logistic,
// binary:logitraw, reg:squarederror, reg:pseudohubererror,
// reg:absoluteerror, count:poisson, reg:gamma, reg:tweedie,
// multi:softprob or multi:softmax, numerical and categorical splits.
// Predictions equal XGBoost's (inplace_predict, and predict with
// output_margin for Margin) to 1e-6; scoring/model/testdata/gen.py makes
// the golden vectors that show it.
//
// As in XGBoost, NaN is missing and takes the split's default direction.
// A categorical input is the category's code, truncated to an integer;
// codes in the split's set go right, all others (unseen, negative, 2^24
// or more) left. Models whose leaves are vectors (multi_strategy
// multi_output_tree), gblinear and other objectives are refused.
func ParseXGBoostJSON(b []byte) (*Ensemble, error) {
	e, err := parseXGBoost(b)
	if err != nil {
		return nil, fmt.Errorf("model: xgboost json: %w", err)
	}
	return e, nil
}

func parseXGBoost(b []byte) (*Ensemble, error) {
	var m xgbModel
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, errors.New("trailing data after the model")
	}
	l := m.Learner
	if l == nil {
		return nil, errors.New("no learner")
	}
	gb := l.GradientBooster
	if gb == nil {
		return nil, errors.New("no gradient_booster")
	}
	var trees *xgbGBTree
	var weights []float64
	switch gb.Name {
	case "gbtree":
		trees = gb.Model
	case "dart":
		if gb.GBTree != nil {
			trees = gb.GBTree.Model
		}
		weights = gb.WeightDrop
	default:
		return nil, fmt.Errorf("booster %q: only gbtree and dart are supported", gb.Name)
	}
	if trees == nil {
		return nil, fmt.Errorf("%s booster without a model", gb.Name)
	}
	obj, ok := xgbObjectives[l.Objective.Name]
	if !ok {
		return nil, fmt.Errorf("objective %q is not supported", l.Objective.Name)
	}
	p := l.LearnerModelParam
	nFeat, err := paramInt("num_feature", p.NumFeature, 0, maxFeatures)
	if err != nil {
		return nil, err
	}
	nClass, err := paramInt("num_class", p.NumClass, 0, maxGroups)
	if err != nil {
		return nil, err
	}
	nTarget, err := paramInt("num_target", p.NumTarget, 0, maxGroups)
	if err != nil {
		return nil, err
	}
	multi := obj.kind == objSoftmax || obj.kind == objArgmax
	switch {
	case multi && nClass < 2:
		return nil, fmt.Errorf("objective %s with num_class %d", l.Objective.Name, nClass)
	case !multi && nClass > 1:
		return nil, fmt.Errorf("objective %s with num_class %d", l.Objective.Name, nClass)
	case nTarget > 1:
		return nil, fmt.Errorf("num_target %d: multi-target models are not supported", nTarget)
	}
	nGroup := max(nClass, 1)
	if len(l.FeatureNames) > 0 && len(l.FeatureNames) != nFeat {
		return nil, fmt.Errorf("%d feature_names for num_feature %d", len(l.FeatureNames), nFeat)
	}
	base, err := xgbBaseScore(p.BaseScore, nGroup, obj.base)
	if err != nil {
		return nil, err
	}
	nTrees, err := paramInt("num_trees", trees.Param.NumTrees, 0, math.MaxInt32)
	if err != nil {
		return nil, err
	}
	if nTrees != len(trees.Trees) || len(trees.TreeInfo) != nTrees {
		return nil, fmt.Errorf("num_trees %d, %d trees, %d tree_info entries", nTrees, len(trees.Trees), len(trees.TreeInfo))
	}
	if weights != nil && len(weights) != nTrees {
		return nil, fmt.Errorf("dart: %d weight_drop entries for %d trees", len(weights), nTrees)
	}
	e := &Ensemble{
		format:  FormatXGBoostJSON,
		nFeat:   nFeat,
		nGroup:  nGroup,
		obj:     objective{kind: obj.kind, f32: true, scale: 1},
		f32:     true,
		base:    base,
		objName: l.Objective.Name,
	}
	if len(l.FeatureNames) > 0 {
		e.features = l.FeatureNames
	}
	bld := newBuilder(e)
	var spec []specNode
	for i := range trees.Trees {
		g := trees.TreeInfo[i]
		if g < 0 || g >= int64(nGroup) {
			return nil, fmt.Errorf("tree %d: tree_info group %d of %d", i, g, nGroup)
		}
		scale := 1.0
		if weights != nil {
			scale = weights[i]
			if math.IsNaN(scale) || math.IsInf(scale, 0) {
				return nil, fmt.Errorf("tree %d: dart weight %v", i, scale)
			}
		}
		spec, err = xgbTreeSpec(&trees.Trees[i], spec[:0])
		if err != nil {
			return nil, fmt.Errorf("tree %d: %w", i, err)
		}
		if err := bld.addTree(spec, int32(g), scale); err != nil {
			return nil, fmt.Errorf("tree %d: %w", i, err)
		}
	}
	return bld.finish(), nil
}

func paramInt(name, s string, lo, hi int) (int, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < int64(lo) || v > int64(hi) {
		return 0, fmt.Errorf("%s %q: want an integer in [%d, %d]", name, s, lo, hi)
	}
	return int(v), nil
}

// xgbBaseScore reads learner_model_param.base_score, "5E-1" or, from
// XGBoost 3.1 on, a vector "[5E-1,...]" with one value per class, and
// turns it into margins.
func xgbBaseScore(s string, nGroup int, toMargin func(float32) (float32, bool)) ([]float64, error) {
	if s == "" {
		return nil, errors.New("no base_score")
	}
	var parts []string
	if t, ok := strings.CutPrefix(s, "["); ok {
		t, ok = strings.CutSuffix(t, "]")
		if !ok {
			return nil, fmt.Errorf("base_score %q", s)
		}
		parts = strings.Split(t, ",")
	} else {
		parts = []string{s}
	}
	if len(parts) != 1 && len(parts) != nGroup {
		return nil, fmt.Errorf("base_score has %d values for %d outputs", len(parts), nGroup)
	}
	base := make([]float64, nGroup)
	for i := range base {
		v, err := strconv.ParseFloat(strings.TrimSpace(parts[min(i, len(parts)-1)]), 32)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("base_score %q", s)
		}
		m, ok := toMargin(float32(v))
		if !ok {
			return nil, fmt.Errorf("base_score %v is out of the objective's range", v)
		}
		base[i] = float64(m)
	}
	return base, nil
}

func xgbTreeSpec(t *xgbTree, spec []specNode) ([]specNode, error) {
	n, err := paramInt("num_nodes", t.Param.NumNodes, 1, math.MaxInt32)
	if err != nil {
		return nil, err
	}
	if t.Param.SizeLeafVector != "" && t.Param.SizeLeafVector != "0" && t.Param.SizeLeafVector != "1" {
		return nil, fmt.Errorf("size_leaf_vector %s: vector leaves (multi_output_tree) are not supported", t.Param.SizeLeafVector)
	}
	for _, c := range []struct {
		name string
		len  int
	}{
		{"left_children", len(t.Left)}, {"right_children", len(t.Right)}, {"split_indices", len(t.SplitIndices)},
		{"split_conditions", len(t.SplitConditions)}, {"default_left", len(t.DefaultLeft)},
	} {
		if c.len != n {
			return nil, fmt.Errorf("%d %s for %d nodes", c.len, c.name, n)
		}
	}
	if t.SplitType != nil && len(t.SplitType) != n {
		return nil, fmt.Errorf("%d split_type for %d nodes", len(t.SplitType), n)
	}
	if len(t.CategoriesSegments) != len(t.CategoriesNodes) || len(t.CategoriesSizes) != len(t.CategoriesNodes) {
		return nil, fmt.Errorf("categories_nodes, _segments and _sizes have %d, %d and %d entries",
			len(t.CategoriesNodes), len(t.CategoriesSegments), len(t.CategoriesSizes))
	}
	spec = append(spec, make([]specNode, n)...)
	for i := range spec {
		l, r := t.Left[i], t.Right[i]
		if l < -1 || r < -1 || l >= int64(n) || r >= int64(n) {
			return nil, fmt.Errorf("node %d: children %d and %d of %d nodes", i, l, r, n)
		}
		c := t.SplitConditions[i]
		s := &spec[i]
		s.left, s.right = int32(l), int32(r)
		if l == -1 || r == -1 {
			if l != r {
				return nil, fmt.Errorf("node %d: one child (%d, %d)", i, l, r)
			}
			s.thr = float64(float32(c))
			continue
		}
		f := t.SplitIndices[i]
		if f < 0 || f > math.MaxInt32 {
			return nil, fmt.Errorf("node %d: split index %d", i, f)
		}
		s.feat = int32(f)
		if math.IsNaN(c) {
			return nil, fmt.Errorf("node %d: split condition is NaN", i)
		}
		s.thr = xgbLeftBelow(float32(c))
		s.defLeft = bool(t.DefaultLeft[i])
		if t.SplitType != nil {
			switch t.SplitType[i] {
			case 0:
			case 1:
				s.cats = []int64{} // filled below; an empty set is an error
			default:
				return nil, fmt.Errorf("node %d: split_type %d", i, t.SplitType[i])
			}
		}
	}
	for j, nd := range t.CategoriesNodes {
		if nd < 0 || nd >= int64(n) || spec[nd].cats == nil {
			return nil, fmt.Errorf("categories_nodes[%d] = %d is not a categorical split", j, nd)
		}
		if j > 0 && nd <= t.CategoriesNodes[j-1] {
			return nil, fmt.Errorf("categories_nodes not increasing at %d", j)
		}
		seg, size := t.CategoriesSegments[j], t.CategoriesSizes[j]
		if seg < 0 || size <= 0 || seg > int64(len(t.Categories)) || size > int64(len(t.Categories))-seg {
			return nil, fmt.Errorf("categories of node %d: segment %d size %d of %d", nd, seg, size, len(t.Categories))
		}
		spec[nd].cats = t.Categories[seg : seg+size]
	}
	return spec, nil
}
