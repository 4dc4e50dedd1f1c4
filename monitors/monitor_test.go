package monitors_test

import (
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/monitors"
	"github.com/weirhq/weir/monitors/profile"
)

func TestNewRejects(t *testing.T) {
	good := func() monitors.Options {
		return monitors.Options{
			Monitor: config.Monitor{Name: "m", Model: "fraud", Window: config.Duration(time.Minute), MinCount: 1,
				Rules: []config.Rule{{Name: "r", Metric: "psi", Feature: "score", Op: ">", Threshold: 0.2, For: 1}}},
			Model:    config.Model{Name: "fraud", Features: []string{amountFeature}},
			Topics:   topics,
			Group:    "g",
			Registry: startRegistry(t),
			Profiles: staticProfiles{1: &profile.Profile{}},
		}
	}
	if _, err := monitors.New(good()); err != nil {
		t.Fatalf("good options: %v", err)
	}
	for _, c := range []struct {
		name   string
		change func(*monitors.Options)
		want   string
	}{
		{"other model", func(o *monitors.Options) { o.Model.Name = "churn" }, `watches model "fraud" but was given model "churn"`},
		{"no window", func(o *monitors.Options) { o.Monitor.Window = 0 }, "window must be positive"},
		{"unknown feature", func(o *monitors.Options) { o.Monitor.Rules[0].Feature = "view.nope" }, `rule "r": feature "view.nope" is neither "score" nor a feature of model fraud`},
		{"unknown metric", func(o *monitors.Options) { o.Monitor.Rules[0].Metric = "ks" }, `rule "r": unknown metric "ks"`},
		{"bad op", func(o *monitors.Options) { o.Monitor.Rules[0].Op = ">=" }, `rule "r": op must be`},
		{"no topic", func(o *monitors.Options) { o.Topics.Alerts = "" }, "topics: all of"},
		{"no group", func(o *monitors.Options) { o.Group = "" }, "consumer group id is required"},
		{"no profiles", func(o *monitors.Options) { o.Profiles = nil }, "Profiles source"},
	} {
		o := good()
		c.change(&o)
		_, err := monitors.New(o)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), `monitors: monitor "m": `) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}
