package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/weirhq/weir/internal/roles"
)

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
