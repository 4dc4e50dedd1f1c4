package retrain

import (
	"context"
	"fmt"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/retrain/train"
	"github.com/weirhq/weir/schemas"
)

// Bootstrap trains and publishes version 1 of model m, champion, created_by
// "bootstrap", when the registry has no version of it; X and y are the
// caller's training rows (in m.Features order and event-time order) and
// desc describes them (stored as JSON in training_set). When the model
// already has versions it publishes nothing and returns the serving
// champion's record (or the newest version's) and false. A nil backend
// means Local.
func Bootstrap(ctx context.Context, cfg *config.Config, models Models, m config.Model, X [][]float64, y []bool, desc any, opts train.Options, backend Backend) (schemas.ModelRecord, bool, error) {
	if err := models.WaitReady(ctx); err != nil {
		return schemas.ModelRecord{}, false, fmt.Errorf("retrain: bootstrap %s: %w", m.Name, err)
	}
	if vs := models.List(m.Name); len(vs) > 0 {
		if l, ok := models.Champion(m.Name); ok {
			return l.Record, false, nil
		}
		return vs[len(vs)-1], false, nil
	}
	if backend == nil {
		backend = Local{}
	}
	res, err := backend.Train(ctx, Job{Model: m, X: X, Y: y, Options: opts})
	if err != nil {
		return schemas.ModelRecord{}, false, fmt.Errorf("retrain: bootstrap %s: %w", m.Name, err)
	}
	rec, err := newRecord(cfg, m, res, "bootstrap", "bootstrap: no version of the model existed", 0, desc)
	if err != nil {
		return schemas.ModelRecord{}, false, fmt.Errorf("retrain: bootstrap %s: %w", m.Name, err)
	}
	rec.Version = 1
	rec, err = models.Publish(ctx, rec, res.Artifact)
	if err != nil {
		return schemas.ModelRecord{}, false, fmt.Errorf("retrain: bootstrap %s: %w", m.Name, err)
	}
	return rec, true, nil
}
