package rollout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// State is one model's bandit rewards and its Joiner's input positions: the
// value of the model's record on the rewards topic (JSON; see
// docs/format/rollout-rewards.md). It is immutable once published.
type State struct {
	Model string `json:"model"`
	// Arms are the reward counts per (arm, version), sorted.
	Arms []ArmCount `json:"arms"`
	// Predictions and Labels are the Joiner's positions per partition of
	// the predictions and labels topics.
	Predictions map[int32]Position `json:"predictions"`
	Labels      map[int32]Position `json:"labels"`
	// UpdatedAt is the wall time of the write, Unix ms.
	UpdatedAt int64 `json:"updated_at"`
}

// ArmCount is the rewards of one version of one arm.
type ArmCount struct {
	Arm       string `json:"arm"`
	Version   int32  `json:"version"`
	Successes int64  `json:"successes"`
	Failures  int64  `json:"failures"`
}

// Position is where a Joiner is in one partition: Resume is the offset of
// the oldest record still waiting to be joined (or Consumed when none is),
// Consumed the offset after the last record it processed.
type Position struct {
	Resume   int64 `json:"resume"`
	Consumed int64 `json:"consumed"`
}

// Counts returns the successes and failures of one arm version (zero when
// the State is nil or has none).
func (s *State) Counts(arm string, version int32) (successes, failures int64) {
	if s == nil {
		return 0, 0
	}
	for _, a := range s.Arms {
		if a.Arm == arm && a.Version == version {
			return a.Successes, a.Failures
		}
	}
	return 0, 0
}

// Encode returns the record value of s.
func (s *State) Encode() ([]byte, error) { return json.Marshal(s) }

// DecodeState parses a record value of the rewards topic.
func DecodeState(b []byte) (*State, error) {
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("rollout: decode state: %w", err)
	}
	if s.Model == "" {
		return nil, errors.New("rollout: decode state: no model")
	}
	return &s, nil
}

// EnsureTopic creates the rewards topic (one partition, compacted) when it
// does not exist.
func EnsureTopic(ctx context.Context, cl *kgo.Client, topic string, replication int16) error {
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, 1, replication, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("rollout: create rewards topic %s: %w", topic, err)
	}
	return nil
}

// Posteriors is the in-process view of the rewards topic that scorers read
// without locks: the latest State per model.
type Posteriors struct {
	kafka []kgo.Opt
	topic string
	log   *slog.Logger

	snap      atomic.Pointer[map[string]*State]
	ready     chan struct{}
	readyOnce sync.Once
}

// NewPosteriors returns a reader of the rewards topic; call Run.
func NewPosteriors(kafka []kgo.Opt, topic string, logger *slog.Logger) *Posteriors {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	p := &Posteriors{kafka: kafka, topic: topic, log: logger, ready: make(chan struct{})}
	p.snap.Store(&map[string]*State{})
	return p
}

// State returns the latest State of a model; nil when there is none.
func (p *Posteriors) State(model string) *State { return (*p.snap.Load())[model] }

// WaitReady blocks until Run has read the topic up to the end offsets it saw
// when it started, or ctx is done.
func (p *Posteriors) WaitReady(ctx context.Context) error {
	select {
	case <-p.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("rollout: posteriors: wait ready: %w", ctx.Err())
	}
}

// Run reads the topic from its start until ctx is done, then returns nil.
// Undecodable records are logged and skipped.
func (p *Posteriors) Run(ctx context.Context) error {
	cl, err := kgo.NewClient(append(slices.Clone(p.kafka), kgo.ConsumeTopics(p.topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return fmt.Errorf("rollout: posteriors: kafka client: %w", err)
	}
	defer cl.Close()
	end, err := endOffset(ctx, cl, p.topic)
	if err != nil {
		return fmt.Errorf("rollout: posteriors: %w", err)
	}
	if end == 0 {
		p.readyOnce.Do(func() { close(p.ready) })
	}
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(t string, part int32, err error) {
			p.log.Warn("rollout: posteriors fetch", "topic", t, "partition", part, "err", err)
		})
		next := map[string]*State{}
		var last int64 = -1
		fs.EachRecord(func(r *kgo.Record) {
			last = r.Offset
			if r.Value == nil {
				next[string(r.Key)] = nil
				return
			}
			s, err := DecodeState(r.Value)
			if err != nil {
				p.log.Error("rollout: undecodable rewards record skipped", "key", string(r.Key), "offset", r.Offset, "err", err)
				return
			}
			next[s.Model] = s
		})
		if len(next) > 0 {
			cur := *p.snap.Load()
			m := make(map[string]*State, len(cur)+len(next))
			for k, v := range cur {
				m[k] = v
			}
			for k, v := range next {
				if v == nil {
					delete(m, k)
				} else {
					m[k] = v
				}
			}
			p.snap.Store(&m)
		}
		if last >= 0 && last+1 >= end {
			p.readyOnce.Do(func() { close(p.ready) })
		}
	}
}

// endOffset returns the end offset of partition 0 of a one-partition
// topic, waiting a little for a topic created just now.
func endOffset(ctx context.Context, cl *kgo.Client, topic string) (int64, error) {
	for deadline := time.Now().Add(30 * time.Second); ; {
		ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
		if err == nil {
			err = ends.Error()
		}
		if err == nil {
			o, _ := ends.Lookup(topic, 0)
			return o.Offset, nil
		}
		if !errors.Is(err, kerr.UnknownTopicOrPartition) || time.Now().After(deadline) {
			return 0, fmt.Errorf("end offset of %s: %w", topic, err)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
