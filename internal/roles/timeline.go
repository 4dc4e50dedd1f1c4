package roles

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/monitors"
	"github.com/weirhq/weir/monitors/profile"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring/registry"
)

// Timeline prints what an on-call engineer would want to see as the pipeline
// runs: traffic and scoring progress every interval, and every alert,
// command and model registry change as it lands. It reads the topics like
// any other consumer (read_committed, no group).
type Timeline struct {
	env      *Env
	w        io.Writer
	start    time.Time
	interval time.Duration

	mu          sync.Mutex
	predictions map[int32]int64 // by model version
	lastVersion int32
	lastEvent   int64
}

// NewTimeline returns a timeline writing to w every interval.
func (e *Env) NewTimeline(w io.Writer, interval time.Duration) *Timeline {
	return &Timeline{env: e, w: w, start: time.Now(), interval: interval, predictions: map[int32]int64{}}
}

// Printf prints one timeline line, stamped with the time since start.
func (t *Timeline) Printf(format string, a ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	el := time.Since(t.start).Round(time.Second)
	fmt.Fprintf(t.w, "[%02d:%02d] %s\n", int(el.Minutes()), int(el.Seconds())%60, fmt.Sprintf(format, a...))
}

// Run blocks until ctx is done.
func (t *Timeline) Run(ctx context.Context) error {
	cfg := t.env.Cfg
	topics := []string{cfg.AlertsTopic(), cfg.CommandsTopic(), cfg.ModelsTopic()}
	for _, m := range cfg.Models {
		topics = append(topics, cfg.PredictionsTopic(m.Name))
	}
	cl, err := t.env.Client(kgo.ConsumeTopics(topics...), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()))
	if err != nil {
		return err
	}
	defer cl.Close()
	serde := func(topic, schema string) *schemas.Serde {
		s, err := t.env.Serde(ctx, topic, schema)
		if err != nil {
			t.Printf("timeline: %v", err)
		}
		return s
	}
	alerts := serde(cfg.AlertsTopic(), schemas.AlertSchema)
	commands := serde(cfg.CommandsTopic(), schemas.CommandSchema)
	models := serde(cfg.ModelsTopic(), schemas.ModelRecordSchema)
	preds := map[string]*schemas.Serde{}
	for _, m := range cfg.Models {
		preds[cfg.PredictionsTopic(m.Name)] = serde(cfg.PredictionsTopic(m.Name), schemas.PredictionSchema)
	}
	go t.ticker(ctx)
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachRecord(func(r *kgo.Record) {
			switch {
			case r.Topic == cfg.AlertsTopic():
				var a schemas.Alert
				if alerts.Decode(ctx, r.Value, &a) == nil {
					t.Printf("ALERT %s %s: %s of %s = %.3f (%s %.3f) for %d windows since %s, model %s v%d vs %s",
						a.Rule, a.State, a.Metric, a.Feature, a.Value, opOf(a), a.Threshold, a.Windows,
						time.UnixMilli(a.Since).UTC().Format("15:04:05"), a.ModelName, a.ModelVersion, a.Reference)
				}
			case r.Topic == cfg.CommandsTopic():
				var c schemas.Command
				if commands.Decode(ctx, r.Value, &c) == nil {
					t.Printf("COMMAND %s model %s (by %s): %s", c.Type, c.ModelName, c.RequestedBy, c.Reason)
				}
			case r.Topic == cfg.ModelsTopic():
				var m schemas.ModelRecord
				if len(r.Value) > 0 && models.Decode(ctx, r.Value, &m) == nil {
					if len(m.Aliases) == 0 {
						t.Printf("MODEL %s v%d holds no alias any more (created by %s)", m.Name, m.Version, m.CreatedBy)
						return
					}
					t.Printf("MODEL %s v%d %v by %s: %s (holdout AUC %.3f, sha256 %.12s…)", m.Name, m.Version, m.Aliases, m.CreatedBy, m.Reason, m.Metrics["holdout_auc"], m.SHA256)
					if mv, ok := registry.LastMove(m); ok && slices.Contains(m.Aliases, mv.Alias) {
						t.Printf("MOVE %s", mv)
					}
				}
			default:
				var p schemas.Prediction
				if s := preds[r.Topic]; s != nil && s.Decode(ctx, r.Value, &p) == nil {
					t.mu.Lock()
					t.predictions[p.ModelVersion]++
					first := p.ModelVersion > t.lastVersion && t.lastVersion != 0
					prev := t.lastVersion
					t.lastVersion = max(t.lastVersion, p.ModelVersion)
					t.lastEvent = max(t.lastEvent, p.EventTime)
					t.mu.Unlock()
					if first {
						t.Printf("SWAP scorer moved from %s v%d to v%d: first prediction %s at event time %s",
							p.ModelName, prev, p.ModelVersion, p.PredictionID, time.UnixMilli(p.EventTime).UTC().Format("15:04:05"))
					}
				}
			}
		})
	}
}

func opOf(a schemas.Alert) string {
	if a.State == schemas.AlertResolved {
		return "back within"
	}
	return "beyond"
}

func (t *Timeline) ticker(ctx context.Context) {
	tk := time.NewTicker(t.interval)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		t.mu.Lock()
		var total int64
		s := ""
		versions := make([]int32, 0, len(t.predictions))
		for v := range t.predictions {
			versions = append(versions, v)
		}
		slices.Sort(versions)
		for _, v := range versions {
			total += t.predictions[v]
			s += fmt.Sprintf(" v%d:%d", v, t.predictions[v])
		}
		last := t.lastEvent
		t.mu.Unlock()
		if total > 0 {
			t.Printf("traffic: %d predictions (by version%s), event time %s", total, s, time.UnixMilli(last).UTC().Format("15:04:05"))
		}
	}
}

// OnWindowClosed implements monitors.HookWindowClosed: one line per closed
// window with its drift against the reference.
func (t *Timeline) OnWindowClosed(r monitors.WindowReport) {
	if !r.Evaluated {
		return
	}
	var score float64
	worst, worstName := 0.0, ""
	for _, m := range r.Metrics {
		if m.Metric != monitors.MetricPSI {
			continue
		}
		if m.Feature == profile.ScoreName {
			score = m.Value
		} else if m.Value >= worst {
			worst, worstName = m.Value, m.Feature
		}
	}
	t.Printf("window %s-%s %s v%d%s: %d predictions, PSI score %.3f, worst feature %s %.3f",
		r.Start.UTC().Format("15:04"), r.End.UTC().Format("15:04"), r.Model, r.Version, shadowTag(r), r.Predictions, score, worstName, worst)
}

// OnWindowLabelled implements monitors.HookWindowLabelled: the window's
// AUC once its labels arrived.
func (t *Timeline) OnWindowLabelled(r monitors.WindowReport) {
	for _, m := range r.Metrics {
		if m.Metric == monitors.MetricAUC {
			t.Printf("labels for window %s-%s %s v%d%s: AUC %.3f", r.Start.UTC().Format("15:04"), r.End.UTC().Format("15:04"), r.Model, r.Version, shadowTag(r), m.Value)
		}
	}
}

// shadowTag marks a shadow arm's window in the timeline.
func shadowTag(r monitors.WindowReport) string {
	if r.Shadow {
		return " (shadow)"
	}
	return ""
}
