// Command featurestore benchmarks Weir's online feature serving side by side
// with Feast's, on loopback, against the same Redis and the same data, in
// one run (`make bench-featurestore`):
//
//  1. generates N entities with F float features and an event time in the
//     last 30 minutes (ttl 24h on both sides, so every value is fresh and
//     both sides answer present);
//  2. writes them to Redis through Weir's online store (featurestore/online,
//     keys under the prefix weirbench) and through Feast
//     (feast/feast_bench.py: a Feast repo with the Redis online store,
//     write_to_online_store), then starts Weir's serve role in a process of
//     its own (this binary with -as-server, running roles.Env.Serve on a
//     generated weir.yaml, as `weir run --role serve` would) and Feast's
//     Python feature server (`feast serve`, one worker per core);
//  3. checks correctness first: a sample of requests of every batch size
//     answered by both servers, every value equal to the generated data and
//     to each other, every status present;
//  4. drives each side with an open-loop load at a ladder of fixed rates
//     (latency counted from each request's scheduled send time), for batch
//     sizes of 1, 10 and 100 entities per request, all features of the
//     view: Weir through raw HTTP (pre-encoded bodies, answers read but not
//     decoded, as for Feast) and through its Go client (featurestore/client,
//     typed answers), Feast through raw HTTP. A series stops at the first
//     rate a side cannot sustain (achieved below 95% of the target, or over
//     1% errors). Each series runs -repeats times, sides alternated;
//  5. prints per step the achieved rate, p50/p99/p99.9, errors and the CPU
//     seconds of the server, Redis, this harness and the rest of the
//     machine; then medians and ranges, and Weir/Feast ratios.
//
// Weir reads Redis on every request (one pipelined round trip); it keeps
// nothing in memory between requests.
//
// Run it from the module root with the local stack up:
//
//	make bench-featurestore                  # builds Feast's venv first
//	. .weir/env && go run ./bench/featurestore -feast-python '' # Weir only
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type flags struct {
	redis        string
	entities     int
	features     int
	batches      []int
	rates        []float64
	step         time.Duration
	repeats      int
	sides        []string
	feastPython  string
	feastWorkers int
	check        int
	maxInflight  int
	timeout      time.Duration
	noisy        float64
	work         string
	seed         uint64
	// serverProfile is where the server process writes a CPU profile.
	serverProfile string
}

func main() {
	var f flags
	var batches, rates, sides string
	dataDir := envOr("WEIR_DATA", ".weir")
	flag.StringVar(&f.redis, "redis", envOr("WEIR_REDIS_ADDR", "127.0.0.1:16379"), "Redis both sides read and write")
	flag.IntVar(&f.entities, "entities", 10_000, "entities (cards) written")
	flag.IntVar(&f.features, "features", 10, "float features of the view")
	flag.StringVar(&batches, "batches", "1,10,100", "entities per request, comma-separated")
	flag.StringVar(&rates, "rates", "25,50,100,200,350,500,750,1000,1500,2000,3000,5000,7000,10000,14000,20000,28000", "requests per second of the ladder, ascending")
	flag.DurationVar(&f.step, "step", 3*time.Second, "measured length of each rate step")
	flag.IntVar(&f.repeats, "repeats", 3, "runs of every series, sides alternated")
	flag.StringVar(&sides, "sides", "weir-http,weir-client,feast", "sides to run: weir-http, weir-client, feast")
	flag.StringVar(&f.feastPython, "feast-python", filepath.Join(dataDir, "feast-venv", "bin", "python"), "python of Feast's venv (bench/featurestore/feast/venv.sh); \"\" skips Feast")
	flag.IntVar(&f.feastWorkers, "feast-workers", runtime.NumCPU(), "Feast feature server workers")
	flag.IntVar(&f.check, "check", 200, "requests per batch size compared between the sides and with the data before timing")
	flag.IntVar(&f.maxInflight, "max-inflight", 2000, "requests in flight at most; a send beyond counts as an error")
	flag.DurationVar(&f.timeout, "timeout", 2*time.Second, "a request slower than this counts as an error")
	flag.Float64Var(&f.noisy, "noisy", 0.05, "mark a step noisy when other processes used more than this fraction of the machine")
	flag.StringVar(&f.work, "work", filepath.Join(dataDir, "bench-featurestore"), "directory for the configs, Feast repo, logs and results.json")
	flag.Uint64Var(&f.seed, "seed", 1, "data and request seed")
	asServer := flag.String("as-server", "", "(internal) run Weir's serve role on this weir.yaml in this process")
	flag.StringVar(&f.serverProfile, "server-cpuprofile", "", "write a CPU profile of Weir's server process here (its whole run)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *asServer != "" {
		if err := runServer(ctx, *asServer, f.serverProfile); err != nil {
			fmt.Fprintln(os.Stderr, "bench/featurestore -as-server:", err)
			os.Exit(1)
		}
		return
	}
	var err error
	if f.batches, err = ints(batches); err == nil {
		f.rates, err = floats(rates)
	}
	if err != nil {
		fatal(err)
	}
	for _, s := range strings.Split(sides, ",") {
		if s = strings.TrimSpace(s); s == "feast" && f.feastPython == "" {
			continue
		}
		if s != "weir-http" && s != "weir-client" && s != "feast" {
			fatal(fmt.Errorf("-sides: unknown side %q", s))
		}
		f.sides = append(f.sides, s)
	}
	if err := run(ctx, &f); err != nil {
		fatal(err)
	}
}

