package roles

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/monitors/profile"
	"github.com/weirhq/weir/processors"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring"
	"github.com/weirhq/weir/scoring/registry"
	"github.com/weirhq/weir/scoring/rollout"
)

// Models returns the process's model registry (one per Env), running and
// caught up with the registry topic; Env.Close stops it.
func (e *Env) Models(ctx context.Context) (*registry.Registry, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.models != nil {
		return e.models, nil
	}
	serde, err := e.serdeLocked(ctx, e.Cfg.ModelsTopic(), schemas.ModelRecordSchema)
	if err != nil {
		return nil, fmt.Errorf("model registry: %w", err)
	}
	where := e.Cfg.ModelRegistry.Artifacts
	if where == "" {
		where = filepath.Join(e.Cfg.DataDir, "models")
	}
	blobs, err := registry.OpenBlobs(ctx, where)
	if err != nil {
		return nil, fmt.Errorf("%s: model_registry.artifacts: %w", e.Cfg.Path(), err)
	}
	pub, priv, err := e.modelsKeys()
	if err != nil {
		blobs.Close()
		return nil, err
	}
	r, err := registry.New(registry.Options{
		Kafka: e.Kafka, Topic: e.Cfg.ModelsTopic(), Serde: serde, Blobs: blobs, PublicKey: pub, SigningKey: priv,
		Logger: e.Log.With("role", "registry"), Registerer: e.Metrics,
		OnSwap: func(name string, from, to int32) {
			e.Log.Info("champion changed", "model", name, "from", from, "to", to)
		},
		Aliases: rolloutAliases(e.Cfg),
	})
	if err != nil {
		blobs.Close()
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	stop := func() { cancel(); <-done; r.Close(); blobs.Close() }
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if err := r.WaitReady(wctx); err != nil {
		stop()
		return nil, fmt.Errorf("model registry %s: %w", e.Cfg.ModelsTopic(), err)
	}
	e.models = r
	e.closers = append(e.closers, stop)
	return r, nil
}

// modelsKeys reads model_registry.public_key and private_key; nil when
// unset.
func (e *Env) modelsKeys() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	var pub ed25519.PublicKey
	var priv ed25519.PrivateKey
	for _, k := range []struct {
		field, path string
		parse       func([]byte) error
	}{
		{"model_registry.public_key", e.Cfg.ModelRegistry.PublicKey, func(b []byte) (err error) { pub, err = registry.ParsePublicKey(b); return err }},
		{"model_registry.private_key", e.Cfg.ModelRegistry.PrivateKey, func(b []byte) (err error) { priv, err = registry.ParsePrivateKey(b); return err }},
	} {
		if k.path == "" {
			continue
		}
		b, err := os.ReadFile(k.path)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %s: %w", e.Cfg.Path(), k.field, err)
		}
		if err := k.parse(b); err != nil {
			return nil, nil, fmt.Errorf("%s: %s: %s: %w", e.Cfg.Path(), k.field, k.path, err)
		}
	}
	return pub, priv, nil
}

// rolloutAliases lists, per model, the aliases its rollout serves besides
// the champion: what the registry loads.
func rolloutAliases(c *config.Config) map[string][]string {
	out := map[string][]string{}
	for _, m := range c.Models {
		out[m.Name] = m.Rollout.Aliases()
	}
	return out
}

// ScorerHooks returns one processor hook per model scoring src: each scores
// every accepted event with the model's rollout (scoring.Scorer.ScoreAll)
// and appends its predictions (the served one, then any shadow ones) to
// the model's predictions topic, in the processor's transaction and on the
// source partition's number. For bandit rollouts it also starts, until
// Env.Close, the rewards reader the scorers sample from and each model's
// rewards joiner (scoring/rollout).
func (e *Env) ScorerHooks(ctx context.Context, src config.Source, models *registry.Registry) ([]processors.EventHook, error) {
	var hooks []processors.EventHook
	rewards, err := e.banditRewards(ctx, src)
	if err != nil {
		return nil, err
	}
	for _, m := range e.Cfg.Models {
		if m.Source != src.Name {
			continue
		}
		sc, err := scoring.NewScorer(m, models, scoring.Options{Logger: e.Log.With("role", "scorer"), Registerer: e.Metrics, Rewards: rewards})
		if err != nil {
			return nil, err
		}
		topic := e.Cfg.PredictionsTopic(m.Name)
		serde, err := e.Serde(ctx, topic, schemas.PredictionSchema)
		if err != nil {
			return nil, err
		}
		if err := sc.Check(); errors.Is(err, scoring.ErrMultiClass) {
			return nil, err
		}
		lk, err := e.lookup(ctx, src, m)
		if err != nil {
			return nil, err
		}
		hooks = append(hooks, lk.fetch)
		hooks = append(hooks, func(_ context.Context, ev *processors.Event, out []*kgo.Record) ([]*kgo.Record, error) {
			feats, took := lk.features(ev)
			ps, err := sc.ScoreAll(nil, scoring.Event{Entity: ev.Key, ID: ev.ID, Time: ev.Time, Partition: ev.Partition, Offset: ev.Offset, Features: feats, Gathered: took})
			if errors.Is(err, scoring.ErrNoChampion) {
				return out, fmt.Errorf("scorer %s: %w (register one: `weir dev` bootstraps v1)", m.Name, err)
			}
			if err != nil {
				return out, fmt.Errorf("scorer %s: %w", m.Name, err)
			}
			for i := range ps {
				b := schemas.AppendPrediction(serde.AppendHeader(make([]byte, 0, 128+48*len(ps[i].Features))), &ps[i])
				out = append(out, &kgo.Record{Topic: topic, Partition: ev.Partition, Key: []byte(ev.Key), Value: b})
			}
			return out, nil
		})
	}
	return hooks, nil
}

