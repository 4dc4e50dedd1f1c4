package monitors

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weirhq/weir/schemas"
)

// PrometheusHook exports one monitor's windows, alerts and consumption as
// the Prometheus metrics listed in the package doc. Gauges hold the latest
// window of each label set. Monitors may share a registerer: collectors
// already registered by another monitor are reused.
type PrometheusHook struct {
	psi, auc, windowPredictions, windowLabels, firing *prometheus.GaugeVec
	shadowPSI, shadowAUC                              *prometheus.GaugeVec
	predictions, labels                               *prometheus.CounterVec
}

var (
	_ HookWindowClosed   = (*PrometheusHook)(nil)
	_ HookWindowLabelled = (*PrometheusHook)(nil)
	_ HookAlertChanged   = (*PrometheusHook)(nil)
	_ HookRecordConsumed = (*PrometheusHook)(nil)
)

// NewPrometheusHook registers the monitor metrics on reg and returns the
// hook of the named monitor.
func NewPrometheusHook(reg prometheus.Registerer, monitor string) (*PrometheusHook, error) {
	versioned := []string{"monitor", "model", "version"}
	gauge := func(name, help string, labels []string) (*prometheus.GaugeVec, error) {
		return registerVec(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels))
	}
	counter := func(name, help string) (*prometheus.CounterVec, error) {
		c, err := registerVec(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"monitor", "outcome"}))
		if err != nil {
			return nil, err
		}
		return c.MustCurryWith(prometheus.Labels{"monitor": monitor}), nil
	}
	var h PrometheusHook
	var errs [9]error
	h.psi, errs[0] = gauge("weir_monitor_psi",
		"Population stability index of a model input (feature=score: the model output) in the latest closed window, against the model version's training profile.",
		append(versioned, "feature"))
	h.auc, errs[1] = gauge("weir_monitor_auc",
		"ROC AUC of the labelled predictions of the latest window whose label wait ended; NaN when only one class was labelled.",
		versioned)
	h.windowPredictions, errs[2] = gauge("weir_monitor_window_predictions",
		"Predictions of a model version in the latest closed window.", versioned)
	h.windowLabels, errs[3] = gauge("weir_monitor_window_labels",
		"Labelled predictions of a model version in the latest window whose label wait ended.", versioned)
	h.firing, errs[4] = gauge("weir_monitor_alerts_firing",
		"1 while a monitor rule fires, 0 after it resolves.", []string{"monitor", "rule"})
	h.predictions, errs[5] = counter("weir_monitor_predictions_consumed_total",
		"Predictions a monitor consumed, by outcome (windowed, late, shadow, undecodable).")
	h.labels, errs[6] = counter("weir_monitor_labels_consumed_total",
		"Labels a monitor consumed, by outcome (joined, unmatched, undecodable).")
	h.shadowPSI, errs[7] = gauge("weir_monitor_shadow_psi",
		"Population stability index of a model input (feature=score: the output) over a shadow arm's predictions of a version in the latest closed window, against that version's training profile.",
		append(versioned, "feature"))
	h.shadowAUC, errs[8] = gauge("weir_monitor_shadow_auc",
		"ROC AUC of a shadow arm's labelled predictions of a version in the latest window whose label wait ended: the challenger's performance on the served traffic.",
		versioned)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	return &h, nil
}

// registerVec registers c, or returns the collector of the same
// description that is already registered.
func registerVec[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("monitors: register Prometheus metrics: %w", err)
}

// OnWindowClosed implements HookWindowClosed.
func (h *PrometheusHook) OnWindowClosed(r WindowReport) {
	v := strconv.Itoa(int(r.Version))
	if r.Shadow {
		for _, m := range r.Metrics {
			if m.Metric == MetricPSI {
				h.shadowPSI.WithLabelValues(r.Monitor, r.Model, v, m.Feature).Set(m.Value)
			}
		}
		return
	}
	for _, m := range r.Metrics {
		switch m.Metric {
		case MetricCount:
			h.windowPredictions.WithLabelValues(r.Monitor, r.Model, v).Set(m.Value)
		case MetricPSI:
			h.psi.WithLabelValues(r.Monitor, r.Model, v, m.Feature).Set(m.Value)
		}
	}
}

// OnWindowLabelled implements HookWindowLabelled.
func (h *PrometheusHook) OnWindowLabelled(r WindowReport) {
	v := strconv.Itoa(int(r.Version))
	auc := math.NaN()
	if r.Shadow {
		for _, m := range r.Metrics {
			if m.Metric == MetricAUC {
				auc = m.Value
			}
		}
		h.shadowAUC.WithLabelValues(r.Monitor, r.Model, v).Set(auc)
		return
	}
	for _, m := range r.Metrics {
		switch m.Metric {
		case MetricLabels:
			h.windowLabels.WithLabelValues(r.Monitor, r.Model, v).Set(m.Value)
		case MetricAUC:
			auc = m.Value
		}
	}
	h.auc.WithLabelValues(r.Monitor, r.Model, v).Set(auc)
}

// OnAlertChanged implements HookAlertChanged.
func (h *PrometheusHook) OnAlertChanged(a schemas.Alert) {
	var v float64
	if a.State == schemas.AlertFiring {
		v = 1
	}
	h.firing.WithLabelValues(a.Monitor, a.Rule).Set(v)
}

// OnRecordConsumed implements HookRecordConsumed.
func (h *PrometheusHook) OnRecordConsumed(k RecordKind, o Outcome) {
	switch k {
	case KindPrediction:
		h.predictions.WithLabelValues(string(o)).Inc()
	case KindLabel:
		h.labels.WithLabelValues(string(o)).Inc()
	}
}
