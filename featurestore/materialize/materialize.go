// Package materialize copies Kafka topics into the feature store: feature
// rows from weir.features.<view> into the online store (Redis) and the
// offline store (ClickHouse), and labels from the labels topic into the
// offline labels table.
//
// Each materializer is a consumer-group member reading with read_committed,
// so rows of aborted processor transactions are never materialized. It polls
// a batch, decodes it, writes it to its sink in one call and commits the
// batch's offsets only after the sink accepted it: delivery into the sink is
// at least once, and the sinks are idempotent by a row's version (entity,
// event time, source partition, source offset, window start, revises
// offset), so a redelivered batch changes nothing. Corrections (rows that
// revise an earlier version) are materialized like any row: the sinks keep
// or serve the newest version (see package featurestore).
//
// A batch is what one poll returns, up to Config.MaxBatch records, gathered
// over several polls for up to Config.Linger; a sink that implements
// BatchHinter (offline.Store: 50,000 rows, 250ms) sets both when the config
// leaves them zero. The next batch decodes into the previous batch's rows,
// so a sink must not keep them (FeatureWriter's contract).
//
// Rebuild reads a features topic once, from the start to the end offsets
// at the call, without a group, into a sink: it refills a flushed or new
// Redis beside the running materializers (see Rebuild).
//
// A record that cannot be decoded (bad framing, a schema the registry does
// not know, bytes that do not match the schema) or that belongs to another
// view or view version is counted, logged and skipped: the processor upstream
// owns the dead-letter topic, and a materializer never stalls on one bad
// record. A sink error, or a registry that cannot be reached, stalls the
// materializer instead: it retries the same batch with exponential backoff
// until it succeeds or its context ends, and the consumer lag grows; no row
// is lost or skipped.
//
// Metrics (registered on the Registerer passed in, never globally; every
// series carries the constant label materializer="<Config.Name>"):
//
//	weir_materialize_rows_written_total{materializer}           rows accepted by the sink
//	weir_materialize_records_skipped_total{materializer,reason} records skipped: reason "undecodable" or "other_view"
//	weir_materialize_batch_seconds{materializer}                latency of successful sink writes, per batch
//	weir_materialize_write_retries_total{materializer}          failed sink writes (or registry lookups), each retried
package materialize

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
)

// FeatureWriter is the sink of a feature materializer: online.Store and
// offline.Store both fit.
//
// Delivery contract: the materializer calls Write from one goroutine, with a
// batch decoded from one poll, and commits the batch's offsets only after
// Write returned nil. On error it calls Write again with the same rows, so
// Write must be idempotent by (entity, view version, event time, source
// partition, source offset, window start, revises offset): rows may arrive
// again, in another batch, in any order after a restart or rebalance. The
// sink must not keep rows after it returns.
type FeatureWriter interface {
	Write(ctx context.Context, rows []schemas.FeatureRow) error
}

// BatchHinter is a FeatureWriter that says how it prefers its batches:
// NewFeatures takes a Config's zero MaxBatch and Linger from it.
// offline.Store asks for large batches (ClickHouse writes a part per
// INSERT); online.Store states no preference.
type BatchHinter interface {
	BatchHint() (maxRows int, linger time.Duration)
}

// LabelWriter is the sink of the labels materializer (offline.Store fits),
// with FeatureWriter's delivery contract: idempotent by (card id, event time,
// txn id, label time), called again with the same labels on error.
type LabelWriter interface {
	WriteLabels(ctx context.Context, labels []schemas.Label) error
}

