// Command materialize measures Weir's feature materializers on the local
// stack (make bench-materialize; numbers in docs/benchmarks.md):
//
//   - throughput: N feature rows are produced to a fresh features topic
//     first; then a materializer (featurestore/materialize, the code the
//     materializer role runs) is timed from its start until its group's
//     committed offsets reach the end of the topic (lag 0), into ClickHouse
//     (offline.Store) and into Redis (online.Store), alternated, each run on
//     an empty table or key prefix. Rows per second of wall time, and rows
//     per CPU second of this process (getrusage): the writer's rows/s per
//     core. The sink server's CPU (ClickHouse or Redis, /proc/PID/stat), the
//     broker's and the rest of the machine's are reported beside it.
//   - freshness (freshness.go): events at a fixed rate through a processor
//     and the online materializer, each event's feature read back from
//     Redis; produce-to-served latency percentiles.
//
// It needs WEIR_KAFKA_BROKERS, WEIR_REDIS_ADDR and WEIR_CLICKHOUSE_ADDR
// (. .weir/env).
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/featurestore/materialize"
	"github.com/weirhq/weir/featurestore/offline"
	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/schemas/registry"
)

type flags struct {
	rows, entities, features, partitions, repeat int
	sinks                                        string
	chBatch, redisBatch                          int
	chLinger                                     time.Duration
	freshRate                                    int
	freshFor                                     time.Duration
	cpuProfile                                   string
}

func main() {
	var f flags
	flag.IntVar(&f.rows, "rows", 1_000_000, "feature rows produced, then materialized in each run")
	flag.IntVar(&f.entities, "entities", 100_000, "distinct entities among the rows")
	flag.IntVar(&f.features, "features", 10, "features per row (Float64 columns)")
	flag.IntVar(&f.partitions, "partitions", 4, "partitions of the features topic")
	flag.IntVar(&f.repeat, "repeat", 3, "runs per sink, alternated")
	flag.StringVar(&f.sinks, "sinks", "clickhouse,redis", "sinks to measure (clickhouse, redis; empty: none)")
	flag.IntVar(&f.chBatch, "clickhouse-batch", 0, "materialize.Config.MaxBatch of the ClickHouse runs (0: the store's hint)")
	flag.DurationVar(&f.chLinger, "clickhouse-linger", 0, "materialize.Config.Linger of the ClickHouse runs (0: the store's hint)")
	flag.IntVar(&f.redisBatch, "redis-batch", 0, "materialize.Config.MaxBatch of the Redis runs (0: the default)")
	flag.IntVar(&f.freshRate, "freshness-rate", 10_000, "events/s of the freshness run (0: skip it)")
	flag.DurationVar(&f.freshFor, "freshness-for", 30*time.Second, "length of the freshness run")
	flag.StringVar(&f.cpuProfile, "cpuprofile", "", "write a CPU profile of the ClickHouse runs to this file")
	flag.Parse()
	if err := run(context.Background(), &f); err != nil {
		fmt.Fprintln(os.Stderr, "bench-materialize:", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func need(k string) (string, error) {
	v := os.Getenv(k)
	if v == "" {
		return "", fmt.Errorf("%s unset: run `make setup` and `. .weir/env`", k)
	}
	return v, nil
}

func random() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// env is the stack the runs share.
type env struct {
	seeds  []string
	kcl    *kgo.Client
	adm    *kadm.Client
	reg    schemas.Registry
	rdb    *redis.Client
	ch     driver.Conn
	chDB   string
	log    *slog.Logger
	redis  int // pids, for CPU
	chPid  int
	broker int
}

func run(ctx context.Context, f *flags) error {
	brokers, err := need("WEIR_KAFKA_BROKERS")
	if err != nil {
		return err
	}
	e := &env{seeds: strings.Split(brokers, ","), log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		redis: pidFile("redis/redis.pid"), chPid: pidFile("clickhouse/clickhouse.pid"), broker: pidFile("kafka/kafka.pid")}
	if e.kcl, err = kgo.NewClient(kgo.SeedBrokers(e.seeds...), kgo.ProducerBatchMaxBytes(1<<20)); err != nil {
		return err
	}
	defer e.kcl.Close()
	e.adm = kadm.NewClient(e.kcl)

	sreg, err := registry.Open("")
	if err != nil {
		return err
	}
	srv := httptest.NewServer(sreg.Handler())
	defer srv.Close()
	if e.reg, err = schemas.NewSRClient(srv.URL); err != nil {
		return err
	}
	raddr, err := need("WEIR_REDIS_ADDR")
	if err != nil {
		return err
	}
	e.rdb = redis.NewClient(&redis.Options{Addr: raddr})
	defer e.rdb.Close()
	chAddr, err := need("WEIR_CLICKHOUSE_ADDR")
	if err != nil {
		return err
	}
	e.chDB = "weirbench_materialize_" + random()
	if e.ch, err = clickhouse.Open(&clickhouse.Options{Addr: []string{chAddr}, Auth: clickhouse.Auth{Database: "default", Username: "default"},
		DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Minute}); err != nil {
		return err
	}
	defer e.ch.Close()
	if err := e.ch.Exec(ctx, "CREATE DATABASE `"+e.chDB+"`"); err != nil {
		return err
	}
	defer e.ch.Exec(context.Background(), "DROP DATABASE IF EXISTS `"+e.chDB+"`")

	fmt.Printf("bench-materialize: %d rows x %d features, %d entities, %d partitions; pids: clickhouse %d, redis %d, kafka %d; %d cores\n",
		f.rows, f.features, f.entities, f.partitions, e.chPid, e.redis, e.broker, numCPU())
	if f.sinks != "" {
		if err := throughput(ctx, e, f); err != nil {
			return err
		}
	}
	if f.freshRate > 0 {
		if err := freshness(ctx, e, f); err != nil {
			return err
		}
	}
	return nil
}

// benchView is the view of the throughput rows: f features, sliding.
func benchView(name string, f int) config.View {
	v := config.View{Name: name, Source: "bench", Entity: "card", TTL: config.Duration(24 * time.Hour)}
	for i := range f {
		v.Features = append(v.Features, config.Feature{Name: fmt.Sprintf("f%02d", i), Agg: "sum", Field: "amount", Window: config.Duration(time.Duration(i+1) * time.Minute)})
	}
	return v
}

func (e *env) createTopic(ctx context.Context, topic string, partitions int) error {
	resp, err := e.adm.CreateTopics(ctx, int32(partitions), 1, nil, topic)
	if err == nil {
		err = resp.Error()
	}
	return err
}

// produceRows writes n rows of view to topic and returns the end offsets.
func (e *env) produceRows(ctx context.Context, topic string, v *config.View, sd *schemas.Serde, f *flags) error {
	version := v.Version()
	var failed atomic.Pointer[error]
	start := time.Now()
	r := schemas.FeatureRow{View: v.Name, ViewVersion: version, SourceTopic: "bench", RevisesOffset: -1,
		Values: make([]schemas.FeatureValue, f.features)}
	for j := range r.Values {
		r.Values[j].Name = v.Features[j].Name
	}
	for i := range f.rows {
		r.Entity = fmt.Sprintf("card-%06d", i%f.entities)
		r.EventTime = 1_760_000_000_000 + int64(i)*10
		r.KnownTime = r.EventTime + 5
		r.SourcePartition, r.SourceOffset = int32(i%f.partitions), int64(i)
		r.EventID = fmt.Sprintf("ev-%d", i)
		for j := range r.Values {
			r.Values[j].Value = float64(i%1000) * float64(j+1) / 7
		}
		b, err := sd.Encode(&r)
		if err != nil {
			return err
		}
		e.kcl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(r.Entity), Value: b}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.CompareAndSwap(nil, &err)
			}
		})
		if p := failed.Load(); p != nil {
			return *p
		}
	}
	if err := e.kcl.Flush(ctx); err != nil {
		return err
	}
	if p := failed.Load(); p != nil {
		return *p
	}
	fmt.Printf("produced %d rows to %s in %.1fs\n", f.rows, topic, time.Since(start).Seconds())
	return nil
}

