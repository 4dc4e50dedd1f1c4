package model

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// xgbTiny is a hand-written two-tree XGBoost model: a numerical split with
// default left and a categorical split, small enough for the fuzzer to
// mutate usefully.
const xgbTiny = `{"learner":{"feature_names":[],"gradient_booster":{"model":{"gbtree_model_param":{"num_parallel_tree":"1","num_trees":"2"},
"tree_info":[0,0],"trees":[
{"tree_param":{"num_nodes":"3","size_leaf_vector":"1"},"left_children":[1,-1,-1],"right_children":[2,-1,-1],"split_indices":[0,0,0],
"split_conditions":[0.5,-0.25,0.75],"default_left":[1,0,0],"split_type":[0,0,0],"categories":[],"categories_nodes":[],"categories_segments":[],"categories_sizes":[]},
{"tree_param":{"num_nodes":"3","size_leaf_vector":"1"},"left_children":[1,-1,-1],"right_children":[2,-1,-1],"split_indices":[1,0,0],
"split_conditions":[0,0.1,-0.1],"default_left":[0,0,0],"split_type":[1,0,0],"categories":[2,5,40],"categories_nodes":[0],"categories_segments":[0],"categories_sizes":[3]}
]},"name":"gbtree"},"learner_model_param":{"base_score":"[5E-1]","num_class":"0","num_feature":"2","num_target":"1"},
"objective":{"name":"binary:logistic"}},"version":[3,2,0]}`

func TestXGBoostTiny(t *testing.T) {
	m, err := ParseXGBoostJSON([]byte(xgbTiny))
	if err != nil {
		t.Fatal(err)
	}
	nan := math.NaN()
	// Categories in the set go right (the second leaf, -0.1); others,
	// invalid and NaN (default right here) go as below.
	for _, c := range []struct {
		x    []float64
		want float32
	}{
		{[]float64{0, 0}, -0.25 + 0.1},
		{[]float64{1, 2}, 0.75 - 0.1},
		{[]float64{nan, 5}, -0.25 - 0.1},
		{[]float64{0.5, 40.9}, 0.75 - 0.1},
		{[]float64{0.49999999, 3}, 0.75 + 0.1}, // rounds to 0.5 in float32
		{[]float64{0.4999999, 3}, -0.25 + 0.1},
		{[]float64{0, nan}, -0.25 - 0.1}, // default right
		{[]float64{0, 41}, -0.25 + 0.1},
		{[]float64{0, -1}, -0.25 + 0.1},
		{[]float64{0, 1 << 24}, -0.25 + 0.1},
		{[]float64{0, 1<<24 + 2}, -0.25 + 0.1},
	} {
		want := float64(c.want) // the base margin is logit(0.5) = 0
		if got := m.Margin(nil, c.x)[0]; math.Abs(got-want) > 1e-7 {
			t.Errorf("Margin(%v) = %v, want %v", c.x, got, want)
		}
	}
}

