package rollout

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
)

// maxEarly bounds the labels held while their prediction has not come.
const maxEarly = 1 << 16

// JoinerOptions configure a Joiner.
type JoinerOptions struct {
	Kafka []kgo.Opt // base client options
	// Model is the bandit model; its Rollout's Reward and LabelWait apply.
	Model config.Model
	// Topics: the model's predictions, the labels and the rewards topic.
	Predictions, Labels, Rewards string
	// Serdes of the predictions and labels topics.
	PredictionSerde, LabelSerde *schemas.Serde
	// Group is the election group; default "weir-rewards-<model>".
	Group string
	// FlushInterval is how often a changed State is written; default 1s.
	FlushInterval time.Duration
	Logger        *slog.Logger          // nil discards
	Registerer    prometheus.Registerer // nil registers nothing
	Now           func() time.Time      // for State.UpdatedAt; nil means time.Now
}

// Joiner joins a bandit model's served predictions with their labels and
// publishes the per-arm reward counts (see the package doc).
type Joiner struct {
	o   JoinerOptions
	log *slog.Logger

	rewards    *prometheus.CounterVec
	unrewarded *prometheus.CounterVec
	writes     prometheus.Counter
}

// NewJoiner returns a Joiner; call Run.
func NewJoiner(o JoinerOptions) (*Joiner, error) {
	if o.Model.Name == "" || o.Predictions == "" || o.Labels == "" || o.Rewards == "" || o.PredictionSerde == nil || o.LabelSerde == nil {
		return nil, errors.New("rollout: new joiner: model, topics and serdes are required")
	}
	if o.Group == "" {
		o.Group = "weir-rewards-" + o.Model.Name
	}
	if o.FlushInterval <= 0 {
		o.FlushInterval = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	j := &Joiner{o: o, log: o.Logger}
	if j.log == nil {
		j.log = slog.New(slog.DiscardHandler)
	}
	l := prometheus.Labels{"model": o.Model.Name}
	j.rewards = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_rollout_rewards_total", Help: "Bandit rewards joined: success or failure per arm.", ConstLabels: l}, []string{"arm", "outcome"})
	j.unrewarded = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_rollout_unrewarded_total", Help: "Served predictions or labels dropped without a reward.", ConstLabels: l}, []string{"reason"})
	j.writes = prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_rollout_state_writes_total", Help: "Reward states written to the rewards topic.", ConstLabels: l})
	if reg := o.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{j.rewards, j.unrewarded, j.writes} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("rollout: register metrics of model %s: %w", o.Model.Name, err)
			}
		}
	}
	return j, nil
}

// Run takes part in the election until ctx is done, joining while this
// member holds the rewards topic's partition, then returns nil. A failed
// join is logged and retried after a second while the member leads.
func (j *Joiner) Run(ctx context.Context) error {
	var (
		mu     sync.Mutex
		cancel context.CancelFunc
		done   chan struct{}
	)
	stop := func() {
		mu.Lock()
		defer mu.Unlock()
		if cancel != nil {
			cancel()
			<-done
			cancel = nil
		}
	}
	start := func() {
		mu.Lock()
		defer mu.Unlock()
		if cancel != nil {
			return
		}
		lctx, c := context.WithCancel(ctx)
		cancel, done = c, make(chan struct{})
		go func() {
			defer close(done)
			for lctx.Err() == nil {
				err := j.lead(lctx)
				if err == nil || lctx.Err() != nil {
					return
				}
				j.log.Error("rollout: rewards joiner failed; retrying", "model", j.o.Model.Name, "err", err)
				select {
				case <-lctx.Done():
				case <-time.After(time.Second):
				}
			}
		}()
	}
	cl, err := kgo.NewClient(append(slices.Clone(j.o.Kafka),
		kgo.ConsumerGroup(j.o.Group),
		kgo.ConsumeTopics(j.o.Rewards),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()),
		kgo.DisableAutoCommit(),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			if len(m[j.o.Rewards]) > 0 {
				j.log.Info("rollout: this process joins the rewards", "model", j.o.Model.Name)
				start()
			}
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			if len(m[j.o.Rewards]) > 0 {
				stop()
			}
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, m map[string][]int32) {
			if len(m[j.o.Rewards]) > 0 {
				stop()
			}
		}),
	)...)
	if err != nil {
		return fmt.Errorf("rollout: joiner %s: kafka client: %w", j.o.Model.Name, err)
	}
	defer func() { stop(); cl.Close() }()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if fs.IsClientClosed() {
			return errors.New("rollout: joiner: kafka client closed")
		}
	}
}

