package roles_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"slices"
	"sync"
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
	p := startLookupPipeline(t, "")
	p.phase1(t)
	phase2 := p.phase2()
	p.produce(t, phase2)
	p.check(t, p.predictions(t, len(p.phase1Txs)+len(phase2)), phase2)
	// Counted: every missing merchant feature logged (phase 1's events may
	// be scored before their merchant's row reached Redis), every stale one.
	var missing, stale int
	for _, pr := range p.preds {
		for _, f := range pr.Features {
			if f.AgeMs == -1 && f.Name == "merchant_activity.txn_count_1h" {
				missing++
			}
			if f.Stale && f.Name == "merchant_activity.txn_count_1h" {
				stale++
			}
		}
	}
	for _, c := range []struct {
		metric, feature string
		atLeast         int
	}{
		{"weir_scoring_missing_features_total", "merchant_activity.txn_count_1h", missing},
		{"weir_scoring_stale_features_total", "merchant_activity.txn_count_1h", stale},
	} {
		if got := counterOf(t, p.env.Metrics, c.metric, c.feature); got < float64(c.atLeast) || c.atLeast < 2 {
			t.Errorf("%s{feature=%q} = %v, want at least %d (logged in the predictions; 2 or more)", c.metric, c.feature, got, c.atLeast)
		}
	}
}

// TestScorerRedisOutage cuts the scorer's connection to Redis (a TCP
// proxy in front of the real server) while the second phase's events
// arrive: none may be scored while Redis is unreachable (the failed reads
// abort the transactions, counted), and once it is back every event has
// exactly one prediction, with the merchant features Redis holds.
func TestScorerRedisOutage(t *testing.T) {
	px := newProxy(t, testenv.RedisAddr(t))
	p := startLookupPipeline(t, px.addr())
	p.phase1(t)
	p.predictions(t, len(p.phase1Txs))
	px.setDown(true)
	phase2 := p.phase2()
	p.produce(t, phase2)
	// The processor reads the events and fails their lookups, again and
	// again, without committing a prediction of them.
	deadline := time.Now().Add(time.Minute)
	for counterOf(t, p.env.Metrics, "weir_scoring_lookup_errors_total", "") < 3 {
		if time.Now().After(deadline) {
			t.Fatal("no failed Redis reads counted after a minute of outage")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := len(p.predictions(t, 0)); n != len(p.phase1Txs) {
		t.Fatalf("%d predictions committed during the outage, want the %d of phase 1", n, len(p.phase1Txs))
	}
	failed := counterOf(t, p.env.Metrics, "weir_scoring_lookup_errors_total", "")
	px.setDown(false)
	start := time.Now()
	p.check(t, p.predictions(t, len(p.phase1Txs)+len(phase2)), phase2)
	t.Logf("%v failed Redis reads during the outage; every event scored once %s after it ended", failed, time.Since(start).Round(time.Millisecond))
}

// lookupPipeline is the processor and materializer roles of a card model
// that reads a merchant view, on real Kafka, Redis and ClickHouse.
type lookupPipeline struct {
	cfg        *config.Config
	env        *roles.Env
	store      *online.Store // the real Redis
	produce    func(t *testing.T, txs []schemas.Transaction)
	p2         int64 // phase 2's event time
	maxAge     time.Duration
	phase1Txs  []schemas.Transaction
	oracle     map[string]merchantWant // by merchant, after phase 1
	redisRows  map[string]merchantWant // what Redis held before phase 2
	preds      []schemas.Prediction
	predsSeen  map[string]bool
	predClient *kgo.Client
	predSerde  *schemas.Serde
}

type merchantWant struct {
	count, sum float64
	at         int64
}

// startLookupPipeline starts the roles with the scorer's and
// materializers' Redis at redisAddr (the real one when "").
func startLookupPipeline(t *testing.T, redisAddr string) *lookupPipeline {
	t.Helper()
	ctx := context.Background()
	seeds := testenv.RealKafka(t)
	rdb, prefix := testenv.Redis(t)
	if redisAddr == "" {
		redisAddr = testenv.RedisAddr(t)
	}
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
	cfg.Redis.Addr = redisAddr
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
	t.Cleanup(env.Close)
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
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- roles.RunAll(rctx, plan.Runners) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		plan.Close()
	})

	txn, err := env.Serde(ctx, cfg.Sources[0].Topic, schemas.TransactionSchema)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := env.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	produce := func(t *testing.T, txs []schemas.Transaction) {
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

	predSerde, err := env.Serde(ctx, cfg.PredictionsTopic(m.Name), schemas.PredictionSchema)
	if err != nil {
		t.Fatal(err)
	}
	pcl, err := env.Client(kgo.ConsumeTopics(cfg.PredictionsTopic(m.Name)), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pcl.Close)
	return &lookupPipeline{cfg: cfg, env: env, store: online.New(rdb, prefix, cfg.Views), produce: produce, maxAge: maxAge,
		p2: time.Now().Add(-time.Hour).Truncate(time.Minute).UnixMilli(), predClient: pcl, predSerde: predSerde, predsSeen: map[string]bool{}}
}

// phase1 produces 5 events for each of 10 merchants, 2 to 6 per card,
// and waits until Redis holds every merchant's row as of its last event,
// equal to a recomputation. Merchants m0-m4 end 1h50m before phase 2
// (stale by max_age 30m), m5-m9 10 minutes before (fresh).
func (p *lookupPipeline) phase1(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	base := time.UnixMilli(p.p2).Add(-2 * time.Hour)
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
	p.produce(t, phase1)
	p.phase1Txs = phase1

	// The oracle: each merchant's sliding 1h count and sum as of its last
	// event, recomputed from the events produced.
	type want = merchantWant
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
	view, _ := p.cfg.View("merchant_activity")
	store := p.store
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

	p.oracle, p.redisRows = oracle, redisRows
}

// phase2 is one event per merchant, on a card of its own, and two events
// of merchants never seen.
func (p *lookupPipeline) phase2() []schemas.Transaction {
	var phase2 []schemas.Transaction
	for i := range 12 {
		phase2 = append(phase2, schemas.Transaction{TxnID: fmt.Sprintf("p2-%d", i), CardID: fmt.Sprintf("n%d", i), MerchantID: fmt.Sprintf("m%d", i),
			Amount: float64(100 + i), Currency: "GBP", Country: "GB", DeviceID: "d", EventTime: p.p2 + int64(i)})
	}
	return phase2
}

// check checks phase 2's predictions: own card features from the event,
// merchant features equal to Redis before the phase and to the
// recomputation, ages and stale flags exact, unseen merchants' features
// missing with their defaults.
func (p *lookupPipeline) check(t *testing.T, preds []schemas.Prediction, phase2 []schemas.Transaction) {
	t.Helper()
	var staleWant, n int
	for _, pr := range preds {
		if pr.EventTime < p.p2 {
			continue
		}
		n++
		var tx schemas.Transaction
		for _, x := range phase2 {
			if x.TxnID == pr.PredictionID {
				tx = x
			}
		}
		if tx.TxnID == "" || pr.ModelVersion != 1 || len(pr.Features) != 4 {
			t.Fatalf("prediction %+v", pr)
		}
		f := pr.Features
		if f[0].Value != 1 || f[0].AgeMs != 0 || f[2].Value != tx.Amount || f[2].AgeMs != 0 || f[0].Stale || f[2].Stale {
			t.Fatalf("%s: own card features %+v, want count 1 and amount %v at age 0", tx.TxnID, f, tx.Amount)
		}
		w, seen := p.oracle[tx.MerchantID]
		if !seen {
			if f[1] != (schemas.UsedFeature{Name: f[1].Name, Value: -1, AgeMs: -1}) || f[3] != (schemas.UsedFeature{Name: f[3].Name, Value: -2, AgeMs: -1}) {
				t.Fatalf("%s of unseen merchant %s: %+v, want the defaults, age -1", tx.TxnID, tx.MerchantID, f)
			}
			continue
		}
		age := pr.EventTime - w.at
		isStale := age > p.maxAge.Milliseconds()
		if isStale {
			staleWant += 2
		}
		r := p.redisRows[tx.MerchantID]
		if f[1].Value != w.count || f[1].Value != r.count || math.Abs(f[3].Value-w.sum) > 1e-9 || f[3].Value != r.sum ||
			f[1].AgeMs != age || f[3].AgeMs != age || f[1].Stale != isStale || f[3].Stale != isStale {
			t.Fatalf("%s of merchant %s: %+v; recomputed count %v sum %v at age %d (stale %v), Redis %+v", tx.TxnID, tx.MerchantID, f, w.count, w.sum, age, isStale, r)
		}
	}
	if n != len(phase2) {
		t.Fatalf("%d phase 2 predictions, want %d", n, len(phase2))
	}
	if staleWant != 10 {
		t.Fatalf("%d stale merchant features in phase 2, want 10 (m0-m4)", staleWant)
	}
}

// predictions reads the predictions topic (read_committed) until it has
// read want in all (0: what one poll of a second finds) and returns all
// read so far; it fails on a duplicate prediction id.
func (p *lookupPipeline) predictions(t *testing.T, want int) []schemas.Prediction {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(2 * time.Minute)
	for first := true; first || len(p.preds) < want; first = false {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d predictions after 2 minutes", len(p.preds), want)
		}
		fctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := p.predClient.PollFetches(fctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			var pr schemas.Prediction
			if err := p.predSerde.Decode(ctx, r.Value, &pr); err != nil {
				t.Fatal(err)
			}
			if p.predsSeen[pr.PredictionID] {
				t.Fatalf("prediction %s twice", pr.PredictionID)
			}
			p.predsSeen[pr.PredictionID] = true
			p.preds = append(p.preds, pr)
		})
	}
	return p.preds
}