// Config configures a materializer.
type Config struct {
	// Name identifies the materializer in metrics and logs, e.g.
	// "online.card_activity"; it must be unique per Registerer.
	Name string
	// Opts are the base client options (streams.ClientOpts); the
	// materializer adds the group, topic, read_committed and manual commits.
	Opts  []kgo.Opt
	Group string
	Topic string
	// MaxBatch bounds the records written per sink call (default 5000).
	MaxBatch int
	// Linger is how long a batch that has records but fewer than MaxBatch
	// waits for more before it is written (default 0: each poll is written
	// as it comes). The offline store wants it: ClickHouse makes one part
	// per INSERT, so a trickle of small batches costs a part each, while a
	// materializer that falls behind fills MaxBatch at once and never
	// waits. Redis does not need it: every ms of it is staleness.
	Linger time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries of a failed
	// write (defaults 100ms and 10s); the wait doubles per failure, jittered.
	MinBackoff, MaxBackoff time.Duration
}

func (c *Config) defaults() error {
	if c.Name == "" || c.Group == "" || c.Topic == "" {
		return fmt.Errorf("materialize: config needs Name, Group and Topic (got %q, %q, %q)", c.Name, c.Group, c.Topic)
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 5000
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 10 * time.Second
	}
	c.MaxBackoff = max(c.MaxBackoff, c.MinBackoff)
	return nil
}

// Materializer consumes one topic into one sink. Build one with NewFeatures
// or NewLabels.
type Materializer struct {
	cfg   Config
	log   *slog.Logger
	m     metrics
	batch batch
}

// batch decodes records and writes them; one per materializer, reused.
type batch interface {
	reset()
	// add decodes rec into the batch; errSkip-wrapped errors mean a bad
	// record, others a transient failure to retry.
	add(ctx context.Context, rec *kgo.Record) error
	len() int
	write(ctx context.Context) error
}

// skipError marks a record to skip, with the metric reason.
type skipError struct {
	reason string
	err    error
}

func (e *skipError) Error() string { return e.err.Error() }
func (e *skipError) Unwrap() error { return e.err }

type metrics struct {
	written prometheus.Counter
	skipped *prometheus.CounterVec
	latency prometheus.Observer
	retries prometheus.Counter
}

func newMetrics(name string, reg prometheus.Registerer) (metrics, error) {
	written := prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_materialize_rows_written_total", Help: "Rows accepted by the materializer's sink."})
	skipped := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_materialize_records_skipped_total", Help: "Records skipped as undecodable or of another view version."}, []string{"reason"})
	latency := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "weir_materialize_batch_seconds", Help: "Latency of successful sink writes, per batch.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 15)})
	retries := prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_materialize_write_retries_total", Help: "Failed sink writes or registry lookups, each retried."})
	for _, r := range []string{"undecodable", "other_view"} {
		skipped.WithLabelValues(r)
	}
	if reg != nil {
		reg = prometheus.WrapRegistererWith(prometheus.Labels{"materializer": name}, reg)
		for _, c := range []prometheus.Collector{written, skipped, latency, retries} {
			if err := reg.Register(c); err != nil {
				return metrics{}, fmt.Errorf("materialize %s: register metrics: %w", name, err)
			}
		}
	}
	return metrics{written: written, skipped: skipped, latency: latency, retries: retries}, nil
}

// NewFeatures returns a materializer of view's feature rows (cfg.Topic is
// the view's features topic) into sink. Rows of another view, or of another
// version of this one, are skipped as "other_view". serde decodes
// schemas.FeatureRow (schemas.NewSerde with the feature_row schema). log
// must not be nil; reg may be.
func NewFeatures(cfg Config, view *config.View, serde *schemas.Serde, sink FeatureWriter, log *slog.Logger, reg prometheus.Registerer) (*Materializer, error) {
	version := view.Version()
	check := func(r *schemas.FeatureRow) error {
		if r.View != view.Name || r.ViewVersion != version {
			return fmt.Errorf("row of view %s version %s, materializing %s version %s", r.View, r.ViewVersion, view.Name, version)
		}
		return nil
	}
	if cfg.MaxBatch == 0 || cfg.Linger == 0 {
		if h, ok := sink.(BatchHinter); ok {
			rows, linger := h.BatchHint()
			cfg.MaxBatch = cmp.Or(cfg.MaxBatch, rows)
			cfg.Linger = cmp.Or(cfg.Linger, linger)
		}
	}
	return newMaterializer(cfg, &typed[schemas.FeatureRow]{serde: serde, check: check, sink: sink.Write, recycle: recycleRow}, log, reg)
}

