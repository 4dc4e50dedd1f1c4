package roles

import (
	"context"
	"fmt"
	"time"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/loadgen"
	"github.com/weirhq/weir/processors"
	"github.com/weirhq/weir/retrain"
	"github.com/weirhq/weir/retrain/train"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring/registry"
)

// BootstrapSeed seeds the synthetic history version 1 is trained on; it
// differs from any seed the demo streams with.
const BootstrapSeed = 424242

// Bootstrap registers version 1 of every model that has none, trained on a
// synthetic history of n events (before any drift) run through the same
// feature engine the processors use, in memory. It returns the champion
// record of each model and whether it was created now.
func (e *Env) Bootstrap(ctx context.Context, models *registry.Registry, n int) (map[string]schemas.ModelRecord, error) {
	out := map[string]schemas.ModelRecord{}
	for _, m := range e.Cfg.Models {
		src, _ := e.Cfg.Source(m.Source)
		X, y, desc, err := SyntheticTrainingSet(e.Cfg, *src, m, BootstrapSeed, n)
		if err != nil {
			return nil, fmt.Errorf("bootstrap %s: %w", m.Name, err)
		}
		rec, created, err := retrain.Bootstrap(ctx, e.Cfg, models, m, X, y, desc, train.Options{}, nil)
		if err != nil {
			return nil, fmt.Errorf("bootstrap %s: %w", m.Name, err)
		}
		if created {
			e.Log.Info("bootstrapped model", "model", m.Name, "version", rec.Version, "rows", n)
		}
		out[m.Name] = rec
	}
	return out, nil
}

// SyntheticTrainingSet generates n loadgen events with seed and computes
// model m's features for each with the processors' engine; y is the fraud
// label. Rows are in event-time order.
func SyntheticTrainingSet(cfg *config.Config, src config.Source, m config.Model, seed uint64, n int) ([][]float64, []bool, any, error) {
	var own []*config.View // the model reads only views of the source's own key
	for _, v := range cfg.ViewsOf(src.Name) {
		if cfg.EntityKey(v.Entity) == src.Key {
			own = append(own, v)
		}
	}
	eng, err := processors.NewEngine(src, own, cfg.Entities)
	if err != nil {
		return nil, nil, nil, err
	}
	// Where each model feature sits in the engine's output.
	type pos struct{ view, feat int }
	idx := make([]pos, len(m.Features))
	for i, ref := range m.Features {
		vn, fn, _ := config.SplitFeature(ref)
		found := false
		for vi := range eng.NumViews() {
			name, _, feats := eng.View(vi)
			for fi, f := range feats {
				if name == vn && f == fn {
					idx[i], found = pos{vi, fi}, true
				}
			}
		}
		if !found {
			return nil, nil, nil, fmt.Errorf("model feature %s is not computed from source %s", ref, src.Name)
		}
	}
	fields := eng.Fields()
	if len(eng.Filters()) > 0 {
		return nil, nil, nil, fmt.Errorf("the synthetic history cannot evaluate where-filters; register v1 another way")
	}
	for _, f := range fields {
		if f != "amount" {
			return nil, nil, nil, fmt.Errorf("synthetic history has no field %q (only amount)", f)
		}
	}
	start := time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC)
	g := loadgen.New(loadgen.Config{Seed: seed, Start: start})
	mem := eng.NewMemory()
	X := make([][]float64, 0, n)
	y := make([]bool, 0, n)
	vals := make([]float64, len(fields))
	for range n {
		tx, lb := g.Next()
		for i := range vals {
			vals[i] = tx.Amount
		}
		out, err := mem.Apply(tx.CardID, tx.EventTime, vals)
		if err != nil {
			return nil, nil, nil, err
		}
		row := make([]float64, len(idx))
		for i, p := range idx {
			row[i] = out[p.view][p.feat]
		}
		X = append(X, row)
		y = append(y, lb.IsFraud)
	}
	desc := map[string]any{
		"spine":    "synthetic loadgen history (no drift)",
		"seed":     seed,
		"rows":     n,
		"start":    start.Format(time.RFC3339),
		"features": m.Features,
	}
	return X, y, desc, nil
}
