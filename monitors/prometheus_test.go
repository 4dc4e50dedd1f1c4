package monitors_test

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/monitors"
	"github.com/weirhq/weir/schemas"
)

// feed gives a PrometheusHook one window of every kind, an alert and
// consumption of every outcome.
func feed(h *monitors.PrometheusHook, monitor string) {
	start := time.UnixMilli(t0)
	r := monitors.WindowReport{Monitor: monitor, Model: "fraud", Version: 3, Start: start, End: start.Add(time.Minute)}
	r.Metrics = []schemas.MonitorMetric{
		{Metric: monitors.MetricCount, Value: 250, Count: 250},
		{Metric: monitors.MetricPSI, Feature: "score", Value: 0.31, Count: 250},
		{Metric: monitors.MetricPSI, Feature: amountFeature, Value: 0.02, Count: 249},
	}
	h.OnWindowClosed(r)
	r.Metrics = []schemas.MonitorMetric{{Metric: monitors.MetricLabels, Value: 40, Count: 250}} // one class: no AUC
	h.OnWindowLabelled(r)
	h.OnAlertChanged(schemas.Alert{Monitor: monitor, Rule: "score_drift", State: schemas.AlertFiring})
	for _, o := range []monitors.Outcome{monitors.OutcomeWindowed, monitors.OutcomeLate, monitors.OutcomeShadow, monitors.OutcomeUndecodable} {
		h.OnRecordConsumed(monitors.KindPrediction, o)
	}
	for _, o := range []monitors.Outcome{monitors.OutcomeJoined, monitors.OutcomeUnmatched} {
		h.OnRecordConsumed(monitors.KindLabel, o)
	}
}

