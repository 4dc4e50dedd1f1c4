package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/loadgen"
	"github.com/weirhq/weir/schemas"
)

// latencyResult is one end-to-end latency run: events produced at a paced
// rate to a processor that is caught up, each timed from its produce time
// (the record timestamp, set by the producer here when it hands the record
// to the client) to when its output row is first seen by a consumer here,
// read_committed for exactly-once, read_uncommitted for at-least-once.
type latencyResult struct {
	Side       string  `json:"side"`
	Guarantee  string  `json:"guarantee"`
	CommitMs   int64   `json:"commit_ms"`
	Isolation  string  `json:"isolation"`
	Rate       float64 `json:"rate"`          // asked for
	Achieved   float64 `json:"achieved_rate"` // produced events / produce span
	Seconds    float64 `json:"seconds"`
	Events     int     `json:"events"`  // measured events (after the warm-up)
	Missing    int     `json:"missing"` // measured events without an output in time
	P50        float64 `json:"p50_ms"`
	P99        float64 `json:"p99_ms"`
	P999       float64 `json:"p999_ms"`
	Max        float64 `json:"max_ms"`
	Cores      float64 `json:"cores"` // the processor's CPU over the measured span
	Other      float64 `json:"other_fraction"`
	Noisy      bool    `json:"noisy"`
	StartupSec float64 `json:"startup_seconds"` // process start to the warm-up's outputs all seen
}

// latencyRuns runs every side, guarantee and commit interval of the latency
// flags, each on a fresh input topic.
func (b *bench) latencyRuns(ctx context.Context, guarantees []string, weirALO bool) ([]*latencyResult, error) {
	var commits []time.Duration
	for _, s := range strings.Split(b.flags.latCommits, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("-latency-commits: %w", err)
		}
		commits = append(commits, d)
	}
	var out []*latencyResult
	n := 0
	for _, g := range guarantees {
		for _, c := range commits {
			for _, side := range strings.Split(b.flags.latSides, ",") {
				side = strings.TrimSpace(side)
				if side == "weir" && g == atLeastOnce && !weirALO {
					continue
				}
				n++
				r, err := b.latencyRun(ctx, side, g, c.Milliseconds(), n)
				if err != nil {
					return nil, err
				}
				logf("latency %s %s commit %d ms: p50 %.1f ms, p99 %.1f ms, max %.1f ms at %.0f events/s (%d events, %d missing, other CPU %.0f%%)",
					side, g, r.CommitMs, r.P50, r.P99, r.Max, r.Achieved, r.Events, r.Missing, 100*r.Other)
				out = append(out, r)
			}
		}
	}
	return out, nil
}

