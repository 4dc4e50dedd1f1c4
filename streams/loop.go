package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Processor is one exactly-once stage's logic, driven by Loop.
//
// Contract: Loop calls Assigned and Revoked from the group's rebalance
// callbacks and Process, Commit and Abort from its own goroutine, never
// concurrently with each other (rebalances are blocked while a batch is
// processed). Every record passed to Process is handled exactly once in
// the output: its outputs, the changelog and its consumer offset commit in
// one Kafka transaction. Changes Process makes to state are staged: Commit
// makes them permanent once the transaction committed, Abort drops them
// when it aborted, after which the loop re-consumes from the last committed
// offsets.
type Processor interface {
	// Assigned restores the state of newly assigned partitions before any of
	// their records is processed.
	Assigned(ctx context.Context, assigned map[string][]int32) error
	// Revoked drops the state of partitions no longer owned.
	Revoked(revoked map[string][]int32)
	// Process handles one record, appending the records to produce to out;
	// each must carry its Partition (the loop partitions manually).
	// A *DeadLetter error sends rec to the dead-letter topic and the loop
	// goes on; a *RetryError aborts the transaction and processes again
	// after a backoff; any other error stops the loop. Process must not keep rec.
	Process(ctx context.Context, rec *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error)
	// Flush appends records for state staged since the last Commit or Abort
	// (e.g. one changelog record per entity touched) to out.
	Flush(out []*kgo.Record) []*kgo.Record
	// Commit makes staged state permanent.
	Commit()
	// Abort drops staged state.
	Abort()
}

// LoopConfig configures a Loop.
type LoopConfig struct {
	Stage           string   // names the stage in metrics, logs and pprof labels
	Group           string   // consumer group
	TransactionalID string   // stable per instance, so a restarted instance fences its predecessor
	Topics          []string // input topics
	DeadLetterTopic string
	// MaxBatch bounds the records in one transaction (default 10000).
	MaxBatch int
	// CommitInterval is how long a transaction gathers records before it
	// commits (default 100ms): longer means fewer commits and more
	// latency; read_committed consumers see outputs only after the commit.
	CommitInterval time.Duration
	// Opts are the base client options (streams.ClientOpts); the loop adds
	// group, transaction and read_committed options.
	Opts []kgo.Opt
}

// Loop runs a Processor in a franz-go GroupTransactSession: poll, process,
// produce outputs and changelog, commit offsets and outputs in one
// transaction. A rebalance during a batch aborts the transaction.
type Loop struct {
	cfg  LoopConfig
	proc Processor
	log  *slog.Logger
	m    loopMetrics
}

type loopMetrics struct {
	in, out, aborted prometheus.Counter
	dead             *prometheus.CounterVec
	commit           prometheus.Observer
	lag              *prometheus.GaugeVec // by topic, partition
}

// NewLoop returns a loop; reg may be nil.
func NewLoop(cfg LoopConfig, proc Processor, log *slog.Logger, reg prometheus.Registerer) *Loop {
	if cfg.MaxBatch == 0 {
		cfg.MaxBatch = 10000
	}
	if cfg.CommitInterval == 0 {
		cfg.CommitInterval = 100 * time.Millisecond
	}
	l := prometheus.Labels{"stage": cfg.Stage}
	in := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_stream_records_in_total", Help: "Records consumed and committed."}, []string{"stage"})
	out := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_stream_records_out_total", Help: "Records produced and committed."}, []string{"stage"})
	ab := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_stream_txn_aborted_total", Help: "Transactions aborted (rebalance or produce failure)."}, []string{"stage"})
	dead := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_stream_deadletter_total", Help: "Records sent to the dead-letter topic, by reason."}, []string{"stage", "reason"})
	commit := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "weir_stream_txn_commit_seconds", Help: "Time to end a transaction with a commit.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, []string{"stage"})
	lag := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "weir_stream_consumer_lag", Help: "Records between the last one fetched and the partition's high watermark, as of the last fetch."}, []string{"stage", "topic", "partition"})
	if reg != nil {
		for _, c := range []prometheus.Collector{in, out, ab, dead, commit, lag} {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					log.Warn("register metric", "err", err)
				}
			}
		}
	}
	return &Loop{cfg: cfg, proc: proc, log: log.With("stage", cfg.Stage), m: loopMetrics{
		in: in.With(l), out: out.With(l), aborted: ab.With(l), commit: commit.With(l),
		dead: dead.MustCurryWith(l), lag: lag.MustCurryWith(l),
	}}
}

