package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Processor is one stage's logic, driven by Loop.
//
// Contract: Loop calls Assigned and Revoked from the group's rebalance
// callbacks and Process, Flush, Commit and Abort from its own goroutine,
// never concurrently with each other (a mutex orders them). Rebalances are
// blocked while a transaction is open, so Revoked and Assigned come
// between transactions, with one exception: when the group session fails
// while a transaction ends (its coordinator went away, as in a broker
// restart), the partitions are reported lost (Revoked) before that
// transaction's Abort, and Abort drops what is staged for the partitions
// left. Under the exactly-once guarantee (the default), every record passed
// to Process is handled exactly once in the output: its outputs, the
// changelog and its consumer offset commit in one Kafka transaction. Under
// LoopConfig.AtLeastOnce, a batch plays the transaction's part: its outputs
// and changelog are acknowledged before its offsets commit, so every record
// is handled at least once (see Loop). Changes Process makes to state are
// staged: Commit makes them permanent once the transaction (or batch)
// committed, Abort drops them when it aborted, after which the loop
// re-consumes from the last committed offsets.
type Processor interface {
	// Assigned restores the state of newly assigned partitions before any of
	// their records is processed.
	Assigned(ctx context.Context, assigned map[string][]int32) error
	// Revoked drops the state of partitions no longer owned.
	Revoked(revoked map[string][]int32)
	// Process handles one record, appending the records to produce to out;
	// each must carry its Partition (the loop partitions manually).
	// A *DeadLetter error sends rec to the dead-letter topic and the loop
	// goes on; a *RetryError aborts the transaction (or batch) and
	// processes again after a backoff; any other error stops the loop.
	// Process must not keep rec.
	Process(ctx context.Context, rec *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error)
	// Flush appends records for state staged since the last Commit or Abort
	// (e.g. one changelog record per entity touched) to out.
	Flush(out []*kgo.Record) []*kgo.Record
	// Commit makes staged state permanent.
	Commit()
	// Abort drops staged state.
	Abort()
}

// Punctuator is an optional Processor interface for output due without
// input (windows closing as a quiet partition's watermark advances on the
// wall clock).
//
// When the processor implements it, the loop polls for at most the commit
// interval, and when a poll returns no records it calls Due; if Due reports
// true, the loop runs a transaction with no input records: Flush, produce
// what it appended, End, then Commit or Abort as for any transaction (an
// abort drops the staged output, and Due is asked again after the next
// empty poll). Due is called from the loop's goroutine between
// transactions, never concurrently with the other methods, and only while
// no records arrive: a transaction with input calls Flush anyway. Output
// must be for partitions the processor was assigned.
type Punctuator interface {
	// Due reports whether Flush has output to write at now with no input.
	Due(now time.Time) bool
}

// LoopConfig configures a Loop.
type LoopConfig struct {
	Stage           string   // names the stage in metrics, logs and pprof labels
	Group           string   // consumer group
	TransactionalID string   // stable per instance, so a restarted instance fences its predecessor; unused when AtLeastOnce
	Topics          []string // input topics
	DeadLetterTopic string
	// AtLeastOnce runs the loop without transactions (kafka.guarantee:
	// at_least_once): a plain consumer group whose offsets commit, batch by
	// batch, only after the batch's outputs were acknowledged. Outputs may
	// be duplicated, never lost; see Loop.
	AtLeastOnce bool
	// MaxBatch bounds the records in one transaction (default 10000).
	MaxBatch int
	// CommitInterval is how long a transaction gathers records before it
	// commits (default 100ms): longer means fewer commits and more
	// latency; read_committed consumers see outputs only after the commit.
	// It is also how often a loop without input asks a Punctuator whether
	// output is due.
	CommitInterval time.Duration
	// InstanceID, when set, makes the loop a static member of its group
	// (kgo.InstanceID): a restarted instance with the same id takes its
	// predecessor's place and partitions at once, instead of waiting for the
	// group to expire the predecessor's session. It must be stable across
	// restarts and unique in the group, like TransactionalID; the restarted
	// instance's transactional id fences the predecessor's transaction
	// before it joins (under AtLeastOnce, whatever the predecessor produced
	// without committing its offsets is processed again). A static member
	// does not leave the group when it stops: an instance removed for good
	// keeps its partitions until SessionTimeout, and one restarted under
	// another id waits that long for the partitions of its old id.
	InstanceID string
	// SessionTimeout is how long the group waits for a member's heartbeat
	// before it expires the member and gives its partitions to others
	// (kgo.SessionTimeout; zero keeps kgo's default, 45s).
	SessionTimeout time.Duration
	// Opts are the base client options (streams.ClientOpts); the loop adds
	// group, read_committed and (exactly once) transaction options.
	Opts []kgo.Opt
}

