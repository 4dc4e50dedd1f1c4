package model

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestXGBLeftBelow checks the folded threshold against XGBoost's own
// comparison, float32(x) < t, on the values around every kind of t where
// rounding decides: the midpoints to both neighbours and their float64
// neighbours, at zero, subnormals, MaxFloat32 and the infinities.
func TestXGBLeftBelow(t *testing.T) {
	f32 := func(bits uint32) float32 { return math.Float32frombits(bits) }
	ts := []float32{0, f32(1 << 31), 1, -1, 0.5, 3, f32(1), -f32(1), f32(2), f32(3), math.MaxFloat32, -math.MaxFloat32,
		float32(math.Inf(1)), float32(math.Inf(-1)), math.SmallestNonzeroFloat32, 1 << 24, 16777215, 0.1, -0.1}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		v := f32(rng.Uint32())
		if v == v {
			ts = append(ts, v)
		}
	}
	xs := func(t float32) []float64 {
		var out []float64
		inf32 := float32(math.Inf(1))
		for _, n := range []float32{math.Nextafter32(t, -inf32), t, math.Nextafter32(t, inf32)} {
			for _, m := range []float32{math.Nextafter32(n, -inf32), math.Nextafter32(n, inf32)} {
				mid := (float64(n) + float64(m)) / 2
				if math.IsInf(float64(m), 0) && !math.IsInf(float64(n), 0) {
					mid = math.Copysign(float64(math.MaxFloat32)+math.Pow(2, 103), float64(n))
				}
				out = append(out, float64(n), mid, math.Nextafter(mid, math.Inf(-1)), math.Nextafter(mid, math.Inf(1)))
			}
		}
		return append(out, math.Inf(1), math.Inf(-1), math.MaxFloat64, -math.MaxFloat64, 0, math.Copysign(0, -1), 1e-300, -1e-300)
	}
	for _, tv := range ts {
		b := xgbLeftBelow(tv)
		for _, x := range xs(tv) {
			if math.IsNaN(x) {
				continue
			}
			if want, got := float32(x) < tv, x < b; got != want {
				t.Fatalf("t=%v (%#x) x=%v: x < %v is %v, float32(x) < t is %v", tv, math.Float32bits(tv), x, b, got, want)
			}
		}
	}
}

func TestEnsembleDoesNotAllocate(t *testing.T) {
	for _, name := range []string{"binary_logistic", "multi_softprob", "categorical_partition"} {
		m := loadXGB(t, name)
		x := make([]float64, m.NumFeatures())
		for i := range x {
			x[i] = float64(i%3) - 0.5
		}
		x[0] = math.NaN()
		dst := make([]float64, 0, m.NumOutputs())
		var sink float64
		if n := testing.AllocsPerRun(200, func() {
			sink += m.Score(x)
			dst = m.Predict(dst[:0], x)
		}); n != 0 {
			t.Errorf("%s: %v allocations per Score and Predict", name, n)
		}
		_ = sink
	}
}

func TestEnsemblePanicsOnWrongLength(t *testing.T) {
	m := loadXGB(t, "binary_logistic")
	defer func() {
		if recover() == nil {
			t.Fatal("Score of a short vector did not panic")
		}
	}()
	m.Score([]float64{1})
}

func TestPredictBatch(t *testing.T) {
	m := loadXGB(t, "multi_softprob")
	g := readGolden(t, "testdata/xgboost/multi_softprob.golden.json")
	var rows []float64
	for _, r := range g.Rows {
		for _, v := range r {
			rows = append(rows, float64(v))
		}
	}
	out := m.PredictBatch(nil, rows)
	if len(out) != len(g.Rows)*m.NumOutputs() {
		t.Fatalf("%d outputs for %d rows", len(out), len(g.Rows))
	}
	for r := range g.Rows {
		for k, want := range g.Pred[r] {
			if got := out[r*m.NumOutputs()+k]; math.Abs(got-want) > goldenTol {
				t.Fatalf("row %d class %d: %v, library %v", r, k, got, want)
			}
		}
	}
}

// TestEightTreesAtOnce checks the hot loop, eight trees side by side,
// against walking the trees one by one.
func TestEightTreesAtOnce(t *testing.T) {
	for _, nTrees := range []int{1, 7, 8, 9, 100} {
		m, err := ParseXGBoostJSON(synthXGBoost(nTrees, 5, 12, uint64(nTrees)))
		if err != nil {
			t.Fatal(err)
		}
		rows := benchRows(300, 12, 0.1)
		for r := 0; r < 300; r++ {
			x := rows[r*12 : (r+1)*12]
			want := float32(m.base[0])
			for tr, root := range m.roots {
				want += float32(m.leafVal[m.walk(root, m.depth[tr], x)])
			}
			if got := m.margin1(x); got != float64(want) {
				t.Fatalf("%d trees, row %d: %v, one by one %v", nTrees, r, got, want)
			}
		}
	}
}
