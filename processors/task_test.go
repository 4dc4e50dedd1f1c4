package processors_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hamba/avro/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/loadgen"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/processors"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/schemas/registry"
	"github.com/weirhq/weir/streams"
)

type fixture struct {
	cfg              *config.Config
	seeds            []string
	reg              schemas.Registry
	regServer        *registry.Server
	regListener      net.Listener
	regDir           string
	txn, label, rows *schemas.Serde
}

func newFixture(t *testing.T, partitions int, mutate ...func(*config.Config)) *fixture {
	t.Helper()
	ctx := context.Background()
	seeds, _ := testenv.Kafka(t)
	cfg, err := config.Load("../deploy/demo/weir.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Kafka.Brokers = seeds
	cfg.Topics.Prefix = testenv.Name("weir")
	cfg.Topics.Partitions = partitions
	cfg.Sources[0].Topic = testenv.Name("payments")
	cfg.Labels.Topic = testenv.Name("labels")
	cfg.State.Dir = t.TempDir()
	for _, m := range mutate {
		m(cfg)
	}
	opts, err := streams.ClientOpts(cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := streams.Provision(ctx, kadm.NewClient(cl), 1, streams.Topics(cfg)); err != nil {
		t.Fatal(err)
	}
	regDir := t.TempDir()
	srv, err := registry.Open(regDir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { l.Close() })
	reg, err := schemas.NewSRClient("http://" + l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{cfg: cfg, seeds: seeds, reg: reg, regServer: srv, regListener: l, regDir: regDir}
	mk := func(topic, schema string) *schemas.Serde {
		s, err := schemas.NewSerde(ctx, reg, schemas.Subject(topic), schemas.MustParse(schema))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	f.txn = mk(cfg.Sources[0].Topic, schemas.TransactionSchema)
	f.label = mk(cfg.Labels.Topic, schemas.LabelSchema)
	f.rows = mk(cfg.FeaturesTopic("card_activity"), schemas.FeatureRowSchema)
	return f
}

func (f *fixture) produce(t *testing.T, gen loadgen.Config, n, badEvery int) loadgen.Stats {
	t.Helper()
	opts, _ := streams.ClientOpts(f.cfg.Kafka)
	cl, err := kgo.NewClient(append(opts, kgo.ProducerLinger(5*time.Millisecond))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	st, err := loadgen.Run(context.Background(), cl, loadgen.New(gen), loadgen.RunConfig{
		TxnTopic: f.cfg.Sources[0].Topic, LabelTopic: f.cfg.Labels.Topic, Txn: f.txn, Label: f.label, Count: n, BadEvery: badEvery,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// loop builds the processor loop of the source, as `weir run --role processor` does.
func (f *fixture) loop(t *testing.T, instance string, reg ...prometheus.Registerer) *streams.Loop {
	t.Helper()
	return f.loopWith(t, instance, nil, append(reg, nil)[0])
}

// loopWith builds the processor loop with event hooks and a registry.
func (f *fixture) loopWith(t *testing.T, instance string, hooks []processors.EventHook, reg prometheus.Registerer) *streams.Loop {
	t.Helper()
	src := f.cfg.Sources[0]
	views := f.cfg.ViewsOf(src.Name)
	topics := make([]string, len(views))
	for i, v := range views {
		topics[i] = f.cfg.FeaturesTopic(v.Name)
	}
	opts, _ := streams.ClientOpts(f.cfg.Kafka)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	task, err := processors.NewTask(processors.TaskConfig{
		Source: src, Views: views, Entities: f.cfg.Entities, FeatureTopics: topics,
		ChangelogTopic: f.cfg.ChangelogTopic(src.Name), Opts: opts, State: f.cfg.State,
	}, f.txn, f.rows, log, reg, hooks...)
	if err != nil {
		t.Fatal(err)
	}
	return streams.NewLoop(streams.LoopConfig{
		Stage: "processor", Group: f.cfg.Topics.Prefix + ".processor." + src.Name,
		TransactionalID: f.cfg.Topics.Prefix + ".processor." + src.Name + "." + instance,
		Topics:          []string{src.Topic}, DeadLetterTopic: f.cfg.DeadLetterTopic(), MaxBatch: 2000, Opts: opts,
	}, task, log, reg)
}

// consume reads topic with read_committed until it holds want records.
func (f *fixture) consume(t *testing.T, topic string, want int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	opts, _ := streams.ClientOpts(f.cfg.Kafka)
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*kgo.Record
	for len(out) < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: %d of %d records after %s", topic, len(out), want, timeout)
		}
		out = append(out, fs.Records()...)
	}
	// Anything beyond want would be a duplicate: give it a moment to show.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	out = append(out, cl.PollFetches(ctx2).Records()...)
	return out
}

type srcEvent struct {
	part   int32
	offset int64
	card   string
	time   int64
	amount float64
}

// oracle recomputes every feature row from the raw topic by brute force: for
// each accepted event, scan all accepted events of its card in its partition
// at or before it in (time, offset) order. It shares no code with the
// engine.
func (f *fixture) oracle(t *testing.T, raw []*kgo.Record) map[[2]int64][]float64 {
	t.Helper()
	byPart := map[int32][]srcEvent{}
	for _, r := range raw {
		var tx schemas.Transaction
		if len(r.Key) == 0 || f.txn.Decode(context.Background(), r.Value, &tx) != nil || tx.EventTime < 946684800000 {
			continue // dead letters
		}
		byPart[r.Partition] = append(byPart[r.Partition], srcEvent{part: r.Partition, offset: r.Offset, card: tx.CardID, time: tx.EventTime, amount: tx.Amount})
	}
	want := map[[2]int64][]float64{}
	for _, evs := range byPart {
		for _, e := range evs {
			var c5, s5, c1, s1 float64
			mx := math.Inf(-1)
			for _, p := range evs {
				if p.card != e.card || p.time > e.time || (p.time == e.time && p.offset > e.offset) {
					continue
				}
				if p.time > e.time-5*60*1000 {
					c5++
					s5 += p.amount
				}
				if p.time > e.time-60*60*1000 {
					c1++
					s1 += p.amount
					mx = math.Max(mx, p.amount)
				}
			}
			want[[2]int64{int64(e.part), e.offset}] = []float64{c5, s5, c1, s1, mx, e.amount}
		}
	}
	return want
}

// finalRows decodes feature rows and keeps each event's last version, by
// the (partition, offset) of the event: a row's own source position, or the
// one a correction revises. It fails on two first versions of one event.
func (f *fixture) finalRows(t *testing.T, rows []*kgo.Record) map[[2]int64]*schemas.FeatureRow {
	t.Helper()
	out := map[[2]int64]*schemas.FeatureRow{}
	for _, r := range rows {
		row := new(schemas.FeatureRow)
		if err := f.rows.Decode(context.Background(), r.Value, row); err != nil {
			t.Fatal(err)
		}
		k := [2]int64{int64(row.SourcePartition), row.SourceOffset}
		if row.RevisesOffset >= 0 {
			k[1] = row.RevisesOffset
			if out[k] == nil {
				t.Fatalf("a correction of source %v before its first version", k)
			}
		} else if out[k] != nil {
			t.Fatalf("duplicate feature row for source %v", k)
		}
		out[k] = row
	}
	return out
}

// consumeFirst reads feature rows until want events have their first version.
func (f *fixture) consumeFirst(t *testing.T, topic string, want int, timeout time.Duration) []*kgo.Record {
	t.Helper()
	return f.consumeRows(t, topic, want, func(r *schemas.FeatureRow) bool { return r.RevisesOffset < 0 }, timeout)
}

// consumeRows reads feature rows until want of them satisfy count.
func (f *fixture) consumeRows(t *testing.T, topic string, want int, count func(*schemas.FeatureRow) bool, timeout time.Duration) []*kgo.Record {
	t.Helper()
	opts, _ := streams.ClientOpts(f.cfg.Kafka)
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []*kgo.Record
	for counted := 0; counted < want; {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: %d of %d rows after %s", topic, counted, want, timeout)
		}
		for _, r := range fs.Records() {
			var row schemas.FeatureRow
			if err := f.rows.Decode(ctx, r.Value, &row); err != nil {
				t.Fatal(err)
			}
			if count(&row) {
				counted++
			}
			out = append(out, r)
		}
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	return append(out, cl.PollFetches(ctx2).Records()...)
}

func (f *fixture) check(t *testing.T, raw, rows []*kgo.Record) {
	t.Helper()
	want := f.oracle(t, raw)
	seen := map[[2]int64]bool{}
	for k, row := range f.finalRows(t, rows) {
		seen[k] = true
		w, ok := want[k]
		if !ok {
			t.Fatalf("feature row for source %v, which the oracle rejects", k)
		}
		for i, v := range row.Values {
			if math.Abs(v.Value-w[i]) > 1e-6*math.Max(1, math.Abs(w[i])) {
				t.Fatalf("source %v card %s feature %s = %v, oracle %v", k, row.Entity, v.Name, v.Value, w[i])
			}
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("%d feature rows, oracle has %d", len(seen), len(want))
	}
}

// TestExactlyOnceAcrossRestarts processes a stream while the processor is
// stopped and restarted at random moments (its open transaction abandoned
// each time), then checks every feature row against the oracle, with no
// duplicate and no gap, and the dead letters with their reasons.
func TestExactlyOnceAcrossRestarts(t *testing.T) {
	for _, store := range []string{config.StoreMemory, config.StorePebble} {
		t.Run(store, func(t *testing.T) { testExactlyOnceAcrossRestarts(t, store) })
	}
}

func testExactlyOnceAcrossRestarts(t *testing.T, store string) {
	n := 20000
	if testing.Short() {
		n = 4000
	}
	f := newFixture(t, 3, func(c *config.Config) { c.State.Store = store })
	st := f.produce(t, loadgen.Config{Seed: 7, Cards: 300, EventsPerSecond: 50}, n, 997)
	rng := rand.New(rand.NewPCG(1, 1))
	deadline := time.Now().Add(2 * time.Minute)
	for i := 0; ; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f.loop(t, "a").Run(ctx) }()
		if i < 4 {
			time.Sleep(time.Duration(200+rng.IntN(800)) * time.Millisecond)
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("run %d: %v", i, err)
			}
			continue
		}
		rows := f.consumeFirst(t, f.cfg.FeaturesTopic("card_activity"), n, time.Until(deadline))
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		raw := f.consume(t, f.cfg.Sources[0].Topic, n+st.Bad, 30*time.Second)
		f.check(t, raw, rows)
		dead := f.consume(t, f.cfg.DeadLetterTopic(), st.Bad, 30*time.Second)
		reasons := map[string]int{}
		for _, r := range dead {
			reasons[streams.HeaderValue(r, streams.HeaderReason)]++
		}
		wantReasons := map[string]int{"undecodable": (st.Bad + 2) / 3, "missing_key": (st.Bad + 1) / 3, "absurd_timestamp": st.Bad / 3}
		if fmt.Sprint(reasons) != fmt.Sprint(wantReasons) {
			t.Fatalf("dead letters by reason %v, want %v", reasons, wantReasons)
		}
		return
	}
}

// TestAbortRestoresState makes transactions abort after their events have
// changed committed entity states (the memory store changes them in
// place): a hook fails a few events once each with a retriable error, so
// the loop aborts and rewinds, and the task must restore the touched
// partitions from the changelog before going on. Every row must still be
// exact, once, and the task must have restored more than at assignment.
func TestAbortRestoresState(t *testing.T) {
	// Not fewer under -short: with a few thousand events the first batch
	// holds them all and the failures come before anything committed, so
	// nothing would be restored.
	n := 12000
	f := newFixture(t, 2)
	st := f.produce(t, loadgen.Config{Seed: 11, Cards: 100, EventsPerSecond: 50}, n, 0)
	var seen atomic.Int64
	failed := map[int64]bool{}
	hook := func(_ context.Context, ev *processors.Event, out []*kgo.Record) ([]*kgo.Record, error) {
		// Fail every n/4-th event processed (retries count too), four times
		// in all: late in a batch, after many existing entities changed in
		// place. Without the bound a batch longer than n/4 events (-short)
		// would fail on each retry and never commit.
		if k := seen.Add(1); k%(int64(n)/4) == 0 && !failed[k] && len(failed) < 4 {
			failed[k] = true
			return out, streams.Retry(fmt.Errorf("injected failure at event %d", k))
		}
		return out, nil
	}
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.loopWith(t, "a", []processors.EventHook{hook}, reg).Run(ctx) }()
	rows := f.consumeFirst(t, f.cfg.FeaturesTopic("card_activity"), n, 2*time.Minute)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(failed) < 3 {
		t.Fatalf("%d injected failures, want at least 3", len(failed))
	}
	raw := f.consume(t, f.cfg.Sources[0].Topic, n+st.Bad, 30*time.Second)
	f.check(t, raw, rows)
	mf, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var restored float64
	for _, m := range mf {
		if m.GetName() == "weir_processor_restore_records_total" {
			for _, x := range m.GetMetric() {
				restored += x.GetCounter().GetValue()
			}
		}
	}
	if restored == 0 {
		t.Fatal("no state was restored after the aborted transactions")
	}
}

// TestRegistryOutageRetries produces events under a schema id the processor
// has not seen (a producer's evolved schema) while the registry is down: the
// processor must wait and retry, not dead-letter them, and once the registry
// is back every row must be exact.
func TestRegistryOutageRetries(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, 2)
	// A producer's evolved schema: one more field, with a default.
	evolved := strings.Replace(f.txn.Schema().Text, `{"name": "device_id", "type": "string"},`,
		`{"name": "device_id", "type": "string"}, {"name": "channel", "type": "string", "default": "web"},`, 1)
	if evolved == f.txn.Schema().Text {
		t.Fatal("could not evolve the transaction schema")
	}
	evolvedSchema, err := avro.Parse(evolved)
	if err != nil {
		t.Fatal(err)
	}
	id, err := f.reg.Register(ctx, schemas.Subject(f.cfg.Sources[0].Topic), evolved)
	if err != nil {
		t.Fatal(err)
	}
	type evolvedTxn struct {
		schemas.Transaction
		Channel string `avro:"channel"`
	}
	opts, _ := streams.ClientOpts(f.cfg.Kafka)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	g := loadgen.New(loadgen.Config{Seed: 3, Cards: 50})
	const n = 2000
	for range n {
		tx, _ := g.Next()
		body, err := avro.Marshal(evolvedSchema, &evolvedTxn{Transaction: tx, Channel: "app"})
		if err != nil {
			t.Fatal(err)
		}
		cl.Produce(ctx, &kgo.Record{Topic: f.cfg.Sources[0].Topic, Key: []byte(tx.CardID), Value: append(schemas.AppendHeader(nil, id), body...)}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	addr := f.regListener.Addr().String()
	f.regServer.Close() // the registry goes down, kept-alive connections too

	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	metrics := prometheus.NewRegistry()
	go func() { done <- f.loop(t, "a", metrics).Run(rctx) }()
	time.Sleep(1500 * time.Millisecond) // the processor meets the outage and retries
	srv, err := registry.Open(f.regDir)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("registry back on %s: %v", addr, err)
	}
	go srv.Serve(l)
	defer l.Close()
	rows := f.consumeFirst(t, f.cfg.FeaturesTopic("card_activity"), n, time.Minute)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	raw := f.consume(t, f.cfg.Sources[0].Topic, n, 30*time.Second)
	f.check(t, raw, rows)
	if aborted := testutil.ToFloat64(counter(t, metrics, "weir_stream_txn_aborted_total")); aborted < 1 {
		t.Fatalf("no transaction aborted: the processor never met the outage")
	}
	dctx, dcancel := context.WithTimeout(ctx, time.Second)
	defer dcancel()
	dl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(f.cfg.DeadLetterTopic()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	if recs := dl.PollFetches(dctx).Records(); len(recs) > 0 {
		t.Fatalf("%d records dead-lettered during a registry outage, first: %s", len(recs), streams.HeaderValue(recs[0], streams.HeaderError))
	}
}

// counter returns the one counter named name in reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) == 1 {
			return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: name}, func() float64 { return mf.Metric[0].GetCounter().GetValue() })
		}
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, fmt.Sprintf("%s(%d)", mf.GetName(), len(mf.Metric)))
	}
	t.Fatalf("no counter %s in %v", name, names)
	return nil
}

