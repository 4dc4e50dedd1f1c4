package retrain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/retrain/train"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring/registry"
)

// TrainingData loads a model's labelled training rows. The lead's
// implementation reads the offline feature store point in time.
type TrainingData interface {
	// Load returns the labelled rows of model whose event time is in
	// [since, until) (until 0: all labelled data): X in model.Features
	// order, rows in event-time order, y the labels, and desc, a
	// JSON-encodable description of the set (stored in the version's
	// training_set). It is called repeatedly while labels arrive.
	Load(ctx context.Context, model config.Model, since, until int64) (X [][]float64, y []bool, desc any, err error)
}

// TrainerOptions configure a Trainer.
type TrainerOptions struct {
	Kafka []kgo.Opt // base client options (streams.ClientOpts)
	// Group is the consumer group (default "<kafka.client_id>.trainer").
	Group string
	// Commands decodes schemas.Command on cfg.CommandsTopic().
	Commands *schemas.Serde
	Models   Models
	Data     TrainingData
	// Backends by name (config.RetrainPolicy.Backend); default {"local": Local{}}.
	Backends map[string]Backend
	// Train are the fit options (Name is set per model).
	Train train.Options
	// LabelPoll is how long to wait between loads while waiting for
	// min_rows labels (default 5s).
	LabelPoll  time.Duration
	Logger     *slog.Logger          // nil discards
	Registerer prometheus.Registerer // nil registers nothing
	// Now and Sleep are the wall clock; nil means time.Now and a timer.
	// Sleep returns early with ctx's error.
	Now   func() time.Time
	Sleep func(ctx context.Context, d time.Duration) error
	// OnHandled, when set, is called from Run's goroutine after each
	// command is handled, before its offset is committed, with the record
	// written (a new version, or the alias target) or the error. It must
	// not block.
	OnHandled func(cmd schemas.Command, rec schemas.ModelRecord, err error)
}

// Trainer handles retrain, rollback and promote commands.
type Trainer struct {
	cfg *config.Config
	o   TrainerOptions
	log *slog.Logger

	commands    *prometheus.CounterVec
	failures    *prometheus.CounterVec
	undecodable prometheus.Counter
}

// NewTrainer returns a Trainer.
func NewTrainer(cfg *config.Config, o TrainerOptions) (*Trainer, error) {
	if o.Commands == nil || o.Models == nil || o.Data == nil {
		return nil, errors.New("retrain: new trainer: Commands, Models and Data are required")
	}
	if o.Group == "" {
		o.Group = cfg.Kafka.ClientID + ".trainer"
	}
	if o.Backends == nil {
		o.Backends = map[string]Backend{"local": Local{}}
	}
	if o.LabelPoll <= 0 {
		o.LabelPoll = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	t := &Trainer{cfg: cfg, o: o, log: o.Logger,
		commands:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_retrain_commands_total", Help: "Commands handled by the trainer, by type and outcome."}, []string{"type", "outcome"}),
		failures:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_retrain_failures_total", Help: "Failed commands, by model and reason."}, []string{"model", "reason"}),
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_retrain_undecodable_total", Help: "Records that did not decode and were skipped.", ConstLabels: prometheus.Labels{"topic": cfg.CommandsTopic()}}),
	}
	if t.log == nil {
		t.log = slog.New(slog.DiscardHandler)
	}
	if reg := o.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{t.commands, t.failures, t.undecodable} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("retrain: register trainer metrics: %w", err)
			}
		}
	}
	return t, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run consumes commands until ctx is done, then returns nil; it returns an
// error when it cannot start. Each command is handled, then committed.
// Call it once.
func (t *Trainer) Run(ctx context.Context) error {
	cl, err := kgo.NewClient(append(slices.Clone(t.o.Kafka),
		kgo.ConsumerGroup(t.o.Group),
		kgo.ConsumeTopics(t.cfg.CommandsTopic()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
	)...)
	if err != nil {
		return fmt.Errorf("retrain: trainer: kafka client: %w", err)
	}
	defer cl.Close()
	if err := t.o.Models.WaitReady(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("retrain: trainer: %w", err)
	}
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if fs.IsClientClosed() {
			return errors.New("retrain: trainer: kafka client closed")
		}
		fs.EachError(func(topic string, p int32, err error) {
			t.log.Warn("trainer fetch", "topic", topic, "partition", p, "err", err)
		})
		for _, r := range fs.Records() {
			var cmd schemas.Command
			if err := t.o.Commands.Decode(ctx, r.Value, &cmd); err != nil {
				t.undecodable.Inc()
				t.log.Error("trainer: undecodable command skipped", "partition", r.Partition, "offset", r.Offset, "err", err)
			} else {
				rec, err := t.Handle(ctx, cmd)
				if ctx.Err() != nil {
					return nil // not committed: handled again after a restart
				}
				if t.o.OnHandled != nil {
					t.o.OnHandled(cmd, rec, err)
				}
			}
			if err := cl.CommitRecords(ctx, r); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				t.log.Warn("trainer: commit", "err", err)
			}
		}
	}
}

// failure is a command failure with its metric reason.
type failure struct {
	reason string
	err    error
}

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

func fail(reason string, format string, args ...any) error {
	return &failure{reason: reason, err: fmt.Errorf(format, args...)}
}

