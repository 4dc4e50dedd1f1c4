package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/roles"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/schemas/registry"
)

// freshnessConfig is the demo's source and a three-feature sliding view,
// exactly-once, with the default commit interval (100ms); no models.
const freshnessConfig = `
kafka: {client_id: fresh}
topics: {partitions: 4, replication: 1}
sources:
  - {name: payments, topic: payments, schema: transaction, key: card_id, id: txn_id, event_time: event_time,
     out_of_order: 10s, lateness: 1m}
entities:
  - {name: card, key: card_id}
views:
  - name: card_activity
    source: payments
    entity: card
    ttl: 24h
    features:
      - {name: n_5m,   agg: count, window: 5m}
      - {name: sum_5m, agg: sum, field: amount, window: 5m}
      - {name: last,   agg: last, field: amount}
`

// sample is an event whose arrival in Redis is watched.
type sample struct {
	entity   string
	eventMs  int64
	produced time.Time
	warm     bool // sent during the warm-up: not counted
}

// freshness runs the processor and materializer roles (as `weir run --role
// processor,materializer` does) and produces events at f.freshRate per
// second for f.freshFor. One event in 50 is watched: every 2ms one
// pipelined read of every watched entity's Redis row (online.GetMany, the
// read the serving API makes) checks whether the row's event time reached
// the event's. Latency = the read that saw it minus the time before the
// event was handed to the producer. The first 5 seconds are a warm-up.
func freshness(ctx context.Context, e *env, f *flags) error {
	cfg, err := config.Parse("freshness.yaml", []byte(freshnessConfig), func(string) string { return "" })
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "weirbench-fresh-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	run := random()
	cfg.DataDir, cfg.State.Dir = tmp, tmp+"/state"
	cfg.Kafka.Brokers = e.seeds
	cfg.Kafka.ClientID = "weirbench-fresh-" + run
	cfg.Topics.Prefix = "weirbench.fresh." + run
	cfg.Sources[0].Topic = "weirbench.fresh." + run + ".payments"
	cfg.Redis.Addr = os.Getenv("WEIR_REDIS_ADDR")
	cfg.Redis.KeyPrefix = "weirbench:fresh:" + run
	cfg.ClickHouse.Addr = os.Getenv("WEIR_CLICKHOUSE_ADDR")
	cfg.ClickHouse.Database = e.chDB

	srv, err := registry.Open(tmp)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go srv.Serve(l)
	defer l.Close()
	cfg.SchemaRegistry.URL = "http://" + l.Addr().String()

	renv, err := roles.NewEnv(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), "fresh")
	if err != nil {
		return err
	}
	defer renv.Close()
	if err := renv.Provision(ctx); err != nil {
		return err
	}
	defer func() {
		if td, err := e.adm.ListTopics(context.Background()); err == nil {
			var topics []string
			for _, t := range td.Names() {
				if strings.HasPrefix(t, "weirbench.fresh."+run) {
					topics = append(topics, t)
				}
			}
			e.adm.DeleteTopics(context.Background(), topics...)
		}
		iter := e.rdb.Scan(context.Background(), 0, cfg.Redis.KeyPrefix+":*", 10000).Iterator()
		for iter.Next(context.Background()) {
			e.rdb.Unlink(context.Background(), iter.Val())
		}
	}()
	plan, err := renv.Build(ctx, []string{"processor", "materializer"})
	if err != nil {
		return err
	}
	defer plan.Close()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- roles.RunAll(rctx, plan.Runners) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "roles:", err)
		}
	}()

	src := cfg.Sources[0]
	sd, err := renv.Serde(ctx, src.Topic, src.Schema)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.seeds...), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	view := &cfg.Views[0]
	on := online.New(e.rdb, cfg.Redis.KeyPrefix, cfg.Views)

	// Two plain consumers of the features topic say where the time goes:
	// read_uncommitted sees a row when the processor produced it, inside
	// its transaction; read_committed when the transaction committed, as
	// the materializer may read it.
	featSerde, err := renv.Serde(ctx, cfg.FeaturesTopic(view.Name), schemas.FeatureRowSchema)
	if err != nil {
		return err
	}
	var stageMu sync.Mutex
	seenAt := [2]map[string]time.Time{{}, {}}
	var swg sync.WaitGroup
	defer swg.Wait()
	for i, iso := range []kgo.IsolationLevel{kgo.ReadUncommitted(), kgo.ReadCommitted()} {
		c, err := kgo.NewClient(kgo.SeedBrokers(e.seeds...), kgo.ConsumeTopics(cfg.FeaturesTopic(view.Name)), kgo.FetchIsolationLevel(iso),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			return err
		}
		defer c.Close()
		swg.Go(func() {
			for rctx.Err() == nil {
				fs := c.PollFetches(rctx)
				now := time.Now()
				stageMu.Lock()
				fs.EachRecord(func(r *kgo.Record) {
					var row schemas.FeatureRow
					if featSerde.Decode(ctx, r.Value, &row) == nil {
						k := fmt.Sprint(row.Entity, "/", row.EventTime)
						if _, ok := seenAt[i][k]; !ok {
							seenAt[i][k] = now
						}
					}
				})
				stageMu.Unlock()
			}
		})
	}
	var stages [2][]time.Duration

	const cards, every, warmup = 10_000, 50, 5 * time.Second
	watch := make(chan sample, 1<<16)
	var lat []time.Duration
	var missed int
	var firstServed atomic.Int64 // unix ns of the first watched event seen in Redis
	checked := make(chan struct{})
	go func() { // the watcher
		defer close(checked)
		var pending []sample
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		produceDone := false
		var doneAt time.Time
		for {
			select {
			case s, ok := <-watch:
				if !ok {
					watch, produceDone, doneAt = nil, true, time.Now()
					continue
				}
				pending = append(pending, s)
				continue
			case <-tick.C:
			}
			if len(pending) == 0 {
				if produceDone {
					return
				}
				continue
			}
			keys := make([]online.Key, len(pending))
			for i, s := range pending {
				keys[i] = online.Key{View: view.Name, Version: view.Version(), Entity: s.entity}
			}
			rows, found, err := on.GetMany(ctx, keys)
			now := time.Now()
			if err != nil {
				continue
			}
			kept := pending[:0]
			for i, s := range pending {
				if found[i] && rows[i].EventTime >= s.eventMs {
					firstServed.CompareAndSwap(0, now.UnixNano())
					if s.warm {
						continue
					}
					lat = append(lat, now.Sub(s.produced))
					k := fmt.Sprint(s.entity, "/", s.eventMs)
					stageMu.Lock()
					for j := range stages { // only measured samples reach here
						if at, ok := seenAt[j][k]; ok {
							stages[j] = append(stages[j], at.Sub(s.produced))
						}
					}
					stageMu.Unlock()
				} else {
					kept = append(kept, s)
				}
			}
			pending = kept
			if produceDone && time.Since(doneAt) > 30*time.Second {
				missed = len(pending)
				return
			}
		}
	}()

	fmt.Printf("\nfreshness: %d events/s for %v (after a warm-up: at least %v, until every group is serving) over %d cards through processor (exactly-once, commit interval %v) and online materializer; one event in %d watched\n",
		f.freshRate, f.freshFor, warmup, cards, cfg.Kafka.CommitInterval.D(), every)
	start := time.Now()
	perTick := f.freshRate / 100 // every 10ms
	var produced int
	var warmed bool
	var measuredFrom reading
	tick := time.NewTicker(10 * time.Millisecond)
	for now := range tick.C {
		// The warm-up lasts until every group joined and the pipeline has
		// served events for 2s: a consumer group joining late would
		// otherwise count its start-up as latency.
		if fs := firstServed.Load(); !warmed && now.Sub(start) >= warmup && fs != 0 && now.Sub(time.Unix(0, fs)) >= 2*time.Second {
			warmed, measuredFrom = true, meter{server: e.redis, broker: e.broker}.read()
			fmt.Printf("freshness: warmed up after %.1fs\n", now.Sub(start).Seconds())
		}
		if !warmed && now.Sub(start) > time.Minute {
			return fmt.Errorf("freshness: no event served from Redis within a minute")
		}
		if warmed && now.Sub(measuredFrom.at) >= f.freshFor {
			break
		}
		for range perTick {
			i := produced
			produced++
			t := schemas.Transaction{TxnID: fmt.Sprintf("t%d", i), CardID: fmt.Sprintf("card-%05d", i%cards), MerchantID: "m", Amount: float64(i%500) / 3,
				Currency: "EUR", Country: "DE", DeviceID: "d", EventTime: time.Now().UnixMilli()}
			b, err := sd.Encode(&t)
			if err != nil {
				return err
			}
			at := time.Now()
			cl.Produce(ctx, &kgo.Record{Topic: src.Topic, Key: []byte(t.CardID), Value: b}, nil)
			if i%every == 0 {
				watch <- sample{entity: t.CardID, eventMs: t.EventTime, produced: at, warm: !warmed}
			}
		}
	}
	tick.Stop()
	end := meter{server: e.redis, broker: e.broker}.read()
	close(watch)
	<-checked
	u := measuredFrom.to(end)
	if len(lat) == 0 {
		return fmt.Errorf("freshness: no watched event reached Redis")
	}
	all := lat
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
	for j, name := range []string{"on the features topic, uncommitted (processor emitted)", "on the features topic, committed (read_committed)"} {
		if len(stages[j]) > 0 {
			lat = stages[j]
			slices.Sort(lat)
			fmt.Printf("freshness: produce -> %s: p50 %.1f ms  p90 %.1f ms  p99 %.1f ms (%d events)\n", name, q(0.5), q(0.9), q(0.99), len(lat))
		}
	}
	lat = all
	slices.Sort(lat)
	rate := float64(produced) / time.Since(start).Seconds()
	fmt.Printf("freshness: %d events produced (%.0f/s achieved), %d watched reached Redis, %d not within 30s\n", produced, rate, len(lat), missed)
	fmt.Printf("freshness: produce -> served from Redis: p50 %.1f ms  p90 %.1f ms  p99 %.1f ms  max %.1f ms (2ms poll resolution)\n", q(0.5), q(0.9), q(0.99), q(1))
	fmt.Printf("freshness: CPU over the measured %0.fs: bench process (processor+materializers+producer) %.2f cores, redis %.2f, broker %.2f, other %.1f%% of the machine%s\n",
		u.Wall, u.Self/u.Wall, u.Server/u.Wall, u.Broker/u.Wall, 100*u.Other/max(u.MachineCapacity, 1e-9), warn(u.Other/max(u.MachineCapacity, 1e-9)))
	if mfs, err := renv.Metrics.Gather(); err == nil {
		for _, mf := range mfs {
			if mf.GetName() != "weir_materialize_batch_seconds" {
				continue
			}
			for _, m := range mf.GetMetric() {
				h := m.GetHistogram()
				var name string
				for _, l := range m.GetLabel() {
					if l.GetName() == "materializer" {
						name = l.GetValue()
					}
				}
				var le []string
				for _, b := range h.GetBucket() {
					le = append(le, fmt.Sprintf("<=%gs:%d", b.GetUpperBound(), b.GetCumulativeCount()))
				}
				fmt.Printf("freshness: %s sink writes: %d, mean %.1f ms; cumulative %s\n", name, h.GetSampleCount(), 1000*h.GetSampleSum()/float64(max(h.GetSampleCount(), 1)), strings.Join(le, " "))
			}
		}
	}
	return nil
}
