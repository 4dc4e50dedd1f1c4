package backfill_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/weirhq/weir/featurestore/backfill"
	"github.com/weirhq/weir/featurestore/offline"
	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/schemas/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const yaml = `data_dir: DATA
kafka:
  client_id: CID
  commit_interval: 50ms
redis:
  key_prefix: PREFIX
clickhouse:
  database: DB
topics:
  prefix: TOPICS
  partitions: 3
  replication: 1
sources:
  - name: payments
    topic: SOURCE
    schema: transaction
    key: card_id
    id: txn_id
    event_time: event_time
entities:
  - name: card
    key: card_id
views:
  - name: card_recent
    source: payments
    entity: card
    ttl: 24h
    features:
      - {name: n_10s,   agg: count, window: 10s}
      - {name: sum_10s, agg: sum,   field: amount, window: 10s}
      - {name: max_30s, agg: max,   field: amount, window: 30s}
      - {name: last,    agg: last,  field: amount}
  - name: card_windows
    source: payments
    entity: card
    ttl: 24h
    kind: tumbling
    window: 5s
    features:
      - {name: w_n,   agg: count}
      - {name: w_sum, agg: sum, field: amount}
`

// event is one produced transaction.
type event struct {
	card      string
	id        string
	time      int64
	amount    float64
	partition int32
	offset    int64
}

