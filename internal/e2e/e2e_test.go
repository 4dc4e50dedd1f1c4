package e2e

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/featurestore/offline"
	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/loadgen"
	"github.com/weirhq/weir/internal/roles"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/streams"
)

// TestEndToEnd runs the demo's pipeline on real Apache Kafka and on the
// embedded broker (kfake), with real Redis and ClickHouse.
func TestEndToEnd(t *testing.T) {
	for _, kind := range []string{"kafka", "kfake"} {
		t.Run(kind, func(t *testing.T) {
			var seeds []string
			if kind == "kafka" {
				seeds = testenv.RealKafka(t)
			} else {
				seeds = testenv.KFake(t)
			}
			runEndToEnd(t, seeds)
		})
	}
}

const (
	phase1   = 100_000 // transactions before and through the drift
	phase2   = 15_000  // transactions after the retrained model took over
	badEvery = 5_000
)

type pipeline struct {
	cfg    *config.Config
	env    *roles.Env
	gen    *loadgen.Generator
	cancel context.CancelFunc
	done   chan error
}

func runEndToEnd(t *testing.T, seeds []string) {
	ctx := context.Background()
	_, prefix := testenv.Redis(t)
	_, db := testenv.ClickHouse(t)

	cfg, err := config.Load("../../deploy/demo/weir.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	cfg.Kafka.Brokers = seeds
	cfg.Kafka.ClientID = testenv.Name("e2e")
	cfg.Topics.Prefix = testenv.Name("weir")
	cfg.Sources[0].Topic = testenv.Name("payments")
	cfg.Labels.Topic = testenv.Name("labels")
	cfg.Redis.Addr = testenv.RedisAddr(t)
	cfg.Redis.KeyPrefix = prefix
	cfg.ClickHouse.Addr = testenv.ClickHouseAddr(t)
	cfg.ClickHouse.Database = db
	cfg.Serve.Addr = "127.0.0.1:0"

	cfg.SchemaRegistry.URL = serveRegistry(t)
	env, err := roles.NewEnv(cfg, roleLog(t, 60), "e2e")
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	if err := env.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	models, err := env.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Bootstrap(ctx, models, 48000); err != nil {
		t.Fatal(err)
	}
	plan, err := env.Build(ctx, []string{"all"})
	if err != nil {
		t.Fatal(err)
	}
	defer plan.Close()
	rctx, cancel := context.WithCancel(ctx)
	p := &pipeline{cfg: cfg, env: env, cancel: cancel, done: make(chan error, 1)}
	go func() { p.done <- roles.RunAll(rctx, plan.Runners) }()
	defer p.stop(t)

	start := time.Now()
	driftAt := 4 * time.Minute
	p.gen = loadgen.New(loadgen.Config{Seed: 11, Start: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), EventsPerSecond: 200, DriftAt: driftAt})
	st1 := p.produce(t, phase1, badEvery)
	t.Logf("produced %d transactions (%d fraud), %d labels, %d bad records in %s", st1.Transactions, st1.Frauds, st1.Labels, st1.Bad, time.Since(start).Round(time.Millisecond))

	// The drift must raise an alert, the alert a retrain command, and the
	// command a new champion version.
	waitFor(t, 5*time.Minute, "a retrained champion", func() bool {
		l, ok := models.Champion("fraud")
		return ok && l.Record.Version >= 2
	})
	t.Logf("champion v2 after %s", time.Since(start).Round(time.Millisecond))
	alerts := p.decode(t, cfg.AlertsTopic(), schemas.AlertSchema, 1, func() any { return &schemas.Alert{} })
	first := alerts[0].(*schemas.Alert)
	if first.State != schemas.AlertFiring || first.ModelVersion != 1 {
		t.Fatalf("first alert %+v, want FIRING on v1", first)
	}
	driftStart := p.gen.Config().Start.Add(driftAt).UnixMilli()
	if first.Since < driftStart-time.Minute.Milliseconds() {
		t.Fatalf("alert %s since %s, before the drift at %s: a false alarm", first.Rule, time.UnixMilli(first.Since).UTC(), time.UnixMilli(driftStart).UTC())
	}
	cmds := p.decode(t, cfg.CommandsTopic(), schemas.CommandSchema, 1, func() any { return &schemas.Command{} })
	if c := cmds[0].(*schemas.Command); c.Type != schemas.CommandRetrain || !strings.Contains(c.Reason, first.Rule) {
		t.Fatalf("command %+v, want RETRAIN naming rule %s", c, first.Rule)
	}
	v2, _ := models.Get("fraud", 2)
	if v2.ParentVersion != 1 || v2.CreatedBy != "retrain" || v2.SHA256 == "" || !strings.Contains(v2.TrainingSet, "labels") {
		t.Fatalf("v2 record %+v", v2)
	}
	// A training set that paired labels with the wrong feature rows gives
	// a model no better than chance on its holdout.
	if auc := v2.Metrics["holdout_auc"]; !(auc > 0.75) {
		t.Fatalf("v2 holdout AUC %v: its training set is not point-in-time correct", auc)
	}
	t.Logf("v2 trained on %v rows, holdout AUC %.3f", v2.Metrics["train_rows"]+v2.Metrics["holdout_rows"], v2.Metrics["holdout_auc"])

	// Traffic after the swap is scored by v2.
	st2 := p.produce(t, phase2, 0)
	accepted := st1.Transactions + st2.Transactions
	preds := p.decode(t, cfg.PredictionsTopic("fraud"), schemas.PredictionSchema, accepted, func() any { return &schemas.Prediction{} })
	t.Logf("%d predictions after %s", len(preds), time.Since(start).Round(time.Millisecond))
	// Let the materializers drain before reading the stores.
	raw := p.records(t, cfg.Sources[0].Topic, accepted+st1.Bad)
	want := oracle(t, p, raw)
	p.waitStores(t, want, accepted)
	p.stop(t)

	checkPredictions(t, preds, want, st1, p)
	checkOffline(t, p, want)
	checkOnline(t, p, want)
	checkDeadLetters(t, p, st1.Bad)
}

