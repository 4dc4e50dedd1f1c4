package streams

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// fakeProc copies every input record to its out topic, on the input's
// partition, and records the calls the loop makes.
type fakeProc struct {
	out       string
	onProcess func(rec *kgo.Record) // called before the copy, when set

	mu       sync.Mutex
	staged   int
	calls    []string // "assigned", "revoked", "commit n", "abort"
	commits  chan int // receives the staged count at each Commit
	assigned chan struct{}
}

func newFakeProc(out string) *fakeProc {
	return &fakeProc{out: out, commits: make(chan int, 100), assigned: make(chan struct{}, 100)}
}

func (p *fakeProc) Assigned(context.Context, map[string][]int32) error {
	p.mu.Lock()
	p.calls = append(p.calls, "assigned")
	p.mu.Unlock()
	p.assigned <- struct{}{}
	return nil
}

func (p *fakeProc) Revoked(map[string][]int32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, "revoked")
}

func (p *fakeProc) Process(_ context.Context, rec *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
	if p.onProcess != nil {
		p.onProcess(rec)
	}
	p.mu.Lock()
	p.staged++
	p.mu.Unlock()
	return append(out, &kgo.Record{Topic: p.out, Partition: rec.Partition, Key: rec.Key, Value: rec.Value}), nil
}

func (p *fakeProc) Flush(out []*kgo.Record) []*kgo.Record { return out }

func (p *fakeProc) Commit() {
	p.mu.Lock()
	n := p.staged
	p.staged = 0
	p.calls = append(p.calls, "commit")
	p.mu.Unlock()
	p.commits <- n
}

func (p *fakeProc) Abort() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.staged = 0
	p.calls = append(p.calls, "abort")
}

func (p *fakeProc) callLog() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.calls...)
}

// loopRig is a kfake cluster with one-partition topics in, out and dead,
// and a loop over in run until the test ends.
type loopRig struct {
	t     *testing.T
	c     *kfake.Cluster
	seeds []string
	errc  chan error
}

func newLoopRig(t *testing.T) *loopRig {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in", "out", "dead"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &loopRig{t: t, c: c, seeds: c.ListenAddrs(), errc: make(chan error, 1)}
}

// run starts a loop of proc; extra options are added to its client's.
// The loop stops, and its error is checked, at cleanup.
func (r *loopRig) run(proc Processor, cfg LoopConfig, setup func(*Loop)) {
	r.t.Helper()
	cfg.Stage, cfg.Group, cfg.TransactionalID = "test", "test-group", "test-txn"
	cfg.Topics, cfg.DeadLetterTopic = []string{"in"}, "dead"
	cfg.Opts = append([]kgo.Opt{kgo.SeedBrokers(r.seeds...)}, cfg.Opts...)
	l := NewLoop(cfg, proc, slog.New(slog.DiscardHandler), nil)
	if setup != nil {
		setup(l)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { r.errc <- l.Run(ctx) }()
	r.t.Cleanup(func() {
		cancel()
		select {
		case err := <-r.errc:
			if err != nil {
				r.t.Errorf("loop: %v", err)
			}
		case <-time.After(30 * time.Second):
			r.t.Error("loop did not return 30s after its context was canceled")
		}
	})
}

func (r *loopRig) client(opts ...kgo.Opt) *kgo.Client {
	r.t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(r.seeds...)}, opts...)...)
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(cl.Close)
	return cl
}

func (r *loopRig) produce(values ...string) {
	r.t.Helper()
	cl := r.client(kgo.DefaultProduceTopic("in"))
	for _, v := range values {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			r.t.Fatal(err)
		}
	}
}

// committed returns the values of topic's committed records, reading
// until the partition's last stable offset.
func (r *loopRig) committed(topic string) []string {
	r.t.Helper()
	cl := r.client(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.KeepControlRecords())
	req := kmsg.NewPtrListOffsetsRequest()
	req.IsolationLevel = 1 // read_committed: the last stable offset
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewListOffsetsRequestTopicPartition()
	rp.Timestamp = -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		r.t.Fatal(err)
	}
	p := resp.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
		r.t.Fatal(err)
	}
	var vals []string
	for next := int64(0); next < p.Offset; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			r.t.Fatalf("%s: read to offset %d of %d: %v", topic, next, p.Offset, err)
		}
		fs.EachRecord(func(rec *kgo.Record) {
			next = rec.Offset + 1
			if !rec.Attrs.IsControl() {
				vals = append(vals, string(rec.Value))
			}
		})
	}
	return vals
}

// waitCommit waits for the processor's next Commit and returns how many
// records it committed.
func waitCommit(t *testing.T, p *fakeProc, within time.Duration) int {
	t.Helper()
	select {
	case n := <-p.commits:
		return n
	case <-time.After(within):
		t.Fatalf("no commit within %s; calls %v", within, p.callLog())
		return 0
	}
}

