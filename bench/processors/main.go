// Command processors benchmarks Weir's processor side by side with a Kafka
// Streams application doing the same work (bench/kstreams), on the same
// input topic of a real Kafka broker, in one run:
//
//  1. creates a fresh input topic and produces N loadgen transactions to it;
//  2. measures the raw franz-go read_committed consume rate of that topic
//     (the ceiling);
//  3. runs `weir run --role processor` and the Kafka Streams app alternately
//     (A/B/A/B), each with a fresh group, output and changelog, each timed
//     from its first processed event (the earliest processing time its
//     outputs carry) to its group's committed offsets reaching the end of
//     the input, with the CPU of the process, the broker, this harness and
//     the whole machine over that interval;
//  4. checks both sides' outputs: one per input event, and a random sample
//     equal to a brute-force recomputation written here (no engine code).
//
// Run it from the module root with the local stack up (make setup):
//
//	. .weir/env && go run ./bench/processors
//
// See docs/benchmarks.md for the flags and what the numbers mean.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/loadgen"
	"github.com/weirhq/weir/schemas"
)

type flags struct {
	brokers    string
	events     int
	cards      int
	eventRate  float64
	seed       uint64
	runs       int
	ceilings   int
	sample     int
	partitions int
	ksThreads  int
	ksStore    string
	ksHeap     string
	runTimeout time.Duration
	noisy      float64
	work       string
	keep       bool
	build      bool
	jsonOut    string
}

// bench is one benchmark run's world.
type bench struct {
	flags       flags
	id          string // prefixes every topic, group and application id of this run
	root        string // module root
	work        string // configs, logs, state directories
	k           *kafka
	reg         schemas.SRClient
	regURL      string
	input       string
	partitions  int32
	ends        map[int32]int64
	in          *input
	sample      []pos
	weirBin     string
	ksClasspath string
	brokerPid   int
	ceilingRate float64
	commitMs    int64
	lateness    int64 // ms
}