// Loop runs a Processor in one of two modes.
//
// Exactly once (the default): a franz-go GroupTransactSession. Poll,
// process, produce outputs and changelog, commit offsets and outputs in one
// transaction. Rebalances wait for the transaction to end (see Processor),
// and a group session lost during a transaction aborts it.
//
// At least once (LoopConfig.AtLeastOnce): a plain consumer group (no
// transactional id; static membership still applies) and an idempotent
// producer. Each batch, gathered as a transaction would be, is processed,
// flushed and produced; the loop waits until the brokers acknowledged every
// record of it (kgo.Client.Flush), then commits the batch's offsets
// synchronously, then calls Commit. If a record fails to produce, or the
// offsets fail to commit, the loop calls Abort, rewinds to the committed
// offsets and processes the records again after a backoff: outputs (and
// changelog records) may be written twice, never lost, and state restored
// from the changelog may count a record twice. Rebalances wait for the
// batch to commit or abort (kgo.BlockRebalanceOnPoll). Inputs are read
// read_committed, as in exactly-once mode: a source written by transactional
// producers costs latency up to their commit, but aborted records are not
// processed; with non-transactional producers it costs nothing.
type Loop struct {
	cfg LoopConfig
	log *slog.Logger
	m   loopMetrics

	mu   sync.Mutex // orders the calls to proc from the loop and the group's callbacks
	proc Processor

	endGrace time.Duration // see end; a field so that tests can shorten it
	out      []*kgo.Record // output buffer, reused by the loop's goroutine
}

type loopMetrics struct {
	in, out, aborted prometheus.Counter
	restarts         prometheus.Counter
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
	ab := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_stream_txn_aborted_total", Help: "Transactions (or at-least-once batches) aborted (rebalance, produce or commit failure, retry)."}, []string{"stage"})
	dead := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_stream_deadletter_total", Help: "Records sent to the dead-letter topic, by reason."}, []string{"stage", "reason"})
	commit := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "weir_stream_txn_commit_seconds", Help: "Time to end a transaction with a commit, or at least once to flush a batch's output and commit its offsets.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}, []string{"stage"})
	restarts := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_stream_session_restarts_total", Help: "Sessions (clients) closed after an error and started again."}, []string{"stage"})
	lag := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "weir_stream_consumer_lag", Help: "Records between the last one fetched and the partition's high watermark, as of the last fetch."}, []string{"stage", "topic", "partition"})
	if reg != nil {
		for _, c := range []prometheus.Collector{in, out, ab, restarts, dead, commit, lag} {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if !errors.As(err, &are) {
					log.Warn("register metric", "err", err)
				}
			}
		}
	}
	return &Loop{cfg: cfg, proc: proc, endGrace: endGrace, log: log.With("stage", cfg.Stage), m: loopMetrics{
		in: in.With(l), out: out.With(l), aborted: ab.With(l), restarts: restarts.With(l), commit: commit.With(l),
		dead: dead.MustCurryWith(l), lag: lag.MustCurryWith(l),
	}}
}

// Session restarts back off from minSessionBackoff, doubling up to
// maxSessionBackoff; a session that lasted sessionBackoffReset starts the
// next backoff from the minimum again.
const (
	minSessionBackoff   = 250 * time.Millisecond
	maxSessionBackoff   = 30 * time.Second
	sessionBackoffReset = time.Minute
)

// endGrace is how long ending a transaction may take before the loop lets
// the group rebalance (see end).
const endGrace = 5 * time.Second

