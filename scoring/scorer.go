// Package scoring scores events inline with the serving model versions and
// turns each decision into a schemas.Prediction that names the exact
// version and feature vector used. Model formats live in scoring/model, the
// model registry in scoring/registry and the arm choice in scoring/rollout.
//
// # Rollouts
//
// A model's rollout (config.Rollout) names its arms, registry aliases;
// Options.Models serves each (registry.Registry.Serving). Per event the
// Scorer reads every arm's loaded version once, chooses the served arm
// (champion and shadow: arms[0]; canary and ab: by the entity's bucket,
// rollout.Bucket; bandit: rollout.Thompson over the arms that have a
// version, with the posteriors of Options.Rewards) and scores the event
// with it: exactly one prediction with Shadow false per event, named by
// the arm (RolloutArm, the alias) and the version that scored it. A chosen
// arm with no version, or whose version cannot score (a multi-class model
// without a usable positive_class), is replaced by arms[0] (counted); when
// arms[0] has none either the event is not scored (ErrNoChampion). A shadow rollout
// also scores the event with every other arm that has a version, as
// predictions with Shadow true, after the served one; a shadow arm that
// cannot score (no version, a multi-class model without positive_class)
// is skipped and counted, never failing the event.
//
// # Vectors and missing features
//
// The vector follows the champion record's Features, which the registry
// verified against the artifact (by name where it names its features, by
// position otherwise). A feature that is absent or not finite is missing:
// a tree model (xgboost-json, lightgbm-text) scores it as NaN, so each
// split's default direction takes it, as in the library; a
// logistic-regression model scores it with the configured default
// (models[].defaults for that feature, else models[].default, else 0).
// Either way the prediction logs it with age_ms -1 and it is counted.
//
// # Multi-class models
//
// The score of a multi-class model is the probability of
// models[].positive_class. A multi-class champion with no positive class
// configured, or one it does not have, is not used: Score returns
// ErrMultiClass and the event is not scored.
//
// # Metrics
//
//	weir_scoring_predictions_total{model}          predictions made (served and shadow)
//	weir_scoring_arm_predictions_total{model,arm,role}  predictions per arm; role served or shadow
//	weir_scoring_arm_fallbacks_total{model,arm}    events whose chosen arm had no version or could not score: served by arms[0]
//	weir_scoring_shadow_skipped_total{model,arm}   shadow predictions not made: no version, or the arm cannot score
//	weir_scoring_no_champion_total{model}          events not scored: arms[0] (the champion) has no version yet
//	weir_scoring_missing_features_total{model,feature}  missing features filled in (default or NaN, see above)
//	weir_scoring_latency_seconds{model}            time to gather the features (Event.Gathered), build the vector and score
package scoring

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring/model"
	"github.com/weirhq/weir/scoring/registry"
	"github.com/weirhq/weir/scoring/rollout"
)

// Errors Score returns; the event is not scored.
var (
	// ErrNoChampion: the model has no serving champion yet.
	ErrNoChampion = errors.New("no champion model loaded")
	// ErrMultiClass: the champion is a multi-class model and
	// models[].positive_class does not name one of its classes.
	ErrMultiClass = errors.New("multi-class model without a usable positive_class")
)

// ArmChampion is the rollout arm of predictions made by the champion.
const ArmChampion = registry.Champion

// Features looks up an entity's feature values for one event.
type Features interface {
	// Feature returns the value of a "view.feature" and the event time
	// (Unix ms) of the row it came from; ok is false when it is unknown.
	Feature(name string) (value float64, eventTime int64, ok bool)
}

// FeatureValue is one looked-up value.
type FeatureValue struct {
	Value     float64
	EventTime int64 // Unix ms of the feature row
}

// FeatureMap is a Features backed by a map.
type FeatureMap map[string]FeatureValue

var _ Features = FeatureMap(nil)

// Feature implements Features.
func (m FeatureMap) Feature(name string) (float64, int64, bool) {
	v, ok := m[name]
	return v.Value, v.EventTime, ok
}

