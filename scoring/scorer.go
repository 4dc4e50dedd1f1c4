// Package scoring scores events inline with the serving model version and
// turns each decision into a schemas.Prediction that names the exact
// version and feature vector used. Model formats live in scoring/model and
// the model registry in scoring/registry; rollout arms other than the
// champion (challenger, shadow, canary) are a later issue.
//
// # Metrics
//
//	weir_scoring_predictions_total{model}          predictions made
//	weir_scoring_no_champion_total{model}          events not scored: no champion loaded yet
//	weir_scoring_missing_features_total{model,feature}  features absent at scoring time (scored as 0)
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
	"github.com/weirhq/weir/scoring/registry"
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
	missing := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_scoring_missing_features_total", Help: "Features absent at scoring time, scored as 0.", ConstLabels: l}, []string{"feature"})
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

// Score scores ev with the champion, read once, so the prediction names
// exactly the version that scored it. The vector is built in the model's
// feature order; a feature that is missing or not finite is scored as 0,
// logged in the prediction with value 0 and age_ms -1, and counted.
// Otherwise age_ms is the event's time minus the feature row's. Score
// returns false when no champion is loaded yet (counted).
func (s *Scorer) Score(ev Event) (schemas.Prediction, bool) {
	start := s.now()
	champ, ok := s.models.Champion(s.model.Name)
	if !ok {
		s.noChampion.Inc()
		return schemas.Prediction{}, false
	}
	m := champ.Model
	used := make([]schemas.UsedFeature, len(m.Features))
	x := make([]float64, len(m.Features))
	for i, name := range m.Features {
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
			continue
		}
		x[i] = v
		used[i].Value = v
		used[i].AgeMs = ev.Time - at
	}
	score := m.Score(x)
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
	}, true
}