func TestXGBoostErrors(t *testing.T) {
	for _, c := range []struct{ name, from, to, want string }{
		{"cycle", `"left_children":[1,-1,-1]`, `"left_children":[0,-1,-1]`, "reached twice"},
		{"shared", `"right_children":[2,-1,-1],"split_indices":[0,0,0]`, `"right_children":[1,-1,-1],"split_indices":[0,0,0]`, "reached twice"},
		{"child out of range", `"left_children":[1,-1,-1]`, `"left_children":[3,-1,-1]`, "children 3"},
		{"one child", `"left_children":[1,-1,-1],"right_children":[2,-1,-1],"split_indices":[0,0,0]`, `"left_children":[1,-1,-1],"right_children":[-1,-1,-1],"split_indices":[0,0,0]`, "one child"},
		{"short array", `"split_conditions":[0.5,-0.25,0.75]`, `"split_conditions":[0.5,-0.25]`, "2 split_conditions for 3 nodes"},
		{"feature out of range", `"split_indices":[0,0,0]`, `"split_indices":[2,0,0]`, "feature 2 of 2"},
		{"huge num_class", `"num_class":"0"`, `"num_class":"1000000000"`, "num_class"},
		{"num_class for binary", `"num_class":"0"`, `"num_class":"3"`, "num_class 3"},
		{"tree_info", `"tree_info":[0,0]`, `"tree_info":[0,1]`, "group 1 of 1"},
		{"num_trees", `"num_trees":"2"`, `"num_trees":"3"`, "num_trees 3"},
		{"objective", `binary:logistic`, `rank:pairwise`, "not supported"},
		{"base_score", `"[5E-1]"`, `"[1.5E0]"`, "out of the objective's range"},
		{"base_score vector", `"[5E-1]"`, `"[5E-1,5E-1]"`, "2 values for 1 outputs"},
		{"categorical unlisted", `"categories_nodes":[0]`, `"categories_nodes":[1]`, "not a categorical split"},
		{"categorical segment", `"categories_sizes":[3]`, `"categories_sizes":[4]`, "segment 0 size 4"},
		{"huge category", `"categories":[2,5,40]`, `"categories":[2,5,2147483647]`, "bitset words"},
		{"negative category", `"categories":[2,5,40]`, `"categories":[2,5,-40]`, "out of range"},
		{"split_type", `"split_type":[1,0,0]`, `"split_type":[2,0,0]`, "split_type 2"},
		{"vector leaf", `"size_leaf_vector":"1"`, `"size_leaf_vector":"3"`, "vector leaves"},
		{"gblinear", `"name":"gbtree"}`, `"name":"gblinear"}`, "only gbtree and dart"},
		{"num_nodes", `"num_nodes":"3"`, `"num_nodes":"99999999999"`, "num_nodes"},
		{"default_left", `"default_left":[1,0,0]`, `"default_left":[2,0,0]`, "default_left value 2"},
		{"trailing", `"version":[3,2,0]}`, `"version":[3,2,0]}{}`, "trailing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(xgbTiny, c.from) {
				t.Fatalf("%q not in the model", c.from)
			}
			_, err := ParseXGBoostJSON([]byte(strings.Replace(xgbTiny, c.from, c.to, 1)))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
	for _, in := range []string{``, `{}`, `[]`, `null`, `{"learner":{}}`, `{"learner":{"gradient_booster":{"name":"dart"}}}`} {
		if _, err := ParseXGBoostJSON([]byte(in)); err == nil {
			t.Errorf("ParseXGBoostJSON(%s) accepted", in)
		}
	}
}

// FuzzXGBoostJSON checks that a malformed model is an error, never a
// panic, and that what loads scores without panicking.
func FuzzXGBoostJSON(f *testing.F) {
	f.Add([]byte(xgbTiny))
	for _, name := range []string{"one_tree_stump", "categorical_multi_softprob", "dart", "multi_softmax"} {
		b, err := os.ReadFile(filepath.Join("testdata", "xgboost", name+".json"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseXGBoostJSON(b)
		if err != nil {
			if m != nil {
				t.Fatal("a model and an error")
			}
			return
		}
		fuzzScore(t, m)
	})
}

// fuzzScore scores a few vectors that reach missing, categorical and
// extreme paths; outputs must have the promised length.
func fuzzScore(t *testing.T, m *Ensemble) {
	if m.NumFeatures() > 1<<12 {
		return // a valid but huge vector; not what the fuzzer is after
	}
	x := make([]float64, m.NumFeatures())
	for _, fill := range []float64{0, math.NaN(), -1, 3, 1e300, math.Inf(1), 1 << 24, 0.5} {
		for i := range x {
			x[i] = fill
		}
		_ = m.Score(x)
		if out := m.Predict(nil, x); len(out) != m.NumOutputs() {
			t.Fatalf("Predict gave %d outputs, NumOutputs %d", len(out), m.NumOutputs())
		}
		if out := m.Margin(nil, x); len(out) != m.NumGroups() {
			t.Fatalf("Margin gave %d outputs, NumGroups %d", len(out), m.NumGroups())
		}
	}
}
