package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/weirhq/weir/featurestore"
	"github.com/weirhq/weir/featurestore/catalog"
	"github.com/weirhq/weir/featurestore/materialize"
	"github.com/weirhq/weir/featurestore/offline"
	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/featurestore/verify"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/roles"
	"github.com/weirhq/weir/schemas"
)

const featuresUsage = `usage: weir features <command> [flags]

  list                        every view version (weir.yaml's and previous ones): entity, kind, TTL, features, where it lives
  describe <view>[@version]   one view in detail, with the versions defined and stored side by side in ClickHouse and Redis
  get <entity>...             online values of entities (-view name or name@version, repeatable)
  rebuild-online              refill Redis from the feature topics (after a flush or a new Redis)
  verify                      check that Redis holds the newest ClickHouse row of sampled entities
  inherit <view> [-from v]    give a version that only adds features the history of the version it extends

Run ` + "`weir features <command> -h`" + ` for its flags`

func cmdFeatures(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(featuresUsage)
	}
	sub := map[string]func(context.Context, []string, io.Writer) error{
		"list":           featuresList,
		"describe":       featuresDescribe,
		"get":            featuresGet,
		"rebuild-online": featuresRebuild,
		"verify":         featuresVerify,
		"inherit":        featuresInherit,
	}[args[0]]
	if sub == nil {
		return fmt.Errorf("unknown features command %q\n%s", args[0], featuresUsage)
	}
	return sub(ctx, args[1:], stdout)
}

// parseInterleaved parses flags that may come before, between or after
// positional arguments, and returns the positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parse(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

// viewFlag collects -view name or name@version.
type viewFlag []string

func (v *viewFlag) String() string     { return strings.Join(*v, ",") }
func (v *viewFlag) Set(s string) error { *v = append(*v, s); return nil }

// selectViews returns the config's views named by sel (all when sel is
// empty), with the version each asks for (the current one by default).
func selectViews(cfg *config.Config, sel []string) ([]*config.View, []string, error) {
	if len(sel) == 0 {
		var vs []*config.View
		var versions []string
		for i := range cfg.Views {
			vs = append(vs, &cfg.Views[i])
			versions = append(versions, cfg.Views[i].Version())
		}
		return vs, versions, nil
	}
	var vs []*config.View
	var versions []string
	for _, s := range sel {
		name, version, _ := strings.Cut(s, "@")
		v, ok := cfg.View(name)
		if !ok {
			return nil, nil, fmt.Errorf("no view %q in %s (weir features list shows them)", name, cfg.Path())
		}
		if version == "" {
			version = v.Version()
		}
		vs, versions = append(vs, v), append(versions, version)
	}
	return vs, versions, nil
}

func featuresList(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("features list", flag.ContinueOnError)
	var c common
	c.register(fs)
	noKafka := fs.Bool("offline", false, "list weir.yaml's views only; do not read the view catalog (previous versions) from Kafka")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	// Previous versions come from the view catalog on Kafka; -offline (or
	// an unreachable cluster) leaves them out, saying so.
	var prev []config.View
	var catNote string
	if *noKafka {
		catNote = "previous versions not shown (-offline)"
	} else {
		env, err := roles.NewEnv(cfg, c.logger(io.Discard), "cli")
		if err != nil {
			return err
		}
		cat, err := env.Catalog(ctx)
		env.Close()
		if err != nil {
			catNote = fmt.Sprintf("previous versions not shown: view catalog %s unreachable: %v", cfg.ViewsTopic(), err)
		} else {
			prev = cat.Previous(cfg.Views)
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VIEW\tVERSION\tCURRENT\tENTITY\tSOURCE\tKIND\tTTL\tFEATURES\tREDIS KEY\tCLICKHOUSE TABLE")
	line := func(v *config.View, cur string) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", v.Name, v.Version(), cur, v.Entity, v.Source, kind(v), v.TTL.D(),
			len(v.Features), redisKeyPattern(cfg, v, v.Version()), clickHouseTable(cfg, v.Name, v.Version()))
	}
	for i := range cfg.Views {
		line(&cfg.Views[i], "yes")
	}
	for i := range prev {
		line(&prev[i], "no")
	}
	tw.Flush()
	if catNote != "" {
		fmt.Fprintln(stdout, catNote)
	}
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VIEW\tFEATURE\tAGG\tFIELD\tWINDOW\tFILTER\tPARAMS")
	for i := range cfg.Views {
		for _, f := range cfg.Views[i].Features {
			featureLine(tw, cfg.Views[i].Name+"\t", &cfg.Views[i], f)
		}
	}
	return tw.Flush()
}

