package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/testenv"
)

// syncBuffer is a bytes.Buffer safe for the timeline's writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDev runs `weir dev` as `make demo` does (embedded broker and registry,
// real Redis and ClickHouse), with traffic 20x faster than the demo, and checks
// that the timeline shows the whole story: v1 bootstrapped, drift, alert,
// retrain command, v2 registered and taking over. It stops the command the
// way Ctrl-C does and checks it shuts down cleanly.
func TestDev(t *testing.T) {
	_, prefix := testenv.Redis(t)
	_, db := testenv.ClickHouse(t)
	demo, err := os.ReadFile("../../deploy/demo/weir.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0") // a free port for /metrics
	if err != nil {
		t.Fatal(err)
	}
	metricsAddr := l.Addr().String()
	l.Close()
	cfg := string(demo)
	for old, new := range map[string]string{
		"data_dir: .weir/dev":   "data_dir: " + filepath.Join(dir, "data"),
		"addr: 127.0.0.1:16379": "addr: " + testenv.RedisAddr(t),
		"key_prefix: weir":      "key_prefix: " + prefix,
		"addr: 127.0.0.1:19000": "addr: " + testenv.ClickHouseAddr(t),
		"database: weir_demo":   "database: " + db,
		"addr: 127.0.0.1:9464":  "addr: " + metricsAddr,
		"client_id: weir-demo":  "client_id: " + testenv.Name("dev"),
	} {
		if !strings.Contains(cfg, old) {
			t.Fatalf("demo config lacks %q", old)
		}
		cfg = strings.Replace(cfg, old, new, 1)
	}
	path := filepath.Join(dir, "weir.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--config", path, "--fresh", "--rate", "4000", "--bad-every", "2000",
			"--kafka-port", "0", "--registry-port", "0", "--duration", "4m"}, &out)
	}()
	want := []string{"serving v1 (bootstrap", "DRIFT injected", "ALERT score_drift FIRING", "COMMAND RETRAIN", "MODEL fraud v2 [champion] by retrain", "SWAP scorer moved from fraud v1 to v2"}
	deadline := time.After(3 * time.Minute)
	for {
		missing := ""
		for _, w := range want {
			if !strings.Contains(out.String(), w) {
				missing = w
				break
			}
		}
		if missing == "" {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("weir dev returned before %q (err %v):\n%s", missing, err, out.String())
		case <-deadline:
			cancel()
			<-done
			t.Fatalf("no %q in the timeline after 3m:\n%s", missing, out.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	checkMetrics(t, "http://"+metricsAddr+"/metrics")
	checkCLI(t, ctx, path, out.String())
	cancel() // as Ctrl-C does
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("weir dev after Ctrl-C: %v\n%s", err, out.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("weir dev did not stop within 30s of Ctrl-C")
	}
	if !strings.Contains(out.String(), "stopped (peak memory") {
		t.Fatalf("no closing line:\n%s", out.String())
	}
	t.Logf("timeline:\n%s", out.String())
}

// checkMetrics scrapes /metrics, checks that each stage's metrics are there,
// and has promtool lint the exposition when it is installed (it is under
// `make test`: the Debian prometheus package).
func checkMetrics(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	for _, name := range []string{"weir_stream_records_in_total", "weir_stream_deadletter_total", "weir_processor_entities",
		"weir_materialize_rows_written_total", "weir_monitor_psi", "weir_monitor_alerts_firing", "weir_scoring_predictions_total",
		"weir_stream_consumer_lag", "weir_processor_watermark_seconds", "weir_processor_rows_total"} {
		if !strings.Contains(string(body), "\n"+name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if testenv.Required() {
			t.Fatalf("promtool not found (make setup installs Debian's prometheus package)")
		}
		t.Skip("promtool not installed")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// checkCLI runs the commands the timeline tells a newcomer to try, with the
// environment it prints, while weir dev runs.
func checkCLI(t *testing.T, ctx context.Context, config, timeline string) {
	t.Helper()
	var modelsLine string
	for _, l := range strings.Split(timeline, "\n") {
		if strings.Contains(l, "models:   WEIR_KAFKA_BROKERS=") {
			modelsLine = l
		}
	}
	for _, f := range strings.Fields(modelsLine) {
		if k, v, ok := strings.Cut(f, "="); ok && strings.HasPrefix(k, "WEIR_") {
			t.Setenv(k, v)
		}
	}
	var models bytes.Buffer
	if err := run(ctx, []string{"models", "list", "--config", config}, &models); err != nil {
		t.Fatalf("weir models list: %v", err)
	}
	for _, want := range []string{"v1", "bootstrap", "v2", "champion", "retrain", "rule score_drift"} {
		if !strings.Contains(models.String(), want) {
			t.Errorf("weir models list lacks %q:\n%s", want, models.String())
		}
	}
	var feats bytes.Buffer
	if err := run(ctx, []string{"features", "get", "card-000042", "--config", config}, &feats); err != nil {
		t.Fatalf("weir features get: %v", err)
	}
	if !strings.Contains(feats.String(), "txn_count_5m") || !strings.Contains(feats.String(), "present") {
		t.Errorf("weir features get card-000042:\n%s", feats.String())
	}
	t.Logf("weir models list:\n%s\nweir features get card-000042:\n%s", models.String(), feats.String())
}