func main() {
	var f flags
	flag.StringVar(&f.brokers, "brokers", envOr("WEIR_KAFKA_BROKERS", "127.0.0.1:19092"), "Kafka seed brokers, comma-separated")
	flag.IntVar(&f.events, "events", 1_000_000, "events to produce")
	flag.IntVar(&f.cards, "cards", 200_000, "cards (entities) in the stream")
	flag.Float64Var(&f.eventRate, "event-rate", 200, "events per second of event time (loadgen's density)")
	flag.Uint64Var(&f.seed, "seed", 1, "loadgen and sample seed")
	flag.IntVar(&f.runs, "runs", 3, "runs of each side, alternated A/B/A/B")
	flag.IntVar(&f.ceilings, "ceiling-runs", 3, "raw consume runs (the median is the ceiling)")
	flag.IntVar(&f.sample, "sample", 10_000, "events checked against the brute-force recomputation, per run")
	flag.IntVar(&f.partitions, "partitions", 4, "input topic partitions")
	flag.IntVar(&f.ksThreads, "ks-threads", 1, "Kafka Streams num.stream.threads")
	flag.StringVar(&f.ksStore, "ks-store", "memory", "Kafka Streams store: memory or rocksdb")
	flag.StringVar(&f.ksHeap, "ks-heap", "2g", "Kafka Streams JVM heap (-Xms and -Xmx)")
	flag.DurationVar(&f.runTimeout, "run-timeout", 10*time.Minute, "give up on a run after this long")
	flag.Float64Var(&f.noisy, "noisy", 0.05, "mark a run noisy when other processes used more than this fraction of the machine")
	flag.StringVar(&f.work, "work", "", "directory for configs and logs (default: a new temporary one, removed unless -keep or a failure)")
	flag.BoolVar(&f.keep, "keep", false, "keep the topics and the work directory")
	flag.BoolVar(&f.build, "build", true, "build bin/weir (go build) and bench/kstreams (mvn package) first")
	flag.StringVar(&f.jsonOut, "json", "", "also write the results as JSON to this file")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, f); err != nil {
		fmt.Fprintln(os.Stderr, "bench/processors:", err)
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

func run(ctx context.Context, f flags) (err error) {
	b := &bench{flags: f, id: fmt.Sprintf("bench-proc-%d", time.Now().Unix()), partitions: int32(f.partitions)}
	if b.root, err = moduleRoot(); err != nil {
		return err
	}
	if err := b.checkView(); err != nil {
		return err
	}
	b.work = f.work
	if b.work == "" {
		if b.work, err = os.MkdirTemp("", "weir-bench-processors-"); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(b.work, 0o755); err != nil {
		return err
	}
	defer func() {
		if err == nil && !f.keep && f.work == "" {
			os.RemoveAll(b.work)
		} else {
			logf("kept %s (configs and logs)", b.work)
		}
	}()
	if err := b.buildAll(ctx); err != nil {
		return err
	}
	b.brokerPid = brokerPid(envOr("WEIR_DATA", filepath.Join(b.root, ".weir")))
	if b.brokerPid == 0 {
		logf("warning: no local broker process found; broker CPU is not recorded")
	}

	// The schema registry, as `weir run` is deployed beside a Kafka that has none.
	stopReg, err := b.startRegistry()
	if err != nil {
		return err
	}
	defer stopReg()
	if b.reg, err = schemas.NewSRClient(b.regURL); err != nil {
		return err
	}
	if b.k, err = newKafka(strings.Split(f.brokers, ",")); err != nil {
		return err
	}
	defer b.k.close()
	defer func() {
		if f.keep {
			logf("kept topics %s.*", b.id)
			return
		}
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		names, err := b.k.deleteTopics(cctx, b.id+".")
		if err != nil {
			logf("warning: delete topics: %v", err)
		}
		logf("deleted %d topics %s.*", len(names), b.id)
	}()

	// 1. The input.
	b.input = b.id + ".payments"
	if err := b.k.createTopic(ctx, b.input, b.partitions); err != nil {
		return err
	}
	txn, err := schemas.NewSerde(ctx, b.reg, schemas.Subject(b.input), schemas.MustParse(schemas.TransactionSchema))
	if err != nil {
		return err
	}
	g := loadgen.New(loadgen.Config{Seed: f.seed, Cards: f.cards, EventsPerSecond: f.eventRate})
	logf("producing %d events over %d cards to %s (%d partitions)", f.events, f.cards, b.input, b.partitions)
	t0 := time.Now()
	if err := b.k.produce(ctx, b.input, txn, g, f.events); err != nil {
		return err
	}
	produced := time.Since(t0)
	if b.ends, err = b.k.endOffsets(ctx, b.input); err != nil {
		return err
	}
	logf("produced in %.1fs (%.0f events/s)", produced.Seconds(), float64(f.events)/produced.Seconds())

	// 2. The ceiling.
	var ceilings []ceilingRun
	for i := range f.ceilings {
		c, err := b.k.ceiling(ctx, b.input, int64(f.events))
		if err != nil {
			return err
		}
		logf("ceiling %d: %.0f events/s (%.3fs, %.2f CPU s)", i+1, c.EventsPerSec, c.Seconds, c.CPUSeconds)
		ceilings = append(ceilings, c)
	}
	rates := make([]float64, len(ceilings))
	for i, c := range ceilings {
		rates[i] = c.EventsPerSec
	}
	b.ceilingRate = median(rates)

	// The oracle's view of the input.
	if b.in, err = readInput(ctx, b.k, b.input, txn, b.lateness); err != nil {
		return err
	}
	if b.in.total != f.events {
		return fmt.Errorf("input holds %d events, produced %d", b.in.total, f.events)
	}
	b.sample = b.in.sample(f.sample, f.seed)
	logf("input: %d events, %d cards, %d late; checking %d sampled events per run", b.in.total, len(b.in.byCard), b.in.late, len(b.sample))

	baseline := idleLoad(ctx, b.brokerPid, 3*time.Second)
	logf("load before the runs (3 s, all but the broker and this harness): %.1f%% of the machine", 100*baseline)

	// 3. A/B/A/B.
	var results []*runResult
	order := 0
	for i := 1; i <= f.runs; i++ {
		for _, side := range []string{"weir", "kstreams"} {
			var s *sut
			if side == "weir" {
				s, err = b.weirSUT(ctx, i)
			} else {
				s, err = b.kstreamsSUT(ctx, i)
			}
			if err != nil {
				return err
			}
			order++
			logf("%s run %d: starting", side, i)
			r, err := b.measure(ctx, s, order)
			if err != nil {
				return err
			}
			logf("%s run %d: %.0f events/s, %.0f events per CPU s, %.2f cores; %s", side, i, r.EventsPerSec, r.EventsPerCPUSec, r.Cores, r.Check)
			results = append(results, r)
			if b.k.adm != nil {
				b.k.adm.DeleteGroups(ctx, s.group)
			}
		}
	}

	rep := report{
		ID: b.id, Started: t0.UTC().Format(time.RFC3339), Cores: runtime.NumCPU(), Events: f.events, Cards: f.cards,
		EventRate: f.eventRate, Partitions: f.partitions, CommitMs: b.commitMs, LatenessMs: b.lateness,
		ProduceSeconds: produced.Seconds(), Ceilings: ceilings, Ceiling: b.ceilingRate, Baseline: baseline,
		KSThreads: f.ksThreads, KSStore: f.ksStore, KSHeap: f.ksHeap, Runs: results, Late: b.in.late,
	}
	rep.print(os.Stdout)
	if f.jsonOut != "" {
		out, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(f.jsonOut, append(out, '\n'), 0o644); err != nil {
			return err
		}
		logf("wrote %s", f.jsonOut)
	}
	for _, r := range results {
		if !r.Check.ok() || r.DeadLetters != 0 {
			return fmt.Errorf("%s run %d failed its check: %s, %d dead letters: %w", r.Side, r.Run, r.Check, r.DeadLetters, errFailed)
		}
	}
	return nil
}

// checkView makes sure the demo view is still the one both sides compute,
// and takes its source's lateness and the commit interval from the demo.
func (b *bench) checkView() error {
	cfg, err := config.Load(filepath.Join(b.root, "deploy/demo/weir.yaml"), func(string) string { return "" })
	if err != nil {
		return err
	}
	v, ok := cfg.View(demoView)
	if !ok {
		return fmt.Errorf("deploy/demo/weir.yaml has no view %s", demoView)
	}
	want := []string{"txn_count_5m count  5m0s", "amount_sum_5m sum amount 5m0s", "txn_count_1h count  1h0m0s",
		"amount_sum_1h sum amount 1h0m0s", "amount_max_1h max amount 1h0m0s", "amount_last last amount 0s"}
	var got []string
	for _, ft := range v.Features {
		if ft.Where != nil {
			return fmt.Errorf("view %s: feature %s has a filter; bench/kstreams computes none", demoView, ft.Name)
		}
		got = append(got, fmt.Sprintf("%s %s %s %s", ft.Name, ft.Agg, ft.Field, ft.Window.D()))
	}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		return fmt.Errorf("view %s changed: %q; bench/kstreams and the oracle compute %q: update them together", demoView, got, want)
	}
	src, _ := cfg.Source(v.Source)
	b.lateness = src.Lateness.D().Milliseconds()
	b.commitMs = cfg.Kafka.CommitInterval.D().Milliseconds()
	return nil
}

// buildAll builds bin/weir and the Kafka Streams app.
func (b *bench) buildAll(ctx context.Context) error {
	b.weirBin = filepath.Join(b.root, "bin", "weir")
	target := filepath.Join(b.root, "bench", "kstreams", "target")
	b.ksClasspath = filepath.Join(target, "weir-kstreams-bench.jar") + ":" + filepath.Join(target, "lib", "*")
	if !b.flags.build {
		return nil
	}
	steps := [][]string{
		{"go", "build", "-o", b.weirBin, "./cmd/weir"},
		{"mvn", "-q", "-B", "-f", filepath.Join("bench", "kstreams", "pom.xml"), "package"},
	}
	for _, s := range steps {
		logf("%s", strings.Join(s, " "))
		cmd := exec.CommandContext(ctx, s[0], s[1:]...)
		cmd.Dir = b.root
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(s, " "), err, out)
		}
	}
	return nil
}

