package trainingset_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/parquet-go/parquet-go"

	"github.com/weirhq/weir/featurestore/offline"
	"github.com/weirhq/weir/featurestore/trainingset"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
)

// The data comes from testdata/gen.py: three views of ten features (two of
// cards, one of merchants with two hopping windows an instant), with
// corrections, equal event times, retried duplicates and stored NaNs, and a
// spine with rows on, at and just past the TTL. WEIR_TRAININGSET_ROWS sets
// the spine's size (default 20,000; 1,000,000 for the measurement,
// which also times a build in a child process and reports its peak RSS).

const defaultRows = 20_000

func spineRows(t *testing.T) int {
	s := os.Getenv("WEIR_TRAININGSET_ROWS")
	if s == "" {
		return defaultRows
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1000 {
		t.Fatalf("WEIR_TRAININGSET_ROWS=%q: want an integer >= 1000", s)
	}
	return n
}

type meta struct {
	Topic      string `json:"topic"`
	Partitions int    `json:"partitions"`
	Views      []struct {
		Name         string   `json:"name"`
		EntityColumn string   `json:"entity_column"`
		TTLMs        int64    `json:"ttl_ms"`
		DelayMs      int64    `json:"delay_ms"`
		Features     []string `json:"features"`
		Rows         int      `json:"rows"`
	} `json:"views"`
	SpineRows int              `json:"spine_rows"`
	KnownAtMs int64            `json:"known_at_ms"`
	Offsets   map[string]int64 `json:"offsets"`
}

// configViews are the views gen.py's data belongs to.
func (m *meta) configViews() []config.View {
	var vs []config.View
	for _, v := range m.Views {
		cv := config.View{Name: v.Name, Source: "tx", Entity: v.EntityColumn, TTL: config.Duration(time.Duration(v.TTLMs) * time.Millisecond)}
		for _, f := range v.Features {
			cv.Features = append(cv.Features, config.Feature{Name: f, Agg: "last", Field: "amount"})
		}
		vs = append(vs, cv)
	}
	return vs
}

func (m *meta) requests() ([]offline.ViewRequest, []string) {
	var reqs []offline.ViewRequest
	var ents []string
	for _, v := range m.Views {
		reqs = append(reqs, offline.ViewRequest{View: v.Name, Delay: time.Duration(v.DelayMs) * time.Millisecond})
		ents = append(ents, v.EntityColumn)
	}
	return reqs, ents
}

// vector is the offsets cut-off, topic-qualified.
func (m *meta) vector() offline.OffsetVector {
	var ov offline.OffsetVector
	for p := range m.Partitions {
		if o, ok := m.Offsets[strconv.Itoa(p)]; ok {
			ov = append(ov, offline.PartitionOffset{Topic: m.Topic, Partition: int32(p), Offset: o})
		}
	}
	return ov
}

func (m *meta) oracleOffsets() string {
	var s []string
	for p, o := range m.Offsets {
		s = append(s, p+"="+strconv.FormatInt(o, 10))
	}
	return strings.Join(s, ",")
}

// genRow is a row of gen.py's feature files.
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

func (g *genRow) values() []float64 {
	return []float64{g.F0, g.F1, g.F2, g.F3, g.F4, g.F5, g.F6, g.F7, g.F8, g.F9}
}

type fixture struct {
	dir   string
	py    string
	meta  meta
	conn  driver.Conn
	db    string
	views []config.View
	store *offline.Store
}

func newFixture(t *testing.T, rows int, order string) *fixture {
	t.Helper()
	f := &fixture{py: testenv.Python(t)}
	f.conn, f.db = testenv.ClickHouse(t)
	f.dir = t.TempDir()
	start := time.Now()
	f.python(t, "testdata/gen.py", "--out", f.dir, "--spine-rows", strconv.Itoa(rows), "--spine-order", order)
	b, err := os.ReadFile(filepath.Join(f.dir, "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &f.meta); err != nil {
		t.Fatal(err)
	}
	t.Logf("gen.py: %d spine rows in %s", rows, time.Since(start).Round(time.Millisecond))
	f.views = f.meta.configViews()
	if f.store, err = offline.New(f.conn, f.db, f.views); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := f.store.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	total := 0
	for i, v := range f.views {
		rows, err := parquet.ReadFile[genRow](filepath.Join(f.dir, "features_"+v.Name+".parquet"))
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != f.meta.Views[i].Rows {
			t.Fatalf("%s: %d rows, gen.py wrote %d", v.Name, len(rows), f.meta.Views[i].Rows)
		}
		f.write(t, v, rows)
		total += len(rows)
	}
	t.Logf("loaded %d feature rows into ClickHouse in %s", total, time.Since(start).Round(time.Millisecond))
	return f
}

func (f *fixture) write(t *testing.T, v config.View, rows []genRow) {
	t.Helper()
	const batch = 100_000
	out := make([]schemas.FeatureRow, 0, batch)
	flush := func() {
		if err := f.store.Write(context.Background(), out); err != nil {
			t.Fatal(err)
		}
		out = out[:0]
	}
	for i := range rows {
		g := &rows[i]
		r := schemas.FeatureRow{Entity: g.Entity, View: v.Name, ViewVersion: v.Version(), EventTime: g.EventTimeMs, KnownTime: g.KnownTimeMs,
			SourceTopic: g.SourceTopic, SourcePartition: g.SourcePartition, SourceOffset: g.SourceOffset, EventID: g.EventID,
			WindowStart: g.WindowStartMs, WindowEnd: g.WindowEndMs, RevisesOffset: g.RevisesOffset}
		for k, x := range g.values() {
			r.Values = append(r.Values, schemas.FeatureValue{Name: "f" + strconv.Itoa(k), Value: x})
		}
		out = append(out, r)
		if len(out) == batch {
			flush()
		}
	}
	if len(out) > 0 {
		flush()
	}
}

func (f *fixture) python(t *testing.T, script string, args ...string) string {
	t.Helper()
	cmd := exec.Command(f.py, append([]string{script}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", script, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// build runs a training set of every view, spine to out.
func (f *fixture) build(t *testing.T, spine, out string, cut offline.Cutoff, chunk int, trace func(int, string, []string)) *trainingset.Description {
	t.Helper()
	ctx := context.Background()
	if !strings.HasPrefix(spine, "clickhouse:") {
		spine = filepath.Join(f.dir, spine)
	}
	if !strings.HasPrefix(out, "clickhouse:") {
		out = filepath.Join(f.dir, out)
	}
	reqs, ents := f.meta.requests()
	sp, desc, err := trainingset.OpenSpine(ctx, f.conn, spine, trainingset.SpineOptions{DefaultDB: f.db, Keys: ents})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	w, err := trainingset.OpenWriter(ctx, f.conn, out, f.db, true)
	if err != nil {
		t.Fatal(err)
	}
	var progress []int64
	spec := trainingset.Spec{Spine: sp, Source: desc, Views: reqs, EntityColumns: ents, Timestamp: "ts", Cutoff: cut, ChunkRows: chunk,
		Progress: func(done, total int64) { progress = append(progress, done) }, Trace: trace}
	start := time.Now()
	d, err := trainingset.Build(ctx, f.store, spec, w)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s from %s: %d rows in %s, %s", filepath.Base(out), filepath.Base(spine), d.Rows, time.Since(start).Round(time.Millisecond), d.ContentHash)
	if d.Rows != int64(f.meta.SpineRows) || len(progress) == 0 || progress[len(progress)-1] != d.Rows {
		t.Errorf("%d rows (spine has %d), progress %v", d.Rows, f.meta.SpineRows, progress)
	}
	return d
}

// oracle checks out against pandas' merge_asof.
func (f *fixture) oracle(t *testing.T, out string, cut offline.Cutoff, align bool) {
	t.Helper()
	args := []string{"--data", f.dir, "--got", filepath.Join(f.dir, out)}
	if cut.KnownAt != 0 {
		args = append(args, "--known-at", strconv.FormatInt(cut.KnownAt, 10))
	}
	if cut.Offsets != nil {
		args = append(args, "--offsets", f.meta.oracleOffsets())
	}
	if align {
		args = append(args, "--align")
	}
	start := time.Now()
	t.Logf("oracle: %s (%s)", f.python(t, "testdata/oracle.py", args...), time.Since(start).Round(time.Millisecond))
}

// checkStored re-reads a Parquet or CSV output and checks its description
// and content hash.
func checkStored(t *testing.T, path string, want *trainingset.Description) {
	t.Helper()
	var d *trainingset.Description
	var sp trainingset.Spine
	var err error
	if strings.HasSuffix(path, ".parquet") {
		if d, err = trainingset.ReadParquetDescription(path); err != nil {
			t.Fatal(err)
		}
		sp, err = trainingset.OpenParquet(path)
	} else {
		b, rerr := os.ReadFile(trainingset.SidecarPath(path))
		if rerr != nil {
			t.Fatal(rerr)
		}
		d = new(trainingset.Description)
		if err := json.Unmarshal(b, d); err != nil {
			t.Fatal(err)
		}
		types := map[string]trainingset.Type{}
		for _, c := range want.Columns {
			types[c.Name] = c.Type
		}
		sp, err = trainingset.OpenCSV(path, types)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	wj, _ := json.Marshal(want)
	gj, _ := json.Marshal(d)
	if !bytes.Equal(wj, gj) {
		t.Errorf("stored description:\n%s\nwant\n%s", gj, wj)
	}
	h, n, err := trainingset.ContentHash(sp, want.Columns)
	if err != nil {
		t.Fatal(err)
	}
	if h != want.ContentHash || n != want.Rows {
		t.Errorf("%s: content %s of %d rows, description says %s of %d", filepath.Base(path), h, n, want.ContentHash, want.Rows)
	}
}

func TestTrainingSet(t *testing.T) {
	n := spineRows(t)
	large := n > defaultRows
	order := "random"
	if large {
		order = "time" // a spine in time order, as labels usually are
	}
	f := newFixture(t, n, order)
	knownAt := offline.Cutoff{KnownAt: f.meta.KnownAtMs}
	offsets := offline.Cutoff{Offsets: f.meta.vector()}
	chunk := trainingset.DefaultChunkRows
	if !large {
		chunk = 3_000 // several chunks
	}
	descs := map[string]*trainingset.Description{}

	for _, c := range []struct {
		name string
		cut  offline.Cutoff
	}{{"event_time", offline.Cutoff{}}, {"known_at", knownAt}, {"offsets", offsets}} {
		t.Run("parquet/"+c.name, func(t *testing.T) {
			out := c.name + ".parquet"
			d := f.build(t, "spine.parquet", out, c.cut, chunk, nil)
			f.oracle(t, out, c.cut, false)
			checkStored(t, filepath.Join(f.dir, out), d)
			descs[c.name] = d
		})
	}
	if large {
		t.Run("measure", func(t *testing.T) { f.measure(t) })
	}

	t.Run("csv", func(t *testing.T) {
		d := f.build(t, "spine.csv", "known_at.csv", knownAt, chunk/3, nil)
		f.oracle(t, "known_at.csv", knownAt, false)
		checkStored(t, filepath.Join(f.dir, "known_at.csv"), d)
		if d.Spine.Source != "csv" || len(d.Spine.SHA256) != 64 {
			t.Errorf("spine description %+v", d.Spine)
		}
	})

	t.Run("clickhouse", func(t *testing.T) {
		f.loadSpineTable(t)
		d := f.build(t, "clickhouse:spine", "clickhouse:ts_known_at", knownAt, chunk, nil)
		ctx := context.Background()
		stored, err := trainingset.ReadDescription(ctx, f.conn, f.db, "ts_known_at")
		if err != nil {
			t.Fatal(err)
		}
		if stored.ContentHash != d.ContentHash || stored.Rows != d.Rows || stored.Spine.SQL == "" {
			t.Errorf("stored description %+v, built %+v", stored, d)
		}
		sp, err := trainingset.OpenClickHouse(ctx, f.conn, f.db+".ts_known_at", "")
		if err != nil {
			t.Fatal(err)
		}
		h, rows, err := trainingset.ContentHash(sp, d.Columns)
		sp.Close()
		if err != nil {
			t.Fatal(err)
		}
		if h != d.ContentHash || rows != d.Rows {
			t.Errorf("table holds %s of %d rows, description %s of %d", h, rows, d.ContentHash, d.Rows)
		}
		// The same spine from ClickHouse to Parquet, against the oracle.
		f.build(t, "clickhouse:spine", "ch_known_at.parquet", knownAt, chunk, nil)
		f.oracle(t, "ch_known_at.parquet", knownAt, true)
	})

	if !large {
		t.Run("chdb", func(t *testing.T) { f.chdb(t) })
	}

	// Last: it writes late rows into the store.
	t.Run("rebuild", func(t *testing.T) { f.rebuild(t, descs) })
}

// loadSpineTable copies spine.parquet into a ClickHouse table, with types
// the spine reader converts: UInt8 bools, Nullable, DateTime, Date.
func (f *fixture) loadSpineTable(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	ddl := "CREATE TABLE `" + f.db + "`.spine (txn_id String, card_id String, merchant_id String, ts Int64, amount Float64, is_fraud UInt8, merchant_score Nullable(Float64), " +
		"at DateTime, day Date) ENGINE = MergeTree ORDER BY txn_id"
	if err := f.conn.Exec(ctx, ddl); err != nil {
		t.Fatal(err)
	}
	sp, err := trainingset.OpenParquet(filepath.Join(f.dir, "spine.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	var c trainingset.Chunk
	for {
		if err := sp.Next(&c, 100_000); err != nil {
			break
		}
		b, err := f.conn.PrepareBatch(ctx, "INSERT INTO `"+f.db+"`.spine (txn_id, card_id, merchant_id, ts, amount, is_fraud, merchant_score, at, day)")
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < c.Len; i++ {
			var score *float64
			if !c.Cols[6].IsNull(i) {
				score = &c.Cols[6].Floats[i]
			}
			ts := c.Cols[3].Ints[i]
			at := time.UnixMilli(ts).UTC()
			if err := b.Append(c.Cols[0].Strs[i], c.Cols[1].Strs[i], c.Cols[2].Strs[i], ts, c.Cols[4].Floats[i], uint8(c.Cols[5].Ints[i]), score, at, at); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Send(); err != nil {
			t.Fatal(err)
		}
	}
}

// floatCell is how the chDB check compares a float: its IEEE 754 bits.
func floatCell(f float64) string { return "f:" + strconv.FormatUint(math.Float64bits(f), 10) }

// chdb runs the queries of a build under both cut-offs (every condition
// the queries have) and the ClickHouse spine's query in chDB over the same
// data, and compares their results with ClickHouse 18.16's.
func (f *fixture) chdb(t *testing.T) {
	type query struct {
		SQL      string   `json:"sql"`
		Entities []string `json:"entities"`
		Rows     [][]any  `json:"rows"`
	}
	var queries []query
	var mu sync.Mutex // views are looked up in parallel
	trace := func(_ int, q string, entities []string) {
		mu.Lock()
		defer mu.Unlock()
		queries = append(queries, query{SQL: q, Entities: append([]string(nil), entities...)})
	}
	both := offline.Cutoff{KnownAt: f.meta.KnownAtMs, Offsets: append(f.meta.vector(), offline.PartitionOffset{Partition: 1, Offset: 1 << 40})}
	f.build(t, "spine.parquet", "chdb_both.parquet", both, 10_000, trace)
	ctx := context.Background()
	for i := range queries {
		q := &queries[i]
		tbl, err := ext.NewTable(offline.KeysTable, ext.Column("entity", column.Type("String")))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range q.Entities {
			if err := tbl.Append(e); err != nil {
				t.Fatal(err)
			}
		}
		rows, err := f.conn.Query(clickhouse.Context(ctx, clickhouse.WithExternalTable(tbl)), q.SQL)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var e string
			var et int64
			vals := make([]float64, 10)
			dest := []any{&e, &et}
			for k := range vals {
				dest = append(dest, &vals[k])
			}
			if err := rows.Scan(dest...); err != nil {
				t.Fatal(err)
			}
			row := []any{e, et}
			for _, v := range vals {
				row = append(row, floatCell(v))
			}
			q.Rows = append(q.Rows, row)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	// The spine table's query, through the spine reader's conversions.
	f.loadSpineTableOnce(t)
	sp, err := trainingset.OpenClickHouse(ctx, f.conn, f.db+".spine", "amount > 10")
	if err != nil {
		t.Fatal(err)
	}
	var spineRows [][]any
	var c trainingset.Chunk
	cols := sp.Columns()
	for sp.Next(&c, 10_000) == nil {
		for i := 0; i < c.Len; i++ {
			var row []any
			for j, col := range cols {
				v := &c.Cols[j]
				switch {
				case v.IsNull(i):
					row = append(row, nil)
				case col.Type == trainingset.Float64:
					row = append(row, floatCell(v.Floats[i]))
				case col.Type == trainingset.String:
					row = append(row, v.Strs[i])
				default:
					row = append(row, v.Ints[i])
				}
			}
			spineRows = append(spineRows, row)
		}
	}
	sp.Close()
	var tables []map[string]any
	for _, v := range f.views {
		tables = append(tables, map[string]any{
			"table":    "`" + f.db + "`.`" + offline.TableName(v.Name, v.Version()) + "`",
			"ddl":      f.ddl(t, offline.TableName(v.Name, v.Version())),
			"file":     "features_" + v.Name + ".parquet",
			"features": f.meta.Views[0].Features,
		})
	}
	tr := map[string]any{
		"database": f.db,
		"tables":   tables,
		"queries":  queries,
		"spine": map[string]any{
			"table":   "`" + f.db + "`.spine",
			"ddl":     f.ddl(t, "spine"),
			"file":    "spine.parquet",
			"columns": "txn_id, card_id, merchant_id, ts, amount, is_fraud, merchant_score, at, day",
			"select":  "txn_id, card_id, merchant_id, ts, amount, is_fraud, merchant_score, toDateTime(intDiv(ts, 1000)), toDate(toDateTime(intDiv(ts, 1000)))",
			"sql":     sp.SQL,
			"rows":    spineRows,
		},
	}
	b, err := json.Marshal(tr)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(f.dir, "trace.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	t.Logf("chdb: %s (%s)", f.python(t, "testdata/chdb_check.py", "--data", f.dir, "--trace", path), time.Since(start).Round(time.Millisecond))
}

func (f *fixture) loadSpineTableOnce(t *testing.T) {
	var exists uint8
	if err := f.conn.QueryRow(context.Background(), "EXISTS TABLE `"+f.db+"`.spine").Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists == 0 {
		f.loadSpineTable(t)
	}
}

// ddl is a table's CREATE statement as ClickHouse 18.16 shows it.
func (f *fixture) ddl(t *testing.T, table string) string {
	var s string
	if err := f.conn.QueryRow(context.Background(), "SHOW CREATE TABLE `"+f.db+"`.`"+table+"`").Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// rebuild checks that a training set under a cut-off is the same, byte for
// byte, when built again after late corrections and new rows arrived that
// the cut-off excludes, while the set as of event time sees them.
func (f *fixture) rebuild(t *testing.T, descs map[string]*trainingset.Description) {
	knownAt := offline.Cutoff{KnownAt: f.meta.KnownAtMs}
	offsets := offline.Cutoff{Offsets: f.meta.vector()}
	before := map[string][]byte{}
	for _, name := range []string{"known_at", "offsets", "event_time"} {
		b, err := os.ReadFile(filepath.Join(f.dir, name+".parquet"))
		if err != nil {
			t.Fatal(err)
		}
		before[name] = b
	}
	// The same build again: the same bytes.
	f.build(t, "spine.parquet", "known_at.again.parquet", knownAt, trainingset.DefaultChunkRows/4, nil)
	sameFile(t, before["known_at"], filepath.Join(f.dir, "known_at.again.parquet"))

	// Late corrections of rows the known-at sets used: each known after
	// the cut-offs (known time past KnownAt, offset past the vector).
	var late []genRow
	rows, err := parquet.ReadFile[genRow](filepath.Join(f.dir, "features_card_stats.parquet"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(rows); i += 7 {
		g := rows[i]
		if g.RevisesOffset >= 0 {
			continue
		}
		g.RevisesOffset = g.SourceOffset
		g.SourceOffset += 1 << 40
		g.KnownTimeMs = f.meta.KnownAtMs + 1 + int64(i)
		g.F0, g.F3 = -g.F0-1, 12345
		late = append(late, g)
	}
	f.write(t, f.views[0], late)
	t.Logf("wrote %d late corrections", len(late))

	for _, c := range []struct {
		name string
		cut  offline.Cutoff
	}{{"known_at", knownAt}, {"offsets", offsets}} {
		if descs[c.name] == nil {
			t.Fatalf("no first build of %s", c.name)
		}
		d := f.build(t, "spine.parquet", c.name+".late.parquet", c.cut, trainingset.DefaultChunkRows, nil)
		sameFile(t, before[c.name], filepath.Join(f.dir, c.name+".late.parquet"))
		if d.ContentHash != descs[c.name].ContentHash {
			t.Errorf("%s: content %s, first built %s", c.name, d.ContentHash, descs[c.name].ContentHash)
		}
	}
	d := f.build(t, "spine.parquet", "event_time.late.parquet", offline.Cutoff{}, trainingset.DefaultChunkRows, nil)
	if descs["event_time"] != nil && d.ContentHash == descs["event_time"].ContentHash {
		t.Errorf("as of event time, %d late corrections changed nothing", len(late))
	}
}

func sameFile(t *testing.T, want []byte, path string) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s: %d bytes differ from the first build's %d", filepath.Base(path), len(got), len(want))
	}
}

// measure builds the set as known at, Parquet to Parquet, in a child
// process (this test binary, TestMeasureChild), and reports its wall time
// and peak RSS.
func (f *fixture) measure(t *testing.T) {
	out := filepath.Join(f.dir, "measure.parquet")
	cmd := exec.Command(os.Args[0], "-test.run=^TestMeasureChild$", "-test.v")
	cmd.Env = append(os.Environ(), "WEIR_TRAININGSET_CHILD="+strings.Join([]string{f.dir, f.db, out}, ","))
	var outb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &outb
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v\n%s", err, outb.String())
	}
	wall := time.Since(start)
	// The child's rusage Maxrss is no use: Linux carries the parent's
	// high-water mark across the vfork and exec. The child reports its own
	// VmHWM.
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	t.Logf("child (process start to exit): %s wall, %.1f s user+sys CPU\n%s", wall.Round(time.Millisecond),
		time.Duration(ru.Utime.Nano()+ru.Stime.Nano()).Seconds(), outb.String())
	f.oracle(t, "measure.parquet", offline.Cutoff{KnownAt: f.meta.KnownAtMs}, false)
}

// TestMeasureChild is measure's child: it builds one training set and
// exits. It does nothing unless WEIR_TRAININGSET_CHILD is set.
func TestMeasureChild(t *testing.T) {
	env := os.Getenv("WEIR_TRAININGSET_CHILD")
	if env == "" {
		t.Skip("the child of TestTrainingSet's measure step")
	}
	parts := strings.Split(env, ",")
	dir, db, out := parts[0], parts[1], parts[2]
	var m meta
	b, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{testenv.ClickHouseAddr(t)}, Auth: clickhouse.Auth{Database: db, Username: "default"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	store, err := offline.New(conn, db, m.configViews())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sp, desc, err := trainingset.OpenSpine(ctx, conn, filepath.Join(dir, "spine.parquet"), trainingset.SpineOptions{DefaultDB: db})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	w, err := trainingset.OpenWriter(ctx, conn, out, db, true)
	if err != nil {
		t.Fatal(err)
	}
	reqs, ents := m.requests()
	start := time.Now()
	d, err := trainingset.Build(ctx, store, trainingset.Spec{Spine: sp, Source: desc, Views: reqs, EntityColumns: ents, Timestamp: "ts",
		Cutoff: offline.Cutoff{KnownAt: m.KnownAtMs}}, w)
	if err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	hwm := "?"
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			hwm = strings.TrimSpace(rest)
		}
	}
	fmt.Printf("build: %d rows x %d columns in %s, peak RSS (VmHWM) %s\n", d.Rows, len(d.Columns), time.Since(start).Round(time.Millisecond), hwm)
}
