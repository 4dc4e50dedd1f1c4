package roles

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/pprof"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/sourcegraph/conc/pool"

	"github.com/weirhq/weir/monitors"
	"github.com/weirhq/weir/retrain"
)

// Names of the roles `weir run --role` accepts.
var Names = []string{"processor", "materializer", "monitor", "trainer", "serve"}

// ErrNoChampion is returned by Build when a model the processor scores with
// has no champion version yet.
var ErrNoChampion = errors.New("model has no champion version")

// Runner is one role's blocking run function.
type Runner struct {
	Name string
	Run  func(context.Context) error
}

// Plan is a set of roles ready to run, and what to release after.
type Plan struct {
	Runners []Runner
	closers []func()
}

// Close releases the plan's connections; call it after every runner returned.
func (p *Plan) Close() {
	for i := len(p.closers) - 1; i >= 0; i-- {
		p.closers[i]()
	}
}

// Build prepares the named roles ("all" for every role). The model
// registry that the processor (scorers), monitor and trainer read is the
// Env's (see Models): caught up before a processor starts, so that it finds
// its champion.
func (e *Env) Build(ctx context.Context, names []string, monitorHooks ...monitors.Hook) (*Plan, error) {
	if slices.Contains(names, "all") {
		names = Names
	}
	for _, n := range names {
		if !slices.Contains(Names, n) {
			return nil, fmt.Errorf("--role: unknown role %q (one of %v or all)", n, Names)
		}
	}
	has := func(n string) bool { return slices.Contains(names, n) }
	p := &Plan{}
	add := func(name string, run func(context.Context) error) { p.Runners = append(p.Runners, Runner{name, run}) }
	fail := func(err error) (*Plan, error) { p.Close(); return nil, err }

	if has("processor") {
		models, err := e.Models(ctx)
		if err != nil {
			return fail(err)
		}
		for _, src := range e.Cfg.Sources {
			hooks, err := e.ScorerHooks(ctx, src, models)
			if err != nil {
				return fail(err)
			}
			for _, m := range e.Cfg.Models {
				if m.Source == src.Name {
					if _, ok := models.Champion(m.Name); !ok {
						return fail(fmt.Errorf("model %s: %w: register one (`weir dev` bootstraps v1, and so does `weir run --bootstrap-rows N`) before starting the processor", m.Name, ErrNoChampion))
					}
				}
			}
			runners, err := e.Processor(ctx, src, hooks...)
			if err != nil {
				return fail(err)
			}
			p.Runners = append(p.Runners, runners...)
		}
	}
	if has("materializer") || has("trainer") {
		on, off, closeStores, err := e.Stores(ctx)
		if err != nil {
			return fail(err)
		}
		p.closers = append(p.closers, closeStores)
		if has("materializer") {
			runs, err := e.Materializers(ctx, on, off)
			if err != nil {
				return fail(err)
			}
			for i, r := range runs {
				add(fmt.Sprintf("materializer.%d", i), r)
			}
		}
		if has("trainer") {
			models, err := e.Models(ctx)
			if err != nil {
				return fail(err)
			}
			commands, err := e.Serde(ctx, e.Cfg.CommandsTopic(), "command")
			if err != nil {
				return fail(err)
			}
			tr, err := retrain.NewTrainer(e.Cfg, retrain.TrainerOptions{
				Kafka: e.Kafka, Group: e.Group("trainer", "all"), Commands: commands, Models: models,
				Data: e.NewTrainingData(off), Logger: e.Log.With("role", "trainer"), Registerer: e.Metrics,
			})
			if err != nil {
				return fail(err)
			}
			add("trainer", tr.Run)
			pol, err := e.Policy(ctx)
			if err != nil {
				return fail(err)
			}
			add("retrain-policy", pol)
		}
	}
	if has("monitor") {
		models, err := e.Models(ctx)
		if err != nil {
			return fail(err)
		}
		runs, err := e.Monitors(models, monitorHooks...)
		if err != nil {
			return fail(err)
		}
		for i, r := range runs {
			add(fmt.Sprintf("monitor.%s", e.Cfg.Monitors[i].Name), r)
		}
	}
	if has("serve") {
		add("serve", e.Serve)
	}
	return p, nil
}

// RunAll runs the runners in one group: the first error cancels the rest,
// and it returns once every runner has returned. Each runner's goroutines
// carry a pprof label naming its role.
func RunAll(ctx context.Context, runners []Runner) error {
	p := pool.New().WithContext(ctx).WithCancelOnError().WithFirstError()
	for _, r := range runners {
		p.Go(func(ctx context.Context) error {
			var err error
			pprof.Do(ctx, pprof.Labels("role", r.Name), func(ctx context.Context) { err = r.Run(ctx) })
			if err != nil {
				return fmt.Errorf("%s: %w", r.Name, err)
			}
			return nil
		})
	}
	return p.Wait()
}

// Serve serves /metrics (this process's metrics), /healthz and the feature
// serving API (ServingPath, serving.go) on cfg.Serve.Addr until ctx is done.
func (e *Env) Serve(ctx context.Context) error {
	_ = e.Metrics.Register(collectors.NewGoCollector())
	_ = e.Metrics.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(e.Metrics, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	closeServing, err := e.mountServing(ctx, mux)
	if err != nil {
		return err
	}
	defer closeServing()
	l, err := net.Listen("tcp", e.Cfg.Serve.Addr)
	if err != nil {
		return fmt.Errorf("serve.addr %s: %w", e.Cfg.Serve.Addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
