package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/roles"
)

// runProcessor runs Weir's processor role on a weir.yaml in this process,
// as `weir run --role processor --instance bench` does (cmd/weir/run.go),
// with a CPU profile over the whole run, until ctx is done (SIGTERM). The
// profile starts once the topics are provisioned.
func runProcessor(ctx context.Context, cfgPath, profile string) error {
	cfg, err := config.Load(cfgPath, os.Getenv)
	if err != nil {
		return err
	}
	env, err := roles.NewEnv(cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)), "bench")
	if err != nil {
		return err
	}
	defer env.Close()
	if err := env.Provision(ctx); err != nil {
		return err
	}
	plan, err := env.Build(ctx, []string{"processor"})
	if err != nil {
		return err
	}
	defer plan.Close()
	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Printf("running %d role tasks in the harness, CPU profile in %s\n", len(plan.Runners), profile)
	err = roles.RunAll(ctx, plan.Runners)
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled)) {
		return nil
	}
	return err
}

// profileTop returns `go tool pprof -top` by flat and by cumulative time,
// the 25 first lines of each, or why it could not.
func profileTop(ctx context.Context, prof string) string {
	var out strings.Builder
	for _, args := range [][]string{
		{"tool", "pprof", "-top", "-nodecount=25", prof},
		{"tool", "pprof", "-top", "-cum", "-nodecount=25", prof},
	} {
		b, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
		if err != nil {
			fmt.Fprintf(&out, "go %s: %v\n%s\n", strings.Join(args, " "), err, b)
			continue
		}
		fmt.Fprintf(&out, "$ go %s\n%s\n", strings.Join(args, " "), b)
	}
	return out.String()
}