// Event is one source event to score.
type Event struct {
	Entity    string
	ID        string // event id; becomes the prediction id
	Time      int64  // event time, Unix ms
	Partition int32  // source partition
	Offset    int64  // source offset
	Features  Features
	// Gathered is the time already spent gathering Features (a Redis
	// lookup); it is counted in the prediction's latency.
	Gathered time.Duration
}

// Models is what a Scorer needs of the model registry: the verified
// version an alias serves.
type Models interface {
	Serving(name, alias string) (*registry.Loaded, bool)
}

var _ Models = (*registry.Registry)(nil)

// Rewards is what a bandit Scorer needs of the rewards topic: a model's
// latest reward counts (nil: none yet, the prior alone).
type Rewards interface {
	State(model string) *rollout.State
}

var _ Rewards = (*rollout.Posteriors)(nil)

// Options configure a Scorer.
type Options struct {
	Logger     *slog.Logger          // nil discards
	Registerer prometheus.Registerer // nil registers nothing
	Now        func() time.Time      // wall clock for scored_time and latency; nil means time.Now
	// Rewards are the bandit's posteriors; nil scores a bandit rollout with
	// its prior alone.
	Rewards Rewards
}

// maxArms is how many arms a Scorer reads without allocating.
const maxArms = 8

// Scorer scores one configured model's events with its rollout's arms.
// It is safe for concurrent use.
type Scorer struct {
	model   config.Model
	arms    []string // aliases; arms[0] is the fallback
	weights []float64
	floor   float64
	models  Models
	rewards Rewards
	log     *slog.Logger
	now     func() time.Time

	predictions, noChampion prometheus.Counter
	missing                 *prometheus.CounterVec
	armPredictions          *prometheus.CounterVec
	fallbacks, shadowSkip   *prometheus.CounterVec
	latency                 prometheus.Observer
}

// NewScorer returns a Scorer of m reading versions from models. A model
// whose rollout is unset (no strategy) serves its champion.
func NewScorer(m config.Model, models Models, o Options) (*Scorer, error) {
	if m.Name == "" || models == nil {
		return nil, errors.New("scoring: new scorer: model name and registry are required")
	}
	if m.Rollout.Strategy == "" {
		m.Rollout.Strategy = config.RolloutChampion
	}
	if len(m.Rollout.Arms) == 0 {
		m.Rollout.Arms = []config.Arm{{Alias: ArmChampion}}
	}
	s := &Scorer{model: m, arms: m.Rollout.Aliases(), models: models, rewards: o.Rewards, log: o.Logger, now: o.Now}
	for _, a := range m.Rollout.Arms {
		s.weights = append(s.weights, a.Weight)
	}
	if m.Rollout.Floor != nil {
		s.floor = *m.Rollout.Floor
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	l := prometheus.Labels{"model": m.Name}
	predictions := prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_scoring_predictions_total", Help: "Predictions made (served and shadow).", ConstLabels: l})
	noChampion := prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_scoring_no_champion_total", Help: "Events not scored because the rollout's first arm (the champion) had no version.", ConstLabels: l})
	missing := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_scoring_missing_features_total", Help: "Missing features filled in: with the configured default (logreg) or NaN (tree models).", ConstLabels: l}, []string{"feature"})
	armPredictions := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_scoring_arm_predictions_total", Help: "Predictions per rollout arm; role served or shadow.", ConstLabels: l}, []string{"arm", "role"})
	fallbacks := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_scoring_arm_fallbacks_total", Help: "Events whose chosen arm had no version, served by the rollout's first arm.", ConstLabels: l}, []string{"arm"})
	shadowSkip := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_scoring_shadow_skipped_total", Help: "Shadow predictions not made: the arm had no version or could not score.", ConstLabels: l}, []string{"arm"})
	latency := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "weir_scoring_latency_seconds", Help: "Time to gather the features (a Redis lookup included), build the vector and score.", ConstLabels: l,
		Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10)})
	if reg := o.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{predictions, noChampion, missing, armPredictions, fallbacks, shadowSkip, latency} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("scoring: register metrics of model %s: %w", m.Name, err)
			}
		}
	}
	s.predictions, s.noChampion, s.missing, s.latency = predictions, noChampion, missing, latency
	s.armPredictions, s.fallbacks, s.shadowSkip = armPredictions, fallbacks, shadowSkip
	return s, nil
}

