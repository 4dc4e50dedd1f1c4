package faulttest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/yaml.v3"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/loadgen"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/schemas/registry"
	"github.com/weirhq/weir/streams"
)

// The view under test: card_activity of deploy/demo/weir.yaml.
const view = "card_activity"

// The stream's disorder and what the processor allows of it. A moved-back
// event is behind its partition's newest by about the amount it moved: up
// to outOfOrder it is on time, up to outOfOrder+lateness it is late but
// accepted (it corrects the rows of its card's events after it), and
// beyond that, more than half of them, too late (dead-lettered "late").
// cards is fewer than the demo's 5000, so that a card's events are about
// 5s apart in event time and a late event corrects several rows.
const (
	disorder    = 0.05             // fraction of events moved back in event time
	disorderMax = time.Minute      // the most an event moves back
	outOfOrder  = 5 * time.Second  // the source's out_of_order
	lateness    = 20 * time.Second // the view's allowed lateness
	cards       = 1000
)

// envInt reads a positive size from the environment, def when unset.
func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

// moduleRoot is the directory of go.mod, two levels up from this package.
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	return root
}

var build struct {
	once sync.Once
	dir  string // removed by TestMain
	bin  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// weirBinary builds cmd/weir once per test binary: the processor under test
// is the real binary, as an operator runs it.
func weirBinary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		root := moduleRoot(t)
		build.dir, build.err = os.MkdirTemp("", "weir-faulttest-bin-")
		if build.err != nil {
			return
		}
		build.bin = filepath.Join(build.dir, "weir")
		cmd := exec.Command("go", "build", "-o", build.bin, "./cmd/weir")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./cmd/weir: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

// rig is one test's world: a config of its own (unique topics, group and
// client id), a schema registry, the binary and a scratch directory.
type rig struct {
	t       *testing.T
	root    string
	dir     string // config, processor logs, CSVs; kept when the test fails
	bin     string
	py      string
	cfgPath string
	cfg     *config.Config
	regURL  string
	opts    []kgo.Opt
	txn     *schemas.Serde
	label   *schemas.Serde
	rows    *schemas.Serde
	procs   []*proc // every processor started, in order
}

func newRig(t *testing.T) *rig {
	t.Helper()
	seeds := testenv.RealKafka(t)
	r := &rig{t: t, root: moduleRoot(t), py: testenv.Python(t)}
	r.bin = weirBinary(t)
	dir, err := os.MkdirTemp("", "weir-faulttest-")
	if err != nil {
		t.Fatal(err)
	}
	r.dir = dir
	t.Cleanup(func() {
		for _, p := range r.procs {
			p.kill() // a no-op for those that exited
		}
		if t.Failed() {
			for _, p := range r.procs[max(0, len(r.procs)-2):] {
				if !p.tailed {
					p.tail(t, 40)
				}
			}
			t.Logf("kept %s (config, processor logs, oracle CSVs)", dir)
			return
		}
		os.RemoveAll(dir)
	})

	// A schema registry of this test's own, in process.
	srv, err := registry.Open(filepath.Join(dir, "registry"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close(); l.Close() })
	r.regURL = "http://" + l.Addr().String()

	r.writeConfig(seeds)
	if r.opts, err = streams.ClientOpts(r.cfg.Kafka); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cl := r.client()
	defer cl.Close()
	if err := streams.Provision(ctx, kadm.NewClient(cl), int16(r.cfg.Topics.Replication), streams.Topics(r.cfg)); err != nil {
		t.Fatal(err)
	}
	reg, err := schemas.NewSRClient(r.regURL)
	if err != nil {
		t.Fatal(err)
	}
	serde := func(topic, schema string) *schemas.Serde {
		s, err := schemas.NewSerde(ctx, reg, schemas.Subject(topic), schemas.MustParse(schema))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	r.txn = serde(r.cfg.Sources[0].Topic, schemas.TransactionSchema)
	r.label = serde(r.cfg.Labels.Topic, schemas.LabelSchema)
	r.rows = serde(r.cfg.FeaturesTopic(view), schemas.FeatureRowSchema)
	return r
}

// writeConfig derives the processor's weir.yaml from the demo's: the same
// source, entity and view, without models, monitors and retrain policies
// (so the processor needs no champion), on this test's topics.
func (r *rig) writeConfig(seeds []string) {
	t := r.t
	b, err := os.ReadFile(filepath.Join(r.root, "deploy/demo/weir.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	section := func(v any) map[string]any {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("deploy/demo/weir.yaml: unexpected shape %T", v)
		}
		return m
	}
	for _, k := range []string{"models", "monitors", "retrain"} {
		delete(doc, k)
	}
	doc["data_dir"] = filepath.Join(r.dir, "data")
	kafka := section(doc["kafka"])
	kafka["brokers"] = seeds
	kafka["client_id"] = testenv.Name("faulttest") // names the consumer group and the transactional id
	doc["schema_registry"] = map[string]any{"url": r.regURL}
	section(doc["topics"])["prefix"] = testenv.Name("weir")
	sources, ok := doc["sources"].([]any)
	if !ok || len(sources) != 1 {
		t.Fatalf("deploy/demo/weir.yaml: want one source, got %v", doc["sources"])
	}
	section(sources[0])["topic"] = testenv.Name("payments")
	section(sources[0])["out_of_order"] = outOfOrder.String()
	views, ok := doc["views"].([]any)
	if !ok || len(views) != 1 || section(views[0])["name"] != view {
		t.Fatalf("deploy/demo/weir.yaml: want the one view %s, got %v", view, doc["views"])
	}
	section(views[0])["lateness"] = lateness.String()
	section(doc["labels"])["topic"] = testenv.Name("labels")
	doc["serve"] = map[string]any{"addr": "127.0.0.1:0"}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	r.cfgPath = filepath.Join(r.dir, "weir.yaml")
	if err := os.WriteFile(r.cfgPath, out, 0o644); err != nil {
		t.Fatal(err)
	}
	// The same validation `weir run` applies; no environment, so the file
	// alone must be complete.
	if r.cfg, err = config.Load(r.cfgPath, func(string) string { return "" }); err != nil {
		t.Fatalf("derived config: %v", err)
	}
	if len(r.cfg.Models) != 0 || len(r.cfg.ViewsOf(r.cfg.Sources[0].Name)) != 1 {
		t.Fatalf("derived config: %d models, views %v", len(r.cfg.Models), r.cfg.ViewsOf(r.cfg.Sources[0].Name))
	}
	if v, _ := r.cfg.View(view); r.cfg.Sources[0].OutOfOrder.D() != outOfOrder || v.Lateness.D() != lateness || v.Kind != config.KindSliding {
		t.Fatalf("derived config: out_of_order %s, view %s kind %s lateness %s; want %s, sliding, %s",
			r.cfg.Sources[0].OutOfOrder.D(), view, v.Kind, v.Lateness.D(), outOfOrder, lateness)
	}
}

func (r *rig) client(extra ...kgo.Opt) *kgo.Client {
	r.t.Helper()
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), r.opts...), extra...)...)
	if err != nil {
		r.t.Fatal(err)
	}
	return cl
}

