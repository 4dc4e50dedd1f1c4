package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/featurestore"
	"github.com/weirhq/weir/featurestore/offline"
	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/schemas"
)

// correctionsConfig is a source that tolerates 10s of out-of-orderness and
// a minute of lateness, one sliding view and no models.
const correctionsConfig = `
kafka: {client_id: corr, commit_interval: 50ms}
topics: {partitions: 1, replication: 1}
sources:
  - {name: payments, topic: payments, schema: transaction, key: card_id, id: txn_id, event_time: event_time,
     out_of_order: 10s, lateness: 1m}
entities:
  - {name: card, key: card_id}
views:
  - name: card_activity
    source: payments
    entity: card
    ttl: 24h
    lateness: 1m
    features:
      - {name: n_5m,   agg: count, window: 5m}
      - {name: sum_5m, agg: sum, field: amount, window: 5m}
      - {name: last,   agg: last, field: amount}
labels:
  topic: labels
`

// TestCorrections runs the processor and materializer roles on real Kafka,
// Redis and ClickHouse. A card has events at 0s, 20s and 40s; once their
// rows are in both stores, an event at 10s arrives, behind the watermark
// (newest 40s minus 10s out of order) by 20s, within the view's lateness. It
// is accepted: its own row is emitted, and the rows of the events at 20s and
// 40s are emitted again, corrected. Redis then holds the corrected row of
// 40s, ClickHouse's Latest and training set return corrected values, and
// reads as known before the correction return the original ones.
func TestCorrections(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, "corr", correctionsConfig)
	env := runRoles(t, cfg, roleLog(t, 40), "corr", "processor", "materializer")

	src := cfg.Sources[0]
	txnSerde, err := env.Serde(ctx, src.Topic, src.Schema)
	if err != nil {
		t.Fatal(err)
	}
	labelSerde, err := env.Serde(ctx, cfg.Labels.Topic, cfg.Labels.Schema)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := env.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	const card = "card-1"
	produce := func(id string, at int64, amount float64) {
		t.Helper()
		tx := schemas.Transaction{TxnID: id, CardID: card, Amount: amount, Currency: "EUR", EventTime: t0 + at}
		lb := schemas.Label{TxnID: id, CardID: card, EventTime: tx.EventTime, LabelTime: tx.EventTime + 1000}
		tb, err := txnSerde.Encode(&tx)
		if err != nil {
			t.Fatal(err)
		}
		lbb, err := labelSerde.Encode(&lb)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: src.Topic, Key: []byte(card), Value: tb},
			&kgo.Record{Topic: cfg.Labels.Topic, Key: []byte(card), Value: lbb}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	rdb, err := env.Redis(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	conn, err := env.ClickHouse(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	view := cfg.Views[0]
	on := online.New(rdb, cfg.Redis.KeyPrefix, cfg.Views)
	off, err := offline.New(conn, cfg.ClickHouse.Database, cfg.Views)
	if err != nil {
		t.Fatal(err)
	}
	// rowIs checks a row's provenance and values: n_5m, sum_5m, last.
	rowIs := func(r featurestore.Row, at, offset, revises int64, n, sum, last float64) bool {
		return r.EventTime == t0+at && r.Offset == offset && r.Revises == revises &&
			r.Values["n_5m"] == n && r.Values["sum_5m"] == sum && r.Values["last"] == last
	}
	// stores waits until Redis and ClickHouse's Latest both hold the row.
	stores := func(what string, at, offset, revises int64, n, sum, last float64) featurestore.Row {
		t.Helper()
		var onRow, offRow featurestore.Row
		deadline := time.Now().Add(60 * time.Second)
		for {
			var err error
			onRow, _, err = on.Get(ctx, view.Name, view.Version(), card)
			if err != nil {
				t.Fatal(err)
			}
			offRow, _, err = off.Latest(ctx, view.Name, view.Version(), card)
			if err != nil {
				t.Fatal(err)
			}
			if rowIs(onRow, at, offset, revises, n, sum, last) && rowIs(offRow, at, offset, revises, n, sum, last) {
				return offRow
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not in both stores after 60s: Redis %+v, ClickHouse %+v", what, onRow, offRow)
			}
			time.Sleep(50 * time.Millisecond) // polling external services
		}
	}

	start := time.Now()
	produce("t0", 0, 1)
	produce("t20", 20_000, 2)
	produce("t40", 40_000, 4)
	orig := stores("the row of the event at 40s", 40_000, 2, -1, 3, 7, 4)
	t.Logf("original rows in Redis and ClickHouse after %s", time.Since(start).Round(time.Millisecond))
	cut := orig.KnownTime

	// The late event. Its row: events at 0s and 10s. The corrected rows:
	// at 20s the events at 0s, 10s and 20s; at 40s all four. It is sent
	// once the processor's wall clock has passed the originals' known
	// time, so that "as known at" tells them apart.
	for time.Now().UnixMilli() <= cut {
		time.Sleep(time.Millisecond)
	}
	produce("t10", 10_000, 8)
	fixed := stores("the corrected row of the event at 40s", 40_000, 3, 2, 4, 15, 4)
	t.Logf("corrected rows in Redis and ClickHouse after %s", time.Since(start).Round(time.Millisecond))
	if fixed.KnownTime <= cut {
		t.Fatalf("correction known at %d, not after the original (%d)", fixed.KnownTime, cut)
	}

	// As known before the correction: the original row.
	asOf, ok, err := off.LatestKnownAt(ctx, view.Name, view.Version(), card, cut)
	if err != nil || !ok || !rowIs(asOf, 40_000, 2, -1, 3, 7, 4) {
		t.Errorf("ClickHouse as known at %d: %+v (found %v, err %v), want the original row of 40s", cut, asOf, ok, err)
	}

	// Training sets: one label per transaction, the spine at each event's
	// time. Wait for the labels materializer.
	want := map[string][2]float64{"t0": {1, 1}, "t10": {2, 9}, "t20": {3, 11}, "t40": {4, 15}}
	wantBefore := map[string][2]float64{"t0": {1, 1}, "t10": {1, 1}, "t20": {2, 3}, "t40": {3, 7}}
	spec := offline.TrainingSetSpec{Views: []offline.ViewRequest{{View: view.Name, Features: []string{"n_5m", "sum_5m"}}}}
	var ts *offline.TrainingSet
	deadline := time.Now().Add(60 * time.Second)
	for {
		if ts, err = off.TrainingSet(ctx, spec); err != nil {
			t.Fatal(err)
		}
		if len(ts.IDs) == len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // polling ClickHouse
	}
	check := func(name string, ts *offline.TrainingSet, want map[string][2]float64) {
		t.Helper()
		if len(ts.IDs) != len(want) {
			t.Fatalf("%s: %d rows %v, want %d", name, len(ts.IDs), ts.IDs, len(want))
		}
		for i, id := range ts.IDs {
			if w := want[id]; ts.X[i][0] != w[0] || ts.X[i][1] != w[1] {
				t.Errorf("%s: %s at %ds has n_5m, sum_5m = %v, want %v", name, id, (ts.EventTimes[i]-t0)/1000, ts.X[i], w)
			}
		}
	}
	check("training set", ts, want)
	spec.KnownAt = cut
	before, err := off.TrainingSet(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	// As known at the cut, no row of the late event is known, but its label
	// is (labelled in January): that spine row gets the newest row known
	// then at or before 10s, the row of the event at 0s.
	check("training set as known before the correction", before, wantBefore)
	t.Logf("done after %s", time.Since(start).Round(time.Millisecond))
}
