package materialize_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/featurestore"
	"github.com/weirhq/weir/featurestore/materialize"
	"github.com/weirhq/weir/featurestore/offline"
	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/featurestore/verify"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
)

// history returns n rows of each of entities entities, known now: event
// times that repeat and go backwards, offsets increasing per entity, and
// every seventh row a correction of an earlier row of its entity.
func history(rng *rand.Rand, entities, n int, first int) []schemas.FeatureRow {
	now := time.Now().UnixMilli()
	var rows []schemas.FeatureRow
	for e := range entities {
		var earlier []schemas.FeatureRow
		for k := first; k < first+n; k++ {
			r := schemas.FeatureRow{Entity: fmt.Sprintf("card-%03d", e), View: view.Name, ViewVersion: view.Version(),
				EventTime: now - 3_600_000 + int64(k)*1000 - rng.Int64N(5_000), KnownTime: now + int64(k),
				SourceTopic: "tx", SourcePartition: 0, SourceOffset: int64(10_000*e + k), EventID: fmt.Sprintf("ev-%d-%d", e, k),
				Values: []schemas.FeatureValue{{Name: "n", Value: float64(k)}, {Name: "amt", Value: rng.Float64()}}, RevisesOffset: -1}
			if len(earlier) > 0 && k%7 == 0 {
				c := earlier[rng.IntN(len(earlier))]
				r.EventTime, r.RevisesOffset = c.EventTime, featurestore.Revised(c.SourceOffset, c.RevisesOffset)
			}
			earlier = append(earlier, r)
			rows = append(rows, r)
		}
	}
	return rows
}

func newestOf(rows []schemas.FeatureRow) map[string]schemas.FeatureRow {
	newest := map[string]schemas.FeatureRow{}
	for _, r := range rows {
		if n, ok := newest[r.Entity]; !ok || featurestore.Compare(featurestore.RankOf(&r), featurestore.RankOf(&n)) > 0 {
			newest[r.Entity] = r
		}
	}
	return newest
}