// result is one timed run.
type result struct {
	sink string
	rows int
	use  use
}

func (r result) rowsPerSec() float64    { return float64(r.rows) / r.use.Wall }
func (r result) rowsPerCPUSec() float64 { return float64(r.rows) / r.use.Self }
func (r result) otherShare() float64    { return r.use.Other / max(r.use.MachineCapacity, 1e-9) }
func (r result) serverPerRow() float64  { return r.use.Server / float64(r.rows) * 1e6 }
func (r result) String() string {
	return fmt.Sprintf("%-10s %9.0f rows/s wall  %9.0f rows/s per writer core  writer %5.2fs CPU  server %5.2fs CPU (%.1f us/row)  broker %5.2fs  other %4.1f%%%s",
		r.sink, r.rowsPerSec(), r.rowsPerCPUSec(), r.use.Self, r.use.Server, r.serverPerRow(), r.use.Broker, 100*r.otherShare(), warn(r.otherShare()))
}

func warn(other float64) string {
	if other > 0.05 {
		return "  [busy machine: other processes used >5%]"
	}
	return ""
}

func throughput(ctx context.Context, e *env, f *flags) error {
	v := benchView("mat", f.features)
	topic := "weirbench.features.mat_" + random()
	if err := e.createTopic(ctx, topic, f.partitions); err != nil {
		return err
	}
	defer e.adm.DeleteTopics(context.Background(), topic)
	sd, err := schemas.NewSerde(ctx, e.reg, schemas.Subject(topic), schemas.MustParse(schemas.FeatureRowSchema))
	if err != nil {
		return err
	}
	if err := e.produceRows(ctx, topic, &v, sd, f); err != nil {
		return err
	}
	ends, err := e.adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return err
	}
	sinks := strings.Split(f.sinks, ",")
	var results []result
	for i := range f.repeat {
		for _, s := range sinks {
			r, err := e.materializeOnce(ctx, s, topic, &v, sd, ends, f, i)
			if err != nil {
				return err
			}
			fmt.Println(r)
			results = append(results, r)
		}
	}
	fmt.Println("\nmedian (range) over", f.repeat, "runs:")
	for _, s := range sinks {
		var wall, core []float64
		for _, r := range results {
			if r.sink == s {
				wall, core = append(wall, r.rowsPerSec()), append(core, r.rowsPerCPUSec())
			}
		}
		fmt.Printf("%-10s rows/s wall %s   rows/s per writer core %s\n", s, spread(wall), spread(core))
	}
	return nil
}