// NewLabels returns a materializer of the labels topic (cfg.Topic) into
// sink. serde decodes schemas.Label. log must not be nil; reg may be.
func NewLabels(cfg Config, serde *schemas.Serde, sink LabelWriter, log *slog.Logger, reg prometheus.Registerer) (*Materializer, error) {
	return newMaterializer(cfg, &typed[schemas.Label]{serde: serde, sink: sink.WriteLabels}, log, reg)
}

func newMaterializer(cfg Config, b batch, log *slog.Logger, reg prometheus.Registerer) (*Materializer, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Name, reg)
	if err != nil {
		return nil, err
	}
	return &Materializer{cfg: cfg, log: log.With("materializer", cfg.Name, "topic", cfg.Topic), m: m, batch: b}, nil
}

// typed is the batch of one record type.
type typed[T any] struct {
	serde *schemas.Serde
	check func(*T) error // nil: every decoded record is accepted
	sink  func(context.Context, []T) error
	// recycle, if set, prepares an item of the previous batch to be decoded
	// into again: it must leave the item equal to a zero T but may keep
	// capacity. Without it items are zeroed.
	recycle func(*T)
	items   []T
}

// reset empties the batch. With recycle the items stay in the backing array
// (the sink does not keep them), so the next batch decodes into them and
// reuses their slices: one allocation less per row.
func (b *typed[T]) reset() {
	if b.recycle == nil {
		clear(b.items) // release what the items hold
	}
	b.items = b.items[:0]
}

func (b *typed[T]) len() int { return len(b.items) }

func (b *typed[T]) add(ctx context.Context, rec *kgo.Record) error {
	n := len(b.items)
	if n < cap(b.items) {
		b.items = b.items[:n+1]
		if b.recycle != nil {
			b.recycle(&b.items[n])
		} else {
			var zero T
			b.items[n] = zero
		}
	} else {
		var zero T
		b.items = append(b.items, zero)
	}
	v := &b.items[n]
	if err := b.serde.Decode(ctx, rec.Value, v); err != nil {
		b.items = b.items[:n]
		if transient(err) {
			return err
		}
		return &skipError{reason: "undecodable", err: err}
	}
	if b.check != nil {
		if err := b.check(v); err != nil {
			b.items = b.items[:n]
			return &skipError{reason: "other_view", err: err}
		}
	}
	return nil
}

// recycleRow zeroes a decoded row but keeps its Values array: the decoder
// grows a slice in place when its capacity suffices. Every element up to
// the capacity is zeroed too, since the decoder leaves an empty array (a
// value's list or labels) as it finds it.
func recycleRow(r *schemas.FeatureRow) {
	vals := r.Values[:cap(r.Values)]
	clear(vals)
	*r = schemas.FeatureRow{Values: vals[:0]}
}

func (b *typed[T]) write(ctx context.Context) error { return b.sink(ctx, b.items) }

