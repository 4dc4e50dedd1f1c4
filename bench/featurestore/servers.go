package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/weirhq/weir/featurestore/client"
	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/roles"
	"github.com/weirhq/weir/schemas"
)

// keyPrefix is where Weir's side keeps its keys.
const keyPrefix = "weirbench"

// weirYAML is the serve role's config: the view's features are `last` of
// the source's amount, which only matters for the version; the rows are
// written directly.
const weirYAML = `# written by bench/featurestore
kafka: {client_id: weirbench, brokers: ["127.0.0.1:9"]} # the serve role never dials Kafka
redis: {addr: "REDIS", key_prefix: ` + keyPrefix + `}
serve: {addr: "ADDR"}
sources:
  - {name: payments, topic: weirbench.transactions, schema: transaction, key: card_id, id: txn_id, event_time: event_time}
entities:
  - {name: card, key: card_id}
views:
  - name: ` + viewName + `
    source: payments
    entity: card
    ttl: 24h
    features:
FEATURES`

// noEnv keeps the environment (WEIR_SERVE_TOKEN and the like) out of the
// generated config.
func noEnv(string) string { return "" }

// runServer is the -as-server process: Weir's serve role on a config, as
// `weir run --role serve` runs it, until SIGTERM.
func runServer(ctx context.Context, path, cpuProfile string) error {
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	cfg, err := config.Load(path, noEnv)
	if err != nil {
		return err
	}
	env, err := roles.NewEnv(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), "bench")
	if err != nil {
		return err
	}
	defer env.Close()
	plan, err := env.Build(ctx, []string{"serve"})
	if err != nil {
		return err
	}
	defer plan.Close()
	return roles.RunAll(ctx, plan.Runners)
}

// weirServer is the -as-server child process.
type weirServer struct {
	cmd *exec.Cmd
	url string
}

