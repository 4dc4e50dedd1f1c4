package agg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrCorrupt is wrapped by every Decode error: the input is not an encoding of
// the accumulator, or it is truncated.
var ErrCorrupt = errors.New("corrupt encoding")

// Header bytes: kind in the high nibble, format version in the low one.
const (
	headerCounts    = 0x11
	headerDistinct  = 0x21
	headerTopK      = 0x31
	headerQuantiles = 0x41
)

// decoder reads from the front of a byte slice. The first failure sticks: later
// reads return zero values and err reports the first problem.
type decoder struct {
	b    []byte
	what string // "counts", "quantiles", ... for error messages
	err  error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("agg: decode %s: %s: %w", d.what, fmt.Sprintf(format, args...), ErrCorrupt)
	}
}

func (d *decoder) header(want byte) {
	if len(d.b) == 0 {
		d.fail("empty input")
		return
	}
	if d.b[0] != want {
		d.fail("header byte %#02x, want %#02x", d.b[0], want)
		return
	}
	d.b = d.b[1:]
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a number of items each needing at least minSize bytes, so
// that a corrupt count cannot make the caller allocate beyond the input.
func (d *decoder) count(minSize int) int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)/minSize) {
		d.fail("%d items in %d bytes", n, len(d.b))
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("%d-byte string in %d bytes", n, len(d.b))
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) float64() float64 {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 8 {
		d.fail("truncated")
		return 0
	}
	v := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return v
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}
