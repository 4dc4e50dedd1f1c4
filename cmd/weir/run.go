package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/weirhq/weir/internal/roles"
)

func cmdRun(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var c common
	c.register(fs)
	role := fs.String("role", "all", "comma-separated roles: processor, materializer, monitor, trainer, serve, or all")
	instance := fs.String("instance", hostname(), "names this process in transactional ids: keep it stable across restarts, unique across processes")
	bootstrapRows := fs.Int("bootstrap-rows", 0, "if a model has no version yet, train v1 on this many synthetic loadgen events first (0: require a registered champion)")
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
	if *bootstrapRows > 0 {
		models, err := env.Models(ctx)
		if err != nil {
			return err
		}
		if _, err := env.Bootstrap(ctx, models, *bootstrapRows); err != nil {
			return err
		}
	}
	plan, err := env.Build(ctx, splitRoles(*role))
	if err != nil {
		return err
	}
	defer plan.Close()
	fmt.Fprintf(stdout, "running %d role tasks; metrics on http://%s/metrics\n", len(plan.Runners), cfg.Serve.Addr)
	return roles.RunAll(ctx, plan.Runners)
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "weir"
	}
	return h
}
