package scoring

import (
	"errors"
	"fmt"
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
	"github.com/weirhq/weir/scoring/rollout"
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
	// Time spent gathering the features (a Redis lookup) counts in the
	// latency.
	gathered := ev
	gathered.Gathered = 70 * time.Microsecond
	if p2, err := s.Score(gathered); err != nil || p2.LatencyUs != 150+70 {
		t.Fatalf("latency with 70µs of gathering: %d µs (err %v), want 220", p2.LatencyUs, err)
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

// fakeArms serves one Loaded per alias and counts lookups.
type fakeArms struct {
	by    map[string]*registry.Loaded
	calls int
}

func (f *fakeArms) Serving(name, alias string) (*registry.Loaded, bool) {
	f.calls++
	l := f.by[alias]
	return l, l != nil && l.Record.Name == name
}

// fakeRewards serves a fixed State.
type fakeRewards struct{ st *rollout.State }

func (f fakeRewards) State(model string) *rollout.State {
	if f.st == nil || f.st.Model != model {
		return nil
	}
	return f.st
}

func TestScorerRollouts(t *testing.T) {
	feats := FeatureMap{"card.count_1h": {Value: 3}, "card.amount_sum_1h": {Value: 10}, "merchant.fraud_rate": {Value: 0}}
	x := []float64{3, 10, 0}
	v1, v2 := loaded(1, -1), loaded(2, 1)
	floor := 0.1
	st := &rollout.State{Model: "fraud", Arms: []rollout.ArmCount{{Arm: "champion", Version: 1, Successes: 5, Failures: 40}, {Arm: "challenger", Version: 2, Successes: 30, Failures: 10}}}
	for _, c := range []struct {
		name    string
		rollout config.Rollout
		arms    map[string]*registry.Loaded
		rewards Rewards
		// want returns the served arm and version for an event
		want      func(ev Event) (string, int32)
		shadows   []string
		fallbacks float64
	}{
		{"champion", config.Rollout{}, map[string]*registry.Loaded{"champion": v1, "challenger": v2}, nil,
			func(Event) (string, int32) { return "champion", 1 }, nil, 0},
		{"shadow", config.Rollout{Strategy: config.RolloutShadow, Arms: []config.Arm{{Alias: "champion"}, {Alias: "challenger"}, {Alias: "gone"}}},
			map[string]*registry.Loaded{"champion": v1, "challenger": v2}, nil,
			func(Event) (string, int32) { return "champion", 1 }, []string{"challenger"}, 0},
		{"canary", config.Rollout{Strategy: config.RolloutCanary, Arms: []config.Arm{{Alias: "champion"}, {Alias: "challenger"}}, Percent: 30},
			map[string]*registry.Loaded{"champion": v1, "challenger": v2}, nil,
			func(ev Event) (string, int32) {
				if rollout.Bucket("fraud", ev.Entity) < 0.3 {
					return "challenger", 2
				}
				return "champion", 1
			}, nil, 0},
		{"canary without a challenger version", config.Rollout{Strategy: config.RolloutCanary, Arms: []config.Arm{{Alias: "champion"}, {Alias: "challenger"}}, Percent: 100},
			map[string]*registry.Loaded{"champion": v1}, nil,
			func(Event) (string, int32) { return "champion", 1 }, nil, 400}, // each event scored by ScoreAll and Score
		{"ab", config.Rollout{Strategy: config.RolloutAB, Arms: []config.Arm{{Alias: "champion", Weight: 1}, {Alias: "blue", Weight: 1}}},
			map[string]*registry.Loaded{"champion": v1, "blue": v2}, nil,
			func(ev Event) (string, int32) {
				if rollout.Bucket("fraud", ev.Entity) < 0.5 {
					return "champion", 1
				}
				return "blue", 2
			}, nil, 0},
		{"bandit", config.Rollout{Strategy: config.RolloutBandit, Arms: []config.Arm{{Alias: "champion"}, {Alias: "challenger"}}, Floor: &floor, Prior: config.Prior{Alpha: 1, Beta: 2}},
			map[string]*registry.Loaded{"champion": v1, "challenger": v2}, fakeRewards{st},
			func(ev Event) (string, int32) {
				i := rollout.Thompson(rollout.Seed("fraud", ev.ID), []rollout.Beta{{Alpha: 6, Beta: 42}, {Alpha: 31, Beta: 12}}, floor)
				return []string{"champion", "challenger"}[i], int32(i + 1)
			}, nil, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			models := &fakeArms{by: c.arms}
			s, err := NewScorer(config.Model{Name: "fraud", Threshold: 0.5, Rollout: c.rollout}, models, Options{Rewards: c.rewards})
			if err != nil {
				t.Fatal(err)
			}
			served := map[string]int{}
			for i := range 200 {
				ev := Event{Entity: fmt.Sprintf("card-%d", i%50), ID: fmt.Sprintf("txn-%d", i), Features: feats}
				before := models.calls
				ps, err := s.ScoreAll(nil, ev)
				if err != nil {
					t.Fatal(err)
				}
				if got := models.calls - before; got != len(s.arms) {
					t.Fatalf("%d lookups for %d arms", got, len(s.arms))
				}
				arm, v := c.want(ev)
				p := ps[0]
				if p.Shadow || p.RolloutArm != arm || p.ModelVersion != v || p.Score != c.arms[arm].Model.Score(x) {
					t.Fatalf("%s: served %s v%d score %v shadow %v, want %s v%d", ev.ID, p.RolloutArm, p.ModelVersion, p.Score, p.Shadow, arm, v)
				}
				served[arm]++
				if len(ps) != 1+len(c.shadows) {
					t.Fatalf("%d predictions, want 1 + %d shadow", len(ps), len(c.shadows))
				}
				for j, sh := range c.shadows {
					q := ps[1+j]
					if !q.Shadow || q.RolloutArm != sh || q.ModelVersion != c.arms[sh].Record.Version || q.Score != c.arms[sh].Model.Score(x) || q.PredictionID != ev.ID {
						t.Fatalf("shadow %d: %+v", j, q)
					}
				}
				if sp, err := s.Score(ev); err != nil || sp.RolloutArm != arm || sp.Shadow {
					t.Fatalf("Score: %+v, %v", sp, err)
				}
			}
			if n := testutil.ToFloat64(s.fallbacks.WithLabelValues("challenger")); n != c.fallbacks {
				t.Fatalf("fallbacks %v, want %v", n, c.fallbacks)
			}
			if c.rollout.Strategy == config.RolloutShadow {
				if n := testutil.ToFloat64(s.shadowSkip.WithLabelValues("gone")); n != 200 {
					t.Fatalf("shadow skipped %v, want 200", n)
				}
			}
			for arm, n := range served {
				if got := testutil.ToFloat64(s.armPredictions.WithLabelValues(arm, "served")); got != float64(2*n) { // ScoreAll and Score
					t.Fatalf("arm_predictions{%s,served} = %v, want %d", arm, got, 2*n)
				}
			}
			t.Logf("served %v", served)
		})
	}
}

func TestScorerNoFallbackArm(t *testing.T) {
	s, err := NewScorer(config.Model{Name: "fraud", Threshold: 0.5, Rollout: config.Rollout{Strategy: config.RolloutCanary,
		Arms: []config.Arm{{Alias: "champion"}, {Alias: "challenger"}}, Percent: 100}}, &fakeArms{by: map[string]*registry.Loaded{"challenger": loaded(2, 0)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ScoreAll(nil, Event{ID: "e"}); !errors.Is(err, ErrNoChampion) {
		t.Fatalf("err = %v, want ErrNoChampion: arms[0] has no version", err)
	}
	if err := s.Check(); !errors.Is(err, ErrNoChampion) {
		t.Fatalf("Check = %v", err)
	}
}

// BenchmarkScoreRollouts is the cost of a served prediction per strategy
// (bandit: the posterior lookup and the seeded Thompson draw included).
func BenchmarkScoreRollouts(b *testing.B) {
	floor := 0.05
	arms := &fakeArms{by: map[string]*registry.Loaded{"champion": loaded(1, 0), "challenger": loaded(2, 1)}}
	two := []config.Arm{{Alias: "champion"}, {Alias: "challenger"}}
	st := &rollout.State{Model: "fraud", Arms: []rollout.ArmCount{{Arm: "champion", Version: 1, Successes: 500, Failures: 400}, {Arm: "challenger", Version: 2, Successes: 700, Failures: 300}}}
	ev := Event{Entity: "card-42", ID: "txn-1-000000042", Features: FeatureMap{"card.count_1h": {Value: 3}, "card.amount_sum_1h": {Value: 10}, "merchant.fraud_rate": {Value: 0}}}
	for _, c := range []struct {
		name string
		r    config.Rollout
	}{
		{"champion", config.Rollout{}},
		{"canary", config.Rollout{Strategy: config.RolloutCanary, Arms: two, Percent: 10}},
		{"shadow", config.Rollout{Strategy: config.RolloutShadow, Arms: two}},
		{"bandit", config.Rollout{Strategy: config.RolloutBandit, Arms: two, Floor: &floor, Prior: config.Prior{Alpha: 1, Beta: 1}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			s, err := NewScorer(config.Model{Name: "fraud", Threshold: 0.5, Rollout: c.r}, arms, Options{Rewards: fakeRewards{st}})
			if err != nil {
				b.Fatal(err)
			}
			var buf []schemas.Prediction
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = s.ScoreAll(buf[:0], ev)
			}
		})
	}
}
