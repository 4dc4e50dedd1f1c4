package processors

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/loadgen"
	"github.com/weirhq/weir/processors/statestore"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/schemas/registry"
)

// BenchmarkProcess measures the processor's per-event work without Kafka:
// decode, state update, every view's features, feature-row encoding, and
// the changelog records of a 1000-record transaction.
func BenchmarkProcess(b *testing.B) {
	for _, store := range []string{config.StoreMemory, config.StorePebble} {
		b.Run(store, func(b *testing.B) { benchmarkProcess(b, "../deploy/demo/weir.yaml", store) })
	}
	// With a hook (as the scorer runs): the event handed to hooks, with
	// its entity keys, must cost no allocation.
	var sink int
	hook := func(_ context.Context, ev *Event, out []*kgo.Record) ([]*kgo.Record, error) {
		sink += len(ev.Rows)
		return out, nil
	}
	b.Run("memory/hooked", func(b *testing.B) { benchmarkProcess(b, "../deploy/demo/weir.yaml", config.StoreMemory, hook) })
	// Issue 4's benchmark view: 15 features over 5 min, 1 h and 24 h.
	for _, store := range []string{config.StoreMemory, config.StorePebble} {
		b.Run("issue-workload/"+store, func(b *testing.B) { benchmarkProcess(b, "testdata/issue-workload.yaml", store) })
	}
}

func benchmarkProcess(b *testing.B, path, store string, hooks ...EventHook) {
	ctx := context.Background()
	task, txn, src := newMemTaskFrom(b, path)
	task.hooks = hooks
	if store == config.StorePebble {
		task.cfg.State = config.State{Store: config.StorePebble, Dir: b.TempDir()}
		st, err := task.openStore(0)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		task.parts[0] = newPartition(st)
		task.parts[0].fresh = true
	}
	g := loadgen.New(loadgen.Config{Seed: 1, Cards: 20000})
	recs := make([]*kgo.Record, 100000)
	for i := range recs {
		tx, _ := g.Next()
		v, err := txn.Encode(&tx)
		if err != nil {
			b.Fatal(err)
		}
		recs[i] = &kgo.Record{Topic: src.Topic, Key: []byte(tx.CardID), Value: v, Offset: int64(i)}
	}
	var out []*kgo.Record
	var err error
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := recs[i%len(recs)]
		if i > 0 && i%len(recs) == 0 { // start the stream over
			b.StopTimer()
			task.parts[0].store.Close()
			st, err := task.openStore(0)
			if err != nil {
				b.Fatal(err)
			}
			fresh := task.parts[0].fresh
			task.parts[0] = newPartition(st)
			task.parts[0].fresh = fresh
			b.StartTimer()
		}
		if out, err = task.Process(ctx, r, out[:0]); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 999 {
			out = task.Flush(out[:0])
			task.Commit()
		}
	}
}

// newMemTask returns a task of the demo source with partition 0 assigned
// and empty, without Kafka (a real registry serves its schemas).
func newMemTask(tb testing.TB) (*Task, *schemas.Serde, config.Source) {
	return newMemTaskFrom(tb, "../deploy/demo/weir.yaml")
}

func newMemTaskFrom(tb testing.TB, path string) (*Task, *schemas.Serde, config.Source) {
	tb.Helper()
	ctx := context.Background()
	srv, err := registry.Open("")
	if err != nil {
		tb.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close(); l.Close() })
	go srv.Serve(l)
	reg, err := schemas.NewSRClient("http://" + l.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	cfg, err := config.Load(path, func(string) string { return "" })
	if err != nil {
		tb.Fatal(err)
	}
	src := cfg.Sources[0]
	txn, err := schemas.NewSerde(ctx, reg, "t-value", schemas.MustParse(schemas.TransactionSchema))
	if err != nil {
		tb.Fatal(err)
	}
	rows, err := schemas.NewSerde(ctx, reg, "f-value", schemas.MustParse(schemas.FeatureRowSchema))
	if err != nil {
		tb.Fatal(err)
	}
	views := cfg.ViewsOfEntity(src.Name, "card")
	topics := []string{"f"}
	for i := 1; i < len(views); i++ {
		topics = append(topics, fmt.Sprint("f", i))
	}
	task, err := NewTask(TaskConfig{Source: src, Views: views, Entities: cfg.Entities,
		FeatureTopics: topics, ChangelogTopic: "c"}, txn, rows, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		tb.Fatal(err)
	}
	task.parts[0] = newPartition(statestore.NewMemory[*entityState]())
	return task, txn, src
}

