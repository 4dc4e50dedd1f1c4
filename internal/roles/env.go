// Package roles composes Weir's stages into runnable roles (processor,
// materializer, monitor, trainer, serve) from one parsed weir.yaml. Each role
// is a function that blocks until its context is done; cmd/weir runs the
// roles a command asks for in one group. Stages never import each other:
// this package is where they meet.
package roles

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring/registry"
	"github.com/weirhq/weir/streams"
)

// Env is what every role needs: the config, Kafka client options, the schema
// registry, a logger and a metrics registry.
type Env struct {
	Cfg      *config.Config
	Log      *slog.Logger
	Metrics  *prometheus.Registry
	Kafka    []kgo.Opt
	Schemas  schemas.Registry
	Instance string // names this process in transactional ids

	mu      sync.Mutex
	serdes  map[string]*schemas.Serde
	models  *registry.Registry
	closers []func()
}

// NewEnv checks the endpoints the roles share and returns an Env.
func NewEnv(cfg *config.Config, log *slog.Logger, instance string) (*Env, error) {
	opts, err := streams.ClientOpts(cfg.Kafka)
	if err != nil {
		return nil, err
	}
	e := &Env{Cfg: cfg, Log: log, Metrics: prometheus.NewRegistry(), Kafka: opts, Instance: instance, serdes: map[string]*schemas.Serde{}}
	if cfg.SchemaRegistry.URL != "" {
		reg, err := schemas.NewSRClient(cfg.SchemaRegistry.URL)
		if err != nil {
			return nil, fmt.Errorf("schema_registry.url: %w", err)
		}
		e.Schemas = reg
	}
	return e, nil
}

// Close stops what the Env started (the model registry's reader).
func (e *Env) Close() {
	e.mu.Lock()
	closers := e.closers
	e.closers = nil
	e.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		closers[i]()
	}
}

// Serde returns the (cached) serde of a topic's values.
func (e *Env) Serde(ctx context.Context, topic, schema string) (*schemas.Serde, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.serdeLocked(ctx, topic, schema)
}

func (e *Env) serdeLocked(ctx context.Context, topic, schema string) (*schemas.Serde, error) {
	if s, ok := e.serdes[topic]; ok {
		return s, nil
	}
	if e.Schemas == nil {
		return nil, fmt.Errorf("schema_registry.url: not set (set it or WEIR_SCHEMA_REGISTRY_URL, or run `weir dev` for the embedded registry)")
	}
	sc, err := schemas.Parse(schema)
	if err != nil {
		return nil, err
	}
	s, err := schemas.NewSerde(ctx, e.Schemas, schemas.Subject(topic), sc)
	if err != nil {
		return nil, err
	}
	e.serdes[topic] = s
	return s, nil
}

// Client returns a new Kafka client with the base options and extra ones.
func (e *Env) Client(extra ...kgo.Opt) (*kgo.Client, error) {
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), e.Kafka...), extra...)...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return cl, nil
}

// Provision creates every topic the config needs.
func (e *Env) Provision(ctx context.Context) error {
	cl, err := e.Client()
	if err != nil {
		return err
	}
	defer cl.Close()
	return streams.Provision(ctx, kadm.NewClient(cl), int16(e.Cfg.Topics.Replication), streams.Topics(e.Cfg))
}

// Group names a role's consumer group.
func (e *Env) Group(role, name string) string {
	return e.Cfg.Kafka.ClientID + "." + role + "." + name
}