// startWeir writes the data through the online store and starts the serve
// role in a child process.
func startWeir(ctx context.Context, f *flags, d *dataset) (*weirServer, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	var feats strings.Builder
	for _, name := range d.features {
		fmt.Fprintf(&feats, "      - {name: %s, agg: last, field: amount}\n", name)
	}
	yaml := strings.NewReplacer("REDIS", f.redis, "ADDR", addr, "FEATURES", feats.String()).Replace(weirYAML)
	path := filepath.Join(f.work, "weir.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		return nil, err
	}
	cfg, err := config.Load(path, noEnv)
	if err != nil {
		return nil, fmt.Errorf("generated %s: %w", path, err)
	}
	view := cfg.Views[0]

	rdb := redis.NewClient(&redis.Options{Addr: f.redis})
	defer rdb.Close()
	if err := deleteKeys(ctx, rdb, keyPrefix+":*"); err != nil {
		return nil, err
	}
	start := time.Now()
	store := online.New(rdb, keyPrefix, cfg.Views)
	rows := make([]schemas.FeatureRow, 0, 500)
	for i, k := range d.keys {
		r := schemas.FeatureRow{Entity: k, View: view.Name, ViewVersion: view.Version(), EventTime: d.et[i], KnownTime: d.et[i], SourceOffset: int64(i), RevisesOffset: -1}
		for j, name := range d.features {
			r.Values = append(r.Values, schemas.FeatureValue{Name: name, Value: d.vals[i][j]})
		}
		rows = append(rows, r)
		if len(rows) == cap(rows) || i == len(d.keys)-1 {
			if err := store.Write(ctx, rows); err != nil {
				return nil, err
			}
			rows = rows[:0]
		}
	}
	fmt.Printf("==> weir: wrote %d rows to Redis (%s:{entity}:%s:%s) in %.1fs\n", len(d.keys), keyPrefix, view.Name, view.Version(), time.Since(start).Seconds())

	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(f.work, "weir-server.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	args := []string{"-as-server", path}
	if f.serverProfile != "" {
		args = append(args, "-server-cpuprofile", f.serverProfile)
	}
	cmd := exec.Command(self, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &weirServer{cmd: cmd, url: "http://" + addr}
	if err := waitHTTP(ctx, w.url+"/healthz", 20*time.Second); err != nil {
		w.stop()
		return nil, fmt.Errorf("weir serve role: %w (log: %s)", err, logf.Name())
	}
	fmt.Printf("==> weir: serve role (pid %d) on %s\n", cmd.Process.Pid, w.url)
	return w, nil
}

func (w *weirServer) stop() {
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = w.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = w.cmd.Process.Kill()
		<-done
	}
}

func (w *weirServer) pids() []int { return []int{w.cmd.Process.Pid} }

// client returns a Go client of the server over hc (nil: the client's own).
func (w *weirServer) client(hc *http.Client) *client.Client {
	opts := []client.Option{client.WithTimeout(0)} // the load's context bounds each call
	if hc != nil {
		opts = append(opts, client.WithHTTPClient(hc))
	}
	c, err := client.New(w.url, opts...)
	if err != nil {
		panic(err) // the URL is ours
	}
	return c
}

func (w *weirServer) rawTarget(rs *requestSet) target {
	hc := loadHTTPClient()
	return func(ctx context.Context, i int) error {
		return post(ctx, hc, w.url+"/v1/features", rs.weirBody[i%len(rs.weirBody)])
	}
}

func (w *weirServer) clientTarget(rs *requestSet) target {
	c := w.client(loadHTTPClient())
	return func(ctx context.Context, i int) error {
		res, err := c.Get(ctx, rs.entities[i%len(rs.entities)], viewName)
		if err == nil && len(res.Results) != rs.batch {
			err = fmt.Errorf("%d results", len(res.Results))
		}
		return err
	}
}

// feastServer is Feast's Python feature server, in a process group of its
// own (the main process and its workers).
type feastServer struct {
	cmd     *exec.Cmd
	url     string
	repo    string
	python  string
	version string
}

// startFeast loads the data through Feast (feast/feast_bench.py) and starts
// `feast serve` with f.feastWorkers workers.
func startFeast(ctx context.Context, f *flags, d *dataset) (*feastServer, error) {
	py, err := filepath.Abs(f.feastPython)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(py); err != nil {
		return nil, fmt.Errorf("feast: %w (build the venv with bench/featurestore/feast/venv.sh, or pass -feast-python '' to skip Feast)", err)
	}
	out, err := exec.CommandContext(ctx, py, "-c", "import feast; print(feast.__version__)").Output()
	if err != nil {
		return nil, fmt.Errorf("feast: import feast: %w", err)
	}
	s := &feastServer{python: py, version: strings.TrimSpace(string(out))}
	work, err := filepath.Abs(f.work)
	if err != nil {
		return nil, err
	}
	s.repo = filepath.Join(work, "feast-repo")
	if err := os.RemoveAll(s.repo); err != nil {
		return nil, err
	}
	csv := filepath.Join(work, "data.csv")
	if err := d.writeCSV(csv); err != nil {
		return nil, err
	}
	script, err := filepath.Abs("bench/featurestore/feast/feast_bench.py")
	if err != nil {
		return nil, err
	}
	load := exec.CommandContext(ctx, py, script, "load", s.repo, csv, f.redis, viewName, strconv.Itoa(24*3600))
	load.Stdout, load.Stderr = os.Stdout, os.Stderr
	if err := load.Run(); err != nil {
		return nil, fmt.Errorf("feast: load: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	logf, err := os.Create(filepath.Join(work, "feast-server.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	s.cmd = exec.Command(filepath.Join(filepath.Dir(py), "feast"), "-c", s.repo, "serve",
		"--host", host, "--port", port, "--workers", strconv.Itoa(f.feastWorkers), "--no-access-log",
		// Its best settings: no worker recycling every 1000 requests (the
		// default), no registry refresh during the run.
		"--max-requests", "0", "--max-requests-jitter", "0", "--registry_ttl_sec", "3600")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	s.url = "http://" + addr
	if err := waitHTTP(ctx, s.url+"/health", 120*time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("feast serve: %w (log: %s)", err, logf.Name())
	}
	fmt.Printf("==> feast %s: feature server (pid %d, %d workers) on %s\n", s.version, s.cmd.Process.Pid, f.feastWorkers, s.url)
	return s, nil
}

// stop ends the feature server's process group and deletes Feast's keys.
func (s *feastServer) stop() {
	pgid := s.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-done
	}
	script, _ := filepath.Abs("bench/featurestore/feast/feast_bench.py")
	if out, err := exec.Command(s.python, script, "teardown", s.repo).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "feast teardown: %v\n%s", err, out)
	}
}

// pids lists the server's process group: the main process and its workers.
func (s *feastServer) pids() []int {
	return groupPids(s.cmd.Process.Pid)
}

func (s *feastServer) target(rs *requestSet) target {
	hc := loadHTTPClient()
	return func(ctx context.Context, i int) error {
		return post(ctx, hc, s.url+"/get-online-features", rs.feastBody[i%len(rs.feastBody)])
	}
}

// get asks the feature server one request and decodes the answer.
func (s *feastServer) get(ctx context.Context, body []byte) (*feastAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url+"/get-online-features", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	var a feastAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("%w: %s", err, b)
	}
	return &a, nil
}

// loadHTTPClient is the load's client for one target: enough idle
// connections that an open-loop burst reuses them instead of dialling.
func loadHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 2048, 2048
	return &http.Client{Transport: tr}
}

// post sends a body and reads the whole answer, which must be a 200.
func post(ctx context.Context, hc *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %.200s", resp.StatusCode, b)
	}
	return nil
}

// waitHTTP polls url until it answers 200.
func waitHTTP(ctx context.Context, url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not up after %v: %w", url, within, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// deleteKeys unlinks every key matching pattern.
func deleteKeys(ctx context.Context, rdb *redis.Client, pattern string) error {
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	var keys []string
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		err := rdb.Unlink(ctx, keys...).Err()
		keys = keys[:0]
		return err
	}
	for iter.Next(ctx) {
		if keys = append(keys, iter.Val()); len(keys) == 1000 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return errors.Join(iter.Err(), flush())
}
