package roles

import (
	"context"
	"fmt"

	"github.com/weirhq/weir/monitors"
	"github.com/weirhq/weir/retrain"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring/registry"
)

// Monitors returns one run function per configured monitor.
func (e *Env) Monitors(models *registry.Registry, hooks ...monitors.Hook) ([]func(context.Context) error, error) {
	var runs []func(context.Context) error
	for _, mc := range e.Cfg.Monitors {
		model, _ := e.Cfg.Model(mc.Model)
		m, err := monitors.New(monitors.Options{
			Monitor: mc, Model: *model,
			Topics: monitors.Topics{
				Predictions: e.Cfg.PredictionsTopic(mc.Model), Labels: e.Cfg.Labels.Topic,
				Metrics: e.Cfg.MetricsTopic(), Alerts: e.Cfg.AlertsTopic(),
			},
			Kafka: e.Kafka, Group: e.Group("monitor", mc.Name), Registry: e.Schemas, Partitions: e.Cfg.Topics.Partitions,
			Profiles: profiles{models}, Logger: e.Log.With("role", "monitor"), Registerer: e.Metrics,
			Hooks: hooks,
		})
		if err != nil {
			return nil, fmt.Errorf("monitor %s: %w", mc.Name, err)
		}
		runs = append(runs, m.Run)
	}
	return runs, nil
}

// Policy returns the retrain policy role: alerts in, retrain commands out.
func (e *Env) Policy(ctx context.Context) (func(context.Context) error, error) {
	alerts, err := e.Serde(ctx, e.Cfg.AlertsTopic(), schemas.AlertSchema)
	if err != nil {
		return nil, err
	}
	commands, err := e.Serde(ctx, e.Cfg.CommandsTopic(), schemas.CommandSchema)
	if err != nil {
		return nil, err
	}
	p, err := retrain.NewPolicy(e.Cfg, retrain.PolicyOptions{
		Kafka: e.Kafka, Group: e.Group("retrain-policy", "all"), Alerts: alerts, Commands: commands,
		Logger: e.Log.With("role", "policy"), Registerer: e.Metrics,
	})
	if err != nil {
		return nil, err
	}
	return p.Run, nil
}
