package trainingset

import (
	"context"
	"fmt"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// clickHousePrefix marks a spine or output in ClickHouse: clickhouse:db.table.
const clickHousePrefix = "clickhouse:"

// SpineOptions are OpenSpine's options.
type SpineOptions struct {
	// Where filters a ClickHouse spine's rows (a SQL condition).
	Where string
	// DefaultDB is the database of a ClickHouse table named without one.
	DefaultDB string
	// Types fixes the types of a CSV spine's columns.
	Types map[string]Type
	// Keys are the entity columns: a CSV spine reads them as text (an
	// inferred integer would lose leading zeros) unless Types says
	// otherwise.
	Keys []string
}

// OpenSpine opens a spine named as a path ending in .csv or .parquet, or
// clickhouse:[db.]table. It returns the spine and its description (with
// the file's SHA-256).
func OpenSpine(ctx context.Context, conn driver.Conn, name string, o SpineOptions) (Spine, SpineDescription, error) {
	where, defaultDB := o.Where, o.DefaultDB
	if table, ok := strings.CutPrefix(name, clickHousePrefix); ok {
		if !strings.Contains(table, ".") {
			table = defaultDB + "." + table
		}
		s, err := OpenClickHouse(ctx, conn, table, where)
		if err != nil {
			return nil, SpineDescription{}, err
		}
		return s, SpineDescription{Source: "clickhouse", Table: table, Where: where, SQL: s.SQL}, nil
	}
	if where != "" {
		return nil, SpineDescription{}, fmt.Errorf("trainingset: a where condition filters only a ClickHouse spine")
	}
	sum, err := FileSHA256(name)
	if err != nil {
		return nil, SpineDescription{}, err
	}
	switch {
	case strings.HasSuffix(name, ".csv"):
		types := map[string]Type{}
		for _, k := range o.Keys {
			types[k] = String
		}
		for k, t := range o.Types {
			types[k] = t
		}
		s, err := OpenCSV(name, types)
		if err != nil {
			return nil, SpineDescription{}, err
		}
		return s, SpineDescription{Source: "csv", Path: name, SHA256: sum}, nil
	case strings.HasSuffix(name, ".parquet"):
		if len(o.Types) > 0 {
			return nil, SpineDescription{}, fmt.Errorf("trainingset: column types are fixed only for a CSV spine")
		}
		s, err := OpenParquet(name)
		if err != nil {
			return nil, SpineDescription{}, err
		}
		return s, SpineDescription{Source: "parquet", Path: name, SHA256: sum}, nil
	}
	return nil, SpineDescription{}, fmt.Errorf("trainingset: spine %q: want a .csv or .parquet file, or clickhouse:[db.]table", name)
}

// OpenWriter returns the writer of an output named as a path ending in
// .csv or .parquet, or clickhouse:[db.]table (a table without a database
// is in defaultDB). replace allows overwriting an existing output.
func OpenWriter(ctx context.Context, conn driver.Conn, name, defaultDB string, replace bool) (Writer, error) {
	if table, ok := strings.CutPrefix(name, clickHousePrefix); ok {
		db := defaultDB
		if d, t, ok := strings.Cut(table, "."); ok {
			db, table = d, t
		}
		w, err := NewClickHouseWriter(ctx, conn, db, table)
		if err != nil {
			return nil, err
		}
		w.Replace = replace
		return w, nil
	}
	switch {
	case strings.HasSuffix(name, ".csv"):
		if !replace && exists(name) {
			return nil, fmt.Errorf("trainingset: output %s exists (replace it, or pick another name)", name)
		}
		return NewCSVWriter(name), nil
	case strings.HasSuffix(name, ".parquet"):
		if !replace && exists(name) {
			return nil, fmt.Errorf("trainingset: output %s exists (replace it, or pick another name)", name)
		}
		return NewParquetWriter(name), nil
	}
	return nil, fmt.Errorf("trainingset: output %q: want a .csv or .parquet file, or clickhouse:[db.]table", name)
}
