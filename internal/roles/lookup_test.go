package roles_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/roles"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/schemas/registry"
	"github.com/weirhq/weir/scoring/model"
	reg "github.com/weirhq/weir/scoring/registry"
)

// TestScorerReadsOtherEntities runs the processor and materializer roles
// on real Kafka, Redis and ClickHouse with a card model that reads two
// features of a merchant view (another entity of the same source, computed
// by the repartitioned task and served from Redis) and two of its own card
// view. After a first phase has been materialized, a second phase scores
// one event per merchant (and events of merchants never seen): each
// prediction's merchant values must equal both what Redis held before the
// phase and a recomputation from the produced events, ages must be the
// event's time minus the merchant's last event time, stale flags must be
// set exactly when that age exceeds max_age, and unseen merchants' features
// must be logged as missing with their defaults and counted.
func TestScorerReadsOtherEntities(t *testing.T) {
	ctx := context.Background()
	seeds := testenv.RealKafka(t)
	rdb, prefix := testenv.Redis(t)
	_, db := testenv.ClickHouse(t)
	cfg, err := config.Load("../../deploy/demo/weir.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	cfg.Kafka.Brokers = seeds
	cfg.Kafka.ClientID = testenv.Name("lookup")
	cfg.Topics.Prefix = testenv.Name("weir")
	cfg.Topics.Partitions = 2
	cfg.Sources[0].Topic = testenv.Name("payments")
	cfg.Labels.Topic = testenv.Name("labels")
	cfg.Monitors, cfg.Retrain = nil, nil
	cfg.Redis.Addr = testenv.RedisAddr(t)
	cfg.Redis.KeyPrefix = prefix
	cfg.ClickHouse.Addr = testenv.ClickHouseAddr(t)
	cfg.ClickHouse.Database = db
	cfg.SchemaRegistry.URL = schemaRegistry(t)
	cfg.Entities = append(cfg.Entities, config.Entity{Name: "merchant", Key: "merchant_id"})
	// The repartition merges the source's partitions, read at their own
	// paces: a merchant's events may arrive behind its partition's newest.
	cfg.Views = append(cfg.Views, config.View{Name: "merchant_activity", Source: "payments", Entity: "merchant", TTL: config.Duration(24 * time.Hour),
		Kind: config.KindSliding, Emit: config.EmitUpdate, Lateness: config.Duration(6 * time.Hour),
		Features: []config.Feature{
			{Name: "txn_count_1h", Agg: "count", Window: config.Duration(time.Hour)},
			{Name: "amount_sum_1h", Agg: "sum", Field: "amount", Window: config.Duration(time.Hour)},
		}})
	m := &cfg.Models[0]
	m.Features = []string{"card_activity.txn_count_5m", "merchant_activity.txn_count_1h", "card_activity.amount_last", "merchant_activity.amount_sum_1h"}
	m.Defaults = map[string]float64{"merchant_activity.txn_count_1h": -1, "merchant_activity.amount_sum_1h": -2}
	maxAge := 30 * time.Minute
	m.MaxAge = config.Duration(maxAge)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}

	env, err := roles.NewEnv(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), "lookuptest")
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
	n := len(m.Features)
	art, err := (&model.LogReg{Format: model.Format, Name: m.Name, Features: m.Features, Transforms: make([]string, n),
		Mean: make([]float64, n), Std: []float64{1, 1, 1, 1}, Weights: []float64{0.1, 0.01, 0.001, 0.0001}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := models.Publish(ctx, schemas.ModelRecord{Name: m.Name, Format: model.Format, Features: m.Features, CreatedBy: "test", Aliases: []string{reg.Champion}}, art); err != nil {
		t.Fatal(err)
	}
	plan, err := env.Build(ctx, []string{"processor", "materializer"})
	if err != nil {
		t.Fatal(err)
	}
	defer plan.Close()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- roles.RunAll(rctx, plan.Runners) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	txn, err := env.Serde(ctx, cfg.Sources[0].Topic, schemas.TransactionSchema)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := env.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	produce := func(txs []schemas.Transaction) {
		t.Helper()
		var recs []*kgo.Record
		for i := range txs {
			b, err := txn.Encode(&txs[i])
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, &kgo.Record{Topic: cfg.Sources[0].Topic, Key: []byte(txs[i].CardID), Value: b})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	// Phase 1: 5 events for each of 10 merchants, 2 to 6 per card. Merchants
	// m0-m4 end 1h50m before phase 2 (stale by max_age 30m), m5-m9 10
	// minutes before (fresh).
	base := time.Now().Add(-3 * time.Hour).Truncate(time.Minute)
	p2 := base.Add(2 * time.Hour).UnixMilli()
	type mev struct {
		time   int64
		amount float64
	}
	byMerchant := map[string][]mev{}
	var phase1 []schemas.Transaction
	for i := range 50 {
		mi := i % 10
		last := base.Add(10 * time.Minute)
		if mi >= 5 {
			last = base.Add(110 * time.Minute)
		}
		at := last.Add(-time.Duration(4-i/10) * 17 * time.Minute).UnixMilli() // the 5th event at last; the 1st 68 min before it
		tx := schemas.Transaction{TxnID: fmt.Sprintf("p1-%d", i), CardID: fmt.Sprintf("c%d", i%13), MerchantID: fmt.Sprintf("m%d", mi),
			Amount: float64(10 + i), Currency: "GBP", Country: "GB", DeviceID: "d", EventTime: at}
		phase1 = append(phase1, tx)
		byMerchant[tx.MerchantID] = append(byMerchant[tx.MerchantID], mev{at, tx.Amount})
	}
	// In event time order, so that no card event is late.
	slices.SortFunc(phase1, func(a, b schemas.Transaction) int { return int(a.EventTime - b.EventTime) })
	produce(phase1)

	// The oracle: each merchant's sliding 1h count and sum as of its last
	// event, recomputed from the events produced.
	type want struct {
		count, sum float64
		at         int64
	}
	oracle := map[string]want{}
	for mid, evs := range byMerchant {
		last := slices.MaxFunc(evs, func(a, b mev) int { return int(a.time - b.time) }).time
		w := want{at: last}
		for _, e := range evs {
			if e.time > last-time.Hour.Milliseconds() && e.time <= last {
				w.count++
				w.sum += e.amount
			}
		}
		oracle[mid] = w
	}
	// Wait until Redis holds every merchant's row as of its last event.
	view, _ := cfg.View("merchant_activity")
	store := online.New(rdb, prefix, cfg.Views)
	redisRows := map[string]want{}
	deadline := time.Now().Add(2 * time.Minute)
	for len(redisRows) < len(oracle) {
		if time.Now().After(deadline) {
			t.Fatalf("Redis holds %d of %d merchants' final rows after 2 minutes", len(redisRows), len(oracle))
		}
		for mid, w := range oracle {
			r, ok, err := store.Get(ctx, view.Name, view.Version(), mid)
			if err != nil {
				t.Fatal(err)
			}
			if ok && r.EventTime == w.at && r.Values["txn_count_1h"] == w.count {
				redisRows[mid] = want{r.Values["txn_count_1h"], r.Values["amount_sum_1h"], r.EventTime}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	for mid, w := range oracle {
		if r := redisRows[mid]; r.count != w.count || math.Abs(r.sum-w.sum) > 1e-9 || r.at != w.at {
			t.Fatalf("Redis %s: %+v, recomputed %+v", mid, r, w)
		}
	}

	// Phase 2: one event per merchant, on a card of its own, and two
	// events of merchants never seen.
	var phase2 []schemas.Transaction
	for i := range 12 {
		phase2 = append(phase2, schemas.Transaction{TxnID: fmt.Sprintf("p2-%d", i), CardID: fmt.Sprintf("n%d", i), MerchantID: fmt.Sprintf("m%d", i),
			Amount: float64(100 + i), Currency: "GBP", Country: "GB", DeviceID: "d", EventTime: p2 + int64(i)})
	}
	produce(phase2)

	preds := consumePredictions(t, env, cfg.PredictionsTopic(m.Name), len(phase1)+len(phase2))
	var missing, stale, staleWant int
	for _, p := range preds {
		for _, f := range p.Features {
			if f.AgeMs == -1 && f.Name == "merchant_activity.txn_count_1h" {
				missing++
			}
			if f.Stale {
				stale++
			}
		}
		if p.EventTime < p2 {
			continue
		}
		var tx schemas.Transaction
		for _, x := range phase2 {
			if x.TxnID == p.PredictionID {
				tx = x
			}
		}
		if tx.TxnID == "" || p.ModelVersion != 1 || len(p.Features) != 4 {
			t.Fatalf("prediction %+v", p)
		}
		f := p.Features
		if f[0].Value != 1 || f[0].AgeMs != 0 || f[2].Value != tx.Amount || f[2].AgeMs != 0 || f[0].Stale || f[2].Stale {
			t.Fatalf("%s: own card features %+v, want count 1 and amount %v at age 0", tx.TxnID, f, tx.Amount)
		}
		w, seen := oracle[tx.MerchantID]
		if !seen {
			if f[1] != (schemas.UsedFeature{Name: f[1].Name, Value: -1, AgeMs: -1}) || f[3] != (schemas.UsedFeature{Name: f[3].Name, Value: -2, AgeMs: -1}) {
				t.Fatalf("%s of unseen merchant %s: %+v, want the defaults, age -1", tx.TxnID, tx.MerchantID, f)
			}
			continue
		}
		age := p.EventTime - w.at
		isStale := age > maxAge.Milliseconds()
		if isStale {
			staleWant += 2
		}
		r := redisRows[tx.MerchantID]
		if f[1].Value != w.count || f[1].Value != r.count || math.Abs(f[3].Value-w.sum) > 1e-9 || f[3].Value != r.sum ||
			f[1].AgeMs != age || f[3].AgeMs != age || f[1].Stale != isStale || f[3].Stale != isStale {
			t.Fatalf("%s of merchant %s: %+v; recomputed count %v sum %v at age %d (stale %v), Redis %+v", tx.TxnID, tx.MerchantID, f, w.count, w.sum, age, isStale, r)
		}
	}
	if staleWant != 10 {
		t.Fatalf("%d stale merchant features in phase 2, want 10 (m0-m4)", staleWant)
	}
	// Counted: every missing merchant feature logged (phase 1's events may
	// be scored before their merchant's row reached Redis), every stale one.
	for _, c := range []struct {
		metric, feature string
		atLeast         int
	}{
		{"weir_scoring_missing_features_total", "merchant_activity.txn_count_1h", missing},
		{"weir_scoring_stale_features_total", "merchant_activity.txn_count_1h", stale / 2},
	} {
		if got := counterOf(t, env.Metrics, c.metric, c.feature); got < float64(c.atLeast) || c.atLeast < 2 {
			t.Errorf("%s{feature=%q} = %v, want at least %d (logged in the predictions; 2 or more)", c.metric, c.feature, got, c.atLeast)
		}
	}
}

func counterOf(t *testing.T, g prometheus.Gatherer, name, feature string) float64 {
	t.Helper()
	mf, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mf {
		if m.GetName() != name {
			continue
		}
		for _, x := range m.GetMetric() {
			for _, lp := range x.GetLabel() {
				if lp.GetName() == "feature" && lp.GetValue() == feature {
					return x.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// consumePredictions reads want predictions with read_committed, and
// fails on a duplicate prediction id.
func consumePredictions(t *testing.T, env *roles.Env, topic string, want int) []schemas.Prediction {
	t.Helper()
	ctx := context.Background()
	serde, err := env.Serde(ctx, topic, schemas.PredictionSchema)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := env.Client(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []schemas.Prediction
	seen := map[string]bool{}
	deadline := time.Now().Add(2 * time.Minute)
	for len(out) < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d predictions after 2 minutes", len(out), want)
		}
		fctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(fctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			var p schemas.Prediction
			if err := serde.Decode(ctx, r.Value, &p); err != nil {
				t.Fatal(err)
			}
			if seen[p.PredictionID] {
				t.Fatalf("prediction %s twice", p.PredictionID)
			}
			seen[p.PredictionID] = true
			out = append(out, p)
		})
	}
	return out
}

// schemaRegistry serves a schema registry until the test ends.
func schemaRegistry(t *testing.T) string {
	t.Helper()
	srv, err := registry.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { l.Close() })
	return "http://" + l.Addr().String()
}
