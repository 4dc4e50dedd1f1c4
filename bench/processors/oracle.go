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

// features are one event's feature values, in the workload's order.
type features []float64

// event is one input record as the oracle sees it.
type event struct {
	card   int32
	t      int64 // event time, ms
	amount float64
	late   bool // behind its partition's watermark by more than the lateness
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
	// Lateness, as both engines define it: an event behind its partition's
	// watermark (the newest event time of the partition so far; Weir's
	// out_of_order is 0) by more than the lateness is not aggregated.
	for _, evs := range in.events {
		wm := int64(math.MinInt64)
		for i := range evs {
			ev := &evs[i]
			if wm != math.MinInt64 && ev.t < wm-lateness {
				ev.late = true
				in.late++
				continue
			}
			wm = max(wm, ev.t)
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

// expected recomputes the final features of the event at p by brute force:
// a scan of every accepted event of its card with a time in the feature's
// window (t-w, t], where an event at the same time t counts if it came
// before this one in the partition (or is this one). Events processed after
// this one but earlier in time count too: Weir emits a correction for this
// event's row then (none happen with in-order input). It shares no code with
// either engine.
func (in *input) expected(p pos, wl *workload) features {
	ev := in.at(p)
	t := ev.t
	f := make(features, len(wl.features))
	for i, fd := range wl.features {
		w := fd.window.Milliseconds()
		var n, sum float64
		lo, hi := math.Inf(1), math.Inf(-1)
		var last float64
		lastT, lastOff := int64(math.MinInt64), int64(-1)
		for _, q := range in.byCard[ev.card] {
			e := in.at(q)
			if e.late || e.t > t || (e.t == t && q.off > p.off) || (w > 0 && e.t <= t-w) {
				continue
			}
			n++
			sum += e.amount
			lo, hi = math.Min(lo, e.amount), math.Max(hi, e.amount)
			if e.t > lastT || (e.t == lastT && q.off > lastOff) {
				last, lastT, lastOff = e.amount, e.t, q.off
			}
		}
		switch fd.agg {
		case "count":
			f[i] = n
		case "sum":
			f[i] = sum
		case "mean":
			f[i] = sum / n
		case "min":
			f[i] = lo
		case "max":
			f[i] = hi
		case "last":
			f[i] = last
		default:
			panic("oracle: aggregation " + fd.agg)
		}
	}
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
	// Corrections are Weir rows revising an earlier row (revises_offset
	// set): the last one in the topic is the event's final row.
	Corrections int64 `json:"corrections"`
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
func verify(ctx context.Context, k *kafka, topic string, in *input, wl *workload, sample []pos, decode decoder) (*check, error) {
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
		p, f, at, revises, err := decode(r)
		if err != nil {
			if derr == nil {
				derr = fmt.Errorf("%s %d@%d: %w", topic, r.Partition, r.Offset, err)
			}
			return
		}
		c.FirstMs = min(c.FirstMs, at)
		s := seen[p.part]
		if revises >= 0 {
			// A correction of the row of the event at revises.
			c.Corrections++
			p.off = revises
		}
		if p.off < 0 || p.off >= int64(len(s)) || in.at(p).late {
			c.Strays++
			return
		}
		if revises < 0 && s[p.off] < 255 {
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
		exp := in.expected(p, wl)
		if len(f) != len(exp) {
			c.Mismatches++
			if len(c.examples) < 5 {
				c.examples = append(c.examples, fmt.Sprintf("%d@%d: %d features, want %d", p.part, p.off, len(f), len(exp)))
			}
			continue
		}
		for i := range f {
			if !near(f[i], exp[i]) {
				c.Mismatches++
				if len(c.examples) < 5 {
					c.examples = append(c.examples, fmt.Sprintf("%d@%d %s: got %v, want %v", p.part, p.off, wl.features[i].name, f[i], exp[i]))
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
// claims, the wall clock (ms) when it was processed, and the offset of the
// event whose row it revises (-1 for an event's own row).
type decoder func(*kgo.Record) (p pos, f features, processedMs, revises int64, err error)

// decodeWeir decodes a Weir feature row (Avro, Confluent wire format); its
// known_time is the processor's clock when it processed the event.
func decodeWeir(ctx context.Context, serde *schemas.Serde, wl *workload) decoder {
	return func(r *kgo.Record) (pos, features, int64, int64, error) {
		var row schemas.FeatureRow
		if err := serde.Decode(ctx, r.Value, &row); err != nil {
			return pos{}, nil, 0, 0, err
		}
		if len(row.Values) != len(wl.features) {
			return pos{}, nil, 0, 0, fmt.Errorf("%d values, want %d", len(row.Values), len(wl.features))
		}
		f := make(features, len(row.Values))
		for i, v := range row.Values {
			if v.Name != wl.features[i].name {
				return pos{}, nil, 0, 0, fmt.Errorf("value %d is %q, want %q", i, v.Name, wl.features[i].name)
			}
			f[i] = v.Value
		}
		return pos{row.SourcePartition, row.SourceOffset}, f, row.KnownTime, row.RevisesOffset, nil
	}
}

// decodeKStreams decodes the Kafka Streams app's compact binary value:
// int32 partition, int64 offset, int64 event time, int64 processing time,
// then the features as doubles, big-endian.
func decodeKStreams(wl *workload) decoder {
	n := len(wl.features)
	return func(r *kgo.Record) (pos, features, int64, int64, error) {
		v := r.Value
		if len(v) != 4+8+8+8+8*n {
			return pos{}, nil, 0, 0, fmt.Errorf("value of %d bytes, want %d", len(v), 28+8*n)
		}
		p := pos{int32(binary.BigEndian.Uint32(v)), int64(binary.BigEndian.Uint64(v[4:]))}
		processed := int64(binary.BigEndian.Uint64(v[20:]))
		f := make(features, n)
		for i := range f {
			f[i] = math.Float64frombits(binary.BigEndian.Uint64(v[28+8*i:]))
		}
		return p, f, processed, -1, nil
	}
}
