package materialize_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/featurestore"
	"github.com/weirhq/weir/featurestore/materialize"
	"github.com/weirhq/weir/featurestore/offline"
	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/schemas/registry"
)

var view = config.View{Name: "card", Source: "tx", Entity: "card", TTL: config.Duration(24 * time.Hour),
	Features: []config.Feature{{Name: "n", Agg: "count", Window: config.Duration(time.Hour)}, {Name: "amt", Agg: "last", Field: "amount"}}}

// newRegistry serves an in-memory schema registry for the test; closing it
// at cleanup also closes its client connections (goleak checks).
func newRegistry(t *testing.T) schemas.Registry {
	t.Helper()
	s, err := registry.Open("")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	reg, err := schemas.NewSRClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func serde(t *testing.T, reg schemas.Registry, topic, schema string) *schemas.Serde {
	t.Helper()
	s, err := schemas.NewSerde(context.Background(), reg, schemas.Subject(topic), schemas.MustParse(schema))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func createTopics(t *testing.T, cl *kgo.Client, topics ...string) {
	t.Helper()
	resp, err := kadm.NewClient(cl).CreateTopics(context.Background(), 4, 1, nil, topics...)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(err)
	}
}

func produce(t *testing.T, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func featureRecord(t *testing.T, sd *schemas.Serde, topic string, r schemas.FeatureRow) *kgo.Record {
	t.Helper()
	b, err := sd.Encode(&r)
	if err != nil {
		t.Fatal(err)
	}
	return &kgo.Record{Topic: topic, Key: []byte(r.Entity), Value: b}
}

// eventually polls cond until it holds or 60s pass.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached in 60s: %s", what, state)
		}
		time.Sleep(100 * time.Millisecond) // polling external services
	}
}

