package e2e

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/roles"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas/registry"
)

// serveRegistry serves a schema registry in a temporary directory until
// the test ends and returns its URL.
func serveRegistry(t *testing.T) string {
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

// roleLog returns a logger into a temporary file whose last tail lines
// the test prints if it fails.
func roleLog(t *testing.T, tail int) *slog.Logger {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "weir-*.log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(f.Name())
			lines := strings.Split(string(b), "\n")
			t.Logf("last log lines:\n%s", strings.Join(lines[max(0, len(lines)-tail):], "\n"))
		}
	})
	return slog.New(slog.NewTextHandler(f, nil))
}

// testConfig parses a test's weir.yaml and points it at this test's
// services: real Kafka with its own client id, topic prefix, source and
// labels topics; its own Redis key prefix, ClickHouse database, state and
// data directories, and schema registry.
func testConfig(t *testing.T, name, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(name+".yaml", []byte(yaml), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	_, prefix := testenv.Redis(t)
	_, db := testenv.ClickHouse(t)
	cfg.DataDir = t.TempDir()
	cfg.State.Dir = t.TempDir()
	cfg.Kafka.Brokers = testenv.RealKafka(t)
	cfg.Kafka.ClientID = testenv.Name(name)
	cfg.Topics.Prefix = testenv.Name("weir")
	cfg.Sources[0].Topic = testenv.Name("payments")
	if cfg.Labels.Topic != "" {
		cfg.Labels.Topic = testenv.Name("labels")
	}
	cfg.Redis.Addr = testenv.RedisAddr(t)
	cfg.Redis.KeyPrefix = prefix
	cfg.ClickHouse.Addr = testenv.ClickHouseAddr(t)
	cfg.ClickHouse.Database = db
	cfg.SchemaRegistry.URL = serveRegistry(t)
	return cfg
}

// runRoles provisions cfg's topics and runs the named roles until the test
// ends (then stops them, failing the test if they returned an error), and
// returns their Env.
func runRoles(t *testing.T, cfg *config.Config, log *slog.Logger, instance string, names ...string) *roles.Env {
	t.Helper()
	ctx := context.Background()
	env, err := roles.NewEnv(cfg, log, instance)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(env.Close)
	if err := env.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	plan, err := env.Build(ctx, names)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(plan.Close)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- roles.RunAll(rctx, plan.Runners) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("roles %v: %v", names, err)
		}
	})
	return env
}
