package roles

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/processors"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/streams"
)

// Processor returns the processor role of one source: one exactly-once loop
// that accepts or dead-letters each event, computes the source's own
// entity's views, runs the hooks (the inline scorers) and forwards the event
// to a repartition topic per other entity, all in one transaction; and for
// each other entity, a loop computing its views from its repartition topic.
func (e *Env) Processor(ctx context.Context, src config.Source, hooks ...processors.EventHook) ([]Runner, error) {
	srcSerde, err := e.Serde(ctx, src.Topic, src.Schema)
	if err != nil {
		return nil, fmt.Errorf("processor %s: %w", src.Name, err)
	}
	var defs []config.View
	for _, v := range e.Cfg.ViewsOf(src.Name) {
		defs = append(defs, *v)
	}
	if err := e.PublishViews(ctx, "processor "+src.Name, defs); err != nil {
		return nil, err
	}
	var own []*config.View
	for _, v := range e.Cfg.ViewsOf(src.Name) {
		if v.Lane {
			e.Log.Info("processor: view computed by its backfill lane, skipped here", "source", src.Name, "view", v.Name, "version", v.Version(),
				"lane", "weir backfill -view "+v.Name+" -follow")
			continue
		}
		if e.Cfg.EntityKey(v.Entity) == src.Key {
			own = append(own, v)
		}
	}
	var reparts []processors.Repartition
	for _, ent := range e.Cfg.Rekeyed(src.Name) {
		reparts = append(reparts, processors.Repartition{Field: e.Cfg.EntityKey(ent), Topic: e.Cfg.RepartitionTopic(src.Name, ent), Partitions: e.Cfg.Topics.Partitions})
	}
	stage := "processor." + src.Name
	run, err := e.viewLoop(ctx, src, srcSerde, own, e.Cfg.ChangelogTopic(src.Name), stage, reparts, hooks...)
	if err != nil {
		return nil, err
	}
	runners := []Runner{{Name: stage, Run: run}}
	for _, ent := range e.Cfg.Rekeyed(src.Name) {
		// The entity's views read the repartition topic: the source's
		// accepted records, keyed and partitioned by the entity's key.
		rsrc := src
		rsrc.Name, rsrc.Topic, rsrc.Key = src.Name+"."+ent, e.Cfg.RepartitionTopic(src.Name, ent), e.Cfg.EntityKey(ent)
		rserde, err := e.Serde(ctx, rsrc.Topic, src.Schema)
		if err != nil {
			return nil, err
		}
		stage := "processor." + rsrc.Name
		var views []*config.View
		for _, v := range e.Cfg.ViewsOfEntity(src.Name, ent) {
			if !v.Lane {
				views = append(views, v)
			}
		}
		if len(views) == 0 {
			continue // every view of the entity runs in its lane
		}
		run, err := e.viewLoop(ctx, rsrc, rserde, views, e.Cfg.EntityChangelogTopic(src.Name, ent), stage, nil)
		if err != nil {
			return nil, err
		}
		runners = append(runners, Runner{Name: stage, Run: run})
	}
	return runners, nil
}

// viewLoop builds the exactly-once loop computing views from src.
func (e *Env) viewLoop(ctx context.Context, src config.Source, srcSerde *schemas.Serde, views []*config.View, changelog, stage string, reparts []processors.Repartition, hooks ...processors.EventHook) (func(context.Context) error, error) {
	topics := make([]string, len(views))
	for i, v := range views {
		topics[i] = e.Cfg.FeaturesTopic(v.Name)
	}
	// All views share one feature-row schema, registered under every view
	// topic's subject (a real registry checks compatibility per subject);
	// the id is the same, so one serde encodes for all.
	var rowSerde *schemas.Serde
	for _, topic := range topics {
		s, err := e.Serde(ctx, topic, schemas.FeatureRowSchema)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", stage, err)
		}
		rowSerde = s
	}
	task, err := processors.NewTask(processors.TaskConfig{
		Source: src, Views: views, Entities: e.Cfg.Entities, FeatureTopics: topics,
		ChangelogTopic: changelog, Repartitions: reparts, Opts: e.Kafka, State: e.stateConfig(),
	}, srcSerde, rowSerde, e.Log.With("role", "processor"), e.Metrics, hooks...)
	if err != nil {
		return nil, err
	}
	return streams.NewLoop(e.loopConfig(stage, src.Topic), task, e.Log.With("role", "processor"), e.Metrics).Run, nil
}

// stateConfig is the config's state section with the directory made this
// instance's own, so instances sharing a data directory never share stores.
func (e *Env) stateConfig() config.State {
	st := e.Cfg.State
	st.Dir = filepath.Join(st.Dir, e.Instance)
	return st
}

func (e *Env) loopConfig(stage, topic string) streams.LoopConfig {
	// The instance names both the transactional id and the static group
	// membership: a restart under the same --instance fences its
	// predecessor's transaction and takes its partitions at once.
	// kafka.guarantee: at_least_once uses no transactional id.
	id := e.Cfg.Kafka.ClientID + "." + stage + "." + e.Instance
	return streams.LoopConfig{
		Stage:           stage,
		Group:           e.Cfg.Kafka.ClientID + "." + stage,
		TransactionalID: id,
		AtLeastOnce:     e.Cfg.Kafka.Guarantee == config.GuaranteeAtLeastOnce,
		InstanceID:      id,
		Topics:          []string{topic},
		DeadLetterTopic: e.Cfg.DeadLetterTopic(),
		CommitInterval:  e.Cfg.Kafka.CommitInterval.D(),
		Opts:            e.Kafka,
	}
}