// checkOnline compares every entity's Redis row with its newest row.
func checkOnline(t *testing.T, on *online.Store, newest map[string]schemas.FeatureRow) {
	t.Helper()
	var keys []online.Key
	for e := range newest {
		keys = append(keys, online.Key{View: view.Name, Version: view.Version(), Entity: e})
	}
	got, found, err := on.GetMany(context.Background(), keys)
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for i, k := range keys {
		w := newest[k.Entity]
		g := got[i]
		if !found[i] || g.EventTime != w.EventTime || g.Offset != w.SourceOffset || g.Revises != w.RevisesOffset ||
			g.KnownTime != w.KnownTime || g.Values["n"] != w.Values[0].Value || g.Values["amt"] != w.Values[1].Value {
			if bad++; bad <= 5 {
				t.Errorf("%s: Redis holds %+v (found %v), want %+v", k.Entity, g, found[i], w)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d entities wrong in Redis", bad, len(keys))
	}
}

func logger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(testWriter{t}, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// TestRebuild materializes a history into Redis and ClickHouse, flushes
// Redis, rebuilds it from the topic and checks it against the newest rows
// and against ClickHouse (verify). A transaction left open on the topic
// during the rebuild is beyond the end it captured: it stops there.
func TestRebuild(t *testing.T) {
	seeds, kind := testenv.Kafka(t)
	t.Logf("kafka: %s", kind)
	rdb, prefix := testenv.Redis(t)
	conn, db := testenv.ClickHouse(t)
	reg := newRegistry(t)
	ctx := context.Background()
	log := logger(t)
	topic := testenv.Name("weir.features.card")
	prod, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	createTopics(t, prod, topic)
	sd := serde(t, reg, topic, schemas.FeatureRowSchema)

	rows := history(rand.New(rand.NewPCG(3, 4)), 60, 20, 0)
	var recs []*kgo.Record
	for i, r := range rows {
		recs = append(recs, featureRecord(t, sd, topic, r))
		if i%9 == 0 {
			recs = append(recs, featureRecord(t, sd, topic, r)) // a duplicate upstream
		}
	}
	other := rows[0]
	other.ViewVersion = "v00000000"
	recs = append(recs, featureRecord(t, sd, topic, other), &kgo.Record{Topic: topic, Key: []byte("card-000"), Value: []byte("garbage")})
	produce(t, prod, recs...)
	// An aborted transaction, then a committed record behind it.
	txn, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.TransactionalID(testenv.Name("txn")))
	if err != nil {
		t.Fatal(err)
	}
	defer txn.Close()
	aborted := rows[1]
	aborted.EventTime += 1e7
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := txn.ProduceSync(ctx, featureRecord(t, sd, topic, aborted)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	if err := txn.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	last := featureRecord(t, sd, topic, rows[1])
	produce(t, prod, last)
	recs = append(recs, last)

	views := []config.View{view}
	on := online.New(rdb, prefix, views)
	off, err := offline.New(conn, db, views)
	if err != nil {
		t.Fatal(err)
	}
	if err := off.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	var ms []*materialize.Materializer
	var groups []string
	for name, sink := range map[string]materialize.FeatureWriter{"online": on, "offline": off} {
		g := testenv.Name(name)
		groups = append(groups, g)
		m, err := materialize.NewFeatures(materialize.Config{Name: name, Opts: []kgo.Opt{kgo.SeedBrokers(seeds...)}, Group: g, Topic: topic}, &view, sd, sink, log, nil)
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	stop := start(t, ms...)
	adm := kadm.NewClient(prod)
	for _, g := range groups {
		eventually(t, g+" committed", func() (bool, string) { return committedAll(t, adm, g, topic, next(recs...)) })
	}
	stop()
	newest := newestOf(rows)
	checkOnline(t, on, newest)
	vc := verify.Config{Views: views, Sample: 1000, Seed: 1}
	if rep, err := verify.Run(ctx, vc, on, off); err != nil || rep.Mismatches() != 0 {
		t.Fatalf("before the flush: err %v, report %+v", err, rep)
	}

	// Redis is flushed: verify sees every entity missing online.
	if n, err := on.DeleteAll(ctx); err != nil || n != int64(len(newest)) {
		t.Fatalf("flushed %d keys (%v), want %d", n, err, len(newest))
	}
	rep, err := verify.Run(ctx, vc, on, off)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Views[0].Counts[verify.MissingOnline] != len(newest) {
		t.Fatalf("after the flush: counts %v, want %d missing online", rep.Views[0].Counts, len(newest))
	}

	// A transaction open on the topic: the rebuild stops before it.
	open, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.TransactionalID(testenv.Name("open")))
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if err := open.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	pending := rows[2]
	pending.EventTime += 1e7
	if err := open.ProduceSync(ctx, featureRecord(t, sd, topic, pending)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	defer open.EndTransaction(context.Background(), kgo.TryAbort)

	rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	st, err := materialize.Rebuild(rctx, materialize.Config{Name: "rebuild", Opts: []kgo.Opt{kgo.SeedBrokers(seeds...)}, Topic: topic, MaxBatch: 97}, &view, sd, on, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rebuild: %+v", st)
	if st.Partitions != 4 || st.Records != int64(len(recs)) || st.Written != int64(len(recs)-2) || st.Skipped != 2 {
		t.Errorf("rebuild stats %+v, want 4 partitions, %d records, %d written, 2 skipped", st, len(recs), len(recs)-2)
	}
	checkOnline(t, on, newest)
	if rep, err := verify.Run(ctx, vc, on, off); err != nil || rep.Mismatches() != 0 || rep.Views[0].Counts[verify.Match] != len(newest) {
		t.Fatalf("after the rebuild: err %v, counts %v, mismatches %+v", err, rep.Views[0].Counts, rep.Views[0].Mismatches)
	}
}

// TestRebuildRacesLive rebuilds a flushed Redis while a live materializer
// (a fresh group, from the start) writes the same rows and new rows
// arrive, corrections of old rows among them: both write through the same
// ordered script, so Redis ends with the newest row of every entity.
func TestRebuildRacesLive(t *testing.T) {
	seeds, kind := testenv.Kafka(t)
	t.Logf("kafka: %s", kind)
	rdb, prefix := testenv.Redis(t)
	reg := newRegistry(t)
	ctx := context.Background()
	log := logger(t)
	topic := testenv.Name("weir.features.card")
	prod, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	createTopics(t, prod, topic)
	sd := serde(t, reg, topic, schemas.FeatureRowSchema)
	rng := rand.New(rand.NewPCG(5, 6))
	encode := func(rows []schemas.FeatureRow) []*kgo.Record {
		var recs []*kgo.Record
		for _, r := range rows {
			recs = append(recs, featureRecord(t, sd, topic, r))
		}
		return recs
	}
	before := history(rng, 200, 30, 0)
	recs := encode(before)
	produce(t, prod, recs...)

	on := online.New(rdb, prefix, []config.View{view})
	group := testenv.Name("live")
	live, err := materialize.NewFeatures(materialize.Config{Name: "live", Opts: []kgo.Opt{kgo.SeedBrokers(seeds...)}, Group: group, Topic: topic, MaxBatch: 50}, &view, sd, on, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, live)
	type result struct {
		st  materialize.RebuildStats
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := materialize.Rebuild(ctx, materialize.Config{Name: "rebuild", Opts: []kgo.Opt{kgo.SeedBrokers(seeds...)}, Topic: topic, MaxBatch: 50}, &view, sd, on, log)
		done <- result{st, err}
	}()
	// New rows while both run: later ones, and corrections of rows from
	// before (their event times, revising them).
	after := history(rng, 200, 10, 30)
	for i := range after {
		if i%3 == 0 {
			c := before[rng.IntN(len(before))]
			after[i].Entity, after[i].EventTime = c.Entity, c.EventTime
			after[i].SourceOffset = 1_000_000_000 + int64(i) // after every offset of before
			after[i].RevisesOffset = featurestore.Revised(c.SourceOffset, c.RevisesOffset)
		}
	}
	more := encode(after)
	produce(t, prod, more...)
	recs = append(recs, more...)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("rebuild: %+v", r.st)
	if r.st.Records < int64(len(before)) || r.st.Records > int64(len(recs)) {
		t.Errorf("rebuild read %d records, want between %d (before it started) and %d", r.st.Records, len(before), len(recs))
	}
	adm := kadm.NewClient(prod)
	eventually(t, "live materializer committed", func() (bool, string) { return committedAll(t, adm, group, topic, next(recs...)) })
	stop()
	checkOnline(t, on, newestOf(append(before, after...)))
}