// Check reports whether the rollout's first arm (the champion) can score
// this model's events: ErrNoChampion or ErrMultiClass (wrapped, saying what
// to set). Another arm that cannot score is logged, not returned: events
// it would serve are served by the first arm.
func (s *Scorer) Check() error {
	for i, alias := range s.arms {
		l, ok := s.models.Serving(s.model.Name, alias)
		if !ok {
			if i == 0 {
				return fmt.Errorf("scoring: model %s: %w", s.model.Name, ErrNoChampion)
			}
			continue
		}
		if _, err := s.class(l); err != nil {
			if i == 0 {
				return err
			}
			s.log.Warn("scoring: rollout arm cannot score; the first arm serves its events", "model", s.model.Name, "arm", alias, "err", err)
		}
	}
	return nil
}

// class returns the output Score reads: -1 for a single-output model
// (Model.Score), else the positive class.
func (s *Scorer) class(l *registry.Loaded) (int, error) {
	n := l.Model.NumOutputs()
	if n <= 1 {
		return -1, nil
	}
	pc := s.model.PositiveClass
	if pc == nil {
		return 0, fmt.Errorf("scoring: model %s v%d has %d classes: %w: set models[].positive_class in the config to the class whose probability is the score", s.model.Name, l.Record.Version, n, ErrMultiClass)
	}
	if *pc >= n {
		return 0, fmt.Errorf("scoring: model %s v%d has %d classes, positive_class is %d: %w", s.model.Name, l.Record.Version, n, *pc, ErrMultiClass)
	}
	return *pc, nil
}

// Score scores ev and returns the served prediction only; see ScoreAll.
func (s *Scorer) Score(ev Event) (schemas.Prediction, error) {
	var buf [1]schemas.Prediction
	ps, err := s.score(buf[:0], ev, false)
	if err != nil {
		return schemas.Prediction{}, err
	}
	return ps[0], nil
}

// ScoreAll appends ev's predictions to dst: the served one first, then a
// shadow rollout's shadow predictions (see the package doc for the arm
// choice). Each arm's version is read once, so a prediction names exactly
// the version that scored it. The vector is built in that version's
// record's feature order; a feature that is missing or not finite is
// filled as the package doc says, logged in the prediction with age_ms -1
// (and value the default used, or 0 for a tree model, which saw NaN), and
// counted. Otherwise age_ms is the event's time minus the feature row's.
// ScoreAll returns ErrNoChampion when arms[0] has no version yet (counted)
// and ErrMultiClass when arms[0] cannot score (as Check says); dst is then
// returned unchanged.
func (s *Scorer) ScoreAll(dst []schemas.Prediction, ev Event) ([]schemas.Prediction, error) {
	return s.score(dst, ev, true)
}

func (s *Scorer) score(dst []schemas.Prediction, ev Event, shadows bool) ([]schemas.Prediction, error) {
	var buf [maxArms]*registry.Loaded
	ls := buf[:0]
	for _, alias := range s.arms {
		l, _ := s.models.Serving(s.model.Name, alias)
		ls = append(ls, l)
	}
	if ls[0] == nil {
		s.noChampion.Inc()
		return dst, fmt.Errorf("scoring: model %s: %w", s.model.Name, ErrNoChampion)
	}
	arm := s.choose(ls, ev)
	if ls[arm] == nil {
		s.fallbacks.WithLabelValues(s.arms[arm]).Inc()
		arm = 0
	}
	p, err := s.predict(ls[arm], s.arms[arm], ev, false)
	if err != nil && arm != 0 {
		// A chosen arm that cannot score (a multi-class version without a
		// usable positive_class) never stalls the pipeline: arms[0] serves.
		s.fallbacks.WithLabelValues(s.arms[arm]).Inc()
		s.log.Warn("scoring: rollout arm cannot score; the first arm serves", "model", s.model.Name, "arm", s.arms[arm], "err", err)
		arm = 0
		p, err = s.predict(ls[0], s.arms[0], ev, false)
	}
	if err != nil {
		return dst, err
	}
	dst = append(dst, p)
	if !shadows || s.model.Rollout.Strategy != config.RolloutShadow {
		return dst, nil
	}
	for i := 1; i < len(ls); i++ {
		if ls[i] == nil {
			s.shadowSkip.WithLabelValues(s.arms[i]).Inc()
			continue
		}
		p, err := s.predict(ls[i], s.arms[i], ev, true)
		if err != nil {
			s.shadowSkip.WithLabelValues(s.arms[i]).Inc()
			s.log.Warn("scoring: shadow arm cannot score", "model", s.model.Name, "arm", s.arms[i], "err", err)
			continue
		}
		dst = append(dst, p)
	}
	return dst, nil
}

