package streams

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/weirhq/weir/internal/testenv"
)

// aloRig runs at-least-once loops over one-partition topics in, out and
// dead (named at random on real Kafka) and lets a test stop and restart
// them.
type aloRig struct {
	*loopRig
	in, out, dead, group string
}

// newALORig returns a rig on a kfake cluster, or on real Kafka when real
// (skipped when Kafka is absent, unless WEIR_REQUIRE_SERVICES=1).
func newALORig(t *testing.T, real bool) *aloRig {
	t.Helper()
	if !real {
		r := newLoopRig(t)
		return &aloRig{loopRig: r, in: "in", out: "out", dead: "dead", group: "test-group"}
	}
	r := &aloRig{
		loopRig: &loopRig{t: t, seeds: testenv.RealKafka(t), errc: make(chan error, 1)},
		in:      testenv.Name("alo.in"), out: testenv.Name("alo.out"), dead: testenv.Name("alo.dead"),
		group: testenv.Name("alo.group"),
	}
	r.createTopics(r.in, r.out, r.dead)
	return r
}

// createTopics creates one-partition topics, deleted at cleanup.
func (r *aloRig) createTopics(topics ...string) {
	r.t.Helper()
	adm := kadm.NewClient(r.client())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resps, err := adm.CreateTopics(ctx, 1, 1, nil, topics...)
	if err == nil {
		err = resps.Error()
	}
	if err != nil {
		r.t.Fatalf("create topics %v: %v", topics, err)
	}
	if r.c != nil {
		return
	}
	r.t.Cleanup(func() {
		adm := kadm.NewClient(r.client())
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := adm.DeleteTopics(ctx, topics...); err != nil {
			r.t.Logf("delete topics %v: %v", topics, err)
		}
	})
}

// start runs an at-least-once loop of proc as instance until ctx is done or
// stop; stop cancels it and checks that Run returned nil.
func (r *aloRig) start(ctx context.Context, proc Processor, instance string, opts ...kgo.Opt) (stop func()) {
	r.t.Helper()
	cfg := LoopConfig{
		Stage: "test", Group: r.group, Topics: []string{r.in}, DeadLetterTopic: r.dead,
		AtLeastOnce: true, InstanceID: instance, MaxBatch: 20, CommitInterval: 10 * time.Millisecond,
		Opts: append([]kgo.Opt{kgo.SeedBrokers(r.seeds...)}, opts...),
	}
	l := NewLoop(cfg, proc, slog.New(slog.DiscardHandler), nil)
	ctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- l.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					r.t.Errorf("loop: %v", err)
				}
			case <-time.After(30 * time.Second):
				r.t.Error("loop did not return 30s after its context was canceled")
			}
		})
	}
	r.t.Cleanup(stop)
	return stop
}

func (r *aloRig) produceTo(topic string, values ...string) {
	r.t.Helper()
	cl := r.client(kgo.DefaultProduceTopic(topic))
	rs := make([]*kgo.Record, len(values))
	for i, v := range values {
		rs[i] = &kgo.Record{Value: []byte(v)}
	}
	if err := cl.ProduceSync(context.Background(), rs...).FirstErr(); err != nil {
		r.t.Fatal(err)
	}
}

// groupOffset returns the group's committed offset of in's partition 0,
// -1 if none.
func (r *aloRig) groupOffset() int64 {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	os, err := kadm.NewClient(r.client()).FetchOffsets(ctx, r.group)
	if err != nil {
		r.t.Fatalf("fetch offsets of %s: %v", r.group, err)
	}
	o, ok := os.Lookup(r.in, 0)
	if !ok {
		return -1
	}
	if o.Err != nil {
		r.t.Fatalf("fetch offsets of %s: %v", r.group, o.Err)
	}
	return o.At
}

