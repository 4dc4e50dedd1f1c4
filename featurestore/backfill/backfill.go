package backfill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/sourcegraph/conc/pool"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/featurestore/materialize"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/processors"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/streams"
)

// Config is one backfill of one view version.
type Config struct {
	Cfg  *config.Config
	View *config.View
	// From is the replay start: the lane begins at each source partition's
	// first offset whose Kafka timestamp is at or after From. Required on
	// the lane's first run; a lane that has committed offsets resumes from
	// them and ignores From.
	From time.Time
	// Follow keeps the lane running as the version's live processor once it
	// has caught up; otherwise Run returns at the cut-over.
	Follow bool
	// Instance names this process in the lane's transactional id (stable
	// across restarts, as for `weir run --instance`).
	Instance string
	// Kafka are the base client options (streams.ClientOpts).
	Kafka []kgo.Opt
	// SourceSerde decodes the source topic; RowSerde encodes and decodes
	// the view's features topic.
	SourceSerde, RowSerde *schemas.Serde
	// Online and Offline are the stores (online.Store, offline.Store).
	Online, Offline materialize.FeatureWriter
	// MaxBatch bounds the source records per lane transaction (default:
	// the loop's, 10,000).
	MaxBatch int
	// Progress is how often progress is logged (default 5s).
	Progress time.Duration
	Log      *slog.Logger
	Metrics  prometheus.Registerer // nil allowed
}

// Names are the Kafka names a lane uses, all derived from the view version.
type Names struct {
	Group         string // the lane processor's consumer group
	Changelog     string // its compacted state changelog
	OnlineGroup   string // its online materializer's group
	OfflineGroup  string // its offline materializer's group
	FeaturesTopic string // where its rows go: the view's features topic
	DeadLetter    string // its own dead-letter topic: the processor dead-letters the same records already
	SourceTopic   string
	TransactionID string
}

// LaneNames returns the names of a view version's lane.
func LaneNames(cfg *config.Config, v *config.View, instance string) Names {
	src, _ := cfg.Source(v.Source)
	lane := "backfill." + v.Name + "." + v.Version()
	return Names{
		Group:         cfg.Kafka.ClientID + "." + lane,
		Changelog:     cfg.ChangelogTopic(v.Source) + "." + lane,
		OnlineGroup:   cfg.Kafka.ClientID + "." + lane + ".online",
		OfflineGroup:  cfg.Kafka.ClientID + "." + lane + ".offline",
		FeaturesTopic: cfg.FeaturesTopic(v.Name),
		DeadLetter:    cfg.DeadLetterTopic() + "." + lane,
		SourceTopic:   src.Topic,
		TransactionID: cfg.Kafka.ClientID + "." + lane + "." + instance,
	}
}

// Stats is what a backfill did.
type Stats struct {
	Names Names
	// Resumed is true when the lane had committed offsets already.
	Resumed bool
	// Start is the vector the lane began at (on its first run: the offsets
	// at From); Cut the source's last stable offsets captured at the start
	// of this run, which the lane processed at least up to; Handover the
	// lane's committed offsets when it stopped, where its next run (or
	// -follow) continues: every source record before Handover was processed
	// once, none after it.
	Start, Cut, Handover map[int32]int64
	// Written is how far the features topic's end offsets moved during
	// this run (the lane's rows and transaction markers, plus anything
	// else written to the topic meanwhile).
	Written int64
	Elapsed time.Duration
}

