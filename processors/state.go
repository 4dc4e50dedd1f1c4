package processors

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// pastEvent is one retained event of an entity: its time and the numeric
// fields the views aggregate.
type pastEvent struct {
	time int64
	vals []float64
}

// entityState is everything an entity's features need.
type entityState struct {
	maxTime int64
	events  []pastEvent // processing (offset) order
}

func (s *entityState) clone() *entityState {
	c := &entityState{maxTime: s.maxTime, events: make([]pastEvent, len(s.events), len(s.events)+1)}
	copy(c.events, s.events) // vals slices are never mutated after creation
	return c
}

// changelogVersion is the first byte of every changelog value.
const changelogVersion = 1

// appendState encodes s for the changelog; see docs/format/changelog.md.
func appendState(dst []byte, s *entityState, nfields int) []byte {
	dst = append(dst, changelogVersion)
	dst = binary.AppendVarint(dst, s.maxTime)
	dst = binary.AppendUvarint(dst, uint64(nfields))
	dst = binary.AppendUvarint(dst, uint64(len(s.events)))
	for _, e := range s.events {
		dst = binary.AppendVarint(dst, s.maxTime-e.time)
		for _, v := range e.vals {
			dst = binary.LittleEndian.AppendUint64(dst, math.Float64bits(v))
		}
	}
	return dst
}

var errCorruptState = errors.New("corrupt changelog state")

// decodeState decodes a changelog value written by appendState.
func decodeState(b []byte, nfields int) (*entityState, error) {
	if len(b) == 0 || b[0] != changelogVersion {
		return nil, fmt.Errorf("%w: unknown version byte", errCorruptState)
	}
	b = b[1:]
	maxTime, n := binary.Varint(b)
	if n <= 0 {
		return nil, fmt.Errorf("%w: max time", errCorruptState)
	}
	b = b[n:]
	nf, n := binary.Uvarint(b)
	if n <= 0 {
		return nil, fmt.Errorf("%w: field count", errCorruptState)
	}
	if int(nf) != nfields {
		return nil, fmt.Errorf("%w: %d fields, the views need %d (the view definition changed: reset the changelog)", errCorruptState, nf, nfields)
	}
	b = b[n:]
	ne, n := binary.Uvarint(b)
	if n <= 0 || ne > uint64(len(b)) {
		return nil, fmt.Errorf("%w: event count", errCorruptState)
	}
	b = b[n:]
	s := &entityState{maxTime: maxTime, events: make([]pastEvent, ne)}
	vals := make([]float64, int(ne)*nfields)
	for i := range s.events {
		d, n := binary.Varint(b)
		if n <= 0 {
			return nil, fmt.Errorf("%w: event %d time", errCorruptState, i)
		}
		b = b[n:]
		if len(b) < 8*nfields {
			return nil, fmt.Errorf("%w: event %d values", errCorruptState, i)
		}
		ev := pastEvent{time: maxTime - d, vals: vals[i*nfields : (i+1)*nfields : (i+1)*nfields]}
		for j := range ev.vals {
			ev.vals[j] = math.Float64frombits(binary.LittleEndian.Uint64(b))
			b = b[8:]
		}
		s.events[i] = ev
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errCorruptState, len(b))
	}
	return s, nil
}
