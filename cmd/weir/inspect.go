package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/internal/roles"
)

func cmdFeatures(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "get" {
		return fmt.Errorf("usage: weir features get <entity> [-view name] [-config weir.yaml]")
	}
	fs := flag.NewFlagSet("features get", flag.ContinueOnError)
	var c common
	c.register(fs)
	view := fs.String("view", "", "only this view (default: every view)")
	// Allow the entity before or after the flags.
	rest := args[1:]
	var entity string
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		entity, rest = rest[0], rest[1:]
	}
	if err := parse(fs, rest); err != nil {
		return err
	}
	if entity == "" && fs.NArg() > 0 {
		entity = fs.Arg(0)
	}
	if entity == "" {
		return fmt.Errorf("usage: weir features get <entity>: which entity?")
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	env, err := roles.NewEnv(cfg, c.logger(os.Stderr), "cli")
	if err != nil {
		return err
	}
	rdb, err := env.Redis(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	store := online.New(rdb, cfg.Redis.KeyPrefix, cfg.Views)
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintln(tw, "VIEW\tFEATURE\tVALUE\tSTATUS\tEVENT TIME\tAGE")
	for _, v := range cfg.Views {
		if *view != "" && v.Name != *view {
			continue
		}
		row, ok, err := store.Get(ctx, v.Name, v.Version(), entity)
		if err != nil {
			return err
		}
		for _, f := range v.Features {
			if !ok {
				fmt.Fprintf(tw, "%s@%s\t%s\t-\tmissing\t-\t-\n", v.Name, v.Version(), f.Name)
				continue
			}
			et := time.UnixMilli(row.EventTime)
			age := now.Sub(et).Round(time.Millisecond).String()
			if now.Before(et) { // a synthetic stream may run ahead of the wall clock
				age = "ahead by " + et.Sub(now).Round(time.Millisecond).String()
			}
			fmt.Fprintf(tw, "%s@%s\t%s\t%g\tpresent\t%s\t%s\n", v.Name, v.Version(), f.Name, row.Values[f.Name], et.UTC().Format(time.RFC3339Nano), age)
		}
	}
	return nil
}

func cmdModels(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "list" {
		return fmt.Errorf("usage: weir models list [-model name] [-config weir.yaml]")
	}
	fs := flag.NewFlagSet("models list", flag.ContinueOnError)
	var c common
	c.register(fs)
	only := fs.String("model", "", "only this model")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	env, err := roles.NewEnv(cfg, c.logger(io.Discard), "cli")
	if err != nil {
		return err
	}
	defer env.Close()
	models, err := env.Models(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintln(tw, "MODEL\tVERSION\tALIASES\tCREATED\tBY\tPARENT\tAUC\tSHA256\tWHY")
	for _, name := range models.Names() {
		if *only != "" && name != *only {
			continue
		}
		for _, r := range models.List(name) {
			parent := "-"
			if r.ParentVersion > 0 {
				parent = fmt.Sprintf("v%d", r.ParentVersion)
			}
			auc := "-"
			if v, ok := r.Metrics["holdout_auc"]; ok {
				auc = fmt.Sprintf("%.3f", v)
			}
			fmt.Fprintf(tw, "%s\tv%d\t%s\t%s\t%s\t%s\t%s\t%.12s\t%s\n", r.Name, r.Version, strings.Join(r.Aliases, ","),
				time.UnixMilli(r.CreatedAt).UTC().Format(time.RFC3339), r.CreatedBy, parent, auc, r.SHA256, r.Reason)
		}
	}
	return nil
}

func cmdDoctor(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	var c common
	c.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "config %s: ok\n", cfg.Path())
	env, err := roles.NewEnv(cfg, c.logger(io.Discard), "cli")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	failed := 0
	check := func(what string, err error) {
		if err != nil {
			failed++
			fmt.Fprintf(stdout, "%-15s FAIL: %v\n", what, err)
			return
		}
		fmt.Fprintf(stdout, "%-15s ok\n", what)
	}
	cl, err := env.Client()
	if err == nil {
		var md kadm.Metadata
		md, err = kadm.NewClient(cl).Metadata(ctx)
		if err == nil && len(md.Brokers) == 0 {
			err = fmt.Errorf("no brokers in metadata")
		}
		cl.Close()
	}
	check("kafka", err)
	if env.Schemas == nil {
		check("schema registry", fmt.Errorf("schema_registry.url not set"))
	} else {
		_, err = env.Serde(ctx, cfg.CommandsTopic(), "command")
		check("schema registry", err)
	}
	rdb, err := env.Redis(ctx)
	if err == nil {
		rdb.Close()
	}
	check("redis", err)
	conn, err := env.ClickHouse(ctx)
	if err == nil {
		var v string
		err = conn.QueryRow(ctx, "SELECT version()").Scan(&v)
		conn.Close()
		if err == nil {
			fmt.Fprintf(stdout, "clickhouse version %s\n", v)
		}
	}
	check("clickhouse", err)
	if failed > 0 {
		return fmt.Errorf("%d checks failed", failed)
	}
	return nil
}
