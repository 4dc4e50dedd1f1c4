package schemas

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/hamba/avro/v2"
)

// Kinds of a projected value.
const (
	KindNull byte = iota
	KindBool
	KindLong   // Avro int or long (timestamps too)
	KindDouble // Avro float or double
	KindBytes  // Avro string or bytes
)

// Value is one projected field. Bytes aliases the decoded body: copy it to
// keep it past the next call.
type Value struct {
	Kind   byte
	Long   int64 // also booleans: 0 or 1
	Double float64
	Bytes  []byte
}

// Float returns a numeric value as float64.
func (v Value) Float() (float64, bool) {
	switch v.Kind {
	case KindDouble:
		return v.Double, true
	case KindLong:
		return float64(v.Long), true
	}
	return 0, false
}

// ErrShortBody is returned for an Avro body that ends inside a value.
var ErrShortBody = errors.New("avro body ends early")

// Projector decodes a few top-level fields of records written under one
// writer schema, skipping the rest, without reflection or allocation: the
// hot path of a processor reads its key, time, id and numeric fields only.
type Projector struct {
	steps []step
	n     int
}

// step decodes or skips one writer field.
type step struct {
	out  int // index in the output, -1 to skip
	skip func(b []byte) ([]byte, error)
	read func(b []byte, v *Value) ([]byte, error)
}

// NewProjector compiles a projector of the named fields from records written
// with writer; reader supplies defaults for fields the writer lacks. A
// wanted field must be a primitive or a union of null and one primitive.
func NewProjector(writer, reader avro.Schema, fields []string) (*Projector, error) {
	w, ok := writer.(*avro.RecordSchema)
	if !ok {
		return nil, fmt.Errorf("schemas: projector: writer schema is %s, not a record", writer.Type())
	}
	want := map[string]int{}
	for i, f := range fields {
		if _, dup := want[f]; dup {
			return nil, fmt.Errorf("schemas: projector: field %q is asked for twice", f)
		}
		want[f] = i
	}
	p := &Projector{n: len(fields)}
	found := map[string]bool{}
	for _, f := range w.Fields() {
		i, ok := want[f.Name()]
		if !ok {
			skip, err := skipper(f.Type())
			if err != nil {
				return nil, fmt.Errorf("schemas: projector: field %s: %w", f.Name(), err)
			}
			p.steps = append(p.steps, step{out: -1, skip: skip})
			continue
		}
		read, err := valueReader(f.Type())
		if err != nil {
			return nil, fmt.Errorf("schemas: projector: field %s: %w", f.Name(), err)
		}
		found[f.Name()] = true
		p.steps = append(p.steps, step{out: i, read: read})
	}
	for _, name := range fields {
		if found[name] {
			continue
		}
		def, err := readerDefault(reader, name)
		if err != nil {
			return nil, err
		}
		i := want[name]
		p.steps = append(p.steps, step{out: i, read: func(b []byte, v *Value) ([]byte, error) { *v = def; return b, nil }})
	}
	return p, nil
}

func readerDefault(reader avro.Schema, name string) (Value, error) {
	r, ok := reader.(*avro.RecordSchema)
	if ok {
		for _, f := range r.Fields() {
			if f.Name() != name || !f.HasDefault() {
				continue
			}
			switch d := f.Default().(type) {
			case nil:
				return Value{Kind: KindNull}, nil
			case string:
				return Value{Kind: KindBytes, Bytes: []byte(d)}, nil
			case float64:
				return Value{Kind: KindDouble, Double: d}, nil
			case float32:
				return Value{Kind: KindDouble, Double: float64(d)}, nil
			case int:
				return Value{Kind: KindLong, Long: int64(d)}, nil
			case int32:
				return Value{Kind: KindLong, Long: int64(d)}, nil
			case int64:
				return Value{Kind: KindLong, Long: d}, nil
			case bool:
				if d {
					return Value{Kind: KindBool, Long: 1}, nil
				}
				return Value{Kind: KindBool}, nil
			}
		}
	}
	return Value{}, fmt.Errorf("schemas: projector: the writer schema has no field %q and the reader gives it no default", name)
}

// Project decodes body into out (len(out) >= the number of fields).
func (p *Projector) Project(body []byte, out []Value) error {
	if len(out) < p.n {
		return fmt.Errorf("schemas: project: %d outputs for %d fields", len(out), p.n)
	}
	var err error
	for i := range p.steps {
		s := &p.steps[i]
		if s.out < 0 {
			body, err = s.skip(body)
		} else {
			body, err = s.read(body, &out[s.out])
		}
		if err != nil {
			return err
		}
	}
	if len(body) != 0 {
		return fmt.Errorf("schemas: project: %d bytes after the record", len(body))
	}
	return nil
}

func readLong(b []byte) (int64, []byte, error) {
	v, n := binary.Varint(b)
	if n <= 0 {
		return 0, nil, ErrShortBody
	}
	return v, b[n:], nil
}

func readBytes(b []byte) ([]byte, []byte, error) {
	n, b, err := readLong(b)
	if err != nil {
		return nil, nil, err
	}
	if n < 0 || n > int64(len(b)) {
		return nil, nil, ErrShortBody
	}
	return b[:n], b[n:], nil
}

func fixedLen(n int) func([]byte) ([]byte, error) {
	return func(b []byte) ([]byte, error) {
		if len(b) < n {
			return nil, ErrShortBody
		}
		return b[n:], nil
	}
}

