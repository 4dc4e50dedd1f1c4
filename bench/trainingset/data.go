package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/parquet-go/parquet-go"

	"github.com/weirhq/weir/featurestore/offline"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
)

// genMeta is the part of gen.py's meta.json the benchmark uses.
type genMeta struct {
	Views []struct {
		Name         string   `json:"name"`
		EntityColumn string   `json:"entity_column"`
		TTLMs        int64    `json:"ttl_ms"`
		DelayMs      int64    `json:"delay_ms"`
		Features     []string `json:"features"`
		Rows         int      `json:"rows"`
	} `json:"views"`
	SpineRows int `json:"spine_rows"`
}

// viewInfo is what feast_ts.py reads from views.json.
type viewInfo struct {
	Name         string   `json:"name"`
	EntityColumn string   `json:"entity_column"`
	TTLMs        int64    `json:"ttl_ms"`
	DelayMs      int64    `json:"delay_ms"`
	Features     []string `json:"features"`
}

// genRow is a row of gen.py's feature files (the offline table's columns).
type genRow struct {
	Entity          string  `parquet:"entity"`
	EventTimeMs     int64   `parquet:"event_time_ms"`
	KnownTimeMs     int64   `parquet:"known_time_ms"`
	SourceTopic     string  `parquet:"source_topic"`
	SourcePartition int32   `parquet:"source_partition"`
	SourceOffset    int64   `parquet:"source_offset"`
	EventID         string  `parquet:"event_id"`
	WindowStartMs   int64   `parquet:"window_start_ms"`
	WindowEndMs     int64   `parquet:"window_end_ms"`
	RevisesOffset   int64   `parquet:"revises_offset"`
	F0              float64 `parquet:"f0"`
	F1              float64 `parquet:"f1"`
	F2              float64 `parquet:"f2"`
	F3              float64 `parquet:"f3"`
	F4              float64 `parquet:"f4"`
	F5              float64 `parquet:"f5"`
	F6              float64 `parquet:"f6"`
	F7              float64 `parquet:"f7"`
	F8              float64 `parquet:"f8"`
	F9              float64 `parquet:"f9"`
}

func (g *genRow) values() [10]float64 {
	return [10]float64{g.F0, g.F1, g.F2, g.F3, g.F4, g.F5, g.F6, g.F7, g.F8, g.F9}
}

// exportRow is a ClickHouse row as Feast gets it: rank is the row's
// position in Weir's rank order within the export (feast_ts.py makes it
// Feast's created timestamp).
type exportRow struct {
	Entity      string  `parquet:"entity"`
	EventTimeMs int64   `parquet:"event_time_ms"`
	Rank        int64   `parquet:"rank"`
	F0          float64 `parquet:"f0"`
	F1          float64 `parquet:"f1"`
	F2          float64 `parquet:"f2"`
	F3          float64 `parquet:"f3"`
	F4          float64 `parquet:"f4"`
	F5          float64 `parquet:"f5"`
	F6          float64 `parquet:"f6"`
	F7          float64 `parquet:"f7"`
	F8          float64 `parquet:"f8"`
	F9          float64 `parquet:"f9"`
}

// weirYAML is the config `weir training-set` reads: the three views of
// gen.py's data (features f0..f9), their TTLs, ClickHouse.
const weirYAML = `# written by bench/trainingset
kafka: {client_id: weirbench-ts, brokers: ["127.0.0.1:9"]} # training-set never dials Kafka
clickhouse: {addr: "ADDR", database: "DB"}
sources:
  - {name: tx, topic: payments.transactions, schema: transaction, key: card_id, id: txn_id, event_time: event_time}
entities:
  - {name: card, key: card_id}
  - {name: merchant, key: merchant_id}
views:
VIEWS`

// generate runs gen.py for n spine rows into dir unless it is there.
func generate(py, dir string, n int) (*genMeta, error) {
	m, err := readMeta(dir)
	if err == nil && m.SpineRows == n {
		log("data for %d spine rows already in %s", n, dir)
		return m, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	start := time.Now()
	args := []string{"featurestore/trainingset/testdata/gen.py", "--out", dir, "--spine-rows", strconv.Itoa(n), "--spine-order", "time"}
	log("%s %s", py, strings.Join(args, " "))
	cmd := exec.Command(py, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("gen.py: %w", err)
	}
	log("gen.py: %s", time.Since(start).Round(time.Millisecond))
	return readMeta(dir)
}

func readMeta(dir string) (*genMeta, error) {
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return nil, err
	}
	m := new(genMeta)
	return m, json.Unmarshal(b, m)
}

