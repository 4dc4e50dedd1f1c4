package roles

import (
	"context"
	"net/http"
	"time"

	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/featurestore/serve"
	"github.com/weirhq/weir/internal/config"
)

// ServingPath is where the serve role answers feature requests
// (featurestore/serve; featurestore/client calls it).
const ServingPath = "/v1/features"

// mountServing mounts the online feature serving API on mux: the configured
// views' current versions from Redis (and older versions the view catalog
// records, for requests naming them), behind serve.token when it is set. It
// returns what to release once the server stopped. A config with views
// needs Redis (as the materializer does); one without views answers 503
// there, saying so, and the rest of the serve role (/metrics, /healthz) runs
// as before.
func (e *Env) mountServing(ctx context.Context, mux *http.ServeMux) (func(), error) {
	off := func(why string) (func(), error) {
		e.Log.Info("serve: feature API off", "reason", why)
		mux.HandleFunc(ServingPath, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"code":"unavailable","field":"","message":"feature serving is off: ` + why + `"}}` + "\n"))
		})
		return func() {}, nil
	}
	if len(e.Cfg.Views) == 0 {
		return off("no views are configured")
	}
	rdb, err := e.Redis(ctx)
	if err != nil {
		return nil, err
	}
	// Older versions recorded in the view catalog stay servable to requests
	// that name them (models trained on them may still be serving).
	var prev []config.View
	kctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	cat, err := e.Catalog(kctx)
	cancel()
	if err != nil {
		e.Log.Warn("serve: view catalog unreachable; only weir.yaml's view versions are served", "topic", e.Cfg.ViewsTopic(), "err", err)
	} else {
		prev = cat.Previous(e.Cfg.Views)
	}
	h, err := serve.New(online.New(rdb, e.Cfg.Redis.KeyPrefix, e.Cfg.Views), serve.Options{
		Views:      e.Cfg.Views,
		Previous:   prev,
		Token:      e.Cfg.Serve.Token.Reveal(),
		Logger:     e.Log.With("role", "serve"),
		Registerer: e.Metrics,
	})
	if err != nil {
		rdb.Close()
		return nil, err
	}
	mux.Handle(ServingPath, h)
	return func() { rdb.Close() }, nil
}
