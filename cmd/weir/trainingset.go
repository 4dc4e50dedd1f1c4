package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/weirhq/weir/featurestore/catalog"
	"github.com/weirhq/weir/featurestore/offline"
	"github.com/weirhq/weir/featurestore/trainingset"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/roles"
)

// listFlag collects a repeatable, comma-separated flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(s string) error {
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e != "" {
			*l = append(*l, e)
		}
	}
	return nil
}

// pairs parses k=v entries.
func pairs(l listFlag, what string) (map[string]string, error) {
	m := map[string]string{}
	for _, e := range l {
		k, v, ok := strings.Cut(e, "=")
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("%s %q: want name=value", what, e)
		}
		m[k] = v
	}
	return m, nil
}

func cmdTrainingSet(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("training-set", flag.ContinueOnError)
	var c common
	c.register(fs)
	var features, entityCols, viewDelays, colTypes listFlag
	spine := fs.String("spine", "", "the spine: a .csv or .parquet file, or clickhouse:[db.]table (required)")
	where := fs.String("spine-where", "", "a SQL condition on a ClickHouse spine's rows")
	fs.Var(&features, "features", "features to join, view[:version].feature or view[:version].* (repeatable, comma-separated; required)")
	timestamp := fs.String("timestamp", "event_time_ms", "the spine's timestamp column: an integer (see -timestamp-unit) or RFC 3339 text")
	unit := fs.String("timestamp-unit", "ms", "what an integer timestamp counts: s, ms, us or ns")
	fs.Var(&entityCols, "entity-column", "view=column: the spine column holding a view's entity (default: the entity's key field, e.g. card_id; repeatable)")
	delay := fs.Duration("delay", 0, "availability delay of every view: a feature row serves spine rows from its event time plus this")
	fs.Var(&viewDelays, "view-delay", "view=duration: one view's availability delay (repeatable)")
	knownAt := fs.String("known-at", "", "as known at this time (RFC 3339, Unix ms or now): only feature rows emitted by then")
	knownOffsets := fs.String("known-at-offsets", "", "as known at this offset vector, [topic/]partition=offset,... (next offsets to read, as a group commits them; none: nothing): only rows derived from source records before it")
	out := fs.String("out", "", "the output: a .csv (description in <path>.json) or .parquet file, or clickhouse:[db.]table (required)")
	replace := fs.Bool("replace", false, "overwrite an existing output")
	chunk := fs.Int("chunk-rows", trainingset.DefaultChunkRows, "spine rows joined at a time (bounds memory)")
	progress := fs.String("progress", "auto", "progress on stderr: auto (a bar on a terminal), always or never")
	fs.Var(&colTypes, "column-type", "column=type (bool, int64, float64, string): a CSV spine column's type instead of the inferred one (repeatable)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *spine == "" || *out == "" || len(features) == 0 {
		return fmt.Errorf("training-set: -spine, -features and -out are required (weir training-set -h)")
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	reqs, err := trainingset.ParseFeatures(features)
	if err != nil {
		return err
	}
	ents, err := pairs(entityCols, "-entity-column")
	if err != nil {
		return err
	}
	delays, err := pairs(viewDelays, "-view-delay")
	if err != nil {
		return err
	}
	spec := trainingset.Spec{Timestamp: *timestamp, ChunkRows: *chunk}
	if spec.Unit, err = trainingset.ParseTimeUnit(*unit); err != nil {
		return err
	}
	env, err := roles.NewEnv(cfg, c.logger(os.Stderr), "cli")
	if err != nil {
		return err
	}
	defer env.Close()
	// A version weir.yaml no longer defines (or a view it dropped) comes
	// from the view catalog, read once and only then.
	views := slices.Clone(cfg.Views)
	var cat *catalog.Catalog
	for i := range reqs {
		r := &reqs[i]
		v, ok := cfg.View(r.View)
		if !ok || (r.Version != "" && r.Version != v.Version()) {
			if cat == nil {
				cat, err = env.Catalog(ctx)
				if err != nil {
					return fmt.Errorf("training-set: view %s version %q is not in %s, and the view catalog %s that records older versions is unreachable: %w", r.View, r.Version, c.config, cfg.ViewsTopic(), err)
				}
			}
			if r.Version == "" {
				return fmt.Errorf("training-set: no view %q in %s (name a recorded version, view:version.feature; the view catalog has %s)", r.View, c.config, versionList(cat.Versions(r.View)))
			}
			old, found := cat.Get(r.View, r.Version)
			if !found {
				return fmt.Errorf("training-set: view %s has no version %s: %s has %s, the view catalog %s records %s", r.View, r.Version, c.config, currentVersion(cfg, r.View), cfg.ViewsTopic(), versionList(cat.Versions(r.View)))
			}
			views = append(views, old)
			v = &views[len(views)-1]
		}
		col := cfg.EntityKey(v.Entity) // the entity's key field names the spine column
		if col == "" {
			col = v.Entity
		}
		if e, ok := ents[r.View]; ok {
			col = e
			delete(ents, r.View)
		}
		spec.EntityColumns = append(spec.EntityColumns, col)
		r.Delay = *delay
		if d, ok := delays[r.View]; ok {
			if r.Delay, err = time.ParseDuration(d); err != nil {
				return fmt.Errorf("-view-delay %s: %w", r.View, err)
			}
			delete(delays, r.View)
		}
	}
	for v := range ents {
		return fmt.Errorf("-entity-column %s: the view is not requested", v)
	}
	for v := range delays {
		return fmt.Errorf("-view-delay %s: the view is not requested", v)
	}
	spec.Views = reqs
	if *knownAt != "" {
		if spec.Cutoff.KnownAt, err = parseKnownAt(*knownAt); err != nil {
			return err
		}
	}
	if *knownOffsets != "" {
		if spec.Cutoff.Offsets, err = trainingset.ParseOffsets(*knownOffsets); err != nil {
			return err
		}
	}
	types := map[string]trainingset.Type{}
	ct, err := pairs(colTypes, "-column-type")
	if err != nil {
		return err
	}
	for col, t := range ct {
		var typ trainingset.Type
		if err := typ.UnmarshalText([]byte(t)); err != nil {
			return fmt.Errorf("-column-type %s: %w", col, err)
		}
		types[col] = typ
	}

	conn, err := env.ClickHouse(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	store, err := offline.New(conn, cfg.ClickHouse.Database, views)
	if err != nil {
		return err
	}
	sp, desc, err := trainingset.OpenSpine(ctx, conn, *spine, trainingset.SpineOptions{
		Where: *where, DefaultDB: cfg.ClickHouse.Database, Types: types, Keys: spec.EntityColumns})
	if err != nil {
		return err
	}
	defer sp.Close()
	spec.Spine, spec.Source = sp, desc
	w, err := trainingset.OpenWriter(ctx, conn, *out, cfg.ClickHouse.Database, *replace)
	if err != nil {
		return err
	}
	var bar *trainingset.Bar
	switch *progress {
	case "auto", "always":
		tty := isTerminal(os.Stderr)
		if tty || *progress == "always" {
			bar = trainingset.NewBar(os.Stderr, time.Now, tty)
			spec.Progress = bar.Update
		}
	case "never":
	default:
		return fmt.Errorf("-progress %q: want auto, always or never", *progress)
	}
	d, err := trainingset.Build(ctx, store, spec, w)
	if bar != nil {
		bar.Done()
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %d rows, %d columns, cut-off %s, content %s\n", *out, d.Rows, len(d.Columns), d.Cutoff.Mode, d.ContentHash)
	return nil
}

func parseKnownAt(s string) (int64, error) {
	if s == "now" {
		return time.Now().UnixMilli(), nil
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return ms, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return 0, fmt.Errorf("-known-at %q: want RFC 3339, Unix ms or now", s)
	}
	return t.UnixMilli(), nil
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// currentVersion is weir.yaml's version of a view, or "no such view".
func currentVersion(cfg *config.Config, view string) string {
	if v, ok := cfg.View(view); ok {
		return v.Version()
	}
	return "no such view"
}
