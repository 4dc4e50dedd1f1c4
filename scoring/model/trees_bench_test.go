package model

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// synthXGBoost writes an XGBoost JSON model of nTrees complete trees of the
// given depth on nFeat features, random splits, half of them default left,
// the shape of issue 6's benchmark model.
func synthXGBoost(nTrees, depth, nFeat int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	type tree struct {
		Param        map[string]string `json:"tree_param"`
		Left         []int             `json:"left_children"`
		Right        []int             `json:"right_children"`
		SplitIndices []int             `json:"split_indices"`
		SplitCond    []float32         `json:"split_conditions"`
		DefaultLeft  []int             `json:"default_left"`
		SplitType    []int             `json:"split_type"`
	}
	var trees []tree
	info := make([]int, nTrees)
	for range nTrees {
		n := 1<<(depth+1) - 1
		t := tree{Param: map[string]string{"num_nodes": fmt.Sprint(n), "size_leaf_vector": "1"}}
		for i := range n {
			if i < n/2 {
				t.Left = append(t.Left, 2*i+1)
				t.Right = append(t.Right, 2*i+2)
				t.SplitIndices = append(t.SplitIndices, rng.IntN(nFeat))
				t.SplitCond = append(t.SplitCond, float32(rng.NormFloat64()))
				t.DefaultLeft = append(t.DefaultLeft, rng.IntN(2))
			} else {
				t.Left = append(t.Left, -1)
				t.Right = append(t.Right, -1)
				t.SplitIndices = append(t.SplitIndices, 0)
				t.SplitCond = append(t.SplitCond, float32(rng.NormFloat64()/10))
				t.DefaultLeft = append(t.DefaultLeft, 0)
			}
			t.SplitType = append(t.SplitType, 0)
		}
		trees = append(trees, t)
	}
	m := map[string]any{"learner": map[string]any{
		"gradient_booster": map[string]any{"name": "gbtree", "model": map[string]any{
			"gbtree_model_param": map[string]string{"num_trees": fmt.Sprint(nTrees), "num_parallel_tree": "1"},
			"tree_info":          info, "trees": trees}},
		"learner_model_param": map[string]string{"base_score": "[5E-1]", "num_class": "0", "num_feature": fmt.Sprint(nFeat), "num_target": "1"},
		"objective":           map[string]string{"name": "binary:logistic"},
	}}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// benchRows are n rows of nFeat normal values, a share of them NaN.
func benchRows(n, nFeat int, nanShare float64) []float64 {
	rng := rand.New(rand.NewPCG(7, 7))
	rows := make([]float64, n*nFeat)
	for i := range rows {
		rows[i] = rng.NormFloat64()
		if rng.Float64() < nanShare {
			rows[i] = math.NaN()
		}
	}
	return rows
}

// BenchmarkXGBoost is issue 6's shape: 100 trees of depth 6 on 30
// features, rows with 5% missing values (and none).
func BenchmarkXGBoost(b *testing.B) {
	m, err := ParseXGBoostJSON(synthXGBoost(100, 6, 30, 1))
	if err != nil {
		b.Fatal(err)
	}
	const nRows, nf = 1000, 30
	for _, nan := range []float64{0.05, 0} {
		rows := benchRows(nRows, nf, nan)
		b.Run(fmt.Sprintf("nan=%v/single", nan), func(b *testing.B) {
			b.ReportAllocs()
			var sink float64
			i := 0
			for b.Loop() {
				sink += m.Score(rows[i*nf : (i+1)*nf])
				if i++; i == nRows {
					i = 0
				}
			}
			_ = sink
		})
		b.Run(fmt.Sprintf("nan=%v/batch1000", nan), func(b *testing.B) {
			b.ReportAllocs()
			dst := make([]float64, 0, nRows)
			for b.Loop() {
				dst = m.PredictBatch(dst[:0], rows)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*nRows), "ns/row")
		})
	}
}

func BenchmarkParseXGBoostJSON(b *testing.B) {
	in := synthXGBoost(100, 6, 30, 1)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseXGBoostJSON(in); err != nil {
			b.Fatal(err)
		}
	}
}