// startRegistry runs `weir registry` on a free port with its data in the
// work directory.
func (b *bench) startRegistry() (func(), error) {
	cmd := exec.Command(b.weirBin, "registry", "-addr", "127.0.0.1:0", "-dir", filepath.Join(b.work, "registry"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(b.work, "registry.log")
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = lf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		lf.Close()
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	go io.Copy(lf, out)
	// "schema registry on http://ADDR (data in DIR); ..."
	_, rest, ok := strings.Cut(line, " on ")
	url, _, _ := strings.Cut(rest, " ")
	if err != nil || !ok || !strings.HasPrefix(url, "http://") {
		stop()
		return nil, fmt.Errorf("weir registry: unexpected first line %q (%v); log %s", line, err, logPath)
	}
	b.regURL = url
	return stop, nil
}

// idleLoad measures the machine's CPU use over d, other than the broker's
// and this process's, as a fraction of its capacity.
func idleLoad(ctx context.Context, broker int, d time.Duration) float64 {
	sm := &cpuSampler{pid: os.Getpid(), brokerPid: broker}
	a := sm.sample()
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	u := diff(a, sm.sample())
	if u.MachineCapacity == 0 {
		return 0
	}
	// proc is this process here, counted in Self too: take it once.
	return max(0, u.MachineBusy-u.Broker-u.Self) / u.MachineCapacity
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/weirhq/weir\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("run it inside the github.com/weirhq/weir module")
		}
		dir = parent
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
