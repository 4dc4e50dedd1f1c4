package trainingset

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Type is a column's value type. Spine readers map their sources' types to
// these four; features are Float64.
type Type uint8

// Column types.
const (
	Bool Type = iota + 1
	Int64
	Float64
	String
)

func (t Type) String() string {
	switch t {
	case Bool:
		return "bool"
	case Int64:
		return "int64"
	case Float64:
		return "float64"
	case String:
		return "string"
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// MarshalText writes the type's name.
func (t Type) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText reads a type's name.
func (t *Type) UnmarshalText(b []byte) error {
	for _, c := range []Type{Bool, Int64, Float64, String} {
		if c.String() == string(b) {
			*t = c
			return nil
		}
	}
	return fmt.Errorf("trainingset: unknown column type %q", b)
}

// Column is one column of a spine or an output.
type Column struct {
	Name     string `json:"name"`
	Type     Type   `json:"type"`
	Nullable bool   `json:"nullable,omitempty"`
}

// Vector holds one column's values of a chunk: Ints for Int64 and Bool
// (0 or 1), Floats for Float64, Strs for String. Null is nil for a column
// that is not nullable; otherwise Null[i] marks row i null (its value is
// then the zero value).
type Vector struct {
	Ints   []int64
	Floats []float64
	Strs   []string
	Null   []bool
}

func (v *Vector) reset(t Type, nullable bool) {
	v.Ints, v.Floats, v.Strs = v.Ints[:0], v.Floats[:0], v.Strs[:0]
	v.Null = v.Null[:0]
	if !nullable {
		v.Null = nil
	}
}

// IsNull reports whether row i is null.
func (v *Vector) IsNull(i int) bool { return v.Null != nil && v.Null[i] }

// Chunk is a run of consecutive rows: one Vector per column.
type Chunk struct {
	Len  int
	Cols []Vector
}

// Reset empties c for the columns cols, keeping its buffers.
func (c *Chunk) Reset(cols []Column) {
	c.Len = 0
	if cap(c.Cols) < len(cols) {
		c.Cols = make([]Vector, len(cols))
	}
	c.Cols = c.Cols[:len(cols)]
	for i, col := range cols {
		c.Cols[i].reset(col.Type, col.Nullable)
	}
}

// Spine is a source of spine rows. Next resets c for Columns and fills it
// with up to max rows; at the end it returns 0 rows and io.EOF. The chunk's
// buffers belong to the caller and are reused by the next call.
type Spine interface {
	Columns() []Column
	Next(c *Chunk, max int) error
	// Rows is the number of rows when known before reading (a Parquet
	// file's metadata), else -1.
	Rows() int64
	Close() error
}

// appendCell parses a text cell into column v of type t: the empty string
// is null when nullable (an error otherwise).
func appendCell(v *Vector, t Type, nullable bool, s string) error {
	null := s == ""
	if null && !nullable {
		return fmt.Errorf("empty value in a column that is not nullable")
	}
	if nullable {
		v.Null = append(v.Null, null)
	}
	switch t {
	case Bool:
		var b bool
		if !null {
			var err error
			if b, err = strconv.ParseBool(s); err != nil {
				return err
			}
		}
		x := int64(0)
		if b {
			x = 1
		}
		v.Ints = append(v.Ints, x)
	case Int64:
		var x int64
		if !null {
			var err error
			if x, err = strconv.ParseInt(s, 10, 64); err != nil {
				return err
			}
		}
		v.Ints = append(v.Ints, x)
	case Float64:
		var x float64
		if !null {
			var err error
			if x, err = strconv.ParseFloat(s, 64); err != nil {
				return err
			}
		}
		v.Floats = append(v.Floats, x)
	case String:
		v.Strs = append(v.Strs, s)
	}
	return nil
}

// TimeUnit says what an integer timestamp counts.
type TimeUnit int64

// Time units, in nanoseconds.
const (
	Seconds      TimeUnit = TimeUnit(time.Second)
	Milliseconds TimeUnit = TimeUnit(time.Millisecond)
	Microseconds TimeUnit = TimeUnit(time.Microsecond)
	Nanoseconds  TimeUnit = TimeUnit(time.Nanosecond)
)

// ParseTimeUnit reads s, ms, us or ns.
func ParseTimeUnit(s string) (TimeUnit, error) {
	switch s {
	case "s":
		return Seconds, nil
	case "ms", "":
		return Milliseconds, nil
	case "us":
		return Microseconds, nil
	case "ns":
		return Nanoseconds, nil
	}
	return 0, fmt.Errorf("time unit %q: want s, ms, us or ns", s)
}

// toMillis converts n units to Unix ms, flooring (an instant within a
// millisecond belongs to it, as event_time_ms does).
func (u TimeUnit) toMillis(n int64) (int64, error) {
	switch {
	case u == Milliseconds:
		return n, nil
	case u > Milliseconds:
		f := int64(u / Milliseconds)
		if n > math.MaxInt64/f || n < math.MinInt64/f {
			return 0, fmt.Errorf("timestamp %d overflows", n)
		}
		return n * f, nil
	default:
		d := int64(Milliseconds / u)
		q := n / d
		if n%d < 0 {
			q--
		}
		return q, nil
	}
}

// timeOf reads row i of a timestamp column as Unix ms: an integer in unit
// u, or text: an integer in unit u, or RFC 3339.
func timeOf(v *Vector, t Type, u TimeUnit, i int) (int64, error) {
	if v.IsNull(i) {
		return 0, fmt.Errorf("null timestamp")
	}
	switch t {
	case Int64:
		return u.toMillis(v.Ints[i])
	case String:
		s := strings.TrimSpace(v.Strs[i])
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return u.toMillis(n)
		}
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return 0, fmt.Errorf("timestamp %q: neither an integer nor RFC 3339", s)
		}
		return ts.UnixMilli(), nil
	}
	return 0, fmt.Errorf("a %s column cannot be a timestamp (want an integer or text)", t)
}

// entityOf reads row i of an entity column as the offline store's entity
// string: text as is, an integer in decimal.
func entityOf(v *Vector, t Type, i int) (string, error) {
	if v.IsNull(i) {
		return "", fmt.Errorf("null entity")
	}
	switch t {
	case String:
		return v.Strs[i], nil
	case Int64:
		return strconv.FormatInt(v.Ints[i], 10), nil
	}
	return "", fmt.Errorf("a %s column cannot be an entity key (want text or an integer)", t)
}
