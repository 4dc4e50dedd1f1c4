package roles

import (
	"context"
	"fmt"
	"time"

	"github.com/weirhq/weir/featurestore/catalog"
	"github.com/weirhq/weir/internal/config"
)

// PublishViews records the definitions of views in the view catalog
// (featurestore/catalog) unless they are there already, so their versions
// stay nameable after weir.yaml changes. by says who defined them (e.g.
// "processor payments").
func (e *Env) PublishViews(ctx context.Context, by string, views []config.View) error {
	n, err := catalog.Publish(ctx, e.Kafka, e.Cfg.ViewsTopic(), views, by, time.Now())
	if err != nil {
		return fmt.Errorf("%s: record view versions: %w", by, err)
	}
	if n > 0 {
		e.Log.Info("view versions recorded in the catalog", "by", by, "new", n, "topic", e.Cfg.ViewsTopic())
	}
	return nil
}

// catalogWait bounds a catalog read: an unreachable cluster would
// otherwise hold it until ctx ends.
const catalogWait = 10 * time.Second

// Catalog reads the view catalog, giving up after catalogWait (or ctx); a
// record that does not decode is logged and left out.
func (e *Env) Catalog(ctx context.Context) (*catalog.Catalog, error) {
	ctx, cancel := context.WithTimeout(ctx, catalogWait)
	defer cancel()
	c, err := catalog.Read(ctx, e.Kafka, e.Cfg.ViewsTopic())
	if err != nil {
		return nil, err
	}
	for _, err := range c.Skipped {
		e.Log.Warn("view catalog: record skipped", "err", err)
	}
	return c, nil
}