func run(ctx context.Context, f *flags) error {
	if err := os.MkdirAll(f.work, 0o755); err != nil {
		return err
	}
	rep := &report{Started: time.Now().UTC().Format(time.RFC3339), Cores: runtime.NumCPU(), Entities: f.entities, Features: f.features,
		StepSeconds: f.step.Seconds(), Repeats: f.repeats, FeastWorkers: f.feastWorkers}
	data := generate(f.entities, f.features, f.seed, time.Now())
	fmt.Printf("==> data: %d entities x %d features, event times in the last 30 min, ttl 24h on both sides\n", f.entities, f.features)

	weir, err := startWeir(ctx, f, data)
	if err != nil {
		return err
	}
	defer weir.stop()
	var feast *feastServer
	if f.feastPython != "" {
		if feast, err = startFeast(ctx, f, data); err != nil {
			return err
		}
		defer feast.stop()
		rep.FeastVersion = feast.version
	}

	reqs := map[int]*requestSet{}
	for _, b := range f.batches {
		reqs[b] = newRequestSet(data, b, 1000, f.seed+uint64(b))
	}
	fmt.Println("==> correctness: both sides against the generated data")
	for _, b := range f.batches {
		n, err := check(ctx, weir, feast, data, reqs[b], f.check)
		if err != nil {
			return fmt.Errorf("correctness, batch %d: %w", b, err)
		}
		rep.Checked = append(rep.Checked, fmt.Sprintf("batch %d: %d requests, %d values equal", b, f.check, n))
		fmt.Printf("    batch %3d: %d requests, %d values, all equal and present on every side\n", b, f.check, n)
	}

	targets := map[string]func(int) target{
		"weir-http":   func(b int) target { return weir.rawTarget(reqs[b]) },
		"weir-client": func(b int) target { return weir.clientTarget(reqs[b]) },
	}
	if feast != nil {
		targets["feast"] = func(b int) target { return feast.target(reqs[b]) }
	}
	pids := map[string]func() []int{"weir-http": weir.pids, "weir-client": weir.pids}
	if feast != nil {
		pids["feast"] = feast.pids
	}
	cpu := newCPU(redisPid(f))
	for _, side := range f.sides {
		for _, b := range f.batches {
			warm(ctx, targets[side](b), 300)
		}
	}
	for r := range f.repeats {
		for _, b := range f.batches {
			order := rotate(f.sides, r)
			for _, side := range order {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				s := ladder(ctx, f, side, b, r, targets[side](b), pids[side], cpu)
				rep.Series = append(rep.Series, s)
			}
		}
	}
	rep.summarize(f)
	rep.print(os.Stdout)
	out := filepath.Join(f.work, "results.json")
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := os.WriteFile(out, b, 0o644); err != nil {
		return err
	}
	fmt.Printf("==> results: %s\n", out)
	return nil
}

// rotate returns xs rotated left by r: A B C, B C A, C A B.
func rotate(xs []string, r int) []string {
	out := make([]string, 0, len(xs))
	for i := range xs {
		out = append(out, xs[(i+r)%len(xs)])
	}
	return out
}

func ints(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: want positive integers", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func floats(s string) ([]float64, error) {
	var out []float64
	for _, p := range strings.Split(s, ",") {
		x, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || x <= 0 || len(out) > 0 && x <= out[len(out)-1] {
			return nil, fmt.Errorf("%q: want ascending positive rates", s)
		}
		out = append(out, x)
	}
	return out, nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench/featurestore:", err)
	os.Exit(1)
}
