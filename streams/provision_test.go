package streams_test

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/streams"
)

// TestProvision creates the demo config's topics on Kafka (real or kfake),
// checks partitions and compaction, and that provisioning again is a no-op
// while a partition-count conflict is reported with what to do.
func TestProvision(t *testing.T) {
	ctx := context.Background()
	seeds, _ := testenv.Kafka(t)
	cfg, err := config.Load("../deploy/demo/weir.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.Kafka.Brokers = seeds
	cfg.Topics.Prefix = testenv.Name("weir")
	cfg.Sources[0].Topic = testenv.Name("payments")
	cfg.Labels.Topic = testenv.Name("labels")
	opts, err := streams.ClientOpts(cfg.Kafka)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	specs := streams.Topics(cfg)
	if err := streams.Provision(ctx, adm, 1, specs); err != nil {
		t.Fatal(err)
	}
	if err := streams.Provision(ctx, adm, 1, specs); err != nil {
		t.Fatalf("second provisioning: %v", err)
	}
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	// A fresh client: kgo answers metadata requests from a cache that
	// still holds "unknown topic" from before the creation.
	cl2, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl2.Close()
	adm = kadm.NewClient(cl2)
	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		t.Fatal(err)
	}
	configs, err := adm.DescribeTopicConfigs(ctx, names...)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		d := details[s.Name]
		if d.Err != nil || int32(len(d.Partitions)) != s.Partitions {
			t.Errorf("topic %s: %d partitions (err %v), want %d", s.Name, len(d.Partitions), d.Err, s.Partitions)
		}
		rc, err := configs.On(s.Name, nil)
		if err != nil {
			t.Fatal(err)
		}
		policy := "delete"
		for _, c := range rc.Configs {
			if c.Key == "cleanup.policy" && c.Value != nil {
				policy = *c.Value
			}
		}
		if want := map[bool]string{true: "compact", false: "delete"}[s.Compacted]; policy != want {
			t.Errorf("topic %s: cleanup.policy %s, want %s", s.Name, policy, want)
		}
	}
	conflict := append([]streams.TopicSpec(nil), specs[0])
	conflict[0].Partitions++
	if err := streams.Provision(ctx, adm, 1, conflict); err == nil {
		t.Error("a partition-count conflict was not reported")
	}
}

// TestTopicsCatalogs: every config has the compacted one-partition view
// catalog; the bandit rewards topic exists only where a model runs a
// bandit rollout.
func TestTopicsCatalogs(t *testing.T) {
	cfg, err := config.Load("../deploy/demo/weir.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	find := func(name string) (streams.TopicSpec, bool) {
		for _, s := range streams.Topics(cfg) {
			if s.Name == name {
				return s, true
			}
		}
		return streams.TopicSpec{}, false
	}
	if s, ok := find(cfg.ViewsTopic()); !ok || !s.Compacted || s.Partitions != 1 {
		t.Errorf("view catalog %+v (present %v), want compacted, 1 partition", s, ok)
	}
	if _, ok := find(cfg.RewardsTopic()); ok {
		t.Errorf("%s provisioned without a bandit rollout", cfg.RewardsTopic())
	}
	cfg.Models[0].Rollout.Strategy = config.RolloutBandit
	if s, ok := find(cfg.RewardsTopic()); !ok || !s.Compacted || s.Partitions != 1 {
		t.Errorf("rewards topic with a bandit rollout %+v (present %v), want compacted, 1 partition", s, ok)
	}
}
