package processors

import (
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
)

// arena hands out output records and copies of their keys and values from
// chunks, so that a transaction's thousands of records cost a few
// allocations instead of two or three each. Chunks are never reused: a
// chunk lives on, unchanged, as long as the producer holds any record or
// byte slice of it.
type arena struct {
	recs []kgo.Record
	buf  []byte
	// scratch builds keys and values before they are copied in.
	scratch []byte
}

const (
	arenaRecords = 128
	arenaBytes   = 32 << 10
)

// record returns a zero record.
func (a *arena) record(topic string, part int32, key, value []byte) *kgo.Record {
	if len(a.recs) == 0 {
		a.recs = make([]kgo.Record, arenaRecords)
	}
	r := &a.recs[0]
	a.recs = a.recs[1:]
	r.Topic, r.Partition, r.Key, r.Value = topic, part, key, value
	return r
}

// copy returns a copy of b whose capacity is its length, so that appending
// to it cannot overwrite its neighbours.
func (a *arena) copy(b []byte) []byte {
	if len(b) > arenaBytes/8 {
		return slices.Clone(b)
	}
	if cap(a.buf)-len(a.buf) < len(b) {
		a.buf = make([]byte, 0, arenaBytes)
	}
	n := len(a.buf)
	a.buf = append(a.buf, b...)
	return a.buf[n:len(a.buf):len(a.buf)]
}
