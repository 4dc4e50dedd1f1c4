package train

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/monitors/profile"
	"github.com/weirhq/weir/scoring/model"
)

type dataset struct {
	name  string
	names []string
	X     [][]float64
	y     []bool
}

// continuous has a heavy-tailed amount, a bursty count, a signed normal
// feature and a constant one; labels follow a logistic model of them.
func continuous() dataset {
	r := rand.New(rand.NewPCG(1, 2))
	d := dataset{name: "continuous", names: []string{"card.amount", "card.count_1h", "card.zscore", "card.const"}}
	for range 3000 {
		amount := math.Exp(3 + 1.2*r.NormFloat64())
		count := float64(int(r.ExpFloat64() * 2))
		z := r.NormFloat64()
		logit := -3 + 0.6*math.Log1p(amount) - 0.3*count + 0.8*z
		d.X = append(d.X, []float64{amount, count, z, 7})
		d.y = append(d.y, r.Float64() < 1/(1+math.Exp(-logit)))
	}
	return d
}

// discrete has a flag and a small count only, so scores tie heavily.
func discrete() dataset {
	r := rand.New(rand.NewPCG(3, 4))
	d := dataset{name: "ties", names: []string{"card.flag", "card.count"}}
	for range 800 {
		flag := float64(r.IntN(2))
		count := float64(r.IntN(4))
		d.X = append(d.X, []float64{flag, count})
		d.y = append(d.y, r.Float64() < 0.2+0.3*flag+0.05*count)
	}
	return d
}

