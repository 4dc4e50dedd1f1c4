package faulttest

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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
				p.tail(t, 40)
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
}

func (r *rig) client(extra ...kgo.Opt) *kgo.Client {
	r.t.Helper()
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), r.opts...), extra...)...)
	if err != nil {
		r.t.Fatal(err)
	}
	return cl
}

// proc is one run of `weir run --role processor` as a subprocess.
type proc struct {
	n       int // 0 for the first run
	cmd     *exec.Cmd
	logPath string
	started time.Time

	assigned chan struct{} // closed at the first "partitions assigned" log line
	exited   chan struct{} // closed once the process exited and was waited for
	waitErr  error

	mu         sync.Mutex
	assignedAt time.Time
	restores   []restore
	errors     []string // log lines at level ERROR, and fatal "weir:" lines
}

// restore is one "state restored" log line.
type restore struct {
	at      time.Time
	records int
	took    time.Duration
}

var (
	restoreLine = regexp.MustCompile(`msg="state restored".* records=(\d+) took=(\S+)`)
	errorLine   = regexp.MustCompile(`level=ERROR|^weir: `)
)

// startProcessor starts the processor with the same --instance every time,
// so that each run's transactional id fences the previous one's.
func (r *rig) startProcessor() *proc {
	t := r.t
	t.Helper()
	n := len(r.procs)
	p := &proc{n: n, logPath: filepath.Join(r.dir, fmt.Sprintf("processor.%02d.log", n)),
		assigned: make(chan struct{}), exited: make(chan struct{})}
	logf, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(r.bin, "run", "--role", "processor", "--config", r.cfgPath, "--instance", "p1")
	p.cmd.Dir = r.dir
	// The file names every endpoint; the variables that .weir/env exports
	// would override it, so they are set to the same values.
	p.cmd.Env = append(os.Environ(),
		"WEIR_KAFKA_BROKERS="+strings.Join(r.cfg.Kafka.Brokers, ","),
		"WEIR_SCHEMA_REGISTRY_URL="+r.regURL)
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	p.started = time.Now()
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start processor: %v", err)
	}
	pw.Close()
	r.procs = append(r.procs, p)
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			now := time.Now()
			switch {
			case strings.Contains(line, `msg="partitions assigned"`):
				p.mu.Lock()
				if p.assignedAt.IsZero() {
					p.assignedAt = now
					close(p.assigned)
				}
				p.mu.Unlock()
			case restoreLine.MatchString(line):
				m := restoreLine.FindStringSubmatch(line)
				recs, _ := strconv.Atoi(m[1])
				took, _ := time.ParseDuration(m[2])
				p.mu.Lock()
				p.restores = append(p.restores, restore{at: now, records: recs, took: took})
				p.mu.Unlock()
			case errorLine.MatchString(line):
				p.mu.Lock()
				p.errors = append(p.errors, line)
				p.mu.Unlock()
			}
		}
		io.Copy(io.Discard, pr)
		p.waitErr = p.cmd.Wait()
		pr.Close()
		logf.Close()
	}()
	return p
}

// kill sends SIGKILL (kill -9) and waits for the process to be gone.
func (p *proc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// stop sends SIGTERM (a clean shutdown), and SIGKILL after timeout.
func (p *proc) stop(t *testing.T, timeout time.Duration) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(timeout):
		t.Errorf("processor run %d did not stop %s after SIGTERM; killing it", p.n, timeout)
		p.kill()
	}
}