// TestScaleOutAndIn adds a second processor instance mid-stream, then
// removes the first: partitions move with their state (restored from the
// changelog by the new owner) and every feature row stays exact, with no
// duplicate and no gap. The stream comes in three parts, so that each move
// happens with history behind it and traffic after it.
func TestScaleOutAndIn(t *testing.T) {
	n := 30000
	if testing.Short() {
		n = 6000
	}
	f := newFixture(t, 4)
	opts, _ := streams.ClientOpts(f.cfg.Kafka)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	g := loadgen.New(loadgen.Config{Seed: 9, Cards: 400, EventsPerSecond: 50})
	produced := 0
	produce := func(k int) {
		t.Helper()
		st, err := loadgen.Run(context.Background(), cl, g, loadgen.RunConfig{TxnTopic: f.cfg.Sources[0].Topic, LabelTopic: f.cfg.Labels.Topic,
			Txn: f.txn, Label: f.label, Count: k}, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		produced += st.Transactions
	}
	run := func(instance string) (context.CancelFunc, chan error) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f.loop(t, instance).Run(ctx) }()
		return cancel, done
	}
	produce(n / 3)
	stopA, doneA := run("a")
	f.consumeFirst(t, f.cfg.FeaturesTopic("card_activity"), produced, time.Minute)
	produce(n / 3)
	stopB, doneB := run("b") // scale out: a rebalance hands b some of a's partitions
	f.consumeFirst(t, f.cfg.FeaturesTopic("card_activity"), produced, time.Minute)
	stopA() // scale in: b takes over the rest, restoring their state
	if err := <-doneA; err != nil {
		t.Fatalf("instance a: %v", err)
	}
	produce(n - produced)
	rows := f.consumeFirst(t, f.cfg.FeaturesTopic("card_activity"), produced, 2*time.Minute)
	stopB()
	if err := <-doneB; err != nil {
		t.Fatalf("instance b: %v", err)
	}
	raw := f.consume(t, f.cfg.Sources[0].Topic, produced, 30*time.Second)
	f.check(t, raw, rows)
}