// TestLoopCopies is the loop's plain case: records in, one transaction,
// the copies committed once.
func TestLoopCopies(t *testing.T) {
	r := newLoopRig(t)
	p := newFakeProc("out")
	r.produce("a", "b", "c")
	r.run(p, LoopConfig{}, nil)
	for n := 0; n < 3; {
		n += waitCommit(t, p, 30*time.Second)
	}
	if got := r.committed("out"); len(got) != 3 {
		t.Fatalf("out: committed %v, want a, b, c", got)
	}
}

// TestLoopGroupLostDuringEnd is the hang after a broker restart: the group
// session fails (here a heartbeat answered ILLEGAL_GENERATION) while a
// transaction is open. The group's goroutine then waits for the rebalance
// to be allowed before it reports the partitions lost, while End waits for
// a forced heartbeat that no heartbeat loop answers, or for that report.
// The loop must break the wait, abort, rejoin and commit the record once.
func TestLoopGroupLostDuringEnd(t *testing.T) {
	r := newLoopRig(t)
	p := newFakeProc("out")
	blocked := make(chan struct{}, 1) // a rebalance callback waits for the poll
	failed := make(chan struct{})     // the heartbeat was failed
	var once sync.Once
	p.onProcess = func(*kgo.Record) {
		once.Do(func() {
			// Mid-transaction, fail the next heartbeat, and go on once the
			// group's goroutine waits to report the partitions lost.
			r.c.ControlKey(int16(kmsg.Heartbeat), func(req kmsg.Request) (kmsg.Response, error, bool) {
				resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
				resp.ErrorCode = kerr.IllegalGeneration.Code
				close(failed)
				return resp, nil, true
			})
			<-failed
			<-blocked
		})
	}
	r.produce("a")
	r.run(p, LoopConfig{Opts: []kgo.Opt{
		kgo.HeartbeatInterval(100 * time.Millisecond),
		kgo.OnPartitionsCallbackBlocked(func(context.Context, *kgo.Client) {
			select {
			case blocked <- struct{}{}:
			default:
			}
		}),
	}}, func(l *Loop) { l.endGrace = 500 * time.Millisecond })
	if n := waitCommit(t, p, 30*time.Second); n != 1 {
		t.Fatalf("committed %d records, want 1", n)
	}
	calls := p.callLog()
	want := []string{"assigned", "revoked", "abort", "assigned", "commit"}
	if len(calls) != len(want) {
		t.Fatalf("calls %v, want %v", calls, want)
	}
	for i := range want {
		if calls[i] != want[i] {
			t.Fatalf("calls %v, want %v", calls, want)
		}
	}
	if got := r.committed("out"); len(got) != 1 || got[0] != "a" {
		t.Fatalf("out: committed %v, want [a]", got)
	}
}

// punctProc is a fakeProc with output due once it was assigned: the next
// Flush after Due reported it appends one "tick" record to out.
type punctProc struct {
	*fakeProc
	asked   chan struct{} // a signal at each Due call, at most one pending
	pending bool          // Due reported output that Flush has not written
	fired   bool
}

func (p *punctProc) Due(time.Time) bool {
	select {
	case p.asked <- struct{}{}:
	default:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	assigned := len(p.calls) > 0 && p.calls[0] == "assigned"
	if !assigned || p.fired {
		return false
	}
	p.fired, p.pending = true, true
	return true
}

func (p *punctProc) Flush(out []*kgo.Record) []*kgo.Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending {
		p.pending = false
		p.staged++
		out = append(out, &kgo.Record{Topic: p.out, Partition: 0, Value: []byte("tick")})
	}
	return out
}

var _ Punctuator = (*punctProc)(nil)

// drain empties a signal channel.
func drain(c chan struct{}) {
	select {
	case <-c:
	default:
	}
}

// TestLoopPunctuates checks that a Punctuator's due output is committed
// with no input at all: the loop polls for at most the commit interval,
// asks Due, and runs a transaction of what Flush appends.
func TestLoopPunctuates(t *testing.T) {
	r := newLoopRig(t)
	p := &punctProc{fakeProc: newFakeProc("out"), asked: make(chan struct{}, 1)}
	r.run(p, LoopConfig{CommitInterval: 20 * time.Millisecond}, nil)
	if n := waitCommit(t, p.fakeProc, 30*time.Second); n != 1 {
		t.Fatalf("the first commit staged %d records, want the tick", n)
	}
	if got := r.committed("out"); len(got) != 1 || got[0] != "tick" {
		t.Fatalf("out: committed %v, want [tick]", got)
	}
	// Due is asked again after the next empty poll, and is false from now
	// on: no other transaction.
	drain(p.asked)
	select {
	case <-p.asked:
	case <-time.After(10 * time.Second):
		t.Fatal("Due not asked again within 10s of the tick")
	}
	if calls, want := p.callLog(), []string{"assigned", "commit"}; len(calls) != 2 || calls[0] != want[0] || calls[1] != want[1] {
		t.Fatalf("calls %v, want %v", calls, want)
	}
	if got := r.committed("in"); len(got) != 0 {
		t.Fatalf("in: %v, want nothing", got)
	}
}
