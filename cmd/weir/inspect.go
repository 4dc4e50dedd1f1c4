package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/weirhq/weir/internal/roles"
)

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
