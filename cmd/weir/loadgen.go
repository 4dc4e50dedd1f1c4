package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/loadgen"
	"github.com/weirhq/weir/internal/roles"
)

type loadgenFlags struct {
	seed       uint64
	count      int
	rate       float64
	cards      int
	eps        float64
	driftAt    time.Duration
	labelDelay time.Duration
	badEvery   int
	start      string
}

func (l *loadgenFlags) register(fs *flag.FlagSet) {
	fs.Uint64Var(&l.seed, "seed", 1, "random seed: the same seed gives the same stream")
	fs.IntVar(&l.count, "count", 0, "transactions to produce; 0 runs until stopped")
	fs.Float64Var(&l.rate, "rate", 2000, "transactions per wall-clock second; 0 is as fast as possible")
	fs.IntVar(&l.cards, "cards", 5000, "number of cards")
	fs.Float64Var(&l.eps, "event-rate", 200, "transactions per second of event time")
	fs.DurationVar(&l.driftAt, "drift-at", 0, "event time after the start at which drift begins (0: never)")
	fs.DurationVar(&l.labelDelay, "label-delay", 30*time.Second, "event time between a transaction and its label")
	fs.IntVar(&l.badEvery, "bad-every", 0, "insert a bad record after every N transactions (0: none)")
	fs.StringVar(&l.start, "start", "", "event time of the first transaction, RFC 3339 (default: now)")
}

func (l *loadgenFlags) generator() (*loadgen.Generator, error) {
	start := time.Now().UTC().Truncate(time.Second)
	if l.start != "" {
		t, err := time.Parse(time.RFC3339, l.start)
		if err != nil {
			return nil, fmt.Errorf("-start: %w", err)
		}
		start = t
	}
	return loadgen.New(loadgen.Config{Seed: l.seed, Cards: l.cards, Start: start, EventsPerSecond: l.eps, DriftAt: l.driftAt, LabelDelay: l.labelDelay}), nil
}

// runLoadgen produces the stream of the config's first source.
func runLoadgen(ctx context.Context, env *roles.Env, g *loadgen.Generator, l loadgenFlags, progress func(loadgen.Stats)) (loadgen.Stats, error) {
	src := env.Cfg.Sources[0]
	txn, err := env.Serde(ctx, src.Topic, src.Schema)
	if err != nil {
		return loadgen.Stats{}, err
	}
	lab, err := env.Serde(ctx, env.Cfg.Labels.Topic, env.Cfg.Labels.Schema)
	if err != nil {
		return loadgen.Stats{}, err
	}
	cl, err := env.Client(kgo.ProducerLinger(5 * time.Millisecond))
	if err != nil {
		return loadgen.Stats{}, err
	}
	defer cl.Close()
	return loadgen.Run(ctx, cl, g, loadgen.RunConfig{
		TxnTopic: src.Topic, LabelTopic: env.Cfg.Labels.Topic, Txn: txn, Label: lab,
		Count: l.count, Rate: l.rate, BadEvery: l.badEvery, OnProgress: progress,
	}, env.Log)
}

func cmdLoadgen(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	var c common
	var l loadgenFlags
	c.register(fs)
	l.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	env, err := roles.NewEnv(cfg, c.logger(os.Stderr), "loadgen")
	if err != nil {
		return err
	}
	g, err := l.generator()
	if err != nil {
		return err
	}
	st, err := runLoadgen(ctx, env, g, l, func(s loadgen.Stats) {
		fmt.Fprintf(stdout, "produced %d transactions, %d labels, %d bad\n", s.Transactions, s.Labels, s.Bad)
	})
	fmt.Fprintf(stdout, "done: %d transactions (%d fraud), %d labels, %d bad records\n", st.Transactions, st.Frauds, st.Labels, st.Bad)
	return err
}

func cmdTopics(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("topics", flag.ContinueOnError)
	var c common
	c.register(fs)
	if len(args) == 0 || args[0] != "create" {
		return fmt.Errorf("usage: weir topics create [-config weir.yaml]")
	}
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	env, err := roles.NewEnv(cfg, c.logger(os.Stderr), "topics")
	if err != nil {
		return err
	}
	if err := env.Provision(ctx); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "topics ready")
	return nil
}