func start(t *testing.T, ms ...*materialize.Materializer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(func() {
			if err := m.Run(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// TestEndToEnd produces feature rows (with duplicates, a bad record, a row of
// another version and an aborted transaction) and labels through Kafka, runs
// the online, offline and labels materializers, and checks Redis holds the
// newest row per entity, ClickHouse every row exactly once, the two agree,
// and every offset is committed.
func TestEndToEnd(t *testing.T) {
	seeds, kind := testenv.Kafka(t)
	t.Logf("kafka: %s", kind)
	rdb, prefix := testenv.Redis(t)
	conn, db := testenv.ClickHouse(t)
	reg := newRegistry(t)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}

	featTopic, labelTopic := testenv.Name("weir.features.card"), testenv.Name("payments.labels")
	prod, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	createTopics(t, prod, featTopic, labelTopic)
	rowSerde := serde(t, reg, featTopic, schemas.FeatureRowSchema)
	labelSerde := serde(t, reg, labelTopic, schemas.LabelSchema)

	// 40 entities, 10 rows each, offsets increasing per entity; event times
	// sometimes repeat and go backwards (late events); every fifth entity's
	// last row is a correction of its newest row.
	version := view.Version()
	var rows []schemas.FeatureRow
	var recs []*kgo.Record
	newest := map[string]schemas.FeatureRow{}
	for e := range 40 {
		for k := range 10 {
			r := schemas.FeatureRow{Entity: fmt.Sprintf("card-%02d", e), View: "card", ViewVersion: version,
				EventTime: 1_760_000_000_000 + int64((k*7)%9)*1000, KnownTime: 1_760_000_100_000 + int64(k),
				SourceTopic: "tx", SourcePartition: int32(e % 4), SourceOffset: int64(100*e + k), EventID: fmt.Sprintf("ev-%d-%d", e, k),
				Values:        []schemas.FeatureValue{{Name: "n", Value: float64(k + 1)}, {Name: "amt", Value: float64(e) + float64(k)/10}},
				RevisesOffset: -1}
			if n := newest[r.Entity]; k == 9 && e%5 == 0 {
				r.EventTime, r.RevisesOffset = n.EventTime, featurestore.Revised(n.SourceOffset, n.RevisesOffset)
			}
			if n, ok := newest[r.Entity]; !ok || featurestore.Compare(featurestore.RankOf(&r), featurestore.RankOf(&n)) > 0 {
				newest[r.Entity] = r
			}
			rows = append(rows, r)
			recs = append(recs, featureRecord(t, rowSerde, featTopic, r))
			if k%4 == 0 { // duplicate delivery upstream
				recs = append(recs, featureRecord(t, rowSerde, featTopic, r))
			}
		}
	}
	other := rows[0]
	other.ViewVersion, other.EventTime = "v00000000", other.EventTime+1e6
	recs = append(recs, featureRecord(t, rowSerde, featTopic, other),
		&kgo.Record{Topic: featTopic, Key: []byte("card-00"), Value: []byte("not avro at all")})
	produce(t, prod, recs...)

	// An aborted transaction: read_committed never shows its rows.
	txn, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.TransactionalID(testenv.Name("txn")))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	aborted := rows[1]
	aborted.EventTime, aborted.SourceOffset = aborted.EventTime+2e6, 99_999
	if err := txn.ProduceSync(ctx, featureRecord(t, rowSerde, featTopic, aborted)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := txn.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	// A committed record after the aborted one in the same partition: a
	// consumer's committed offset moves past an abort marker only with the
	// next record it polls (kgo commits the offsets of polled records).
	after := featureRecord(t, rowSerde, featTopic, rows[0])
	produce(t, prod, after)
	recs = append(recs, after)

	var labels []schemas.Label
	var labelRecs []*kgo.Record
	for i := range 30 {
		l := schemas.Label{TxnID: fmt.Sprintf("tx-%d", i), CardID: fmt.Sprintf("card-%02d", i), EventTime: 1_760_000_005_000,
			LabelTime: 1_760_000_900_000, IsFraud: i%3 == 0}
		labels = append(labels, l)
		b, err := labelSerde.Encode(&l)
		if err != nil {
			t.Fatal(err)
		}
		labelRecs = append(labelRecs, &kgo.Record{Topic: labelTopic, Key: []byte(l.CardID), Value: b})
		if i%5 == 0 {
			labelRecs = append(labelRecs, &kgo.Record{Topic: labelTopic, Key: []byte(l.CardID), Value: b})
		}
	}
	produce(t, prod, labelRecs...)

	on := online.New(rdb, prefix, []config.View{view})
	off, err := offline.New(conn, db, []config.View{view})
	if err != nil {
		t.Fatal(err)
	}
	if err := off.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	preg := prometheus.NewRegistry()
	base := []kgo.Opt{kgo.SeedBrokers(seeds...)}
	var cfgs []materialize.Config
	cfg := func(name, topic string) materialize.Config {
		c := materialize.Config{Name: name, Opts: base, Group: testenv.Name(name), Topic: topic, MaxBatch: 37}
		cfgs = append(cfgs, c)
		return c
	}
	mOn, err := materialize.NewFeatures(cfg("online", featTopic), &view, rowSerde, on, log, preg)
	if err != nil {
		t.Fatal(err)
	}
	mOff, err := materialize.NewFeatures(cfg("offline", featTopic), &view, rowSerde, off, log, preg)
	if err != nil {
		t.Fatal(err)
	}
	mLab, err := materialize.NewLabels(cfg("labels", labelTopic), labelSerde, off, log, preg)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, mOn, mOff, mLab)

	// Every record is consumed and its offset committed (after the write):
	// the end offsets include the aborted transaction and its marker.
	adm := kadm.NewClient(prod)
	want := map[string]map[int32]int64{featTopic: next(recs...), labelTopic: next(labelRecs...)}
	for _, c := range cfgs {
		eventually(t, c.Name+" offsets committed", func() (bool, string) { return committedAll(t, adm, c.Group, c.Topic, want[c.Topic]) })
	}
	stop()
	goodRecs := len(recs) - 2 // all but the other-version row and the garbage
	for name, want := range map[string]int{"online": goodRecs, "offline": goodRecs, "labels": len(labelRecs)} {
		if got := written(t, preg, name); got != float64(want) {
			t.Errorf("%s wrote %v rows, want %d (one write per consumed record)", name, got, want)
		}
	}

	// Redis: the newest row per entity, a correction where there is one.
	for e, w := range newest {
		var n int
		fmt.Sscanf(e, "card-%d", &n)
		if n%5 == 0 && w.RevisesOffset < 0 {
			t.Fatalf("%s: the fixture's newest row is not its correction", e)
		}
		got, ok, err := on.Get(ctx, "card", version, e)
		if err != nil || !ok {
			t.Fatalf("online %s: found %v, err %v", e, ok, err)
		}
		if got.EventTime != w.EventTime || got.Offset != w.SourceOffset || got.Revises != w.RevisesOffset || got.Values["n"] != w.Values[0].Value || got.Values["amt"] != w.Values[1].Value {
			t.Errorf("online %s: %+v, want %+v", e, got, w)
		}
		// Online/offline consistency.
		latest, ok, err := off.Latest(ctx, "card", version, e)
		if err != nil || !ok {
			t.Fatalf("offline latest %s: found %v, err %v", e, ok, err)
		}
		if latest.EventTime != got.EventTime || latest.Offset != got.Offset || latest.Partition != got.Partition || latest.Revises != got.Revises ||
			latest.KnownTime != got.KnownTime || latest.Values["n"] != got.Values["n"] || latest.Values["amt"] != got.Values["amt"] {
			t.Errorf("%s: online %+v, offline %+v", e, got, latest)
		}
	}

	// ClickHouse: every row exactly once (deduplicated on read), nothing else.
	q := "SELECT entity, source_offset, count() FROM `" + db + "`.`" + offline.TableName("card", version) +
		"` GROUP BY entity, event_time_ms, source_partition, source_offset"
	res, err := conn.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var raw uint64
	for res.Next() {
		var e string
		var o int64
		var n uint64
		if err := res.Scan(&e, &o, &n); err != nil {
			t.Fatal(err)
		}
		k := fmt.Sprintf("%s/%d", e, o)
		if seen[k] {
			t.Errorf("row %s twice after dedupe", k)
		}
		seen[k] = true
		raw += n
	}
	res.Close()
	for _, r := range rows {
		if !seen[fmt.Sprintf("%s/%d", r.Entity, r.SourceOffset)] {
			t.Errorf("row %s/%d missing from ClickHouse", r.Entity, r.SourceOffset)
		}
	}
	if len(seen) != len(rows) {
		t.Errorf("ClickHouse has %d distinct rows, produced %d", len(seen), len(rows))
	}
	t.Logf("ClickHouse: %d distinct rows, %d stored before merges collapse duplicates", len(seen), raw)

	// Labels: the spine of a training set without features.
	ts, err := off.TrainingSet(ctx, offline.TrainingSetSpec{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ts.IDs) != len(labels) {
		t.Errorf("labels table has %d labels, produced %d", len(ts.IDs), len(labels))
	}
	for i, id := range ts.IDs {
		var n int
		fmt.Sscanf(id, "tx-%d", &n)
		if ts.Y[i] != (n%3 == 0) {
			t.Errorf("label %s: fraud %v", id, ts.Y[i])
		}
	}

	for _, name := range []string{"online", "offline"} {
		if u, o := skipped(t, preg, name, "undecodable"), skipped(t, preg, name, "other_view"); u != 1 || o != 1 {
			t.Errorf("%s skipped %v undecodable, %v of another view; want 1 and 1", name, u, o)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

// metric returns the value of the counter series name{labels} in reg, 0 when
// it has none.
func metric(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue series
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func written(t *testing.T, reg *prometheus.Registry, materializer string) float64 {
	return metric(t, reg, "weir_materialize_rows_written_total", map[string]string{"materializer": materializer})
}

func skipped(t *testing.T, reg *prometheus.Registry, materializer, reason string) float64 {
	return metric(t, reg, "weir_materialize_records_skipped_total", map[string]string{"materializer": materializer, "reason": reason})
}

// next returns, per partition, the offset after the last of recs (which
// ProduceSync filled in): what a consumer that handled them all commits.
func next(recs ...*kgo.Record) map[int32]int64 {
	out := map[int32]int64{}
	for _, r := range recs {
		out[r.Partition] = max(out[r.Partition], r.Offset+1)
	}
	return out
}

// committedAll reports whether group has committed want's offsets, and
// nothing else, for topic. It compares with the produced records rather
// than the end offsets: an abort marker at a partition's end is never
// returned by a poll, so a consumer commits up to the record before it.
func committedAll(t *testing.T, adm *kadm.Client, group, topic string, want map[int32]int64) (bool, string) {
	t.Helper()
	committed, err := adm.FetchOffsets(context.Background(), group)
	if err != nil {
		return false, err.Error()
	}
	got := map[int32]int64{}
	for p, o := range committed.Offsets()[topic] {
		got[p] = o.At
	}
	return maps.Equal(got, want), fmt.Sprintf("committed %v, want %v", got, want)
}

// flakySink is a FeatureWriter that fails while failing is set, and counts
// how often each row was written successfully.
type flakySink struct {
	failing  atomic.Bool
	failures atomic.Int64
	mu       sync.Mutex
	got      map[string]int // entity/offset -> successful writes
}

func (s *flakySink) Write(_ context.Context, rows []schemas.FeatureRow) error {
	if s.failing.Load() {
		s.failures.Add(1)
		return errors.New("sink down")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rows {
		s.got[fmt.Sprintf("%s/%d", r.Entity, r.SourceOffset)]++
	}
	return nil
}

func (s *flakySink) snapshot() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.got)
}

// TestStallAndResume checks that a failing sink stalls the materializer
// without committing, that it writes every row exactly once after recovering
// (a bad record in front does not stall it), and that a restarted member of
// the group resumes after the committed offsets: no loss, no redelivery.
func TestStallAndResume(t *testing.T) {
	seeds, kind := testenv.Kafka(t)
	t.Logf("kafka: %s", kind)
	reg := newRegistry(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	topic, group := testenv.Name("weir.features.card"), testenv.Name("group")
	prod, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	adm := kadm.NewClient(prod)
	createTopics(t, prod, topic)
	sd := serde(t, reg, topic, schemas.FeatureRowSchema)
	rowsFrom := func(first, n int) []*kgo.Record {
		var recs []*kgo.Record
		for i := first; i < first+n; i++ {
			recs = append(recs, featureRecord(t, sd, topic, schemas.FeatureRow{Entity: fmt.Sprintf("e%d", i%7), View: "card",
				ViewVersion: view.Version(), EventTime: int64(i), SourceOffset: int64(i), Values: []schemas.FeatureValue{{Name: "n", Value: 1}}}))
		}
		return recs
	}
	bad := &kgo.Record{Topic: topic, Value: []byte{0, 0, 0, 0, 99, 1}} // a schema id nobody registered
	first := rowsFrom(0, 100)
	produce(t, prod, bad)
	produce(t, prod, first...)

	cfg := materialize.Config{Name: "flaky", Opts: []kgo.Opt{kgo.SeedBrokers(seeds...)}, Group: group, Topic: topic,
		MaxBatch: 30, MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	sink := &flakySink{got: map[string]int{}}
	sink.failing.Store(true)
	preg := prometheus.NewRegistry()
	m, err := materialize.NewFeatures(cfg, &view, sd, sink, log, preg)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, m)
	eventually(t, "failed writes", func() (bool, string) { return sink.failures.Load() >= 5, fmt.Sprint(sink.failures.Load()) })
	if c, err := adm.FetchOffsets(context.Background(), group); err != nil {
		t.Fatal(err)
	} else if o := c.Offsets(); len(o[topic]) != 0 {
		t.Errorf("offsets committed while the sink was failing: %v", o)
	}
	if w := written(t, preg, "flaky"); w != 0 {
		t.Errorf("%v rows counted as written while the sink was failing", w)
	}

	sink.failing.Store(false)
	all := append([]*kgo.Record{bad}, first...)
	eventually(t, "offsets committed", func() (bool, string) { return committedAll(t, adm, group, topic, next(all...)) })
	stop()
	got := sink.snapshot()
	if len(got) != 100 {
		t.Errorf("%d distinct rows written, want 100", len(got))
	}
	for k, n := range got {
		if n != 1 {
			t.Errorf("row %s written %d times", k, n)
		}
	}
	if r := metric(t, preg, "weir_materialize_write_retries_total", nil); r < 5 {
		t.Errorf("retries metric %v, want >= 5", r)
	}
	if u := skipped(t, preg, "flaky", "undecodable"); u != 1 {
		t.Errorf("undecodable %v, want 1", u)
	}

	// A new member of the same group (nil registerer) resumes after the
	// committed offsets.
	more := rowsFrom(100, 50)
	produce(t, prod, more...)
	all = append(all, more...)
	sink2 := &flakySink{got: map[string]int{}}
	m2, err := materialize.NewFeatures(cfg, &view, sd, sink2, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop = start(t, m2)
	eventually(t, "offsets committed after restart", func() (bool, string) { return committedAll(t, adm, group, topic, next(all...)) })
	stop()
	got = sink2.snapshot()
	if len(got) != 50 {
		t.Errorf("restarted member wrote %d distinct rows, want the 50 new ones", len(got))
	}
	for i := 100; i < 150; i++ {
		if n := got[fmt.Sprintf("e%d/%d", i%7, i)]; n != 1 {
			t.Errorf("row %d written %d times after restart", i, n)
		}
	}
}