func (c *Config) validate() error {
	if c.Cfg == nil || c.View == nil {
		return errors.New("backfill: -view: no view given")
	}
	src, ok := c.Cfg.Source(c.View.Source)
	if !ok {
		return fmt.Errorf("backfill: views[%s].source: no source %q", c.View.Name, c.View.Source)
	}
	if c.Cfg.EntityKey(c.View.Entity) != src.Key {
		return fmt.Errorf("backfill: views[%s].entity: %q is keyed by %q, not the source's key %q: views of re-keyed entities read a repartition topic, which a backfill does not replay",
			c.View.Name, c.View.Entity, c.Cfg.EntityKey(c.View.Entity), src.Key)
	}
	if c.Instance == "" {
		return errors.New("backfill: -instance: empty")
	}
	if c.SourceSerde == nil || c.RowSerde == nil || c.Online == nil || c.Offline == nil {
		return errors.New("backfill: serdes and stores are required")
	}
	if c.Progress <= 0 {
		c.Progress = 5 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Run backfills the view version and, with Follow, goes on as its live
// processor. See the package documentation for the design.
func Run(ctx context.Context, c Config) (Stats, error) {
	began := time.Now()
	if err := c.validate(); err != nil {
		return Stats{}, err
	}
	n := LaneNames(c.Cfg, c.View, c.Instance)
	st := Stats{Names: n}
	log := c.Log.With("backfill", c.View.Name, "version", c.View.Version())
	cl, err := kgo.NewClient(c.Kafka...)
	if err != nil {
		return st, fmt.Errorf("backfill: kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	p := int32(c.Cfg.Topics.Partitions)
	if err := streams.Provision(ctx, adm, int16(c.Cfg.Topics.Replication), []streams.TopicSpec{
		{Name: n.SourceTopic, Partitions: p}, {Name: n.FeaturesTopic, Partitions: p}, {Name: n.Changelog, Partitions: p, Compacted: true},
		{Name: n.DeadLetter, Partitions: p},
	}); err != nil {
		return st, fmt.Errorf("backfill: %w", err)
	}

	// Refuse to become a second writer of the version: check before the
	// lane's offsets are set, so a refused first run leaves no lane.
	guard := func(pos map[int32]int64) error {
		row, err := foreignRow(ctx, adm, c.Kafka, n.FeaturesTopic, c.RowSerde, c.View.Version(), pos)
		if err != nil || row == nil {
			return err
		}
		return fmt.Errorf("backfill: views[%s]: %s already holds a row of version %s for source partition %d offset %d, which this lane has not processed (it is at %d): another processor computes this version: set views[%s].lane: true in the weir.yaml the source's processor runs with (it then skips the view), or run it with the definition it had, then backfill",
			c.View.Name, n.FeaturesTopic, c.View.Version(), row.SourcePartition, row.SourceOffset, pos[row.SourcePartition], c.View.Name)
	}
	// The lane's start: its committed offsets, or the offsets at From.
	committed, err := groupOffsets(ctx, adm, n.Group, n.SourceTopic)
	if err != nil {
		return st, err
	}
	if len(committed) > 0 {
		st.Resumed, st.Start = true, committed
		if err := guard(committed); err != nil {
			return st, err
		}
		log.Info("backfill resumes the lane at its committed offsets", "group", n.Group, "offsets", committed)
	} else {
		if c.From.IsZero() {
			return st, fmt.Errorf("backfill: -from: required on a lane's first run (group %s has no offsets)", n.Group)
		}
		if st.Start, err = offsetsAt(ctx, adm, n.SourceTopic, c.From); err != nil {
			return st, err
		}
		if err := guard(st.Start); err != nil {
			return st, err
		}
		// The materializers start at the features topic's end: the lane has
		// written no row yet, so nothing before it is theirs.
		fends, err := retried(ctx, func() (kadm.ListedOffsets, error) { return adm.ListEndOffsets(ctx, n.FeaturesTopic) })
		if err != nil {
			return st, fmt.Errorf("backfill: end offsets of %s: %w", n.FeaturesTopic, err)
		}
		for _, g := range []struct {
			group, topic string
			at           map[int32]int64
		}{{n.OnlineGroup, n.FeaturesTopic, fends}, {n.OfflineGroup, n.FeaturesTopic, fends}, {n.Group, n.SourceTopic, st.Start}} {
			if err := commit(ctx, adm, g.group, g.topic, g.at); err != nil {
				return st, err
			}
		}
		log.Info("backfill lane created", "group", n.Group, "changelog", n.Changelog, "from", c.From.UTC(), "start", st.Start)
	}
	if st.Cut, err = retried(ctx, func() (kadm.ListedOffsets, error) { return adm.ListCommittedOffsets(ctx, n.SourceTopic) }); err != nil {
		return st, fmt.Errorf("backfill: last stable offsets of %s: %w", n.SourceTopic, err)
	}
	rowsBefore, err := countRows(ctx, adm, n.FeaturesTopic)
	if err != nil {
		return st, err
	}
	log.Info("backfill cut-over captured", "cut", st.Cut, "follow", c.Follow)

	src, _ := c.Cfg.Source(c.View.Source)
	task, err := processors.NewTask(processors.TaskConfig{
		Source: *src, Views: []*config.View{c.View}, Entities: c.Cfg.Entities, FeatureTopics: []string{n.FeaturesTopic},
		ChangelogTopic: n.Changelog, Opts: c.Kafka, State: c.state(),
	}, c.SourceSerde, c.RowSerde, log.With("role", "backfill"), c.Metrics)
	if err != nil {
		return st, fmt.Errorf("backfill: %w", err)
	}
	loop := streams.NewLoop(streams.LoopConfig{
		Stage: "backfill." + c.View.Name, Group: n.Group, TransactionalID: n.TransactionID, InstanceID: n.TransactionID,
		AtLeastOnce: c.Cfg.Kafka.Guarantee == config.GuaranteeAtLeastOnce,
		Topics:      []string{n.SourceTopic}, DeadLetterTopic: n.DeadLetter,
		CommitInterval: c.Cfg.Kafka.CommitInterval.D(), MaxBatch: c.MaxBatch, Opts: c.Kafka,
	}, task, log.With("role", "backfill"), c.Metrics)
	var mats []*materialize.Materializer
	for _, m := range []struct {
		kind, group string
		sink        materialize.FeatureWriter
		linger      time.Duration
	}{{"online", n.OnlineGroup, c.Online, 0}, {"offline", n.OfflineGroup, c.Offline, 200 * time.Millisecond}} {
		mat, err := materialize.NewFeatures(materialize.Config{
			Name: "backfill." + m.kind + "." + c.View.Name, Opts: c.Kafka, Group: m.group, Topic: n.FeaturesTopic, Linger: m.linger,
		}, c.View, c.RowSerde, m.sink, log.With("role", "backfill"), c.Metrics)
		if err != nil {
			return st, fmt.Errorf("backfill: %w", err)
		}
		mats = append(mats, mat)
	}

	// The processor lane and the materializers run until the lane has
	// reached the cut and the materializers the rows it wrote (or, with
	// Follow, until ctx ends).
	procCtx, stopProc := context.WithCancel(ctx)
	defer stopProc()
	matCtx, stopMats := context.WithCancel(ctx)
	defer stopMats()
	g := pool.New().WithErrors().WithContext(ctx)
	// Any member's error ends them all.
	member := func(run func(context.Context) error, own context.Context) func(context.Context) error {
		return func(gctx context.Context) error {
			defer context.AfterFunc(gctx, func() { stopProc(); stopMats() })()
			err := run(own)
			if own.Err() != nil && ctx.Err() == nil {
				return nil // stopped by the watcher
			}
			return err
		}
	}
	g.Go(member(loop.Run, procCtx))
	for _, m := range mats {
		g.Go(member(m.Run, matCtx))
	}
	g.Go(func(gctx context.Context) error {
		err := c.watch(gctx, adm, log, n, &st)
		if c.Follow && err == nil {
			<-gctx.Done()
		}
		stopProc()
		stopMats()
		return err
	})
	err = g.Wait()
	if rows, cerr := countRows(context.WithoutCancel(ctx), adm, n.FeaturesTopic); cerr == nil {
		st.Written = rows - rowsBefore
	}
	if h, herr := groupOffsets(context.WithoutCancel(ctx), adm, n.Group, n.SourceTopic); herr == nil {
		st.Handover = h
	}
	st.Elapsed = time.Since(began)
	switch {
	case c.Follow && ctx.Err() != nil:
		err = nil // following ends when ctx does
	case err == nil && ctx.Err() != nil:
		err = ctx.Err() // stopped before the cut-over
	}
	if err != nil {
		log.Warn("backfill stopped before the cut-over: run it again to continue from the handover offsets", "handover", st.Handover, "err", err)
		return st, fmt.Errorf("backfill %s@%s: %w", c.View.Name, c.View.Version(), err)
	}
	log.Info("backfill stopped", "handover", st.Handover, "elapsed", st.Elapsed.Round(time.Millisecond))
	return st, nil
}

// watch logs the lane's progress until it has processed every source record
// before the cut and both materializers have written every row the lane
// wrote (the features topic's last stable offsets once the lane reached the
// cut). The lane keeps processing records past the cut meanwhile; where it
// stops is the handover.
func (c *Config) watch(ctx context.Context, adm *kadm.Client, log *slog.Logger, n Names, st *Stats) error {
	total := int64(0)
	for p, o := range st.Cut {
		total += max(0, o-st.Start[p])
	}
	tick := time.NewTicker(c.Progress)
	defer tick.Stop()
	poll := time.NewTicker(time.Second)
	defer poll.Stop()
	var fends map[int32]int64 // set once the lane reached the cut
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
		case <-tick.C:
			if at, err := groupOffsets(ctx, adm, n.Group, n.SourceTopic); err == nil {
				done := int64(0)
				for p, o := range st.Cut {
					done += max(0, min(at[p], o)-st.Start[p])
				}
				args := []any{"offsets_done", done, "offsets", total, "percent", fmt.Sprintf("%.1f", 100*float64(done)/float64(max(total, 1))), "lane_at_cut", fends != nil}
				if fends != nil { // the rows left to materialize
					for _, g := range []struct{ key, group string }{{"online_rows_left", n.OnlineGroup}, {"offline_rows_left", n.OfflineGroup}} {
						if mat, err := groupOffsets(ctx, adm, g.group, n.FeaturesTopic); err == nil {
							left := int64(0)
							for p, o := range fends {
								left += max(0, o-mat[p])
							}
							args = append(args, g.key, left)
						}
					}
				}
				log.Info("backfilling", args...)
			}
			continue
		}
		if fends == nil {
			ok, err := caughtUp(ctx, adm, c.Kafka, n.Group, n.SourceTopic, st.Cut)
			if err != nil || !ok {
				continue
			}
			log.Info("backfill lane reached the cut-over", "cut", st.Cut)
			if fends, err = listed(adm.ListCommittedOffsets(ctx, n.FeaturesTopic)); err != nil {
				fends = nil
				continue
			}
		}
		done := true
		for _, g := range []string{n.OnlineGroup, n.OfflineGroup} {
			ok, err := caughtUp(ctx, adm, c.Kafka, g, n.FeaturesTopic, fends)
			done = done && err == nil && ok
		}
		if done {
			log.Info("backfill materialized up to the cut-over", "features_offsets", fends)
			return nil
		}
	}
}

// caughtUp reports whether group has consumed topic up to target: its
// committed offset is at or past target on every partition, or what lies
// between is only transaction markers and aborted records.
func caughtUp(ctx context.Context, adm *kadm.Client, opts []kgo.Opt, group, topic string, target map[int32]int64) (bool, error) {
	at, err := groupOffsets(ctx, adm, group, topic)
	if err != nil {
		return false, err
	}
	behind := map[int32]kgo.Offset{}
	for p, o := range target {
		if at[p] < o {
			behind[p] = kgo.NewOffset().At(max(at[p], 0))
		}
	}
	if len(behind) == 0 {
		return true, nil
	}
	// Read what lies between: the first committed data record means
	// busy; only markers (and aborted records, which read_committed
	// hides) mean done.
	rc, err := kgo.NewClient(append(slices.Clone(opts),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: behind}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords(),
		kgo.FetchMaxBytes(1<<20), kgo.FetchMaxPartitionBytes(1<<20))...) // the first data record decides
	if err != nil {
		return false, err
	}
	defer rc.Close()
	left := maps.Clone(behind)
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for len(left) > 0 {
		fs := rc.PollFetches(rctx)
		if rctx.Err() != nil {
			return false, nil
		}
		for _, r := range fs.Records() {
			if _, ok := left[r.Partition]; !ok || r.Offset >= target[r.Partition] {
				continue
			}
			if !r.Attrs.IsControl() {
				return false, nil
			}
			if r.Offset >= target[r.Partition]-1 {
				delete(left, r.Partition)
			}
		}
	}
	return true, nil
}

// state is the config's state section with the directory made this lane's
// and instance's own.
func (c *Config) state() config.State {
	st := c.Cfg.State
	st.Dir = filepath.Join(st.Dir, c.Instance, "backfill."+c.View.Name+"."+c.View.Version())
	return st
}
