package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/featurestore/catalog"
	"github.com/weirhq/weir/featurestore/offline"
	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/schemas/registry"
)

// writeConfig writes the demo config with the replacements (old -> new)
// and returns its path.
func writeConfig(t *testing.T, repl map[string]string) string {
	t.Helper()
	demo, err := os.ReadFile("../../deploy/demo/weir.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(demo)
	for old, new := range repl {
		if !strings.Contains(cfg, old) {
			t.Fatalf("demo config lacks %q", old)
		}
		cfg = strings.Replace(cfg, old, new, 1)
	}
	path := filepath.Join(t.TempDir(), "weir.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func weir(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := run(context.Background(), args, &out)
	return out.String(), err
}

func mustContain(t *testing.T, what, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, out)
		}
	}
}

// TestFeaturesDefinitions lists and describes the demo's view from the
// config alone: versions, features and where each version lives.
func TestFeaturesDefinitions(t *testing.T) {
	path := writeConfig(t, map[string]string{})
	cfg, err := config.Load(path, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	v, _ := cfg.View("card_activity")
	ver := v.Version()
	out, err := weir(t, "features", "list", "-offline", "-config", path)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "weir features list", out, "card_activity", ver, "card", "payments", "sliding", "24h0m0s", "previous versions not shown (-offline)",
		"weir:{<card>}:card_activity:"+ver, "weir_demo.features_card_activity_"+ver,
		"amount_sum_5m", "sum", "amount", "5m0s")
	out, err = weir(t, "features", "describe", "card_activity", "-offline", "-config", path)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "weir features describe -offline", out, "version", ver, "payments.transactions", "key card_id",
		"weir.features.card_activity", "lateness 1m0s", "txn_count_1h")
	if _, err := weir(t, "features", "describe", "nope", "-offline", "-config", path); err == nil || !strings.Contains(err.Error(), `no view "nope"`) {
		t.Errorf("describe of an unknown view: %v", err)
	}
	if _, err := weir(t, "features", "frobnicate"); err == nil || !strings.Contains(err.Error(), "rebuild-online") {
		t.Errorf("unknown subcommand: %v", err)
	}
}