func (p *proc) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// tail logs the last lines of the run's log.
func (p *proc) tail(t *testing.T, n int) {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Logf("processor run %d: %v", p.n, err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	t.Logf("processor run %d (%s, exit %v), last lines:\n%s", p.n, p.logPath, p.waitErr, strings.Join(lines[max(0, len(lines)-n):], "\n"))
}

// summary reports how long a run took to get its partitions and restore.
func (p *proc) summary() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.assignedAt.IsZero() {
		return "never assigned"
	}
	s := fmt.Sprintf("assigned %s after start", p.assignedAt.Sub(p.started).Round(10*time.Millisecond))
	for _, rs := range p.restores {
		s += fmt.Sprintf(", restored %d changelog records in %s", rs.records, rs.took)
	}
	return s
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

// newProducer returns a producer of seed's stream, with a bad record
// (undecodable, keyless, absurd time, in turn) after every badEvery
// transactions of a burst.
func (r *rig) newProducer(seed uint64, badEvery int) *producer {
	pr := &producer{
		cl:  r.client(kgo.ProducerLinger(5 * time.Millisecond)),
		gen: loadgen.New(loadgen.Config{Seed: seed}),
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

// rowCounter counts the committed records of a topic as they appear
// (read_committed, from the start).
type rowCounter struct {
	n      atomic.Int64
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *rig) countRows(topic string) *rowCounter {
	cl := r.client(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
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

// Dead-letter reasons the raw dump flags, as the processor must give them.
const (
	deadMissingKey   = "missing_key"
	deadUndecodable  = "undecodable"
	deadKeyMismatch  = "key_mismatch"
	deadAbsurdTime   = "absurd_timestamp"
	minEventTimeUnix = 946684800000 // 2000-01-01T00:00:00Z in ms
)

// rawDump is what the source topic holds.
type rawDump struct {
	path     string // the CSV
	records  int
	accepted int
	dead     map[[2]int64]string // (partition, offset) -> reason
}

// dumpRaw writes the source topic to a CSV for the oracle: every record's
// partition, offset and key, its decoded transaction fields, and the
// dead-letter reason the processor must give it ("" when it must accept it).
// Call it once production is over.
func (r *rig) dumpRaw(ctx context.Context) rawDump {
	t := r.t
	t.Helper()
	start := time.Now()
	path := filepath.Join(r.dir, "raw.csv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := csv.NewWriter(f)
	w.Write([]string{"partition", "offset", "key", "card_id", "txn_id", "event_time", "amount", "dead"})
	d := rawDump{path: path, dead: map[[2]int64]string{}}
	err = r.readAll(ctx, r.cfg.Sources[0].Topic, func(rec *kgo.Record) {
		d.records++
		var tx schemas.Transaction
		reason := ""
		switch {
		case len(rec.Key) == 0:
			reason = deadMissingKey
		case r.txn.Decode(ctx, rec.Value, &tx) != nil:
			reason = deadUndecodable
		case tx.CardID == "":
			reason = deadMissingKey
		case tx.CardID != string(rec.Key):
			reason = deadKeyMismatch
		case tx.EventTime < minEventTimeUnix:
			reason = deadAbsurdTime
		}
		if reason != "" {
			d.dead[[2]int64{int64(rec.Partition), rec.Offset}] = reason
		} else {
			d.accepted++
		}
		w.Write([]string{
			strconv.Itoa(int(rec.Partition)), strconv.FormatInt(rec.Offset, 10), string(rec.Key),
			tx.CardID, tx.TxnID, strconv.FormatInt(tx.EventTime, 10), strconv.FormatFloat(tx.Amount, 'g', -1, 64), reason,
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		t.Fatal(err)
	}
	t.Logf("raw topic: %d records, %d to accept, %d to dead-letter (dumped in %s)", d.records, d.accepted, len(d.dead), time.Since(start).Round(time.Millisecond))
	return d
}

// expected is one oracle row.
type expected struct {
	key, txnID string
	values     []float64
	seen       int
}

// runOracle runs testdata/oracle.py over the raw dump and reads its rows.
func (r *rig) runOracle(rawPath string) (names []string, want map[[2]int64]*expected) {
	t := r.t
	t.Helper()
	script, err := filepath.Abs("testdata/oracle.py")
	if err != nil {
		t.Fatal(err)
	}
	outPath := filepath.Join(r.dir, "expected.csv")
	start := time.Now()
	cmd := exec.Command(r.py, script, rawPath, outPath)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", r.py, script, err, out)
	}
	t.Logf("%s (%s)", strings.TrimSpace(string(out)), time.Since(start).Round(time.Millisecond))
	f, err := os.Open(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cr := csv.NewReader(bufio.NewReaderSize(f, 1<<20))
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(head) < 5 || strings.Join(head[:4], ",") != "partition,offset,key,txn_id" {
		t.Fatalf("oracle header %v", head)
	}
	names = append([]string(nil), head[4:]...)
	want = map[[2]int64]*expected{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		part, err1 := strconv.ParseInt(rec[0], 10, 32)
		off, err2 := strconv.ParseInt(rec[1], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("oracle row %v: %v", rec, err)
		}
		e := &expected{key: rec[2], txnID: rec[3], values: make([]float64, len(names))}
		for i := range names {
			if e.values[i], err = strconv.ParseFloat(rec[4+i], 64); err != nil {
				t.Fatalf("oracle row %v: %v", rec, err)
			}
		}
		want[[2]int64{part, off}] = e
	}
	return names, want
}

// equal is equality to 1e-9 relative (exact for counts and the last
// amount; sums may add in another order).
func equal(got, want float64) bool {
	if got == want {
		return true
	}
	return math.Abs(got-want) <= 1e-9*math.Max(math.Abs(got), math.Abs(want))
}

// check compares the view's topic and the dead-letter topic with the
// oracle's recomputation from the raw dump. Call it once the processor has
// stopped: it reads every topic up to its end as it is then.
func (r *rig) check(ctx context.Context, raw rawDump) {
	t := r.t
	t.Helper()
	names, want := r.runOracle(raw.path)
	if len(want) != raw.accepted {
		t.Fatalf("oracle has %d rows for %d accepted records", len(want), raw.accepted)
	}

	const maxShown = 20
	var shown []string
	show := func(format string, a ...any) {
		if len(shown) < maxShown {
			shown = append(shown, fmt.Sprintf(format, a...))
		}
	}
	var rows, dups, extra, wrong int
	src := r.cfg.Sources[0].Topic
	start := time.Now()
	err := r.readAll(ctx, r.cfg.FeaturesTopic(view), func(rec *kgo.Record) {
		rows++
		var row schemas.FeatureRow
		if err := r.rows.Decode(ctx, rec.Value, &row); err != nil {
			wrong++
			show("features %d@%d: undecodable: %v", rec.Partition, rec.Offset, err)
			return
		}
		k := [2]int64{int64(row.SourcePartition), row.SourceOffset}
		e := want[k]
		switch {
		case e == nil:
			extra++
			show("row for source %d@%d (features %d@%d): the oracle has no such accepted record", k[0], k[1], rec.Partition, rec.Offset)
			return
		case e.seen > 0:
			dups++
			show("duplicate row for source %d@%d (features %d@%d), copy %d", k[0], k[1], rec.Partition, rec.Offset, e.seen+1)
		}
		e.seen++
		bad := func(format string, a ...any) {
			wrong++
			show("source %d@%d card %s (features %d@%d): %s", k[0], k[1], e.key, rec.Partition, rec.Offset, fmt.Sprintf(format, a...))
		}
		if row.SourceTopic != src || row.View != view || rec.Partition != row.SourcePartition || string(rec.Key) != e.key || row.Entity != e.key || row.EventID != e.txnID {
			bad("row names topic %s view %s partition %d key %q entity %q event %q; want %s %s %d %q %q %q",
				row.SourceTopic, row.View, rec.Partition, rec.Key, row.Entity, row.EventID, src, view, k[0], e.key, e.key, e.txnID)
			return
		}
		if len(row.Values) != len(names) {
			bad("%d values, oracle has %d", len(row.Values), len(names))
			return
		}
		for i, v := range row.Values {
			if v.Name != names[i] {
				bad("value %d is %s, oracle's is %s", i, v.Name, names[i])
				return
			}
			if !equal(v.Value, e.values[i]) {
				bad("%s = %v, oracle %v", v.Name, v.Value, e.values[i])
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	var missing int
	for k, e := range want {
		if e.seen == 0 {
			missing++
			show("no row for source %d@%d (card %s, %s)", k[0], k[1], e.key, e.txnID)
		}
	}
	t.Logf("features topic: %d rows read in %s: %d duplicates, %d missing, %d not in the oracle, %d wrong",
		rows, time.Since(start).Round(time.Millisecond), dups, missing, extra, wrong)

	// Dead letters: one per flagged record, with its reason, exactly once.
	var deadRows, deadDups, deadExtra, deadWrong int
	deadSeen := map[[2]int64]int{}
	err = r.readAll(ctx, r.cfg.DeadLetterTopic(), func(rec *kgo.Record) {
		deadRows++
		p, err1 := strconv.ParseInt(streams.HeaderValue(rec, streams.HeaderPartition), 10, 32)
		o, err2 := strconv.ParseInt(streams.HeaderValue(rec, streams.HeaderOffset), 10, 64)
		k := [2]int64{p, o}
		reason, flagged := raw.dead[k]
		switch {
		case err1 != nil || err2 != nil || streams.HeaderValue(rec, streams.HeaderTopic) != src:
			deadWrong++
			show("dead letter %d@%d: source headers %q/%q/%q", rec.Partition, rec.Offset,
				streams.HeaderValue(rec, streams.HeaderTopic), streams.HeaderValue(rec, streams.HeaderPartition), streams.HeaderValue(rec, streams.HeaderOffset))
			return
		case !flagged:
			deadExtra++
			show("dead letter for source %d@%d (%s: %s), which the oracle accepts", p, o,
				streams.HeaderValue(rec, streams.HeaderReason), streams.HeaderValue(rec, streams.HeaderError))
		case deadSeen[k] > 0:
			deadDups++
			show("duplicate dead letter for source %d@%d", p, o)
		case streams.HeaderValue(rec, streams.HeaderReason) != reason:
			deadWrong++
			show("dead letter for source %d@%d: reason %s, want %s", p, o, streams.HeaderValue(rec, streams.HeaderReason), reason)
		}
		deadSeen[k]++
	})
	if err != nil {
		t.Fatal(err)
	}
	var deadMissing int
	for k := range raw.dead {
		if deadSeen[k] == 0 {
			deadMissing++
			show("no dead letter for source %d@%d (%s)", k[0], k[1], raw.dead[k])
		}
	}
	t.Logf("dead-letter topic: %d records: %d duplicates, %d missing, %d not flagged, %d wrong", deadRows, deadDups, deadMissing, deadExtra, deadWrong)
	if dups+missing+extra+wrong+deadDups+deadMissing+deadExtra+deadWrong > 0 {
		t.Errorf("the output differs from the batch recomputation (first %d problems):\n%s", len(shown), strings.Join(shown, "\n"))
	}
}

// waitRows waits until c has counted want rows, calling tick about every
// 200ms (to notice or handle an exited processor) and logging progress
// every 15s. It returns when the count was reached.
func waitRows(t *testing.T, c *rowCounter, want int64, timeout time.Duration, tick func()) time.Time {
	t.Helper()
	deadline := time.Now().Add(timeout)
	lastLog := time.Now()
	for {
		n := c.n.Load()
		if n >= want {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d feature rows committed after %s", n, want, timeout)
		}
		if time.Since(lastLog) > 15*time.Second {
			t.Logf("waiting: %d of %d feature rows committed", n, want)
			lastLog = time.Now()
		}
		if tick != nil {
			tick()
		}
		time.Sleep(200 * time.Millisecond)
	}
}
