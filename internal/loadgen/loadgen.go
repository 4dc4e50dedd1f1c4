// Package loadgen generates the demo's synthetic payments stream: cards with
// a home country, device and typical spend; merchants; fraud that comes in
// bursts of large foreign transactions on a new device; and, from a chosen
// event time on, drift (spend inflates and the fraud pattern changes).
// Every transaction's label follows LabelDelay of event time later.
// Optionally (Disorder) some transactions arrive late: their event time is
// moved back, as a delayed delivery would leave it. The stream is a pure
// function of the seed, so tests can recompute it.
package loadgen

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/weirhq/weir/schemas"
)

// Config shapes the stream.
type Config struct {
	Seed      uint64
	Cards     int       // default 5000
	Merchants int       // default 500
	Start     time.Time // event time of the first transaction; default 2026-01-01T00:00:00Z
	// EventsPerSecond is the stream's density in event time (default 200).
	EventsPerSecond float64
	// DriftAt is how much event time after Start drift begins; 0 = never.
	DriftAt time.Duration
	// LabelDelay is how much event time after a transaction its label is
	// known (default 30s).
	LabelDelay time.Duration
	// FraudRate is the chance that an event starts a fraud burst (default 0.003).
	FraudRate float64
	// Disorder is the fraction of transactions, from 0 (the default: the
	// stream is in event-time order) to 1, that arrive late: each one's
	// event time is moved back by a uniform random amount in
	// [1ms, DisorderMax], drawn from a generator of its own, so the
	// transactions themselves (cards, amounts, fraud) are those of the
	// ordered stream of the same seed. Its label keeps LabelDelay after the
	// moved event time.
	Disorder float64
	// DisorderMax is the most a late transaction's event time is moved
	// back (default 1m; used only with Disorder).
	DisorderMax time.Duration
}

func (c *Config) defaults() {
	if c.Cards == 0 {
		c.Cards = 5000
	}
	if c.Merchants == 0 {
		c.Merchants = 500
	}
	if c.Start.IsZero() {
		c.Start = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if c.EventsPerSecond == 0 {
		c.EventsPerSecond = 200
	}
	if c.LabelDelay == 0 {
		c.LabelDelay = 30 * time.Second
	}
	if c.FraudRate == 0 {
		c.FraudRate = 0.003
	}
	if c.Disorder > 0 && c.DisorderMax <= 0 {
		c.DisorderMax = time.Minute
	}
}

var countries = []string{"GB", "FR", "DE", "ES", "IT", "NL", "US", "BR", "NG", "IN"}

type card struct {
	id, country, device string
	spend               float64 // median amount
	burst               int     // fraud events left in the current burst
}

// Generator produces the stream; it is not safe for concurrent use.
type Generator struct {
	cfg    Config
	rng    *rand.Rand
	late   *rand.Rand // Disorder's draws, apart from the stream's
	cards  []card
	bursts []int // indexes of cards in a burst
	n      int64
	stepMs float64
}

// New returns a generator for cfg.
func New(cfg Config) *Generator {
	cfg.defaults()
	g := &Generator{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)), stepMs: 1000 / cfg.EventsPerSecond}
	if cfg.Disorder > 0 {
		g.late = rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0xd1b54a32d192ed03))
	}
	g.cards = make([]card, cfg.Cards)
	for i := range g.cards {
		g.cards[i] = card{
			id:      fmt.Sprintf("card-%06d", i),
			country: countries[g.rng.IntN(4)],
			device:  fmt.Sprintf("dev-%06d", i),
			spend:   math.Exp(3.2 + 0.7*g.rng.NormFloat64()),
		}
	}
	return g
}

// Config returns the generator's config with defaults applied.
func (g *Generator) Config() Config { return g.cfg }

// Drifted reports whether event time t is past the drift point.
func (g *Generator) Drifted(t time.Time) bool {
	return g.cfg.DriftAt > 0 && !t.Before(g.cfg.Start.Add(g.cfg.DriftAt))
}

// Next returns the next transaction and its label. With Disorder, the
// transaction's event time may be behind that of earlier ones; drift
// follows the time the transaction would have had in order.
func (g *Generator) Next() (schemas.Transaction, schemas.Label) {
	ts := g.cfg.Start.UnixMilli() + int64(float64(g.n)*g.stepMs)
	g.n++
	drifted := g.cfg.DriftAt > 0 && ts >= g.cfg.Start.Add(g.cfg.DriftAt).UnixMilli()
	if g.late != nil && g.late.Float64() < g.cfg.Disorder {
		ts -= 1 + g.late.Int64N(max(1, g.cfg.DisorderMax.Milliseconds()))
	}

	var ci int
	if len(g.bursts) > 0 && g.rng.Float64() < 0.25 {
		bi := g.rng.IntN(len(g.bursts))
		ci = g.bursts[bi]
	} else {
		ci = g.rng.IntN(len(g.cards))
		if g.cards[ci].burst == 0 && g.rng.Float64() < g.cfg.FraudRate {
			n := 3 + g.rng.IntN(5)
			if drifted {
				n = 6 + g.rng.IntN(8) // after drift: longer bursts of smaller amounts
			}
			g.cards[ci].burst = n
			g.bursts = append(g.bursts, ci)
		}
	}
	c := &g.cards[ci]
	tx := schemas.Transaction{
		TxnID:      fmt.Sprintf("txn-%d-%09d", g.cfg.Seed, g.n),
		CardID:     c.id,
		MerchantID: fmt.Sprintf("m-%04d", g.rng.IntN(g.cfg.Merchants)),
		Currency:   "EUR",
		Country:    c.country,
		DeviceID:   c.device,
		EventTime:  ts,
	}
	spend := c.spend
	if drifted {
		spend *= 2.2 // inflation: everyone spends more
	}
	fraud := c.burst > 0
	if fraud {
		mult := 4 + 6*g.rng.Float64()
		if drifted {
			mult = 1.2 + 1.5*g.rng.Float64()
		}
		tx.Amount = round2(spend * mult * math.Exp(0.2*g.rng.NormFloat64()))
		tx.Country = countries[4+g.rng.IntN(len(countries)-4)]
		tx.DeviceID = fmt.Sprintf("dev-x%05d", g.rng.IntN(100000))
		c.burst--
		if c.burst == 0 {
			g.dropBurst(ci)
		}
	} else {
		tx.Amount = round2(spend * math.Exp(0.5*g.rng.NormFloat64()))
	}
	lb := schemas.Label{TxnID: tx.TxnID, CardID: tx.CardID, EventTime: ts, LabelTime: ts + g.cfg.LabelDelay.Milliseconds(), IsFraud: fraud}
	return tx, lb
}

func (g *Generator) dropBurst(ci int) {
	for i, b := range g.bursts {
		if b == ci {
			g.bursts = append(g.bursts[:i], g.bursts[i+1:]...)
			return
		}
	}
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }
