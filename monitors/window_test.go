package monitors

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/monitors/metric"
	"github.com/weirhq/weir/monitors/profile"
	"github.com/weirhq/weir/schemas"
)

// t0 is the start of a window (a whole minute, Unix ms).
const t0 = int64(1_700_000_040_000)

const feat = "card_activity.amount_last"

var errNoProfile = errors.New("no such version")

type fakeProfiles struct {
	profs map[int32]*profile.Profile
	calls int
}

func (f *fakeProfiles) Profile(_ context.Context, model string, v int32) (*profile.Profile, error) {
	f.calls++
	if p, ok := f.profs[v]; ok && model == "fraud" {
		return p, nil
	}
	return nil, errNoProfile
}

// halves is a reference with two equal bins split at edge.
func halves(edge float64) profile.Histogram {
	return profile.Histogram{Edges: []float64{edge}, Fractions: []float64{0.5, 0.5}, Count: 1000}
}

func testProfiles() *fakeProfiles {
	return &fakeProfiles{profs: map[int32]*profile.Profile{
		1: {Rows: 1000, Features: map[string]profile.Histogram{profile.ScoreName: halves(0.5), feat: halves(100)}},
		2: {Rows: 500, Features: map[string]profile.Histogram{profile.ScoreName: halves(0.2), feat: halves(100)}},
	}}
}

// recorder is a hook that keeps everything it is told.
type recorder struct {
	closed, labelled []WindowReport
	alerts           []schemas.Alert
	consumed         map[string]int
}

func (r *recorder) OnWindowClosed(w WindowReport) {
	w.Metrics = slices.Clone(w.Metrics)
	r.closed = append(r.closed, w)
}
func (r *recorder) OnWindowLabelled(w WindowReport) {
	w.Metrics = slices.Clone(w.Metrics)
	r.labelled = append(r.labelled, w)
}
func (r *recorder) OnAlertChanged(a schemas.Alert) { r.alerts = append(r.alerts, a) }
func (r *recorder) OnRecordConsumed(k RecordKind, o Outcome) {
	if r.consumed == nil {
		r.consumed = map[string]int{}
	}
	r.consumed[string(k)+"/"+string(o)]++
}

func testMonitor(rules ...config.Rule) config.Monitor {
	return config.Monitor{
		Name: "fraud-drift", Model: "fraud",
		Window: config.Duration(time.Minute), Grace: config.Duration(10 * time.Second),
		LabelWait: config.Duration(2 * time.Minute), MinCount: 10, Rules: rules,
	}
}

var testModel = config.Model{Name: "fraud", Features: []string{feat}}

func newTestEvaluator(t *testing.T, mon config.Monitor, p Profiles) (*evaluator, *recorder) {
	t.Helper()
	rec := &recorder{}
	return newEvaluator(mon, testModel, p, hooks{rec}, 1), rec
}

func pred(id string, ms int64, version int32, score, amount float64) *schemas.Prediction {
	return &schemas.Prediction{
		PredictionID: id, EventTime: ms, ModelName: "fraud", ModelVersion: version, Score: score,
		Features: []schemas.UsedFeature{{Name: feat, Value: amount}},
	}
}

// fill adds n predictions of version at event times t..t+n-1 ms; the first
// high of them score 0.9 and have amount 150, the rest 0.1 and 50.
func fill(t *testing.T, e *evaluator, prefix string, start int64, n, high int, version int32) {
	t.Helper()
	for i := range n {
		score, amount := 0.1, 50.0
		if i < high {
			score, amount = 0.9, 150
		}
		if err := e.addPrediction(context.Background(), pred(fmt.Sprintf("%s-%d", prefix, i), start+int64(i), version, score, amount)); err != nil {
			t.Fatal(err)
		}
	}
}

// watermark moves event time to ms with one prediction of version 1.
func watermark(t *testing.T, e *evaluator, ms int64) {
	t.Helper()
	if err := e.addPrediction(context.Background(), pred(fmt.Sprintf("wm-%d", ms), ms, 1, 0.1, 50)); err != nil {
		t.Fatal(err)
	}
}

func find(ms []schemas.MonitorMetric, name, feature string, version int32, start int64) (schemas.MonitorMetric, bool) {
	for _, m := range ms {
		if m.Metric == name && m.Feature == feature && m.ModelVersion == version && m.WindowStart == start {
			return m, true
		}
	}
	return schemas.MonitorMetric{}, false
}

// psiHalves is the PSI of observed fractions (1-p, p) against (0.5, 0.5).
func psiHalves(p float64) float64 {
	return (p-0.5)*math.Log(p/0.5) + (0.5-p)*math.Log((1-p)/0.5)
}

func TestWindowClosesAfterGrace(t *testing.T) {
	e, rec := newTestEvaluator(t, testMonitor(), testProfiles())
	fill(t, e, "a", t0, 20, 14, 1)
	end := t0 + time.Minute.Milliseconds()
	grace := 10 * time.Second.Milliseconds()
	watermark(t, e, end+grace) // at end+grace: still open
	if len(rec.closed) != 0 {
		t.Fatalf("closed at end+grace: %+v", rec.closed)
	}
	// a straggler within grace still counts
	if err := e.addPrediction(context.Background(), pred("straggler", end-1, 1, 0.9, 150)); err != nil {
		t.Fatal(err)
	}
	watermark(t, e, end+grace+1)
	if len(rec.closed) != 1 {
		t.Fatalf("%d windows closed, want 1", len(rec.closed))
	}
	out := e.take().metrics
	c, ok := find(out, MetricCount, "", 1, t0)
	if !ok || c.Count != 21 || c.Value != 21 || c.WindowEnd != end {
		t.Fatalf("count metric %+v (found %v), want 21 predictions", c, ok)
	}
	for _, f := range []string{profile.ScoreName, feat} {
		m, ok := find(out, MetricPSI, f, 1, t0)
		if want := psiHalves(15.0 / 21); !ok || math.Abs(m.Value-want) > 1e-12 || m.Count != 21 {
			t.Errorf("psi %s: %+v (found %v), want %v over 21", f, m, ok, want)
		}
	}
	// a prediction for the closed window is late
	if err := e.addPrediction(context.Background(), pred("late", t0+5, 1, 0.9, 150)); err != nil {
		t.Fatal(err)
	}
	if rec.consumed["prediction/late"] != 1 {
		t.Fatalf("consumed %v, want one late prediction", rec.consumed)
	}
	r := rec.closed[0]
	if !r.Evaluated || !r.Majority || r.Predictions != 21 || r.Reference != "model fraud v1 training profile (1000 rows)" || r.Err != nil {
		t.Fatalf("report %+v", r)
	}
}

func TestMinCount(t *testing.T) {
	rule := config.Rule{Name: "score_drift", Metric: "psi", Feature: "score", Op: ">", Threshold: 0, For: 1}
	e, rec := newTestEvaluator(t, testMonitor(rule), testProfiles())
	fill(t, e, "a", t0, 9, 9, 1) // one short of MinCount
	watermark(t, e, t0+10*time.Minute.Milliseconds())
	out := e.take()
	if _, ok := find(out.metrics, MetricCount, "", 1, t0); !ok {
		t.Fatalf("no count metric for a small window: %+v", out.metrics)
	}
	if _, ok := find(out.metrics, MetricPSI, "score", 1, t0); ok {
		t.Fatalf("PSI computed for a window below MinCount")
	}
	if len(out.alerts) != 0 || rec.closed[0].Evaluated {
		t.Fatalf("window below MinCount was evaluated: alerts %+v", out.alerts)
	}
	if len(rec.labelled) != 0 {
		t.Fatalf("window below MinCount waited for labels: %+v", rec.labelled)
	}
}