// producer runs loadgen in bursts, one at a time, in the background. The
// bursts continue one seeded stream (contiguous in event time).
type producer struct {
	cl       *kgo.Client
	gen      *loadgen.Generator
	rc       loadgen.RunConfig
	done     chan struct{} // of the current burst; closed when none runs
	st       loadgen.Stats // totals of the finished bursts
	err      error
	produced time.Duration // time spent producing
}

// newProducer returns a producer of seed's stream of cards cards, with
// disorder, and with a bad record (undecodable, keyless, absurd time, in
// turn) after every badEvery transactions of a burst.
func (r *rig) newProducer(seed uint64, badEvery int) *producer {
	pr := &producer{
		cl:  r.client(kgo.ProducerLinger(5 * time.Millisecond)),
		gen: loadgen.New(loadgen.Config{Seed: seed, Cards: cards, Disorder: disorder, DisorderMax: disorderMax}),
		rc: loadgen.RunConfig{TxnTopic: r.cfg.Sources[0].Topic, LabelTopic: r.cfg.Labels.Topic,
			Txn: r.txn, Label: r.label, BadEvery: badEvery},
		done: make(chan struct{}),
	}
	close(pr.done)
	r.t.Cleanup(func() { <-pr.done; pr.cl.Close() })
	return pr
}

// burst produces n transactions at rate per second (0: as fast as
// possible), after the previous burst finished; it returns at once.
func (pr *producer) burst(n int, rate float64) {
	<-pr.done
	if pr.err != nil {
		return
	}
	done := make(chan struct{})
	pr.done = done
	rc := pr.rc
	rc.Count, rc.Rate = n, rate
	go func() {
		defer close(done)
		start := time.Now()
		st, err := loadgen.Run(context.Background(), pr.cl, pr.gen, rc, slog.New(slog.DiscardHandler))
		pr.produced += time.Since(start)
		pr.st.Transactions += st.Transactions
		pr.st.Bad += st.Bad
		pr.st.Labels += st.Labels
		pr.err = err
	}()
}

// wait waits for the current burst and returns the totals.
func (pr *producer) wait(t *testing.T) loadgen.Stats {
	t.Helper()
	<-pr.done
	if pr.err != nil {
		t.Fatal(pr.err)
	}
	return pr.st
}

func (pr *producer) running() bool {
	select {
	case <-pr.done:
		return false
	default:
		return true
	}
}

// rowCounter counts the committed records of topics as they appear
// (read_committed, from the start).
type rowCounter struct {
	n      atomic.Int64
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *rig) countRows(topics ...string) *rowCounter {
	cl := r.client(kgo.ConsumeTopics(topics...), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithCancel(context.Background())
	c := &rowCounter{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer cl.Close()
		for ctx.Err() == nil {
			c.n.Add(int64(cl.PollFetches(ctx).NumRecords()))
		}
	}()
	r.t.Cleanup(c.close)
	return c
}

func (c *rowCounter) close() { c.cancel(); <-c.done }

// changelogWatch signals when records reach the source's changelog topic,
// read uncommitted. The processor writes its changelog at the end of each
// transaction, after the transaction's other outputs and just before it
// commits: a kill right then leaves the most written and the least
// committed.
type changelogWatch struct {
	writes chan struct{} // a signal, at most one pending
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *rig) watchChangelog() *changelogWatch {
	cl := r.client(kgo.ConsumeTopics(r.cfg.ChangelogTopic(r.cfg.Sources[0].Name)),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtEnd()))
	ctx, cancel := context.WithCancel(context.Background())
	w := &changelogWatch{writes: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(w.done)
		defer cl.Close()
		for ctx.Err() == nil {
			if cl.PollFetches(ctx).NumRecords() > 0 {
				select {
				case w.writes <- struct{}{}:
				default:
				}
			}
		}
	}()
	r.t.Cleanup(func() { w.cancel(); <-w.done })
	return w
}

// next waits up to timeout for a changelog write that starts after the
// call, and reports whether one came.
func (w *changelogWatch) next(timeout time.Duration) bool {
	select {
	case <-w.writes: // an earlier write
	default:
	}
	select {
	case <-w.writes:
		return true
	case <-time.After(timeout):
		return false
	}
}

// readAll calls fn for every committed record of topic, from the start up
// to the last stable offset of each partition as it is when called.
// Control records (transaction markers) are read to know when a partition
// ends, but not passed to fn.
func (r *rig) readAll(ctx context.Context, topic string, fn func(*kgo.Record)) error {
	adm := kadm.NewClient(r.client())
	defer adm.Close()
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("list stable offsets of %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	want := map[int32]int64{}
	from := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		s, _ := starts.Lookup(topic, o.Partition)
		if o.Offset > s.Offset {
			want[o.Partition] = o.Offset
			from[o.Partition] = kgo.NewOffset().At(s.Offset)
		}
	})
	if len(want) == 0 {
		return nil
	}
	cl := r.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: from}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	defer cl.Close()
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %s: %w (partitions left: %v)", topic, err, want)
		}
		var ferr error
		fs.EachError(func(tp string, p int32, err error) { ferr = fmt.Errorf("read %s/%d: %w", tp, p, err) })
		if ferr != nil {
			return ferr
		}
		fs.EachRecord(func(rec *kgo.Record) {
			end, ok := want[rec.Partition]
			if !ok || rec.Offset >= end {
				return
			}
			if !rec.Attrs.IsControl() {
				fn(rec)
			}
			if rec.Offset >= end-1 {
				delete(want, rec.Partition)
			}
		})
	}
	return nil
}

// waitRows waits until c has counted want records, calling tick about
// every 200ms (to notice or handle an exited processor) and logging
// progress every 15s. It reports when the count was reached. On timeout,
// or once the count has not moved for stall, it makes every processor
// still running dump its goroutines into its log (SIGQUIT), fails the test
// and returns false: the caller goes on to the check, which says what is
// missing.
func (r *rig) waitRows(c *rowCounter, want int64, timeout, stall time.Duration, tick func()) (time.Time, bool) {
	t := r.t
	t.Helper()
	deadline := time.Now().Add(timeout)
	lastLog := time.Now()
	last, moved := int64(-1), time.Now()
	for {
		n := c.n.Load()
		if n >= want {
			return time.Now(), true
		}
		if n != last {
			last, moved = n, time.Now()
		}
		if time.Now().After(deadline) || time.Since(moved) > stall {
			for _, p := range r.procs {
				if p.alive() {
					p.quit()
					t.Logf("processor run %d was stuck: its goroutines are in %s", p.n, p.logPath)
				}
			}
			t.Errorf("%d of %d records committed; gave up after %s (limit %s), nothing new for %s (limit %s)",
				n, want, time.Since(deadline.Add(-timeout)).Round(time.Second), timeout, time.Since(moved).Round(time.Second), stall)
			return time.Now(), false
		}
		if time.Since(lastLog) > 15*time.Second {
			t.Logf("waiting: %d of %d records committed", n, want)
			lastLog = time.Now()
		}
		if tick != nil {
			tick()
		}
		time.Sleep(200 * time.Millisecond)
	}
}