func (p *pipeline) stop(t *testing.T) {
	if p.cancel == nil {
		return
	}
	p.cancel()
	p.cancel = nil
	if err := <-p.done; err != nil {
		t.Errorf("pipeline: %v", err)
	}
}

func (p *pipeline) produce(t *testing.T, n, bad int) loadgen.Stats {
	t.Helper()
	ctx := context.Background()
	src := p.cfg.Sources[0]
	txn, err := p.env.Serde(ctx, src.Topic, src.Schema)
	if err != nil {
		t.Fatal(err)
	}
	lab, err := p.env.Serde(ctx, p.cfg.Labels.Topic, p.cfg.Labels.Schema)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := p.env.Client(kgo.ProducerLinger(5 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	st, err := loadgen.Run(ctx, cl, p.gen, loadgen.RunConfig{TxnTopic: src.Topic, LabelTopic: p.cfg.Labels.Topic, Txn: txn, Label: lab, Count: n, BadEvery: bad}, p.env.Log)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// records reads topic from the start with read_committed until it holds n
// records, then a moment more to catch any extra (a duplicate).
func (p *pipeline) records(t *testing.T, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := p.env.Client(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: %d of %d records", topic, len(out), n)
		}
		out = append(out, fs.Records()...)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	return append(out, cl.PollFetches(ctx2).Records()...)
}

func (p *pipeline) decode(t *testing.T, topic, schema string, n int, mk func() any) []any {
	t.Helper()
	s, err := p.env.Serde(context.Background(), topic, schema)
	if err != nil {
		t.Fatal(err)
	}
	var out []any
	for _, r := range p.records(t, topic, n) {
		v := mk()
		if err := s.Decode(context.Background(), r.Value, v); err != nil {
			t.Fatalf("%s@%d/%d: %v", topic, r.Partition, r.Offset, err)
		}
		out = append(out, v)
	}
	return out
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s after %s", what, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// src is one accepted source event and the features a batch recomputation
// gives it.
type src struct {
	txn       schemas.Transaction
	partition int32
	offset    int64
	phase2    bool
	features  map[string]float64
}

// oracle recomputes every view's features from the raw topic by brute
// force, sharing no code with the engine: for each accepted event, scan the
// earlier accepted events of its card in its partition. Records the
// processor must dead-letter (undecodable, keyless, before 2000) are left
// out, as are the window definitions' exact semantics: (t-w, t].
func oracle(t *testing.T, p *pipeline, raw []*kgo.Record) map[string]*src {
	t.Helper()
	txnSerde, _ := p.env.Serde(context.Background(), p.cfg.Sources[0].Topic, "transaction")
	byPart := map[int32][]*src{}
	var order []*src
	for _, r := range raw {
		var tx schemas.Transaction
		if len(r.Key) == 0 || txnSerde.Decode(context.Background(), r.Value, &tx) != nil || tx.EventTime < 946684800000 {
			continue
		}
		s := &src{txn: tx, partition: r.Partition, offset: r.Offset}
		byPart[r.Partition] = append(byPart[r.Partition], s)
		order = append(order, s)
	}
	for _, evs := range byPart {
		sort.Slice(evs, func(i, j int) bool { return evs[i].offset < evs[j].offset })
		byCard := map[string][]*src{}
		for _, e := range evs {
			byCard[e.txn.CardID] = append(byCard[e.txn.CardID], e)
			f := map[string]float64{}
			v, _ := p.cfg.View("card_activity")
			for _, ft := range v.Features {
				w := ft.Window.D().Milliseconds()
				var n, sum float64
				mx := math.Inf(-1)
				for _, q := range byCard[e.txn.CardID] {
					if q.txn.EventTime > e.txn.EventTime || q.txn.EventTime <= e.txn.EventTime-w {
						continue
					}
					n++
					sum += q.txn.Amount
					mx = math.Max(mx, q.txn.Amount)
				}
				switch ft.Agg {
				case "count":
					f[ft.Name] = n
				case "sum":
					f[ft.Name] = sum
				case "max":
					f[ft.Name] = mx
				case "last":
					f[ft.Name] = e.txn.Amount
				default:
					t.Fatalf("oracle lacks aggregation %s", ft.Agg)
				}
			}
			e.features = f
		}
	}
	out := make(map[string]*src, len(order))
	for _, s := range order {
		// loadgen numbers transactions from 1 in its ids: txn-<seed>-<n>.
		var seed, n int
		if _, err := fmt.Sscanf(s.txn.TxnID, "txn-%d-%d", &seed, &n); err != nil {
			t.Fatalf("transaction id %q: %v", s.txn.TxnID, err)
		}
		s.phase2 = n > phase1
		out[s.txn.TxnID] = s
	}
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func checkPredictions(t *testing.T, preds []any, want map[string]*src, st1 loadgen.Stats, p *pipeline) {
	t.Helper()
	seen := map[string]bool{}
	versions := map[int32]int{}
	for _, v := range preds {
		pr := v.(*schemas.Prediction)
		if seen[pr.PredictionID] {
			t.Fatalf("two predictions for %s", pr.PredictionID)
		}
		seen[pr.PredictionID] = true
		s, ok := want[pr.PredictionID]
		if !ok {
			t.Fatalf("prediction for %s, which is not an accepted transaction", pr.PredictionID)
		}
		if pr.SourcePartition != s.partition || pr.SourceOffset != s.offset || pr.EventTime != s.txn.EventTime || pr.Entity != s.txn.CardID {
			t.Fatalf("prediction %s points at %d@%d, the transaction is %d@%d", pr.PredictionID, pr.SourcePartition, pr.SourceOffset, s.partition, s.offset)
		}
		if s.phase2 && pr.ModelVersion < 2 {
			t.Fatalf("prediction %s after the swap scored by v%d", pr.PredictionID, pr.ModelVersion)
		}
		versions[pr.ModelVersion]++
		m, _ := p.cfg.Model("fraud")
		if len(pr.Features) != len(m.Features) {
			t.Fatalf("prediction %s carries %d features, model has %d", pr.PredictionID, len(pr.Features), len(m.Features))
		}
		for i, f := range pr.Features {
			_, fn, _ := config.SplitFeature(m.Features[i])
			if f.Name != m.Features[i] || !near(f.Value, s.features[fn]) || f.AgeMs != 0 {
				t.Fatalf("prediction %s feature %d = %+v, oracle %s=%v age 0", pr.PredictionID, i, f, m.Features[i], s.features[fn])
			}
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("%d predictions for %d accepted transactions", len(seen), len(want))
	}
	if versions[1] == 0 || versions[2] < phase2 {
		t.Fatalf("predictions by version %v: want v1 before and v2 after the swap", versions)
	}
	t.Logf("predictions by model version: %v", versions)
}

// waitStores waits until ClickHouse holds every feature row and Redis the
// newest row of every card.
func (p *pipeline) waitStores(t *testing.T, want map[string]*src, n int) {
	t.Helper()
	conn, err := p.env.ClickHouse(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	v, _ := p.cfg.View("card_activity")
	q := fmt.Sprintf("SELECT count() FROM (SELECT source_partition, source_offset FROM `%s`.%s GROUP BY source_partition, source_offset)", p.cfg.ClickHouse.Database, offline.TableName(v.Name, v.Version()))
	waitFor(t, 3*time.Minute, "complete ClickHouse history", func() bool {
		var c uint64
		if err := conn.QueryRow(context.Background(), q).Scan(&c); err != nil {
			t.Fatal(err)
		}
		return int(c) >= n
	})
	// The online materializer runs beside the offline one; wait until it
	// has committed the end of the features topic too.
	time.Sleep(2 * time.Second)
}

func checkOffline(t *testing.T, p *pipeline, want map[string]*src) {
	t.Helper()
	ctx := context.Background()
	conn, err := p.env.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	v, _ := p.cfg.View("card_activity")
	cols := make([]string, len(v.Features))
	for i, f := range v.Features {
		cols[i] = "any(`" + f.Name + "`)"
	}
	q := fmt.Sprintf("SELECT any(event_id), count(), %s FROM `%s`.%s GROUP BY source_partition, source_offset",
		strings.Join(cols, ", "), p.cfg.ClickHouse.Database, offline.TableName(v.Name, v.Version()))
	rows, err := conn.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id string
		var copies uint64
		vals := make([]float64, len(v.Features))
		dest := []any{&id, &copies}
		for i := range vals {
			dest = append(dest, &vals[i])
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		s, ok := want[id]
		if !ok {
			t.Fatalf("ClickHouse row for %s, which is not an accepted transaction", id)
		}
		for i, f := range v.Features {
			if !near(vals[i], s.features[f.Name]) {
				t.Fatalf("ClickHouse %s %s = %v, batch recomputation %v", id, f.Name, vals[i], s.features[f.Name])
			}
		}
		n++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if n != len(want) {
		t.Fatalf("ClickHouse holds %d distinct feature rows, want %d", n, len(want))
	}
}

func checkOnline(t *testing.T, p *pipeline, want map[string]*src) {
	t.Helper()
	ctx := context.Background()
	newest := map[string]*src{}
	for _, s := range want {
		c := newest[s.txn.CardID]
		if c == nil || s.txn.EventTime > c.txn.EventTime || (s.txn.EventTime == c.txn.EventTime && s.offset > c.offset) {
			newest[s.txn.CardID] = s
		}
	}
	rdb, err := p.env.Redis(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	store := online.New(rdb, p.cfg.Redis.KeyPrefix, p.cfg.Views)
	v, _ := p.cfg.View("card_activity")
	keys := make([]online.Key, 0, len(newest))
	cards := make([]string, 0, len(newest))
	for c := range newest {
		cards = append(cards, c)
		keys = append(keys, online.Key{View: v.Name, Version: v.Version(), Entity: c})
	}
	rows, found, err := store.GetMany(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cards {
		s := newest[c]
		if !found[i] {
			t.Fatalf("Redis has no row for %s", c)
		}
		if rows[i].EventTime != s.txn.EventTime || rows[i].Offset != s.offset {
			t.Fatalf("Redis row of %s is of %d@%d, newest is %d@%d", c, rows[i].EventTime, rows[i].Offset, s.txn.EventTime, s.offset)
		}
		for _, f := range v.Features {
			if !near(rows[i].Values[f.Name], s.features[f.Name]) {
				t.Fatalf("Redis %s %s = %v, batch recomputation %v", c, f.Name, rows[i].Values[f.Name], s.features[f.Name])
			}
		}
	}
	t.Logf("Redis: %d cards, each the newest row, equal to the recomputation", len(cards))
}

func checkDeadLetters(t *testing.T, p *pipeline, bad int) {
	t.Helper()
	recs := p.records(t, p.cfg.DeadLetterTopic(), bad)
	reasons := map[string]int{}
	for _, r := range recs {
		reasons[streams.HeaderValue(r, streams.HeaderReason)]++
		if streams.HeaderValue(r, streams.HeaderOffset) == "" || streams.HeaderValue(r, streams.HeaderError) == "" {
			t.Fatalf("dead letter without source offset or error: %v", r.Headers)
		}
	}
	want := map[string]int{"undecodable": (bad + 2) / 3, "missing_key": (bad + 1) / 3, "absurd_timestamp": bad / 3}
	if fmt.Sprint(reasons) != fmt.Sprint(want) {
		t.Fatalf("dead letters by reason %v, want %v", reasons, want)
	}
	mfs, err := p.env.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counted := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "weir_stream_deadletter_total" {
			continue
		}
		for _, m := range mf.Metric {
			for _, l := range m.Label {
				if l.GetName() == "reason" {
					counted[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	for r, n := range want {
		if counted[r] != float64(n) {
			t.Fatalf("weir_stream_deadletter_total{reason=%q} = %v, want %d", r, counted[r], n)
		}
	}
}