func TestSkewed(t *testing.T) {
	for _, c := range []struct {
		v    []float64
		want bool
	}{
		{[]float64{1, 1, 1, 1, 100}, true},
		{[]float64{-1, 1, 1, 1, 100}, false}, // a negative value
		{[]float64{1, 2, 3, 4, 5}, false},    // symmetric
		{[]float64{5, 5, 5}, false},          // constant
		{[]float64{0, 100}, false},           // too few
		{[]float64{0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, true},
	} {
		if got := Skewed(c.v); got != c.want {
			t.Errorf("Skewed(%v) = %v, want %v", c.v, got, c.want)
		}
	}
}

func TestFitDeterministicAndOptimal(t *testing.T) {
	d := continuous()
	m1, met, err := Fit(d.X, d.y, d.names, Options{Name: "fraud"})
	if err != nil {
		t.Fatal(err)
	}
	m2, _, err := Fit(d.X, d.y, d.names, Options{Name: "fraud"})
	if err != nil {
		t.Fatal(err)
	}
	b1, _ := m1.Marshal()
	b2, _ := m2.Marshal()
	if !bytes.Equal(b1, b2) {
		t.Fatal("two fits of the same data differ")
	}
	if got := m1.Transforms; got[0] != model.TransformLog1p || got[1] != model.TransformLog1p || got[2] != "" || got[3] != "" {
		t.Fatalf("transforms %q", got)
	}
	if m1.Std[3] != 1 || m1.Weights[3] != 0 {
		t.Fatalf("constant feature: std %v weight %v, want 1 and 0", m1.Std[3], m1.Weights[3])
	}

	// The gradient of the objective vanishes at the fit (central
	// differences, independent of the Newton code's gradient).
	Z := make([][]float64, met.TrainRows)
	for i := range Z {
		Z[i] = standardize(m1, d.X[i], make([]float64, len(d.names)))
	}
	beta := append([]float64{m1.Bias}, m1.Weights...)
	for k := range beta {
		const h = 1e-5
		up, down := append([]float64(nil), beta...), append([]float64(nil), beta...)
		up[k] += h
		down[k] -= h
		g := (objective(Z, d.y[:met.TrainRows], up, 1e-3) - objective(Z, d.y[:met.TrainRows], down, 1e-3)) / (2 * h)
		if math.Abs(g) > 1e-7 {
			t.Errorf("d objective / d beta[%d] = %g at the fit", k, g)
		}
	}

	if met.TrainRows != 2400 || met.HoldoutRows != 600 || met.Iterations < 2 {
		t.Fatalf("metrics %+v", met)
	}
	if met.TrainAUC < 0.7 || met.HoldoutAUC < 0.7 {
		t.Fatalf("AUC train %v holdout %v: the model learned nothing", met.TrainAUC, met.HoldoutAUC)
	}
	if met.Profile.Rows != 3000 || len(met.Profile.Features) != 5 {
		t.Fatalf("profile rows %d features %d", met.Profile.Rows, len(met.Profile.Features))
	}
	for _, name := range append(d.names, profile.ScoreName) {
		h, ok := met.Profile.Features[name]
		if !ok || h.Count != 3000 {
			t.Fatalf("profile of %s: %+v", name, h)
		}
	}
	if h := met.Profile.Features["card.amount"]; len(h.Fractions) != 10 {
		t.Fatalf("amount profile has %d bins, want 10", len(h.Fractions))
	}
	// Raw values, not transformed: the amount's edges are amounts.
	if h := met.Profile.Features["card.amount"]; h.Edges[len(h.Edges)-1] < 50 {
		t.Fatalf("amount profile edges %v look transformed", h.Edges)
	}
	if _, err := (&met.Profile).Marshal(); err != nil {
		t.Fatal(err)
	}
	mm := met.Map()
	if mm["train_rows"] != 2400 || mm["holdout_auc"] != met.HoldoutAUC {
		t.Fatalf("Map %v", mm)
	}
}

func TestFitErrors(t *testing.T) {
	X := [][]float64{{1}, {2}, {3}, {4}, {5}}
	for _, c := range []struct {
		name string
		X    [][]float64
		y    []bool
		want string
	}{
		{"lengths", X, []bool{true}, "5 rows of features for 1 labels"},
		{"one class", X, []bool{true, true, true, true, false}, "both classes"},
		{"ragged", [][]float64{{1}, {2, 3}}, []bool{true, false}, "row 1 has 2 values"},
		{"nan", [][]float64{{1}, {math.NaN()}}, []bool{true, false}, "not finite"},
	} {
		if _, _, err := Fit(c.X, c.y, []string{"v.a"}, Options{Name: "m"}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
	m, _, _ := Fit(X, []bool{true, false, true, false, true}, []string{"v.a"}, Options{Name: "m", HoldoutFraction: -1})
	if m == nil {
		t.Fatal("no holdout: fit failed")
	}
}

func TestMapDropsNaN(t *testing.T) {
	m := Metrics{TrainRows: 3, TrainAUC: 0.5, HoldoutAUC: math.NaN(), HoldoutLogLoss: math.NaN()}.Map()
	if _, ok := m["holdout_auc"]; ok {
		t.Fatal("NaN kept")
	}
	if m["train_auc"] != 0.5 || m["train_rows"] != 3 {
		t.Fatalf("%v", m)
	}
}

type oracle struct {
	Transforms       []string  `json:"transforms"`
	Mean             []float64 `json:"mean"`
	Std              []float64 `json:"std"`
	Coef             []float64 `json:"coef"`
	Intercept        float64   `json:"intercept"`
	Pred             []float64 `json:"pred"`
	DistinctGoScores int       `json:"distinct_go_scores"`
	AUCTrain         float64   `json:"auc_train"`
	AUCHoldout       float64   `json:"auc_holdout"`
	LogLossTrain     float64   `json:"log_loss_train"`
	LogLossHoldout   float64   `json:"log_loss_holdout"`
}

// TestAgainstScikitLearn fits each dataset here and with scikit-learn at
// the same regularization, on the same split and standardization, and
// compares transforms, coefficients, predictions, AUC and log loss.
func TestAgainstScikitLearn(t *testing.T) {
	py := testenv.Python(t)
	script, err := filepath.Abs("testdata/logreg_oracle.py")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []dataset{continuous(), discrete()} {
		t.Run(d.name, func(t *testing.T) {
			const l2 = 2e-3
			m, met, err := Fit(d.X, d.y, d.names, Options{Name: "m", L2: l2})
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			csvPath := filepath.Join(dir, "data.csv")
			f, err := os.Create(csvPath)
			if err != nil {
				t.Fatal(err)
			}
			w := csv.NewWriter(f)
			w.Write(append(append([]string(nil), d.names...), "y", "split", "go_score"))
			for i, row := range d.X {
				rec := make([]string, 0, len(row)+3)
				for _, v := range row {
					rec = append(rec, strconv.FormatFloat(v, 'g', -1, 64))
				}
				split := "train"
				if i >= met.TrainRows {
					split = "holdout"
				}
				y := "0"
				if d.y[i] {
					y = "1"
				}
				rec = append(rec, y, split, strconv.FormatFloat(m.Score(row), 'g', -1, 64))
				w.Write(rec)
			}
			w.Flush()
			if err := w.Error(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			spec, _ := json.Marshal(map[string]any{"l2": l2, "names": d.names, "csv": csvPath})
			specPath := filepath.Join(dir, "spec.json")
			if err := os.WriteFile(specPath, spec, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(py, script, specPath)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("%s %s: %v\n%s", py, script, err, stderr.String())
			}
			var o oracle
			if err := json.Unmarshal(out, &o); err != nil {
				t.Fatalf("oracle output: %v\n%s", err, out)
			}

			if fmt.Sprint(o.Transforms) != fmt.Sprint(m.Transforms) {
				t.Fatalf("transforms %q, oracle %q", m.Transforms, o.Transforms)
			}
			for j := range d.names {
				if !near(m.Mean[j], o.Mean[j], 1e-9) || !near(m.Std[j], o.Std[j], 1e-9) {
					t.Errorf("%s: mean/std %v/%v, oracle %v/%v", d.names[j], m.Mean[j], m.Std[j], o.Mean[j], o.Std[j])
				}
				if math.Abs(m.Weights[j]-o.Coef[j]) > 1e-5 {
					t.Errorf("%s: weight %v, oracle %v", d.names[j], m.Weights[j], o.Coef[j])
				}
			}
			if math.Abs(m.Bias-o.Intercept) > 1e-5 {
				t.Errorf("bias %v, oracle %v", m.Bias, o.Intercept)
			}
			var worst float64
			for i, row := range d.X {
				worst = math.Max(worst, math.Abs(m.Score(row)-o.Pred[i]))
			}
			if worst > 1e-6 {
				t.Errorf("largest prediction difference %g", worst)
			}
			t.Logf("largest prediction difference %g; %d distinct scores", worst, o.DistinctGoScores)
			if d.name == "ties" && o.DistinctGoScores > 8 {
				t.Fatalf("%d distinct scores: the ties case has no ties", o.DistinctGoScores)
			}
			for _, c := range []struct {
				name      string
				got, want float64
			}{
				{"train AUC", met.TrainAUC, o.AUCTrain}, {"holdout AUC", met.HoldoutAUC, o.AUCHoldout},
				{"train log loss", met.TrainLogLoss, o.LogLossTrain}, {"holdout log loss", met.HoldoutLogLoss, o.LogLossHoldout},
			} {
				if !near(c.got, c.want, 1e-12) {
					t.Errorf("%s %v, scikit-learn %v", c.name, c.got, c.want)
				}
			}
		})
	}
}

func near(a, b, rel float64) bool {
	return math.Abs(a-b) <= rel*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}
