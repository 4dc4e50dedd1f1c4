package roles

import (
	"context"
	"fmt"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/processors"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/streams"
)

// Processor returns the processor role of one source: its views computed in
// one exactly-once loop, with hooks (the inline scorers) in the same
// transactions.
func (e *Env) Processor(ctx context.Context, src config.Source, hooks ...processors.EventHook) (func(context.Context) error, error) {
	views := e.Cfg.ViewsOf(src.Name)
	topics := make([]string, len(views))
	for i, v := range views {
		topics[i] = e.Cfg.FeaturesTopic(v.Name)
	}
	srcSerde, err := e.Serde(ctx, src.Topic, src.Schema)
	if err != nil {
		return nil, fmt.Errorf("processor %s: %w", src.Name, err)
	}
	// All views share one feature-row schema, registered under every view
	// topic's subject (a real registry checks compatibility per subject);
	// the id is the same, so one serde encodes for all.
	var rowSerde *schemas.Serde
	for _, topic := range topics {
		s, err := e.Serde(ctx, topic, schemas.FeatureRowSchema)
		if err != nil {
			return nil, fmt.Errorf("processor %s: %w", src.Name, err)
		}
		if rowSerde == nil {
			rowSerde = s
		}
	}
	task, err := processors.NewTask(processors.TaskConfig{
		Source: src, Views: views, Entities: e.Cfg.Entities, FeatureTopics: topics,
		ChangelogTopic: e.Cfg.ChangelogTopic(src.Name), Opts: e.Kafka,
	}, srcSerde, rowSerde, e.Log.With("role", "processor"), e.Metrics, hooks...)
	if err != nil {
		return nil, err
	}
	loop := streams.NewLoop(streams.LoopConfig{
		Stage:           "processor." + src.Name,
		Group:           e.Group("processor", src.Name),
		TransactionalID: e.Group("processor", src.Name) + "." + e.Instance,
		Topics:          []string{src.Topic},
		DeadLetterTopic: e.Cfg.DeadLetterTopic(),
		CommitInterval:  e.Cfg.Kafka.CommitInterval.D(),
		Opts:            e.Kafka,
	}, task, e.Log.With("role", "processor"), e.Metrics)
	return loop.Run, nil
}
