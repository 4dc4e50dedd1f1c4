package scoring

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring/model"
	"github.com/weirhq/weir/scoring/registry"
)

// golden is a scoring/model/testdata *.golden.json file (testdata/gen.py
// writes them with the libraries): input rows, NaN as "NaN", and the
// library's predictions.
type golden struct {
	Rows [][]any     `json:"rows"`
	Pred [][]float64 `json:"pred"`
}

func readGolden(t testing.TB, path string) (model.Model, [][]float64, [][]float64) {
	t.Helper()
	dir := filepath.Join("model", "testdata")
	b, err := os.ReadFile(filepath.Join(dir, path))
	if err != nil {
		t.Fatal(err)
	}
	format := model.Detect(b)
	m, err := model.Load(format, b)
	if err != nil {
		t.Fatal(err)
	}
	gb, err := os.ReadFile(filepath.Join(dir, strings.TrimSuffix(path, filepath.Ext(path))+".golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(gb, &g); err != nil {
		t.Fatal(err)
	}
	rows := make([][]float64, len(g.Rows))
	for i, r := range g.Rows {
		rows[i] = make([]float64, len(r))
		for j, v := range r {
			switch v := v.(type) {
			case float64:
				rows[i][j] = v
			case string:
				switch v {
				case "NaN":
					rows[i][j] = math.NaN()
				case "Inf":
					rows[i][j] = math.Inf(1)
				case "-Inf":
					rows[i][j] = math.Inf(-1)
				default:
					t.Fatalf("%s: row %d: value %q", path, i, v)
				}
			}
		}
	}
	return m, rows, g.Pred
}

// features names a model's inputs for the record: its own names where it
// has them, else "card.c<i>".
func features(m model.Model) []string {
	if names := m.FeatureNames(); names != nil && !strings.HasPrefix(names[0], "Column_") {
		return names
	}
	out := make([]string, m.NumFeatures())
	for i := range out {
		out[i] = fmt.Sprintf("card.c%d", i)
	}
	return out
}

// hasInf reports whether a golden row has an infinite value: the scorer
// treats those as missing, the libraries do not, so such rows are skipped.
func hasInf(row []float64) bool {
	for _, v := range row {
		if math.IsInf(v, 0) {
			return true
		}
	}
	return false
}

// event holds a golden row's present values; NaN is left out (missing).
func event(names []string, row []float64) Event {
	fm := FeatureMap{}
	for i, v := range row {
		if !math.IsNaN(v) {
			fm[names[i]] = FeatureValue{Value: v, EventTime: 1000}
		}
	}
	return Event{Entity: "card-1", Time: 1000, Features: fm}
}

// TestScorerTreeModelsMissingIsNaN scores golden rows of tree models with
// their NaN features absent from the event: the scorer fills NaN, so each
// split's default direction applies and the score is the library's.
func TestScorerTreeModelsMissingIsNaN(t *testing.T) {
	for _, path := range []string{"xgboost/binary_logistic.json", "xgboost/binary_logistic_names.json", "lightgbm/binary.txt"} {
		t.Run(path, func(t *testing.T) {
			m, rows, pred := readGolden(t, path)
			names := features(m)
			champs := &fakeChampions{}
			champs.cur.Store(&registry.Loaded{Record: schemas.ModelRecord{Name: "fraud", Version: 1, Format: m.ModelFormat(), Features: names}, Model: m})
			s, err := NewScorer(config.Model{Name: "fraud", Threshold: 0.5, Default: 42}, champs, Options{})
			if err != nil {
				t.Fatal(err)
			}
			nan := 0
			for i, row := range rows {
				if hasInf(row) {
					continue
				}
				p, err := s.Score(event(names, row))
				if err != nil {
					t.Fatal(err)
				}
				if math.Abs(p.Score-pred[i][0]) > 1e-6 {
					t.Fatalf("row %d: score %v, library %v", i, p.Score, pred[i][0])
				}
				for j, f := range p.Features {
					if math.IsNaN(row[j]) {
						nan++
						if f.Value != 0 || f.AgeMs != -1 {
							t.Fatalf("row %d: missing %+v, want value 0 age -1", i, f)
						}
					}
				}
			}
			if nan == 0 {
				t.Fatal("no golden row has a missing value")
			}
			var counted float64
			for _, n := range names {
				counted += testutil.ToFloat64(s.missing.WithLabelValues(n))
			}
			if int(counted) != nan {
				t.Fatalf("missing features counted %v, want %d", counted, nan)
			}
		})
	}
}

// TestScorerLogRegDefaults: a missing feature of a logistic regression
// scores with its per-feature default, else the model's default.
func TestScorerLogRegDefaults(t *testing.T) {
	champs := &fakeChampions{}
	l := loaded(1, -1)
	champs.cur.Store(l)
	s, err := NewScorer(config.Model{Name: "fraud", Threshold: 0.5, Default: 7, Defaults: map[string]float64{"merchant.fraud_rate": 0.03}}, champs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Score(Event{Time: 10, Features: FeatureMap{"card.count_1h": {Value: 5, EventTime: 10}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := l.Model.Score([]float64{5, 7, 0.03}); p.Score != want {
		t.Fatalf("score %v, want %v", p.Score, want)
	}
	want := []schemas.UsedFeature{{Name: "card.count_1h", Value: 5}, {Name: "card.amount_sum_1h", Value: 7, AgeMs: -1}, {Name: "merchant.fraud_rate", Value: 0.03, AgeMs: -1}}
	for i, f := range p.Features {
		if f != want[i] {
			t.Errorf("feature %d: %+v, want %+v", i, f, want[i])
		}
	}
	if n := testutil.ToFloat64(s.missing.WithLabelValues("merchant.fraud_rate")); n != 1 {
		t.Fatalf("missing merchant.fraud_rate counted %v", n)
	}
}

// TestScorerMultiClass: a multi-class champion is refused without a
// positive class, and scores that class's probability with one.
func TestScorerMultiClass(t *testing.T) {
	m, rows, pred := readGolden(t, "xgboost/multi_softprob.json")
	names := features(m)
	champs := &fakeChampions{}
	champs.cur.Store(&registry.Loaded{Record: schemas.ModelRecord{Name: "fraud", Version: 3, Format: m.ModelFormat(), Features: names}, Model: m})

	s, err := NewScorer(config.Model{Name: "fraud", Threshold: 0.5}, champs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); !errors.Is(err, ErrMultiClass) || !strings.Contains(err.Error(), "positive_class") {
		t.Fatalf("Check: %v, want ErrMultiClass naming positive_class", err)
	}
	if _, err := s.Score(event(names, rows[0])); !errors.Is(err, ErrMultiClass) {
		t.Fatalf("Score: %v, want ErrMultiClass", err)
	}
	out := m.NumOutputs()
	if _, err := mustScorer(t, champs, out).Score(event(names, rows[0])); !errors.Is(err, ErrMultiClass) {
		t.Fatalf("positive_class %d of %d classes: %v, want ErrMultiClass", out, out, err)
	}

	s = mustScorer(t, champs, 2)
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	for i, row := range rows {
		if hasInf(row) {
			continue
		}
		p, err := s.Score(event(names, row))
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(p.Score-pred[i][2]) > 1e-6 {
			t.Fatalf("row %d: score %v, library's class 2 %v", i, p.Score, pred[i][2])
		}
	}
}

func mustScorer(t *testing.T, champs Models, class int) *Scorer {
	t.Helper()
	s, err := NewScorer(config.Model{Name: "fraud", Threshold: 0.5, PositiveClass: &class}, champs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestScorerArmCannotScore: a canary arm whose version is a multi-class
// model without positive_class does not fail events: the champion serves
// them (counted), and a shadow arm like it is skipped (counted).
func TestScorerArmCannotScore(t *testing.T) {
	m, rows, _ := readGolden(t, "xgboost/multi_softprob.json")
	names := features(m)
	multi := &registry.Loaded{Record: schemas.ModelRecord{Name: "fraud", Version: 3, Format: m.ModelFormat(), Features: names}, Model: m}
	champ := &registry.Loaded{Record: schemas.ModelRecord{Name: "fraud", Version: 1, Format: m.ModelFormat(), Features: names}, Model: loaded(1, 0).Model}
	champ.Record.Features = loaded(1, 0).Record.Features
	arms := &fakeArms{by: map[string]*registry.Loaded{"champion": champ, "challenger": multi}}
	two := []config.Arm{{Alias: "champion"}, {Alias: "challenger"}}
	for _, r := range []config.Rollout{
		{Strategy: config.RolloutCanary, Arms: two, Percent: 100},
		{Strategy: config.RolloutShadow, Arms: two},
	} {
		s, err := NewScorer(config.Model{Name: "fraud", Threshold: 0.5, Rollout: r}, arms, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Check(); err != nil {
			t.Fatalf("Check: %v: only the first arm's failure stops the processor", err)
		}
		ps, err := s.ScoreAll(nil, event(names, rows[0]))
		if err != nil || len(ps) != 1 || ps[0].RolloutArm != "champion" || ps[0].ModelVersion != 1 || ps[0].Shadow {
			t.Fatalf("%s: %+v, %v; want the champion's prediction only", r.Strategy, ps, err)
		}
		counter := s.fallbacks
		if r.Strategy == config.RolloutShadow {
			counter = s.shadowSkip
		}
		if n := testutil.ToFloat64(counter.WithLabelValues("challenger")); n != 1 {
			t.Fatalf("%s: counted %v, want 1", r.Strategy, n)
		}
	}
}