// reader_ returns a decoder of a primitive (or null-union) value.
func valueReader(s avro.Schema) (func([]byte, *Value) ([]byte, error), error) {
	switch s.Type() {
	case avro.Null:
		return func(b []byte, v *Value) ([]byte, error) { *v = Value{Kind: KindNull}; return b, nil }, nil
	case avro.Boolean:
		return func(b []byte, v *Value) ([]byte, error) {
			if len(b) < 1 {
				return nil, ErrShortBody
			}
			*v = Value{Kind: KindBool, Long: int64(b[0] & 1)}
			return b[1:], nil
		}, nil
	case avro.Int, avro.Long:
		return func(b []byte, v *Value) ([]byte, error) {
			x, b, err := readLong(b)
			*v = Value{Kind: KindLong, Long: x}
			return b, err
		}, nil
	case avro.Float:
		return func(b []byte, v *Value) ([]byte, error) {
			if len(b) < 4 {
				return nil, ErrShortBody
			}
			*v = Value{Kind: KindDouble, Double: float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))}
			return b[4:], nil
		}, nil
	case avro.Double:
		return func(b []byte, v *Value) ([]byte, error) {
			if len(b) < 8 {
				return nil, ErrShortBody
			}
			*v = Value{Kind: KindDouble, Double: math.Float64frombits(binary.LittleEndian.Uint64(b))}
			return b[8:], nil
		}, nil
	case avro.String, avro.Bytes:
		return func(b []byte, v *Value) ([]byte, error) {
			x, b, err := readBytes(b)
			*v = Value{Kind: KindBytes, Bytes: x}
			return b, err
		}, nil
	case avro.Union:
		u := s.(*avro.UnionSchema)
		branches := make([]func([]byte, *Value) ([]byte, error), len(u.Types()))
		for i, t := range u.Types() {
			r, err := valueReader(t)
			if err != nil {
				return nil, err
			}
			branches[i] = r
		}
		return func(b []byte, v *Value) ([]byte, error) {
			i, b, err := readLong(b)
			if err != nil {
				return nil, err
			}
			if i < 0 || i >= int64(len(branches)) {
				return nil, fmt.Errorf("union branch %d of %d", i, len(branches))
			}
			return branches[i](b, v)
		}, nil
	}
	return nil, fmt.Errorf("type %s cannot be projected (only primitives and unions of them)", s.Type())
}

// skipper returns a function that skips one value of s.
func skipper(s avro.Schema) (func([]byte) ([]byte, error), error) {
	switch s.Type() {
	case avro.Null:
		return func(b []byte) ([]byte, error) { return b, nil }, nil
	case avro.Boolean:
		return fixedLen(1), nil
	case avro.Int, avro.Long, avro.Enum:
		return func(b []byte) ([]byte, error) { _, b, err := readLong(b); return b, err }, nil
	case avro.Float:
		return fixedLen(4), nil
	case avro.Double:
		return fixedLen(8), nil
	case avro.String, avro.Bytes:
		return func(b []byte) ([]byte, error) { _, b, err := readBytes(b); return b, err }, nil
	case avro.Fixed:
		return fixedLen(s.(*avro.FixedSchema).Size()), nil
	case avro.Record:
		var fs []func([]byte) ([]byte, error)
		for _, f := range s.(*avro.RecordSchema).Fields() {
			k, err := skipper(f.Type())
			if err != nil {
				return nil, err
			}
			fs = append(fs, k)
		}
		return func(b []byte) ([]byte, error) {
			var err error
			for _, k := range fs {
				if b, err = k(b); err != nil {
					return nil, err
				}
			}
			return b, nil
		}, nil
	case avro.Union:
		var bs []func([]byte) ([]byte, error)
		for _, t := range s.(*avro.UnionSchema).Types() {
			k, err := skipper(t)
			if err != nil {
				return nil, err
			}
			bs = append(bs, k)
		}
		return func(b []byte) ([]byte, error) {
			i, b, err := readLong(b)
			if err != nil {
				return nil, err
			}
			if i < 0 || i >= int64(len(bs)) {
				return nil, fmt.Errorf("union branch %d of %d", i, len(bs))
			}
			return bs[i](b)
		}, nil
	case avro.Array, avro.Map:
		var items []func([]byte) ([]byte, error)
		if a, ok := s.(*avro.ArraySchema); ok {
			k, err := skipper(a.Items())
			if err != nil {
				return nil, err
			}
			items = append(items, k)
		} else {
			k, err := skipper(s.(*avro.MapSchema).Values())
			if err != nil {
				return nil, err
			}
			keySkip, _ := skipper(avro.NewPrimitiveSchema(avro.String, nil))
			items = append(items, keySkip, k)
		}
		return func(b []byte) ([]byte, error) {
			for {
				n, rest, err := readLong(b)
				if err != nil {
					return nil, err
				}
				b = rest
				if n == 0 {
					return b, nil
				}
				if n < 0 { // a block with its byte size: skip it whole
					size, rest, err := readLong(b)
					if err != nil {
						return nil, err
					}
					if size < 0 || size > int64(len(rest)) {
						return nil, ErrShortBody
					}
					b = rest[size:]
					continue
				}
				if n > int64(len(b)) && n > 1<<20 { // only null items take no byte: bound the loop
					return nil, ErrShortBody
				}
				for range n {
					for _, k := range items {
						if b, err = k(b); err != nil {
							return nil, err
						}
					}
				}
			}
		}, nil
	}
	return nil, fmt.Errorf("cannot skip type %s", s.Type())
}