// Run blocks until ctx is done or a fatal error: a processor error (not a
// dead letter or a retry), a failed restore, or a configuration the client
// refuses.
//
// Exactly once, a transactional session whose transaction fails to begin
// or end is closed and a new one started in its place, after a backoff (250ms,
// doubling to 30s): franz-go documents End's errors as not retriable on the
// same session, and after a broker restart the producer can be left fenced
// or in a failed state. Closing the session revokes every partition
// (Processor.Revoked); the new session fences the old one's transaction
// and is assigned partitions again, which restores their state from the
// changelog. Authorization errors stop the loop.
//
// At least once, a failed produce or offset commit rewinds the same client
// to the committed offsets and the batch is processed again after a
// backoff (100ms, doubling to 10s; see Loop); only authorization errors
// stop the loop.
func (l *Loop) Run(ctx context.Context) error {
	pprof.SetGoroutineLabels(pprof.WithLabels(ctx, pprof.Labels("role", l.cfg.Stage)))
	backoff := minSessionBackoff
	session := l.session
	if l.cfg.AtLeastOnce {
		session = l.atLeastOnceSession
	}
	for {
		started := time.Now()
		err := session(ctx)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		var se *sessionError
		if !errors.As(err, &se) {
			return err
		}
		if time.Since(started) >= sessionBackoffReset {
			backoff = minSessionBackoff
		}
		l.m.restarts.Inc()
		l.log.Error("session failed; starting a new one", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxSessionBackoff)
	}
}

// sessionError is an error of the transactional session rather than of
// the processor: Run starts a new session.
type sessionError struct{ err error }

func (e *sessionError) Error() string { return e.err.Error() }
func (e *sessionError) Unwrap() error { return e.err }

// sessionFailed wraps err as a sessionError, unless no new session can
// help (the client is not authorized).
func sessionFailed(err error) error {
	if unauthorized(err) {
		return err
	}
	return &sessionError{err}
}

// unauthorized reports whether err is an authorization error, which no
// retry or new session can help.
func unauthorized(err error) bool {
	for _, fatal := range []error{kerr.TransactionalIDAuthorizationFailed, kerr.GroupAuthorizationFailed,
		kerr.TopicAuthorizationFailed, kerr.ClusterAuthorizationFailed} {
		if errors.Is(err, fatal) {
			return true
		}
	}
	return false
}

// groupOpts are the client options both modes share: the consumer group,
// with rebalances blocked from each poll until the loop allows them, no
// autocommit, manual partitioning, and the rebalance callbacks, which
// record a failed restore in *assignErr (guarded by l.mu).
func (l *Loop) groupOpts(assignErr *error) []kgo.Opt {
	opts := append(append([]kgo.Opt(nil), l.cfg.Opts...),
		kgo.ConsumerGroup(l.cfg.Group),
		// Exactly once needs it; at least once, so that a source written by
		// transactional producers is read as they committed it.
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
			l.mu.Lock()
			defer l.mu.Unlock()
			if err := l.proc.Assigned(ctx, m); err != nil && *assignErr == nil {
				*assignErr = err
			}
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			l.log.Info("partitions revoked", "partitions", m)
			l.mu.Lock()
			defer l.mu.Unlock()
			l.proc.Revoked(m)
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			l.log.Warn("partitions lost", "partitions", m)
			l.mu.Lock()
			defer l.mu.Unlock()
			l.proc.Revoked(m)
		}),
	)
	if l.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(l.cfg.InstanceID))
	}
	if l.cfg.SessionTimeout > 0 {
		opts = append(opts, kgo.SessionTimeout(l.cfg.SessionTimeout))
	}
	return opts
}

// restoreErr returns the error of a failed restore, if any.
func (l *Loop) restoreErr(assignErr *error) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if *assignErr != nil {
		return fmt.Errorf("%s: restore state: %w", l.cfg.Stage, *assignErr)
	}
	return nil
}

