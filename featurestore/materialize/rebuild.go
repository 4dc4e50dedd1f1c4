package materialize

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
)

// RebuildStats is what a rebuild read and wrote.
type RebuildStats struct {
	// Partitions is the number of the topic's partitions; Ends their end
	// offsets (last stable offsets) captured at the start, where the
	// rebuild stopped.
	Partitions int
	Ends       map[int32]int64
	// Records counts the data records read (rows and skipped records, not
	// transaction markers); Written the rows handed to the sink; Skipped
	// the undecodable records and rows of another view version.
	Records, Written, Skipped int64
	Elapsed                   time.Duration
}

// RebuildProgress is how often a rebuild logs its progress.
const RebuildProgress = 5 * time.Second

// Rebuild fills sink again from a view's features topic (cfg.Topic): after
// Redis was flushed or replaced, it reads every partition from its first
// retained offset with read_committed and stops at the last stable offsets
// captured when it started, writing the rows through sink.Write as the
// materializer does: the same decoding, the same skips (undecodable, other
// view version), the same retries of a failing sink. It joins no consumer
// group (cfg.Group is not used) and commits nothing, so it does not disturb
// a materializer running beside it; the sink's idempotent, ordered writes
// (online.Store keeps the newest row by featurestore.Compare, whoever writes
// it and in whatever order) make the race harmless: both end with the
// newest row of every entity. Rows produced after the start are the running
// materializer's to write.
//
// Rows whose retention has passed are gone from the topic and cannot come
// back; a row is written with the view's full TTL from the time of the
// rebuild, as a materializer replaying from the start would. Progress is
// logged every RebuildProgress. Rebuild returns ctx's error when ctx ends
// first.
func Rebuild(ctx context.Context, cfg Config, view *config.View, serde *schemas.Serde, sink FeatureWriter, log *slog.Logger) (RebuildStats, error) {
	if cfg.Group == "" {
		cfg.Group = "-" // unused: a rebuild joins no group
	}
	m, err := NewFeatures(cfg, view, serde, sink, log, nil)
	if err != nil {
		return RebuildStats{}, err
	}
	m.log = log.With("rebuild", cfg.Name, "topic", cfg.Topic)
	var st RebuildStats
	pprof.Do(ctx, pprof.Labels("role", "rebuild", "materializer", cfg.Name, "topic", cfg.Topic), func(ctx context.Context) {
		st, err = m.rebuild(ctx)
	})
	return st, err
}

func (m *Materializer) rebuild(ctx context.Context) (RebuildStats, error) {
	began := time.Now()
	topic := m.cfg.Topic
	cl, err := kgo.NewClient(m.cfg.Opts...)
	if err != nil {
		return RebuildStats{}, fmt.Errorf("rebuild %s: client: %w", m.cfg.Name, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return RebuildStats{}, fmt.Errorf("rebuild %s: last stable offsets of %s: %w", m.cfg.Name, topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return RebuildStats{}, fmt.Errorf("rebuild %s: start offsets of %s: %w", m.cfg.Name, topic, err)
	}
	st := RebuildStats{Ends: map[int32]int64{}}
	want := map[int32]int64{} // partition -> end offset still to reach
	consume := map[int32]kgo.Offset{}
	var total int64
	ends.Each(func(o kadm.ListedOffset) {
		st.Partitions++
		st.Ends[o.Partition] = o.Offset
		s, _ := starts.Lookup(topic, o.Partition)
		if o.Offset > s.Offset {
			want[o.Partition] = o.Offset
			consume[o.Partition] = kgo.NewOffset().At(s.Offset)
			total += o.Offset - s.Offset
		}
	})
	if st.Partitions == 0 {
		return st, fmt.Errorf("rebuild %s: topic %s has no partitions (does it exist?)", m.cfg.Name, topic)
	}
	m.log.Info("rebuild started", "partitions", st.Partitions, "partitions_with_records", len(want), "offsets", total, "ends", st.Ends)
	if len(want) == 0 {
		st.Elapsed = time.Since(began)
		m.log.Info("rebuild done: the topic is empty", "elapsed", st.Elapsed)
		return st, nil
	}
	rc, err := kgo.NewClient(append(slices.Clone(m.cfg.Opts),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: consume}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), // a trailing marker still counts as reaching the end
	)...)
	if err != nil {
		return st, fmt.Errorf("rebuild %s: consumer: %w", m.cfg.Name, err)
	}
	defer rc.Close()
	var read int64 // offsets passed, markers and skipped aborted records included
	pos := map[int32]int64{}
	for p := range want {
		pos[p] = consume[p].EpochOffset().Offset
	}
	lastLog := time.Now()
	for len(want) > 0 {
		fs := rc.PollRecords(ctx, m.cfg.MaxBatch)
		if err := ctx.Err(); err != nil {
			return st, err
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if ferr == nil && !errors.Is(err, context.Canceled) {
				ferr = fmt.Errorf("rebuild %s: fetch %s/%d: %w", m.cfg.Name, t, p, err)
			}
		})
		if ferr != nil {
			return st, ferr
		}
		m.batch.reset()
		var done []int32
		for _, rec := range fs.Records() {
			end, ok := want[rec.Partition]
			if !ok || rec.Offset >= end {
				continue // past the end captured at the start: the running materializer's
			}
			read += rec.Offset + 1 - pos[rec.Partition]
			pos[rec.Partition] = rec.Offset + 1
			if !rec.Attrs.IsControl() {
				st.Records++
				err := m.retry(ctx, func() error { return m.batch.add(ctx, rec) }, "decode")
				var skip *skipError
				switch {
				case errors.As(err, &skip):
					st.Skipped++
					m.log.Warn("record skipped", "reason", skip.reason, "partition", rec.Partition, "offset", rec.Offset, "err", skip.err)
				case err != nil:
					return st, err
				}
			}
			if rec.Offset >= end-1 {
				delete(want, rec.Partition)
				done = append(done, rec.Partition)
			}
		}
		if len(done) > 0 {
			rc.PauseFetchPartitions(map[string][]int32{topic: done})
		}
		if n := m.batch.len(); n > 0 {
			err := m.retry(ctx, func() error {
				wctx, cancel := context.WithTimeout(ctx, writeTimeout)
				defer cancel()
				return m.batch.write(wctx)
			}, "write")
			if err != nil {
				return st, err
			}
			st.Written += int64(n)
		}
		if time.Since(lastLog) >= RebuildProgress {
			m.log.Info("rebuilding", "offsets_read", read, "offsets", total, "percent", fmt.Sprintf("%.1f", 100*float64(read)/float64(total)),
				"rows_written", st.Written, "skipped", st.Skipped, "partitions_left", len(want))
			lastLog = time.Now()
		}
	}
	st.Elapsed = time.Since(began)
	m.log.Info("rebuild done", "records", st.Records, "rows_written", st.Written, "skipped", st.Skipped, "elapsed", st.Elapsed.Round(time.Millisecond))
	return st, nil
}