// choose returns the index of the arm that serves ev; ls[i] is arm i's
// version, nil when it has none.
func (s *Scorer) choose(ls []*registry.Loaded, ev Event) int {
	r := &s.model.Rollout
	switch r.Strategy {
	case config.RolloutCanary:
		if rollout.Canary(r.Percent, rollout.Bucket(s.model.Name, ev.Entity)) {
			return 1
		}
	case config.RolloutAB:
		return rollout.Weighted(s.weights, rollout.Bucket(s.model.Name, ev.Entity))
	case config.RolloutBandit:
		var st *rollout.State
		if s.rewards != nil {
			st = s.rewards.State(s.model.Name)
		}
		var idx [maxArms]int
		var post [maxArms]rollout.Beta
		k := 0
		for i, l := range ls {
			if l == nil || k == maxArms {
				continue
			}
			succ, fail := st.Counts(s.arms[i], l.Record.Version)
			idx[k], post[k] = i, rollout.Beta{Alpha: r.Prior.Alpha + float64(succ), Beta: r.Prior.Beta + float64(fail)}
			k++
		}
		return idx[rollout.Thompson(rollout.Seed(s.model.Name, ev.ID), post[:k], s.floor)]
	}
	return 0
}

// predict scores ev with one arm's version.
func (s *Scorer) predict(l *registry.Loaded, arm string, ev Event, shadow bool) (schemas.Prediction, error) {
	start := s.now()
	class, err := s.class(l)
	if err != nil {
		return schemas.Prediction{}, err
	}
	m := l.Model
	names := l.Record.Features
	trees := m.ModelFormat() != model.FormatLogReg
	used := make([]schemas.UsedFeature, len(names))
	x := make([]float64, len(names))
	for i, name := range names {
		used[i].Name = name
		var v float64
		var at int64
		ok := false
		if ev.Features != nil {
			v, at, ok = ev.Features.Feature(name)
		}
		if !ok || math.IsNaN(v) || math.IsInf(v, 0) {
			s.missing.WithLabelValues(name).Inc()
			used[i].AgeMs = -1
			if trees {
				x[i] = math.NaN()
				continue
			}
			d, ok := s.model.Defaults[name]
			if !ok {
				d = s.model.Default
			}
			x[i], used[i].Value = d, d
			continue
		}
		x[i] = v
		used[i].Value = v
		used[i].AgeMs = ev.Time - at
		if sc, ok := ev.Features.(StaleChecker); ok {
			used[i].Stale = sc.Stale(name, used[i].AgeMs)
		}
	}
	var score float64
	if class < 0 {
		score = m.Score(x)
	} else {
		var buf [16]float64
		score = m.Predict(buf[:0], x)[class]
	}
	end := s.now()
	lat := end.Sub(start) + ev.Gathered
	s.latency.Observe(lat.Seconds())
	s.predictions.Inc()
	role := "served"
	if shadow {
		role = "shadow"
	}
	s.armPredictions.WithLabelValues(arm, role).Inc()
	return schemas.Prediction{
		PredictionID:    ev.ID,
		Entity:          ev.Entity,
		EventTime:       ev.Time,
		ScoredTime:      end.UnixMilli(),
		ModelName:       s.model.Name,
		ModelVersion:    l.Record.Version,
		RolloutArm:      arm,
		Score:           score,
		Threshold:       s.model.Threshold,
		Decision:        score >= s.model.Threshold,
		SourcePartition: ev.Partition,
		SourceOffset:    ev.Offset,
		LatencyUs:       lat.Microseconds(),
		Features:        used,
		Shadow:          shadow,
	}, nil
}