// Handle carries out one command and returns the record it wrote: the new
// version for RETRAIN, the alias target for ROLLBACK and PROMOTE. A
// failure is logged and counted before it is returned.
func (t *Trainer) Handle(ctx context.Context, cmd schemas.Command) (schemas.ModelRecord, error) {
	log := t.log.With("command_id", cmd.CommandID, "type", cmd.Type, "model", cmd.ModelName)
	start := t.o.Now()
	var rec schemas.ModelRecord
	var err error
	switch cmd.Type {
	case schemas.CommandRetrain:
		rec, err = t.retrain(ctx, log, cmd)
	case schemas.CommandRollback, schemas.CommandPromote:
		rec, err = t.move(ctx, cmd)
	default:
		err = fail("type", "unknown command type %q", cmd.Type)
	}
	if err != nil {
		err = fmt.Errorf("retrain: %s %s (command %s): %w", strings.ToLower(cmd.Type), cmd.ModelName, cmd.CommandID, err)
		if ctx.Err() != nil {
			return schemas.ModelRecord{}, err
		}
		reason := "other"
		var f *failure
		if errors.As(err, &f) {
			reason = f.reason
		}
		t.commands.WithLabelValues(cmd.Type, "failed").Inc()
		t.failures.WithLabelValues(cmd.ModelName, reason).Inc()
		log.Error("command failed", "reason", reason, "err", err)
		return schemas.ModelRecord{}, err
	}
	t.commands.WithLabelValues(cmd.Type, "ok").Inc()
	log.Info("command done", "version", rec.Version, "parent", rec.ParentVersion, "sha256", rec.SHA256, "took", t.o.Now().Sub(start))
	return rec, nil
}

func (t *Trainer) policy(model string) config.RetrainPolicy {
	for _, p := range t.cfg.Retrain {
		if p.Model == model {
			return p
		}
	}
	return config.RetrainPolicy{Model: model, Backend: "local", MinRows: 1000, LabelTimeout: config.Duration(2 * time.Minute)}
}

func (t *Trainer) retrain(ctx context.Context, log *slog.Logger, cmd schemas.Command) (schemas.ModelRecord, error) {
	m, ok := t.cfg.Model(cmd.ModelName)
	if !ok {
		return schemas.ModelRecord{}, fail("model", "no model %q in the config", cmd.ModelName)
	}
	pol := t.policy(m.Name)
	backend, ok := t.o.Backends[pol.Backend]
	if !ok {
		return schemas.ModelRecord{}, fail("model", "no backend %q", pol.Backend)
	}
	deadline := t.o.Now().Add(pol.LabelTimeout.D())
	var (
		X    [][]float64
		y    []bool
		desc any
	)
	for attempt := 1; ; attempt++ {
		var err error
		X, y, desc, err = t.o.Data.Load(ctx, *m, cmd.TrainSince, cmd.TrainUntil)
		if err != nil {
			return schemas.ModelRecord{}, fail("load", "load training data: %w", err)
		}
		if len(y) >= pol.MinRows {
			break
		}
		left := deadline.Sub(t.o.Now())
		if left <= 0 {
			return schemas.ModelRecord{}, fail("labels", "%d labelled rows since %s after waiting %s, min_rows is %d",
				len(y), time.UnixMilli(cmd.TrainSince).UTC().Format(time.RFC3339), pol.LabelTimeout.D(), pol.MinRows)
		}
		log.Info("waiting for labels", "rows", len(y), "min_rows", pol.MinRows, "attempt", attempt, "left", left)
		if err := t.o.Sleep(ctx, min(t.o.LabelPoll, left)); err != nil {
			return schemas.ModelRecord{}, err
		}
	}
	res, err := backend.Train(ctx, Job{Model: *m, X: X, Y: y, Options: t.o.Train})
	if err != nil {
		return schemas.ModelRecord{}, fail("fit", "%w", err)
	}
	var parent int32
	if l, ok := t.o.Models.Champion(m.Name); ok {
		parent = l.Record.Version
	}
	rec, err := newRecord(t.cfg, *m, res, "retrain", cmd.Reason, parent, desc)
	if err != nil {
		return schemas.ModelRecord{}, fail("record", "%w", err)
	}
	rec, err = t.o.Models.Publish(ctx, rec, res.Artifact)
	if err != nil {
		return schemas.ModelRecord{}, fail("publish", "%w", err)
	}
	return rec, nil
}

// move carries out PROMOTE and ROLLBACK through registry.Promote and
// registry.Rollback, as `weir models promote|rollback` do: the target is
// verified before the alias moves, the move is recorded in the target's
// record with the command's requester and reason, and a ROLLBACK without
// a target goes to the holder before the current one (repeated rollbacks
// walk back), or the holder's parent where no move recorded one.
func (t *Trainer) move(ctx context.Context, cmd schemas.Command) (schemas.ModelRecord, error) {
	by := cmd.RequestedBy
	if strings.TrimSpace(by) == "" {
		by = "weir.commands"
	}
	why := cmd.Reason
	if strings.TrimSpace(why) == "" {
		why = fmt.Sprintf("%s command %s", cmd.Type, cmd.CommandID)
	}
	var (
		m   registry.Move
		err error
	)
	if cmd.Type == schemas.CommandPromote {
		if cmd.TargetVersion == 0 {
			return schemas.ModelRecord{}, fail("alias", "promote needs a target version")
		}
		m, err = registry.Promote(ctx, t.o.Models, cmd.ModelName, registry.Champion, cmd.TargetVersion, by, why)
	} else {
		m, err = registry.Rollback(ctx, t.o.Models, cmd.ModelName, registry.Champion, cmd.TargetVersion, by, why)
	}
	if err != nil {
		return schemas.ModelRecord{}, fail("alias", "%w", err)
	}
	rec, ok := t.o.Models.Get(cmd.ModelName, m.To)
	if !ok {
		return schemas.ModelRecord{}, fail("alias", "v%d moved to but not read back", m.To)
	}
	return rec, nil
}
