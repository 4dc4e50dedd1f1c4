package trainingset

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// DescriptionsTable is the table, in the output's database, that holds
// the description of every training set written to ClickHouse.
const DescriptionsTable = "training_sets"

// RowColumn is the first column of a training set written to ClickHouse:
// the row's 0-based position in the spine, the table's sorting key (a table
// has no order of its own).
const RowColumn = "spine_row"

// ClickHouseWriter writes a training set to a new MergeTree table ORDER BY
// spine_row: spine_row UInt64, then the columns as Int64, UInt8 (bools),
// Float64 or String, Nullable where nullable. The rows go to
// <table>__building, renamed to the table by Finish, which then inserts
// the description into <database>.training_sets (name, content_hash, rows,
// description JSON, written_ns; ReplacingMergeTree(written_ns) ORDER BY
// name: the newest description of a name wins, and the wall clock stays
// out of the description itself). An existing table is an error unless
// Replace; then Finish drops it.
type ClickHouseWriter struct {
	ctx     context.Context
	conn    driver.Conn
	db      string
	table   string
	Replace bool
	cols    []Column
	insert  string
	row     uint64
	// per-chunk column buffers for nullable columns
	ptrF []*float64
	ptrS []*string
	ptrI []*int64
	u8   []uint8
	ptrB []*uint8
	rows []uint64
}

// NewClickHouseWriter returns a writer to database.table on conn; ctx
// bounds every statement it runs.
func NewClickHouseWriter(ctx context.Context, conn driver.Conn, database, table string) (*ClickHouseWriter, error) {
	if !tableName.MatchString(database) || strings.Contains(database, ".") || !tableName.MatchString(table) || strings.Contains(table, ".") {
		return nil, fmt.Errorf("trainingset: output table %s.%s: identifiers only", database, table)
	}
	return &ClickHouseWriter{ctx: ctx, conn: conn, db: database, table: table}, nil
}

func (w *ClickHouseWriter) building() string {
	return quoteIdent(w.db) + "." + quoteIdent(w.table+"__building")
}

func (w *ClickHouseWriter) final() string { return quoteIdent(w.db) + "." + quoteIdent(w.table) }

func chType(c Column) string {
	t := map[Type]string{Int64: "Int64", Bool: "UInt8", Float64: "Float64", String: "String"}[c.Type]
	if c.Nullable {
		return "Nullable(" + t + ")"
	}
	return t
}

// Begin creates the building table.
func (w *ClickHouseWriter) Begin(cols []Column) error {
	w.cols = cols
	for _, c := range cols {
		if c.Name == RowColumn {
			return fmt.Errorf("trainingset: output %s: a column is named %s, which the table needs for the row order", w.final(), RowColumn)
		}
	}
	if !w.Replace {
		var exists uint8
		if err := w.conn.QueryRow(w.ctx, "EXISTS TABLE "+w.final()).Scan(&exists); err != nil {
			return fmt.Errorf("trainingset: output %s: %w", w.final(), err)
		}
		if exists != 0 {
			return fmt.Errorf("trainingset: output %s exists (replace it, or pick another name)", w.final())
		}
	}
	defs := []string{quoteIdent(RowColumn) + " UInt64"}
	names := []string{quoteIdent(RowColumn)}
	for _, c := range cols {
		defs = append(defs, quoteIdent(c.Name)+" "+chType(c))
		names = append(names, quoteIdent(c.Name))
	}
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS " + quoteIdent(w.db),
		"DROP TABLE IF EXISTS " + w.building(),
		"CREATE TABLE " + w.building() + " (" + strings.Join(defs, ", ") + ") ENGINE = MergeTree ORDER BY " + quoteIdent(RowColumn),
	} {
		if err := w.conn.Exec(w.ctx, q); err != nil {
			return fmt.Errorf("trainingset: output %s: %s: %w", w.final(), q, err)
		}
	}
	w.insert = "INSERT INTO " + w.building() + " (" + strings.Join(names, ", ") + ")"
	return nil
}

