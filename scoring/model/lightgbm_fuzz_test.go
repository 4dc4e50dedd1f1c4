package model

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// lgbTiny is a hand-written LightGBM model: a numerical split (missing
// type NaN, default left) over a categorical split, and a one-leaf tree.
const lgbTiny = `tree
version=v4
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx=1
objective=binary sigmoid:1
feature_names=a b
feature_infos=[-1:1] 0:1:5
tree_sizes=1 1

Tree=0
num_leaves=3
num_cat=1
split_feature=0 1
split_gain=1 1
threshold=0.5 0
decision_type=10 1
left_child=-1 -2
right_child=1 -3
leaf_value=-0.25 0.5 0.75
leaf_weight=1 1 1
leaf_count=1 1 1
internal_value=0 0
internal_weight=1 1
internal_count=2 2
cat_boundaries=0 1
cat_threshold=34
is_linear=0
shrinkage=1


Tree=1
num_leaves=1
num_cat=0
split_feature=
split_gain=
threshold=
decision_type=
left_child=
right_child=
leaf_value=0.125
leaf_weight=
leaf_count=
internal_value=
internal_weight=
internal_count=
is_linear=0
shrinkage=1


end of trees

feature_importances:
a=1
`

func TestLightGBMTiny(t *testing.T) {
	m, err := ParseLightGBMText([]byte(lgbTiny))
	if err != nil {
		t.Fatal(err)
	}
	if got := m.FeatureNames(); len(got) != 2 || got[0] != "a" {
		t.Fatalf("FeatureNames = %v", got)
	}
	nan := math.NaN()
	// Tree 0: x0 <= 0.5 (NaN left) gives -0.25; else category x1 in
	// {1, 5} (bits of 34) gives 0.5, any other 0.75. Tree 1 adds 0.125.
	for _, c := range []struct {
		x    []float64
		want float64
	}{
		{[]float64{0.5, 1}, -0.25},
		{[]float64{nan, 1}, -0.25},
		{[]float64{0.51, 1}, 0.5},
		{[]float64{1, 5.9}, 0.5},
		{[]float64{1, 0}, 0.75},
		{[]float64{1, -0.5}, 0.75}, // cast to 0, not in the set
		{[]float64{1, -1}, 0.75},
		{[]float64{1, nan}, 0.75},
		{[]float64{1, 1 << 40}, 0.75},
		{[]float64{math.Inf(1), 1}, 0.5},
	} {
		if got := m.Margin(nil, c.x)[0]; got != c.want+0.125 {
			t.Errorf("Margin(%v) = %v, want %v", c.x, got, c.want+0.125)
		}
	}
}

func TestLightGBMErrors(t *testing.T) {
	for _, c := range []struct{ name, from, to, want string }{
		{"cycle", "right_child=1 -3", "right_child=0 -3", "reached twice"},
		{"child out of range", "right_child=1 -3", "right_child=2 -3", "right_child[0]"},
		{"leaf out of range", "right_child=1 -3", "right_child=1 -4", "right_child[1]"},
		{"short leaves", "leaf_value=-0.25 0.5 0.75", "leaf_value=-0.25 0.5", "2 leaf_value for 3 leaves"},
		{"huge num_leaves", "num_leaves=3", "num_leaves=1000000000", "3 leaf_value for 1000000000 leaves"},
		{"feature", "split_feature=0 1", "split_feature=0 2", "split_feature[1]"},
		{"num_class", "num_class=1", "num_class=100000000", "num_class"},
		{"multiclass without classes", "objective=binary sigmoid:1", "objective=multiclass num_class:1", "objective"},
		{"objective", "objective=binary sigmoid:1", "objective=custom", "not supported"},
		{"sqrt", "objective=binary sigmoid:1", "objective=regression sqrt", "sqrt"},
		{"sigmoid", "sigmoid:1", "sigmoid:-1", "sigmoid"},
		{"category index", "threshold=0.5 0", "threshold=0.5 1", "categorical threshold 1 of 1"},
		{"cat_boundaries", "cat_boundaries=0 1", "cat_boundaries=0 2", "cat_boundaries"},
		{"linear", "is_linear=0\nshrinkage=1\n\n\nTree=1", "is_linear=1\nshrinkage=1\n\n\nTree=1", "linear trees"},
		{"NaN leaf", "leaf_value=0.125", "leaf_value=nan", "leaf_value[0]"},
		{"no end", "end of trees", "end of forests", "end of trees"},
		{"tree number", "Tree=1", "Tree=7", "numbered"},
		{"version", "version=v4", "version=v9", "version"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(lgbTiny, c.from) {
				t.Fatalf("%q not in the model", c.from)
			}
			_, err := ParseLightGBMText([]byte(strings.Replace(lgbTiny, c.from, c.to, 1)))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

// FuzzLightGBMText checks that a malformed model is an error, never a
// panic, and that what loads scores without panicking.
func FuzzLightGBMText(f *testing.F) {
	f.Add([]byte(lgbTiny))
	for _, name := range []string{"stump", "categorical_multiclass", "rf", "binary_zero_as_missing"} {
		b, err := os.ReadFile(filepath.Join("testdata", "lightgbm", name+".txt"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseLightGBMText(b)
		if err != nil {
			if m != nil {
				t.Fatal("a model and an error")
			}
			return
		}
		fuzzScore(t, m)
	})
}