// TestRepartitionedEntity computes a merchant view from a source keyed by
// card: the source's task forwards its accepted events, re-keyed by
// merchant, in its transactions, and a second loop computes the merchant's
// sliding windows from the repartition topic. Every source event must appear there exactly once, and
// every merchant feature row must equal a brute-force recomputation from
// the repartition topic.
func TestRepartitionedEntity(t *testing.T) {
	n := 12000
	if testing.Short() {
		n = 3000
	}
	f := newFixture(t, 3, func(c *config.Config) {
		// The repartition merges the source's partitions, which are read at
		// their own paces (here: a backlog), so a merchant's events arrive
		// out of order by up to that skew: the lateness must cover it.
		c.Sources[0].Lateness = config.Duration(time.Hour)
		// device has no view of the source: events carry no key of it.
		c.Entities = append(c.Entities, config.Entity{Name: "merchant", Key: "merchant_id"}, config.Entity{Name: "device", Key: "device_id"})
		c.Views = append(c.Views, config.View{Name: "merchant_activity", Source: "payments", Entity: "merchant", TTL: config.Duration(24 * time.Hour),
			Features: []config.Feature{
				{Name: "txn_count_5m", Agg: "count", Window: config.Duration(5 * time.Minute)},
				{Name: "amount_sum_5m", Agg: "sum", Field: "amount", Window: config.Duration(5 * time.Minute)},
			}})
	})
	st := f.produce(t, loadgen.Config{Seed: 4, Cards: 300, Merchants: 40, EventsPerSecond: 50}, n, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts, _ := streams.ClientOpts(f.cfg.Kafka)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	repart := f.cfg.RepartitionTopic("payments", "merchant")
	src := f.cfg.Sources[0]
	// The source's task forwards accepted events to the repartition topic,
	// and hands its hooks every event's keys of card and merchant.
	var mu sync.Mutex
	hookKeys := map[string][]processors.EntityKey{} // by event id
	keysHook := func(_ context.Context, ev *processors.Event, out []*kgo.Record) ([]*kgo.Record, error) {
		keys := make([]processors.EntityKey, len(ev.Keys))
		for i, k := range ev.Keys {
			keys[i] = processors.EntityKey{Entity: k.Entity, Key: slices.Clone(k.Key)}
		}
		if ev.EntityKey("device") != nil || !bytes.Equal(ev.EntityKey("card"), []byte(ev.Key)) {
			return out, fmt.Errorf("event %s: device key %q, card key %q, event key %q", ev.ID, ev.EntityKey("device"), ev.EntityKey("card"), ev.Key)
		}
		mu.Lock()
		hookKeys[ev.ID] = keys
		mu.Unlock()
		return out, nil
	}
	srcTask, err := processors.NewTask(processors.TaskConfig{Source: src, Views: f.cfg.ViewsOfEntity("payments", "card"), Entities: f.cfg.Entities,
		FeatureTopics: []string{f.cfg.FeaturesTopic("card_activity")}, ChangelogTopic: f.cfg.ChangelogTopic("payments"), Opts: opts,
		Repartitions: []processors.Repartition{{Field: "merchant_id", Topic: repart, Partitions: f.cfg.Topics.Partitions}}}, f.txn, f.rows, log, nil, keysHook)
	if err != nil {
		t.Fatal(err)
	}
	rsrc := src
	rsrc.Name, rsrc.Topic, rsrc.Key = "payments.merchant", repart, "merchant_id"
	rserde, err := schemas.NewSerde(ctx, f.reg, schemas.Subject(repart), schemas.MustParse(schemas.TransactionSchema))
	if err != nil {
		t.Fatal(err)
	}
	featTopic := f.cfg.FeaturesTopic("merchant_activity")
	task, err := processors.NewTask(processors.TaskConfig{Source: rsrc, Views: f.cfg.ViewsOfEntity("payments", "merchant"), Entities: f.cfg.Entities,
		FeatureTopics: []string{featTopic}, ChangelogTopic: f.cfg.EntityChangelogTopic("payments", "merchant"), Opts: opts}, rserde, f.rows, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	loop := func(stage, topic string, p streams.Processor) *streams.Loop {
		return streams.NewLoop(streams.LoopConfig{Stage: stage, Group: f.cfg.Topics.Prefix + "." + stage, TransactionalID: f.cfg.Topics.Prefix + "." + stage + ".a",
			Topics: []string{topic}, DeadLetterTopic: f.cfg.DeadLetterTopic(), Opts: opts}, p, log, nil)
	}
	done := make(chan error, 2)
	go func() { done <- loop("cards", src.Topic, srcTask).Run(ctx) }()
	go func() { done <- loop("merchants", repart, task).Run(ctx) }()
	rows := f.consumeFirst(t, featTopic, st.Transactions, 2*time.Minute)
	cancel()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// The repartition holds every accepted source event once, keyed by merchant.
	raw := f.consume(t, repart, st.Transactions, 30*time.Second)
	seen := map[string]bool{}
	type ev struct {
		merchant string
		time     int64
		amount   float64
	}
	byPart := map[int32][]ev{}
	index := map[[2]int64]int{} // (partition, offset) -> position in byPart
	for _, r := range raw {
		var tx schemas.Transaction
		if err := rserde.Decode(ctx, r.Value, &tx); err != nil {
			t.Fatal(err)
		}
		if seen[tx.TxnID] {
			t.Fatalf("%s twice in the repartition topic", tx.TxnID)
		}
		seen[tx.TxnID] = true
		want := []processors.EntityKey{{Entity: "card", Key: []byte(tx.CardID)}, {Entity: "merchant", Key: []byte(tx.MerchantID)}}
		if got := hookKeys[tx.TxnID]; !slices.EqualFunc(got, want, func(a, b processors.EntityKey) bool { return a.Entity == b.Entity && bytes.Equal(a.Key, b.Key) }) {
			t.Fatalf("%s: hook saw keys %q, want %q", tx.TxnID, got, want)
		}
		if string(r.Key) != tx.MerchantID || r.Partition != processors.Partition(r.Key, f.cfg.Topics.Partitions) {
			t.Fatalf("%s keyed %q on partition %d, merchant %s", tx.TxnID, r.Key, r.Partition, tx.MerchantID)
		}
		index[[2]int64{int64(r.Partition), r.Offset}] = len(byPart[r.Partition])
		byPart[r.Partition] = append(byPart[r.Partition], ev{tx.MerchantID, tx.EventTime, tx.Amount})
	}
	if len(seen) != st.Transactions {
		t.Fatalf("%d events in the repartition topic, %d accepted at the source", len(seen), st.Transactions)
	}
	got := 0
	for k, row := range f.finalRows(t, rows) {
		i, ok := index[k]
		if !ok || row.SourceTopic != repart {
			t.Fatalf("row derives from %s/%d@%d, not a repartitioned event", row.SourceTopic, row.SourcePartition, row.SourceOffset)
		}
		evs := byPart[row.SourcePartition]
		e := evs[i]
		var c, sum float64
		// The final version of a row holds every event at or before it in
		// (time, offset) order, however late it arrived.
		for j, q := range evs {
			if q.merchant == e.merchant && (q.time < e.time || q.time == e.time && j <= i) && q.time > e.time-5*60*1000 {
				c++
				sum += q.amount
			}
		}
		if row.Entity != e.merchant || row.Values[0].Value != c || math.Abs(row.Values[1].Value-sum) > 1e-6*math.Max(1, sum) {
			t.Fatalf("merchant %s row %+v, recomputed count %v sum %v", e.merchant, row.Values, c, sum)
		}
		got++
	}
	if got != st.Transactions {
		t.Fatalf("%d merchant rows for %d events", got, st.Transactions)
	}
}

// TestWindowedViews runs a tumbling view (emit both) and a session view
// (emit close) through stop/restart cycles, then checks against a brute-force
// recomputation: every event has exactly one update row holding its window's
// running count and sum in processing order, and every window the final
// watermark of its partition has passed has a final row equal to the batch
// aggregate over all its events; windows it has not passed have none.
func TestWindowedViews(t *testing.T) {
	for _, store := range []string{config.StoreMemory, config.StorePebble} {
		t.Run(store, func(t *testing.T) { testWindowedViews(t, store) })
	}
}

func testWindowedViews(t *testing.T, store string) {
	n := 8000
	if testing.Short() {
		n = 3000
	}
	const gap = 10 * time.Second
	f := newFixture(t, 3, func(c *config.Config) {
		c.State.Store = store
		c.Views = append(c.Views,
			config.View{Name: "card_minutes", Source: "payments", Entity: "card", TTL: config.Duration(time.Hour), Kind: config.KindTumbling,
				Window: config.Duration(time.Minute), Emit: config.EmitBoth, Features: []config.Feature{
					{Name: "n", Agg: "count"}, {Name: "spend", Agg: "sum", Field: "amount"}, {Name: "last2", Agg: "last_n", Field: "amount", N: 2}}},
			config.View{Name: "card_sessions", Source: "payments", Entity: "card", TTL: config.Duration(time.Hour), Kind: config.KindSession,
				Gap: config.Duration(gap), Emit: config.EmitClose, Features: []config.Feature{
					{Name: "n", Agg: "count"}, {Name: "spend", Agg: "sum", Field: "amount"}}},
		)
	})
	st := f.produce(t, loadgen.Config{Seed: 11, Cards: 200, EventsPerSecond: 40}, n, 0)
	rng := rand.New(rand.NewPCG(3, 3))
	for i := range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f.loop(t, "a").Run(ctx) }()
		time.Sleep(time.Duration(300+rng.IntN(700)) * time.Millisecond)
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.loop(t, "a").Run(ctx) }()
	isUpdate := func(r *schemas.FeatureRow) bool {
		return r.RevisesOffset < 0 && r.EventID != "" && r.EventTime != r.WindowEnd-1
	}
	minutes := f.consumeRows(t, f.cfg.FeaturesTopic("card_minutes"), st.Transactions, isUpdate, 2*time.Minute)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sessions := f.consumeRows(t, f.cfg.FeaturesTopic("card_sessions"), 1, func(*schemas.FeatureRow) bool { return true }, 30*time.Second)

	raw := f.consume(t, f.cfg.Sources[0].Topic, n, 30*time.Second)
	type event struct {
		part        int32
		off, time   int64
		card        string
		amount      float64
		windowStart int64
		runN        float64
		runSpend    float64
	}
	byPart := map[int32][]*event{}
	for _, r := range raw {
		var tx schemas.Transaction
		if len(r.Key) == 0 || f.txn.Decode(context.Background(), r.Value, &tx) != nil {
			continue
		}
		byPart[r.Partition] = append(byPart[r.Partition], &event{part: r.Partition, off: r.Offset, time: tx.EventTime, card: tx.CardID, amount: tx.Amount})
	}
	type winKey struct {
		card  string
		start int64
	}
	type agg struct{ n, spend float64 }
	updates := map[[2]int64]*event{}
	finals := map[winKey]agg{}               // windows the final watermark passed
	open := map[winKey]bool{}                // windows it did not
	sessionFinals := map[winKey][2]float64{} // start -> n, spend (end checked below)
	sessionEnds := map[winKey]int64{}
	for _, evs := range byPart {
		wm := int64(math.MinInt64)
		for _, e := range evs {
			wm = max(wm, e.time)
		}
		running := map[winKey]*agg{}
		byCard := map[string][]*event{}
		for _, e := range evs { // offset order
			e.windowStart = e.time - e.time%60000
			k := winKey{e.card, e.windowStart}
			a := running[k]
			if a == nil {
				a = &agg{}
				running[k] = a
			}
			a.n++
			a.spend += e.amount
			e.runN, e.runSpend = a.n, a.spend
			updates[[2]int64{int64(e.part), e.off}] = e
			byCard[e.card] = append(byCard[e.card], e)
		}
		for k, a := range running {
			if k.start+60000 <= wm {
				finals[k] = *a
			} else {
				open[k] = true
			}
		}
		for card, es := range byCard {
			sorted := append([]*event(nil), es...)
			slices.SortStableFunc(sorted, func(a, b *event) int { return cmpInt(a.time, b.time) })
			for i := 0; i < len(sorted); {
				j, spend := i, 0.0
				for ; j < len(sorted) && (j == i || sorted[j].time < sorted[j-1].time+gap.Milliseconds()); j++ {
					spend += sorted[j].amount
				}
				end := sorted[j-1].time + gap.Milliseconds()
				if end <= wm {
					k := winKey{card, sorted[i].time}
					sessionFinals[k] = [2]float64{float64(j - i), spend}
					sessionEnds[k] = end
				}
				i = j
			}
		}
	}
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }
	gotUpdates := map[[2]int64]bool{}
	lastFinal := map[winKey]*schemas.FeatureRow{}
	for _, r := range minutes {
		var row schemas.FeatureRow
		if err := f.rows.Decode(context.Background(), r.Value, &row); err != nil {
			t.Fatal(err)
		}
		k := winKey{row.Entity, row.WindowStart}
		if isUpdate(&row) {
			pk := [2]int64{int64(row.SourcePartition), row.SourceOffset}
			e := updates[pk]
			if e == nil || gotUpdates[pk] {
				t.Fatalf("update row for %v: unknown or duplicate", pk)
			}
			gotUpdates[pk] = true
			if row.WindowStart != e.windowStart || row.WindowEnd != e.windowStart+60000 || row.Values[0].Value != e.runN || !near(row.Values[1].Value, e.runSpend) {
				t.Fatalf("update row %+v for event %+v", row, *e)
			}
			continue
		}
		if row.EventTime != row.WindowEnd-1 {
			t.Fatalf("row neither an update nor final: %+v", row)
		}
		if open[k] {
			t.Fatalf("final row for window %v, which the watermark has not passed", k)
		}
		if prev := lastFinal[k]; prev != nil && row.RevisesOffset != prev.SourceOffset {
			t.Fatalf("second final row for %v revises %d, want %d (no late events in this stream: there should be no correction)", k, row.RevisesOffset, prev.SourceOffset)
		}
		lastFinal[k] = &row
	}
	if len(gotUpdates) != len(updates) {
		t.Fatalf("%d update rows for %d events", len(gotUpdates), len(updates))
	}
	for k, want := range finals {
		row := lastFinal[k]
		if row == nil {
			t.Fatalf("no final row for window %v", k)
		}
		if row.Values[0].Value != want.n || !near(row.Values[1].Value, want.spend) {
			t.Fatalf("final row of %v: n %v spend %v, batch %v %v", k, row.Values[0].Value, row.Values[1].Value, want.n, want.spend)
		}
	}
	if len(lastFinal) != len(finals) {
		t.Fatalf("%d windows with final rows, %d closed", len(lastFinal), len(finals))
	}
	gotSessions := map[winKey]bool{}
	for _, r := range sessions {
		var row schemas.FeatureRow
		if err := f.rows.Decode(context.Background(), r.Value, &row); err != nil {
			t.Fatal(err)
		}
		k := winKey{row.Entity, row.WindowStart}
		want, ok := sessionFinals[k]
		if !ok || gotSessions[k] {
			t.Fatalf("session row %+v: not a closed session of the batch, or twice", row)
		}
		gotSessions[k] = true
		if row.WindowEnd != sessionEnds[k] || row.Values[0].Value != want[0] || !near(row.Values[1].Value, want[1]) {
			t.Fatalf("session row %+v, batch n %v spend %v end %d", row, want[0], want[1], sessionEnds[k])
		}
	}
	if len(gotSessions) != len(sessionFinals) {
		t.Fatalf("%d session rows, %d closed sessions in the batch", len(gotSessions), len(sessionFinals))
	}
	t.Logf("%d events, %d closed minute windows, %d closed sessions", len(updates), len(finals), len(sessionFinals))
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
