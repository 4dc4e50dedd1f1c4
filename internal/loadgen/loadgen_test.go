package loadgen

import (
	"testing"
	"time"

	"github.com/weirhq/weir/schemas"
)

// events is how many transactions each case draws: enough for the fraud
// rate and the drift ratio to be stable across seeds.
const events = 50_000

func TestGenerator(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{name: "defaults", cfg: Config{Seed: 1}},
		{name: "seed zero", cfg: Config{Seed: 0}},
		{name: "drift halfway", cfg: Config{Seed: 42, DriftAt: events / 2 * 5 * time.Millisecond}}, // 200/s: 5ms a step
		{name: "slow labels, sparse stream", cfg: Config{Seed: 7, LabelDelay: 10 * time.Minute, EventsPerSecond: 3, DriftAt: time.Hour}},
		{name: "small population", cfg: Config{Seed: 99, Cards: 200, Merchants: 20, Start: time.Date(2030, 6, 1, 12, 0, 0, 0, time.UTC)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := New(tc.cfg), New(tc.cfg)
			other := tc.cfg
			other.Seed++
			c := New(other)
			cfg := a.Config()

			var (
				prev                int64
				frauds, differ      int
				nBefore, nAfter     int
				sumBefore, sumAfter float64
			)
			for i := range events {
				tx, lb := a.Next()
				tx2, lb2 := b.Next()
				if tx != tx2 || lb != lb2 {
					t.Fatalf("event %d: same seed, different stream:\n%+v %+v\n%+v %+v", i, tx, lb, tx2, lb2)
				}
				if tx3, _ := c.Next(); !sameEvent(tx, tx3) {
					differ++
				}

				if i == 0 && tx.EventTime != cfg.Start.UnixMilli() {
					t.Fatalf("first event time %d, want Start %d", tx.EventTime, cfg.Start.UnixMilli())
				}
				if tx.EventTime < prev {
					t.Fatalf("event %d: event time %d before previous %d", i, tx.EventTime, prev)
				}
				prev = tx.EventTime

				if want := tx.EventTime + cfg.LabelDelay.Milliseconds(); lb.LabelTime != want {
					t.Fatalf("event %d: label time %d, want event time %d + delay %s = %d", i, lb.LabelTime, tx.EventTime, cfg.LabelDelay, want)
				}
				if lb.TxnID != tx.TxnID || lb.CardID != tx.CardID || lb.EventTime != tx.EventTime {
					t.Fatalf("event %d: label %+v does not match transaction %+v", i, lb, tx)
				}
				if lb.IsFraud {
					frauds++
				}

				if a.Drifted(time.UnixMilli(tx.EventTime)) {
					nAfter++
					sumAfter += tx.Amount
				} else {
					nBefore++
					sumBefore += tx.Amount
				}
			}

			if differ == 0 {
				t.Errorf("seeds %d and %d gave identical streams", tc.cfg.Seed, other.Seed)
			}
			if rate := float64(frauds) / events; rate < 0.005 || rate > 0.05 {
				t.Errorf("fraud rate %.4f (%d of %d), want within [0.005, 0.05]", rate, frauds, events)
			}

			if tc.cfg.DriftAt == 0 {
				if nAfter != 0 {
					t.Errorf("%d events drifted with DriftAt 0", nAfter)
				}
				return
			}
			if nBefore == 0 || nAfter == 0 {
				t.Fatalf("drift at %s splits the stream %d before / %d after; want both sides", tc.cfg.DriftAt, nBefore, nAfter)
			}
			before, after := sumBefore/float64(nBefore), sumAfter/float64(nAfter)
			if after < 1.5*before {
				t.Errorf("mean amount %.2f before drift, %.2f after (x%.2f), want at least x1.5", before, after, after/before)
			}
		})
	}
}

// sameEvent compares what a seed decides, ignoring TxnID, which embeds the
// seed and so always differs between seeds.
func sameEvent(x, y schemas.Transaction) bool {
	x.TxnID, y.TxnID = "", ""
	return x == y
}

func TestDisorder(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		max  time.Duration // the most an event time may move back
	}{
		{name: "off", cfg: Config{Seed: 3, DisorderMax: time.Hour}},
		{name: "default max", cfg: Config{Seed: 1, Disorder: 0.05}, max: time.Minute},
		{name: "a third, up to 5s", cfg: Config{Seed: 5, Disorder: 0.3, DisorderMax: 5 * time.Second}, max: 5 * time.Second},
		{name: "every event, sparse stream", cfg: Config{Seed: 8, Disorder: 1, DisorderMax: 10 * time.Minute, EventsPerSecond: 3}, max: 10 * time.Minute},
		{name: "under a millisecond moves 1ms, dense stream", cfg: Config{Seed: 13, Disorder: 0.5, DisorderMax: 300 * time.Microsecond, EventsPerSecond: 4000}, max: time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := New(tc.cfg), New(tc.cfg)
			inOrder := tc.cfg
			inOrder.Disorder, inOrder.DisorderMax = 0, 0
			o := New(inOrder)
			cfg := a.Config()
			if tc.cfg.Disorder > 0 && cfg.DisorderMax <= 0 {
				t.Fatalf("DisorderMax %s after defaults", cfg.DisorderMax)
			}
			var moved, behind int
			var newest, most int64
			for i := range events {
				tx, lb := a.Next()
				tx2, lb2 := b.Next()
				if tx != tx2 || lb != lb2 {
					t.Fatalf("event %d: same seed, different stream:\n%+v %+v\n%+v %+v", i, tx, lb, tx2, lb2)
				}
				want, wantLb := o.Next()
				shift := want.EventTime - tx.EventTime
				if shift < 0 || shift > tc.max.Milliseconds() {
					t.Fatalf("event %d: event time moved back %dms, want within [0, %s]", i, shift, tc.max)
				}
				if shift > 0 {
					moved++
					most = max(most, shift)
				}
				// Only the event time differs from the ordered stream's.
				want.EventTime = tx.EventTime
				if tx != want {
					t.Fatalf("event %d: %+v, the ordered stream has %+v (event time aside)", i, tx, want)
				}
				wantLb.EventTime, wantLb.LabelTime = tx.EventTime, tx.EventTime+cfg.LabelDelay.Milliseconds()
				if lb != wantLb {
					t.Fatalf("event %d: label %+v, want %+v", i, lb, wantLb)
				}
				if i > 0 && tx.EventTime < newest {
					behind++
				}
				newest = max(newest, tx.EventTime)
			}
			frac := float64(moved) / events
			if d := frac - tc.cfg.Disorder; d < -0.01 || d > 0.01 {
				t.Errorf("%d of %d events moved back (%.4f), want Disorder %.2f ± 0.01", moved, events, frac, tc.cfg.Disorder)
			}
			if tc.cfg.Disorder == 0 {
				return
			}
			if most < tc.max.Milliseconds()*9/10 {
				t.Errorf("at most %dms moved back, want close to %s", most, tc.max)
			}
			if behind == 0 {
				t.Errorf("no event behind the newest before it: the stream is still in order")
			}
		})
	}
}