// waiting is a served prediction awaiting its label.
type waiting struct {
	arm       string
	version   int32
	decision  bool
	eventTime int64
	part      int32
	off       int64
}

// early is a label awaiting its prediction.
type early struct {
	positive  bool
	eventTime int64
	part      int32
	off       int64
}

type armKey struct {
	arm     string
	version int32
}

// session is one lead: the State restored, and what is joined since.
type session struct {
	j                  *Joiner
	restored           *State
	counts             map[armKey]*ArmCount
	pending            map[string]waiting
	early              map[string]early
	maxEvent           int64
	dirty              bool
	predDone, labsDone map[int32]int64 // consumed, live
}

// lead joins until ctx is done (nil) or a write fails.
func (j *Joiner) lead(ctx context.Context) error {
	cl, err := kgo.NewClient(append(slices.Clone(j.o.Kafka), kgo.DefaultProduceTopic(j.o.Rewards))...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	restored, err := j.restore(ctx, cl)
	cl.Close()
	if err != nil {
		return err
	}
	s := &session{j: j, restored: restored, counts: map[armKey]*ArmCount{}, pending: map[string]waiting{}, early: map[string]early{},
		predDone: map[int32]int64{}, labsDone: map[int32]int64{}}
	for _, a := range restored.Arms {
		c := a
		s.counts[armKey{a.Arm, a.Version}] = &c
	}
	offsets := map[string]map[int32]kgo.Offset{}
	for _, t := range []struct {
		topic string
		pos   map[int32]Position
		done  map[int32]int64
	}{{j.o.Predictions, restored.Predictions, s.predDone}, {j.o.Labels, restored.Labels, s.labsDone}} {
		parts, err := partitions(ctx, j.o.Kafka, t.topic)
		if err != nil {
			return err
		}
		offsets[t.topic] = map[int32]kgo.Offset{}
		for _, p := range parts {
			if pos, ok := t.pos[p]; ok {
				offsets[t.topic][p] = kgo.NewOffset().At(pos.Resume)
				t.done[p] = pos.Consumed
			} else {
				offsets[t.topic][p] = kgo.NewOffset().AtStart()
			}
		}
	}
	cl, err = kgo.NewClient(append(slices.Clone(j.o.Kafka),
		kgo.ConsumePartitions(offsets),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DefaultProduceTopic(j.o.Rewards),
	)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	tick := time.NewTicker(j.o.FlushInterval)
	defer tick.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, j.o.FlushInterval)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				j.log.Warn("rollout: joiner fetch", "topic", t, "partition", p, "err", err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) { s.record(ctx, r) })
		select {
		case <-tick.C:
			if s.dirty {
				if err := s.write(ctx, cl); err != nil {
					return err
				}
			}
		default:
		}
	}
}

// restore reads the model's latest State from the rewards topic.
func (j *Joiner) restore(ctx context.Context, cl *kgo.Client) (*State, error) {
	end, err := endOffset(ctx, cl, j.o.Rewards)
	if err != nil {
		return nil, err
	}
	st := &State{Model: j.o.Model.Name}
	if end == 0 {
		return st, nil
	}
	rd, err := kgo.NewClient(append(slices.Clone(j.o.Kafka), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{j.o.Rewards: {0: kgo.NewOffset().AtStart()}}))...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer rd.Close()
	for {
		fs := rd.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var last int64 = -1
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return nil, fmt.Errorf("restore from %s: %w", j.o.Rewards, ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			last = r.Offset
			if string(r.Key) != j.o.Model.Name {
				return
			}
			if r.Value == nil {
				st = &State{Model: j.o.Model.Name}
				return
			}
			s, err := DecodeState(r.Value)
			if err != nil {
				j.log.Error("rollout: undecodable rewards record skipped", "offset", r.Offset, "err", err)
				return
			}
			st = s
		})
		if last+1 >= end {
			return st, nil
		}
	}
}

func partitions(ctx context.Context, kafka []kgo.Opt, topic string) ([]int32, error) {
	cl, err := kgo.NewClient(kafka...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("partitions of %s: %w", topic, err)
	}
	var out []int32
	ends.Each(func(o kadm.ListedOffset) { out = append(out, o.Partition) })
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out, nil
}

