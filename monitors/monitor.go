package monitors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/monitors/profile"
	"github.com/weirhq/weir/schemas"
)

// Profiles gives the reference profile of a model version (the lead's
// implementation reads the model registry). A returned profile must not be
// modified afterwards: the monitor keeps it for the life of the process.
type Profiles interface {
	Profile(ctx context.Context, model string, version int32) (*profile.Profile, error)
}

// Topics are the topics a monitor reads and writes (names from
// config.Config: PredictionsTopic(model), Labels.Topic, MetricsTopic(),
// AlertsTopic()).
type Topics struct {
	Predictions string
	Labels      string
	Metrics     string
	Alerts      string
}

// Options configure a Monitor.
type Options struct {
	Monitor config.Monitor // with defaults applied (config.Parse does)
	Model   config.Model   // the model Monitor.Model names
	Topics  Topics
	// Kafka are the base client options (streams.ClientOpts); the monitor
	// adds its group, topics, read_committed isolation and manual commits.
	Kafka []kgo.Opt
	// Group is the consumer group id.
	Group string
	// Registry is the schema registry that serdes register with.
	Registry schemas.Registry
	Profiles Profiles
	// Logger receives the timeline (see LogHook); nil discards it.
	Logger *slog.Logger
	// Registerer receives the metrics of PrometheusHook; nil exports none.
	Registerer prometheus.Registerer
	// Partitions is the predictions topic's partition count: the watermark
	// is the least of the partitions' newest prediction times once all of
	// them were seen (0: of the partitions seen so far).
	Partitions int
	// Hooks are extra hooks, called after the logger's and Prometheus's.
	Hooks []Hook
}

// Monitor runs one config.Monitor over Kafka. Create it with New, then call
// Run once.
type Monitor struct {
	opts    Options
	logger  *slog.Logger
	eval    *evaluator
	running atomic.Bool
}

// New checks opts and returns a Monitor that has not connected to anything.
func New(opts Options) (*Monitor, error) {
	if err := check(opts); err != nil {
		return nil, fmt.Errorf("monitors: monitor %q: %w", opts.Monitor.Name, err)
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	hs := hooks{LogHook{Logger: logger}}
	logger = logger.With("monitor", opts.Monitor.Name)
	if opts.Registerer != nil {
		ph, err := NewPrometheusHook(opts.Registerer, opts.Monitor.Name)
		if err != nil {
			return nil, fmt.Errorf("monitors: monitor %q: %w", opts.Monitor.Name, err)
		}
		for _, r := range opts.Monitor.Rules {
			ph.firing.WithLabelValues(opts.Monitor.Name, r.Name).Set(0)
		}
		hs = append(hs, ph)
	}
	hs = append(hs, opts.Hooks...)
	return &Monitor{opts: opts, logger: logger, eval: newEvaluator(opts.Monitor, opts.Model, opts.Profiles, hs, opts.Partitions)}, nil
}

// check validates what the monitor relies on; config.Validate has checked
// the rest of weir.yaml.
func check(o Options) error {
	m := o.Monitor
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if m.Model != o.Model.Name {
		bad("watches model %q but was given model %q", m.Model, o.Model.Name)
	}
	if m.Window <= 0 {
		bad("window must be positive, got %s", m.Window.D())
	}
	if m.Grace < 0 || m.LabelWait < 0 {
		bad("grace and label_wait must not be negative")
	}
	for _, r := range m.Rules {
		switch r.Metric {
		case MetricPSI:
			if r.Feature != profile.ScoreName && !slices.Contains(o.Model.Features, r.Feature) {
				bad("rule %q: feature %q is neither %q nor a feature of model %s", r.Name, r.Feature, profile.ScoreName, o.Model.Name)
			}
		case MetricAUC:
		default:
			bad("rule %q: unknown metric %q (psi or auc)", r.Name, r.Metric)
		}
		if r.Op != ">" && r.Op != "<" {
			bad("rule %q: op must be \">\" or \"<\", got %q", r.Name, r.Op)
		}
	}
	t := o.Topics
	if t.Predictions == "" || t.Labels == "" || t.Metrics == "" || t.Alerts == "" {
		bad("topics: all of predictions, labels, metrics and alerts are required, got %+v", t)
	}
	if o.Group == "" {
		bad("consumer group id is required")
	}
	if o.Registry == nil || o.Profiles == nil {
		bad("a schema registry and a Profiles source are required")
	}
	return errors.Join(errs...)
}
