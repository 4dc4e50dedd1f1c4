package loadgen

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/schemas"
)

// RunConfig says where and how fast to produce.
type RunConfig struct {
	TxnTopic, LabelTopic string
	Txn, Label           *schemas.Serde
	// Count is the number of transactions; 0 runs until ctx is done.
	Count int
	// Rate is transactions per wall-clock second; 0 is as fast as possible.
	Rate float64
	// BadEvery inserts one bad record after every BadEvery transactions,
	// cycling through undecodable bytes, a missing key and an absurd
	// timestamp; 0 inserts none.
	BadEvery int
	// OnProgress, if set, is called about every second.
	OnProgress func(Stats)
}

// Stats counts what was produced.
type Stats struct {
	Transactions, Labels, Frauds, Bad int
	LastEventTime                     int64
}

// Run produces transactions (keyed by card) and their labels (released in
// label-time order once the stream's newest event time passes their label
// time), then the labels still pending. Records are produced with acks=all
// and idempotence; it returns once all are acknowledged.
func Run(ctx context.Context, cl *kgo.Client, g *Generator, rc RunConfig, log *slog.Logger) (Stats, error) {
	var st Stats
	var pending []schemas.Label // by label time
	newest := int64(math.MinInt64)
	errc := make(chan error, 1)
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			select {
			case errc <- err:
			default:
			}
		}
	}
	produce := func(topic, key string, v any, s *schemas.Serde) error {
		b, err := s.Encode(v)
		if err != nil {
			return err
		}
		cl.Produce(ctx, &kgo.Record{Topic: topic, Key: []byte(key), Value: b}, promise)
		return nil
	}
	start := time.Now()
	lastProgress := start
	for i := 0; rc.Count == 0 || i < rc.Count; i++ {
		select {
		case err := <-errc:
			return st, fmt.Errorf("loadgen: produce: %w", err)
		default:
		}
		if ctx.Err() != nil {
			break
		}
		if rc.Rate > 0 {
			due := start.Add(time.Duration(float64(i) / rc.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
			}
		}
		tx, lb := g.Next()
		newest = max(newest, tx.EventTime)
		for len(pending) > 0 && pending[0].LabelTime <= newest {
			if err := produce(rc.LabelTopic, pending[0].CardID, &pending[0], rc.Label); err != nil {
				return st, err
			}
			pending = pending[1:]
			st.Labels++
		}
		if err := produce(rc.TxnTopic, tx.CardID, &tx, rc.Txn); err != nil {
			return st, err
		}
		// In order (no Disorder) this appends.
		i, _ := slices.BinarySearchFunc(pending, lb.LabelTime, func(l schemas.Label, t int64) int { return cmp.Compare(l.LabelTime, t+1) })
		pending = slices.Insert(pending, i, lb)
		st.Transactions++
		st.LastEventTime = tx.EventTime
		if lb.IsFraud {
			st.Frauds++
		}
		if rc.BadEvery > 0 && st.Transactions%rc.BadEvery == 0 {
			cl.Produce(ctx, badRecord(rc, st.Bad, tx), promise)
			st.Bad++
		}
		if rc.OnProgress != nil && time.Since(lastProgress) > time.Second {
			rc.OnProgress(st)
			lastProgress = time.Now()
		}
	}
	if ctx.Err() == nil {
		for i := range pending {
			if err := produce(rc.LabelTopic, pending[i].CardID, &pending[i], rc.Label); err != nil {
				return st, err
			}
			st.Labels++
		}
	}
	if err := cl.Flush(context.WithoutCancel(ctx)); err != nil {
		return st, fmt.Errorf("loadgen: flush: %w", err)
	}
	select {
	case err := <-errc:
		return st, fmt.Errorf("loadgen: produce: %w", err)
	default:
	}
	log.Debug("loadgen done", "transactions", st.Transactions, "labels", st.Labels, "bad", st.Bad)
	return st, nil
}

// badRecord returns the i-th bad record: undecodable, keyless or absurd.
func badRecord(rc RunConfig, i int, tx schemas.Transaction) *kgo.Record {
	switch i % 3 {
	case 0:
		return &kgo.Record{Topic: rc.TxnTopic, Key: []byte(tx.CardID), Value: []byte("\x00not avro at all")}
	case 1:
		tx.TxnID += "-nokey"
		b, _ := rc.Txn.Encode(&tx)
		return &kgo.Record{Topic: rc.TxnTopic, Value: b}
	default:
		tx.TxnID += "-absurd"
		tx.EventTime = 86_400_000 // 1970-01-02
		b, _ := rc.Txn.Encode(&tx)
		return &kgo.Record{Topic: rc.TxnTopic, Key: []byte(tx.CardID), Value: b}
	}
}
