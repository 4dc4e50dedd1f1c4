package retrain

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring/registry"
)

// Models is what the retrain stage needs of the model registry: what
// registry.Promote and registry.Rollback need (registry.Mover) and more;
// *registry.Registry implements it.
type Models interface {
	registry.Mover
	WaitReady(ctx context.Context) error
	Champion(name string) (*registry.Loaded, bool)
	List(name string) []schemas.ModelRecord
	Publish(ctx context.Context, rec schemas.ModelRecord, artifact []byte) (schemas.ModelRecord, error)
}

var _ Models = (*registry.Registry)(nil)

// newRecord describes a trained result as the registry record of the next
// version, champion at once. (The evaluation gate that would compare it to
// the current champion first is a later issue.)
func newRecord(cfg *config.Config, m config.Model, res Result, createdBy, reason string, parent int32, desc any) (schemas.ModelRecord, error) {
	var views []string
	for _, f := range m.Features {
		name, _, ok := config.SplitFeature(f)
		if !ok {
			return schemas.ModelRecord{}, fmt.Errorf("model %s: feature %q is not view.feature", m.Name, f)
		}
		v, ok := cfg.View(name)
		if !ok {
			return schemas.ModelRecord{}, fmt.Errorf("model %s: feature %q: no view %q", m.Name, f, name)
		}
		if ref := v.Name + "@" + v.Version(); !slices.Contains(views, ref) {
			views = append(views, ref)
		}
	}
	ts, err := json.Marshal(desc)
	if err != nil {
		return schemas.ModelRecord{}, fmt.Errorf("model %s: training set description: %w", m.Name, err)
	}
	prof, err := res.Metrics.Profile.Marshal()
	if err != nil {
		return schemas.ModelRecord{}, err
	}
	return schemas.ModelRecord{
		Name:             m.Name,
		Features:         slices.Clone(m.Features),
		Views:            views,
		CreatedBy:        createdBy,
		Reason:           reason,
		ParentVersion:    parent,
		Metrics:          res.Metrics.Map(),
		TrainingSet:      string(ts),
		ReferenceProfile: prof,
		Aliases:          []string{registry.Champion},
	}, nil
}
