// Package retrain turns alerts into training and turns commands into model
// versions.
//
// [Policy] consumes weir.alerts: a FIRING alert whose rule a
// config.RetrainPolicy lists in on_rules for its model, outside the
// policy's cooldown (wall clock, per model), becomes a RETRAIN
// schemas.Command on weir.commands, training on data since the alert's
// start minus the policy's lookback. The cooldown is kept in memory: a
// restarted policy may command once more.
//
// [Trainer] consumes weir.commands in a consumer group and commits each
// command after handling it (at least once: a command redelivered after a
// crash is handled again; a retrain then makes one more version). RETRAIN
// loads labelled rows through [TrainingData], waiting up to the policy's
// label_timeout for min_rows of them, fits through a [Backend] and publishes
// version N+1 as champion, with the serving champion as parent. There is
// no evaluation gate yet (a later issue): a retrained version is promoted
// at once, and ROLLBACK is the way back. ROLLBACK and PROMOTE move the
// champion alias through registry.Rollback and registry.Promote, exactly
// as `weir models rollback|promote` do: the target's artifact is verified
// before the alias moves, and the move is recorded in the target's record
// (registry.MoveOf) with the command's requested_by and reason as who and
// why (defaults: "weir.commands", "<TYPE> command <id>"). A ROLLBACK with
// target 0 goes to the version that held the champion alias before the
// current holder gained it (after a retrain, the retrained version's
// parent), so repeated rollbacks walk back. A command that fails is
// logged, counted and committed; it is not retried.
//
// Backends: [Local] fits in process. Subprocess (the reference Python
// trainer), Kubernetes Job and Slurm backends come later.
//
// [Bootstrap] publishes version 1 of a model that has none.
//
// # Metrics
//
//	weir_retrain_alerts_total{outcome}               alerts seen by the policy (outcome: command, cooldown, ignored)
//	weir_retrain_commands_total{type,outcome}        commands handled by the trainer (outcome: ok, failed)
//	weir_retrain_failures_total{model,reason}        failed commands (reason: model, labels, load, fit, record, publish, alias, type)
//	weir_retrain_undecodable_total{topic}            alerts or commands that did not decode (skipped)
package retrain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
)

// Alert outcomes.
const (
	OutcomeCommand  = "command"
	OutcomeCooldown = "cooldown"
	OutcomeIgnored  = "ignored"
)

// Decision is what the policy made of one alert.
type Decision struct {
	Alert   schemas.Alert
	Outcome string           // OutcomeCommand, OutcomeCooldown or OutcomeIgnored
	Command *schemas.Command // the command published, for OutcomeCommand
}

// PolicyOptions configure a Policy.
type PolicyOptions struct {
	Kafka []kgo.Opt // base client options (streams.ClientOpts)
	// Group is the consumer group (default "<kafka.client_id>.retrain-policy").
	Group string
	// Alerts decodes schemas.Alert on cfg.AlertsTopic(); Commands encodes
	// schemas.Command on cfg.CommandsTopic().
	Alerts, Commands *schemas.Serde
	Logger           *slog.Logger          // nil discards
	Registerer       prometheus.Registerer // nil registers nothing
	Now              func() time.Time      // wall clock for the cooldown; nil means time.Now
	// OnDecision, when set, is called from Run's goroutine after each
	// alert is handled (after its command was produced). It must not block.
	OnDecision func(Decision)
}

// Policy turns alerts into retrain commands.
type Policy struct {
	cfg  *config.Config
	o    PolicyOptions
	log  *slog.Logger
	now  func() time.Time
	last map[string]time.Time // model -> last command; owned by Run

	alerts      *prometheus.CounterVec
	undecodable prometheus.Counter
}

// NewPolicy returns a Policy for cfg's retrain policies.
func NewPolicy(cfg *config.Config, o PolicyOptions) (*Policy, error) {
	if o.Alerts == nil || o.Commands == nil {
		return nil, errors.New("retrain: new policy: Alerts and Commands serdes are required")
	}
	if o.Group == "" {
		o.Group = cfg.Kafka.ClientID + ".retrain-policy"
	}
	p := &Policy{cfg: cfg, o: o, log: o.Logger, now: o.Now, last: map[string]time.Time{},
		alerts:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_retrain_alerts_total", Help: "Alerts seen by the retrain policy, by outcome."}, []string{"outcome"}),
		undecodable: prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_retrain_undecodable_total", Help: "Records that did not decode and were skipped.", ConstLabels: prometheus.Labels{"topic": cfg.AlertsTopic()}}),
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	if reg := o.Registerer; reg != nil {
		for _, c := range []prometheus.Collector{p.alerts, p.undecodable} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("retrain: register policy metrics: %w", err)
			}
		}
	}
	return p, nil
}

