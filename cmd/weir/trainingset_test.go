package main

import (
	"bytes"
	"context"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/featurestore/catalog"
	"github.com/weirhq/weir/featurestore/offline"
	"github.com/weirhq/weir/featurestore/trainingset"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
)

// TestTrainingSetCommand runs weir training-set on the demo config against
// real ClickHouse: a CSV spine to Parquet and to a ClickHouse table, as of
// event time and as known at a time, and its flag errors. The join itself
// is tested in featurestore/trainingset.
func TestTrainingSetCommand(t *testing.T) {
	conn, db := testenv.ClickHouse(t)
	demo, err := os.ReadFile("../../deploy/demo/weir.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	yaml := strings.Replace(string(demo), "database: weir_demo", "database: "+db, 1)
	yaml = strings.Replace(yaml, "addr: 127.0.0.1:19000", "addr: "+testenv.ClickHouseAddr(t), 1)
	seeds := testenv.RealKafka(t)
	t.Setenv("WEIR_KAFKA_BROKERS", strings.Join(seeds, ","))
	yaml = strings.Replace(yaml, "  partitions: 4", "  prefix: "+testenv.Name("weir")+"\n  partitions: 4", 1)
	cfgPath := filepath.Join(dir, "weir.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath, os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	store, err := offline.New(conn, db, cfg.Views)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	v := cfg.Views[0]
	row := func(et, known, off, revises int64, last float64) schemas.FeatureRow {
		r := schemas.FeatureRow{Entity: "c1", View: v.Name, ViewVersion: v.Version(), EventTime: et, KnownTime: known,
			SourceTopic: "payments.transactions", SourceOffset: off, RevisesOffset: revises}
		for _, f := range v.Features {
			r.Values = append(r.Values, schemas.FeatureValue{Name: f.Name, Value: 1})
		}
		r.Values[len(r.Values)-1].Value = last // amount_last
		return r
	}
	// c1's row at 1000, corrected (known at 9000), and its row at 2000.
	if err := store.Write(ctx, []schemas.FeatureRow{row(1000, 1100, 1, -1, 10), row(1000, 9000, 5, 1, 11), row(2000, 2100, 2, -1, 20)}); err != nil {
		t.Fatal(err)
	}
	spine := filepath.Join(dir, "spine.csv")
	if err := os.WriteFile(spine, []byte("card_id,event_time_ms,label\nc1,1500,1\nc1,2500,0\nc2,2500,1\nc1,500,0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cli := run // the command line, before run names this test's shorthand
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(ctx, append([]string{"training-set", "-config", cfgPath, "-spine", spine, "-features", "card_activity.amount_last", "-timestamp", "event_time_ms", "-progress", "never"}, args...), &out)
		return out.String(), err
	}
	for _, c := range []struct {
		name string
		args []string
		want []float64 // amount_last per spine row; NaN for null
	}{
		{"event_time", nil, []float64{11, 20, math.NaN(), math.NaN()}},
		{"known_at", []string{"-known-at", "5000"}, []float64{10, 20, math.NaN(), math.NaN()}},
		{"delay", []string{"-view-delay", "card_activity=600ms"}, []float64{math.NaN(), 11, math.NaN(), math.NaN()}},
		{"offsets", []string{"-known-at-offsets", "payments.transactions/0=2"}, []float64{10, 10, math.NaN(), math.NaN()}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, c.name+".parquet")
			stdout, err := run(append(c.args, "-out", out)...)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(stdout, "wrote "+out+": 4 rows, 4 columns") {
				t.Errorf("stdout: %s", stdout)
			}
			s, err := trainingset.OpenParquet(out)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var ch trainingset.Chunk
			if err := s.Next(&ch, 10); err != nil {
				t.Fatal(err)
			}
			got := ch.Cols[3]
			for i, w := range c.want {
				if math.IsNaN(w) != got.IsNull(i) || !math.IsNaN(w) && got.Floats[i] != w {
					t.Errorf("row %d: %v (null %v), want %v", i, got.Floats[i], got.IsNull(i), w)
				}
			}
		})
	}
	t.Run("clickhouse", func(t *testing.T) {
		if _, err := run("-out", "clickhouse:ts_cli"); err != nil {
			t.Fatal(err)
		}
		if _, err := run("-out", "clickhouse:ts_cli"); err == nil || !strings.Contains(err.Error(), "exists") {
			t.Errorf("an existing table: %v", err)
		}
		if _, err := run("-out", "clickhouse:ts_cli", "-replace", "-known-at", "5000"); err != nil {
			t.Fatal(err)
		}
		d, err := trainingset.ReadDescription(ctx, conn, db, "ts_cli")
		if err != nil {
			t.Fatal(err)
		}
		if d.Rows != 4 || d.Cutoff.KnownAt != 5000 || d.Spine.Source != "csv" || d.Views[0].EntityColumn != "card_id" {
			t.Errorf("description %+v", d)
		}
	})
	// An older definition of the view, recorded in the view catalog, with
	// its own table: weir.yaml no longer has it, the training set still
	// names it, and reads only its table.
	t.Run("previous_version", func(t *testing.T) {
		old := v
		old.Features = slices.Clone(v.Features)
		last := old.Features[len(old.Features)-1]
		old.Features = []config.Feature{old.Features[0], last}
		oldStore, err := offline.New(conn, db, []config.View{old})
		if err != nil {
			t.Fatal(err)
		}
		if err := oldStore.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
		r := schemas.FeatureRow{Entity: "c1", View: v.Name, ViewVersion: old.Version(), EventTime: 1200, KnownTime: 1300,
			SourceTopic: "payments.transactions", SourceOffset: 7, RevisesOffset: -1,
			Values: []schemas.FeatureValue{{Name: old.Features[0].Name, Value: 3}, {Name: last.Name, Value: 77}}}
		if err := oldStore.Write(ctx, []schemas.FeatureRow{r}); err != nil {
			t.Fatal(err)
		}
		ref := v.Name + ":" + old.Version() + "." + last.Name
		args := []string{"training-set", "-config", cfgPath, "-spine", spine, "-features", ref, "-timestamp", "event_time_ms", "-progress", "never", "-replace", "-out", filepath.Join(dir, "old.parquet")}
		if err := cli(ctx, args, io.Discard); err == nil || !strings.Contains(err.Error(), "no version "+old.Version()) {
			t.Fatalf("a version the catalog does not record: %v, want an error naming it", err)
		}
		opts := []kgo.Opt{kgo.SeedBrokers(seeds...)}
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": ptr("compact")}, cfg.ViewsTopic()); err != nil {
			t.Fatal(err)
		}
		if _, err := catalog.Publish(ctx, opts, cfg.ViewsTopic(), []config.View{old}, "test", time.Now()); err != nil {
			t.Fatal(err)
		}
		out := args[len(args)-1]
		if err := cli(ctx, args, io.Discard); err != nil {
			t.Fatal(err)
		}
		sp, err := trainingset.OpenParquet(out)
		if err != nil {
			t.Fatal(err)
		}
		defer sp.Close()
		var ch trainingset.Chunk
		if err := sp.Next(&ch, 10); err != nil {
			t.Fatal(err)
		}
		got := ch.Cols[3]
		// c1 at 1500 and 2500 sees the old version's row at 1200 (77), never
		// the current version's 11 and 20; c2 and c1 at 500 see nothing.
		for i, w := range []float64{77, 77, math.NaN(), math.NaN()} {
			if math.IsNaN(w) != got.IsNull(i) || !math.IsNaN(w) && got.Floats[i] != w {
				t.Errorf("row %d: %v (null %v), want %v", i, got.Floats[i], got.IsNull(i), w)
			}
		}
	})
	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"-out", filepath.Join(dir, "x.parquet"), "-features", "nope.x"}, `no view "nope"`},
		{[]string{"-out", filepath.Join(dir, "x.parquet"), "-known-at", "yesterday"}, "-known-at"},
		{[]string{"-out", filepath.Join(dir, "x.parquet"), "-view-delay", "other=1s"}, "not requested"},
		{[]string{"-out", filepath.Join(dir, "x.json")}, "want a .csv or .parquet file"},
	} {
		if _, err := run(bad.args...); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%v: %v, want an error with %q", bad.args, err, bad.want)
		}
	}
}
