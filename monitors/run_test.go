package monitors_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/monitors"
	"github.com/weirhq/weir/monitors/metric"
	"github.com/weirhq/weir/monitors/profile"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/schemas/registry"
)

const (
	amountFeature = "card_activity.amount_last"
	perWindow     = 300
	windows       = 6
)

var topics = monitors.Topics{
	Predictions: "weir.predictions.fraud",
	Labels:      "payments.labels",
	Metrics:     "weir.monitor.metrics",
	Alerts:      "weir.alerts",
}

// t0 is the start of the first window: a whole minute.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli()

// startRegistry serves an in-memory schema registry until the test ends.
func startRegistry(t *testing.T) schemas.SRClient {
	t.Helper()
	s, err := registry.Open("")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	reg, err := schemas.NewSRClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

type staticProfiles map[int32]*profile.Profile

func (s staticProfiles) Profile(_ context.Context, model string, v int32) (*profile.Profile, error) {
	if p, ok := s[v]; ok && model == "fraud" {
		return p, nil
	}
	return nil, fmt.Errorf("no profile of %s v%d", model, v)
}

// consumed counts outcomes and wakes a waiter when a count is reached.
type consumed struct {
	mu     sync.Mutex
	counts map[string]int
	wake   chan struct{}
}

func (c *consumed) OnRecordConsumed(k monitors.RecordKind, o monitors.Outcome) {
	c.mu.Lock()
	c.counts[string(k)+"/"+string(o)]++
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// await blocks until every named count reaches its value.
func (c *consumed) await(ctx context.Context, t *testing.T, want map[string]int) {
	t.Helper()
	for {
		c.mu.Lock()
		done := true
		for k, n := range want {
			done = done && c.counts[k] >= n
		}
		snapshot := fmt.Sprint(c.counts)
		c.mu.Unlock()
		if done {
			return
		}
		select {
		case <-c.wake:
		case <-ctx.Done():
			t.Fatalf("consumed %s, waiting for %v: %v", snapshot, want, ctx.Err())
		}
	}
}

// draw returns a score and an amount: like the training data, or shifted
// (riskier scores, three times the amounts).
func draw(r *rand.Rand, shifted bool) (score, amount float64) {
	z, a := r.NormFloat64()-1.5, math.Exp(r.NormFloat64()*0.5+4)
	if shifted {
		z, a = z+1.2, a*3
	}
	return 1 / (1 + math.Exp(-z)), a
}

// topicReader reads the monitor's output topics from the start.
type topicReader struct {
	cl      *kgo.Client
	metric  *schemas.Serde
	alert   *schemas.Serde
	metrics []schemas.MonitorMetric
	alerts  []schemas.Alert
}

// until polls until ok() holds.
func (tr *topicReader) until(ctx context.Context, t *testing.T, what string, ok func() bool) {
	t.Helper()
	for !ok() {
		fs := tr.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("waiting for %s: %v; have %d metrics, alerts %+v", what, ctx.Err(), len(tr.metrics), tr.alerts)
		}
		fs.EachRecord(func(r *kgo.Record) {
			switch r.Topic {
			case topics.Metrics:
				var m schemas.MonitorMetric
				if err := tr.metric.Decode(ctx, r.Value, &m); err != nil {
					t.Fatalf("decode metric: %v", err)
				}
				tr.metrics = append(tr.metrics, m)
			case topics.Alerts:
				var a schemas.Alert
				if err := tr.alert.Decode(ctx, r.Value, &a); err != nil {
					t.Fatalf("decode alert: %v", err)
				}
				tr.alerts = append(tr.alerts, a)
			}
		})
	}
}

func (tr *topicReader) find(name, feature string, start int64) []schemas.MonitorMetric {
	var out []schemas.MonitorMetric
	for _, m := range tr.metrics {
		if m.Metric == name && m.Feature == feature && m.WindowStart == start {
			out = append(out, m)
		}
	}
	return out
}

// TestMonitorOnKafka runs a monitor on kfake over six windows of
// predictions, the first three drawn like the reference profile and the
// last three shifted, with every prediction labelled.
func TestMonitorOnKafka(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1),
		kfake.SeedTopics(4, topics.Predictions, topics.Labels),
		kfake.SeedTopics(1, topics.Metrics, topics.Alerts))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	seeds := kgo.SeedBrokers(cluster.ListenAddrs()...)
	reg := startRegistry(t)

	r := rand.New(rand.NewPCG(42, 1))
	var refScores, refAmounts []float64
	for range 20000 {
		s, a := draw(r, false)
		refScores, refAmounts = append(refScores, s), append(refAmounts, a)
	}
	ref := &profile.Profile{Rows: 20000, Features: map[string]profile.Histogram{
		profile.ScoreName: profile.Build(refScores, 10),
		amountFeature:     profile.Build(refAmounts, 10),
	}}

	minute := time.Minute.Milliseconds()
	mon := config.Monitor{
		Name: "fraud-drift", Model: "fraud",
		// Grace and LabelWait are long against the six minutes of data, so
		// that the test decides when windows close by the event times it
		// produces, whatever order the partitions are read in.
		Window: config.Duration(time.Minute), Grace: config.Duration(10 * time.Minute),
		LabelWait: config.Duration(10 * time.Minute), MinCount: 200,
		Rules: []config.Rule{
			{Name: "score_drift", Metric: "psi", Feature: "score", Op: ">", Threshold: 0.2, For: 2},
			{Name: "auc_low", Metric: "auc", Op: "<", Threshold: 0.5, For: 2},
		},
	}
	promReg := prometheus.NewRegistry()
	counts := &consumed{counts: map[string]int{}, wake: make(chan struct{}, 1)}
	m, err := monitors.New(monitors.Options{
		Monitor: mon, Model: config.Model{Name: "fraud", Features: []string{amountFeature}},
		Topics: topics, Kafka: []kgo.Opt{seeds}, Group: "monitor-fraud-drift",
		Registry: reg, Profiles: staticProfiles{1: ref},
		Logger:     slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		Registerer: promReg, Hooks: []monitors.Hook{counts},
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- m.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	// The scorer's side: predictions and labels in transactions.
	prod, err := kgo.NewClient(seeds, kgo.TransactionalID("test-scorer"), kgo.DefaultProduceTopic(topics.Predictions))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	predSerde, err := schemas.NewSerde(ctx, reg, schemas.Subject(topics.Predictions), schemas.MustParse(schemas.PredictionSchema))
	if err != nil {
		t.Fatal(err)
	}
	labelSerde, err := schemas.NewSerde(ctx, reg, schemas.Subject(topics.Labels), schemas.MustParse(schemas.LabelSchema))
	if err != nil {
		t.Fatal(err)
	}
	txn := func(commit bool, recs []*kgo.Record) {
		t.Helper()
		if err := prod.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := prod.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	prediction := func(id string, ms int64, score, amount float64) *kgo.Record {
		entity := fmt.Sprintf("card-%d", len(id)%7+int(ms%13))
		v, err := predSerde.Encode(&schemas.Prediction{
			PredictionID: id, Entity: entity, EventTime: ms, ScoredTime: ms, ModelName: "fraud", ModelVersion: 1,
			Score: score, Threshold: 0.5, Decision: score > 0.5,
			Features: []schemas.UsedFeature{{Name: amountFeature, Value: amount}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: topics.Predictions, Key: []byte(entity), Value: v}
	}

	// Phase 1: six windows of predictions, each labelled fraud with
	// probability = its score; and an aborted transaction of wild
	// predictions that read_committed must hide.
	wantAUC := make([]float64, windows)
	var preds, labels []*kgo.Record
	for w := range windows {
		var scores []float64
		var fraud []bool
		for i := range perWindow {
			id := fmt.Sprintf("txn-%d-%d", w, i)
			ms := t0 + int64(w)*minute + int64(i)*minute/perWindow
			s, a := draw(r, w >= 3)
			preds = append(preds, prediction(id, ms, s, a))
			isFraud := r.Float64() < s
			scores, fraud = append(scores, s), append(fraud, isFraud)
			v, err := labelSerde.Encode(&schemas.Label{TxnID: id, CardID: "c", EventTime: ms, LabelTime: ms + minute, IsFraud: isFraud})
			if err != nil {
				t.Fatal(err)
			}
			labels = append(labels, &kgo.Record{Topic: topics.Labels, Key: []byte("c"), Value: v})
		}
		wantAUC[w] = metric.AUC(scores, fraud)
	}
	var aborted []*kgo.Record
	for i := range 100 {
		aborted = append(aborted, prediction(fmt.Sprintf("aborted-%d", i), t0+minute+int64(i), 0.99, 1e6))
	}
	txn(false, aborted)
	txn(true, append(preds, &kgo.Record{Topic: topics.Predictions, Value: []byte("not avro")}))
	txn(true, labels)
	counts.await(ctx, t, map[string]int{
		"prediction/windowed":    windows * perWindow,
		"prediction/undecodable": 1,
		"label/joined":           windows * perWindow,
	})

	out, err := kgo.NewClient(seeds, kgo.ConsumeTopics(topics.Metrics, topics.Alerts), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	tr := &topicReader{cl: out, metric: must(schemas.NewSerde(ctx, reg, schemas.Subject(topics.Metrics), schemas.MustParse(schemas.MonitorMetricSchema))),
		alert: must(schemas.NewSerde(ctx, reg, schemas.Subject(topics.Alerts), schemas.MustParse(schemas.AlertSchema)))}
	windowStart := func(w int) int64 { return t0 + int64(w)*minute }

	// Phase 2: a prediction past the last window's end + grace closes all
	// six windows, but no label wait has ended.
	txn(true, []*kgo.Record{prediction("tail-1", windowStart(windows)+10*minute+1, 0.1, 50)})
	tr.until(ctx, t, "PSI of six windows", func() bool { return len(tr.find("psi", amountFeature, windowStart(windows-1))) > 0 })
	for w := range windows {
		c := tr.find("count", "", windowStart(w))
		if len(c) != 1 || c[0].Count != perWindow || c[0].WindowEnd != windowStart(w+1) || c[0].ModelVersion != 1 {
			t.Errorf("window %d: count metrics %+v, want one of %d (aborted predictions must not count)", w, c, perWindow)
		}
		for _, f := range []string{"score", amountFeature} {
			p := tr.find("psi", f, windowStart(w))
			if len(p) != 1 {
				t.Errorf("window %d: psi %s metrics %+v, want one", w, f, p)
				continue
			}
			if drifted := w >= 3; drifted != (p[0].Value > 0.2) {
				t.Errorf("window %d: psi %s = %.4f; drifted %v", w, f, p[0].Value, drifted)
			}
		}
	}
	for _, m := range tr.metrics {
		if m.Metric == "auc" || m.Metric == "labels" {
			t.Fatalf("performance metric before the label wait ended: %+v", m)
		}
	}
	tr.until(ctx, t, "FIRING alert", func() bool { return len(tr.alerts) > 0 })
	if a := tr.alerts[0]; len(tr.alerts) != 1 || a.State != schemas.AlertFiring || a.Rule != "score_drift" ||
		a.Since != windowStart(3) || a.At != windowStart(5) || a.Windows != 2 || a.ModelVersion != 1 ||
		a.Threshold != 0.2 || a.Value <= 0.2 || a.Reference != "model fraud v1 training profile (20000 rows)" {
		t.Fatalf("alerts %+v, want one FIRING of score_drift since window 3 at the end of window 4", tr.alerts)
	}

	// Phase 3: past the last window's label wait: AUC of every window.
	txn(true, []*kgo.Record{prediction("tail-2", windowStart(windows)+20*minute+1, 0.1, 50)})
	tr.until(ctx, t, "AUC of six windows", func() bool { return len(tr.find("auc", "", windowStart(windows-1))) > 0 })
	for w := range windows {
		a := tr.find("auc", "", windowStart(w))
		if len(a) != 1 || a[0].Value != wantAUC[w] || a[0].Count != perWindow {
			t.Errorf("window %d: auc %+v, want %v over %d", w, a, wantAUC[w], perWindow)
		}
		if l := tr.find("labels", "", windowStart(w)); len(l) != 1 || l[0].Value != perWindow || l[0].Count != perWindow {
			t.Errorf("window %d: labels %+v", w, l)
		}
	}
	if len(tr.alerts) != 1 {
		t.Fatalf("alerts %+v, want only the FIRING one", tr.alerts)
	}

	// /metrics
	srv := httptest.NewServer(promhttp.HandlerFor(promReg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	text := string(body)
	lastPSI := tr.find("psi", "score", windowStart(windows-1))[0].Value
	for _, want := range []string{
		fmt.Sprintf(`weir_monitor_psi{feature="score",model="fraud",monitor="fraud-drift",version="1"} %v`, lastPSI),
		`weir_monitor_psi{feature="card_activity.amount_last",model="fraud",monitor="fraud-drift",version="1"} `,
		fmt.Sprintf(`weir_monitor_auc{model="fraud",monitor="fraud-drift",version="1"} %v`, wantAUC[windows-1]),
		`weir_monitor_window_labels{model="fraud",monitor="fraud-drift",version="1"} 300`,
		// the latest closed window: tail-2 does not close tail-1's
		`weir_monitor_window_predictions{model="fraud",monitor="fraud-drift",version="1"} 300`,
		`weir_monitor_alerts_firing{monitor="fraud-drift",rule="score_drift"} 1`,
		`weir_monitor_alerts_firing{monitor="fraud-drift",rule="auc_low"} 0`,
		fmt.Sprintf(`weir_monitor_predictions_consumed_total{monitor="fraud-drift",outcome="windowed"} %d`, windows*perWindow+2),
		fmt.Sprintf(`weir_monitor_labels_consumed_total{monitor="fraud-drift",outcome="joined"} %d`, windows*perWindow),
		`weir_monitor_predictions_consumed_total{monitor="fraud-drift",outcome="undecodable"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", text)
	}
	if n, err := testutil.GatherAndCount(promReg, "weir_monitor_psi"); err != nil || n != 2 {
		t.Errorf("%d weir_monitor_psi series (%v), want 2", n, err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
