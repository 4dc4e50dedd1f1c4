// Command processors benchmarks Weir's processor side by side with a Kafka
// Streams application doing the same work (bench/kstreams), on the same
// input topic of a real Kafka broker, in one run:
//
//  1. creates a fresh input topic and produces N loadgen transactions to it;
//  2. measures the raw franz-go read_committed consume rate of that topic
//     (the ceiling);
//  3. runs `weir run --role processor` and the Kafka Streams app alternately
//     (A/B/A/B), with exactly-once and with at-least-once on both sides,
//     each run with a fresh group, output and changelog, each timed from its
//     first processed event (the earliest processing time its outputs carry)
//     to its group's committed offsets reaching the end of the input, with
//     the CPU of the process, the broker, this harness and the whole machine
//     over that interval;
//  4. checks both sides' outputs: one per input event, and a random sample
//     equal to a brute-force recomputation written here (no engine code);
//  5. runs Weir's processor once more inside this binary with a CPU profile
//     on (-as-processor), and prints where its time goes;
//  6. measures end-to-end latency at a paced input rate: produce time to the
//     output being visible to a read_committed (exactly-once) or
//     read_uncommitted (at-least-once) consumer.
//
// The default workload (-workload windows) is issue 4's: 5M events over
// 200k cards, count, sum, mean, min and max of amount over exact sliding
// windows of 5 min, 1 h and 24 h. -workload demo is the first version's:
// the demo view card_activity over 1M events.
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
	workload   string
	guarantees string
	commit     time.Duration
	profile    string
	latency    time.Duration
	latRate    float64
	latCommits string
	latSides   string
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
	wl          *workload
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
	flag.StringVar(&f.workload, "workload", "windows", "windows (issue 4: 15 features over 5m, 1h and 24h) or demo (the demo view card_activity)")
	flag.StringVar(&f.guarantees, "guarantees", "exactly_once,at_least_once", "delivery guarantees to compare, comma-separated")
	flag.DurationVar(&f.commit, "commit", 100*time.Millisecond, "commit interval of both sides in the throughput runs")
	flag.StringVar(&f.profile, "profile", "profiles/bench-processors.cpu.prof", "after the runs, run Weir's processor (exactly-once) once more in this binary and write its CPU profile here (\"\": skip)")
	flag.DurationVar(&f.latency, "latency", 20*time.Second, "measured span of each end-to-end latency run (0: skip)")
	flag.Float64Var(&f.latRate, "latency-rate", 10_000, "events per second produced (paced) in the latency runs")
	flag.StringVar(&f.latCommits, "latency-commits", "100ms,20ms", "commit intervals of the latency runs")
	flag.StringVar(&f.latSides, "latency-sides", "weir,kstreams", "sides of the latency runs")
	flag.IntVar(&f.events, "events", 0, "events to produce (default: the workload's, 5M or 1M)")
	flag.IntVar(&f.cards, "cards", 200_000, "cards (entities) in the stream")
	flag.Float64Var(&f.eventRate, "event-rate", 0, "events per second of event time, loadgen's density (default: the workload's, 50 or 200)")
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
	asProcessor := flag.String("as-processor", "", "(internal) run Weir's processor on this weir.yaml in this process, as `weir run --role processor` does")
	cpuProfile := flag.String("cpuprofile", "", "(internal, with -as-processor) write a CPU profile here")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *asProcessor != "" {
		if err := runProcessor(ctx, *asProcessor, *cpuProfile); err != nil {
			fmt.Fprintln(os.Stderr, "bench/processors -as-processor:", err)
			os.Exit(1)
		}
		return
	}
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
	if b.wl, err = workloadByName(f.workload); err != nil {
		return err
	}
	if f.events == 0 {
		f.events = b.wl.events
	}
	if f.eventRate == 0 {
		f.eventRate = b.wl.eventRate
	}
	b.flags = f
	guarantees, err := parseGuarantees(f.guarantees)
	if err != nil {
		return err
	}
	if b.root, err = moduleRoot(); err != nil {
		return err
	}
	if err := b.checkView(); err != nil {
		return err
	}
	b.commitMs = f.commit.Milliseconds()
	weirALO := weirSupportsAtLeastOnce()
	if !weirALO {
		logf("note: this Weir has no kafka.guarantee: at_least_once yet; its at-least-once runs are skipped")
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

	// 3. A/B/A/B, per guarantee.
	var results []*runResult
	order := 0
	one := func(side, g string, i int, profile string) (*runResult, error) {
		tag := fmt.Sprintf("%c-%s-%d", side[0], shortGuarantee(g), i)
		var s *sut
		var err error
		if side == "weir" {
			if profile != "" {
				tag = "w-profile"
			}
			s, err = b.weirSUT(ctx, b.input, tag, g, b.commitMs, profile)
		} else {
			s, err = b.kstreamsSUT(ctx, b.input, tag, g, b.commitMs)
		}
		if err != nil {
			return nil, err
		}
		s.run = i
		order++
		logf("%s %s run %d: starting", side, g, i)
		r, err := b.measure(ctx, s, order)
		if err != nil {
			return nil, err
		}
		logf("%s %s run %d: %.0f events/s, %.0f events per CPU s, %.2f cores, other %.0f%%; %s", side, g, i, r.EventsPerSec, r.EventsPerCPUSec, r.Cores, 100*r.OtherFraction, r.Check)
		if b.k.adm != nil {
			b.k.adm.DeleteGroups(ctx, s.group)
		}
		// Its output and changelog are checked and counted: drop them now,
		// so the disk holds one run's at a time.
		if !f.keep {
			b.k.deleteNamed(ctx, s.output, s.changelog)
		}
		return r, nil
	}
	for i := 1; i <= f.runs; i++ {
		for _, g := range guarantees {
			for _, side := range []string{"weir", "kstreams"} {
				if side == "weir" && g == atLeastOnce && !weirALO {
					continue
				}
				r, err := one(side, g, i, "")
				if err != nil {
					return err
				}
				results = append(results, r)
			}
		}
	}

	rep := &report{
		ID: b.id, Started: t0.UTC().Format(time.RFC3339), Cores: runtime.NumCPU(), Workload: b.wl.describe(), Events: f.events, Cards: f.cards,
		EventRate: f.eventRate, Partitions: f.partitions, CommitMs: b.commitMs, LatenessMs: b.lateness,
		ProduceSeconds: produced.Seconds(), Ceilings: ceilings, Ceiling: b.ceilingRate, Baseline: baseline,
		KSThreads: f.ksThreads, KSStore: f.ksStore, KSHeap: f.ksHeap, Runs: results, Late: b.in.late,
		WeirAtLeastOnce: weirALO,
	}

	// 5. The profile.
	if f.profile != "" {
		prof := f.profile
		if !filepath.IsAbs(prof) {
			prof = filepath.Join(b.root, prof)
		}
		if err := os.MkdirAll(filepath.Dir(prof), 0o755); err != nil {
			return err
		}
		r, err := one("weir", exactlyOnce, 1, prof)
		if err != nil {
			return err
		}
		r.Profiled = true
		rep.Profiled = r
		rep.ProfilePath = prof
		rep.ProfileTop = profileTop(ctx, prof)
	}

	// 6. Latency.
	if f.latency > 0 {
		lat, err := b.latencyRuns(ctx, guarantees, weirALO)
		if err != nil {
			return err
		}
		rep.Latency = lat
	}
	rep.print(os.Stdout)
	if f.jsonOut != "" {
		out, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(f.jsonOut, append(out, '\n'), 0o644); err != nil {
			return err
		}
		logf("wrote %s", f.jsonOut)
	}
	for _, r := range append(results, rep.Profiled) {
		if r != nil && (!r.Check.ok() || r.DeadLetters != 0) {
			return fmt.Errorf("%s %s run %d failed its check: %s, %d dead letters: %w", r.Side, r.Guarantee, r.Run, r.Check, r.DeadLetters, errFailed)
		}
	}
	for _, l := range rep.Latency {
		if l.Missing > 0 {
			return fmt.Errorf("latency run %s %s %d ms: %d events without a visible output: %w", l.Side, l.Guarantee, l.CommitMs, l.Missing, errFailed)
		}
	}
	return nil
}