// TestEntityExpiry checks that an entity is forgotten, with a changelog
// tombstone, once the partition's watermark is a TTL past its newest event,
// that an abort undoes the expiry, and that a later event starts afresh.
func TestEntityExpiry(t *testing.T) {
	ctx := context.Background()
	task, txn, src := newMemTask(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	ttl := (24 * time.Hour).Milliseconds()
	send := func(card string, ts int64, offset int64) *kgo.Record {
		t.Helper()
		v, err := txn.Encode(&schemas.Transaction{TxnID: fmt.Sprint("t", offset), CardID: card, Amount: 10, EventTime: ts})
		if err != nil {
			t.Fatal(err)
		}
		out, err := task.Process(ctx, &kgo.Record{Topic: src.Topic, Key: []byte(card), Value: v, Offset: offset}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out[0]
	}
	tombstones := func(recs []*kgo.Record) []string { // the entities whose every record is deleted
		var keys []string
		for _, r := range recs {
			if r.Topic == "c" && r.Value == nil {
				k := string(r.Key[:len(r.Key)-9])
				if !slices.Contains(keys, k) {
					keys = append(keys, k)
				}
			}
		}
		return keys
	}
	send("a", t0, 0)
	send("a", t0+1000, 1)
	task.Flush(nil)
	task.Commit()
	send("b", t0+ttl+2*time.Minute.Milliseconds(), 2)
	if got := tombstones(task.Flush(nil)); fmt.Sprint(got) != "[a]" {
		t.Fatalf("tombstones %v, want [a]", got)
	}
	task.Abort() // the transaction failed: a is still there
	if _, ok, _ := task.parts[0].store.Get("a"); !ok {
		t.Fatal("an aborted expiry removed the entity")
	}
	send("b", t0+ttl+2*time.Minute.Milliseconds(), 2)
	if got := tombstones(task.Flush(nil)); fmt.Sprint(got) != "[a]" {
		t.Fatalf("after the retry, tombstones %v, want [a]", got)
	}
	task.Commit()
	if _, ok, _ := task.parts[0].store.Get("a"); ok || task.parts[0].store.Len() != 1 {
		t.Fatalf("state after expiry holds %d entities, a present: %v", task.parts[0].store.Len(), ok)
	}
	// a comes back: its windows start empty.
	rec := send("a", t0+ttl+3*time.Minute.Milliseconds(), 3)
	var row schemas.FeatureRow
	if err := task.rowSerde.Decode(ctx, rec.Value, &row); err != nil {
		t.Fatal(err)
	}
	if row.Values[0].Name != "txn_count_5m" || row.Values[0].Value != 1 {
		t.Fatalf("returning entity's first row %+v, want a count of 1", row.Values)
	}
	// No new sweep within a minute of event time.
	send("c", t0+ttl+3*time.Minute.Milliseconds()+1000, 4)
	if got := tombstones(task.Flush(nil)); len(got) != 0 {
		t.Fatalf("swept again within a minute: %v", got)
	}
}

// TestWhereThroughTask checks filters on the task's decode path: a string
// field and a numeric field of the source, projected and compared.
func TestWhereThroughTask(t *testing.T) {
	ctx := context.Background()
	task, txn, src := newMemTaskFrom(t, "../internal/config/testdata/where.good.yaml")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	var row schemas.FeatureRow
	for i, tx := range []schemas.Transaction{
		{TxnID: "1", CardID: "c", Country: "GB", Amount: 600, EventTime: t0},
		{TxnID: "2", CardID: "c", Country: "FR", Amount: 20, EventTime: t0 + 1000},
		{TxnID: "3", CardID: "c", Country: "NG", Amount: 700, EventTime: t0 + 2000},
	} {
		v, err := txn.Encode(&tx)
		if err != nil {
			t.Fatal(err)
		}
		out, err := task.Process(ctx, &kgo.Record{Topic: src.Topic, Key: []byte("c"), Value: v, Offset: int64(i)}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := task.rowSerde.Decode(ctx, out[0].Value, &row); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]float64{}
	for _, v := range row.Values {
		got[v.Name] = v.Value
	}
	if got["txn_count_1h"] != 3 || got["foreign_count_1h"] != 2 || got["big_count_1h"] != 2 {
		t.Fatalf("features after GB 600, FR 20, NG 700: %v", got)
	}
}

// TestIdlePartitionClosesWindows checks that a partition without events
// for the idle timeout closes its windows at the busy partitions'
// watermark: Due reports it, and Flush emits the final row, with no input.
func TestIdlePartitionClosesWindows(t *testing.T) {
	ctx := context.Background()
	task, txn, src := newMemTaskFrom(t, "../internal/config/testdata/windows.good.yaml")
	task.parts[1] = newPartition(statestore.NewMemory[*entityState]())
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	send := func(part int32, card string, ts, offset int64) {
		t.Helper()
		v, err := txn.Encode(&schemas.Transaction{TxnID: fmt.Sprint("t", offset), CardID: card, MerchantID: "m", Amount: 10, EventTime: ts})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := task.Process(ctx, &kgo.Record{Topic: src.Topic, Partition: part, Key: []byte(card), Value: v, Offset: offset}, nil); err != nil {
			t.Fatal(err)
		}
	}
	finals := func(recs []*kgo.Record) []string {
		var out []string
		for _, r := range recs {
			if r.Topic == "c" {
				continue
			}
			var row schemas.FeatureRow
			if err := task.rowSerde.Decode(ctx, r.Value, &row); err != nil {
				t.Fatal(err)
			}
			if row.View == "card_hourly" && row.EventTime == row.WindowEnd-1 {
				out = append(out, fmt.Sprintf("%s/%d:%s:n=%v", r.Topic, r.Partition, row.Entity, row.Values[0].Value))
			}
		}
		return out
	}
	send(0, "a", t0+60_000, 0)
	send(0, "a", t0+120_000, 1)
	task.Flush(nil)
	task.Commit()
	send(1, "b", t0+2*time.Hour.Milliseconds(), 0)
	task.Flush(nil)
	task.Commit()
	now := time.Now()
	if task.Due(now) {
		t.Fatal("due while partition 0 is not idle yet")
	}
	task.parts[0].lastEvent = now.Add(-time.Minute) // idle_timeout is 30s by default
	if !task.Due(now) {
		t.Fatal("not due with partition 0 idle behind partition 1's watermark")
	}
	out := task.Flush(nil)
	if got := finals(out); fmt.Sprint(got) != "[f1/0:a:n=2]" {
		t.Fatalf("final rows %v, want card a's hour on partition 0", got)
	}
	task.Abort() // the transaction failed: the timer must still be there
	if !task.Due(now) {
		t.Fatal("an aborted close lost the timer")
	}
	if got := finals(task.Flush(nil)); len(got) != 1 {
		t.Fatalf("after the retry, final rows %v", got)
	}
	task.Commit()
	if task.Due(now) {
		t.Fatal("still due after the close committed")
	}
}

// TestBigState puts WEIR_BIG_STATE entities (e.g. 10000000) through a task
// with the on-disk store and issue 4's view (three sliding windows, five
// aggregations each), two events per entity, committing every 10,000
// events, and reports the process's peak RSS, the store's bytes and the
// rate. It is a measurement, not run by make test.
func TestBigState(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("WEIR_BIG_STATE"))
	if n == 0 {
		t.Skip("set WEIR_BIG_STATE to a number of entities")
	}
	ctx := context.Background()
	task, txn, src := newMemTaskFrom(t, "testdata/issue-workload.yaml")
	task.cfg.State = config.State{Store: config.StorePebble, Dir: t.TempDir()}
	st, err := task.openStore(0)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	task.parts[0] = newPartition(st)
	task.parts[0].fresh = true
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	start := time.Now()
	var out []*kgo.Record
	events := 2 * n
	for i := range events {
		card := i % n
		// Both passes over the cards within a day of event time: every
		// entity holds two events in its 24h window.
		ts := t0 + int64(i)*(20*time.Hour).Milliseconds()/int64(events)
		v, err := txn.Encode(&schemas.Transaction{TxnID: strconv.Itoa(i), CardID: fmt.Sprintf("card-%09d", card), Amount: float64(i % 997), EventTime: ts})
		if err != nil {
			t.Fatal(err)
		}
		if out, err = task.Process(ctx, &kgo.Record{Topic: src.Topic, Key: []byte(fmt.Sprintf("card-%09d", card)), Value: v, Offset: int64(i)}, out[:0]); err != nil {
			t.Fatal(err)
		}
		if i%10_000 == 9_999 {
			out = task.Flush(out[:0])
			task.Commit()
			if task.broken != nil {
				t.Fatal(task.broken)
			}
		}
		if i%1_000_000 == 999_999 {
			t.Logf("%d events, %d entities, %.0f events/s, peak RSS %s, store %d MB", i+1, st.Len(), float64(i+1)/time.Since(start).Seconds(), peakRSS(), st.SizeBytes()>>20)
		}
	}
	task.Flush(out[:0])
	task.Commit()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("done: %d events, %d entities in %s (%.0f events/s); peak RSS %s, Go heap in use %d MB, store %d MB",
		events, st.Len(), time.Since(start).Round(time.Second), float64(events)/time.Since(start).Seconds(), peakRSS(), ms.HeapInuse>>20, st.SizeBytes()>>20)
}

// peakRSS is the process's peak resident set (VmHWM).
func peakRSS() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			return strings.Join(strings.Fields(strings.TrimPrefix(line, "VmHWM:")), " ")
		}
	}
	return "?"
}

