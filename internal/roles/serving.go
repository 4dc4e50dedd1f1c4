package roles

import (
	"context"
	"net/http"

	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/featurestore/serve"
)

// ServingPath is where the serve role answers feature requests
// (featurestore/serve; featurestore/client calls it).
const ServingPath = "/v1/features"

// mountServing mounts the online feature serving API on mux: the configured
// views' current versions from Redis, behind serve.token when it is set. It
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
	h, err := serve.New(online.New(rdb, e.Cfg.Redis.KeyPrefix, e.Cfg.Views), serve.Options{
		Views:      e.Cfg.Views,
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