// Run consumes alerts until ctx is done, then returns nil; it returns an
// error when it cannot start or cannot publish a command. Each alert's
// command is produced synchronously before the alert's offset is
// committed. Call it once.
func (p *Policy) Run(ctx context.Context) error {
	cl, err := kgo.NewClient(append(slices.Clone(p.o.Kafka),
		kgo.ConsumerGroup(p.o.Group),
		kgo.ConsumeTopics(p.cfg.AlertsTopic()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.DefaultProduceTopic(p.cfg.CommandsTopic()),
	)...)
	if err != nil {
		return fmt.Errorf("retrain: policy: kafka client: %w", err)
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if fs.IsClientClosed() {
			return errors.New("retrain: policy: kafka client closed")
		}
		fs.EachError(func(topic string, part int32, err error) {
			p.log.Warn("retrain policy fetch", "topic", topic, "partition", part, "err", err)
		})
		for _, r := range fs.Records() {
			var a schemas.Alert
			if err := p.o.Alerts.Decode(ctx, r.Value, &a); err != nil {
				p.undecodable.Inc()
				p.log.Error("retrain policy: undecodable alert skipped", "partition", r.Partition, "offset", r.Offset, "err", err)
			} else if err := p.handle(ctx, cl, a); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if err := cl.CommitRecords(ctx, r); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				p.log.Warn("retrain policy: commit", "err", err)
			}
		}
	}
}

func (p *Policy) handle(ctx context.Context, cl *kgo.Client, a schemas.Alert) error {
	d := p.Decide(a)
	if d.Command != nil {
		b, err := p.o.Commands.Encode(*d.Command)
		if err != nil {
			return fmt.Errorf("retrain: policy: %w", err)
		}
		rec := &kgo.Record{Topic: p.cfg.CommandsTopic(), Key: []byte(d.Command.ModelName), Value: b}
		if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			return fmt.Errorf("retrain: policy: produce command to %s: %w", rec.Topic, err)
		}
		p.last[a.ModelName] = p.now()
		p.log.Warn("retrain commanded", "model", a.ModelName, "command_id", d.Command.CommandID, "reason", d.Command.Reason)
	} else if d.Outcome == OutcomeCooldown {
		p.log.Info("retrain suppressed by cooldown", "model", a.ModelName, "alert_id", a.AlertID, "rule", a.Rule, "last", p.last[a.ModelName])
	}
	p.alerts.WithLabelValues(d.Outcome).Inc()
	if p.o.OnDecision != nil {
		p.o.OnDecision(d)
	}
	return nil
}

// Decide says what an alert calls for, at the policy's clock, without
// publishing anything or starting a cooldown. It is not safe to call
// concurrently with Run.
func (p *Policy) Decide(a schemas.Alert) Decision {
	d := Decision{Alert: a, Outcome: OutcomeIgnored}
	if a.State != schemas.AlertFiring {
		return d
	}
	var pol *config.RetrainPolicy
	for i := range p.cfg.Retrain {
		if r := &p.cfg.Retrain[i]; r.Model == a.ModelName && slices.Contains(r.OnRules, a.Rule) {
			pol = r
			break
		}
	}
	if pol == nil {
		return d
	}
	now := p.now()
	if last, ok := p.last[a.ModelName]; ok && now.Sub(last) < pol.Cooldown.D() {
		d.Outcome = OutcomeCooldown
		return d
	}
	d.Outcome = OutcomeCommand
	d.Command = &schemas.Command{
		CommandID:   "retrain-" + a.AlertID,
		Type:        schemas.CommandRetrain,
		ModelName:   a.ModelName,
		Reason:      p.reason(a),
		RequestedBy: "policy",
		RequestedAt: now.UnixMilli(),
		TrainSince:  a.Since - pol.Lookback.D().Milliseconds(),
	}
	return d
}

// reason names the alert: rule, monitor, metric, feature, value, op,
// threshold, windows, since and reference.
func (p *Policy) reason(a schemas.Alert) string {
	op := "vs"
	for _, m := range p.cfg.Monitors {
		if m.Name != a.Monitor {
			continue
		}
		for _, r := range m.Rules {
			if r.Name == a.Rule {
				op = r.Op
			}
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "alert %s: rule %s of monitor %s firing: %s", a.AlertID, a.Rule, a.Monitor, a.Metric)
	if a.Feature != "" {
		fmt.Fprintf(&b, " of %s", a.Feature)
	}
	fmt.Fprintf(&b, " = %s %s threshold %s for %d windows since %s (model %s v%d",
		num(a.Value), op, num(a.Threshold), a.Windows, time.UnixMilli(a.Since).UTC().Format(time.RFC3339), a.ModelName, a.ModelVersion)
	if a.Reference != "" {
		fmt.Fprintf(&b, ", reference %s", a.Reference)
	}
	b.WriteString(")")
	return b.String()
}

func num(v float64) string {
	if math.Abs(v) >= 1e-3 || v == 0 {
		return fmt.Sprintf("%.4g", v)
	}
	return fmt.Sprintf("%.3e", v)
}
