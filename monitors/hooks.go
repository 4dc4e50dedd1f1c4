package monitors

import (
	"context"
	"log/slog"
	"math"
	"time"

	"github.com/weirhq/weir/schemas"
)

// Hook is any of the Hook* interfaces below: a hook implements the ones it
// wants, as franz-go's kgo hooks do. Hooks are called from the goroutine
// that runs the monitor, in event order; they must not block and must not
// keep the slices of a WindowReport after returning.
type Hook any

// HookWindowClosed is called once per model version of a window when the
// window closes, with its count and drift metrics.
type HookWindowClosed interface {
	OnWindowClosed(WindowReport)
}

// HookWindowLabelled is called once per model version of an evaluated
// window when its label wait ends, with its label count and AUC.
type HookWindowLabelled interface {
	OnWindowLabelled(WindowReport)
}

// HookAlertChanged is called when a rule fires or resolves, before the
// alert is published.
type HookAlertChanged interface {
	OnAlertChanged(schemas.Alert)
}

// HookRecordConsumed is called for each prediction and label consumed,
// with what became of it.
type HookRecordConsumed interface {
	OnRecordConsumed(kind RecordKind, outcome Outcome)
}

// RecordKind is the kind of record a monitor consumes.
type RecordKind string

// Record kinds.
const (
	KindPrediction RecordKind = "prediction"
	KindLabel      RecordKind = "label"
)

// Outcome is what became of a consumed record.
type Outcome string

// Outcomes of consumed records.
const (
	// OutcomeWindowed: a prediction counted in its window.
	OutcomeWindowed Outcome = "windowed"
	// OutcomeLate: a prediction whose window had already closed; dropped.
	OutcomeLate Outcome = "late"
	// OutcomeShadow: a shadow arm's prediction (models[].rollout: scored and
	// logged, not served), counted in its version's shadow window: its
	// metrics are published marked shadow and rules never read them.
	OutcomeShadow Outcome = "shadow"
	// OutcomeJoined: a label matched to a held prediction.
	OutcomeJoined Outcome = "joined"
	// OutcomeUnmatched: a label with no held prediction (its window was
	// dropped, not evaluated, or never had that prediction); dropped. A label
	// that comes before its prediction is held in its window and counted
	// when it is joined or when the window closes without the prediction.
	OutcomeUnmatched Outcome = "unmatched"
	// OutcomeUndecodable: bytes that do not decode; skipped.
	OutcomeUndecodable Outcome = "undecodable"
)

// WindowReport describes one model version's part of one window.
type WindowReport struct {
	Monitor string
	Model   string
	Version int32
	Start   time.Time
	End     time.Time
	// Shadow reports that these are a shadow arm's predictions (a
	// challenger scored and logged, not served): never the majority, not in
	// WindowPredictions, never read by rules.
	Shadow bool
	// Predictions is the number of this version's predictions in the
	// window; WindowPredictions counts all versions' served predictions.
	Predictions       int
	WindowPredictions int
	// Majority reports that this version made most of the window's
	// predictions: rules are evaluated on its metrics.
	Majority bool
	// Evaluated reports that the version had at least MinCount
	// predictions, so its metrics were computed.
	Evaluated bool
	// Reference names the profile the drift metrics compare against.
	Reference string
	// Metrics are the records published for this report.
	Metrics []schemas.MonitorMetric
	// Err says why metrics that should have been computed were not (no
	// reference profile for the version).
	Err error
}

// hooks dispatches to the hooks implementing each interface.
type hooks []Hook

func (hs hooks) windowClosed(r WindowReport) {
	for _, h := range hs {
		if h, ok := h.(HookWindowClosed); ok {
			h.OnWindowClosed(r)
		}
	}
}

func (hs hooks) windowLabelled(r WindowReport) {
	for _, h := range hs {
		if h, ok := h.(HookWindowLabelled); ok {
			h.OnWindowLabelled(r)
		}
	}
}

func (hs hooks) alertChanged(a schemas.Alert) {
	for _, h := range hs {
		if h, ok := h.(HookAlertChanged); ok {
			h.OnAlertChanged(a)
		}
	}
}

func (hs hooks) recordConsumed(k RecordKind, o Outcome) {
	for _, h := range hs {
		if h, ok := h.(HookRecordConsumed); ok {
			h.OnRecordConsumed(k, o)
		}
	}
}

// LogHook writes a readable timeline of a monitor to a slog.Logger: one
// line per closed or labelled window version at Info (Warn when metrics
// could not be computed), one per alert change at Warn.
type LogHook struct{ Logger *slog.Logger }

var (
	_ HookWindowClosed   = LogHook{}
	_ HookWindowLabelled = LogHook{}
	_ HookAlertChanged   = LogHook{}
)

// OnWindowClosed implements HookWindowClosed.
func (h LogHook) OnWindowClosed(r WindowReport) {
	attrs := h.window(r)
	var maxPSI float64
	var maxFeature string
	for _, m := range r.Metrics {
		if m.Metric != MetricPSI {
			continue
		}
		if m.Feature == "score" {
			attrs = append(attrs, slog.Float64("psi_score", round4(m.Value)))
		} else if m.Value >= maxPSI {
			maxPSI, maxFeature = m.Value, m.Feature
		}
	}
	if maxFeature != "" {
		attrs = append(attrs, slog.String("psi_max_feature", maxFeature), slog.Float64("psi_max", round4(maxPSI)))
	}
	if r.Reference != "" {
		attrs = append(attrs, slog.String("reference", r.Reference))
	}
	level := slog.LevelInfo
	if r.Err != nil {
		level = slog.LevelWarn
		attrs = append(attrs, slog.Any("err", r.Err))
	}
	h.Logger.LogAttrs(context.Background(), level, "monitor window closed", attrs...)
}

// OnWindowLabelled implements HookWindowLabelled.
func (h LogHook) OnWindowLabelled(r WindowReport) {
	attrs := h.window(r)
	for _, m := range r.Metrics {
		switch m.Metric {
		case MetricLabels:
			attrs = append(attrs, slog.Int64("labelled", int64(m.Value)))
		case MetricAUC:
			attrs = append(attrs, slog.Float64("auc", round4(m.Value)))
		}
	}
	h.Logger.LogAttrs(context.Background(), slog.LevelInfo, "monitor window labelled", attrs...)
}

// OnAlertChanged implements HookAlertChanged.
func (h LogHook) OnAlertChanged(a schemas.Alert) {
	h.Logger.LogAttrs(context.Background(), slog.LevelWarn, "monitor alert "+a.State,
		slog.String("monitor", a.Monitor), slog.String("rule", a.Rule),
		slog.String("model", a.ModelName), slog.Int("version", int(a.ModelVersion)),
		slog.String("metric", a.Metric), slog.String("feature", a.Feature),
		slog.Float64("value", round4(a.Value)), slog.Float64("threshold", a.Threshold),
		slog.Int("windows", int(a.Windows)),
		slog.Time("since", time.UnixMilli(a.Since).UTC()), slog.Time("at", time.UnixMilli(a.At).UTC()),
		slog.String("reference", a.Reference))
}

func (h LogHook) window(r WindowReport) []slog.Attr {
	return []slog.Attr{
		slog.String("monitor", r.Monitor), slog.String("model", r.Model), slog.Int("version", int(r.Version)),
		slog.Time("start", r.Start.UTC()), slog.Time("end", r.End.UTC()),
		slog.Int("predictions", r.Predictions), slog.Bool("majority", r.Majority), slog.Bool("evaluated", r.Evaluated),
	}
}

func round4(x float64) float64 { return math.Round(x*1e4) / 1e4 }
