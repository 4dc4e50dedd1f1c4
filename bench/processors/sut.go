package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/yaml.v3"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
)

// sut is one run of a system under test: a process that consumes the input
// topic in a consumer group of its own and writes one output per event.
type sut struct {
	side      string // "weir" or "kstreams"
	guarantee string // exactly_once or at_least_once
	commitMs  int64
	run       int    // 1-based, per side and guarantee
	group     string // the consumer group (Weir) or application id (Kafka Streams)
	output    string // output topic
	changelog string
	dead      string // dead-letter topic ("" for Kafka Streams, which drops and counts)
	cmd       *exec.Cmd
	logPath   string
	decode    decoder
}

// runResult is what one run measured.
type runResult struct {
	Side      string `json:"side"`
	Guarantee string `json:"guarantee"`
	Run       int    `json:"run"`
	Order     int    `json:"order"` // position in the whole A/B sequence, from 1
	// StartupSeconds runs from the process start to its first processed
	// event.
	StartupSeconds float64 `json:"startup_seconds"`
	// Seconds runs from the first processed event (the earliest processing
	// time the outputs carry) to the group's committed offsets reaching the
	// end of the input.
	Seconds         float64  `json:"seconds"`
	EventsPerSec    float64  `json:"events_per_sec"`
	CPU             cpuUse   `json:"cpu"`
	EventsPerCPUSec float64  `json:"events_per_cpu_sec"` // events / process CPU seconds
	Cores           float64  `json:"cores"`              // process CPU seconds / Seconds
	OtherFraction   float64  `json:"other_fraction"`     // CPU of other processes / machine capacity
	Noisy           bool     `json:"noisy"`              // OtherFraction above the threshold
	TopOthers       []string `json:"top_others"`         // busiest other processes over the whole run
	CeilingFraction float64  `json:"ceiling_fraction"`
	// The same over the rest of the input from the first poll that saw at
	// least half of it committed: past start-up and JIT warm-up.
	SecondHalfEventsPerSec    float64 `json:"second_half_events_per_sec"`
	SecondHalfEventsPerCPUSec float64 `json:"second_half_events_per_cpu_sec"`
	PeakRSSMB                 float64 `json:"peak_rss_mb"`

	Check                  *check  `json:"check"`
	OutputsPerEvent        float64 `json:"outputs_per_event"`
	OutputBytesPerEvent    float64 `json:"output_bytes_per_event"`
	Changelog              int64   `json:"changelog_records"`
	ChangelogBytes         int64   `json:"changelog_bytes"`
	ChangelogPerEvent      float64 `json:"changelog_per_event"`
	ChangelogBytesPerEvent float64 `json:"changelog_bytes_per_event"`
	DeadLetters            int64   `json:"dead_letters"`
	Log                    string  `json:"log"`
	// Profiled: an extra run of Weir's processor in this harness's binary
	// with a CPU profile on, left out of the medians.
	Profiled bool `json:"profiled,omitempty"`
}

// weirSUT prepares a run of `weir run --role processor` on a config derived
// from the demo's: the same source and entity, the workload's view, no
// models, monitors or retrain policies, topics under a prefix of its own.
// tag names the run's topics and directory; with profile set, the processor
// runs inside this harness's binary (-as-processor) and writes a CPU profile
// there.
func (b *bench) weirSUT(ctx context.Context, input, tag, guarantee string, commitMs int64, profile string) (*sut, error) {
	name := fmt.Sprintf("%s.%s", b.id, tag)
	dir := filepath.Join(b.work, tag)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "weir.yaml")
	cfg, err := b.writeWeirConfig(cfgPath, dir, name, input, guarantee, commitMs)
	if err != nil {
		return nil, err
	}
	src := cfg.Sources[0]
	view := b.wl.view
	rows, err := schemas.NewSerde(ctx, b.reg, schemas.Subject(cfg.FeaturesTopic(view)), schemas.MustParse(schemas.FeatureRowSchema))
	if err != nil {
		return nil, err
	}
	s := &sut{
		side: "weir", guarantee: guarantee, commitMs: commitMs,
		group:     cfg.Kafka.ClientID + ".processor." + src.Name,
		output:    cfg.FeaturesTopic(view),
		changelog: cfg.ChangelogTopic(src.Name),
		dead:      cfg.DeadLetterTopic(),
		logPath:   filepath.Join(dir, "processor.log"),
		decode:    decodeWeir(ctx, rows, b.wl),
	}
	if profile != "" {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		s.cmd = exec.Command(self, "-as-processor", cfgPath, "-cpuprofile", profile)
	} else {
		s.cmd = exec.Command(b.weirBin, "run", "--role", "processor", "--config", cfgPath, "--instance", "bench")
	}
	s.cmd.Dir = dir
	// The file names every endpoint; the variables .weir/env exports would
	// override it, so they are set to the same values.
	s.cmd.Env = append(os.Environ(),
		"WEIR_KAFKA_BROKERS="+strings.Join(b.k.seeds, ","),
		"WEIR_SCHEMA_REGISTRY_URL="+b.regURL)
	return s, nil
}

