package monitors

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/schemas"
)

// serdes are the codecs of the four topics.
type serdes struct {
	prediction, label, metric, alert *schemas.Serde
}

func (m *Monitor) serdes(ctx context.Context) (serdes, error) {
	var s serdes
	var errs [4]error
	t := m.opts.Topics
	serde := func(topic, schema string) (*schemas.Serde, error) {
		return schemas.NewSerde(ctx, m.opts.Registry, schemas.Subject(topic), schemas.MustParse(schema))
	}
	s.prediction, errs[0] = serde(t.Predictions, schemas.PredictionSchema)
	s.label, errs[1] = serde(t.Labels, schemas.LabelSchema)
	s.metric, errs[2] = serde(t.Metrics, schemas.MonitorMetricSchema)
	s.alert, errs[3] = serde(t.Alerts, schemas.AlertSchema)
	return s, errors.Join(errs[:]...)
}

// Run consumes predictions and labels and publishes metrics and alerts
// until ctx is done, then returns nil; it returns an error when it cannot
// start (schema registry, client options) or cannot publish. Call it once.
//
// Each poll's records are processed in order, the metrics and alerts they
// produced are produced synchronously, and only then are the poll's offsets
// committed (at least once; see the package doc for restarts). Undecodable
// records are logged, counted and skipped: the monitor is not the stage that
// dead-letters them. A group without committed offsets starts at the start
// of both topics, so a first run replays the retained history.
func (m *Monitor) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return fmt.Errorf("monitors: monitor %q: Run called twice", m.opts.Monitor.Name)
	}
	sd, err := m.serdes(ctx)
	if err != nil {
		return fmt.Errorf("monitors: monitor %q: start: %w", m.opts.Monitor.Name, err)
	}
	t := m.opts.Topics
	cl, err := kgo.NewClient(append(slices.Clone(m.opts.Kafka),
		kgo.ConsumerGroup(m.opts.Group),
		kgo.ConsumeTopics(t.Predictions, t.Labels),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
	)...)
	if err != nil {
		return fmt.Errorf("monitors: monitor %q: kafka client: %w", m.opts.Monitor.Name, err)
	}
	defer cl.Close()

	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil // nothing of this poll was committed
		}
		if fs.IsClientClosed() {
			return fmt.Errorf("monitors: monitor %q: kafka client closed", m.opts.Monitor.Name)
		}
		fs.EachError(func(topic string, p int32, err error) {
			m.logger.Warn("monitor fetch", "topic", topic, "partition", p, "err", err)
		})
		var perr error
		fs.EachRecord(func(r *kgo.Record) {
			if perr == nil {
				perr = m.record(ctx, sd, r)
			}
		})
		if perr != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("monitors: monitor %q: %w", m.opts.Monitor.Name, perr)
		}
		if err := m.publish(ctx, cl, sd, m.eval.take()); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("monitors: monitor %q: %w", m.opts.Monitor.Name, err)
		}
		if err := cl.CommitUncommittedOffsets(ctx); err != nil && ctx.Err() == nil {
			// The next commit covers these offsets; a crash before it
			// replays them (at least once).
			m.logger.Warn("monitor commit offsets", "group", m.opts.Group, "err", err)
		}
	}
}

// record feeds one consumed record to the evaluator.
func (m *Monitor) record(ctx context.Context, sd serdes, r *kgo.Record) error {
	switch r.Topic {
	case m.opts.Topics.Predictions:
		var p schemas.Prediction
		if err := sd.prediction.Decode(ctx, r.Value, &p); err != nil {
			m.undecodable(KindPrediction, r, err)
			return nil
		}
		return m.eval.addPrediction(ctx, &p)
	case m.opts.Topics.Labels:
		var l schemas.Label
		if err := sd.label.Decode(ctx, r.Value, &l); err != nil {
			m.undecodable(KindLabel, r, err)
			return nil
		}
		m.eval.addLabel(&l)
	}
	return nil
}

func (m *Monitor) undecodable(k RecordKind, r *kgo.Record, err error) {
	m.eval.hooks.recordConsumed(k, OutcomeUndecodable)
	m.logger.Warn("monitor skipped undecodable record", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
}

// publish produces metrics and alerts and waits for them to be acknowledged.
func (m *Monitor) publish(ctx context.Context, cl *kgo.Client, sd serdes, out output) error {
	if len(out.metrics)+len(out.alerts) == 0 {
		return nil
	}
	recs := make([]*kgo.Record, 0, len(out.metrics)+len(out.alerts))
	for i := range out.metrics {
		v, err := sd.metric.Encode(&out.metrics[i])
		if err != nil {
			return fmt.Errorf("encode metric: %w", err)
		}
		recs = append(recs, &kgo.Record{Topic: m.opts.Topics.Metrics, Key: []byte(m.opts.Monitor.Name), Value: v})
	}
	for i := range out.alerts {
		a := &out.alerts[i]
		v, err := sd.alert.Encode(a)
		if err != nil {
			return fmt.Errorf("encode alert %s: %w", a.AlertID, err)
		}
		recs = append(recs, &kgo.Record{Topic: m.opts.Topics.Alerts, Key: []byte(a.Monitor + "/" + a.Rule), Value: v})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("produce %d metrics and %d alerts: %w", len(out.metrics), len(out.alerts), err)
	}
	return nil
}
