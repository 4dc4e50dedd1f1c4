package trainingset

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"unsafe"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/compress/zstd"
	"github.com/parquet-go/parquet-go/encoding"
)

// ParquetSpine reads a spine from a Parquet file of flat columns: BOOLEAN
// as Bool, INT32 and INT64 as Int64 (a TIMESTAMP column's integer in its
// own unit: give the matching time unit), FLOAT and DOUBLE as Float64,
// BYTE_ARRAY and FIXED_LEN_BYTE_ARRAY as String; optional columns are
// nullable. Nested or repeated columns are an error.
type ParquetSpine struct {
	f     *os.File
	file  *parquet.File
	cols  []Column
	rows  parquet.Rows
	group int
	buf   []parquet.Row
}

// OpenParquet opens path.
func OpenParquet(path string) (*ParquetSpine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("trainingset: spine: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("trainingset: spine: %w", err)
	}
	pf, err := parquet.OpenFile(f, fi.Size())
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("trainingset: spine %s: %w", path, err)
	}
	s := &ParquetSpine{f: f, file: pf}
	for _, field := range pf.Schema().Fields() {
		col, err := parquetColumn(field)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("trainingset: spine %s: %w", path, err)
		}
		s.cols = append(s.cols, col)
	}
	return s, nil
}

func parquetColumn(f parquet.Field) (Column, error) {
	col := Column{Name: f.Name(), Nullable: f.Optional()}
	if !f.Leaf() || f.Repeated() {
		return col, fmt.Errorf("column %s is nested or repeated; a spine has flat columns", f.Name())
	}
	switch f.Type().Kind() {
	case parquet.Boolean:
		col.Type = Bool
	case parquet.Int32, parquet.Int64:
		col.Type = Int64
	case parquet.Float, parquet.Double:
		col.Type = Float64
	case parquet.ByteArray, parquet.FixedLenByteArray:
		col.Type = String
	default:
		return col, fmt.Errorf("column %s: type %s is not supported in a spine", f.Name(), f.Type())
	}
	return col, nil
}

// Columns returns the file's columns, mapped.
func (s *ParquetSpine) Columns() []Column { return s.cols }

// Rows is the file's row count.
func (s *ParquetSpine) Rows() int64 { return s.file.NumRows() }

// Next reads up to max rows.
func (s *ParquetSpine) Next(c *Chunk, max int) error {
	c.Reset(s.cols)
	groups := s.file.RowGroups()
	for c.Len < max {
		if s.rows == nil {
			if s.group == len(groups) {
				break
			}
			s.rows = groups[s.group].Rows()
			s.group++
		}
		want := min(max-c.Len, 1024)
		if cap(s.buf) < want {
			s.buf = make([]parquet.Row, want)
		}
		n, err := s.rows.ReadRows(s.buf[:want])
		for _, row := range s.buf[:n] {
			if err := s.append(c, row); err != nil {
				return err
			}
			c.Len++
		}
		if errors.Is(err, io.EOF) {
			s.rows.Close()
			s.rows = nil
			continue
		}
		if err != nil {
			return fmt.Errorf("trainingset: spine: %w", err)
		}
	}
	if c.Len == 0 {
		return io.EOF
	}
	return nil
}

func (s *ParquetSpine) append(c *Chunk, row parquet.Row) error {
	if len(row) != len(s.cols) {
		return fmt.Errorf("trainingset: spine: a row of %d values for %d columns", len(row), len(s.cols))
	}
	for _, v := range row {
		i := v.Column()
		col, vec := &s.cols[i], &c.Cols[i]
		null := v.IsNull()
		if col.Nullable {
			vec.Null = append(vec.Null, null)
		}
		switch col.Type {
		case Bool:
			vec.Ints = append(vec.Ints, b2i(!null && v.Boolean()))
		case Int64:
			var x int64
			if !null {
				if v.Kind() == parquet.Int32 {
					x = int64(v.Int32())
				} else {
					x = v.Int64()
				}
			}
			vec.Ints = append(vec.Ints, x)
		case Float64:
			var x float64
			if !null {
				if v.Kind() == parquet.Float {
					x = float64(v.Float())
				} else {
					x = v.Double()
				}
			}
			vec.Floats = append(vec.Floats, x)
		case String:
			var x string
			if !null {
				x = string(v.ByteArray())
			}
			vec.Strs = append(vec.Strs, x)
		}
	}
	return nil
}

// Close closes the file.
func (s *ParquetSpine) Close() error {
	if s.rows != nil {
		s.rows.Close()
	}
	return s.f.Close()
}

// ReadParquetDescription returns the description stored in a training
// set's Parquet file.
func ReadParquetDescription(path string) (*Description, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("trainingset: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("trainingset: %w", err)
	}
	pf, err := parquet.OpenFile(f, fi.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, fmt.Errorf("trainingset: %s: %w", path, err)
	}
	js, ok := pf.Lookup(MetadataKey)
	if !ok {
		return nil, fmt.Errorf("trainingset: %s has no %s metadata: not a training set written by weir", path, MetadataKey)
	}
	var d Description
	if err := json.Unmarshal([]byte(js), &d); err != nil {
		return nil, fmt.Errorf("trainingset: %s: %s metadata: %w", path, MetadataKey, err)
	}
	return &d, nil
}

// ParquetRowGroupRows is how many rows a row group of a Parquet output
// holds (the last fewer): fixed, so that the file's bytes do not depend on
// the chunk size it was built with.
const ParquetRowGroupRows = 128 << 10

// ParquetWriter writes a training set as Parquet: a flat schema, columns in
// order (Bool as BOOLEAN, Int64 as INT64, Float64 as DOUBLE, String as
// BYTE_ARRAY STRING; nullable ones OPTIONAL, features OPTIONAL DOUBLE),
// zstd-compressed (fastest level) row groups of ParquetRowGroupRows rows, and the
// description as the key-value metadata MetadataKey. It writes to a
// temporary file beside path, renamed into place by Finish.
type ParquetWriter struct {
	path string
	f    *os.File
	w    *parquet.GenericWriter[any]
	cols []Column
	rows []parquet.Row
	vals []parquet.Value
	n    int // rows in vals not yet written
}

// NewParquetWriter returns a writer to path.
func NewParquetWriter(path string) *ParquetWriter { return &ParquetWriter{path: path} }

// Begin creates the temporary file.
func (w *ParquetWriter) Begin(cols []Column) error {
	f, err := createTemp(w.path)
	if err != nil {
		return err
	}
	w.f, w.cols = f, cols
	schema := parquet.NewSchema("training_set", orderedGroup(cols))
	w.w = parquet.NewGenericWriter[any](f, schema,
		parquet.Compression(&zstd.Codec{Level: zstd.SpeedFastest}),
		parquet.MaxRowsPerRowGroup(ParquetRowGroupRows),
		parquet.CreatedBy("weir", "training-set", "v1"),
	)
	return nil
}

// parquetBatch is how many rows go to the Parquet writer at a time. The
// batches start at multiples of it from the first row, whatever the
// chunks, because the writer cuts pages between batches: the bytes must not
// depend on the chunk size.
const parquetBatch = 4096

// Write appends the chunk's rows.
func (w *ParquetWriter) Write(c *Chunk) error {
	nc := len(w.cols)
	if w.vals == nil {
		w.vals = make([]parquet.Value, parquetBatch*nc)
		w.rows = make([]parquet.Row, parquetBatch)
	}
	for i := 0; i < c.Len; i++ {
		row := w.vals[w.n*nc : (w.n+1)*nc : (w.n+1)*nc]
		for j, col := range w.cols {
			v := &c.Cols[j]
			var pv parquet.Value
			switch {
			case v.IsNull(i):
				pv = parquet.NullValue()
			case col.Type == Bool:
				pv = parquet.BooleanValue(v.Ints[i] != 0)
			case col.Type == Int64:
				pv = parquet.Int64Value(v.Ints[i])
			case col.Type == Float64:
				pv = parquet.DoubleValue(v.Floats[i])
			default:
				pv = parquet.ByteArrayValue(unsafeBytes(v.Strs[i]))
			}
			def := 0
			if col.Nullable && !v.IsNull(i) {
				def = 1
			}
			row[j] = pv.Level(0, def, j)
		}
		w.rows[w.n] = row
		w.n++
		if w.n == parquetBatch {
			if err := w.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

func (w *ParquetWriter) flush() error {
	if w.n == 0 {
		return nil
	}
	if _, err := w.w.WriteRows(w.rows[:w.n]); err != nil {
		return fmt.Errorf("trainingset: write %s: %w", w.path, err)
	}
	w.n = 0
	return nil
}

// Finish stores the description, closes the file and renames it into
// place.
func (w *ParquetWriter) Finish(d *Description) error {
	js, err := json.Marshal(d)
	if err != nil {
		return err
	}
	if err := w.flush(); err != nil {
		return err
	}
	w.w.SetKeyValueMetadata(MetadataKey, string(js))
	if err := w.w.Close(); err != nil {
		return fmt.Errorf("trainingset: write %s: %w", w.path, err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("trainingset: write %s: %w", w.path, err)
	}
	if err := os.Rename(w.f.Name(), w.path); err != nil {
		return fmt.Errorf("trainingset: write %s: %w", w.path, err)
	}
	return nil
}

// Abort removes the temporary file.
func (w *ParquetWriter) Abort() {
	if w.f != nil {
		w.f.Close()
		os.Remove(w.f.Name())
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// group is a Parquet group node whose fields keep the order they are given
// in: parquet.Group is a map and sorts its fields by name, and a training
// set's columns are the spine's, in its order, then the features.
type group []parquet.Field

func orderedGroup(cols []Column) group {
	g := make(group, len(cols))
	for i, c := range cols {
		var n parquet.Node
		switch c.Type {
		case Bool:
			n = parquet.Leaf(parquet.BooleanType)
		case Int64:
			n = parquet.Leaf(parquet.Int64Type)
		case Float64:
			n = parquet.Leaf(parquet.DoubleType)
		default:
			n = parquet.String()
		}
		if c.Nullable {
			n = parquet.Optional(n)
		}
		g[i] = &field{Node: n, name: c.Name, index: i}
	}
	return g
}

func (g group) ID() int                     { return 0 }
func (g group) String() string              { return fmt.Sprintf("group(%d fields)", len(g)) }
func (g group) Type() parquet.Type          { return parquet.Group{}.Type() }
func (g group) Optional() bool              { return false }
func (g group) Repeated() bool              { return false }
func (g group) Required() bool              { return true }
func (g group) Leaf() bool                  { return false }
func (g group) Fields() []parquet.Field     { return g }
func (g group) Encoding() encoding.Encoding { return nil }
func (g group) Compression() compress.Codec { return nil }
func (g group) GoType() reflect.Type        { return g.goType() }
func (g group) goType() reflect.Type {
	fields := make([]reflect.StructField, len(g))
	for i, f := range g {
		fields[i] = reflect.StructField{Name: "F" + strconv.Itoa(i), Type: f.GoType(), Tag: reflect.StructTag(`parquet:` + strconv.Quote(f.Name()))}
	}
	return reflect.StructOf(fields)
}

// field is a named field of a group.
type field struct {
	parquet.Node
	name  string
	index int
}

func (f *field) Name() string { return f.name }

func (f *field) Value(base reflect.Value) reflect.Value { return base.Field(f.index) }

// unsafeBytes is s's bytes without a copy. A pending row may outlive its
// chunk; the Value's pointer keeps the string's bytes alive, and strings
// are never changed. The writer copies them into its pages.
func unsafeBytes(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }
