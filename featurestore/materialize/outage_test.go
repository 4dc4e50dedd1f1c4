package materialize_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/featurestore/materialize"
	"github.com/weirhq/weir/featurestore/offline"
	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
)

// proxy is a TCP proxy the test can cut: while down it closes every open
// connection and every new one at once, as a ClickHouse that went away
// would (refused or reset). It stands in front of the shared ClickHouse so
// the outage touches this test alone.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	t.Cleanup(func() { ln.Close(); p.cut(); p.wg.Wait() })
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[s] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		p.wg.Go(func() { pipe(s, c) })
		p.wg.Go(func() { pipe(c, s) })
	}
}

// cut closes every connection and refuses new ones until restore.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *proxy) restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = false
}

// groupLag returns the records of topic not yet committed by group (end
// offsets minus committed offsets, summed over partitions) and the committed
// offsets.
func groupLag(ctx context.Context, adm *kadm.Client, group, topic string) (int64, map[int32]int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, nil, err
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return 0, nil, err
	}
	var lag int64
	at := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		c := int64(0)
		if co, ok := committed.Lookup(topic, o.Partition); ok && co.At >= 0 {
			c = co.At
		}
		at[o.Partition] = c
		lag += o.Offset - c
	})
	return lag, at, nil
}

// TestClickHouseOutage runs the online and offline materializers while
// feature rows keep arriving, cuts ClickHouse off (a proxy in front of it)
// for a while and restores it: the offline materializer stalls (its lag
// grows, its offsets stay), Redis keeps up through the outage, and once
// ClickHouse is back the offline materializer catches up with every row
// present exactly once.
func TestClickHouseOutage(t *testing.T) {
	seeds, kind := testenv.Kafka(t)
	t.Logf("kafka: %s", kind)
	rdb, prefix := testenv.Redis(t)
	direct, db := testenv.ClickHouse(t)
	reg := newRegistry(t)
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}

	px := newProxy(t, testenv.ClickHouseAddr(t))
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{px.addr()}, Auth: clickhouse.Auth{Database: db, Username: "default"},
		DialTimeout: 2 * time.Second, ReadTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	topic := testenv.Name("weir.features.card")
	prod, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	adm := kadm.NewClient(prod)
	createTopics(t, prod, topic)
	sd := serde(t, reg, topic, schemas.FeatureRowSchema)

	on := online.New(rdb, prefix, []config.View{view})
	off, err := offline.New(conn, db, []config.View{view})
	if err != nil {
		t.Fatal(err)
	}
	if err := off.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	preg := prometheus.NewRegistry()
	cfg := func(name string) materialize.Config {
		return materialize.Config{Name: name, Opts: []kgo.Opt{kgo.SeedBrokers(seeds...)}, Group: testenv.Name(name), Topic: topic,
			MaxBatch: 2000, Linger: 50 * time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}
	}
	cOn, cOff := cfg("online"), cfg("offline")
	mOn, err := materialize.NewFeatures(cOn, &view, sd, on, log, preg)
	if err != nil {
		t.Fatal(err)
	}
	mOff, err := materialize.NewFeatures(cOff, &view, sd, off, log, preg)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, mOn, mOff)

	// Rows arrive at ~2,000/s: 100 every 50 ms, each with its own source
	// offset, 50 entities.
	const entities = 50
	version := view.Version()
	var produced atomic.Int64
	var produceErr atomic.Pointer[error]
	stopProducing := make(chan struct{})
	var pwg sync.WaitGroup
	pwg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopProducing:
				return
			case <-tick.C:
			}
			first := produced.Load()
			recs := make([]*kgo.Record, 0, 100)
			for i := first; i < first+100; i++ {
				r := schemas.FeatureRow{Entity: fmt.Sprintf("e%02d", i%entities), View: view.Name, ViewVersion: version,
					EventTime: 1_760_000_000_000 + i, KnownTime: 1_760_000_000_000 + i, SourceTopic: "tx", SourceOffset: i, RevisesOffset: -1,
					Values: []schemas.FeatureValue{{Name: "n", Value: float64(i)}, {Name: "amt", Value: float64(i) / 2}}}
				b, err := sd.Encode(&r)
				if err != nil {
					produceErr.Store(&err)
					return
				}
				recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(r.Entity), Value: b})
			}
			if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				produceErr.Store(&err)
				return
			}
			produced.Add(100)
		}
	})
	stopProducer := sync.OnceFunc(func() { close(stopProducing); pwg.Wait() })
	defer stopProducer()

	lags := func() (on, off int64, offCommitted map[int32]int64) {
		var err error
		if on, _, err = groupLag(ctx, adm, cOn.Group, topic); err != nil {
			t.Fatal(err)
		}
		if off, offCommitted, err = groupLag(ctx, adm, cOff.Group, topic); err != nil {
			t.Fatal(err)
		}
		return on, off, offCommitted
	}
	sleep := func(d time.Duration) { time.Sleep(d) } // wall-clock phases against real services

	sleep(3 * time.Second)
	eventually(t, "offline materializer writing before the outage", func() (bool, string) {
		w := written(t, preg, "offline")
		return w > 0, fmt.Sprint(w)
	})
	_, lagBefore, _ := lags()
	px.cut()
	cutAt, rowsAtCut := time.Now(), produced.Load()
	t.Logf("outage: ClickHouse cut at %d rows produced, offline lag %d", rowsAtCut, lagBefore)
	sleep(time.Second) // a write in flight at the cut fails; nothing is committed after this
	_, _, frozen := lags()
	writtenFrozen := written(t, preg, "offline")
	var maxOnLag int64
	for time.Since(cutAt) < 6*time.Second {
		sleep(250 * time.Millisecond)
		onLag, _, _ := lags()
		maxOnLag = max(maxOnLag, onLag)
	}
	onLag, offLag, committed := lags()
	rowsAtRestore := produced.Load()
	for p, o := range committed {
		if o != frozen[p] {
			t.Errorf("offline offsets moved during the outage: partition %d from %d to %d", p, frozen[p], o)
		}
	}
	if w := written(t, preg, "offline"); w != writtenFrozen {
		t.Errorf("offline rows written went from %v to %v while ClickHouse was cut", writtenFrozen, w)
	}
	if offLag < rowsAtRestore-rowsAtCut {
		t.Errorf("offline lag %d at the end of the outage, want at least the %d rows produced during it", offLag, rowsAtRestore-rowsAtCut)
	}
	if onLag > 2000 || maxOnLag > 4000 {
		t.Errorf("online materializer fell behind during the ClickHouse outage: lag %d now, %d at most", onLag, maxOnLag)
	}
	retriesAtRestore := metric(t, preg, "weir_materialize_write_retries_total", map[string]string{"materializer": "offline"})
	if retriesAtRestore == 0 {
		t.Error("no failed offline write was retried during the outage")
	}
	t.Logf("outage: %.1fs, %d rows produced during it; offline lag %d -> %d (online lag %d, at most %d); %v failed offline writes retried",
		time.Since(cutAt).Seconds(), rowsAtRestore-rowsAtCut, lagBefore, offLag, onLag, maxOnLag, retriesAtRestore)

	px.restore()
	restoredAt := time.Now()
	eventually(t, "offline lag back under 1000 after the outage", func() (bool, string) {
		_, l, _ := lags()
		return l < 1000, fmt.Sprint(l)
	})
	t.Logf("outage: offline lag %d -> <1000 in %.2fs after ClickHouse returned", offLag, time.Since(restoredAt).Seconds())
	sleep(time.Second)
	stopProducer()
	if e := produceErr.Load(); e != nil {
		t.Fatal(*e)
	}
	total := produced.Load()
	eventually(t, "both materializers at lag 0", func() (bool, string) {
		a, b, _ := lags()
		return a == 0 && b == 0, fmt.Sprintf("online %d, offline %d", a, b)
	})
	stop()

	// ClickHouse: every row once after deduplication, none missing, none
	// other; the raw count shows the retried duplicates merges collapse.
	q := "SELECT source_offset, count() FROM `" + db + "`.`" + offline.TableName(view.Name, version) +
		"` GROUP BY entity, event_time_ms, source_partition, source_offset, window_start_ms, revises_offset"
	res, err := direct.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	seen := make([]int, total)
	var raw, distinct uint64
	for res.Next() {
		var o int64
		var n uint64
		if err := res.Scan(&o, &n); err != nil {
			t.Fatal(err)
		}
		if o < 0 || o >= total {
			t.Errorf("row of source offset %d in ClickHouse was never produced", o)
			continue
		}
		seen[o]++
		raw += n
		distinct++
	}
	res.Close()
	for o, n := range seen {
		if n != 1 {
			t.Errorf("row %d: %d times in ClickHouse after deduplication", o, n)
		}
	}
	t.Logf("ClickHouse: %d rows produced, %d distinct stored, %d stored before merges collapse duplicates", total, distinct, raw)

	// Redis: the newest row of every entity.
	for e := range entities {
		last := total - entities + int64(e)
		got, ok, err := on.Get(ctx, view.Name, version, fmt.Sprintf("e%02d", e))
		if err != nil || !ok || got.Offset != last {
			t.Errorf("online e%02d: %+v (found %v, err %v), want offset %d", e, got, ok, err, last)
		}
	}
}