// writeWeirConfig writes the processor's weir.yaml and returns it parsed.
func (b *bench) writeWeirConfig(path, dir, name, input, guarantee string, commitMs int64) (*config.Config, error) {
	raw, err := os.ReadFile(filepath.Join(b.root, "deploy/demo/weir.yaml"))
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	section := func(v any) (map[string]any, error) {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("deploy/demo/weir.yaml: unexpected shape %T", v)
		}
		return m, nil
	}
	for _, k := range []string{"models", "monitors", "retrain"} {
		delete(doc, k)
	}
	doc["data_dir"] = filepath.Join(dir, "data")
	kafka, err := section(doc["kafka"])
	if err != nil {
		return nil, err
	}
	kafka["brokers"] = b.k.seeds
	kafka["client_id"] = name // names the consumer group and the transactional id
	kafka["commit_interval"] = (time.Duration(commitMs) * time.Millisecond).String()
	if guarantee == atLeastOnce {
		kafka["guarantee"] = "at_least_once"
	}
	doc["schema_registry"] = map[string]any{"url": b.regURL}
	topics, err := section(doc["topics"])
	if err != nil {
		return nil, err
	}
	topics["prefix"] = name
	topics["partitions"] = b.partitions
	sources, ok := doc["sources"].([]any)
	if !ok || len(sources) != 1 {
		return nil, fmt.Errorf("deploy/demo/weir.yaml: want one source, got %v", doc["sources"])
	}
	src, err := section(sources[0])
	if err != nil {
		return nil, err
	}
	src["topic"] = input
	if !b.wl.fromDemo {
		// The workload's own view, of the demo's source and entity.
		doc["views"] = []any{b.wl.weirView(fmt.Sprint(src["name"]), "card")}
	}
	labels, err := section(doc["labels"])
	if err != nil {
		return nil, err
	}
	labels["topic"] = b.id + ".labels"
	doc["serve"] = map[string]any{"addr": "127.0.0.1:0"}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, out, 0o644); err != nil {
		return nil, err
	}
	cfg, err := config.Load(path, func(string) string { return "" })
	if err != nil {
		return nil, fmt.Errorf("derived config: %w", err)
	}
	return cfg, nil
}

// kstreamsSUT prepares a run of the Kafka Streams app of bench/kstreams.
func (b *bench) kstreamsSUT(ctx context.Context, input, tag, guarantee string, commitMs int64) (*sut, error) {
	app := fmt.Sprintf("%s.%s", b.id, tag)
	dir := filepath.Join(b.work, tag)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	s := &sut{
		side: "kstreams", guarantee: guarantee, commitMs: commitMs,
		group:     app,
		output:    app + ".features",
		changelog: app + "-card-events-changelog",
		logPath:   filepath.Join(dir, "kstreams.log"),
		decode:    decodeKStreams(b.wl),
	}
	ksGuarantee := "exactly_once_v2"
	if guarantee == atLeastOnce {
		ksGuarantee = "at_least_once"
	}
	if err := b.k.createTopic(ctx, s.output, b.partitions); err != nil {
		return nil, err
	}
	s.cmd = exec.Command("java", "-Xms"+b.flags.ksHeap, "-Xmx"+b.flags.ksHeap, "-cp", b.ksClasspath, "dev.weir.bench.CardActivity",
		"--bootstrap", strings.Join(b.k.seeds, ","), "--input", input, "--output", s.output,
		"--app-id", app, "--state-dir", filepath.Join(dir, "state"),
		"--guarantee", ksGuarantee, "--commit-ms", strconv.FormatInt(commitMs, 10),
		"--threads", strconv.Itoa(b.flags.ksThreads), "--store", b.flags.ksStore,
		"--lateness-ms", strconv.FormatInt(b.lateness, 10), "--features", b.wl.ksFeatures())
	s.cmd.Dir = dir
	return s, nil
}