func TestPrometheusHook(t *testing.T) {
	reg := prometheus.NewRegistry()
	for _, name := range []string{"a", "b"} { // two monitors share a registry
		h, err := monitors.NewPrometheusHook(reg, name)
		if err != nil {
			t.Fatalf("monitor %s: %v", name, err)
		}
		feed(h, name)
	}
	const want = `
# HELP weir_monitor_alerts_firing 1 while a monitor rule fires, 0 after it resolves.
# TYPE weir_monitor_alerts_firing gauge
weir_monitor_alerts_firing{monitor="a",rule="score_drift"} 1
weir_monitor_alerts_firing{monitor="b",rule="score_drift"} 1
# HELP weir_monitor_auc ROC AUC of the labelled predictions of the latest window whose label wait ended; NaN when only one class was labelled.
# TYPE weir_monitor_auc gauge
weir_monitor_auc{model="fraud",monitor="a",version="3"} NaN
weir_monitor_auc{model="fraud",monitor="b",version="3"} NaN
# HELP weir_monitor_labels_consumed_total Labels a monitor consumed, by outcome (joined, unmatched, undecodable).
# TYPE weir_monitor_labels_consumed_total counter
weir_monitor_labels_consumed_total{monitor="a",outcome="joined"} 1
weir_monitor_labels_consumed_total{monitor="a",outcome="unmatched"} 1
weir_monitor_labels_consumed_total{monitor="b",outcome="joined"} 1
weir_monitor_labels_consumed_total{monitor="b",outcome="unmatched"} 1
# HELP weir_monitor_predictions_consumed_total Predictions a monitor consumed, by outcome (windowed, late, shadow, undecodable).
# TYPE weir_monitor_predictions_consumed_total counter
weir_monitor_predictions_consumed_total{monitor="a",outcome="late"} 1
weir_monitor_predictions_consumed_total{monitor="a",outcome="shadow"} 1
weir_monitor_predictions_consumed_total{monitor="a",outcome="undecodable"} 1
weir_monitor_predictions_consumed_total{monitor="a",outcome="windowed"} 1
weir_monitor_predictions_consumed_total{monitor="b",outcome="late"} 1
weir_monitor_predictions_consumed_total{monitor="b",outcome="shadow"} 1
weir_monitor_predictions_consumed_total{monitor="b",outcome="undecodable"} 1
weir_monitor_predictions_consumed_total{monitor="b",outcome="windowed"} 1
# HELP weir_monitor_window_predictions Predictions of a model version in the latest closed window.
# TYPE weir_monitor_window_predictions gauge
weir_monitor_window_predictions{model="fraud",monitor="a",version="3"} 250
weir_monitor_window_predictions{model="fraud",monitor="b",version="3"} 250
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"weir_monitor_alerts_firing", "weir_monitor_auc", "weir_monitor_labels_consumed_total",
		"weir_monitor_predictions_consumed_total", "weir_monitor_window_predictions"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "weir_monitor_psi"); err != nil || n != 4 {
		t.Fatalf("%d weir_monitor_psi series (%v), want 4", n, err)
	}
}

// TestPromtoolCheckMetrics lints the exposition with `promtool check
// metrics` (Debian package prometheus).
func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if testenv.Required() {
			t.Fatalf("promtool not on PATH (WEIR_REQUIRE_SERVICES=1): %v", err)
		}
		t.Skipf("promtool not on PATH: %v", err)
	}
	reg := prometheus.NewRegistry()
	h, err := monitors.NewPrometheusHook(reg, "fraud-drift")
	if err != nil {
		t.Fatal(err)
	}
	feed(h, "fraud-drift")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	enc := expfmt.NewEncoder(&text, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	if len(mfs) != 7 {
		t.Fatalf("%d metric families, want 7:\n%s", len(mfs), text.String())
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = &text
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestPrometheusShadow: a shadow arm's window sets the shadow gauges and
// leaves the served version's gauges alone, even for the same version.
func TestPrometheusShadow(t *testing.T) {
	reg := prometheus.NewRegistry()
	h, err := monitors.NewPrometheusHook(reg, "a")
	if err != nil {
		t.Fatal(err)
	}
	start := time.UnixMilli(t0)
	served := monitors.WindowReport{Monitor: "a", Model: "fraud", Version: 3, Start: start, End: start.Add(time.Minute)}
	served.Metrics = []schemas.MonitorMetric{{Metric: monitors.MetricPSI, Feature: "score", Value: 0.05, Count: 100}}
	h.OnWindowClosed(served)
	shadow := served
	shadow.Shadow = true
	shadow.Metrics = []schemas.MonitorMetric{{Metric: monitors.MetricPSI, Feature: "score", Value: 0.7, Count: 100, Shadow: true}}
	h.OnWindowClosed(shadow)
	shadow.Metrics = []schemas.MonitorMetric{{Metric: monitors.MetricAUC, Value: 0.81, Count: 90, Shadow: true}}
	h.OnWindowLabelled(shadow)
	const want = `
# HELP weir_monitor_psi Population stability index of a model input (feature=score: the model output) in the latest closed window, against the model version's training profile.
# TYPE weir_monitor_psi gauge
weir_monitor_psi{feature="score",model="fraud",monitor="a",version="3"} 0.05
# HELP weir_monitor_shadow_auc ROC AUC of a shadow arm's labelled predictions of a version in the latest window whose label wait ended: the challenger's performance on the served traffic.
# TYPE weir_monitor_shadow_auc gauge
weir_monitor_shadow_auc{model="fraud",monitor="a",version="3"} 0.81
# HELP weir_monitor_shadow_psi Population stability index of a model input (feature=score: the output) over a shadow arm's predictions of a version in the latest closed window, against that version's training profile.
# TYPE weir_monitor_shadow_psi gauge
weir_monitor_shadow_psi{feature="score",model="fraud",monitor="a",version="3"} 0.7
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "weir_monitor_psi", "weir_monitor_shadow_psi", "weir_monitor_shadow_auc"); err != nil {
		t.Error(err)
	}
}