// TestHooksSeeTheLateEventsOwnRow sends a late event (within the allowed
// lateness) whose corrections of the entity's later rows are emitted after
// its own row: the hooks must still be handed the late event's own row.
func TestHooksSeeTheLateEventsOwnRow(t *testing.T) {
	ctx := context.Background()
	task, txn, src := newMemTask(t)
	var got []*schemas.FeatureRow
	task.hooks = []EventHook{func(_ context.Context, ev *Event, out []*kgo.Record) ([]*kgo.Record, error) {
		for _, r := range ev.Rows {
			if r.View == "card_activity" {
				c := *r
				c.Values = slices.Clone(r.Values)
				got = append(got, &c)
			}
		}
		return out, nil
	}}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	var outs [][]*kgo.Record
	for i, dt := range []int64{0, 20, 40, 10} { // the last is 30 s behind the newest
		v, err := txn.Encode(&schemas.Transaction{TxnID: fmt.Sprint("t", i), CardID: "a", Amount: float64(int(1) << i), EventTime: t0 + dt*1000})
		if err != nil {
			t.Fatal(err)
		}
		out, err := task.Process(ctx, &kgo.Record{Topic: src.Topic, Key: []byte("a"), Value: v, Offset: int64(i)}, nil)
		if err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		outs = append(outs, out)
	}
	if len(got) != 4 {
		t.Fatalf("hooks saw %d card_activity rows, want 4", len(got))
	}
	late := got[3]
	value := func(r *schemas.FeatureRow, name string) float64 {
		for _, v := range r.Values {
			if v.Name == name {
				return v.Value
			}
		}
		t.Fatalf("no feature %s", name)
		return 0
	}
	// Its own row: the events at 0 s and 10 s (amounts 1 and 8).
	if late.EventTime != t0+10_000 || late.SourceOffset != 3 || late.RevisesOffset != -1 || late.EventID != "t3" {
		t.Fatalf("hooks saw row at %d offset %d revising %d id %s, want the late event's own", late.EventTime-t0, late.SourceOffset, late.RevisesOffset, late.EventID)
	}
	if c, s := value(late, "txn_count_5m"), value(late, "amount_sum_5m"); c != 2 || s != 9 {
		t.Fatalf("late event's own row: count %v sum %v, want 2 and 9", c, s)
	}
	// Its output: its own row, then corrections of the rows at 20 s and 40 s.
	var revised []int64
	for _, r := range outs[3] {
		if r.Topic != "f" {
			continue
		}
		var row schemas.FeatureRow
		if err := task.rowSerde.Decode(ctx, r.Value, &row); err != nil {
			t.Fatal(err)
		}
		revised = append(revised, row.RevisesOffset)
	}
	if fmt.Sprint(revised) != "[-1 1 2]" {
		t.Fatalf("late event's rows revise %v, want [-1 1 2]", revised)
	}
}
