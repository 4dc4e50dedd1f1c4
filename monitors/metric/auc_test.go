package metric

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/weirhq/weir/internal/testenv"
)

type aucCase struct {
	Name   string    `json:"name"`
	Scores []float64 `json:"scores"`
	Labels []int     `json:"labels"`
}

func (c aucCase) positive() []bool {
	p := make([]bool, len(c.Labels))
	for i, l := range c.Labels {
		p[i] = l == 1
	}
	return p
}

// aucCases are generated data: continuous scores, heavily tied scores,
// separable and reversed data, and the degenerate cases.
func aucCases() []aucCase {
	r := rand.New(rand.NewPCG(7, 11))
	gen := func(name string, n int, pPos float64, score func(pos bool) float64) aucCase {
		c := aucCase{Name: name}
		for range n {
			pos := r.Float64() < pPos
			l := 0
			if pos {
				l = 1
			}
			c.Labels = append(c.Labels, l)
			c.Scores = append(c.Scores, score(pos))
		}
		return c
	}
	shifted := func(d float64) func(bool) float64 {
		return func(pos bool) float64 {
			if pos {
				return r.NormFloat64() + d
			}
			return r.NormFloat64()
		}
	}
	rounded := func(levels float64) func(bool) float64 {
		return func(pos bool) float64 {
			x := r.Float64()
			if pos {
				x = math.Min(1, x+0.2)
			}
			return math.Round(x*levels) / levels
		}
	}
	cases := []aucCase{
		gen("continuous", 2000, 0.3, shifted(1)),
		gen("continuous_rare_positive", 5000, 0.01, shifted(0.5)),
		gen("ties_11_levels", 3000, 0.4, rounded(10)),
		gen("ties_2_levels", 500, 0.5, rounded(1)),
		gen("large_ties", 200000, 0.05, rounded(100)),
		gen("uninformative", 1000, 0.5, func(bool) float64 { return r.Float64() }),
		gen("all_tied", 100, 0.5, func(bool) float64 { return 0.5 }),
		{Name: "separable", Scores: []float64{0.1, 0.2, 0.3, 0.8, 0.9}, Labels: []int{0, 0, 0, 1, 1}},
		{Name: "reversed", Scores: []float64{0.1, 0.2, 0.3, 0.8, 0.9}, Labels: []int{1, 1, 0, 0, 0}},
		{Name: "one_of_each", Scores: []float64{0.4, 0.4}, Labels: []int{0, 1}},
		{Name: "all_negative", Scores: []float64{0.1, 0.5, 0.9}, Labels: []int{0, 0, 0}},
		{Name: "all_positive", Scores: []float64{0.1, 0.5, 0.9}, Labels: []int{1, 1, 1}},
		{Name: "single", Scores: []float64{0.3}, Labels: []int{1}},
	}
	for i := range 20 {
		cases = append(cases, gen(fmt.Sprintf("small_%d", i), 2+r.IntN(30), 0.5, rounded(float64(1+r.IntN(5)))))
	}
	return cases
}

// bruteAUC counts pairs directly: an independent O(n^2) definition.
func bruteAUC(scores []float64, positive []bool) float64 {
	var num, pairs float64
	for i := range scores {
		if !positive[i] {
			continue
		}
		for j := range scores {
			if positive[j] {
				continue
			}
			pairs++
			switch {
			case scores[i] > scores[j]:
				num++
			case scores[i] == scores[j]:
				num += 0.5
			}
		}
	}
	if pairs == 0 {
		return math.NaN()
	}
	return num / pairs
}

func TestAUCMatchesPairCount(t *testing.T) {
	for _, c := range aucCases() {
		if len(c.Scores) > 5000 {
			continue
		}
		got, want := AUC(c.Scores, c.positive()), bruteAUC(c.Scores, c.positive())
		if math.IsNaN(want) != math.IsNaN(got) || !math.IsNaN(want) && math.Abs(got-want) > 1e-12 {
			t.Errorf("%s: AUC %v, pair count %v", c.Name, got, want)
		}
	}
}

func TestAUCDegenerate(t *testing.T) {
	for _, c := range []struct {
		name   string
		scores []float64
		pos    []bool
		want   float64 // NaN: undefined
	}{
		{"empty", nil, nil, math.NaN()},
		{"one class", []float64{0.1, 0.9}, []bool{true, true}, math.NaN()},
		{"NaN scores left out", []float64{math.NaN(), 0.2, 0.8, math.NaN()}, []bool{false, false, true, true}, 1},
		{"only NaN positives", []float64{math.NaN(), 0.2}, []bool{true, false}, math.NaN()},
		{"tie", []float64{0.5, 0.5}, []bool{true, false}, 0.5},
	} {
		got := AUC(c.scores, c.pos)
		if math.IsNaN(c.want) != math.IsNaN(got) || !math.IsNaN(c.want) && got != c.want {
			t.Errorf("%s: AUC %v, want %v", c.name, got, c.want)
		}
	}
}

// TestAUCAgainstScikitLearn compares with roc_auc_score on every case,
// through testdata/roc_auc.py in the project's venv.
func TestAUCAgainstScikitLearn(t *testing.T) {
	py := testenv.Python(t)
	cases := aucCases()
	in := filepath.Join(t.TempDir(), "cases.json")
	b, err := json.Marshal(map[string]any{"cases": cases})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(in, b, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, filepath.Join("testdata", "roc_auc.py"), in)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("run roc_auc.py: %v", err)
	}
	var want map[string]*float64
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatalf("decode oracle output %q: %v", out, err)
	}
	if len(want) != len(cases) {
		t.Fatalf("oracle answered %d cases, want %d", len(want), len(cases))
	}
	for _, c := range cases {
		w, ok := want[c.Name]
		if !ok {
			t.Errorf("%s: no oracle value", c.Name)
			continue
		}
		got := AUC(c.Scores, c.positive())
		switch {
		case w == nil && !math.IsNaN(got):
			t.Errorf("%s: AUC %v, scikit-learn says undefined", c.Name, got)
		case w != nil && math.Abs(got-*w) > 1e-12:
			t.Errorf("%s: AUC %v, scikit-learn %v", c.Name, got, *w)
		}
	}
}

func BenchmarkAUC(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	scores := make([]float64, 10000)
	pos := make([]bool, len(scores))
	for i := range scores {
		pos[i] = r.Float64() < 0.1
		scores[i] = math.Round(r.Float64()*1000) / 1000
	}
	b.ReportAllocs()
	for b.Loop() {
		AUC(scores, pos)
	}
}