// kind describes a view's windows, e.g. "sliding" or "hopping 1h/5m emit close".
func kind(v *config.View) string {
	switch v.Kind {
	case config.KindTumbling:
		return fmt.Sprintf("tumbling %s emit %s", v.Window.D(), v.Emit)
	case config.KindHopping:
		return fmt.Sprintf("hopping %s/%s emit %s", v.Window.D(), v.Hop.D(), v.Emit)
	case config.KindSession:
		return fmt.Sprintf("session gap %s emit %s", v.Gap.D(), v.Emit)
	}
	return v.Kind
}

func featureLine(w io.Writer, lead string, v *config.View, f config.Feature) {
	field, window, filter, params := dash(f.Field), "-", "-", "-"
	switch {
	case f.Window != 0:
		window = f.Window.D().String()
	case v.Kind != config.KindSliding:
		window = "(view's)"
	}
	if f.Where != nil {
		filter = f.Where.String()
	}
	switch f.Agg {
	case "top_k":
		params = fmt.Sprintf("k=%d", f.K)
	case "last_n":
		params = fmt.Sprintf("n=%d", f.N)
	case "quantile":
		params = fmt.Sprintf("q=%g", f.Q)
	case "ratio":
		params = "of=" + strings.Join(f.Of, "/")
	}
	fmt.Fprintf(w, "%s%s\t%s\t%s\t%s\t%s\t%s\n", lead, f.Name, f.Agg, field, window, filter, params)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func redisKeyPattern(cfg *config.Config, v *config.View, version string) string {
	return online.RedisKey(cfg.Redis.KeyPrefix, online.Key{View: v.Name, Version: version, Entity: "<" + v.Entity + ">"})
}

func clickHouseTable(cfg *config.Config, view, version string) string {
	return cfg.ClickHouse.Database + "." + offline.TableName(view, version)
}

func featuresDescribe(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("features describe", flag.ContinueOnError)
	var c common
	c.register(fs)
	noStores := fs.Bool("offline", false, "show the definition only; do not connect to Redis or ClickHouse")
	budget := fs.Int("redis-scan", 1_000_000, "examine at most about this many Redis keys per node when counting keys (0: all)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: weir features describe <view>[@version] [-offline] [-redis-scan N] [-config weir.yaml]")
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	name, asked, _ := strings.Cut(pos[0], "@")
	v, ok := cfg.View(name)
	if !ok {
		return fmt.Errorf("no view %q in %s (weir features list shows them)", name, cfg.Path())
	}
	current := v.Version()
	log := c.logger(io.Discard)
	env, err := roles.NewEnv(cfg, log, "cli")
	if err != nil {
		return err
	}
	defer env.Close()
	// The view catalog: when each version was defined, and the definitions
	// weir.yaml no longer has.
	var cat *catalog.Catalog
	var catErr error
	if !*noStores || (asked != "" && asked != current) {
		cat, catErr = env.Catalog(ctx)
	}
	shown := v
	if asked != "" && asked != current {
		if catErr != nil {
			return fmt.Errorf("view %s version %s is not the one in %s (%s), and the view catalog %s is unreachable: %w", name, asked, cfg.Path(), current, cfg.ViewsTopic(), catErr)
		}
		old, ok := cat.Get(name, asked)
		if !ok {
			return fmt.Errorf("view %s has no version %s: %s has %s, and the view catalog %s records %s", name, asked, cfg.Path(), current, cfg.ViewsTopic(), versionList(cat.Versions(name)))
		}
		shown = &old
	}
	src, _ := cfg.Source(v.Source)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "view\t%s\n", v.Name)
	if shown != v {
		fmt.Fprintf(tw, "version\t%s (a previous definition, from the view catalog; %s has %s)\n", asked, cfg.Path(), current)
		v = shown
	} else {
		fmt.Fprintf(tw, "version\t%s (derived from the definition: name, source, entity, kind and features)\n", current)
	}
	fmt.Fprintf(tw, "source\t%s (topic %s)\n", v.Source, src.Topic)
	fmt.Fprintf(tw, "entity\t%s (key %s)\n", v.Entity, dash(cfg.EntityKey(v.Entity)))
	fmt.Fprintf(tw, "kind\t%s, lateness %s\n", kind(v), v.Lateness.D())
	fmt.Fprintf(tw, "ttl\t%s\n", v.TTL.D())
	fmt.Fprintf(tw, "features topic\t%s\n", cfg.FeaturesTopic(v.Name))
	fmt.Fprintf(tw, "redis key\t%s\n", redisKeyPattern(cfg, v, v.Version()))
	fmt.Fprintf(tw, "clickhouse table\t%s\n", clickHouseTable(cfg, v.Name, v.Version()))
	tw.Flush()
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "FEATURE\tAGG\tFIELD\tWINDOW\tFILTER\tPARAMS")
	for _, f := range v.Features {
		featureLine(tw, "", v, f)
	}
	tw.Flush()
	if *noStores {
		return nil
	}

	// The versions stored side by side: ClickHouse tables and Redis keys.
	// Either store may be unreachable; what the other says still shows.
	type stored struct {
		off       *offline.StoredVersion
		redisKeys int64
		inRedis   bool
		defined   *catalog.Entry
	}
	versions := map[string]*stored{current: {}}
	var notes []string
	if catErr != nil {
		notes = append(notes, "view catalog "+cfg.ViewsTopic()+": "+catErr.Error())
	}
	for _, e := range cat.Versions(name) {
		if versions[e.Version] == nil {
			versions[e.Version] = &stored{}
		}
		versions[e.Version].defined = &e
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if conn, err := env.ClickHouse(cctx); err != nil {
		notes = append(notes, "clickhouse: "+err.Error())
	} else {
		defer conn.Close()
		off, err := offline.New(conn, cfg.ClickHouse.Database, nil)
		var svs []offline.StoredVersion
		if err == nil {
			svs, err = off.StoredVersions(cctx, v.Name)
		}
		if err != nil {
			notes = append(notes, "clickhouse: "+err.Error())
		}
		for i := range svs {
			if versions[svs[i].Version] == nil {
				versions[svs[i].Version] = &stored{}
			}
			versions[svs[i].Version].off = &svs[i]
		}
	}
	complete := true
	if rdb, err := env.Redis(cctx); err != nil {
		notes = append(notes, "redis: "+err.Error())
	} else {
		defer rdb.Close()
		kc, err := online.New(rdb, cfg.Redis.KeyPrefix, cfg.Views).CountKeys(cctx, v.Name, *budget)
		if err != nil {
			notes = append(notes, "redis: "+err.Error())
		}
		complete = kc.Complete
		for ver, n := range kc.Versions {
			if versions[ver] == nil {
				versions[ver] = &stored{}
			}
			versions[ver].redisKeys, versions[ver].inRedis = n, true
		}
	}
	fmt.Fprintln(stdout)
	tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STORED VERSION\tCURRENT\tDEFINED\tCLICKHOUSE ROWS\tENTITIES\tEVENT TIMES\tKNOWN UNTIL\tREDIS KEYS\tCOLUMNS")
	order := slices.SortedFunc(maps.Keys(versions), func(a, b string) int {
		if (a == current) != (b == current) { // the current version first
			if a == current {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	for _, ver := range order {
		s := versions[ver]
		cur := "no"
		if ver == current {
			cur = "yes"
		}
		rows, ents, times, known, cols := "-", "-", "-", "-", "-"
		if o := s.off; o != nil {
			rows, ents, cols = fmt.Sprint(o.Rows), fmt.Sprint(o.Entities), strings.Join(o.Columns, ",")
			if o.Rows > 0 {
				times = msTime(o.MinEventTime) + " .. " + msTime(o.MaxEventTime)
				known = msTime(o.MaxKnownTime)
			}
		}
		keys := "-"
		if s.inRedis {
			keys = fmt.Sprint(s.redisKeys)
			if !complete {
				keys = ">=" + keys
			}
		}
		defined := "not in catalog"
		if d := s.defined; d != nil {
			defined = d.RegisteredAt.UTC().Format(time.RFC3339) + " by " + d.By
		} else if catErr != nil {
			defined = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", ver, cur, defined, rows, ents, times, known, keys, cols)
	}
	tw.Flush()
	for _, n := range notes {
		fmt.Fprintln(stdout, "unreachable, not shown:", n)
	}
	return nil
}

// versionList names recorded versions, e.g. "v1 (2026-12-01), v2 (...)".
func versionList(es []catalog.Entry) string {
	if len(es) == 0 {
		return "none"
	}
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Version + " (" + e.RegisteredAt.UTC().Format(time.RFC3339) + ")"
	}
	return strings.Join(out, ", ")
}

func msTime(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339) }

func featuresGet(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("features get", flag.ContinueOnError)
	var c common
	c.register(fs)
	var views viewFlag
	fs.Var(&views, "view", "only this view, as name or name@version (repeatable; default: every view at its current version)")
	entities, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(entities) == 0 {
		return errors.New("usage: weir features get <entity>... [-view name[@version]]... [-config weir.yaml]: which entity?")
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	vs, versions, err := selectViews(cfg, views)
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
	var keys []online.Key
	for _, e := range entities {
		for i, v := range vs {
			keys = append(keys, online.Key{View: v.Name, Version: versions[i], Entity: e})
		}
	}
	rows, found, err := store.GetMany(ctx, keys)
	if err != nil {
		return err
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintln(tw, "ENTITY\tVIEW\tFEATURE\tVALUE\tSTATUS\tEVENT TIME\tAGE")
	for i, k := range keys {
		v := vs[i%len(vs)]
		names := make([]string, 0, len(v.Features))
		if k.Version == v.Version() {
			for _, f := range v.Features {
				names = append(names, f.Name)
			}
		} else if found[i] { // another version's features: what its row holds
			names = slices.Sorted(maps.Keys(rows[i].Values))
		}
		if !found[i] {
			if len(names) == 0 { // another version's features are unknown without its row
				names = []string{"-"}
			}
			for _, n := range names {
				fmt.Fprintf(tw, "%s\t%s@%s\t%s\t-\tmissing\t-\t-\n", k.Entity, k.View, k.Version, n)
			}
			continue
		}
		r := rows[i]
		et := time.UnixMilli(r.EventTime)
		age := now.Sub(et)
		status, ageText := "present", age.Round(time.Millisecond).String()
		switch {
		case age < 0: // a synthetic stream may run ahead of the wall clock
			ageText = "ahead by " + (-age).Round(time.Millisecond).String()
		case age > v.TTL.D():
			status = "expired" // older than the view's TTL: not to be served
		}
		for _, n := range names {
			val := "-"
			if x, ok := r.Values[n]; ok {
				val = fmt.Sprintf("%g", x)
			}
			fmt.Fprintf(tw, "%s\t%s@%s\t%s\t%s\t%s\t%s\t%s\n", k.Entity, k.View, k.Version, n, val, status, et.UTC().Format(time.RFC3339Nano), ageText)
		}
	}
	return nil
}

// featuresInherit starts the ClickHouse table of a view's current version
// from an earlier version's history (offline.Inherit): for a definition
// that only added features, run before the new version's materializer
// creates its table.
func featuresInherit(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("features inherit", flag.ContinueOnError)
	var c common
	c.register(fs)
	from := fs.String("from", "", "the earlier version to inherit from (default: the newest version the view catalog records before weir.yaml's)")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("usage: weir features inherit <view> [-from version] [-config weir.yaml]")
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	v, ok := cfg.View(pos[0])
	if !ok {
		return fmt.Errorf("no view %q in %s (weir features list shows them)", pos[0], cfg.Path())
	}
	env, err := roles.NewEnv(cfg, c.logger(os.Stderr), "cli")
	if err != nil {
		return err
	}
	defer env.Close()
	cat, err := env.Catalog(ctx)
	if err != nil {
		return fmt.Errorf("the earlier definition comes from the view catalog %s: %w", cfg.ViewsTopic(), err)
	}
	var old config.View
	if *from == "" {
		found := false
		es := cat.Versions(v.Name)
		for i := len(es) - 1; i >= 0 && !found; i-- {
			if es[i].Version != v.Version() {
				old, found = es[i].View, true
			}
		}
		if !found {
			return fmt.Errorf("-from: the view catalog %s records no version of %s but weir.yaml's %s: name one", cfg.ViewsTopic(), v.Name, v.Version())
		}
	} else if old, ok = cat.Get(v.Name, *from); !ok {
		return fmt.Errorf("-from %s: the view catalog %s does not record it; it has %s", *from, cfg.ViewsTopic(), versionList(cat.Versions(v.Name)))
	}
	conn, err := env.ClickHouse(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	store, err := offline.New(conn, cfg.ClickHouse.Database, cfg.Views)
	if err != nil {
		return err
	}
	began := time.Now()
	if err := store.Inherit(ctx, old); err != nil {
		return err
	}
	var added []string
	for _, f := range v.Features {
		if _, had := old.Feature(f.Name); !had {
			added = append(added, f.Name)
		}
	}
	fmt.Fprintf(stdout, "%s@%s inherits the history of %s@%s: table %s from %s (parts hard-linked), added %s (NaN before now), %s\n",
		v.Name, v.Version(), v.Name, old.Version(), clickHouseTable(cfg, v.Name, v.Version()), clickHouseTable(cfg, v.Name, old.Version()),
		strings.Join(added, ", "), time.Since(began).Round(time.Millisecond))
	return nil
}

func featuresRebuild(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("features rebuild-online", flag.ContinueOnError)
	var c common
	c.register(fs)
	var views viewFlag
	fs.Var(&views, "view", "only this view (repeatable; default: every view); always its current version")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	vs, versions, err := selectViews(cfg, views)
	if err != nil {
		return err
	}
	for i, v := range vs {
		if versions[i] != v.Version() {
			return fmt.Errorf("-view %s@%s: the features topic carries rows of every version, but only the current one (%s) can be rebuilt", v.Name, versions[i], v.Version())
		}
	}
	log := c.logger(os.Stderr)
	env, err := roles.NewEnv(cfg, log, "cli")
	if err != nil {
		return err
	}
	defer env.Close()
	rdb, err := env.Redis(ctx)
	if err != nil {
		return err
	}
	defer rdb.Close()
	store := online.New(rdb, cfg.Redis.KeyPrefix, cfg.Views)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintln(tw, "VIEW\tTOPIC\tPARTITIONS\tRECORDS\tWRITTEN\tSKIPPED\tELAPSED")
	for _, v := range vs {
		st, err := rebuildView(ctx, env, log, v, store)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s@%s\t%s\t%d\t%d\t%d\t%d\t%s\n", v.Name, v.Version(), cfg.FeaturesTopic(v.Name), st.Partitions, st.Records, st.Written, st.Skipped, st.Elapsed.Round(time.Millisecond))
	}
	return nil
}

func rebuildView(ctx context.Context, env *roles.Env, log *slog.Logger, v *config.View, store *online.Store) (materialize.RebuildStats, error) {
	topic := env.Cfg.FeaturesTopic(v.Name)
	serde, err := env.Serde(ctx, topic, schemas.FeatureRowSchema)
	if err != nil {
		return materialize.RebuildStats{}, err
	}
	return materialize.Rebuild(ctx, materialize.Config{Name: "online." + v.Name, Opts: env.Kafka, Topic: topic}, v, serde, store, log)
}

func featuresVerify(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("features verify", flag.ContinueOnError)
	var c common
	c.register(fs)
	var views viewFlag
	fs.Var(&views, "view", "only this view (repeatable; default: every view); always its current version")
	sample := fs.Int("sample", 100, "entities per view sampled from each store")
	seed := fs.Uint64("seed", 0, "picks the ClickHouse sample (0: a random seed, printed)")
	recheck := fs.Duration("recheck", 2*time.Second, "read a mismatched entity again after this pause before reporting it (0: report the first reading)")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := c.load()
	if err != nil {
		return err
	}
	vs, _, err := selectViews(cfg, views)
	if err != nil {
		return err
	}
	if *seed == 0 {
		*seed = rand.Uint64()
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
	conn, err := env.ClickHouse(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	off, err := offline.New(conn, cfg.ClickHouse.Database, cfg.Views)
	if err != nil {
		return err
	}
	vc := verify.Config{Sample: *sample, Seed: *seed, Recheck: *recheck}
	for _, v := range vs {
		vc.Views = append(vc.Views, *v)
	}
	rep, err := verify.Run(ctx, vc, online.New(rdb, cfg.Redis.KeyPrefix, cfg.Views), off)
	if err != nil {
		return err
	}
	printVerify(stdout, rep, *seed)
	if n := rep.Mismatches(); n > 0 {
		return fmt.Errorf("verify: %d entities differ between Redis and ClickHouse", n)
	}
	return nil
}

func printVerify(w io.Writer, rep *verify.Report, seed uint64) {
	fmt.Fprintf(w, "seed %d\n", seed)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	kinds := []verify.Kind{verify.Match, verify.Expired, verify.MissingOnline, verify.MissingOffline, verify.OnlineBehind, verify.OnlineAhead, verify.ValuesDiffer}
	fmt.Fprint(tw, "VIEW\tCHECKED")
	for _, k := range kinds {
		fmt.Fprint(tw, "\t", strings.ToUpper(string(k)))
	}
	fmt.Fprintln(tw)
	for _, v := range rep.Views {
		fmt.Fprintf(tw, "%s@%s\t%d", v.View, v.Version, v.Checked())
		for _, k := range kinds {
			fmt.Fprintf(tw, "\t%d", v.Counts[k])
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	if rep.Mismatches() == 0 {
		fmt.Fprintln(w, "ok: Redis holds the newest ClickHouse row of every sampled entity")
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VIEW\tENTITY\tMISMATCH\tFIELD\tREDIS\tCLICKHOUSE")
	for _, v := range rep.Views {
		for _, m := range v.Mismatches {
			if len(m.Diffs) == 0 {
				fmt.Fprintf(tw, "%s@%s\t%s\t%s\t-\t%s\t%s\n", m.View, m.Version, m.Entity, m.Kind, rowText(m.Online), rowText(m.Offline))
				continue
			}
			for _, d := range m.Diffs {
				fmt.Fprintf(tw, "%s@%s\t%s\t%s\t%s\t%s\t%s\n", m.View, m.Version, m.Entity, m.Kind, d.Field, d.Online, d.Offline)
			}
		}
	}
	tw.Flush()
}

// rowText is a row in one line: its version and values.
func rowText(r *featurestore.Row) string {
	if r == nil {
		return "(none)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "event_time=%s offset=%d", msTime(r.EventTime), r.Offset)
	if r.Revises >= 0 {
		fmt.Fprintf(&b, " revises=%d", r.Revises)
	}
	if r.WindowStart != 0 || r.WindowEnd != 0 {
		fmt.Fprintf(&b, " window=[%s,%s)", msTime(r.WindowStart), msTime(r.WindowEnd))
	}
	for _, n := range slices.Sorted(maps.Keys(r.Values)) {
		fmt.Fprintf(&b, " %s=%g", n, r.Values[n])
	}
	return b.String()
}
