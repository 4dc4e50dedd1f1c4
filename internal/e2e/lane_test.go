package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/featurestore/backfill"
	"github.com/weirhq/weir/schemas"
)

// laneConfig has two views of one source; card_new is computed by its
// backfill lane (lane: true).
const laneConfig = `
kafka: {client_id: lane, commit_interval: 50ms}
topics: {partitions: 2, replication: 1}
sources:
  - {name: payments, topic: payments, schema: transaction, key: card_id, id: txn_id, event_time: event_time}
entities:
  - {name: card, key: card_id}
views:
  - name: card_activity
    source: payments
    entity: card
    ttl: 24h
    features:
      - {name: n_5m, agg: count, window: 5m}
  - name: card_new
    source: payments
    entity: card
    ttl: 24h
    lane: true
    features:
      - {name: sum_1h, agg: sum, field: amount, window: 1h}
`

// TestLaneView runs one weir.yaml for both writers: the source's processor
// skips card_new (lane: true) while `weir backfill`'s lane computes it,
// first from the replay start to its cut-over, then again from its
// handover. card_activity gets one row per event from the processor,
// card_new one row per event from the lane, with sums an independent
// recomputation gives: no second writer (the lane's guard would refuse
// one, and every row would come twice), no gap, no overlap.
func TestLaneView(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t, "lane", laneConfig)
	log := roleLog(t, 60)
	env := runRoles(t, cfg, log, "lane", "processor")

	src := cfg.Sources[0]
	txnSerde, err := env.Serde(ctx, src.Topic, src.Schema)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := env.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	t0 := time.Now().Add(-time.Hour).UnixMilli()
	sums := map[string]float64{} // txn -> the card's amounts over (t-1h, t]
	var sent []schemas.Transaction
	produce := func(from, n int) {
		t.Helper()
		var recs []*kgo.Record
		for i := from; i < from+n; i++ {
			tx := schemas.Transaction{TxnID: fmt.Sprintf("tx-%03d", i), CardID: fmt.Sprintf("card-%d", i%3), Amount: float64(i + 1),
				Currency: "EUR", EventTime: t0 + int64(i)*1000}
			b, err := txnSerde.Encode(&tx)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, &kgo.Record{Topic: src.Topic, Key: []byte(tx.CardID), Value: b})
			for _, p := range sent {
				if p.CardID == tx.CardID {
					sums[tx.TxnID] += p.Amount
				}
			}
			sums[tx.TxnID] += tx.Amount
			sent = append(sent, tx)
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	rowSerde, err := env.Serde(ctx, cfg.FeaturesTopic("card_new"), schemas.FeatureRowSchema)
	if err != nil {
		t.Fatal(err)
	}
	p := &pipeline{env: env}
	rows := func(view string, n int) []schemas.FeatureRow {
		t.Helper()
		var out []schemas.FeatureRow
		for _, r := range p.records(t, cfg.FeaturesTopic(view), n) {
			var row schemas.FeatureRow
			if err := rowSerde.Decode(ctx, r.Value, &row); err != nil {
				t.Fatal(err)
			}
			out = append(out, row)
		}
		return out
	}
	check := func(phase string, n int) {
		t.Helper()
		if got := rows("card_activity", n); len(got) != n {
			t.Errorf("%s: card_activity has %d rows, want one per event (%d)", phase, len(got), n)
		}
		got := rows("card_new", n)
		if len(got) != n {
			t.Errorf("%s: card_new has %d rows, want one per event (%d): the processor computed it too, or the lane missed or repeated events", phase, len(got), n)
		}
		seen := map[string]bool{}
		for _, r := range got {
			if seen[r.EventID] {
				t.Errorf("%s: card_new row of %s twice", phase, r.EventID)
			}
			seen[r.EventID] = true
			if r.Values[0].Value != sums[r.EventID] {
				t.Errorf("%s: card_new sum_1h of %s = %v, want %v", phase, r.EventID, r.Values[0].Value, sums[r.EventID])
			}
		}
	}

	on, off, closeStores, err := env.Stores(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer closeStores()
	if err := off.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	view, _ := cfg.View("card_new")
	lane := func(from time.Time) backfill.Stats {
		t.Helper()
		bctx, bcancel := context.WithTimeout(ctx, 2*time.Minute)
		defer bcancel()
		st, err := backfill.Run(bctx, backfill.Config{Cfg: cfg, View: view, From: from, Instance: "t", Kafka: env.Kafka,
			SourceSerde: txnSerde, RowSerde: rowSerde, Online: on, Offline: off, Log: log})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	produce(0, 20)
	rows("card_activity", 20) // the processor is running
	st := lane(time.UnixMilli(t0).Add(-time.Hour))
	t.Logf("first lane run: cut %v handover %v", st.Cut, st.Handover)
	check("after the first lane run", 20)
	produce(20, 10)
	st = lane(time.Time{})
	if !st.Resumed {
		t.Error("the second lane run did not resume from its handover")
	}
	check("after the second lane run", 30)
}
