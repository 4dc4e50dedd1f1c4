package model

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goldenValue is a row value in a golden file: a number, or "NaN", "Inf",
// "-Inf".
type goldenValue float64

func (v *goldenValue) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case `"NaN"`:
		*v = goldenValue(math.NaN())
	case `"Inf"`:
		*v = goldenValue(math.Inf(1))
	case `"-Inf"`:
		*v = goldenValue(math.Inf(-1))
	default:
		var f float64
		if err := json.Unmarshal(b, &f); err != nil {
			return err
		}
		*v = goldenValue(f)
	}
	return nil
}

// golden is a *.golden.json file written by testdata/gen.py.
type golden struct {
	Rows   [][]goldenValue `json:"rows"`
	Margin [][]float64     `json:"margin"`
	Pred   [][]float64     `json:"pred"`
}

func readGolden(t *testing.T, path string) golden {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(g.Rows) == 0 || len(g.Rows) != len(g.Margin) || len(g.Rows) != len(g.Pred) {
		t.Fatalf("%s: %d rows, %d margins, %d predictions", path, len(g.Rows), len(g.Margin), len(g.Pred))
	}
	return g
}

// goldenTol is the bound: |Go - library| <= 1e-6 for every output.
const goldenTol = 1e-6

// checkGolden compares m's Margin and Predict with the library's on every
// row of every model in dir and reports how many outputs were bit-equal.
func checkGolden(t *testing.T, dir, ext, format string) {
	models, err := filepath.Glob(filepath.Join("testdata", dir, "*"+ext))
	if err != nil || len(models) == 0 {
		t.Fatalf("no models in testdata/%s (%v): run testdata/gen.py", dir, err)
	}
	for _, path := range models {
		if strings.HasSuffix(path, ".golden.json") {
			continue
		}
		name := strings.TrimSuffix(filepath.Base(path), ext)
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := Detect(b); got != format {
				t.Errorf("Detect = %q, want %q", got, format)
			}
			mm, err := Load(format, b)
			if err != nil {
				t.Fatal(err)
			}
			m := mm.(*Ensemble)
			g := readGolden(t, strings.TrimSuffix(path, ext)+".golden.json")
			var exact, total int
			var worst float64
			x := make([]float64, m.NumFeatures())
			var margin, pred []float64
			for r, row := range g.Rows {
				if len(row) != len(x) {
					t.Fatalf("row %d has %d values, model %d features", r, len(row), len(x))
				}
				for i, v := range row {
					x[i] = float64(v)
				}
				margin = m.Margin(margin[:0], x)
				pred = m.Predict(pred[:0], x)
				for _, c := range []struct {
					what      string
					got, want []float64
				}{{"margin", margin, g.Margin[r]}, {"prediction", pred, g.Pred[r]}} {
					if len(c.got) != len(c.want) {
						t.Fatalf("row %d: %d %s values, library has %d", r, len(c.got), c.what, len(c.want))
					}
					for k := range c.got {
						d := math.Abs(c.got[k] - c.want[k])
						total++
						if c.got[k] == c.want[k] {
							exact++
						}
						worst = max(worst, d)
						if !(d <= goldenTol) {
							t.Errorf("row %d %v: %s[%d] = %v, library %v (|diff| %.3g)", r, row, c.what, k, c.got[k], c.want[k], d)
						}
					}
				}
				if s := m.Score(x); s != pred[0] {
					t.Errorf("row %d: Score %v, Predict[0] %v", r, s, pred[0])
				}
			}
			t.Logf("%d trees, %d rows: %d of %d outputs bit-equal, max |diff| %.3g", m.NumTrees(), len(g.Rows), exact, total, worst)
		})
	}
}

func TestXGBoostGolden(t *testing.T) { checkGolden(t, "xgboost", ".json", FormatXGBoostJSON) }

func TestXGBoostFeatureNames(t *testing.T) {
	b, err := os.ReadFile("testdata/xgboost/binary_logistic_names.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Load(FormatXGBoostJSON, b)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(m.FeatureNames()); got != "[card.f0 card.f1 card.f2 card.f3 card.f4 card.f5]" {
		t.Fatalf("FeatureNames = %s", got)
	}
	b, err = os.ReadFile("testdata/xgboost/binary_logistic.json")
	if err != nil {
		t.Fatal(err)
	}
	if m, err = Load(FormatXGBoostJSON, b); err != nil || m.FeatureNames() != nil || m.NumFeatures() != 6 {
		t.Fatalf("unnamed model: %v, FeatureNames %v, NumFeatures %d", err, m.FeatureNames(), m.NumFeatures())
	}
}

func loadXGB(t testing.TB, name string) *Ensemble {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "xgboost", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := ParseXGBoostJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLightGBMGolden(t *testing.T) { checkGolden(t, "lightgbm", ".txt", FormatLightGBMText) }