// proxy forwards TCP connections to a server until it is set down: then
// it closes them and every new one at once.
type proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &proxy{l: l, target: target}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); px.setDown(true); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			px.mu.Lock()
			down := px.down
			if !down {
				px.conns = append(px.conns, c)
			}
			px.mu.Unlock()
			if down {
				c.Close()
				continue
			}
			wg.Go(func() {
				s, err := net.Dial("tcp", target)
				if err != nil {
					c.Close()
					return
				}
				px.mu.Lock()
				px.conns = append(px.conns, s)
				px.mu.Unlock()
				var pipes sync.WaitGroup
				pipes.Go(func() { io.Copy(s, c); s.Close() })
				pipes.Go(func() { io.Copy(c, s); c.Close() })
				pipes.Wait()
			})
		}
	})
	return px
}

func (px *proxy) addr() string { return px.l.Addr().String() }

func (px *proxy) setDown(down bool) {
	px.mu.Lock()
	defer px.mu.Unlock()
	px.down = down
	if down {
		for _, c := range px.conns {
			c.Close()
		}
		px.conns = nil
	}
}

// counterOf returns a counter's value: of the series whose feature label
// is feature, or of the first series when feature is "".
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
			if feature == "" {
				return x.GetCounter().GetValue()
			}
			for _, lp := range x.GetLabel() {
				if lp.GetName() == "feature" && lp.GetValue() == feature {
					return x.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
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