const (
	exactlyOnce = "exactly_once"
	atLeastOnce = "at_least_once"
)

func shortGuarantee(g string) string {
	if g == atLeastOnce {
		return "alo"
	}
	return "eos"
}

func parseGuarantees(s string) ([]string, error) {
	var out []string
	for _, g := range strings.Split(s, ",") {
		switch g = strings.TrimSpace(g); g {
		case exactlyOnce, atLeastOnce:
			out = append(out, g)
		case "":
		default:
			return nil, fmt.Errorf("-guarantees: %q is neither %s nor %s", g, exactlyOnce, atLeastOnce)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("-guarantees: none given")
	}
	return out, nil
}

// weirSupportsAtLeastOnce reports whether this tree's config takes
// kafka.guarantee: at_least_once (bin/weir is built from the same tree).
func weirSupportsAtLeastOnce() bool {
	_, err := config.Parse("probe.yaml", []byte("kafka:\n  brokers: [127.0.0.1:1]\n  guarantee: at_least_once\n"), func(string) string { return "" })
	return err == nil || !strings.Contains(err.Error(), "guarantee")
}

// checkView takes the source's lateness from the demo config and, for the
// demo workload, makes sure its view is still the one both sides compute.
func (b *bench) checkView() error {
	cfg, err := config.Load(filepath.Join(b.root, "deploy/demo/weir.yaml"), func(string) string { return "" })
	if err != nil {
		return err
	}
	if len(cfg.Sources) != 1 {
		return fmt.Errorf("deploy/demo/weir.yaml: want one source, got %d", len(cfg.Sources))
	}
	src := cfg.Sources[0]
	if src.OutOfOrder.D() != 0 {
		return fmt.Errorf("deploy/demo/weir.yaml: source %s has out_of_order %s; bench/kstreams and the oracle assume 0", src.Name, src.OutOfOrder.D())
	}
	b.lateness = src.Lateness.D().Milliseconds()
	if !b.wl.fromDemo {
		return nil
	}
	v, ok := cfg.View(b.wl.view)
	if !ok {
		return fmt.Errorf("deploy/demo/weir.yaml has no view %s", b.wl.view)
	}
	var want, got []string
	for _, f := range b.wl.features {
		field := "amount"
		if f.agg == "count" {
			field = ""
		}
		want = append(want, fmt.Sprintf("%s %s %s %s", f.name, f.agg, field, f.window))
	}
	for _, ft := range v.Features {
		if ft.Where != nil {
			return fmt.Errorf("view %s: feature %s has a filter; bench/kstreams computes none", v.Name, ft.Name)
		}
		got = append(got, fmt.Sprintf("%s %s %s %s", ft.Name, ft.Agg, ft.Field, ft.Window.D()))
	}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		return fmt.Errorf("view %s changed: %q; bench/kstreams and the oracle compute %q: update them together", v.Name, got, want)
	}
	if v.Lateness.D() != src.Lateness.D() || v.Kind != config.KindSliding {
		return fmt.Errorf("view %s: kind %s, lateness %s; the harness expects a sliding view with the source's lateness", v.Name, v.Kind, v.Lateness.D())
	}
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
