package faulttest

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestBrokerRestart restarts the Kafka broker (`deploy/local/kafka.sh
// restart`: a controlled shutdown, then a start) while loadgen produces and
// the processor binary processes the same disordered stream as
// TestKillNine, then checks every feature row and dead letter against the
// pandas oracle. If the processor exits, the test restarts it and says so;
// the check is the same either way. A processor that stays up but stops
// committing fails the test (it is restarted, so that the check still
// runs).
//
// It restarts the broker that every package's tests share, which would fail
// the tests of other packages running beside it under `make test`. So it
// runs only with WEIR_SOAK_BROKER_RESTART=1, which `make soak` sets and
// `make test` does not. WEIR_SOAK_BROKER_EVENTS sizes it (default 50000).
func TestBrokerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: the processor binary against real Kafka")
	}
	if os.Getenv("WEIR_SOAK_BROKER_RESTART") != "1" {
		t.Skip("restarts the shared Kafka broker, which breaks other packages' tests running beside it; WEIR_SOAK_BROKER_RESTART=1 (make soak) runs it")
	}
	events := envInt(t, "WEIR_SOAK_BROKER_EVENTS", 50_000)
	r := newRig(t)
	kafkaSh := func(arg string) {
		t.Helper()
		start := time.Now()
		cmd := exec.Command("bash", "deploy/local/kafka.sh", arg)
		cmd.Dir = r.root
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kafka.sh %s: %v\n%s", arg, err, out)
		}
		t.Logf("kafka.sh %s took %s: %s", arg, time.Since(start).Round(time.Millisecond), strings.ReplaceAll(strings.TrimSpace(string(out)), "\n", "; "))
	}
	// Whatever happens, leave the broker running for whoever comes next.
	t.Cleanup(func() { kafkaSh("start") })

	ctx := context.Background()
	counter := r.countRows(r.cfg.FeaturesTopic(view), r.cfg.DeadLetterTopic())
	// Paced over about 30s, so the restart hits the producer and the
	// processor mid-stream.
	prod := r.newProducer(5, 2_500)
	prod.burst(events, float64(events)/30)
	p := r.startProcessor()
	// A run that exits is restarted. A run that stays up but commits nothing
	// for stallAfter while rows are due is a failure (it would never catch
	// up); it is made to dump its goroutines and restarted too, so that the
	// test still checks what the restart leaves exact.
	const stallAfter = 2 * time.Minute
	var restarts, stalls int
	lastRows, lastMove := int64(-1), time.Now()
	target := int64(events / 4) // rows and dead letters waited for
	keepRunning := func() {
		if n := counter.n.Load(); n != lastRows {
			lastRows, lastMove = n, time.Now()
		}
		switch {
		case !p.alive():
			restarts++
			t.Logf("processor run %d exited (%v) after %s; restarting it", p.n, p.waitErr, time.Since(p.started).Round(time.Millisecond))
			p.tail(t, 12)
		case time.Since(lastMove) > stallAfter && lastRows < target:
			stalls++
			p.quit()
			t.Errorf("processor run %d is alive but committed nothing for %s with %d of %d rows and dead letters written: stuck; its goroutines are in %s; restarting it",
				p.n, stallAfter, lastRows, target, p.logPath)
			p.tail(t, 12)
		default:
			return
		}
		p = r.startProcessor()
		lastMove = time.Now()
	}
	if _, ok := r.waitRows(counter, target, 5*time.Minute, 5*time.Minute, keepRunning); !ok {
		t.FailNow()
	}
	t.Logf("%d rows committed, production %v: restarting the broker", counter.n.Load(), map[bool]string{true: "running", false: "done"}[prod.running()])
	restarted := time.Now()
	kafkaSh("restart")
	st := prod.wait(t)
	t.Logf("loadgen: %d transactions and %d bad records in %s", st.Transactions, st.Bad, prod.produced.Round(time.Millisecond))
	raw := r.dumpRaw(ctx)
	o := r.runOracle(raw)
	target = int64(o.rows + len(o.dead))
	if reached, ok := r.waitRows(counter, target, 5*time.Minute, 5*time.Minute, keepRunning); ok {
		t.Logf("lag 0 (%d rows and dead letters) %s after the restart began", target, reached.Sub(restarted).Round(10*time.Millisecond))
	}
	if restarts+stalls == 0 {
		t.Logf("the processor survived the broker restart: one run throughout (%s)", p.summary())
	} else {
		t.Logf("across the broker restart the processor exited %d times and got stuck %d times; the test restarted it each time", restarts, stalls)
	}
	p.stop(t, time.Minute)
	r.check(ctx, o)
}