// banditRewards starts, for a source with bandit models, the rewards
// topic's reader and one joiner per bandit model, stopped by Env.Close;
// nil when the source has none.
func (e *Env) banditRewards(ctx context.Context, src config.Source) (scoring.Rewards, error) {
	var bandits []config.Model
	for _, m := range e.Cfg.Models {
		if m.Source == src.Name && m.Rollout.Strategy == config.RolloutBandit {
			bandits = append(bandits, m)
		}
	}
	if len(bandits) == 0 {
		return nil, nil
	}
	topic := e.Cfg.RewardsTopic()
	cl, err := e.Client()
	if err != nil {
		return nil, err
	}
	err = rollout.EnsureTopic(ctx, cl, topic, int16(e.Cfg.Topics.Replication))
	cl.Close()
	if err != nil {
		return nil, err
	}
	labels, err := e.Serde(ctx, e.Cfg.Labels.Topic, e.Cfg.Labels.Schema)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	stop := func() { cancel(); wg.Wait() }
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(rctx); err != nil {
				e.Log.Error("rollout rewards stopped", "what", name, "err", err)
			}
		}()
	}
	post := rollout.NewPosteriors(e.Kafka, topic, e.Log.With("role", "rewards"))
	if err := e.Metrics.Register(post.Collector()); err != nil {
		cancel()
		return nil, fmt.Errorf("rollout rewards: register metrics: %w", err)
	}
	run("posteriors", post.Run)
	for _, m := range bandits {
		preds, err := e.Serde(ctx, e.Cfg.PredictionsTopic(m.Name), schemas.PredictionSchema)
		if err != nil {
			stop()
			return nil, err
		}
		j, err := rollout.NewJoiner(rollout.JoinerOptions{
			Kafka: e.Kafka, Model: m, Predictions: e.Cfg.PredictionsTopic(m.Name), Labels: e.Cfg.Labels.Topic, Rewards: topic,
			PredictionSerde: preds, LabelSerde: labels, Group: e.Group("rewards", m.Name),
			Logger: e.Log.With("role", "rewards", "model", m.Name), Registerer: e.Metrics,
		})
		if err != nil {
			stop()
			return nil, err
		}
		run("joiner "+m.Name, j.Run)
	}
	wctx, wcancel := context.WithTimeout(ctx, time.Minute)
	defer wcancel()
	if err := post.WaitReady(wctx); err != nil {
		stop()
		return nil, fmt.Errorf("rollout rewards %s: %w", topic, err)
	}
	e.mu.Lock()
	e.closers = append(e.closers, stop)
	e.mu.Unlock()
	return post, nil
}

// rowFeatures looks up "view.feature" names in an event's feature rows.
type rowFeatures []*schemas.FeatureRow

func (r rowFeatures) Feature(name string) (float64, int64, bool) {
	view, feat, ok := strings.Cut(name, ".")
	if !ok {
		return 0, 0, false
	}
	for _, row := range r {
		if row.View != view {
			continue
		}
		for _, v := range row.Values {
			if v.Name == feat {
				return v.Value, row.EventTime, true
			}
		}
	}
	return 0, 0, false
}

// profiles serves monitors the reference profiles stored in the registry.
type profiles struct{ r *registry.Registry }

func (p profiles) Profile(_ context.Context, model string, version int32) (*profile.Profile, error) {
	rec, ok := p.r.Get(model, version)
	if !ok {
		return nil, fmt.Errorf("model %s v%d is not in the registry", model, version)
	}
	return profile.Parse(rec.ReferenceProfile)
}
