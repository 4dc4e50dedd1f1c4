package faulttest

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
)

// burstSpan is how long each burst of events is paced over: from the moment
// a processor run gets its partitions until after the latest moment it can
// be killed.
const burstSpan = 3 * time.Second

// TestKillNine kills the processor binary with SIGKILL WEIR_SOAK_KILLS
// times while it processes WEIR_SOAK_EVENTS events (bad records among
// them), restarting it each time under the same --instance, so that the new
// run's transactional id fences the killed run's open transaction. The
// stream is disordered (see disorder): some events are late within the
// view's allowed lateness and correct rows already written, others are too
// late. Once the last run caught up, every feature row and dead letter is
// checked against the pandas oracle: every version of every event's row
// exactly once, no gap, every final value equal, every too-late event
// dead-lettered "late".
//
// Each kill comes a random 0.3-3s (seeded; WEIR_SOAK_SEED replays a seed)
// after the run got its partitions: at once for half of them (chosen at
// random), and for the other half at the run's next changelog write, which
// ends a transaction just before its commit, the moment when the most is
// written and nothing committed (a kill at a random moment hits it rarely).
// The events come in one burst per run, paced over 3s from the moment it
// got its partitions, so every kill falls while events are flowing; what
// the burst has left after the kill is a backlog for the next run.
func TestKillNine(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: the processor binary against real Kafka")
	}
	events := envInt(t, "WEIR_SOAK_EVENTS", 100_000)
	kills := envInt(t, "WEIR_SOAK_KILLS", 5)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("WEIR_SOAK_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("WEIR_SOAK_SEED=%q: %v", s, err)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0))
	r := newRig(t)
	t.Logf("%d events in %d bursts, %d kills, seed %d (WEIR_SOAK_SEED replays it); config %s", events, kills+1, kills, seed, r.cfgPath)

	ctx := context.Background()
	begun := time.Now()
	counter := r.countRows(r.cfg.FeaturesTopic(view), r.cfg.DeadLetterTopic())
	changelog := r.watchChangelog()
	prod := r.newProducer(4, 2_500)
	p := r.startProcessor()
	var lastKill time.Time
	var gaps time.Duration // from each kill to the next run's partitions
	var atCommits int      // kills as a transaction was about to commit
	sent := 0
	for i := 0; ; i++ {
		select {
		case <-p.assigned:
		case <-p.exited:
			t.Fatalf("processor run %d exited on its own: %v", p.n, p.waitErr)
		case <-time.After(5 * time.Minute):
			t.Fatalf("processor run %d got no partitions in 5 minutes", p.n)
		}
		if i > 0 {
			gaps += p.assignedAt.Sub(lastKill)
		}
		n := (events - sent) / (kills + 1 - i)
		prod.burst(n, float64(n)/burstSpan.Seconds())
		sent += n
		if i == kills {
			break
		}
		d := 300*time.Millisecond + time.Duration(rng.Int64N(int64(2700*time.Millisecond)))
		atCommit := rng.IntN(2) == 0
		select {
		case <-time.After(d):
		case <-p.exited:
			t.Fatalf("processor run %d exited on its own: %v", p.n, p.waitErr)
		}
		when := "at once"
		if atCommit {
			when = "at its next changelog write (none within 5s)"
			if changelog.next(5 * time.Second) {
				when = "as it wrote its changelog, before the commit"
				atCommits++
			}
		}
		p.kill()
		lastKill = time.Now()
		t.Logf("kill -9 %d/%d: run %d (%s) killed %s after it got its partitions, %s; %d rows committed by then",
			i+1, kills, p.n, p.summary(), d.Round(time.Millisecond), when, counter.n.Load())
		p = r.startProcessor()
	}
	st := prod.wait(t)
	t.Logf("loadgen: %d transactions and %d bad records, %s producing", st.Transactions, st.Bad, prod.produced.Round(time.Millisecond))
	raw := r.dumpRaw(ctx)
	o := r.runOracle(raw)
	want := o.rows + len(o.dead)
	reached, ok := r.waitRows(counter, int64(want), 10*time.Minute+time.Duration(events)*time.Millisecond, 3*time.Minute, func() {
		if !p.alive() {
			t.Fatalf("processor run %d exited on its own: %v", p.n, p.waitErr)
		}
	})
	if kills > 0 && ok {
		t.Logf("lag 0 (%d rows and dead letters) %s after the last kill: the last run got its partitions %s after the kill and caught up %s later (%s)",
			want, reached.Sub(lastKill).Round(10*time.Millisecond), p.assignedAt.Sub(lastKill).Round(10*time.Millisecond),
			reached.Sub(p.assignedAt).Round(10*time.Millisecond), p.summary())
		t.Logf("%d of %d kills came as the run wrote its changelog; after a kill, the next run got its partitions %s later on average",
			atCommits, kills, (gaps / time.Duration(kills)).Round(10*time.Millisecond))
	}
	stopping := time.Now()
	p.stop(t, time.Minute)
	t.Logf("the last run stopped %s after SIGTERM; the whole run took %s", time.Since(stopping).Round(time.Millisecond), time.Since(begun).Round(time.Second))
	r.check(ctx, o)
}
