package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/schemas"
)

// The view both sides compute: card_activity of deploy/demo/weir.yaml. The
// order is Weir's feature order and the Kafka Streams app's output order.
var featureNames = []string{"txn_count_5m", "amount_sum_5m", "txn_count_1h", "amount_sum_1h", "amount_max_1h", "amount_last"}

const (
	nFeatures = 6
	win5m     = 5 * 60_000
	win1h     = 60 * 60_000
)

type features [nFeatures]float64

// event is one input record as the oracle sees it.
type event struct {
	card   int32
	t      int64 // event time, ms
	amount float64
	late   bool // older than its card's newest accepted event by more than the lateness
}

// pos is a record's place in the input topic.
type pos struct {
	part int32
	off  int64
}

// input is the whole input topic, decoded, for the brute-force oracle.
type input struct {
	events   map[int32][]event // by partition, index = offset
	byCard   [][]pos           // each card's events in offset order (a card lives in one partition)
	cards    map[string]int32
	total    int
	late     int
	lateness int64
}

// readInput reads and decodes every record of the input topic.
func readInput(ctx context.Context, k *kafka, topic string, serde *schemas.Serde, lateness int64) (*input, error) {
	in := &input{events: map[int32][]event{}, cards: map[string]int32{}, lateness: lateness}
	var derr error
	err := k.readAll(ctx, topic, func(r *kgo.Record) {
		if derr != nil {
			return
		}
		var tx schemas.Transaction
		if err := serde.Decode(ctx, r.Value, &tx); err != nil {
			derr = fmt.Errorf("input %d@%d: %w", r.Partition, r.Offset, err)
			return
		}
		if string(r.Key) != tx.CardID {
			derr = fmt.Errorf("input %d@%d: key %q, card %q", r.Partition, r.Offset, r.Key, tx.CardID)
			return
		}
		evs := in.events[r.Partition]
		if int64(len(evs)) != r.Offset {
			derr = fmt.Errorf("input %d: offset %d after %d records (the topic is not transactional: offsets are dense)", r.Partition, r.Offset, len(evs))
			return
		}
		c, ok := in.cards[tx.CardID]
		if !ok {
			c = int32(len(in.byCard))
			in.cards[tx.CardID] = c
			in.byCard = append(in.byCard, nil)
		}
		in.events[r.Partition] = append(evs, event{card: c, t: tx.EventTime, amount: tx.Amount})
		in.byCard[c] = append(in.byCard[c], pos{r.Partition, r.Offset})
		in.total++
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, err
	}
	// Lateness, as both engines define it: an event older than its card's
	// newest accepted event by more than the lateness is not aggregated.
	for _, ps := range in.byCard {
		newest := int64(math.MinInt64)
		for _, p := range ps {
			ev := &in.events[p.part][p.off]
			if newest != math.MinInt64 && ev.t < newest-lateness {
				ev.late = true
				in.late++
				continue
			}
			newest = max(newest, ev.t)
		}
	}
	return in, nil
}

func (in *input) at(p pos) *event { return &in.events[p.part][p.off] }

// sample picks n accepted events at random (seeded).
func (in *input) sample(n int, seed uint64) []pos {
	var all []pos
	for part, evs := range in.events {
		for off := range evs {
			if !evs[off].late {
				all = append(all, pos{part, int64(off)})
			}
		}
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x5bd1e995))
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	return all[:min(n, len(all))]
}

// expected recomputes the features of the event at p by brute force: a scan
// of every accepted event of its card processed before it (lower offset in
// the same partition) or itself, with a time in the window and not after
// the event's own. It shares no code with either engine.
func (in *input) expected(p pos) features {
	ev := in.at(p)
	t := ev.t
	var f features
	f[4] = math.Inf(-1)
	for _, q := range in.byCard[ev.card] {
		if q.off > p.off {
			break
		}
		e := in.at(q)
		if e.late || e.t > t {
			continue
		}
		if e.t > t-win5m {
			f[0]++
			f[1] += e.amount
		}
		if e.t > t-win1h {
			f[2]++
			f[3] += e.amount
			f[4] = math.Max(f[4], e.amount)
		}
	}
	f[5] = ev.amount
	return f
}

// check is one side's output against the input and the oracle.
type check struct {
	Outputs     int64 `json:"outputs"`
	OutputBytes int64 `json:"output_bytes"` // keys and values
	Missing     int   `json:"missing"`      // accepted input events without an output
	Duplicates  int   `json:"duplicates"`   // outputs beyond one per input event
	Strays      int   `json:"strays"`       // outputs for no accepted input event
	Sampled     int   `json:"sampled"`
	Mismatches  int   `json:"mismatches"`
	// FirstMs is the earliest processing time an output carries (Weir's
	// known_time, the Kafka Streams app's processing time): when the first
	// input event was processed, ms.
	FirstMs  int64 `json:"first_processed_ms"`
	examples []string
}