// measure runs s until its group's committed offsets reach the end of the
// input, sampling CPU every 25 ms, then stops it and checks its output.
func (b *bench) measure(ctx context.Context, s *sut, order int) (*runResult, error) {
	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	res := &runResult{Side: s.side, Guarantee: s.guarantee, Run: s.run, Order: order, Log: s.logPath}

	snapA := snapshotProcs()
	started := time.Now()
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.side, err)
	}
	pid := s.cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- s.cmd.Wait() }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(60 * time.Second):
			s.cmd.Process.Kill()
			<-exited
		}
	}
	defer stop()

	sm := &cpuSampler{pid: pid, brokerPid: b.brokerPid}
	sm.sample()
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(b.flags.runTimeout)
	// half: the first sample once half of the input was committed, end: once
	// all of it was.
	var half, end cpuSample
	var halfDone int64
	var lastErr error
	for {
		select {
		case err := <-exited:
			stopped = true
			return nil, fmt.Errorf("%s run %d exited before catching up (%v); log: %s\n%s", s.side, s.run, err, s.logPath, tail(s.logPath, 15))
		case <-timeout:
			return nil, fmt.Errorf("%s run %d: not caught up after %s (last error: %v); log: %s\n%s", s.side, s.run, b.flags.runTimeout, lastErr, s.logPath, tail(s.logPath, 15))
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		now := sm.sample()
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		done, err := b.k.committed(qctx, s.group, b.input, b.ends)
		cancel()
		if err != nil {
			lastErr = err
			continue
		}
		if half.at.IsZero() && 2*done >= int64(b.in.total) {
			half, halfDone = now, done
		}
		if done >= int64(b.in.total) {
			end = sm.sample()
			break
		}
	}
	res.PeakRSSMB = peakRSS(pid)
	snapB := snapshotProcs()
	stop()
	res.TopOthers = topOthers(snapA, snapB, map[int]bool{pid: true, b.brokerPid: true, os.Getpid(): true}, 3)

	c, err := verify(ctx, b.k, s.output, b.in, b.wl, b.sample, s.decode)
	if err != nil {
		return nil, fmt.Errorf("%s run %d: read output: %w", s.side, s.run, err)
	}
	res.Check = c
	if c.Outputs == 0 {
		return nil, fmt.Errorf("%s run %d: no output", s.side, s.run)
	}
	first := time.UnixMilli(c.FirstMs)
	if first.Before(started.Add(-time.Second)) || first.After(end.at) {
		return nil, fmt.Errorf("%s run %d: first event processed at %s, outside the run (%s to %s)", s.side, s.run, first.Format(time.RFC3339Nano), started.Format(time.RFC3339Nano), end.at.Format(time.RFC3339Nano))
	}
	n := float64(b.in.total)
	res.StartupSeconds = first.Sub(started).Seconds()
	res.Seconds = end.at.Sub(first).Seconds()
	res.EventsPerSec = n / res.Seconds
	res.CPU = diff(sm.at(first), end)
	if res.CPU.Proc > 0 {
		res.EventsPerCPUSec = n / res.CPU.Proc
	}
	res.Cores = res.CPU.Proc / res.Seconds
	if res.CPU.MachineCapacity > 0 {
		res.OtherFraction = res.CPU.Other / res.CPU.MachineCapacity
	}
	res.Noisy = res.OtherFraction > b.flags.noisy
	res.CeilingFraction = res.EventsPerSec / b.ceilingRate
	// The second half of the input, from the poll that first saw at least
	// half of it committed: past start-up and JIT warm-up.
	if h := end.at.Sub(half.at).Seconds(); h > 0 && half.at.After(first) {
		rest := float64(int64(b.in.total) - halfDone)
		res.SecondHalfEventsPerSec = rest / h
		if u := diff(half, end); u.Proc > 0 {
			res.SecondHalfEventsPerCPUSec = rest / u.Proc
		}
	}
	res.OutputsPerEvent = float64(c.Outputs) / n
	res.OutputBytesPerEvent = float64(c.OutputBytes) / n

	if err := b.k.readAll(ctx, s.changelog, func(r *kgo.Record) {
		res.Changelog++
		res.ChangelogBytes += int64(len(r.Key) + len(r.Value))
	}); err != nil {
		return nil, fmt.Errorf("%s run %d: read changelog: %w", s.side, s.run, err)
	}
	res.ChangelogPerEvent = float64(res.Changelog) / n
	res.ChangelogBytesPerEvent = float64(res.ChangelogBytes) / n
	if s.dead != "" {
		if err := b.k.readAll(ctx, s.dead, func(*kgo.Record) { res.DeadLetters++ }); err != nil {
			return nil, fmt.Errorf("%s run %d: read dead letters: %w", s.side, s.run, err)
		}
	}
	return res, nil
}

// peakRSS is a process's peak resident set (VmHWM), in MB; 0 if unknown.
func peakRSS(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if f := strings.Fields(string(line)); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

var errFailed = errors.New("benchmark failed")
