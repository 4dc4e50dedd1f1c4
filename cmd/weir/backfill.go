package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weirhq/weir/featurestore/backfill"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/roles"
	"github.com/weirhq/weir/schemas"
)

const backfillUsage = `usage: weir backfill -view name[@version] -from TIME [-follow] [-instance id] [-config weir.yaml]

Computes the history of a view version from a Kafka replay of its source,
from -from on, in a lane of its own (consumer group, changelog, materializer
groups), without touching the running processor or the other versions'
keys and tables; stops at a handover vector past the source's last stable
offsets at the start, or with -follow goes on as the version's live
processor. Running it again continues from the handover vector.
See docs/architecture.md (Backfill).`

func cmdBackfill(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("backfill", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprintln(fs.Output(), backfillUsage); fs.PrintDefaults() }
	var c common
	c.register(fs)
	viewArg := fs.String("view", "", "the view to backfill: name or name@version (the version must be the config's current one)")
	fromArg := fs.String("from", "", "replay start: an RFC 3339 time (2026-12-01T00:00:00Z) or a duration before now (72h); required on a lane's first run")
	follow := fs.Bool("follow", false, "after the cut-over, go on as the version's live processor until interrupted")
	instance := fs.String("instance", hostname(), "names this process in the lane's transactional id: keep it stable across restarts")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *viewArg == "" {
		return errors.New("-view: required (weir backfill -h shows the usage)")
	}
	from, err := parseFrom(*fromArg, time.Now())
	if err != nil {
		return err
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	vs, versions, err := selectViews(cfg, []string{*viewArg})
	if err != nil {
		return fmt.Errorf("-view: %w", err)
	}
	v := vs[0]
	if versions[0] != v.Version() {
		return fmt.Errorf("-view %s@%s: only the config's current version (%s) can be backfilled: put the definition of %s in %s", v.Name, versions[0], v.Version(), versions[0], cfg.Path())
	}
	src, ok := cfg.Source(v.Source)
	if !ok {
		return fmt.Errorf("views[%s].source: no source %q", v.Name, v.Source)
	}
	log := c.logger(os.Stderr)
	env, err := roles.NewEnv(cfg, log, *instance)
	if err != nil {
		return err
	}
	defer env.Close()
	if err := env.PublishViews(ctx, "backfill "+v.Name, []config.View{*v}); err != nil {
		return err
	}
	srcSerde, err := env.Serde(ctx, src.Topic, src.Schema)
	if err != nil {
		return err
	}
	rowSerde, err := env.Serde(ctx, cfg.FeaturesTopic(v.Name), schemas.FeatureRowSchema)
	if err != nil {
		return err
	}
	on, off, closeStores, err := env.Stores(ctx)
	if err != nil {
		return err
	}
	defer closeStores()
	st, err := backfill.Run(ctx, backfill.Config{
		Cfg: cfg, View: v, From: from, Follow: *follow, Instance: *instance, Kafka: env.Kafka,
		SourceSerde: srcSerde, RowSerde: rowSerde, Online: on, Offline: off, Log: log, Metrics: env.Metrics,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "view %s@%s  lane group %s  changelog %s  resumed %v  elapsed %s\n", v.Name, v.Version(), st.Names.Group, st.Names.Changelog,
		st.Resumed, st.Elapsed.Round(time.Millisecond))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintln(tw, "PARTITION\tSTART\tCUT\tHANDOVER")
	parts := make([]int32, 0, len(st.Cut))
	for p := range st.Cut {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	for _, p := range parts {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\n", p, st.Start[p], st.Cut[p], st.Handover[p])
	}
	return nil
}

// parseFrom reads -from: empty (a lane that resumes), an RFC 3339 time or
// a duration before now.
func parseFrom(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("-from %q: want an RFC 3339 time (2026-12-01T00:00:00Z) or a positive duration before now (72h)", s)
}