func (b *bench) latencyRun(ctx context.Context, side, g string, commitMs int64, n int) (*latencyResult, error) {
	input := fmt.Sprintf("%s.lat%d.payments", b.id, n)
	if err := b.k.createTopic(ctx, input, b.partitions); err != nil {
		return nil, err
	}
	txn, err := schemas.NewSerde(ctx, b.reg, schemas.Subject(input), schemas.MustParse(schemas.TransactionSchema))
	if err != nil {
		return nil, err
	}
	tag := fmt.Sprintf("lat%d-%c-%s-%d", n, side[0], shortGuarantee(g), commitMs)
	var s *sut
	if side == "weir" {
		s, err = b.weirSUT(ctx, input, tag, g, commitMs, "")
	} else {
		s, err = b.kstreamsSUT(ctx, input, tag, g, commitMs)
	}
	if err != nil {
		return nil, err
	}
	res := &latencyResult{Side: side, Guarantee: g, CommitMs: commitMs, Rate: b.flags.latRate, Isolation: "read_committed"}
	iso := kgo.ReadCommitted()
	if g == atLeastOnce {
		iso, res.Isolation = kgo.ReadUncommitted(), "read_uncommitted"
	}

	// The output consumer: the first time each source position is seen.
	type seenAt struct {
		p  pos
		at time.Time
	}
	var mu sync.Mutex
	var seen []seenAt
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cons, err := b.k.client(kgo.ConsumeTopics(s.output), kgo.FetchIsolationLevel(iso),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(500*time.Millisecond),
		kgo.MetadataMinAge(250*time.Millisecond))
	if err != nil {
		return nil, err
	}
	consDone := make(chan struct{})
	go func() {
		defer close(consDone)
		defer cons.Close()
		for cctx.Err() == nil {
			fs := cons.PollFetches(cctx)
			now := time.Now()
			var batch []seenAt
			fs.EachRecord(func(r *kgo.Record) {
				p, _, _, revises, err := s.decode(r)
				if err == nil && revises < 0 {
					batch = append(batch, seenAt{p, now})
				}
			})
			mu.Lock()
			seen = append(seen, batch...)
			mu.Unlock()
		}
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(seen)
	}

	lf, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	defer lf.Close()
	s.cmd.Stdout, s.cmd.Stderr = lf, lf
	started := time.Now()
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
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
		if b.k.adm != nil {
			b.k.adm.DeleteGroups(ctx, s.group)
		}
	}
	defer stop()

	// The producer: idempotent, no linger (a paced stream), snappy.
	prod, err := b.k.client(kgo.ProducerLinger(0))
	if err != nil {
		return nil, err
	}
	defer prod.Close()
	gen := loadgen.New(loadgen.Config{Seed: b.flags.seed + uint64(n), Cards: b.flags.cards, EventsPerSecond: b.flags.latRate, Start: time.Now()})
	var pmu sync.Mutex
	produced := map[pos]time.Time{}
	var perr error
	paced := func(total int, record bool) (time.Duration, error) {
		t0 := time.Now()
		sent := 0
		for sent < total {
			due := min(total, int(time.Since(t0).Seconds()*b.flags.latRate)+1)
			for ; sent < due; sent++ {
				tx, _ := gen.Next()
				v, err := txn.Encode(&tx)
				if err != nil {
					return 0, err
				}
				r := &kgo.Record{Topic: input, Key: []byte(tx.CardID), Value: v, Timestamp: time.Now()}
				prod.Produce(ctx, r, func(r *kgo.Record, err error) {
					pmu.Lock()
					defer pmu.Unlock()
					if err != nil {
						perr = err
						return
					}
					if record {
						produced[pos{r.Partition, r.Offset}] = r.Timestamp
					}
				})
			}
			select {
			case err := <-exited:
				return 0, fmt.Errorf("%s exited (%v); log %s\n%s", side, err, s.logPath, tail(s.logPath, 15))
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(500 * time.Microsecond):
			}
		}
		if err := prod.Flush(ctx); err != nil {
			return 0, err
		}
		pmu.Lock()
		defer pmu.Unlock()
		return time.Since(t0), perr
	}
	waitSeen := func(want int, limit time.Duration) bool {
		deadline := time.Now().Add(limit)
		for time.Now().Before(deadline) {
			if count() >= want {
				return true
			}
			select {
			case err := <-exited:
				exited <- err
				return false
			case <-time.After(10 * time.Millisecond):
			}
		}
		return false
	}

	// Warm-up: one second of the stream, until its outputs are all seen (the
	// processor has joined, restored nothing and caught up).
	warm := int(b.flags.latRate)
	if _, err := paced(warm, false); err != nil {
		return nil, err
	}
	if !waitSeen(warm, 2*time.Minute) {
		return nil, fmt.Errorf("latency %s %s: warm-up outputs not seen (%d of %d); log %s\n%s", side, g, count(), warm, s.logPath, tail(s.logPath, 15))
	}
	res.StartupSec = time.Since(started).Seconds()
	time.Sleep(time.Second) // let the warm-up's commits settle

	// The measured span.
	total := int(b.flags.latRate * b.flags.latency.Seconds())
	sm := &cpuSampler{pid: s.cmd.Process.Pid, brokerPid: b.brokerPid}
	a := sm.sample()
	span, err := paced(total, true)
	if err != nil {
		return nil, err
	}
	u := diff(a, sm.sample())
	res.Seconds = span.Seconds()
	res.Achieved = float64(total) / span.Seconds()
	res.Events = total
	res.Cores = u.Proc / span.Seconds()
	if u.MachineCapacity > 0 {
		res.Other = u.Other / u.MachineCapacity
	}
	res.Noisy = res.Other > b.flags.noisy
	waitSeen(warm+total, 30*time.Second)
	cancel()
	<-consDone
	stop()

	pmu.Lock()
	defer pmu.Unlock()
	var lat []float64
	got := map[pos]bool{}
	for _, x := range seen {
		t, ok := produced[x.p]
		if !ok || got[x.p] {
			continue
		}
		got[x.p] = true
		lat = append(lat, float64(x.at.Sub(t).Microseconds())/1000)
	}
	res.Missing = len(produced) - len(got)
	slices.Sort(lat)
	q := func(f float64) float64 {
		if len(lat) == 0 {
			return math.NaN()
		}
		return lat[min(len(lat)-1, int(math.Ceil(f*float64(len(lat))))-1)]
	}
	res.P50, res.P99, res.P999, res.Max = q(0.50), q(0.99), q(0.999), q(1)
	if !b.flags.keep {
		b.k.deleteNamed(ctx, input, s.output, s.changelog)
	}
	return res, nil
}
