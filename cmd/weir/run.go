package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"

	"github.com/sourcegraph/conc/pool"

	"github.com/weirhq/weir/internal/roles"
)

// runAll runs the runners in one group: the first error cancels the rest,
// and it returns once every runner has returned.
func runAll(ctx context.Context, runners []roles.Runner) error {
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

func cmdRun(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var c common
	c.register(fs)
	role := fs.String("role", "all", "comma-separated roles: processor, materializer, monitor, trainer, serve, or all")
	instance := fs.String("instance", hostname(), "names this process in transactional ids: keep it stable across restarts, unique across processes")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	env, err := roles.NewEnv(cfg, c.logger(os.Stderr), *instance)
	if err != nil {
		return err
	}
	defer env.Close()
	if err := env.Provision(ctx); err != nil {
		return err
	}
	plan, err := env.Build(ctx, splitRoles(*role))
	if err != nil {
		return err
	}
	defer plan.Close()
	fmt.Fprintf(stdout, "running %d role tasks; metrics on http://%s/metrics\n", len(plan.Runners), cfg.Serve.Addr)
	return runAll(ctx, plan.Runners)
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "weir"
	}
	return h
}
