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
const changelogVersion = 2

// appendState encodes s for the changelog; see docs/format/changelog.md.
// fp is the engine's fingerprint: state written under another definition
// of the views is refused on restore.
func appendState(dst []byte, s *entityState, nfields int, fp uint64) []byte {
	dst = append(dst, changelogVersion)
	dst = binary.LittleEndian.AppendUint64(dst, fp)
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

// errOtherDefinition is returned for state written under another definition
// of the source's views.
var errOtherDefinition = errors.New("changelog state was written for another definition of the views")

// decodeState decodes a changelog value written by appendState.
func decodeState(b []byte, nfields int, fp uint64) (*entityState, error) {
	if len(b) == 0 || b[0] != changelogVersion {
		return nil, fmt.Errorf("%w: unknown version byte", errCorruptState)
	}
	if len(b) < 9 {
		return nil, fmt.Errorf("%w: fingerprint", errCorruptState)
	}
	if got := binary.LittleEndian.Uint64(b[1:9]); got != fp {
		return nil, fmt.Errorf("%w (fingerprint %016x, the views now %016x): the windows, fields or lateness changed; delete the changelog topic and the processor's consumer group offsets to rebuild from the source, or revert the change", errOtherDefinition, got, fp)
	}
	b = b[9:]
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
		return nil, fmt.Errorf("%w: %d fields, the views need %d", errCorruptState, nf, nfields)
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
