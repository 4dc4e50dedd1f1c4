// Package scoring scores events inline with the serving model version and
// turns each decision into a schemas.Prediction that names the exact
// version and feature vector used. Model formats live in scoring/model and
// the model registry in scoring/registry; rollout arms other than the
// champion (challenger, shadow, canary) are a later issue.
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
//	weir_scoring_predictions_total{model}          predictions made
//	weir_scoring_no_champion_total{model}          events not scored: no champion loaded yet
//	weir_scoring_missing_features_total{model,feature}  missing features filled in (default or NaN, see above)
//	weir_scoring_latency_seconds{model}            time to build the vector and score
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
const ArmChampion = "champion"

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
}

// Champions is what a Scorer needs of the model registry.
type Champions interface {
	Champion(name string) (*registry.Loaded, bool)
}

var _ Champions = (*registry.Registry)(nil)

// Options configure a Scorer.
type Options struct {
	Logger     *slog.Logger          // nil discards
	Registerer prometheus.Registerer // nil registers nothing
	Now        func() time.Time      // wall clock for scored_time and latency; nil means time.Now
}

// Scorer scores one configured model's events with its serving champion.
// It is safe for concurrent use.
type Scorer struct {
	model  config.Model
	models Champions
	log    *slog.Logger
	now    func() time.Time

	predictions, noChampion prometheus.Counter
	missing                 *prometheus.CounterVec
	latency                 prometheus.Observer
}

// NewScorer returns a Scorer of m reading champions from models.
func NewScorer(m config.Model, models Champions, o Options) (*Scorer, error) {
	if m.Name == "" || models == nil {
		return nil, errors.New("scoring: new scorer: model name and registry are required")
	}
	s := &Scorer{model: m, models: models, log: o.Logger, now: o.Now}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	l := prometheus.Labels{"model": m.Name}
	predictions := prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_scoring_predictions_total", Help: "Predictions made.", ConstLabels: l})
	noChampion := prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_scoring_no_champion_total", Help: "Events not scored because no champion was loaded.", ConstLabels: l})
	missing := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_scoring_missing_features_total", Help: "Missing features filled in: with the configured default (logreg) or NaN (tree models).", ConstLabels: l}, []string{"feature"})
	latency := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "weir_scoring_latency_seconds", Help: "Time to build the feature vector and score.", ConstLabels: l,
		Buckets: prometheus.ExponentialBuckets(1e-6, 4, 10)})
	if reg := o.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{predictions, noChampion, missing, latency} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("scoring: register metrics of model %s: %w", m.Name, err)
			}
		}
	}
	s.predictions, s.noChampion, s.missing, s.latency = predictions, noChampion, missing, latency
	return s, nil
}

// Check reports whether the serving champion can score this model's
// events: ErrNoChampion or ErrMultiClass (wrapped, saying what to set).
func (s *Scorer) Check() error {
	champ, ok := s.models.Champion(s.model.Name)
	if !ok {
		return fmt.Errorf("scoring: model %s: %w", s.model.Name, ErrNoChampion)
	}
	_, err := s.class(champ)
	return err
}

// class returns the output Score reads: -1 for a single-output model
// (Model.Score), else the positive class.
func (s *Scorer) class(champ *registry.Loaded) (int, error) {
	n := champ.Model.NumOutputs()
	if n <= 1 {
		return -1, nil
	}
	pc := s.model.PositiveClass
	if pc == nil {
		return 0, fmt.Errorf("scoring: model %s v%d has %d classes: %w: set models[].positive_class in the config to the class whose probability is the score", s.model.Name, champ.Record.Version, n, ErrMultiClass)
	}
	if *pc >= n {
		return 0, fmt.Errorf("scoring: model %s v%d has %d classes, positive_class is %d: %w", s.model.Name, champ.Record.Version, n, *pc, ErrMultiClass)
	}
	return *pc, nil
}

// Score scores ev with the champion, read once, so the prediction names
// exactly the version that scored it. The vector is built in the champion
// record's feature order; a feature that is missing or not finite is
// filled as the package doc says, logged in the prediction with age_ms -1
// (and value the default used, or 0 for a tree model, which saw NaN), and
// counted. Otherwise age_ms is the event's time minus the feature row's.
// Score returns ErrNoChampion when no champion is loaded yet (counted)
// and ErrMultiClass as Check does.
func (s *Scorer) Score(ev Event) (schemas.Prediction, error) {
	start := s.now()
	champ, ok := s.models.Champion(s.model.Name)
	if !ok {
		s.noChampion.Inc()
		return schemas.Prediction{}, fmt.Errorf("scoring: model %s: %w", s.model.Name, ErrNoChampion)
	}
	class, err := s.class(champ)
	if err != nil {
		return schemas.Prediction{}, err
	}
	m := champ.Model
	names := champ.Record.Features
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
	lat := end.Sub(start)
	s.latency.Observe(lat.Seconds())
	s.predictions.Inc()
	return schemas.Prediction{
		PredictionID:    ev.ID,
		Entity:          ev.Entity,
		EventTime:       ev.Time,
		ScoredTime:      end.UnixMilli(),
		ModelName:       s.model.Name,
		ModelVersion:    champ.Record.Version,
		RolloutArm:      ArmChampion,
		Score:           score,
		Threshold:       s.model.Threshold,
		Decision:        score >= s.model.Threshold,
		SourcePartition: ev.Partition,
		SourceOffset:    ev.Offset,
		LatencyUs:       lat.Microseconds(),
		Features:        used,
	}, nil
}