func (c *check) ok() bool {
	return c.Missing == 0 && c.Duplicates == 0 && c.Strays == 0 && c.Mismatches == 0
}

func (c *check) String() string {
	s := fmt.Sprintf("%d outputs, %d missing, %d duplicates, %d strays; sample %d, %d mismatches",
		c.Outputs, c.Missing, c.Duplicates, c.Strays, c.Sampled, c.Mismatches)
	if len(c.examples) > 0 {
		s += "\n      " + strings.Join(c.examples, "\n      ")
	}
	return s
}

// verify reads a side's whole output topic: decode turns a record into the
// source position and features it claims. Every accepted input event must
// have exactly one output, and the sampled ones must equal the oracle.
func verify(ctx context.Context, k *kafka, topic string, in *input, sample []pos, decode decoder) (*check, error) {
	c := &check{FirstMs: math.MaxInt64}
	seen := map[int32][]uint8{}
	for part, evs := range in.events {
		seen[part] = make([]uint8, len(evs))
	}
	want := make(map[pos]bool, len(sample))
	for _, p := range sample {
		want[p] = true
	}
	got := make(map[pos]features, len(sample))
	var derr error
	err := k.readAll(ctx, topic, func(r *kgo.Record) {
		c.Outputs++
		c.OutputBytes += int64(len(r.Key) + len(r.Value))
		p, f, at, err := decode(r)
		if err != nil {
			if derr == nil {
				derr = fmt.Errorf("%s %d@%d: %w", topic, r.Partition, r.Offset, err)
			}
			return
		}
		c.FirstMs = min(c.FirstMs, at)
		s := seen[p.part]
		if p.off < 0 || p.off >= int64(len(s)) || in.at(p).late {
			c.Strays++
			return
		}
		if s[p.off] < 255 {
			s[p.off]++
		}
		if want[p] {
			got[p] = f
		}
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, err
	}
	for part, s := range seen {
		for off, n := range s {
			switch {
			case n == 0 && !in.events[part][off].late:
				c.Missing++
			case n > 1:
				c.Duplicates += int(n) - 1
			}
		}
	}
	for _, p := range sample {
		f, ok := got[p]
		if !ok {
			continue // counted as missing
		}
		c.Sampled++
		exp := in.expected(p)
		for i := range f {
			if !near(f[i], exp[i]) {
				c.Mismatches++
				if len(c.examples) < 5 {
					c.examples = append(c.examples, fmt.Sprintf("%d@%d %s: got %v, want %v", p.part, p.off, featureNames[i], f[i], exp[i]))
				}
				break
			}
		}
	}
	return c, nil
}

// near compares within 1e-9 relative: the engines may add in another order.
func near(a, b float64) bool {
	return a == b || math.Abs(a-b) <= 1e-9*math.Max(1, math.Max(math.Abs(a), math.Abs(b)))
}

// decoder turns an output record into the source position and features it
// claims, and the wall clock (ms) when it was processed.
type decoder func(*kgo.Record) (p pos, f features, processedMs int64, err error)

// decodeWeir decodes a Weir feature row (Avro, Confluent wire format); its
// known_time is the processor's clock when it processed the event.
func decodeWeir(ctx context.Context, serde *schemas.Serde) decoder {
	return func(r *kgo.Record) (pos, features, int64, error) {
		var row schemas.FeatureRow
		var f features
		if err := serde.Decode(ctx, r.Value, &row); err != nil {
			return pos{}, f, 0, err
		}
		if len(row.Values) != nFeatures {
			return pos{}, f, 0, fmt.Errorf("%d values, want %d", len(row.Values), nFeatures)
		}
		for i, v := range row.Values {
			if v.Name != featureNames[i] {
				return pos{}, f, 0, fmt.Errorf("value %d is %q, want %q", i, v.Name, featureNames[i])
			}
			f[i] = v.Value
		}
		return pos{row.SourcePartition, row.SourceOffset}, f, row.KnownTime, nil
	}
}

// decodeKStreams decodes the Kafka Streams app's compact binary value:
// int32 partition, int64 offset, int64 event time, int64 processing time,
// then the six features as doubles, big-endian.
func decodeKStreams(r *kgo.Record) (pos, features, int64, error) {
	var f features
	v := r.Value
	if len(v) != 4+8+8+8+8*nFeatures {
		return pos{}, f, 0, fmt.Errorf("value of %d bytes", len(v))
	}
	p := pos{int32(binary.BigEndian.Uint32(v)), int64(binary.BigEndian.Uint64(v[4:]))}
	processed := int64(binary.BigEndian.Uint64(v[20:]))
	for i := range f {
		f[i] = math.Float64frombits(binary.BigEndian.Uint64(v[28+8*i:]))
	}
	return p, f, processed, nil
}
