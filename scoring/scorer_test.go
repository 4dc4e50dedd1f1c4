package scoring

import (
	"errors"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring/model"
	"github.com/weirhq/weir/scoring/registry"
)

// fakeChampions serves whatever is stored and counts lookups.
type fakeChampions struct {
	cur   atomic.Pointer[registry.Loaded]
	calls atomic.Int64
}

func (f *fakeChampions) Serving(name, alias string) (*registry.Loaded, bool) {
	f.calls.Add(1)
	l := f.cur.Load()
	return l, l != nil && name == l.Record.Name && alias == registry.Champion
}

func loaded(version int32, bias float64) *registry.Loaded {
	m := &model.LogReg{
		Format: model.Format, Name: "fraud",
		// Not the config's order: the model's order is the vector's.
		Features:   []string{"card.count_1h", "card.amount_sum_1h", "merchant.fraud_rate"},
		Transforms: []string{"", model.TransformLog1p, ""},
		Mean:       []float64{2, 3, 0.01}, Std: []float64{1.5, 1, 0.02},
		Weights: []float64{0.4, 0.9, 2}, Bias: bias,
	}
	return &registry.Loaded{Record: schemas.ModelRecord{Name: "fraud", Version: version, Features: m.Features}, Model: m}
}

// stepClock advances by step on every call.
func stepClock(start time.Time, step time.Duration) func() time.Time {
	t := start.Add(-step)
	return func() time.Time { t = t.Add(step); return t }
}

