package statestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// bytesCodec stores []byte states; Decode copies, as a state must not keep
// the store's buffer.
type bytesCodec struct{}

func (bytesCodec) Append(dst []byte, s []byte) []byte { return append(dst, s...) }
func (bytesCodec) Decode(b []byte) ([]byte, error)    { return slices.Clone(b), nil }

// summaryCodec decodes a []byte state into a fixed-size summary without
// allocating, so that benchmarks see the store's own allocations.
type summaryCodec struct{}

type summary struct {
	head uint64
	n    int
}

func (summaryCodec) Append(dst []byte, s summary) []byte {
	dst = binary.LittleEndian.AppendUint64(dst, s.head)
	return append(dst, zeros[:s.n]...)
}

var zeros [4096]byte

func (summaryCodec) Decode(b []byte) (summary, error) {
	if len(b) < 8 {
		return summary{}, errors.New("short")
	}
	return summary{head: binary.LittleEndian.Uint64(b), n: len(b) - 8}, nil
}

// benchStores are the stores benchmarked, with entities of stateBytes each.
func benchStores(b *testing.B) []struct {
	name string
	s    Store[summary]
} {
	s, err := OpenPebble[summary](PebbleConfig{Dir: b.TempDir()}, 0, summaryCodec{})
	if err != nil {
		b.Fatal(err)
	}
	return []struct {
		name string
		s    Store[summary]
	}{{"memory", NewMemory[summary]()}, {"pebble", s}}
}

const (
	benchEntities   = 100_000
	benchStateBytes = 600
)

func benchKey(i int) string { return fmt.Sprintf("card-%010d", i) }

// benchSpan is the span of the loaded entities' times, a TTL's worth: an
// update moves an entity to a newer time, as an event does.
const benchSpan = 30 * 24 * 3600 * 1000

func load(b *testing.B, s Store[summary], keys []string) {
	batch := make([]Put[summary], 0, 10_000)
	for i, k := range keys {
		batch = append(batch, Put[summary]{Key: k, State: summary{head: uint64(i), n: benchStateBytes - 8}, Time: int64(i) * benchSpan / int64(len(keys))})
		if len(batch) == cap(batch) || i == len(keys)-1 {
			if err := s.Apply(batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

func BenchmarkGet(b *testing.B) {
	keys := make([]string, benchEntities)
	for i := range keys {
		keys[i] = benchKey(i)
	}
	for _, bs := range benchStores(b) {
		b.Run(bs.name, func(b *testing.B) {
			defer bs.s.Close()
			load(b, bs.s, keys)
			rng := rand.New(rand.NewPCG(1, 1))
			b.ReportAllocs()
			b.SetBytes(benchStateBytes)
			for b.Loop() {
				if _, ok, err := bs.s.Get(keys[rng.IntN(len(keys))]); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
}

// BenchmarkApply updates random entities in batches of 1,000, a
// transaction's worth: blind, as a restore writes, or each read first, as
// a task does (ns/put then includes the Get).
func BenchmarkApply(b *testing.B) {
	keys := make([]string, benchEntities)
	for i := range keys {
		keys[i] = benchKey(i)
	}
	for _, bs := range benchStores(b) {
		load(b, bs.s, keys)
		for _, read := range []bool{false, true} {
			name := bs.name + "/blind"
			if read {
				name = bs.name + "/read"
			}
			b.Run(name, func(b *testing.B) {
				rng := rand.New(rand.NewPCG(1, 1))
				batch := make([]Put[summary], 1000)
				t := int64(benchSpan)
				b.ReportAllocs()
				b.SetBytes(benchStateBytes * int64(len(batch)))
				for b.Loop() {
					for i := range batch {
						t++
						k := keys[rng.IntN(len(keys))]
						if read {
							if _, _, err := bs.s.Get(k); err != nil {
								b.Fatal(err)
							}
						}
						batch[i] = Put[summary]{Key: k, State: summary{head: uint64(t), n: benchStateBytes - 8}, Time: t}
					}
					if err := bs.s.Apply(batch); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(batch)), "ns/put")
			})
		}
		if err := bs.s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
