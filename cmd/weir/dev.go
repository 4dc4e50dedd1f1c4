package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/weirhq/weir/featurestore/offline"
	"github.com/weirhq/weir/internal/loadgen"
	"github.com/weirhq/weir/internal/roles"
	"github.com/weirhq/weir/schemas/registry"
	"github.com/weirhq/weir/streams"
)

func cmdDev(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	var c common
	var l loadgenFlags
	c.register(fs)
	l.register(fs)
	duration := fs.Duration("duration", 0, "stop after this long (0: run until Ctrl-C)")
	fresh := fs.Bool("fresh", false, "start from nothing: delete the data directory's broker, registry and models, the ClickHouse database and the Redis keys of this config")
	kafkaPort := fs.Int("kafka-port", 19192, "port of the embedded broker (0: any free port)")
	registryPort := fs.Int("registry-port", 18081, "port of the embedded schema registry (0: any free port)")
	bootstrapRows := fs.Int("bootstrap-rows", 48000, "synthetic events version 1 of each model is trained on (from a cold start, like the demo stream)")
	logStderr := fs.Bool("log-stderr", false, "log to stderr instead of <data_dir>/weir.log")
	fs.Lookup("drift-at").DefValue = "4m"
	_ = fs.Set("drift-at", "4m")
	_ = fs.Set("rate", "1000")
	fs.Lookup("rate").DefValue = "1000"
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	if *fresh {
		if err := os.RemoveAll(cfg.DataDir); err != nil {
			return fmt.Errorf("--fresh: %w", err)
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	logOut := io.Writer(os.Stderr)
	logPath := filepath.Join(cfg.DataDir, "weir.log")
	if !*logStderr {
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("log file: %w", err)
		}
		defer f.Close()
		logOut = f
	}
	log := c.logger(logOut)

	broker, err := streams.StartEmbedded(filepath.Join(cfg.DataDir, "kafka"), *kafkaPort)
	if err != nil {
		return err
	}
	defer broker.Close()
	cfg.Kafka.Brokers = broker.Seeds()

	reg, err := registry.Open(filepath.Join(cfg.DataDir, "registry"))
	if err != nil {
		return err
	}
	rl, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *registryPort))
	if err != nil {
		return fmt.Errorf("--registry-port: %w", err)
	}
	go reg.Serve(rl)
	defer rl.Close()
	cfg.SchemaRegistry.URL = "http://" + rl.Addr().String()

	env, err := roles.NewEnv(cfg, log, "dev")
	if err != nil {
		return err
	}
	defer env.Close()
	tl := env.NewTimeline(stdout, 10*time.Second)
	tl.Printf("weir dev: embedded Kafka on %v, schema registry on %s, data in %s (logs: %s)", cfg.Kafka.Brokers, cfg.SchemaRegistry.URL, cfg.DataDir, logPath)
	if *fresh {
		if err := env.Reset(ctx); err != nil {
			return err
		}
		tl.Printf("fresh start: dropped ClickHouse database %s and Redis keys %s:*", cfg.ClickHouse.Database, cfg.Redis.KeyPrefix)
	}
	if err := env.Provision(ctx); err != nil {
		return err
	}
	if err := bootstrap(ctx, env, tl, *bootstrapRows); err != nil {
		return err
	}
	plan, err := env.Build(ctx, []string{"all"}, tl)
	if err != nil {
		return err
	}
	defer plan.Close()

	g, err := l.generator()
	if err != nil {
		return err
	}
	gc := g.Config()
	tl.Printf("traffic: %g transactions/s (%g per second of event time, from %s), drift injected at event time %s, labels %s later",
		l.rate, gc.EventsPerSecond, gc.Start.Format("15:04:05"), gc.Start.Add(gc.DriftAt).Format("15:04:05"), gc.LabelDelay)
	printWhereToLook(tl, env)

	runners := append(plan.Runners,
		roles.Runner{Name: "timeline", Run: tl.Run},
		roles.Runner{Name: "loadgen", Run: func(ctx context.Context) error {
			var drifted bool
			_, err := runLoadgen(ctx, env, g, l, func(s loadgen.Stats) {
				if !drifted && g.Drifted(time.UnixMilli(s.LastEventTime)) {
					drifted = true
					tl.Printf("DRIFT injected: from event time %s card spend inflates x2.2 and fraud bursts change shape", time.UnixMilli(s.LastEventTime).UTC().Format("15:04:05"))
				}
			})
			if err == nil && l.count > 0 {
				tl.Printf("loadgen finished its %d transactions; the pipeline keeps running", l.count)
				<-ctx.Done()
			}
			return err
		}},
	)
	err = roles.RunAll(ctx, runners)
	if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
		err = nil
	}
	tl.Printf("stopped (peak memory %s). Data stays in %s; run again to resume, or with --fresh to start over.", peakRSS(), cfg.DataDir)
	return err
}

// bootstrap trains version 1 of every model that has none.
func bootstrap(ctx context.Context, env *roles.Env, tl *roles.Timeline, rows int) error {
	models, err := env.Models(ctx)
	if err != nil {
		return err
	}
	for _, m := range env.Cfg.Models {
		if _, ok := models.Champion(m.Name); !ok {
			tl.Printf("model %s has no version yet: training v1 on %d synthetic events...", m.Name, rows)
		}
	}
	recs, err := env.Bootstrap(ctx, models, rows)
	for _, r := range recs {
		tl.Printf("model %s: serving v%d (%s, holdout AUC %.3f)", r.Name, r.Version, r.CreatedBy, r.Metrics["holdout_auc"])
	}
	return err
}

func printWhereToLook(tl *roles.Timeline, env *roles.Env) {
	cfg := env.Cfg
	v := cfg.Views[0]
	tl.Printf("where to look while it runs (in another terminal):")
	tl.Printf("  metrics:  curl -s http://%s/metrics | grep ^weir_", cfg.Serve.Addr)
	tl.Printf("  features: bin/weir features get card-000042 --config %s", cfg.Path())
	tl.Printf("  models:   WEIR_KAFKA_BROKERS=%s WEIR_SCHEMA_REGISTRY_URL=%s bin/weir models list --config %s", cfg.Kafka.Brokers[0], cfg.SchemaRegistry.URL, cfg.Path())
	tl.Printf("  history:  clickhouse-client --port 19000 -q 'SELECT * FROM %s.%s FINAL ORDER BY event_time DESC LIMIT 5'",
		cfg.ClickHouse.Database, offline.TableName(v.Name, v.Version()))
}

// peakRSS reads this process's peak resident set size from /proc.
func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