// waitOutputs waits until topic holds every value in want at least once
// and returns what it holds.
func (r *aloRig) waitOutputs(topic string, want []string, within time.Duration) []string {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := r.committed(topic)
		missing := missingFrom(got, want)
		if len(missing) == 0 {
			return got
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: after %s, %d of %d outputs missing, e.g. %v", topic, within, len(missing), len(want), missing[:min(len(missing), 10)])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// missingFrom returns the values of want that got lacks.
func missingFrom(got, want []string) []string {
	have := make(map[string]bool, len(got))
	for _, v := range got {
		have[v] = true
	}
	var missing []string
	for _, v := range want {
		if !have[v] {
			missing = append(missing, v)
		}
	}
	return missing
}

func lastIndex(s []string, v string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == v {
			return i
		}
	}
	return -1
}

func numbered(from, to int) []string {
	var vs []string
	for i := from; i < to; i++ {
		vs = append(vs, strconv.Itoa(i))
	}
	return vs
}

// waitCalls waits until the processor's calls include n of call.
func waitCalls(t *testing.T, p *fakeProc, call string, n int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		calls := p.callLog()
		c := 0
		for _, s := range calls {
			if s == call {
				c++
			}
		}
		if c >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %q calls within %s, want %d; calls %v", c, call, within, n, calls)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestAtLeastOnceRestart(t *testing.T) { testAtLeastOnceRestart(t, false) }

func TestAtLeastOnceRestartKafka(t *testing.T) { testAtLeastOnceRestart(t, true) }

// testAtLeastOnceRestart stops an at-least-once loop between a batch's
// produce and its offset commit, the batch's outputs acknowledged (as a
// kill would), and starts another under the same static instance id:
// every input must have an output, and the stopped batch's outputs are
// written twice.
func testAtLeastOnceRestart(t *testing.T, real bool) {
	r := newALORig(t, real)
	inputs := numbered(0, 200)
	r.produceTo(r.in, inputs[:100]...)

	a := &fakeProc{out: r.out, commits: make(chan int, 1000), assigned: make(chan struct{}, 100)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopA := r.start(ctx, a, "alo-a", kgo.WithHooks(acked(func(rec *kgo.Record) {
		if string(rec.Value) == "50" {
			cancel() // before the promise, so before Flush returns
		}
	})))
	select {
	case <-ctx.Done():
	case <-time.After(60 * time.Second):
		t.Fatalf("output 50 not acknowledged within 60s; calls %v", a.callLog())
	}
	stopA()
	if off := r.groupOffset(); off > 50 {
		t.Fatalf("committed offset %d after a stop in the batch of offset 50", off)
	}
	if calls := a.callLog(); slices.Index(calls, "abort") < 0 || lastIndex(calls, "abort") < lastIndex(calls, "commit") {
		t.Fatalf("calls %v, want the open batch aborted", calls)
	}

	r.produceTo(r.in, inputs[100:]...)
	b := &fakeProc{out: r.out, commits: make(chan int, 1000), assigned: make(chan struct{}, 100)}
	r.start(context.Background(), b, "alo-a")
	got := r.waitOutputs(r.out, inputs, 60*time.Second)
	if extra := missingFrom(inputs, got); len(extra) > 0 {
		t.Fatalf("outputs not from any input: %v", extra)
	}
	if n := count(got, "50"); n < 2 {
		t.Fatalf("output 50 written %d times, want twice: its batch was acknowledged but not committed", n)
	}
	t.Logf("%d outputs for %d inputs", len(got), len(inputs))
	deadline := time.Now().Add(30 * time.Second)
	for r.groupOffset() != int64(len(inputs)) {
		if time.Now().After(deadline) {
			t.Fatalf("committed offset %d, want %d", r.groupOffset(), len(inputs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// acked is a kgo hook calling fn with each record acknowledged.
type acked func(*kgo.Record)

func (f acked) OnProduceRecordUnbuffered(rec *kgo.Record, err error) {
	if err == nil {
		f(rec)
	}
}

func count(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

func TestAtLeastOnceProduceFailure(t *testing.T) { testAtLeastOnceProduceFailure(t, false) }

func TestAtLeastOnceProduceFailureKafka(t *testing.T) { testAtLeastOnceProduceFailure(t, true) }

// testAtLeastOnceProduceFailure runs a processor whose output topic does
// not exist (and is not auto-created): no batch may commit its offsets or
// the processor's state, and once the topic exists the loop goes on from
// the committed offsets and writes every output.
func testAtLeastOnceProduceFailure(t *testing.T, real bool) {
	r := newALORig(t, real)
	missing := "missing"
	if real {
		missing = testenv.Name("alo.missing")
	}
	inputs := []string{"a", "b", "c"}
	r.produceTo(r.in, inputs...)
	p := &fakeProc{out: missing, commits: make(chan int, 1000), assigned: make(chan struct{}, 100)}
	r.start(context.Background(), p, "", kgo.MetadataMinAge(50*time.Millisecond), kgo.UnknownTopicRetries(1), kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }))
	waitCalls(t, p, "abort", 2, 60*time.Second)
	if slices.Contains(p.callLog(), "commit") {
		t.Fatalf("calls %v: a batch committed although its output failed", p.callLog())
	}
	if off := r.groupOffset(); off != -1 {
		t.Fatalf("committed offset %d while every produce failed, want none", off)
	}
	r.createTopics(missing)
	for n := 0; n < len(inputs); {
		n += waitCommit(t, p, 60*time.Second)
	}
	r.waitOutputs(missing, inputs, 30*time.Second)
	if off := r.groupOffset(); off != int64(len(inputs)) {
		t.Fatalf("committed offset %d, want %d", off, len(inputs))
	}
}

// TestAtLeastOnceCopiesAndPunctuates checks the plain case and the
// Punctuator on kfake: records in, copies out, and a tick with no input.
func TestAtLeastOnceCopiesAndPunctuates(t *testing.T) {
	r := newALORig(t, false)
	p := &punctProc{fakeProc: newFakeProc(r.out), asked: make(chan struct{}, 1)}
	r.start(context.Background(), p, "")
	if n := waitCommit(t, p.fakeProc, 30*time.Second); n != 1 {
		t.Fatalf("the first commit staged %d records, want the tick", n)
	}
	r.produceTo(r.in, "a", "b", "c")
	for n := 0; n < 3; {
		n += waitCommit(t, p.fakeProc, 30*time.Second)
	}
	got := r.committed(r.out)
	if fmt.Sprint(got) != "[tick a b c]" {
		t.Fatalf("out: %v, want [tick a b c]", got)
	}
}

// TestAtLeastOnceCommitFailure fails one offset commit on kfake: the
// batch, already produced, aborts and is processed again from the
// committed offsets, so its outputs are written twice and none is lost.
func TestAtLeastOnceCommitFailure(t *testing.T) {
	r := newALORig(t, false)
	// A control function handles one request, then is dropped.
	r.c.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		req0 := req.(*kmsg.OffsetCommitRequest)
		resp := req0.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range req0.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = kerr.OffsetMetadataTooLarge.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	inputs := []string{"a", "b", "c"}
	r.produceTo(r.in, inputs...)
	p := &fakeProc{out: r.out, commits: make(chan int, 1000), assigned: make(chan struct{}, 100)}
	r.start(context.Background(), p, "")
	for n := 0; n < len(inputs); {
		n += waitCommit(t, p, 30*time.Second)
	}
	calls := p.callLog()
	if i := slices.Index(calls, "abort"); i < 0 || i > slices.Index(calls, "commit") {
		t.Fatalf("calls %v, want an abort before the first commit", calls)
	}
	got := r.committed(r.out)
	if len(missingFrom(got, inputs)) > 0 || len(got) != 2*len(inputs) {
		t.Fatalf("out: %v, want a, b, c twice", got)
	}
	if off := r.groupOffset(); off != int64(len(inputs)) {
		t.Fatalf("committed offset %d, want %d", off, len(inputs))
	}
}

// TestAtLeastOnceGroupLostDuringBatch fails a heartbeat while a batch is
// open, as in a broker restart: the group's goroutine waits for the batch
// to end before it reports the partitions lost. Unlike End, the batch's
// flush and offset commit wait for no heartbeat, so the loop must neither
// hang nor lose the record.
func TestAtLeastOnceGroupLostDuringBatch(t *testing.T) {
	r := newALORig(t, false)
	p := &fakeProc{out: r.out, commits: make(chan int, 1000), assigned: make(chan struct{}, 100)}
	blocked := make(chan struct{}, 1) // a rebalance callback waits for the batch
	failed := make(chan struct{})     // the heartbeat was failed
	var once sync.Once
	p.onProcess = func(*kgo.Record) {
		once.Do(func() {
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
	r.produceTo(r.in, "a")
	r.start(context.Background(), p, "", kgo.HeartbeatInterval(100*time.Millisecond),
		kgo.OnPartitionsCallbackBlocked(func(context.Context, *kgo.Client) {
			select {
			case blocked <- struct{}{}:
			default:
			}
		}))
	r.waitOutputs(r.out, []string{"a"}, 30*time.Second)
	waitCalls(t, p, "revoked", 1, 30*time.Second)
	waitCalls(t, p, "assigned", 2, 30*time.Second)
	if got := r.committed(r.out); slices.Index(got, "a") < 0 {
		t.Fatalf("out: %v, want a", got)
	}
}