// transient reports whether a decode error is the registry being
// unreachable or failing (retry) rather than the record being bad (skip).
func transient(err error) bool {
	var ue *url.Error
	var ne net.Error
	var re *sr.ResponseError
	switch {
	case errors.As(err, &re):
		return re.StatusCode >= 500 || re.StatusCode == 429
	case errors.As(err, &ue), errors.As(err, &ne):
		return true
	}
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// Run consumes until ctx is done, then leaves the group and returns nil. It
// returns an error only when the client cannot be created.
func (m *Materializer) Run(ctx context.Context) error {
	opts := append(slices.Clone(m.cfg.Opts),
		kgo.ConsumerGroup(m.cfg.Group),
		kgo.ConsumeTopics(m.cfg.Topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("materialize %s: new client: %w", m.cfg.Name, err)
	}
	defer cl.Close()
	m.log.Info("materializer started", "group", m.cfg.Group)
	pprof.Do(ctx, pprof.Labels("role", "materializer", "materializer", m.cfg.Name, "topic", m.cfg.Topic), func(ctx context.Context) {
		for ctx.Err() == nil {
			m.poll(ctx, cl)
		}
	})
	m.log.Info("materializer stopped")
	return nil
}

// poll handles one polled batch: decode, write until it succeeds, commit.
func (m *Materializer) poll(ctx context.Context, cl *kgo.Client) {
	fetches := cl.PollRecords(ctx, m.cfg.MaxBatch)
	if ctx.Err() != nil || fetches.IsClientClosed() {
		return
	}
	fetches.EachError(func(topic string, p int32, err error) {
		if !errors.Is(err, context.Canceled) {
			m.log.Warn("fetch failed", "partition", p, "err", err)
		}
	})
	recs := fetches.Records()
	if len(recs) == 0 {
		return
	}
	if recs = m.linger(ctx, cl, recs); ctx.Err() != nil {
		return // nothing written: the records are redelivered
	}
	m.batch.reset()
	for _, rec := range recs {
		err := m.retry(ctx, func() error { return m.batch.add(ctx, rec) }, "decode")
		var skip *skipError
		switch {
		case errors.As(err, &skip):
			m.m.skipped.WithLabelValues(skip.reason).Inc()
			m.log.Warn("record skipped", "reason", skip.reason, "partition", rec.Partition, "offset", rec.Offset, "err", skip.err)
		case err != nil: // ctx done
			return
		}
	}
	if n := m.batch.len(); n > 0 {
		var start time.Time
		err := m.retry(ctx, func() error {
			start = time.Now()
			// An attempt under way finishes even when ctx ends: a write cut
			// off mid-stream can leave ClickHouse (18.16) holding the
			// table's lock until its receive timeout, blocking DROP/ALTER.
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
			defer cancel()
			return m.batch.write(wctx)
		}, "write")
		if err != nil { // ctx done: the batch is redelivered to whoever resumes
			return
		}
		m.m.latency.Observe(time.Since(start).Seconds())
		m.m.written.Add(float64(n))
	}
	// Commit even when ctx just ended: the sink has the rows, and committing
	// now spares their redelivery.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := cl.CommitUncommittedOffsets(cctx); err != nil {
		// The rows are in the sink; whoever owns the partitions next
		// re-reads them from the last commit and rewrites them harmlessly.
		m.log.Warn("commit failed; records will be redelivered", "records", len(recs), "err", err)
	}
}

// linger polls more records into recs until it holds MaxBatch or Linger
// passed since the first poll returned.
func (m *Materializer) linger(ctx context.Context, cl *kgo.Client, recs []*kgo.Record) []*kgo.Record {
	if m.cfg.Linger <= 0 || len(recs) >= m.cfg.MaxBatch {
		return recs
	}
	lctx, cancel := context.WithTimeout(ctx, m.cfg.Linger)
	defer cancel()
	for len(recs) < m.cfg.MaxBatch && lctx.Err() == nil {
		fetches := cl.PollRecords(lctx, m.cfg.MaxBatch-len(recs))
		if fetches.IsClientClosed() {
			break
		}
		recs = append(recs, fetches.Records()...)
	}
	return recs
}

// writeTimeout bounds one sink write attempt.
const writeTimeout = 30 * time.Second

// retry calls f until it returns nil or a *skipError, waiting with
// exponential backoff between failures. It returns ctx's error when ctx ends
// first.
func (m *Materializer) retry(ctx context.Context, f func() error, op string) error {
	wait := m.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		err := f()
		var skip *skipError
		if err == nil || errors.As(err, &skip) {
			if attempt > 1 {
				m.log.Info(op+" recovered", "attempts", attempt)
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		m.m.retries.Inc()
		m.log.Warn(op+" failed; retrying", "attempt", attempt, "backoff", wait, "err", err)
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, m.cfg.MaxBackoff)
	}
}