func TestScorer(t *testing.T) {
	cfg := config.Model{Name: "fraud", Features: []string{"card.amount_sum_1h", "card.count_1h", "merchant.fraud_rate"}, Threshold: 0.7}
	champs := &fakeChampions{}
	reg := prometheus.NewRegistry()
	t0 := time.UnixMilli(1_700_000_000_000)
	s, err := NewScorer(cfg, champs, Options{Registerer: reg, Now: stepClock(t0, 150*time.Microsecond)})
	if err != nil {
		t.Fatal(err)
	}
	ev := Event{Entity: "card-1", ID: "txn-9", Time: 1_699_999_999_000, Partition: 3, Offset: 42,
		Features: FeatureMap{
			"card.count_1h":      {Value: 5, EventTime: 1_699_999_999_000},
			"card.amount_sum_1h": {Value: 250, EventTime: 1_699_999_990_000},
			// merchant.fraud_rate missing
		}}

	if _, err := s.Score(ev); !errors.Is(err, ErrNoChampion) {
		t.Fatalf("no champion: err = %v, want ErrNoChampion", err)
	}
	if n := testutil.ToFloat64(s.noChampion); n != 1 {
		t.Fatalf("no_champion = %v", n)
	}

	champs.cur.Store(loaded(4, -1))
	p, err := s.Score(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := loaded(4, -1).Model.Score([]float64{5, 250, 0})
	if p.Score != want {
		t.Fatalf("score %v, want %v", p.Score, want)
	}
	z := -1 + 0.4*(5-2)/1.5 + 0.9*(math.Log1p(250)-3)/1 + 2*(0-0.01)/0.02
	if math.Abs(p.Score-1/(1+math.Exp(-z))) > 1e-12 {
		t.Fatalf("score %v, formula gives %v", p.Score, 1/(1+math.Exp(-z)))
	}
	wantFeatures := []schemas.UsedFeature{
		{Name: "card.count_1h", Value: 5, AgeMs: 0},
		{Name: "card.amount_sum_1h", Value: 250, AgeMs: 9000},
		{Name: "merchant.fraud_rate", Value: 0, AgeMs: -1},
	}
	for i, f := range p.Features {
		if f != wantFeatures[i] {
			t.Errorf("feature %d = %+v, want %+v", i, f, wantFeatures[i])
		}
	}
	if len(p.Features) != 3 {
		t.Fatalf("%d features", len(p.Features))
	}
	if p.PredictionID != "txn-9" || p.Entity != "card-1" || p.EventTime != ev.Time || p.SourcePartition != 3 || p.SourceOffset != 42 ||
		p.ModelName != "fraud" || p.ModelVersion != 4 || p.RolloutArm != ArmChampion || p.Threshold != 0.7 ||
		p.LatencyUs != 150 || p.ScoredTime != t0.Add(150*time.Microsecond).UnixMilli() {
		t.Fatalf("prediction %+v", p)
	}
	if p.Decision != (p.Score >= 0.7) {
		t.Fatalf("decision %v for score %v at 0.7", p.Decision, p.Score)
	}
	if n := testutil.ToFloat64(s.missing.WithLabelValues("merchant.fraud_rate")); n != 1 {
		t.Fatalf("missing{merchant.fraud_rate} = %v", n)
	}
	if n := testutil.ToFloat64(s.predictions); n != 1 {
		t.Fatalf("predictions = %v", n)
	}
}

func TestScorerDecisionAtThreshold(t *testing.T) {
	champs := &fakeChampions{}
	champs.cur.Store(loaded(1, 0))
	feats := FeatureMap{"card.count_1h": {Value: 2}, "card.amount_sum_1h": {Value: math.Expm1(3)}, "merchant.fraud_rate": {Value: 0.01}}
	// Every standardized value is 0, so the score is sigmoid(bias) = 0.5.
	for _, c := range []struct {
		threshold float64
		want      bool
	}{{0.5, true}, {0.5000001, false}, {0.1, true}} {
		s, err := NewScorer(config.Model{Name: "fraud", Threshold: c.threshold}, champs, Options{})
		if err != nil {
			t.Fatal(err)
		}
		p, _ := s.Score(Event{Features: feats})
		if math.Abs(p.Score-0.5) > 1e-12 || p.Decision != c.want {
			t.Errorf("threshold %v: score %v decision %v, want %v", c.threshold, p.Score, p.Decision, c.want)
		}
	}
}

func TestScorerNonFiniteIsMissing(t *testing.T) {
	champs := &fakeChampions{}
	champs.cur.Store(loaded(1, 0))
	s, err := NewScorer(config.Model{Name: "fraud", Threshold: 0.5}, champs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := s.Score(Event{Features: FeatureMap{"card.count_1h": {Value: math.NaN()}, "card.amount_sum_1h": {Value: math.Inf(1)}}})
	if err != nil || math.IsNaN(p.Score) {
		t.Fatalf("score %v err %v", p.Score, err)
	}
	for _, f := range p.Features {
		if f.Value != 0 || f.AgeMs != -1 {
			t.Errorf("%+v, want value 0 age -1", f)
		}
	}
}

// TestScorerReadsChampionOnce swaps the champion between calls: each
// prediction's version and score come from one and the same model.
func TestScorerReadsChampionOnce(t *testing.T) {
	champs := &fakeChampions{}
	s, err := NewScorer(config.Model{Name: "fraud", Threshold: 0.5}, champs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	feats := FeatureMap{"card.count_1h": {Value: 3}, "card.amount_sum_1h": {Value: 10}, "merchant.fraud_rate": {Value: 0}}
	x := []float64{3, 10, 0}
	for i := range 6 {
		v := int32(i%2 + 1)
		l := loaded(v, float64(v))
		champs.cur.Store(l)
		before := champs.calls.Load()
		p, _ := s.Score(Event{Features: feats})
		if got := champs.calls.Load() - before; got != 1 {
			t.Fatalf("Score looked the champion up %d times", got)
		}
		if p.ModelVersion != v || p.Score != l.Model.Score(x) {
			t.Fatalf("prediction v%d score %v, want v%d score %v", p.ModelVersion, p.Score, v, l.Model.Score(x))
		}
	}
}

func TestNewScorerDuplicateMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	champs := &fakeChampions{}
	if _, err := NewScorer(config.Model{Name: "fraud"}, champs, Options{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewScorer(config.Model{Name: "fraud"}, champs, Options{Registerer: reg}); err == nil {
		t.Fatal("a second scorer of the same model registered the same metrics")
	}
	if _, err := NewScorer(config.Model{Name: "other"}, champs, Options{Registerer: reg}); err != nil {
		t.Fatalf("a scorer of another model: %v", err)
	}
}

func BenchmarkScore(b *testing.B) {
	champs := &fakeChampions{}
	champs.cur.Store(loaded(1, 0))
	s, err := NewScorer(config.Model{Name: "fraud", Threshold: 0.5}, champs, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ev := Event{Features: FeatureMap{"card.count_1h": {Value: 3}, "card.amount_sum_1h": {Value: 10}, "merchant.fraud_rate": {Value: 0}}}
	b.ReportAllocs()
	for b.Loop() {
		s.Score(ev)
	}
}
