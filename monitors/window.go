package monitors

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/monitors/metric"
	"github.com/weirhq/weir/monitors/profile"
	"github.com/weirhq/weir/schemas"
)

// Metric names on the metrics topic (MonitorMetric.Metric).
const (
	// MetricCount is a version's predictions in a window (value and count);
	// feature "". Published for every version of every closed window.
	MetricCount = "count"
	// MetricPSI is the PSI of a feature, or of the score (feature "score"),
	// against the version's reference profile; count is the observations.
	MetricPSI = "psi"
	// MetricLabels is the number of labelled predictions (value) out of the
	// version's predictions (count), at the end of the label wait.
	MetricLabels = "labels"
	// MetricAUC is the ROC AUC over the labelled predictions (count);
	// published only when both classes were labelled.
	MetricAUC = "auc"
)

// maxEarlyLabels caps the labels held before their predictions; more are
// dropped as unmatched. A label consumer far ahead of the prediction
// consumer cannot grow memory beyond it.
const maxEarlyLabels = 1 << 18

// evaluator is the pure core of a monitor: it assigns predictions to
// tumbling event-time windows, joins labels, computes metrics when windows
// close and evaluates rules. It does no I/O besides Profiles, and is owned
// by one goroutine.
//
// Time is the watermark: the largest prediction event time seen. A window
// [start, end) closes when the watermark passes end+Grace; its predictions
// (id -> score) are then kept, for evaluated versions only, until the
// watermark passes end+Grace+LabelWait, when AUC is computed and the window
// is dropped. So at most ceil((Window+Grace+LabelWait)/Window)+1 windows are
// held, of which only those not yet closed hold histogram counters; memory is
// bounded by the predictions in those windows (an id, a score and a label
// each) plus at most maxEarlyLabels labels that came before their
// predictions.
type evaluator struct {
	monitor  string
	model    string
	features []string       // model features, in vector order
	featIdx  map[string]int // feature name -> index in features
	minCount int
	window   int64 // ms
	grace    int64
	wait     int64

	profiles Profiles
	profs    map[int32]*profile.Profile // reference profiles, by version
	hooks    hooks

	// wm is the watermark: the least, over the predictions topic's
	// partitions, of the largest prediction event time seen on each (Unix
	// ms); seen reports whether every partition has been seen, so wm is set.
	wm      int64
	seen    bool
	parts   int             // partitions of the predictions topic (0: those seen)
	partMax map[int32]int64 // largest event time seen, by source partition
	windows map[int64]*window

	early int // labels held before their predictions, in all windows

	psiRules, aucRules []*ruleState

	out output
}

// output is what the evaluator has to publish.
type output struct {
	metrics []schemas.MonitorMetric
	alerts  []schemas.Alert
}

// window is one tumbling window.
type window struct {
	start, end int64
	closed     bool
	total      int
	versions   []*versionWindow
	maj        *versionWindow  // after close: the evaluated majority version, or nil
	early      map[string]bool // labels before their prediction: id -> is_fraud
}

// versionWindow is one model version's predictions in a window.
type versionWindow struct {
	version   int32
	shadow    bool // a shadow arm's predictions of this version
	n         int
	ref       string // what drift is measured against
	err       error  // why a metric cannot be computed
	score     *profile.Counter
	feats     []*profile.Counter // by feature index; nil when not in the profile
	ids       map[string]int32   // prediction id -> index in scores and labels
	scores    []float64
	labels    []int8 // labelNone, labelNegative, labelPositive
	evaluated bool
}

const (
	labelNone int8 = iota
	labelNegative
	labelPositive
)

func newEvaluator(mon config.Monitor, model config.Model, profiles Profiles, hs hooks, parts int) *evaluator {
	e := &evaluator{
		parts:    parts,
		partMax:  map[int32]int64{},
		monitor:  mon.Name,
		model:    model.Name,
		features: model.Features,
		featIdx:  make(map[string]int, len(model.Features)),
		minCount: max(mon.MinCount, 1),
		window:   mon.Window.D().Milliseconds(),
		grace:    mon.Grace.D().Milliseconds(),
		wait:     mon.LabelWait.D().Milliseconds(),
		profiles: profiles,
		profs:    map[int32]*profile.Profile{},
		hooks:    hs,
		windows:  map[int64]*window{},
	}
	for i, f := range model.Features {
		e.featIdx[f] = i
	}
	for _, r := range mon.Rules {
		s := &ruleState{rule: r}
		if r.Metric == MetricAUC {
			e.aucRules = append(e.aucRules, s)
		} else {
			e.psiRules = append(e.psiRules, s)
		}
	}
	return e
}