func spread(xs []float64) string {
	s := slices.Clone(xs)
	sort.Float64s(s)
	return fmt.Sprintf("%.0f (%.0f-%.0f)", s[len(s)/2], s[0], s[len(s)-1])
}

// materializeOnce runs one materializer from an empty sink and a new group
// until its committed offsets equal ends.
func (e *env) materializeOnce(ctx context.Context, sink, topic string, v *config.View, sd *schemas.Serde, ends kadm.ListedOffsets, f *flags, i int) (result, error) {
	cfg := materialize.Config{Name: sink, Opts: []kgo.Opt{kgo.SeedBrokers(e.seeds...)}, Group: fmt.Sprintf("weirbench.mat.%s.%d.%s", sink, i, random()), Topic: topic}
	var w materialize.FeatureWriter
	var m meter
	m.broker = e.broker
	var cleanup func()
	switch sink {
	case "clickhouse":
		off, err := offline.New(e.ch, e.chDB, []config.View{*v})
		if err != nil {
			return result{}, err
		}
		table := "`" + e.chDB + "`.`" + offline.TableName(v.Name, v.Version()) + "`"
		if err := e.ch.Exec(ctx, "DROP TABLE IF EXISTS "+table); err != nil {
			return result{}, err
		}
		if err := off.Migrate(ctx); err != nil {
			return result{}, err
		}
		w, m.server = off, e.chPid
		cfg.MaxBatch, cfg.Linger = f.chBatch, f.chLinger
		cleanup = func() {
			var n uint64
			if err := e.ch.QueryRow(ctx, "SELECT count() FROM (SELECT 1 FROM "+table+" GROUP BY entity, event_time_ms, source_partition, source_offset, window_start_ms, revises_offset)").Scan(&n); err != nil || n != uint64(f.rows) {
				fmt.Fprintf(os.Stderr, "WARNING: ClickHouse holds %d distinct rows, want %d (err %v)\n", n, f.rows, err)
			}
		}
	case "redis":
		prefix := "weirbench:" + random()
		w, m.server = online.New(e.rdb, prefix, []config.View{*v}), e.redis
		cfg.MaxBatch = f.redisBatch
		cleanup = func() {
			n := 0
			iter := e.rdb.Scan(ctx, 0, prefix+":*", 10000).Iterator()
			for iter.Next(ctx) {
				e.rdb.Unlink(ctx, iter.Val())
				n++
			}
			if n != min(f.rows, f.entities) {
				fmt.Fprintf(os.Stderr, "WARNING: Redis held %d keys, want %d\n", n, min(f.rows, f.entities))
			}
		}
	default:
		return result{}, fmt.Errorf("unknown sink %q (clickhouse, redis)", sink)
	}
	mat, err := materialize.NewFeatures(cfg, v, sd, w, e.log, nil)
	if err != nil {
		return result{}, err
	}
	if f.cpuProfile != "" && sink == "clickhouse" && i == 0 {
		pf, err := os.Create(f.cpuProfile)
		if err != nil {
			return result{}, err
		}
		defer pf.Close()
		if err := pprof.StartCPUProfile(pf); err != nil {
			return result{}, err
		}
		defer pprof.StopCPUProfile()
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	a := m.read()
	go func() { done <- mat.Run(rctx) }()
	b, err := e.waitCommitted(ctx, cfg.Group, topic, ends, m, done)
	cancel()
	if rerr := <-done; err == nil {
		err = rerr
	}
	if err != nil {
		return result{}, err
	}
	cleanup()
	return result{sink: sink, rows: f.rows, use: a.to(b)}, nil
}

// waitCommitted polls the group's committed offsets every 20ms until they
// reach ends, and reads the meter then.
func (e *env) waitCommitted(ctx context.Context, group, topic string, ends kadm.ListedOffsets, m meter, done chan error) (reading, error) {
	for {
		select {
		case err := <-done:
			done <- err
			return reading{}, fmt.Errorf("materializer stopped early: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		c, err := e.adm.FetchOffsets(ctx, group)
		if err != nil {
			continue
		}
		at := true
		ends.Each(func(o kadm.ListedOffset) {
			if co, ok := c.Lookup(topic, o.Partition); !ok || co.At < o.Offset {
				at = false
			}
		})
		if at {
			return m.read(), nil
		}
	}
}

func numCPU() int { return runtime.NumCPU() }
