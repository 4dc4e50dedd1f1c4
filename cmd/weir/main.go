// Command weir is Weir's one binary: `weir dev` runs the whole pipeline on an
// embedded broker and registry, `weir run --role` runs roles against real
// services, and the other commands inspect and operate it. It only parses
// flags and wires roles (package internal/roles) together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/weirhq/weir/internal/config"
)

type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout io.Writer) error
}

var commands = map[string]command{
	"dev":      {"run everything on an embedded broker and registry, with synthetic traffic", cmdDev},
	"run":      {"run roles (processor, materializer, monitor, trainer, serve) against configured services", cmdRun},
	"loadgen":  {"produce the synthetic payments stream and its delayed labels", cmdLoadgen},
	"topics":   {"create the topics a config needs: weir topics create", cmdTopics},
	"features": {"feature views and their stores: weir features list|describe|get|rebuild-online|verify", cmdFeatures},
	"models":   {"the model registry: weir models list|register|keygen", cmdModels},
	"doctor":   {"check that Kafka, the registry, Redis and ClickHouse answer", cmdDoctor},
	"backfill": {"compute a view version's history from a Kafka replay, then hand over to the live stream", cmdBackfill},
	"registry": {"serve a persisted Confluent-compatible schema registry", cmdRegistry},

	"training-set": {"point-in-time training set of a spine (CSV, Parquet, ClickHouse) to Parquet, CSV or ClickHouse", cmdTrainingSet},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "weir:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return nil
	}
	c, ok := commands[args[0]]
	if !ok {
		usage(os.Stderr)
		return fmt.Errorf("unknown command %q", args[0])
	}
	return c.run(ctx, args[1:], stdout)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: weir <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun `weir <command> -h` for its flags.")
}

// common flags of every command
type common struct {
	config   string
	logLevel string
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.config, "config", "weir.yaml", "path of the weir.yaml config")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
}

func (c *common) load() (*config.Config, error) {
	return config.Load(c.config, os.Getenv)
}

func (c *common) logger(w io.Writer) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(c.logLevel)); err != nil {
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
}

func parse(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(os.Stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		return err
	}
	return nil
}

func splitRoles(s string) []string {
	var out []string
	for _, r := range strings.Split(s, ",") {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	return out
}