// record processes one input record.
func (s *session) record(ctx context.Context, r *kgo.Record) {
	j := s.j
	s.dirty = true
	if r.Topic == j.o.Predictions {
		s.predDone[r.Partition] = r.Offset + 1
		var p schemas.Prediction
		if err := j.o.PredictionSerde.Decode(ctx, r.Value, &p); err != nil {
			j.unrewarded.WithLabelValues("undecodable").Inc()
			return
		}
		if p.Shadow || p.ModelName != j.o.Model.Name {
			return
		}
		s.maxEvent = max(s.maxEvent, p.EventTime)
		w := waiting{arm: p.RolloutArm, version: p.ModelVersion, decision: p.Decision, eventTime: p.EventTime, part: r.Partition, off: r.Offset}
		if l, ok := s.early[p.PredictionID]; ok {
			delete(s.early, p.PredictionID)
			s.join(w, l)
			return
		}
		s.pending[p.PredictionID] = w
		return
	}
	s.labsDone[r.Partition] = r.Offset + 1
	var l schemas.Label
	if err := j.o.LabelSerde.Decode(ctx, r.Value, &l); err != nil {
		j.unrewarded.WithLabelValues("undecodable").Inc()
		return
	}
	e := early{positive: l.IsFraud, eventTime: l.EventTime, part: r.Partition, off: r.Offset}
	if w, ok := s.pending[l.TxnID]; ok {
		delete(s.pending, l.TxnID)
		s.join(w, e)
		return
	}
	if len(s.early) >= maxEarly {
		j.unrewarded.WithLabelValues("early_labels_full").Inc()
		return
	}
	s.early[l.TxnID] = e
}

// join counts the reward of a served prediction and its label, unless the
// pair was joined before the State this lead restored.
func (s *session) join(w waiting, l early) {
	pr, lr := s.restored.Predictions[w.part], s.restored.Labels[l.part]
	if w.off < pr.Consumed && l.off < lr.Consumed {
		return
	}
	success := l.positive
	if s.j.o.Model.Rollout.Reward != config.RewardLabel {
		success = w.decision == l.positive
	}
	k := armKey{w.arm, w.version}
	c := s.counts[k]
	if c == nil {
		c = &ArmCount{Arm: w.arm, Version: w.version}
		s.counts[k] = c
	}
	outcome := "failure"
	if success {
		c.Successes++
		outcome = "success"
	} else {
		c.Failures++
	}
	s.j.rewards.WithLabelValues(w.arm, outcome).Inc()
}

// write drops what waited past LabelWait and writes the State.
func (s *session) write(ctx context.Context, cl *kgo.Client) error {
	j := s.j
	horizon := s.maxEvent - j.o.Model.Rollout.LabelWait.D().Milliseconds()
	for id, w := range s.pending {
		if w.eventTime < horizon {
			delete(s.pending, id)
			j.unrewarded.WithLabelValues("label_wait").Inc()
		}
	}
	for id, e := range s.early {
		if e.eventTime < horizon {
			delete(s.early, id)
		}
	}
	st := &State{Model: j.o.Model.Name, Predictions: map[int32]Position{}, Labels: map[int32]Position{}, UpdatedAt: j.o.Now().UnixMilli()}
	for _, c := range s.counts {
		st.Arms = append(st.Arms, *c)
	}
	slices.SortFunc(st.Arms, func(a, b ArmCount) int {
		if a.Arm != b.Arm {
			if a.Arm < b.Arm {
				return -1
			}
			return 1
		}
		return int(a.Version) - int(b.Version)
	})
	for p, o := range s.predDone {
		st.Predictions[p] = Position{Resume: o, Consumed: o}
	}
	for p, o := range s.labsDone {
		st.Labels[p] = Position{Resume: o, Consumed: o}
	}
	for _, w := range s.pending {
		if pos := st.Predictions[w.part]; w.off < pos.Resume {
			pos.Resume = w.off
			st.Predictions[w.part] = pos
		}
	}
	for _, e := range s.early {
		if pos := st.Labels[e.part]; e.off < pos.Resume {
			pos.Resume = e.off
			st.Labels[e.part] = pos
		}
	}
	b, err := st.Encode()
	if err != nil {
		return err
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Key: []byte(j.o.Model.Name), Value: b}).FirstErr(); err != nil {
		return fmt.Errorf("write state to %s: %w", j.o.Rewards, err)
	}
	j.writes.Inc()
	s.dirty = false
	return nil
}
