package streams

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/weirhq/weir/internal/config"
)

// ClientOpts returns the franz-go options every Weir client starts from:
// seed brokers and SASL from config. Callers append their own (group,
// transactional id, topics). kgo's defaults apply to everything else.
func ClientOpts(k config.Kafka) ([]kgo.Opt, error) {
	if len(k.Brokers) == 0 {
		return nil, errors.New("kafka.brokers: no seed brokers (set kafka.brokers or WEIR_KAFKA_BROKERS, or run `weir dev` for the embedded broker)")
	}
	opts := []kgo.Opt{kgo.SeedBrokers(k.Brokers...), kgo.ClientID(k.ClientID)}
	switch strings.ToUpper(k.SASL.Mechanism) {
	case "":
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: k.SASL.Username, Pass: k.SASL.Password.Reveal()}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: k.SASL.Username, Pass: k.SASL.Password.Reveal()}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: k.SASL.Username, Pass: k.SASL.Password.Reveal()}.AsSha512Mechanism()))
	default:
		return nil, fmt.Errorf("kafka.sasl.mechanism: unknown %q (PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)", k.SASL.Mechanism)
	}
	return opts, nil
}

// TopicSpec is one topic to provision.
type TopicSpec struct {
	Name       string
	Partitions int32
	Compacted  bool
}

// Topics lists every topic a config needs: sources, repartitions, labels,
// features, predictions, changelogs, dead letters, monitor metrics, alerts,
// commands and the model registry. Changelogs and the registry are compacted; a changelog
// has as many partitions as its source.
func Topics(c *config.Config) []TopicSpec {
	p := int32(c.Topics.Partitions)
	var out []TopicSpec
	for _, s := range c.Sources {
		out = append(out, TopicSpec{Name: s.Topic, Partitions: p}, TopicSpec{Name: c.ChangelogTopic(s.Name), Partitions: p, Compacted: true})
		for _, e := range c.Rekeyed(s.Name) {
			out = append(out, TopicSpec{Name: c.RepartitionTopic(s.Name, e), Partitions: p},
				TopicSpec{Name: c.EntityChangelogTopic(s.Name, e), Partitions: p, Compacted: true})
		}
	}
	if c.Labels.Topic != "" {
		out = append(out, TopicSpec{Name: c.Labels.Topic, Partitions: p})
	}
	for _, v := range c.Views {
		out = append(out, TopicSpec{Name: c.FeaturesTopic(v.Name), Partitions: p})
	}
	bandit := false
	for _, m := range c.Models {
		out = append(out, TopicSpec{Name: c.PredictionsTopic(m.Name), Partitions: p})
		bandit = bandit || m.Rollout.Strategy == config.RolloutBandit
	}
	if bandit {
		// The bandits' reward counts: one record per model, one partition
		// (its holder is the elected joiner).
		out = append(out, TopicSpec{Name: c.RewardsTopic(), Partitions: 1, Compacted: true})
	}
	out = append(out,
		TopicSpec{Name: c.DeadLetterTopic(), Partitions: p},
		TopicSpec{Name: c.MetricsTopic(), Partitions: 1},
		TopicSpec{Name: c.AlertsTopic(), Partitions: 1},
		TopicSpec{Name: c.CommandsTopic(), Partitions: 1},
		TopicSpec{Name: c.ModelsTopic(), Partitions: 1, Compacted: true},
		TopicSpec{Name: c.ViewsTopic(), Partitions: 1, Compacted: true},
	)
	return out
}

// Provision creates the topics that do not exist yet; existing topics are
// left as they are (their partition count is checked, not changed).
func Provision(ctx context.Context, adm *kadm.Client, replication int16, specs []TopicSpec) error {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	existing, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return fmt.Errorf("provision: list topics: %w", err)
	}
	var errs []error
	for _, s := range specs {
		if d, ok := existing[s.Name]; ok && d.Err == nil {
			if got := int32(len(d.Partitions)); got != s.Partitions {
				errs = append(errs, fmt.Errorf("provision: topic %s has %d partitions, config wants %d (recreate it or change topics.partitions)", s.Name, got, s.Partitions))
			}
			continue
		}
		cfg := map[string]*string{}
		if s.Compacted {
			cfg["cleanup.policy"] = kadm.StringPtr("compact")
		}
		resp, err := adm.CreateTopic(ctx, s.Partitions, replication, cfg, s.Name)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("provision: create topic %s: %w", s.Name, err))
		}
	}
	return errors.Join(errs...)
}