// session runs one GroupTransactSession until ctx is done (nil), the
// session fails (a *sessionError) or the processor fails.
func (l *Loop) session(ctx context.Context) error {
	var assignErr error // guarded by l.mu
	// The topics are added once the transactional id is fenced, below.
	opts := append(l.groupOpts(&assignErr), kgo.TransactionalID(l.cfg.TransactionalID))
	sess, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return fmt.Errorf("%s: start transactional session: %w", l.cfg.Stage, err)
	}
	// Closing revokes the partitions, which waits for the rebalance to be
	// allowed.
	defer sess.CloseAllowingRebalance()
	// Fence the previous holder of the transactional id (a killed process,
	// or this loop's failed session) before joining the group: its open
	// transaction aborts, or completes if it was committing, so that the
	// restore on assignment reads the changelog as the committed offsets
	// left it and the group's offset fetch has no pending commit to wait on.
	if _, _, err := sess.Client().ProducerID(ctx); err != nil {
		return sessionFailed(fmt.Errorf("%s: fence transactional id %s: %w", l.cfg.Stage, l.cfg.TransactionalID, err))
	}
	sess.Client().AddConsumeTopics(l.cfg.Topics...)

	punct, _ := l.proc.(Punctuator)
	produce := func(r *kgo.Record) { sess.Produce(ctx, r, nil) } // a failed produce makes End abort
	backoff := minRetryBackoff
	for {
		fetches := l.poll(ctx, sess, punct)
		if ctx.Err() != nil {
			return nil
		}
		if err := l.restoreErr(&assignErr); err != nil {
			return err
		}
		if fetches.IsClientClosed() {
			return nil
		}
		// No records: a transaction with no input if the processor has
		// output due (Punctuator), else nothing to do.
		input := fetches.NumRecords() > 0
		if !input && (punct == nil || !l.due(punct)) {
			sess.AllowRebalance()
			continue
		}
		if err := sess.Begin(); err != nil {
			return sessionFailed(fmt.Errorf("%s: begin transaction: %w", l.cfg.Stage, err))
		}
		b, fatal := l.fill(ctx, sess, fetches, input, produce)
		var retry *RetryError
		if errors.As(fatal, &retry) {
			// Abort, rewind to the committed offsets and try again later.
			_, err := l.end(ctx, sess, kgo.TryAbort)
			l.abort()
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				return sessionFailed(fmt.Errorf("%s: abort transaction: %w", l.cfg.Stage, err))
			}
			sess.AllowRebalance()
			l.log.Warn("record failed for a reason that may pass; retrying from the committed offsets", "backoff", backoff, "err", fatal)
			if !l.wait(ctx, &backoff) {
				return nil
			}
			continue
		}
		start := time.Now()
		committed, err := l.end(ctx, sess, fatal == nil)
		if committed {
			backoff = minRetryBackoff
			l.committed(b, time.Since(start))
		} else {
			l.abort()
		}
		switch {
		case fatal != nil:
			return fatal
		case ctx.Err() != nil:
			return nil
		case err != nil:
			return sessionFailed(fmt.Errorf("%s: end transaction: %w", l.cfg.Stage, err))
		}
		// Not committed without an error: the group revoked or lost
		// partitions during the transaction, and the session has rewound
		// to the committed offsets.
		sess.AllowRebalance()
	}
}

// A batch that failed for a reason that may pass (a *RetryError, at least
// once a failed produce or offset commit) is retried after a backoff from
// minRetryBackoff, doubling up to maxRetryBackoff; a committed batch resets
// it.
const (
	minRetryBackoff = 100 * time.Millisecond
	maxRetryBackoff = 10 * time.Second
)

// wait sleeps for *backoff and doubles it; false if ctx was done first.
func (l *Loop) wait(ctx context.Context, backoff *time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(*backoff):
	}
	*backoff = min(2**backoff, maxRetryBackoff)
	return true
}

// batch counts what one transaction, or one at-least-once batch, handled.
type batch struct {
	n        int            // input records processed
	produced int            // records produced, dead letters included
	dead     map[string]int // dead letters by reason code
}

// poller is what fill and poll poll: the transactional session or, at least
// once, the client.
type poller interface {
	PollRecords(ctx context.Context, maxPollRecords int) kgo.Fetches
}

