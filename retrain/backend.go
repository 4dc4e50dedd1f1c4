package retrain

import (
	"context"
	"fmt"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/retrain/train"
	"github.com/weirhq/weir/scoring/model"
)

// Job is one training run: a model's labelled rows (X in the model's
// feature order, rows in event-time order) and the fit options.
type Job struct {
	Model   config.Model
	X       [][]float64
	Y       []bool
	Options train.Options
}

// Result is a trained model: its artifact bytes (what the registry stores
// and hashes), the parsed model and the fit's metrics.
type Result struct {
	Artifact []byte
	Model    *model.LogReg
	Metrics  train.Metrics
}

// Backend runs a training job. A backend owns nothing after it returns;
// the caller publishes the result. Backends are named by
// config.RetrainPolicy.Backend.
type Backend interface {
	Train(ctx context.Context, job Job) (Result, error)
}

// Local is the "local" backend: it fits the built-in logistic regression
// in process (package retrain/train). It honours ctx only before it starts.
type Local struct{}

var _ Backend = Local{}

// Train implements Backend.
func (Local) Train(ctx context.Context, job Job) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("local backend: %w", err)
	}
	opts := job.Options
	opts.Name = job.Model.Name
	m, met, err := train.Fit(job.X, job.Y, job.Model.Features, opts)
	if err != nil {
		return Result{}, fmt.Errorf("local backend: %w", err)
	}
	b, err := m.Marshal()
	if err != nil {
		return Result{}, fmt.Errorf("local backend: %w", err)
	}
	return Result{Artifact: b, Model: m, Metrics: met}, nil
}