// Write inserts the chunk in one batch, column by column.
func (w *ClickHouseWriter) Write(c *Chunk) error {
	if c.Len == 0 {
		return nil
	}
	b, err := w.conn.PrepareBatch(w.ctx, w.insert)
	if err != nil {
		return fmt.Errorf("trainingset: output %s: %w", w.final(), err)
	}
	defer b.Close()
	n := c.Len
	w.rows = resize(w.rows, n)
	for i := range w.rows {
		w.rows[i] = w.row + uint64(i)
	}
	if err := b.Column(0).Append(w.rows); err != nil {
		return fmt.Errorf("trainingset: output %s: %s: %w", w.final(), RowColumn, err)
	}
	for j, col := range w.cols {
		v := &c.Cols[j]
		var data any
		switch {
		case col.Type == Int64 && !col.Nullable:
			data = v.Ints
		case col.Type == Int64:
			w.ptrI = pointers(w.ptrI, v.Ints, v.Null)
			data = w.ptrI
		case col.Type == Float64 && !col.Nullable:
			data = v.Floats
		case col.Type == Float64:
			w.ptrF = pointers(w.ptrF, v.Floats, v.Null)
			data = w.ptrF
		case col.Type == String && !col.Nullable:
			data = v.Strs
		case col.Type == String:
			w.ptrS = pointers(w.ptrS, v.Strs, v.Null)
			data = w.ptrS
		default: // Bool
			w.u8 = resize(w.u8, n)
			for i, x := range v.Ints[:n] {
				w.u8[i] = uint8(x)
			}
			data = w.u8
			if col.Nullable {
				w.ptrB = pointers(w.ptrB, w.u8, v.Null)
				data = w.ptrB
			}
		}
		if err := b.Column(j + 1).Append(data); err != nil {
			return fmt.Errorf("trainingset: output %s: column %s: %w", w.final(), col.Name, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("trainingset: output %s: insert %d rows: %w", w.final(), n, err)
	}
	w.row += uint64(n)
	return nil
}

// pointers returns, for each value, a pointer to it, or nil where null.
// The pointers are valid until vals changes.
func pointers[T any](dst []*T, vals []T, null []bool) []*T {
	dst = resize(dst, len(null))
	for i := range null {
		dst[i] = nil
		if !null[i] {
			dst[i] = &vals[i]
		}
	}
	return dst
}

// Finish renames the building table into place and records the
// description.
func (w *ClickHouseWriter) Finish(d *Description) error {
	js, err := json.Marshal(d)
	if err != nil {
		return err
	}
	desc := quoteIdent(w.db) + "." + quoteIdent(DescriptionsTable)
	stmts := []string{"CREATE TABLE IF NOT EXISTS " + desc + " (name String, content_hash String, rows UInt64, description String, written_ns UInt64) ENGINE = ReplacingMergeTree(written_ns) ORDER BY name"}
	if w.Replace {
		stmts = append(stmts, "DROP TABLE IF EXISTS "+w.final())
	}
	stmts = append(stmts, "RENAME TABLE "+w.building()+" TO "+w.final())
	for _, q := range stmts {
		if err := w.conn.Exec(w.ctx, q); err != nil {
			return fmt.Errorf("trainingset: output %s: %s: %w", w.final(), q, err)
		}
	}
	b, err := w.conn.PrepareBatch(w.ctx, "INSERT INTO "+desc+" (name, content_hash, rows, description, written_ns)")
	if err != nil {
		return fmt.Errorf("trainingset: output %s: description: %w", w.final(), err)
	}
	defer b.Close()
	if err := b.Append(w.table, d.ContentHash, uint64(d.Rows), string(js), uint64(time.Now().UnixNano())); err != nil {
		return fmt.Errorf("trainingset: output %s: description: %w", w.final(), err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("trainingset: output %s: description: %w", w.final(), err)
	}
	return nil
}

// Abort drops the building table.
func (w *ClickHouseWriter) Abort() {
	if w.insert != "" {
		_ = w.conn.Exec(context.WithoutCancel(w.ctx), "DROP TABLE IF EXISTS "+w.building())
	}
}

// ReadDescription returns the description of the training set table
// database.table.
func ReadDescription(ctx context.Context, conn driver.Conn, database, table string) (*Description, error) {
	var js string
	q := "SELECT argMax(description, written_ns) FROM " + quoteIdent(database) + "." + quoteIdent(DescriptionsTable) + " WHERE name = ?"
	if err := conn.QueryRow(ctx, q, table).Scan(&js); err != nil {
		return nil, fmt.Errorf("trainingset: description of %s.%s: %w", database, table, err)
	}
	if js == "" {
		return nil, fmt.Errorf("trainingset: no description of %s.%s", database, table)
	}
	var d Description
	if err := json.Unmarshal([]byte(js), &d); err != nil {
		return nil, fmt.Errorf("trainingset: description of %s.%s: %w", database, table, err)
	}
	return &d, nil
}