// TestBackfillHandover is the no-gap, no-overlap proof on real Kafka,
// ClickHouse and Redis. History is produced before and after the replay
// start T; a producer keeps adding live events while the lane backfills to
// its cut-over and returns, and while it runs again in follow mode from
// its handover vector. Then ClickHouse must hold exactly one row per source
// event at or after T (none before), with the values an independent
// recomputation gives over those events, and Redis every card's newest row.
func TestBackfillHandover(t *testing.T) {
	seeds, kind := testenv.Kafka(t)
	t.Logf("kafka: %s", kind)
	rdb, prefix := testenv.Redis(t)
	conn, db := testenv.ClickHouse(t)
	t.Setenv("WEIR_KAFKA_BROKERS", strings.Join(seeds, ","))
	t.Setenv("WEIR_REDIS_ADDR", testenv.RedisAddr(t))
	t.Setenv("WEIR_CLICKHOUSE_ADDR", testenv.ClickHouseAddr(t))
	topics := testenv.Name("weir")
	srcTopic := topics + ".payments"
	text := strings.NewReplacer("DATA", t.TempDir(), "CID", testenv.Name("cid"), "PREFIX", prefix, "DB", db,
		"TOPICS", topics, "SOURCE", srcTopic).Replace(yaml)
	path := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	view, _ := cfg.View("card_recent")
	ctx := context.Background()

	srv, err := registry.Open("")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	reg, err := schemas.NewSRClient(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	srcSerde, err := schemas.NewSerde(ctx, reg, schemas.Subject(srcTopic), schemas.MustParse(schemas.TransactionSchema))
	if err != nil {
		t.Fatal(err)
	}
	rowSerde, err := schemas.NewSerde(ctx, reg, schemas.Subject(cfg.FeaturesTopic(view.Name)), schemas.MustParse(schemas.FeatureRowSchema))
	if err != nil {
		t.Fatal(err)
	}
	off, err := offline.New(conn, db, cfg.Views)
	if err != nil {
		t.Fatal(err)
	}
	if err := off.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	on := online.New(rdb, prefix, cfg.Views)

	prod, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(srcTopic), kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()

	// Event times (= Kafka timestamps) rise by 40 ms per event, from 20
	// minutes ago; T is the time of the 300th event.
	rng := rand.New(rand.NewPCG(7, 11))
	base := time.Now().Add(-20 * time.Minute).UnixMilli()
	var (
		mu     sync.Mutex
		events []event
		next   int
	)
	produce := func(n int) {
		var recs []*kgo.Record
		var evs []event
		mu.Lock()
		for range n {
			e := event{card: fmt.Sprintf("card-%02d", rng.IntN(25)), id: fmt.Sprintf("tx-%06d", next), time: base + int64(next)*40, amount: math.Round(rng.Float64()*10000) / 100}
			next++
			b, err := srcSerde.Encode(&schemas.Transaction{TxnID: e.id, CardID: e.card, Amount: e.amount, EventTime: e.time, Currency: "EUR"})
			if err != nil {
				t.Error(err)
			}
			recs = append(recs, &kgo.Record{Key: []byte(e.card), Value: b, Timestamp: time.UnixMilli(e.time)})
			evs = append(evs, e)
		}
		mu.Unlock()
		res := prod.ProduceSync(ctx, recs...)
		if err := res.FirstErr(); err != nil {
			t.Error(err)
			return
		}
		at := map[*kgo.Record]int{} // results come in completion order
		for i, r := range recs {
			at[r] = i
		}
		for _, r := range res {
			i := at[r.Record]
			evs[i].partition, evs[i].offset = r.Record.Partition, r.Record.Offset
		}
		mu.Lock()
		events = append(events, evs...)
		mu.Unlock()
	}
	if err := prodCreate(ctx, prod, srcTopic, 3); err != nil {
		t.Fatal(err)
	}
	produce(1500) // history; T falls at event 300
	from := time.UnixMilli(base + 300*40)
	// A bad record after T: dead-lettered by the lane into its own topic.
	if err := prod.ProduceSync(ctx, &kgo.Record{Key: []byte("card-00"), Value: []byte("not avro"), Timestamp: time.UnixMilli(base + 1000*40)}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// Live traffic keeps coming while the lane runs.
	live, stopLive := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-live.Done():
				return
			case <-tick.C:
				produce(5)
			}
		}
	}()
	defer stopLive()

	bc := backfill.Config{Cfg: cfg, View: view, Instance: "test", Kafka: []kgo.Opt{kgo.SeedBrokers(seeds...)},
		SourceSerde: srcSerde, RowSerde: rowSerde, Online: on, Offline: off, MaxBatch: 150, Progress: time.Second, Log: logger(t)}
	if _, err := backfill.Run(ctx, bc); err == nil || !strings.Contains(err.Error(), "-from: required") {
		t.Fatalf("a first run without From: %v, want an error naming -from", err)
	}
	bc.From = from
	began := time.Now()

	// Run 1 is interrupted once the lane has committed a transaction: it
	// reports its handover offsets, where run 2 continues.
	adm := kadm.NewClient(prod)
	lane := backfill.LaneNames(cfg, view, bc.Instance)
	lo, err := adm.ListOffsetsAfterMilli(ctx, from.UnixMilli(), srcTopic)
	if err != nil {
		t.Fatal(err)
	}
	starts := map[int32]int64{}
	lo.Each(func(o kadm.ListedOffset) { starts[o.Partition] = o.Offset })
	ictx, interrupt := context.WithCancel(ctx)
	go func() {
		defer interrupt()
		for ictx.Err() == nil {
			if got, err := adm.FetchOffsets(ictx, lane.Group); err == nil {
				moved := false
				got.Each(func(o kadm.OffsetResponse) { moved = moved || o.At > 0 && o.At != starts[o.Partition] })
				if moved {
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	st0, err := backfill.Run(ictx, bc)
	if err == nil {
		t.Log("run 1 reached its cut-over before the interrupt")
	} else if !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	interrupt()
	t.Logf("run 1 (interrupted): start %v handover %v", st0.Start, st0.Handover)

	st1, err := backfill.Run(ctx, bc)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("run 2: start %v cut %v handover %v in %s", st1.Start, st1.Cut, st1.Handover, time.Since(began).Round(time.Millisecond))
	if !st1.Resumed || !maps.Equal(st1.Start, st0.Handover) {
		t.Fatalf("run 2 started at %v (resumed %v), run 1 handed over at %v", st1.Start, st1.Resumed, st0.Handover)
	}
	for p, c := range st1.Cut {
		if st1.Handover[p] < c {
			t.Errorf("partition %d: handover %d before the cut %d", p, st1.Handover[p], c)
		}
	}

	// A tumbling view's lane: its open windows cross the handover in the
	// lane's changelog.
	windows, _ := cfg.View("card_windows")
	wc := bc
	wc.View = windows
	wst1, err := backfill.Run(ctx, wc)
	if err != nil {
		t.Fatal(err)
	}

	// Follow mode: each lane goes on from its handover vector as the live
	// processor; more live events arrive, then stop.
	fctx, stopFollow := context.WithCancel(ctx)
	bc.Follow, wc.Follow = true, true
	bc.From, wc.From = time.Time{}, time.Time{}
	done := make(chan error, 2)
	var st2, wst2 backfill.Stats
	go func() { var err error; st2, err = backfill.Run(fctx, bc); done <- err }()
	go func() { var err error; wst2, err = backfill.Run(fctx, wc); done <- err }()
	time.Sleep(1500 * time.Millisecond)
	stopLive()
	wg.Wait()
	mu.Lock()
	want := slices.Clone(events)
	mu.Unlock()
	var replayed []event
	for _, e := range want {
		if e.time >= from.UnixMilli() {
			replayed = append(replayed, e)
		}
	}
	// Wait until ClickHouse has a row per replayed event and per closed
	// window (or time out).
	table := db + "." + offline.TableName(view.Name, view.Version())
	wtable := db + "." + offline.TableName(windows.Name, windows.Version())
	wexpect, required := recomputeWindows(replayed, want, 5000)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var n, w uint64
		if err := conn.QueryRow(ctx, "SELECT count(DISTINCT source_partition, source_offset) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		qctx := clickhouse.Context(ctx, clickhouse.WithExternalTable(requiredTable(t, required)))
		if err := conn.QueryRow(qctx, "SELECT count(DISTINCT entity, window_start_ms) FROM "+wtable+" WHERE (entity, window_start_ms) IN (SELECT entity, window_start_ms FROM weir_required)").Scan(&w); err != nil {
			t.Fatal(err)
		}
		if int(n) >= len(replayed) && int(w) >= len(required) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	stopFollow()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if !wst2.Resumed || !maps.Equal(wst2.Start, wst1.Handover) {
		t.Errorf("windows lane: follow run started at %v (resumed %v), handover was %v", wst2.Start, wst2.Resumed, wst1.Handover)
	}
	checkWindows(t, conn, wtable, wexpect, required)
	if !st2.Resumed {
		t.Error("follow run did not resume")
	}
	for p, h := range st1.Handover {
		if st2.Start[p] != h {
			t.Errorf("partition %d: follow run started at %d, handover was %d", p, st2.Start[p], h)
		}
	}
	t.Logf("%d events, %d at or after T; follow handover %v; total %s", len(want), len(replayed), st2.Handover, time.Since(began).Round(time.Millisecond))

	expect := recompute(replayed)
	type key struct {
		p   int32
		off int64
	}
	rows, err := conn.Query(ctx, "SELECT source_partition, source_offset, event_id, entity, event_time_ms, revises_offset, n_10s, sum_10s, max_30s, last FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	got := map[key][]float64{}
	dups, bad := 0, 0
	for rows.Next() {
		var (
			p                int32
			o, et, rev       int64
			id, ent          string
			n, sum, mx, last float64
		)
		if err := rows.Scan(&p, &o, &id, &ent, &et, &rev, &n, &sum, &mx, &last); err != nil {
			t.Fatal(err)
		}
		k := key{p, o}
		v := []float64{n, sum, mx, last}
		if prev, ok := got[k]; ok {
			if !slices.Equal(prev, v) {
				t.Errorf("%s: two different rows %v and %v", id, prev, v)
			}
			dups++ // a retried insert: identical, collapsed by merges
			continue
		}
		got[k] = v
		w, ok := expect[id]
		switch {
		case !ok:
			if bad++; bad <= 5 {
				t.Errorf("row of %s (partition %d offset %d, event time %d): not an event at or after T", id, p, o, et)
			}
		case w.partition != p || w.offset != o || rev != -1 || !near(w.vals, v):
			if bad++; bad <= 5 {
				t.Errorf("%s: got %d/%d %v (revises %d), want %d/%d %v", id, p, o, v, rev, w.partition, w.offset, w.vals)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	missing := 0
	for id, w := range expect {
		if _, ok := got[key{w.partition, w.offset}]; !ok {
			if missing++; missing <= 5 {
				t.Errorf("no row for %s (partition %d offset %d)", id, w.partition, w.offset)
			}
		}
	}
	t.Logf("%d rows, %d identical duplicates, %d wrong, %d missing", len(got), dups, bad, missing)

	// The bad record went to the lane's dead-letter topic, not the
	// processor's.
	dead := 0
	dl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumeTopics(lane.DeadLetter), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		t.Fatal(err)
	}
	dctx, cancelDead := context.WithTimeout(ctx, 10*time.Second)
	for dead == 0 && dctx.Err() == nil {
		dead += len(dl.PollFetches(dctx).Records())
	}
	cancelDead()
	dl.Close()
	if dead != 1 {
		t.Errorf("%d records in the lane's dead-letter topic %s, want 1", dead, lane.DeadLetter)
	}
	if topics, err := adm.ListTopics(ctx, cfg.DeadLetterTopic()); err != nil || topics.Has(cfg.DeadLetterTopic()) {
		t.Errorf("the processor's dead-letter topic %s exists (%v): the lane wrote to it", cfg.DeadLetterTopic(), err)
	}

	// Another writer of the version (a main processor computing it too) is
	// refused before the lane goes on.
	foreign := schemas.FeatureRow{Entity: "card-00", View: view.Name, ViewVersion: view.Version(), EventTime: base, KnownTime: base,
		SourceTopic: srcTopic, SourcePartition: 0, SourceOffset: st2.Handover[0] + 100, RevisesOffset: -1, EventID: "foreign",
		Values: []schemas.FeatureValue{{Name: "n_10s", Value: 1}, {Name: "sum_10s", Value: 1}, {Name: "max_30s", Value: 1}, {Name: "last", Value: 1}}}
	fb, err := rowSerde.Encode(&foreign)
	if err != nil {
		t.Fatal(err)
	}
	manual, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer manual.Close()
	if err := manual.ProduceSync(ctx, &kgo.Record{Topic: cfg.FeaturesTopic(view.Name), Partition: 0, Key: []byte("card-00"), Value: fb}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	bc.Follow = false
	if _, err := backfill.Run(ctx, bc); err == nil || !strings.Contains(err.Error(), "views[card_recent]: ") || !strings.Contains(err.Error(), "another processor computes this version") {
		t.Errorf("a foreign row of the version: %v, want a refusal naming views[card_recent]", err)
	}

	// Redis holds each card's newest row.
	newest := map[string]expected{}
	for _, e := range replayed {
		newest[e.card] = expect[e.id]
	}
	var keys []online.Key
	for c := range newest {
		keys = append(keys, online.Key{View: view.Name, Version: view.Version(), Entity: c})
	}
	rs, found, err := on.GetMany(ctx, keys)
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range keys {
		w := newest[k.Entity]
		g := rs[i]
		if !found[i] || g.Offset != w.offset || !near(w.vals, []float64{g.Values["n_10s"], g.Values["sum_10s"], g.Values["max_30s"], g.Values["last"]}) {
			t.Errorf("Redis %s: %+v (found %v), want offset %d %v", k.Entity, g, found[i], w.offset, w.vals)
		}
	}
}

type window struct {
	card  string
	start int64
}

// recomputeWindows is the tumbling oracle: count and sum per card and
// window [start, start+size) over the replayed events; required are the
// windows that must have closed: those ending a second or more before their
// partition's newest event time (the watermark, out_of_order being 0).
func recomputeWindows(replayed, all []event, size int64) (map[window][2]float64, map[window]bool) {
	wm := map[int32]int64{}
	part := map[string]int32{}
	for _, e := range all {
		wm[e.partition] = max(wm[e.partition], e.time)
		part[e.card] = e.partition
	}
	out := map[window][2]float64{}
	for _, e := range replayed {
		w := window{e.card, e.time / size * size}
		v := out[w]
		out[w] = [2]float64{v[0] + 1, v[1] + e.amount}
	}
	required := map[window]bool{}
	for w := range out {
		if w.start+size+1000 <= wm[part[w.card]] {
			required[w] = true
		}
	}
	return out, required
}

// checkWindows: one final row per closed window, with the oracle's values;
// every required window present.
func checkWindows(t *testing.T, conn driver.Conn, table string, expect map[window][2]float64, required map[window]bool) {
	t.Helper()
	rows, err := conn.Query(context.Background(), "SELECT entity, window_start_ms, revises_offset, w_n, w_sum FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	got := map[window][2]float64{}
	bad, dups := 0, 0
	for rows.Next() {
		var (
			w      window
			rev    int64
			n, sum float64
		)
		if err := rows.Scan(&w.card, &w.start, &rev, &n, &sum); err != nil {
			t.Fatal(err)
		}
		if prev, ok := got[w]; ok {
			if prev != [2]float64{n, sum} {
				t.Errorf("window %v: two rows %v and %v", w, prev, [2]float64{n, sum})
			}
			dups++
			continue
		}
		got[w] = [2]float64{n, sum}
		e, ok := expect[w]
		if rev != -1 || !ok || !near(e[:], []float64{n, sum}) {
			if bad++; bad <= 5 {
				t.Errorf("window %v: got %v (revises %d), want %v (known %v)", w, [2]float64{n, sum}, rev, e, ok)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	missing := 0
	for w := range required {
		if _, ok := got[w]; !ok {
			if missing++; missing <= 5 {
				t.Errorf("no row for closed window %v", w)
			}
		}
	}
	t.Logf("windows: %d rows (%d required closed), %d identical duplicates, %d wrong, %d missing", len(got), len(required), dups, bad, missing)
}

// requiredTable sends the required windows as an external table.
func requiredTable(t *testing.T, required map[window]bool) *ext.Table {
	tb, err := ext.NewTable("weir_required", ext.Column("entity", column.Type("String")), ext.Column("window_start_ms", column.Type("Int64")))
	if err != nil {
		t.Fatal(err)
	}
	for w := range required {
		if err := tb.Append(w.card, w.start); err != nil {
			t.Fatal(err)
		}
	}
	return tb
}

type expected struct {
	partition int32
	offset    int64
	vals      []float64
}

// recompute is the batch oracle: per card, in event-time order, count and
// sum over (t-10s, t], max over (t-30s, t], and the last amount, over the
// replayed events only.
func recompute(evs []event) map[string]expected {
	by := map[string][]event{}
	for _, e := range evs {
		by[e.card] = append(by[e.card], e)
	}
	out := map[string]expected{}
	for _, es := range by {
		slices.SortFunc(es, func(a, b event) int { return int(a.time - b.time) })
		for i, e := range es {
			var n, sum float64
			mx := math.Inf(-1)
			for j := i; j >= 0 && es[j].time > e.time-30_000; j-- {
				if es[j].time > e.time-10_000 {
					n++
					sum += es[j].amount
				}
				mx = max(mx, es[j].amount)
			}
			out[e.id] = expected{e.partition, e.offset, []float64{n, sum, mx, e.amount}}
		}
	}
	return out
}

func near(a, b []float64) bool {
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-9*max(1, math.Abs(a[i])) {
			return false
		}
	}
	return len(a) == len(b)
}

func logger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func prodCreate(ctx context.Context, cl *kgo.Client, topic string, p int32) error {
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, p, 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	return err
}

// TestConfigErrors: a backfill's config errors name the flag or field, and
// come before any service is reached.
func TestConfigErrors(t *testing.T) {
	text := strings.NewReplacer("DATA", t.TempDir(), "CID", "cid", "PREFIX", "p", "DB", "db", "TOPICS", "weir", "SOURCE", "tx").Replace(yaml) + `  - name: merchant_recent
    source: payments
    entity: merchant
    ttl: 24h
    features:
      - {name: n_1m, agg: count, window: 1m}
`
	text = strings.Replace(text, "entities:\n", "entities:\n  - name: merchant\n    key: merchant_id\n", 1)
	path := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	merchant, _ := cfg.View("merchant_recent")
	card, _ := cfg.View("card_recent")
	for _, tc := range []struct {
		c    backfill.Config
		want string
	}{
		{backfill.Config{Cfg: cfg}, "-view"},
		{backfill.Config{Cfg: cfg, View: merchant, Instance: "i"}, "views[merchant_recent].entity"},
		{backfill.Config{Cfg: cfg, View: card}, "-instance"},
	} {
		_, err := backfill.Run(context.Background(), tc.c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("got %v, want an error naming %s", err, tc.want)
		}
	}
}