// take returns and clears the records to publish.
func (e *evaluator) take() output {
	o := e.out
	e.out = output{}
	return o
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// closedAt reports whether a window ending at end has closed.
func (e *evaluator) closedAt(end int64) bool { return e.seen && e.wm > end+e.grace }

// addPrediction counts p in its window (a shadow prediction in its
// version's shadow window), then closes the windows that the new watermark
// passes. The only error is the context's.
func (e *evaluator) addPrediction(ctx context.Context, p *schemas.Prediction) error {
	start := floorDiv(p.EventTime, e.window) * e.window
	if e.closedAt(start + e.window) {
		e.hooks.recordConsumed(KindPrediction, OutcomeLate)
		return nil
	}
	w := e.windows[start]
	if w == nil {
		w = &window{start: start, end: start + e.window}
		e.windows[start] = w
	}
	vw := w.version(p.ModelVersion, p.Shadow)
	if vw == nil {
		var err error
		if vw, err = e.newVersionWindow(ctx, p.ModelVersion); err != nil {
			return err
		}
		vw.shadow = p.Shadow
		w.versions = append(w.versions, vw)
	}
	vw.add(p, e.featIdx)
	if p.Shadow {
		// A shadow arm's prediction was logged, not served: it is windowed
		// apart (its own metrics, marked shadow) and not counted in the
		// window's served predictions. Its event's label may have been
		// joined to the served prediction already (it comes first).
		if fraud, ok := w.early[p.PredictionID]; ok {
			vw.label(p.PredictionID, fraud) // the served prediction takes it
		} else if fraud, ok := w.servedLabel(p.PredictionID); ok {
			vw.label(p.PredictionID, fraud)
		}
		e.hooks.recordConsumed(KindPrediction, OutcomeShadow)
	} else {
		w.total++
		if fraud, ok := w.early[p.PredictionID]; ok {
			w.join(p.PredictionID, fraud)
			delete(w.early, p.PredictionID)
			e.early--
			e.hooks.recordConsumed(KindLabel, OutcomeJoined)
		}
		e.hooks.recordConsumed(KindPrediction, OutcomeWindowed)
	}
	if m, ok := e.partMax[p.SourcePartition]; !ok || p.EventTime > m {
		e.partMax[p.SourcePartition] = p.EventTime
		if len(e.partMax) >= max(e.parts, 1) {
			wm := int64(math.MaxInt64)
			for _, m := range e.partMax {
				wm = min(wm, m)
			}
			if !e.seen || wm > e.wm {
				e.wm, e.seen = wm, true
				e.advance()
			}
		}
	}
	return nil
}

// addLabel joins l to its prediction, or holds it in its window until the
// prediction comes, or drops it.
func (e *evaluator) addLabel(l *schemas.Label) {
	start := floorDiv(l.EventTime, e.window) * e.window
	if w := e.windows[start]; w != nil && w.join(l.TxnID, l.IsFraud) {
		e.hooks.recordConsumed(KindLabel, OutcomeJoined)
		return
	}
	// The label's event time should be its prediction's; look in the other
	// held windows in case the two clocks disagree.
	for s, w := range e.windows {
		if s != start && w.join(l.TxnID, l.IsFraud) {
			e.hooks.recordConsumed(KindLabel, OutcomeJoined)
			return
		}
	}
	if e.closedAt(start + e.window) {
		e.hooks.recordConsumed(KindLabel, OutcomeUnmatched)
		return
	}
	w := e.windows[start]
	if w == nil {
		w = &window{start: start, end: start + e.window}
		e.windows[start] = w
	}
	if e.early >= maxEarlyLabels {
		e.hooks.recordConsumed(KindLabel, OutcomeUnmatched)
		return
	}
	if w.early == nil {
		w.early = map[string]bool{}
	}
	if _, dup := w.early[l.TxnID]; !dup {
		e.early++
	}
	w.early[l.TxnID] = l.IsFraud // counted when joined or when w closes
}

// advance closes the windows the watermark passed and ends the label wait
// of those it passed by LabelWait, oldest first.
func (e *evaluator) advance() {
	for _, start := range slices.Sorted(maps.Keys(e.windows)) {
		w := e.windows[start]
		if !w.closed && e.closedAt(w.end) {
			e.close(w)
		}
		if w.closed && e.wm > w.end+e.grace+e.wait {
			e.labelled(w)
			delete(e.windows, start)
		} else if w.closed && len(w.versions) == 0 {
			delete(e.windows, start)
		}
	}
}

func (w *window) version(v int32, shadow bool) *versionWindow {
	for _, vw := range w.versions {
		if vw.version == v && vw.shadow == shadow {
			return vw
		}
	}
	return nil
}

// join labels every prediction id that w holds (the served one and any
// shadow ones of the same event).
func (w *window) join(id string, fraud bool) bool {
	joined := false
	for _, vw := range w.versions {
		if vw.label(id, fraud) {
			joined = true
		}
	}
	return joined
}

// servedLabel is the label already joined to the served prediction id.
func (w *window) servedLabel(id string) (fraud, ok bool) {
	for _, vw := range w.versions {
		if i, has := vw.ids[id]; has && !vw.shadow && vw.labels[i] != labelNone {
			return vw.labels[i] == labelPositive, true
		}
	}
	return false, false
}

// majority is the served version with most predictions (the newer on a
// tie); shadow predictions are never the majority.
func (w *window) majority() *versionWindow {
	var m *versionWindow
	for _, vw := range w.versions {
		if vw.shadow {
			continue
		}
		if m == nil || vw.n > m.n || vw.n == m.n && vw.version > m.version {
			m = vw
		}
	}
	return m
}

func (e *evaluator) newVersionWindow(ctx context.Context, version int32) (*versionWindow, error) {
	vw := &versionWindow{version: version, ids: map[string]int32{}}
	prof, err := e.profile(ctx, version)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		vw.err = err
		return vw, nil
	}
	vw.ref = fmt.Sprintf("model %s v%d training profile (%d rows)", e.model, version, prof.Rows)
	var missing []string
	if h, ok := prof.Features[profile.ScoreName]; ok {
		vw.score = h.NewCounter()
	} else {
		missing = append(missing, profile.ScoreName)
	}
	vw.feats = make([]*profile.Counter, len(e.features))
	for i, f := range e.features {
		if h, ok := prof.Features[f]; ok {
			vw.feats[i] = h.NewCounter()
		} else {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		vw.err = fmt.Errorf("monitors: %s has no histogram of %v: no PSI for them", vw.ref, missing)
	}
	return vw, nil
}

// profile returns the reference of a version, fetching it on first use.
// Failures are not cached: the next window of the version asks again.
func (e *evaluator) profile(ctx context.Context, version int32) (*profile.Profile, error) {
	if p, ok := e.profs[version]; ok {
		return p, nil
	}
	p, err := e.profiles.Profile(ctx, e.model, version)
	if err == nil && p == nil {
		err = errors.New("no profile")
	}
	if err != nil {
		return nil, fmt.Errorf("monitors: reference profile of model %s v%d: %w", e.model, version, err)
	}
	e.profs[version] = p
	return p, nil
}

func (vw *versionWindow) add(p *schemas.Prediction, featIdx map[string]int) {
	vw.n++
	if vw.score != nil {
		vw.score.Add(p.Score)
	}
	if vw.feats != nil {
		for _, f := range p.Features {
			if i, ok := featIdx[f.Name]; ok && vw.feats[i] != nil {
				vw.feats[i].Add(f.Value)
			}
		}
	}
	if _, dup := vw.ids[p.PredictionID]; !dup {
		vw.ids[p.PredictionID] = int32(len(vw.scores))
		vw.scores = append(vw.scores, p.Score)
		vw.labels = append(vw.labels, labelNone)
	}
}

// label sets the label of prediction id if vw holds it.
func (vw *versionWindow) label(id string, fraud bool) bool {
	i, ok := vw.ids[id]
	if !ok {
		return false
	}
	vw.labels[i] = labelNegative
	if fraud {
		vw.labels[i] = labelPositive
	}
	return true
}

func (e *evaluator) metric(vw *versionWindow, w *window, name, feature string, value float64, count int) schemas.MonitorMetric {
	return schemas.MonitorMetric{
		Monitor: e.monitor, ModelName: e.model, ModelVersion: vw.version,
		Metric: name, Feature: feature,
		WindowStart: w.start, WindowEnd: w.end,
		Value: value, Count: int64(count), Shadow: vw.shadow,
	}
}

func (e *evaluator) report(vw *versionWindow, w *window, majority bool) WindowReport {
	return WindowReport{
		Monitor: e.monitor, Model: e.model, Version: vw.version,
		Start: time.UnixMilli(w.start), End: time.UnixMilli(w.end),
		Predictions: vw.n, WindowPredictions: w.total,
		Majority: majority, Evaluated: vw.evaluated, Shadow: vw.shadow,
		Reference: vw.ref,
	}
}

// close computes each version's count and, for versions with at least
// MinCount predictions, drift; evaluates the PSI rules on the majority
// version; and keeps only evaluated versions for the label join.
func (e *evaluator) close(w *window) {
	w.closed = true
	for range w.early {
		e.hooks.recordConsumed(KindLabel, OutcomeUnmatched)
	}
	e.early -= len(w.early)
	w.early = nil
	maj := w.majority()
	slices.SortFunc(w.versions, func(a, b *versionWindow) int {
		if c := cmp.Compare(a.version, b.version); c != 0 {
			return c
		}
		return cmp.Compare(btoi(a.shadow), btoi(b.shadow))
	})
	kept := w.versions[:0]
	var psi map[string]float64 // the majority's, by feature
	for _, vw := range w.versions {
		vw.evaluated = vw.n >= e.minCount
		r := e.report(vw, w, vw == maj)
		first := len(e.out.metrics)
		e.out.metrics = append(e.out.metrics, e.metric(vw, w, MetricCount, "", float64(vw.n), vw.n))
		if vw.evaluated {
			r.Err = vw.err
			if vw == maj {
				psi = map[string]float64{}
			}
			add := func(feature string, c *profile.Counter) {
				if c == nil {
					return
				}
				v := c.PSI()
				e.out.metrics = append(e.out.metrics, e.metric(vw, w, MetricPSI, feature, v, c.N()))
				if vw == maj {
					psi[feature] = v
				}
			}
			add(profile.ScoreName, vw.score)
			for i, f := range e.features {
				if vw.feats != nil {
					add(f, vw.feats[i])
				}
			}
			kept = append(kept, vw)
		}
		vw.score, vw.feats = nil, nil
		r.Metrics = e.out.metrics[first:len(e.out.metrics):len(e.out.metrics)]
		e.hooks.windowClosed(r)
	}
	clear(w.versions[len(kept):])
	w.versions = kept
	if maj != nil && maj.evaluated {
		w.maj = maj
	}
	if psi == nil {
		return
	}
	for _, s := range e.psiRules {
		v, ok := psi[s.rule.Feature]
		if !ok {
			continue
		}
		if s.observe(v, w.start) {
			e.alert(s.alert(e.monitor, e.model, maj.version, v, w.end, maj.ref))
		}
	}
}

// labelled computes each kept version's label count and AUC and evaluates
// the AUC rules on the majority version.
func (e *evaluator) labelled(w *window) {
	for _, vw := range w.versions {
		var scores []float64
		var pos []bool
		for i, l := range vw.labels {
			if l != labelNone {
				scores = append(scores, vw.scores[i])
				pos = append(pos, l == labelPositive)
			}
		}
		r := e.report(vw, w, vw == w.maj)
		r.Reference = fmt.Sprintf("delayed labels of %d of %d predictions", len(scores), vw.n)
		first := len(e.out.metrics)
		e.out.metrics = append(e.out.metrics, e.metric(vw, w, MetricLabels, "", float64(len(scores)), vw.n))
		auc := metric.AUC(scores, pos)
		if auc == auc { // defined: both classes labelled
			e.out.metrics = append(e.out.metrics, e.metric(vw, w, MetricAUC, "", auc, len(scores)))
			if vw == w.maj {
				for _, s := range e.aucRules {
					if s.observe(auc, w.start) {
						e.alert(s.alert(e.monitor, e.model, vw.version, auc, w.end, r.Reference))
					}
				}
			}
		}
		r.Metrics = e.out.metrics[first:len(e.out.metrics):len(e.out.metrics)]
		e.hooks.windowLabelled(r)
		vw.ids, vw.scores, vw.labels = nil, nil, nil
	}
}

func (e *evaluator) alert(a schemas.Alert) {
	e.hooks.alertChanged(a)
	e.out.alerts = append(e.out.alerts, a)
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