// TestFeaturesStores runs rebuild-online, verify, get and describe against
// real Kafka, Redis and ClickHouse: rows on the view's features topic and
// in ClickHouse, Redis filled from the topic, verify clean, then a
// corrupted Redis value that verify reports with both values and a
// non-zero exit. An older version's table and keys show beside the current
// one in describe.
func TestFeaturesStores(t *testing.T) {
	seeds, kind := testenv.Kafka(t)
	t.Logf("kafka: %s", kind)
	rdb, prefix := testenv.Redis(t)
	conn, db := testenv.ClickHouse(t)
	srv, err := registry.Open("")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	topicPrefix := testenv.Name("weir")
	t.Setenv("WEIR_KAFKA_BROKERS", strings.Join(seeds, ","))
	t.Setenv("WEIR_SCHEMA_REGISTRY_URL", hs.URL)
	t.Setenv("WEIR_REDIS_ADDR", testenv.RedisAddr(t))
	t.Setenv("WEIR_CLICKHOUSE_ADDR", testenv.ClickHouseAddr(t))
	path := writeConfig(t, map[string]string{
		"key_prefix: weir":    "key_prefix: " + prefix,
		"database: weir_demo": "database: " + db,
		"  partitions: 4":     "  prefix: " + topicPrefix + "\n  partitions: 4",
		"data_dir: .weir/dev": "data_dir: " + filepath.Join(t.TempDir(), "data"),
	})
	cfg, err := config.Load(path, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	v, _ := cfg.View("card_activity")
	ver := v.Version()
	topic := cfg.FeaturesTopic(v.Name)

	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if resp, err := kadm.NewClient(cl).CreateTopics(ctx, 4, 1, nil, topic); err != nil || resp.Error() != nil {
		t.Fatalf("create %s: %v %v", topic, err, resp.Error())
	}
	reg, err := schemas.NewSRClient(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := schemas.NewSerde(ctx, reg, schemas.Subject(topic), schemas.MustParse(schemas.FeatureRowSchema))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixMilli()
	var rows []schemas.FeatureRow
	var recs []*kgo.Record
	for e := range 30 {
		for k := range 4 {
			r := schemas.FeatureRow{Entity: fmt.Sprintf("card-%03d", e), View: v.Name, ViewVersion: ver, EventTime: now - int64(10-k)*1000,
				KnownTime: now, SourceTopic: "payments.transactions", SourceOffset: int64(10*e + k), RevisesOffset: -1, EventID: "ev"}
			if e == 29 { // a card last seen two days ago: expired for serving
				r.EventTime -= 48 * 3600_000
			}
			for j, f := range v.Features {
				r.Values = append(r.Values, schemas.FeatureValue{Name: f.Name, Value: float64(100*e + 10*k + j)})
			}
			b, err := sd.Encode(&r)
			if err != nil {
				t.Fatal(err)
			}
			rows = append(rows, r)
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(r.Entity), Value: b})
		}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	off, err := offline.New(conn, db, cfg.Views)
	if err != nil {
		t.Fatal(err)
	}
	if err := off.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if err := off.Write(ctx, rows); err != nil {
		t.Fatal(err)
	}

	out, err := weir(t, "features", "rebuild-online", "-config", path)
	if err != nil {
		t.Fatalf("rebuild-online: %v\n%s", err, out)
	}
	mustContain(t, "weir features rebuild-online", out, "card_activity@"+ver, topic, fmt.Sprintf("  %d  ", len(rows)))
	out, err = weir(t, "features", "verify", "-config", path, "-recheck", "0")
	if err != nil {
		t.Fatalf("verify after the rebuild: %v\n%s", err, out)
	}
	mustContain(t, "weir features verify", out, "ok: Redis holds the newest ClickHouse row")

	out, err = weir(t, "features", "get", "card-001", "nobody", "-view", "card_activity", "card-029", "-config", path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"card-001  card_activity@" + ver + "  amount_last  135  present", "nobody  card_activity@" + ver, "missing", "card-029", "expired"} {
		if !strings.Contains(strings.Join(strings.Fields(out), "  "), strings.Join(strings.Fields(want), "  ")) {
			t.Errorf("weir features get lacks %q:\n%s", want, out)
		}
	}

	// A corrupted value: verify names it, with both values, and fails.
	key := online.RedisKey(prefix, online.Key{View: v.Name, Version: ver, Entity: "card-007"})
	if err := rdb.HSet(ctx, key, "amount_sum_5m", "-5").Err(); err != nil {
		t.Fatal(err)
	}
	out, err = weir(t, "features", "verify", "-config", path, "-recheck", "0", "-sample", "1000")
	if err == nil || !strings.Contains(err.Error(), "1 entities differ") {
		t.Fatalf("verify of a corrupted value: err %v\n%s", err, out)
	}
	mustContain(t, "weir features verify", out, "card-007", "values_differ", "amount_sum_5m", "-5", "731")
	t.Logf("weir features verify, one value corrupted:\n%s", out)

	// An older definition's table and keys show beside the current one.
	old := *v
	old.Features = old.Features[:2]
	oldOff, err := offline.New(conn, db, []config.View{old})
	if err != nil {
		t.Fatal(err)
	}
	if err := oldOff.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	oldRow := rows[0]
	oldRow.ViewVersion, oldRow.Values = old.Version(), oldRow.Values[:2]
	if err := oldOff.Write(ctx, []schemas.FeatureRow{oldRow}); err != nil {
		t.Fatal(err)
	}
	if err := online.New(rdb, prefix, cfg.Views).Write(ctx, []schemas.FeatureRow{oldRow}); err != nil {
		t.Fatal(err)
	}
	// Both definitions in the view catalog, as the processors of each
	// weir.yaml record them.
	if resp, err := kadm.NewClient(cl).CreateTopics(ctx, 1, 1, map[string]*string{"cleanup.policy": ptr("compact")}, cfg.ViewsTopic()); err != nil || resp.Error() != nil {
		t.Fatalf("create %s: %v %v", cfg.ViewsTopic(), err, resp.Error())
	}
	defined := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for i, d := range []config.View{old, *v} {
		if _, err := catalog.Publish(ctx, []kgo.Opt{kgo.SeedBrokers(seeds...)}, cfg.ViewsTopic(), []config.View{d}, "test", defined.Add(time.Duration(i)*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	out, err = weir(t, "features", "list", "-config", path)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "weir features list with the catalog", strings.Join(strings.Fields(out), " "),
		"card_activity "+ver+" yes card payments", "card_activity "+old.Version()+" no card payments sliding 24h0m0s 2 ")
	out, err = weir(t, "features", "describe", "card_activity@"+old.Version(), "-offline", "-config", path)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "weir features describe of the previous version", out, old.Version()+" (a previous definition", "features_card_activity_"+old.Version(), "amount_sum_5m")
	if strings.Contains(out, "txn_count_1h") {
		t.Errorf("describe of the previous version shows a feature it did not have:\n%s", out)
	}
	if _, err := weir(t, "features", "describe", "card_activity@vnothere", "-config", path); err == nil || !strings.Contains(err.Error(), "no version vnothere") || !strings.Contains(err.Error(), old.Version()) {
		t.Errorf("describe of an unknown version: %v", err)
	}
	out, err = weir(t, "features", "describe", "card_activity", "-config", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("weir features describe:\n%s", out)
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines[f[0]] = strings.Join(f, " ")
		}
	}
	if l := lines[ver]; !strings.HasPrefix(l, ver+" yes 2026-12-01T01:00:00Z by test 120 30 ") || !strings.Contains(l, " 30 txn_count_5m,amount_sum_5m,txn_count_1h") {
		t.Errorf("describe's current version line %q:\n%s", l, out)
	}
	if l := lines[old.Version()]; !strings.HasPrefix(l, old.Version()+" no 2026-12-01T00:00:00Z by test 1 1 ") || !strings.HasSuffix(l, " 1 txn_count_5m,amount_sum_5m") {
		t.Errorf("describe's older version line %q:\n%s", l, out)
	}
	if strings.Contains(out, "unreachable") {
		t.Errorf("describe found a store unreachable:\n%s", out)
	}
}

func ptr(s string) *string { return &s }

// TestFeaturesInherit adds a feature to card_activity: `weir features
// inherit` gives the new version's ClickHouse table the old version's rows
// (the old definition from the view catalog), the added feature NaN in
// them; a second run is refused, and so is a version the catalog lacks.
func TestFeaturesInherit(t *testing.T) {
	seeds := testenv.RealKafka(t)
	conn, db := testenv.ClickHouse(t)
	topicPrefix := testenv.Name("weir")
	t.Setenv("WEIR_KAFKA_BROKERS", strings.Join(seeds, ","))
	t.Setenv("WEIR_CLICKHOUSE_ADDR", testenv.ClickHouseAddr(t))
	base := map[string]string{
		"database: weir_demo": "database: " + db,
		"  partitions: 4":     "  prefix: " + topicPrefix + "\n  partitions: 4",
	}
	oldPath := writeConfig(t, base)
	base["      - {name: amount_last,   agg: last,  field: amount}"] = "      - {name: amount_last,   agg: last,  field: amount}\n      - {name: amount_min_1h, agg: min,   field: amount, window: 1h}"
	newPath := writeConfig(t, base)
	oldCfg, err := config.Load(oldPath, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	newCfg, err := config.Load(newPath, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	old, _ := oldCfg.View("card_activity")
	cur, _ := newCfg.View("card_activity")
	if old.Version() == cur.Version() {
		t.Fatal("adding a feature did not change the version")
	}

	// The old version's history.
	store, err := offline.New(conn, db, oldCfg.Views)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var rows []schemas.FeatureRow
	for i := range 3 {
		r := schemas.FeatureRow{Entity: "card-1", View: old.Name, ViewVersion: old.Version(), EventTime: int64(1000 * (i + 1)), KnownTime: 5000,
			SourceTopic: "payments.transactions", SourceOffset: int64(i), RevisesOffset: -1}
		for j, f := range old.Features {
			r.Values = append(r.Values, schemas.FeatureValue{Name: f.Name, Value: float64(10*i + j)})
		}
		rows = append(rows, r)
	}
	if err := store.Write(ctx, rows); err != nil {
		t.Fatal(err)
	}

	if _, err := weir(t, "features", "inherit", "card_activity", "-config", newPath); err == nil || !strings.Contains(err.Error(), "records no version") {
		t.Fatalf("inherit with an empty catalog: %v, want an error saying so", err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if resp, err := kadm.NewClient(cl).CreateTopics(ctx, 1, 1, map[string]*string{"cleanup.policy": ptr("compact")}, newCfg.ViewsTopic()); err != nil || resp.Error() != nil {
		t.Fatalf("create %s: %v %v", newCfg.ViewsTopic(), err, resp.Error())
	}
	if _, err := catalog.Publish(ctx, []kgo.Opt{kgo.SeedBrokers(seeds...)}, newCfg.ViewsTopic(), []config.View{*old}, "test", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := weir(t, "features", "inherit", "card_activity", "-from", "vnothere", "-config", newPath); err == nil || !strings.Contains(err.Error(), "does not record it") {
		t.Errorf("inherit -from an unknown version: %v", err)
	}
	out, err := weir(t, "features", "inherit", "card_activity", "-config", newPath)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, "weir features inherit", out, "card_activity@"+cur.Version()+" inherits the history of card_activity@"+old.Version(), "added amount_min_1h")

	var n, nans uint64
	var lastSum float64
	q := fmt.Sprintf("SELECT count(), countIf(isNaN(amount_min_1h)), sum(amount_last) FROM %s.%s", db, offline.TableName(cur.Name, cur.Version()))
	if err := conn.QueryRow(ctx, q).Scan(&n, &nans, &lastSum); err != nil {
		t.Fatal(err)
	}
	if n != 3 || nans != 3 || lastSum != 5+15+25 {
		t.Errorf("the new version's table: %d rows, %d NaN amount_min_1h, amount_last sum %v; want 3, 3, 45", n, nans, lastSum)
	}
	if _, err := weir(t, "features", "inherit", "card_activity", "-config", newPath); err == nil {
		t.Error("a second inherit succeeded; want it refused (the new table exists)")
	}
}