// fill runs one transaction's or batch's processing, handing every output
// record to produce: the records of fetches (when input) and whatever else
// arrives within the commit interval, up to MaxBatch records, then what
// the processor's Flush appends. Polling again inside a batch is safe,
// since the rebalance stays blocked until the loop allows it, and the
// batch commits the offsets of everything polled. A processor error stops
// the batch before Flush and is returned.
func (l *Loop) fill(ctx context.Context, p poller, fetches kgo.Fetches, input bool, produce func(*kgo.Record)) (batch, error) {
	b := batch{dead: map[string]int{}}
	begun := time.Now()
	for input {
		var err error
		l.mu.Lock()
		l.out, b.n, err = l.process(ctx, fetches, l.out[:0], b.n, b.dead)
		l.mu.Unlock()
		for _, r := range l.out {
			produce(r)
		}
		b.produced += len(l.out)
		if err != nil {
			return b, err
		}
		left := l.cfg.CommitInterval - time.Since(begun)
		if b.n >= l.cfg.MaxBatch || left <= 0 {
			break
		}
		pctx, cancel := context.WithTimeout(ctx, left)
		fetches = p.PollRecords(pctx, l.cfg.MaxBatch-b.n)
		cancel()
		if ctx.Err() != nil || fetches.NumRecords() == 0 {
			break
		}
	}
	l.mu.Lock()
	l.out = l.proc.Flush(l.out[:0])
	l.mu.Unlock()
	for _, r := range l.out {
		produce(r)
	}
	b.produced += len(l.out)
	return b, nil
}

// committed makes the processor's staged state permanent and counts the
// batch, once its output and offsets committed; took is how long the
// commit took.
func (l *Loop) committed(b batch, took time.Duration) {
	l.mu.Lock()
	l.proc.Commit()
	l.mu.Unlock()
	l.m.commit.Observe(took.Seconds())
	l.m.in.Add(float64(b.n))
	l.m.out.Add(float64(b.produced))
	for code, c := range b.dead {
		l.m.dead.WithLabelValues(code).Add(float64(c))
	}
}

// poll polls for the next transaction's (or batch's) records. For a Punctuator it
// returns after the commit interval without records, so that the loop can
// ask whether output is due.
func (l *Loop) poll(ctx context.Context, p poller, punct Punctuator) kgo.Fetches {
	if punct == nil {
		return p.PollRecords(ctx, l.cfg.MaxBatch)
	}
	pctx, cancel := context.WithTimeout(ctx, l.cfg.CommitInterval)
	defer cancel()
	return p.PollRecords(pctx, l.cfg.MaxBatch)
}

// due asks the processor whether output is due without input.
func (l *Loop) due(punct Punctuator) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return punct.Due(time.Now())
}

// abort drops the processor's staged state after a transaction (or batch)
// aborted.
func (l *Loop) abort() {
	l.mu.Lock()
	l.proc.Abort()
	l.mu.Unlock()
	l.m.aborted.Inc()
}

// end ends the open transaction with sess.End, letting the group rebalance
// if that takes longer than endGrace.
//
// Before it commits, End forces a heartbeat and waits for its answer, or
// for the group to revoke or lose partitions. When the group session has
// failed (its coordinator went away, as in a broker restart), no heartbeat
// loop runs to answer, and the group's goroutine, which would report the
// partitions lost, waits for the AllowRebalance that the loop calls only
// after End: both wait forever. Allowing the rebalance lets the lost
// callback run; End then aborts, and the session rejoins the group. Letting
// a rebalance proceed during End is safe, as in franz-go's own use of the
// session without BlockRebalanceOnPoll: a revoke or loss before End
// decides makes it abort, and one after waits until End has returned.
func (l *Loop) end(ctx context.Context, sess *kgo.GroupTransactSession, commit kgo.TransactionEndTry) (bool, error) {
	done := make(chan struct{})
	allowed := make(chan struct{})
	go func() {
		defer close(allowed)
		t := time.NewTimer(l.endGrace)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			l.log.Warn("transaction not ended in time; allowing the group to rebalance, which it may be waiting for", "after", l.endGrace, "commit", bool(commit))
			sess.AllowRebalance()
		}
	}()
	committed, err := sess.End(ctx, commit)
	close(done)
	<-allowed // no AllowRebalance after this returns, when a poll may block rebalances again
	return committed, err
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