// Run blocks until ctx is done or a fatal error.
func (l *Loop) Run(ctx context.Context) error {
	var assignErr error
	opts := append(append([]kgo.Opt(nil), l.cfg.Opts...),
		kgo.ConsumerGroup(l.cfg.Group),
		kgo.ConsumeTopics(l.cfg.Topics...),
		kgo.TransactionalID(l.cfg.TransactionalID),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// No RequireStableFetchOffsets: franz-go now sets RequireStable on
		// every group offset fetch, so a new member's fetch waits for any
		// pending transactional offset commit rather than reading past it.
		kgo.BlockRebalanceOnPoll(),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Outputs carry their partition: a processor writes an entity's
		// rows, predictions and changelog to its source partition's number.
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.OnPartitionsAssigned(func(ctx context.Context, _ *kgo.Client, m map[string][]int32) {
			l.log.Info("partitions assigned", "partitions", m)
			if err := l.proc.Assigned(ctx, m); err != nil {
				assignErr = err
			}
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			l.log.Info("partitions revoked", "partitions", m)
			l.proc.Revoked(m)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			l.log.Warn("partitions lost", "partitions", m)
			l.proc.Revoked(m)
		}),
	)
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return fmt.Errorf("%s: start transactional session: %w", l.cfg.Stage, err)
	}
	defer sess.Close()
	pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("role", l.cfg.Stage)))

	var out []*kgo.Record
	backoff := 100 * time.Millisecond
	for {
		fetches := sess.PollRecords(ctx, l.cfg.MaxBatch)
		if ctx.Err() != nil {
			sess.AllowRebalance()
			return nil
		}
		if assignErr != nil {
			sess.AllowRebalance()
			return fmt.Errorf("%s: restore state: %w", l.cfg.Stage, assignErr)
		}
		if fetches.IsClientClosed() {
			return nil
		}
		var fatal error
		if fetches.NumRecords() == 0 {
			sess.AllowRebalance()
			continue
		}
		if err := sess.Begin(); err != nil {
			sess.AllowRebalance()
			return fmt.Errorf("%s: begin transaction: %w", l.cfg.Stage, err)
		}
		// One transaction takes what arrives within the commit interval, up
		// to MaxBatch records: polling again inside it is safe, since the
		// rebalance stays blocked until AllowRebalance and End commits the
		// offsets of everything polled.
		begun := time.Now()
		var n, produced int
		dead := map[string]int{}
		for {
			var fatal0 error
			out, n, fatal0 = l.process(ctx, fetches, out[:0], n, dead)
			for _, r := range out {
				sess.Produce(ctx, r, nil) // a failed produce makes End abort
			}
			produced += len(out)
			if fatal = fatal0; fatal != nil {
				break
			}
			left := l.cfg.CommitInterval - time.Since(begun)
			if n >= l.cfg.MaxBatch || left <= 0 {
				break
			}
			pctx, cancel := context.WithTimeout(ctx, left)
			fetches = sess.PollRecords(pctx, l.cfg.MaxBatch-n)
			cancel()
			if ctx.Err() != nil || fetches.NumRecords() == 0 {
				break
			}
		}
		if fatal == nil {
			out = l.proc.Flush(out[:0])
			for _, r := range out {
				sess.Produce(ctx, r, nil)
			}
			produced += len(out)
		}
		var retry *RetryError
		if errors.As(fatal, &retry) {
			// Abort, rewind to the committed offsets and try again later.
			if _, err := sess.End(ctx, kgo.TryAbort); err != nil && ctx.Err() == nil {
				l.log.Warn("abort transaction", "err", err)
			}
			l.proc.Abort()
			l.m.aborted.Inc()
			sess.AllowRebalance()
			l.log.Warn("record failed for a reason that may pass; retrying from the committed offsets", "backoff", backoff, "err", fatal)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
			continue
		}
		start := time.Now()
		committed, err := sess.End(ctx, fatal == nil)
		if committed {
			backoff = 100 * time.Millisecond
			l.proc.Commit()
			l.m.commit.Observe(time.Since(start).Seconds())
			l.m.in.Add(float64(n))
			l.m.out.Add(float64(produced))
			for code, c := range dead {
				l.m.dead.WithLabelValues(code).Add(float64(c))
			}
		} else {
			l.proc.Abort()
			l.m.aborted.Inc()
		}
		sess.AllowRebalance()
		if fatal != nil {
			return fatal
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// End's errors are retriable by re-consuming from the committed
			// offsets, which the session has rewound to.
			l.log.Warn("transaction not committed; reprocessing from committed offsets", "err", err)
		}
	}
}

// process runs the processor over fetched records, appending outputs
// (dead letters included) to out; n counts records processed so far in the
// transaction and dead the dead letters by reason.
func (l *Loop) process(ctx context.Context, fetches kgo.Fetches, out []*kgo.Record, n int, dead map[string]int) ([]*kgo.Record, int, error) {
	fetches.EachError(func(t string, p int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return
		}
		l.log.Warn("fetch error", "topic", t, "partition", p, "err", err)
	})
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if n := len(p.Records); n > 0 {
			l.m.lag.WithLabelValues(p.Topic, strconv.Itoa(int(p.Partition))).Set(float64(p.HighWatermark - p.Records[n-1].Offset - 1))
		}
	})
	iter := fetches.RecordIter()
	for !iter.Done() {
		rec := iter.Next()
		n++
		var err error
		out, err = l.proc.Process(ctx, rec, out)
		if err == nil {
			continue
		}
		if d, ok := AsDeadLetter(err); ok {
			dead[d.Reason.Code]++
			out = append(out, DeadLetterRecord(l.cfg.DeadLetterTopic, rec, d))
			continue
		}
		err = fmt.Errorf("%s: process %s/%d@%d: %w", l.cfg.Stage, rec.Topic, rec.Partition, rec.Offset, err)
		return out, n, err
	}
	return out, n, nil
}