// writeConfig writes weir.yaml for the views of m and returns the views as
// Weir parses them.
func writeConfig(path, addr, db string, m *genMeta) ([]config.View, error) {
	var b strings.Builder
	for _, v := range m.Views {
		ent := "card"
		if v.EntityColumn == "merchant_id" {
			ent = "merchant"
		}
		fmt.Fprintf(&b, "  - name: %s\n    source: tx\n    entity: %s\n    ttl: %dms\n    features:\n", v.Name, ent, v.TTLMs)
		for _, f := range v.Features {
			fmt.Fprintf(&b, "      - {name: %s, agg: last, field: amount}\n", f)
		}
	}
	yaml := strings.NewReplacer("ADDR", addr, "DB", db, "VIEWS", b.String()).Replace(weirYAML)
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		return nil, err
	}
	cfg, err := config.Load(path, func(string) string { return "" })
	if err != nil {
		return nil, err
	}
	return cfg.Views, nil
}

func openClickHouse(ctx context.Context, addr string) (driver.Conn, error) {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, Auth: clickhouse.Auth{Username: "default"},
		DialTimeout: 10 * time.Second, ReadTimeout: 10 * time.Minute})
	if err != nil {
		return nil, err
	}
	return conn, conn.Ping(ctx)
}

// load writes gen.py's feature rows into a fresh database through Weir's
// offline store (as the materializer does) and merges the tables, so that
// no background merge runs during the timed builds.
func load(ctx context.Context, conn driver.Conn, db, dir string, views []config.View) error {
	if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS `"+db+"`"); err != nil {
		return err
	}
	store, err := offline.New(conn, db, views)
	if err != nil {
		return err
	}
	if err := store.Migrate(ctx); err != nil {
		return err
	}
	start := time.Now()
	total := 0
	for _, v := range views {
		rows, err := parquet.ReadFile[genRow](filepath.Join(dir, "features_"+v.Name+".parquet"))
		if err != nil {
			return err
		}
		const batch = 100_000
		out := make([]schemas.FeatureRow, 0, batch)
		for i := range rows {
			g := &rows[i]
			r := schemas.FeatureRow{Entity: g.Entity, View: v.Name, ViewVersion: v.Version(), EventTime: g.EventTimeMs, KnownTime: g.KnownTimeMs,
				SourceTopic: g.SourceTopic, SourcePartition: g.SourcePartition, SourceOffset: g.SourceOffset, EventID: g.EventID,
				WindowStart: g.WindowStartMs, WindowEnd: g.WindowEndMs, RevisesOffset: g.RevisesOffset}
			for k, x := range g.values() {
				r.Values = append(r.Values, schemas.FeatureValue{Name: v.Features[k].Name, Value: x})
			}
			out = append(out, r)
			if len(out) == batch || i == len(rows)-1 {
				if err := store.Write(ctx, out); err != nil {
					return err
				}
				out = out[:0]
			}
		}
		total += len(rows)
		table := "`" + db + "`.`" + offline.TableName(v.Name, v.Version()) + "`"
		if err := conn.Exec(ctx, "OPTIMIZE TABLE "+table+" FINAL"); err != nil {
			return fmt.Errorf("optimize %s: %w", table, err)
		}
	}
	log("loaded %d feature rows into ClickHouse %s (merged) in %s", total, db, time.Since(start).Round(time.Millisecond))
	return nil
}

// export reads every row each view's table holds, in Weir's rank order,
// into dir/<view>.parquet for Feast.
func export(ctx context.Context, conn driver.Conn, db, dir string, views []config.View) (map[string]int, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for _, v := range views {
		var feats []string
		for _, f := range v.Features {
			feats = append(feats, "`"+f.Name+"`")
		}
		q := "SELECT entity, event_time_ms, " + strings.Join(feats, ", ") + " FROM `" + db + "`.`" + offline.TableName(v.Name, v.Version()) + "`" +
			" ORDER BY entity, event_time_ms, source_partition, if(revises_offset >= 0, revises_offset, source_offset), source_offset, window_start_ms"
		rows, err := conn.Query(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("export %s: %w", v.Name, err)
		}
		var out []exportRow
		for rows.Next() {
			var r exportRow
			if err := rows.Scan(&r.Entity, &r.EventTimeMs, &r.F0, &r.F1, &r.F2, &r.F3, &r.F4, &r.F5, &r.F6, &r.F7, &r.F8, &r.F9); err != nil {
				rows.Close()
				return nil, err
			}
			r.Rank = int64(len(out))
			out = append(out, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if err := parquet.WriteFile(filepath.Join(dir, v.Name+".parquet"), out); err != nil {
			return nil, err
		}
		counts[v.Name] = len(out)
	}
	return counts, nil
}
