package roles

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/redis/go-redis/v9"

	"github.com/weirhq/weir/featurestore/materialize"
	"github.com/weirhq/weir/featurestore/offline"
	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
)

// Redis opens the online store's client (one node or a Redis Cluster, with
// the configured ACL user and TLS) and checks that it answers.
func (e *Env) Redis(ctx context.Context) (redis.UniversalClient, error) {
	return online.Dial(ctx, e.Cfg.Redis)
}

// ClickHouse opens the offline store's connection (to the default
// database; tables are qualified) and checks that it answers.
func (e *Env) ClickHouse(ctx context.Context) (driver.Conn, error) {
	c := e.Cfg.ClickHouse
	if c.Addr == "" {
		return nil, fmt.Errorf("clickhouse.addr: not set (set it or WEIR_CLICKHOUSE_ADDR; `make setup` starts one on 127.0.0.1:19000)")
	}
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr:        []string{c.Addr},
		Auth:        clickhouse.Auth{Database: "default", Username: c.Username, Password: c.Password.Reveal()},
		DialTimeout: 5 * time.Second,
		ReadTimeout: 5 * time.Minute,
	})
	if err != nil {
		return nil, fmt.Errorf("clickhouse.addr %s: %w", c.Addr, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := conn.Ping(pctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("clickhouse.addr %s: %w (is ClickHouse running? `make setup` starts it)", c.Addr, err)
	}
	return conn, nil
}

func (e *Env) views() []config.View { return e.Cfg.Views }

// Stores opens the online and offline stores (creating ClickHouse tables).
func (e *Env) Stores(ctx context.Context) (*online.Store, *offline.Store, func(), error) {
	rdb, err := e.Redis(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	conn, err := e.ClickHouse(ctx)
	if err != nil {
		rdb.Close()
		return nil, nil, nil, err
	}
	off, err := offline.New(conn, e.Cfg.ClickHouse.Database, e.views())
	if err == nil {
		err = off.Migrate(ctx)
	}
	if err != nil {
		rdb.Close()
		conn.Close()
		return nil, nil, nil, err
	}
	closeAll := func() { rdb.Close(); conn.Close() }
	return online.New(rdb, e.Cfg.Redis.KeyPrefix, e.views()), off, closeAll, nil
}

// Materializers returns the run functions of the online and offline
// materializers of every view, and of the labels materializer.
func (e *Env) Materializers(ctx context.Context, on *online.Store, off *offline.Store) ([]func(context.Context) error, error) {
	var runs []func(context.Context) error
	log := e.Log.With("role", "materializer")
	for i := range e.Cfg.Views {
		v := &e.Cfg.Views[i]
		topic := e.Cfg.FeaturesTopic(v.Name)
		serde, err := e.Serde(ctx, topic, schemas.FeatureRowSchema)
		if err != nil {
			return nil, err
		}
		for _, sink := range []struct {
			kind string
			w    materialize.FeatureWriter
		}{{"online", on}, {"offline", off}} {
			m, err := materialize.NewFeatures(materialize.Config{
				Name: sink.kind + "." + v.Name, Opts: e.Kafka, Group: e.Group("materializer-"+sink.kind, v.Name), Topic: topic,
			}, v, serde, sink.w, log, e.Metrics)
			if err != nil {
				return nil, err
			}
			runs = append(runs, m.Run)
		}
	}
	if e.Cfg.Labels.Topic != "" {
		serde, err := e.Serde(ctx, e.Cfg.Labels.Topic, e.Cfg.Labels.Schema)
		if err != nil {
			return nil, err
		}
		m, err := materialize.NewLabels(materialize.Config{
			Name: "labels", Opts: e.Kafka, Group: e.Group("materializer-offline", "labels"), Topic: e.Cfg.Labels.Topic,
		}, serde, off, log, e.Metrics)
		if err != nil {
			return nil, err
		}
		runs = append(runs, m.Run)
	}
	return runs, nil
}

// TrainingData reads point-in-time training sets from the offline store for
// the trainer.
type TrainingData struct {
	cfg *config.Config
	off *offline.Store
}

// NewTrainingData returns the trainer's data source.
func (e *Env) NewTrainingData(off *offline.Store) *TrainingData {
	return &TrainingData{cfg: e.Cfg, off: off}
}

// Load implements retrain.TrainingData: the labelled events of [since,
// until) whose views' history is complete in the offline store, joined
// point-in-time with the model's features, in event-time order, columns in
// the model's feature order. Rows with a feature missing (no feature row
// within the TTL) are left out.
func (d *TrainingData) Load(ctx context.Context, m config.Model, since, until int64) ([][]float64, []bool, any, error) {
	var reqs []offline.ViewRequest
	col := map[string]int{} // "view.feature" -> column of the training set
	n := 0
	for _, ref := range m.Features {
		vn, fn, _ := config.SplitFeature(ref)
		i := -1
		for j := range reqs {
			if reqs[j].View == vn {
				i = j
			}
		}
		if i < 0 {
			v, _ := d.cfg.View(vn)
			reqs = append(reqs, offline.ViewRequest{View: vn, Version: v.Version()})
			i = len(reqs) - 1
		}
		reqs[i].Features = append(reqs[i].Features, fn)
	}
	for _, r := range reqs {
		for _, f := range r.Features {
			col[r.View+"."+f] = n
			n++
		}
	}
	// Stop the spine where every view's history is complete: a label whose
	// transaction's feature row is not materialized yet would be paired
	// with an older row of its entity.
	// A row may still be written, first or corrected, the source's
	// out_of_order plus the view's lateness behind its partition's newest
	// event.
	src, _ := d.cfg.Source(m.Source)
	for _, r := range reqs {
		horizon := src.OutOfOrder.D() + src.Lateness.D()
		if v, ok := d.cfg.View(r.View); ok {
			horizon = src.OutOfOrder.D() + v.Lateness.D()
		}
		c, err := d.off.Complete(ctx, r.View, r.Version, d.cfg.Topics.Partitions, horizon.Milliseconds())
		if err != nil {
			return nil, nil, nil, err
		}
		if c <= since {
			return nil, nil, nil, nil // nothing complete yet: the trainer waits for more
		}
		if until == 0 || c+1 < until {
			until = c + 1 // Until is exclusive
		}
	}
	ts, err := d.off.TrainingSet(ctx, offline.TrainingSetSpec{Views: reqs, Since: since, Until: until})
	if err != nil {
		return nil, nil, nil, err
	}
	order := make([]int, len(ts.X))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return ts.EventTimes[order[a]] < ts.EventTimes[order[b]] })
	X := make([][]float64, 0, len(order))
	y := make([]bool, 0, len(order))
	for _, i := range order {
		row := make([]float64, len(m.Features))
		ok := true
		for j, ref := range m.Features {
			v := ts.X[i][col[ref]]
			if math.IsNaN(v) {
				ok = false
				break
			}
			row[j] = v
		}
		if ok {
			X = append(X, row)
			y = append(y, ts.Y[i])
		}
	}
	return X, y, ts.Description, nil
}

// Reset deletes what this config stored outside Kafka: the ClickHouse
// database and the Redis keys under the key prefix. `weir dev --fresh` uses it.
func (e *Env) Reset(ctx context.Context) error {
	rdb, err := e.Redis(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	if _, err := online.New(rdb, e.Cfg.Redis.KeyPrefix, nil).DeleteAll(ctx); err != nil {
		return fmt.Errorf("reset redis: %w", err)
	}
	conn, err := e.ClickHouse(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := conn.Exec(dctx, "DROP DATABASE IF EXISTS `"+e.Cfg.ClickHouse.Database+"`"); err != nil {
		return fmt.Errorf("reset clickhouse: drop database %s: %w (a stale query may hold a table lock: see SELECT * FROM system.processes)", e.Cfg.ClickHouse.Database, err)
	}
	return nil
}
