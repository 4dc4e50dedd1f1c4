package trainingset

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ClickHouseSpine reads a spine from a ClickHouse table (or view), in one
// streamed query ordered by every column, so that the order, and the
// output, is the same on every run. Column types map to this package's:
// integers (UInt64 values above 2^63-1 wrap) to Int64, floats and
// decimals to Float64, Bool to Bool, String, FixedString, Enum, UUID and
// Date to String (as toString writes them), DateTime to Int64 Unix ms;
// Nullable and LowCardinality wrappers are kept and dropped. Other types
// are an error.
type ClickHouseSpine struct {
	rows   driver.Rows
	cancel context.CancelFunc
	cols   []Column
	total  int64
	SQL    string // the query, for descriptions
	dest   []any
	// scan targets, one per column (only the one of its type is used)
	ints   []int64
	floats []float64
	strs   []string
	bools  []bool
	nInts  []*int64
	nFlts  []*float64
	nStrs  []*string
	nBools []*bool
}

var tableName = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$`)

// streamTimeout bounds how long a ClickHouse spine's query may stream.
// clickhouse-go applies its read timeout to a whole query, not to each
// read, and the spine's query streams for the whole build; a context
// deadline replaces that timeout.
const streamTimeout = 24 * time.Hour

// OpenClickHouse starts reading table ("db.table" or "table") on conn,
// keeping the rows where where holds (a SQL condition; "" for all). The
// query runs until Close, for at most a day.
func OpenClickHouse(ctx context.Context, conn driver.Conn, table, where string) (*ClickHouseSpine, error) {
	if !tableName.MatchString(table) {
		return nil, fmt.Errorf("trainingset: spine table %q: want [database.]table, identifiers only", table)
	}
	from := quoteTable(table)
	if where != "" {
		from += " WHERE " + where
	}
	probe, err := conn.Query(ctx, "SELECT * FROM "+from+" LIMIT 0")
	if err != nil {
		return nil, fmt.Errorf("trainingset: spine %s: %w", table, err)
	}
	types := probe.ColumnTypes()
	probe.Close()
	s := &ClickHouseSpine{}
	var sel, order []string
	for _, ct := range types {
		name := ct.Name()
		col, expr, err := clickHouseColumn(name, ct.DatabaseTypeName())
		if err != nil {
			return nil, fmt.Errorf("trainingset: spine %s: %w", table, err)
		}
		s.cols = append(s.cols, col)
		// Aliases of their own: an alias equal to a column's name would
		// shadow the column in ORDER BY, which sorts by the stored values.
		sel = append(sel, fmt.Sprintf("%s AS _weir_c%d", expr, len(sel)))
		order = append(order, quoteIdent(name))
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+from).Scan(&n); err != nil {
		return nil, fmt.Errorf("trainingset: spine %s: count: %w", table, err)
	}
	s.total = int64(n)
	s.SQL = "SELECT " + strings.Join(sel, ", ") + " FROM " + from + " ORDER BY " + strings.Join(order, ", ")
	sctx, cancel := context.WithTimeout(ctx, streamTimeout)
	s.rows, err = conn.Query(sctx, s.SQL)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("trainingset: spine %s: %w", table, err)
	}
	s.cancel = cancel
	nc := len(s.cols)
	s.ints, s.floats, s.strs, s.bools = make([]int64, nc), make([]float64, nc), make([]string, nc), make([]bool, nc)
	s.nInts, s.nFlts, s.nStrs, s.nBools = make([]*int64, nc), make([]*float64, nc), make([]*string, nc), make([]*bool, nc)
	for i, c := range s.cols {
		switch {
		case c.Type == Int64 && !c.Nullable:
			s.dest = append(s.dest, &s.ints[i])
		case c.Type == Int64:
			s.dest = append(s.dest, &s.nInts[i])
		case c.Type == Float64 && !c.Nullable:
			s.dest = append(s.dest, &s.floats[i])
		case c.Type == Float64:
			s.dest = append(s.dest, &s.nFlts[i])
		case c.Type == String && !c.Nullable:
			s.dest = append(s.dest, &s.strs[i])
		case c.Type == String:
			s.dest = append(s.dest, &s.nStrs[i])
		case c.Type == Bool && !c.Nullable:
			s.dest = append(s.dest, &s.bools[i])
		default:
			s.dest = append(s.dest, &s.nBools[i])
		}
	}
	return s, nil
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "\\`") + "`" }

func quoteTable(t string) string {
	parts := strings.Split(t, ".")
	for i, p := range parts {
		parts[i] = quoteIdent(p)
	}
	return strings.Join(parts, ".")
}

// clickHouseColumn maps a ClickHouse column type to a Column and the
// expression that reads it as that type.
func clickHouseColumn(name, typ string) (Column, string, error) {
	col := Column{Name: name}
	t := typ
	for {
		switch {
		case strings.HasPrefix(t, "Nullable(") && strings.HasSuffix(t, ")"):
			col.Nullable, t = true, t[len("Nullable("):len(t)-1]
			continue
		case strings.HasPrefix(t, "LowCardinality(") && strings.HasSuffix(t, ")"):
			t = t[len("LowCardinality(") : len(t)-1]
			continue
		}
		break
	}
	q := quoteIdent(name)
	switch {
	case t == "Int8" || t == "Int16" || t == "Int32" || t == "Int64" || t == "UInt8" || t == "UInt16" || t == "UInt32" || t == "UInt64":
		col.Type = Int64
		return col, "toInt64(" + q + ")", nil
	case t == "Float32" || t == "Float64" || strings.HasPrefix(t, "Decimal"):
		col.Type = Float64
		return col, "toFloat64(" + q + ")", nil
	case t == "Bool":
		col.Type = Bool
		return col, q, nil
	case t == "String" || strings.HasPrefix(t, "FixedString(") || strings.HasPrefix(t, "Enum8(") || strings.HasPrefix(t, "Enum16(") || t == "UUID" || t == "Date":
		col.Type = String
		return col, "toString(" + q + ")", nil
	case t == "DateTime" || strings.HasPrefix(t, "DateTime("):
		col.Type = Int64
		return col, "toInt64(" + q + ") * 1000", nil
	}
	return col, "", fmt.Errorf("column %s: type %s is not supported in a spine (convert it in a view)", name, typ)
}

// Columns returns the table's columns, mapped.
func (s *ClickHouseSpine) Columns() []Column { return s.cols }

// Rows is the count of rows at open.
func (s *ClickHouseSpine) Rows() int64 { return s.total }

// Next reads up to max rows.
func (s *ClickHouseSpine) Next(c *Chunk, max int) error {
	c.Reset(s.cols)
	for c.Len < max && s.rows.Next() {
		if err := s.rows.Scan(s.dest...); err != nil {
			return fmt.Errorf("trainingset: spine: %w", err)
		}
		for i, col := range s.cols {
			v := &c.Cols[i]
			switch {
			case col.Type == Int64 && !col.Nullable:
				v.Ints = append(v.Ints, s.ints[i])
			case col.Type == Int64:
				p := s.nInts[i]
				v.Null = append(v.Null, p == nil)
				v.Ints = append(v.Ints, deref(p))
			case col.Type == Float64 && !col.Nullable:
				v.Floats = append(v.Floats, s.floats[i])
			case col.Type == Float64:
				p := s.nFlts[i]
				v.Null = append(v.Null, p == nil)
				v.Floats = append(v.Floats, deref(p))
			case col.Type == String && !col.Nullable:
				v.Strs = append(v.Strs, s.strs[i])
			case col.Type == String:
				p := s.nStrs[i]
				v.Null = append(v.Null, p == nil)
				v.Strs = append(v.Strs, deref(p))
			case col.Type == Bool && !col.Nullable:
				v.Ints = append(v.Ints, b2i(s.bools[i]))
			default:
				p := s.nBools[i]
				v.Null = append(v.Null, p == nil)
				v.Ints = append(v.Ints, b2i(deref(p)))
			}
		}
		c.Len++
	}
	if err := s.rows.Err(); err != nil {
		return fmt.Errorf("trainingset: spine: %w", err)
	}
	if c.Len == 0 {
		return io.EOF
	}
	return nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// Close ends the query.
func (s *ClickHouseSpine) Close() error {
	err := s.rows.Close()
	s.cancel()
	return err
}