// TestVersions puts two versions in one window: each is measured against
// its own reference, and rules use the majority.
func TestVersions(t *testing.T) {
	rule := config.Rule{Name: "score_drift", Metric: "psi", Feature: "score", Op: ">", Threshold: 0.01, For: 1}
	e, rec := newTestEvaluator(t, testMonitor(rule), testProfiles())
	fill(t, e, "v1", t0, 30, 15, 1) // like v1's reference: PSI 0
	fill(t, e, "v2", t0+100, 20, 2, 2)
	fill(t, e, "v3", t0+200, 5, 5, 3) // too few, and no profile
	watermark(t, e, t0+2*time.Minute.Milliseconds())
	out := e.take()
	if m, _ := find(out.metrics, MetricPSI, "score", 1, t0); m.Value != 0 || m.Count != 30 {
		t.Errorf("v1 score psi %+v, want 0 over 30", m)
	}
	// v2: 2 of 20 scored 0.9 but its reference edge is 0.2, so 2/20 above.
	if m, _ := find(out.metrics, MetricPSI, "score", 2, t0); math.Abs(m.Value-psiHalves(0.1)) > 1e-12 || m.Count != 20 {
		t.Errorf("v2 score psi %+v, want %v", m, psiHalves(0.1))
	}
	if _, ok := find(out.metrics, MetricPSI, "score", 3, t0); ok {
		t.Errorf("v3 has PSI with 5 predictions and no profile")
	}
	if c, _ := find(out.metrics, MetricCount, "", 3, t0); c.Count != 5 {
		t.Errorf("v3 count %+v", c)
	}
	if len(out.alerts) != 0 {
		t.Errorf("rule fired on a minority version: %+v", out.alerts)
	}
	var majority []int32
	for _, r := range rec.closed {
		if r.Majority {
			majority = append(majority, r.Version)
		}
		if r.WindowPredictions != 55 {
			t.Errorf("v%d: window predictions %d, want 55", r.Version, r.WindowPredictions)
		}
	}
	if !slices.Equal(majority, []int32{1}) {
		t.Errorf("majority %v, want [1]", majority)
	}
}

// TestShadowPredictions: a shadow rollout logs a challenger's prediction
// after each served one, with the same id. The monitor windows the
// challenger's apart: the served version stays the window's majority with
// its own count, the shadow version's count, PSI and AUC are published
// marked shadow, rules never read them (its PSI is past the
// threshold), and each label, early or late, reaches both predictions of
// its event, counted once.
func TestShadowPredictions(t *testing.T) {
	rule := config.Rule{Name: "score_drift", Metric: "psi", Feature: "score", Op: ">", Threshold: 0.01, For: 1}
	e, rec := newTestEvaluator(t, testMonitor(rule), testProfiles())
	ctx := context.Background()
	minute := time.Minute.Milliseconds()
	const n = 30
	var servedScores, shadowScores []float64
	var pos []bool
	for i := range n {
		id := fmt.Sprintf("ev-%d", i)
		fraud := i%3 == 0
		if i < 5 { // labels before their predictions
			e.addLabel(&schemas.Label{TxnID: id, EventTime: t0 + int64(i), IsFraud: fraud})
		}
		served := 0.1 // like v1's reference (edge 0.5): PSI 0
		if i%2 == 0 {
			served = 0.9
		}
		if i >= 15 {
			served = 1 - served
		}
		if err := e.addPrediction(ctx, pred(id, t0+int64(i), 1, served, 50)); err != nil {
			t.Fatal(err)
		}
		shadow := float64(i%7)/7 + 0.01
		sp := pred(id, t0+int64(i), 2, shadow, 500)
		sp.Shadow = true
		if err := e.addPrediction(ctx, sp); err != nil {
			t.Fatal(err)
		}
		if i < 25 { // 5 stay unlabelled
			servedScores, shadowScores, pos = append(servedScores, served), append(shadowScores, shadow), append(pos, fraud)
		}
	}
	watermark(t, e, t0+2*minute)
	for i := 5; i < 25; i++ {
		e.addLabel(&schemas.Label{TxnID: fmt.Sprintf("ev-%d", i), EventTime: t0 + int64(i), IsFraud: i%3 == 0})
	}
	closed := e.take()
	metricOf := func(ms []schemas.MonitorMetric, name, feature string, version int32, shadow bool) (schemas.MonitorMetric, bool) {
		for _, m := range ms {
			if m.Metric == name && m.Feature == feature && m.ModelVersion == version && m.Shadow == shadow && m.WindowStart == t0 {
				return m, true
			}
		}
		return schemas.MonitorMetric{}, false
	}
	if c, _ := metricOf(closed.metrics, MetricCount, "", 1, false); c.Count != n {
		t.Errorf("served v1 count %+v, want %d", c, n)
	}
	if c, _ := metricOf(closed.metrics, MetricCount, "", 2, true); c.Count != n {
		t.Errorf("shadow v2 count %+v, want %d", c, n)
	}
	if _, ok := metricOf(closed.metrics, MetricCount, "", 2, false); ok {
		t.Error("v2 has a served count: its shadow predictions were counted as served")
	}
	if m, _ := metricOf(closed.metrics, MetricPSI, "score", 2, true); !(m.Value > 0.01) {
		t.Errorf("shadow v2 score PSI %+v, want past the rule's 0.01", m)
	}
	if len(closed.alerts) != 0 {
		t.Errorf("a rule read the shadow arm's metrics: %+v", closed.alerts)
	}
	for _, r := range rec.closed {
		if r.Start.UnixMilli() != t0 {
			continue
		}
		if r.WindowPredictions != n || r.Majority != (r.Version == 1) || r.Shadow != (r.Version == 2) {
			t.Errorf("closed window %+v: want %d served predictions, v1 the majority, v2 shadow", r, n)
		}
	}
	watermark(t, e, t0+4*minute)
	out := e.take()
	for _, c := range []struct {
		version int32
		shadow  bool
		scores  []float64
	}{{1, false, servedScores}, {2, true, shadowScores}} {
		want := metric.AUC(c.scores, pos)
		if m, ok := metricOf(out.metrics, MetricAUC, "", c.version, c.shadow); !ok || m.Value != want || m.Count != 25 {
			t.Errorf("v%d (shadow %v) AUC %+v (found %v), want %v over 25", c.version, c.shadow, m, ok, want)
		}
		if m, _ := metricOf(out.metrics, MetricLabels, "", c.version, c.shadow); m.Value != 25 || m.Count != n {
			t.Errorf("v%d (shadow %v) labels %+v, want 25 of %d", c.version, c.shadow, m, n)
		}
	}
	if got := rec.consumed["prediction/shadow"]; got != n {
		t.Errorf("shadow predictions consumed %d, want %d", got, n)
	}
	if got := rec.consumed["label/joined"]; got != 25 {
		t.Errorf("labels joined %d, want 25, each once (%v)", got, rec.consumed)
	}
}

func TestMissingProfile(t *testing.T) {
	rule := config.Rule{Name: "score_drift", Metric: "psi", Feature: "score", Op: ">", Threshold: -1, For: 1}
	p := testProfiles()
	e, rec := newTestEvaluator(t, testMonitor(rule), p)
	fill(t, e, "v9", t0, 20, 10, 9)
	fill(t, e, "v9b", t0+time.Minute.Milliseconds(), 20, 10, 9)
	watermark(t, e, t0+3*time.Minute.Milliseconds())
	out := e.take()
	if _, ok := find(out.metrics, MetricPSI, "score", 9, t0); ok {
		t.Fatal("PSI without a reference profile")
	}
	if len(out.alerts) != 0 {
		t.Fatalf("rule evaluated without a reference: %+v", out.alerts)
	}
	if r := rec.closed[0]; r.Version != 9 || !errors.Is(r.Err, errNoProfile) {
		t.Fatalf("report of v9: %+v", r)
	}
	// asked once per window of the version (failures are not cached),
	// and once for version 1 of the watermark prediction
	if p.calls != 3 {
		t.Fatalf("%d profile lookups, want 3", p.calls)
	}
}

// TestRuleFiresOnDrift feeds windows whose score drifts and recovers.
func TestRuleFiresOnDrift(t *testing.T) {
	rule := config.Rule{Name: "score_drift", Metric: "psi", Feature: "score", Op: ">", Threshold: 0.2, For: 2}
	e, _ := newTestEvaluator(t, testMonitor(rule), testProfiles())
	minute := time.Minute.Milliseconds()
	// high fraction per window: 0.5 holds no drift, 0.9 drifts (PSI ~0.88)
	highs := []int{50, 90, 50, 90, 90, 90, 50, 90, 50, 50, 50}
	for i, h := range highs {
		fill(t, e, fmt.Sprint(i), t0+int64(i)*minute, 100, h, 1)
	}
	watermark(t, e, t0+int64(len(highs)+1)*minute)
	out := e.take()
	type change struct {
		state         string
		since, at     int64
		windows       int32
		version       int32
		value, thresh float64
	}
	var got []change
	for _, a := range out.alerts {
		got = append(got, change{a.State, a.Since, a.At, a.Windows, a.ModelVersion, a.Value, a.Threshold})
		if a.Reference != "model fraud v1 training profile (1000 rows)" || a.Metric != "psi" || a.Feature != "score" {
			t.Errorf("alert %+v", a)
		}
	}
	w := func(i int) int64 { return t0 + int64(i)*minute }
	want := []change{
		{schemas.AlertFiring, w(3), w(5), 2, 1, psiHalves(0.9), 0.2},
		{schemas.AlertResolved, w(8), w(10), 2, 1, 0, 0.2},
	}
	if len(got) != len(want) {
		t.Fatalf("alerts %+v, want %+v", got, want)
	}
	for i := range got {
		if got[i].state != want[i].state || got[i].since != want[i].since || got[i].at != want[i].at ||
			got[i].windows != want[i].windows || math.Abs(got[i].value-want[i].value) > 1e-12 {
			t.Errorf("alert %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestLabels joins labels that come before and after their predictions and
// computes AUC when the label wait ends.
func TestLabels(t *testing.T) {
	rule := config.Rule{Name: "auc_low", Metric: "auc", Op: "<", Threshold: 0.9, For: 1}
	e, rec := newTestEvaluator(t, testMonitor(rule), testProfiles())
	minute := time.Minute.Milliseconds()
	ctx := context.Background()
	// window 0: 20 predictions with scores i/20; label i is fraud when i%3==0
	var scores []float64
	var pos []bool
	for i := range 20 {
		id := fmt.Sprintf("w0-%d", i)
		if i < 5 { // early labels
			e.addLabel(&schemas.Label{TxnID: id, EventTime: t0 + int64(i), IsFraud: i%3 == 0})
		}
		if err := e.addPrediction(ctx, pred(id, t0+int64(i), 1, float64(i%7)/7, 50)); err != nil {
			t.Fatal(err)
		}
		if i < 16 { // 4 stay unlabelled
			scores = append(scores, float64(i%7)/7)
			pos = append(pos, i%3 == 0)
		}
	}
	// window 1: every label of one class: AUC undefined
	fill(t, e, "w1", t0+minute, 10, 5, 1)
	watermark(t, e, t0+2*minute+11_000) // both closed, waiting for labels
	for i := 5; i < 16; i++ {
		e.addLabel(&schemas.Label{TxnID: fmt.Sprintf("w0-%d", i), EventTime: t0 + int64(i), IsFraud: i%3 == 0})
	}
	for i := range 10 {
		e.addLabel(&schemas.Label{TxnID: fmt.Sprintf("w1-%d", i), EventTime: t0 + minute + int64(i), IsFraud: false})
	}
	e.addLabel(&schemas.Label{TxnID: "nobody", EventTime: t0 + 3, IsFraud: true})
	e.take()
	if len(rec.labelled) != 0 {
		t.Fatal("AUC before the label wait ended")
	}
	// window 0's wait ends at end+grace+wait = t0+1m+10s+2m
	watermark(t, e, t0+3*minute+10_000)
	if len(rec.labelled) != 0 {
		t.Fatal("AUC at exactly the end of the label wait")
	}
	watermark(t, e, t0+3*minute+10_001)
	out := e.take()
	want := metric.AUC(scores, pos)
	if m, ok := find(out.metrics, MetricAUC, "", 1, t0); !ok || m.Value != want || m.Count != 16 {
		t.Fatalf("auc %+v (found %v), want %v over 16", m, ok, want)
	}
	if m, _ := find(out.metrics, MetricLabels, "", 1, t0); m.Value != 16 || m.Count != 20 {
		t.Fatalf("labels %+v, want 16 of 20", m)
	}
	if len(out.alerts) != 1 || out.alerts[0].State != schemas.AlertFiring || out.alerts[0].Value != want || out.alerts[0].Reference != "delayed labels of 16 of 20 predictions" {
		t.Fatalf("alerts %+v, want one FIRING at AUC %v", out.alerts, want)
	}
	watermark(t, e, t0+4*minute+10_001)
	out = e.take()
	if _, ok := find(out.metrics, MetricAUC, "", 1, t0+minute); ok {
		t.Fatal("AUC of a window with one class labelled")
	}
	if m, _ := find(out.metrics, MetricLabels, "", 1, t0+minute); m.Value != 10 {
		t.Fatalf("labels of window 1: %+v", m)
	}
	if len(out.alerts) != 0 {
		t.Fatalf("an undefined AUC changed the rule: %+v", out.alerts)
	}
	if got := rec.consumed["label/joined"]; got != 26 {
		t.Errorf("%d labels joined, want 26 (%v)", got, rec.consumed)
	}
	// a label for a window already dropped
	e.addLabel(&schemas.Label{TxnID: "w0-19", EventTime: t0 + 19})
	if got := rec.consumed["label/unmatched"]; got != 2 {
		t.Errorf("%d labels unmatched, want 2 (%v)", got, rec.consumed)
	}
}

// TestBoundedWindows streams an hour of predictions and checks that the
// windows held never exceed the documented bound and that dropped windows
// free their predictions.
func TestBoundedWindows(t *testing.T) {
	mon := testMonitor()
	e, _ := newTestEvaluator(t, mon, testProfiles())
	minute := time.Minute.Milliseconds()
	bound := int(math.Ceil(float64(mon.Grace+mon.LabelWait)/float64(mon.Window))) + 2
	for i := range 60 {
		fill(t, e, fmt.Sprint(i), t0+int64(i)*minute, 20, 5, 1)
		if len(e.windows) > bound {
			t.Fatalf("minute %d: %d windows held, bound %d", i, len(e.windows), bound)
		}
		held := 0
		for _, w := range e.windows {
			for _, vw := range w.versions {
				held += len(vw.ids)
			}
		}
		if held > bound*20 {
			t.Fatalf("minute %d: %d predictions held", i, held)
		}
	}
}

func TestEarlyLabelCap(t *testing.T) {
	e, rec := newTestEvaluator(t, testMonitor(), testProfiles())
	for i := range maxEarlyLabels + 3 {
		e.addLabel(&schemas.Label{TxnID: fmt.Sprint(i), EventTime: t0})
	}
	if e.early != maxEarlyLabels || rec.consumed["label/unmatched"] != 3 {
		t.Fatalf("held %d early labels, %v", e.early, rec.consumed)
	}
	watermark(t, e, t0+time.Hour.Milliseconds())
	if e.early != 0 || rec.consumed["label/unmatched"] != maxEarlyLabels+3 {
		t.Fatalf("after close: held %d early labels, %v", e.early, rec.consumed)
	}
}

// TestWatermarkIsLeastPartition checks that a partition read behind another
// (a catch-up) holds windows open: the watermark is the least of the
// partitions' newest times, so its predictions count instead of being late.
func TestWatermarkIsLeastPartition(t *testing.T) {
	rec := &recorder{}
	e := newEvaluator(testMonitor(), testModel, testProfiles(), hooks{rec}, 2)
	at := func(id string, part int32, ms int64) {
		t.Helper()
		p := pred(id, ms, 1, 0.1, 50)
		p.SourcePartition = part
		if err := e.addPrediction(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	end := t0 + time.Minute.Milliseconds()
	// Partition 0 runs ten minutes ahead; partition 1 has not been read.
	at("p0-early", 0, t0)
	at("p0-ahead", 0, t0+10*time.Minute.Milliseconds())
	if len(rec.closed) != 0 {
		t.Fatalf("a window closed before every partition was seen: %+v", rec.closed)
	}
	// Partition 1 catches up through the first window: nothing is late.
	for i := range 15 {
		at(fmt.Sprintf("p1-%d", i), 1, t0+int64(i))
	}
	if rec.consumed["prediction/late"] != 0 || len(rec.closed) != 0 {
		t.Fatalf("catch-up predictions dropped: consumed %v, closed %d", rec.consumed, len(rec.closed))
	}
	at("p1-past", 1, end+11*time.Second.Milliseconds())
	if len(rec.closed) != 1 || rec.closed[0].Predictions != 16 {
		t.Fatalf("closed %+v, want the first window with all 16 of its predictions", rec.closed)
	}
}
