// Package offline is the ClickHouse offline store: the full history of every
// feature view version, the labels table, and point-in-time training sets
// joined from the two.
//
// Each view version has its own table, features_<view>_<version>, created
// from the config.View with CREATE TABLE IF NOT EXISTS:
//
//	entity String, event_time DateTime, event_time_ms Int64,
//	known_time_ms Int64, source_topic String, source_partition Int32,
//	source_offset Int64, event_id String,
//	<one Float64 column per feature, in view order>,
//	ingested_at DateTime DEFAULT now()
//	ENGINE ReplacingMergeTree PARTITION BY toYYYYMM(event_time)
//	ORDER BY (entity, event_time_ms, source_partition, source_offset)
//
// Labels go to one table, labels (txn_id, card_id, event_time, event_time_ms,
// label_time_ms, is_fraud UInt8, ingested_at), ReplacingMergeTree ordered by
// (card_id, event_time_ms, txn_id, label_time_ms): a retried label collapses,
// a later relabelling of the same transaction is kept beside the earlier one
// so that a training set as known at some time can still see the earlier.
//
// Writes are at-least-once friendly: a retried batch inserts duplicates that
// ReplacingMergeTree collapses eventually, and every read here deduplicates
// explicitly (GROUP BY the sorting key, or an ORDER BY over the whole key
// with LIMIT 1), so duplicates are never visible in results. The SQL runs on
// ClickHouse 18.16 (no ASOF JOIN, DateTime64 or window functions; every
// INSERT names its columns) as well as on current ClickHouse.
//
// This package exports no metrics; the materializers that drive Write count
// rows and latency.
package offline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/weirhq/weir/featurestore"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
)

// LabelsTable is the table labels are written to and training spines read from.
const LabelsTable = "labels"

// ErrUnknownView is returned for a view name and version the store was not
// configured with.
var ErrUnknownView = errors.New("unknown view version")

// fixedColumns are a feature table's columns before the features, in order.
var fixedColumns = []string{"entity", "event_time", "event_time_ms", "known_time_ms",
	"source_topic", "source_partition", "source_offset", "event_id"}

// identifier is what view, version, feature and database names must look
// like: they become unquoted parts of table and column names.
var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Store is the ClickHouse offline store. It is safe for concurrent use.
type Store struct {
	conn  driver.Conn
	db    string
	views map[viewKey]*view
}

type viewKey struct{ name, version string }

// view is a configured view version and its table.
type view struct {
	name, version string
	table         string // database-qualified, quoted
	ttlMs         int64
	features      []string
	index         map[string]int // feature name -> position
	insert        string
}

// New returns a store on conn writing to database (created by Migrate) for
// the given views; each view's current version (config.View.Version) is the
// one it can write and read. Names that cannot be ClickHouse identifiers,
// and features named like a fixed column, are errors.
func New(conn driver.Conn, database string, views []config.View) (*Store, error) {
	if !identifier.MatchString(database) {
		return nil, fmt.Errorf("offline: database name %q is not an identifier", database)
	}
	s := &Store{conn: conn, db: database, views: make(map[viewKey]*view, len(views))}
	reserved := map[string]bool{"ingested_at": true}
	for _, c := range fixedColumns {
		reserved[c] = true
	}
	for i := range views {
		cv := &views[i]
		v := &view{name: cv.Name, version: cv.Version(), ttlMs: cv.TTL.D().Milliseconds(), index: map[string]int{}}
		if !identifier.MatchString(v.name) {
			return nil, fmt.Errorf("offline: view name %q is not an identifier", v.name)
		}
		v.table = s.qualify(TableName(v.name, v.version))
		cols := append([]string(nil), fixedColumns...)
		for j, f := range cv.Features {
			if !identifier.MatchString(f.Name) || reserved[f.Name] {
				return nil, fmt.Errorf("offline: view %s: feature name %q cannot be a column (an identifier other than %v)", v.name, f.Name, append(fixedColumns, "ingested_at"))
			}
			v.features = append(v.features, f.Name)
			v.index[f.Name] = j
			cols = append(cols, quote(f.Name))
		}
		v.insert = "INSERT INTO " + v.table + " (" + strings.Join(cols, ", ") + ")"
		s.views[viewKey{v.name, v.version}] = v
	}
	return s, nil
}

// TableName is the table of a view version: features_<view>_<version>.
func TableName(view, version string) string { return "features_" + view + "_" + version }

func quote(id string) string { return "`" + id + "`" }

func (s *Store) qualify(table string) string { return quote(s.db) + "." + quote(table) }

func (s *Store) view(name, version string) (*view, error) {
	v, ok := s.views[viewKey{name, version}]
	if !ok {
		return nil, fmt.Errorf("view %s version %s: %w", name, version, ErrUnknownView)
	}
	return v, nil
}

// Migrate creates the database, every view version's table and the labels
// table if they do not exist. It is idempotent.
func (s *Store) Migrate(ctx context.Context) error {
	stmts := []string{"CREATE DATABASE IF NOT EXISTS " + quote(s.db), s.labelsDDL()}
	for _, v := range s.views {
		stmts = append(stmts, v.ddl())
	}
	for _, q := range stmts {
		if err := s.conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("offline: migrate: %s: %w", q, err)
		}
	}
	return nil
}

func (v *view) ddl() string {
	var b strings.Builder
	b.WriteString("CREATE TABLE IF NOT EXISTS " + v.table + " (\n")
	b.WriteString("  entity String,\n  event_time DateTime,\n  event_time_ms Int64,\n  known_time_ms Int64,\n")
	b.WriteString("  source_topic String,\n  source_partition Int32,\n  source_offset Int64,\n  event_id String,\n")
	for _, f := range v.features {
		b.WriteString("  " + quote(f) + " Float64,\n")
	}
	b.WriteString("  ingested_at DateTime DEFAULT now()\n) ENGINE = ReplacingMergeTree\n")
	b.WriteString("PARTITION BY toYYYYMM(event_time)\nORDER BY (entity, event_time_ms, source_partition, source_offset)")
	return b.String()
}

func (s *Store) labelsDDL() string {
	return "CREATE TABLE IF NOT EXISTS " + s.qualify(LabelsTable) + ` (
  txn_id String,
  card_id String,
  event_time DateTime,
  event_time_ms Int64,
  label_time_ms Int64,
  is_fraud UInt8,
  ingested_at DateTime DEFAULT now()
) ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (card_id, event_time_ms, txn_id, label_time_ms)`
}

// Write inserts rows into their view versions' tables, one INSERT per table.
//
// Delivery contract: Write may be retried with the same or overlapping rows
// (at-least-once delivery); duplicates of a row, identified by (entity,
// event time, source partition, source offset), are never visible to this
// package's reads. A row of a view version the store was not configured with
// fails the whole call with ErrUnknownView before anything is written. A
// feature missing from a row is stored as NaN. On error some tables may have
// been written; the caller should retry the whole batch. Write does not keep
// rows.
func (s *Store) Write(ctx context.Context, rows []schemas.FeatureRow) error {
	if len(rows) == 0 {
		return nil
	}
	groups := map[*view][]*schemas.FeatureRow{}
	var order []*view
	for i := range rows {
		r := &rows[i]
		v, err := s.view(r.View, r.ViewVersion)
		if err != nil {
			return fmt.Errorf("offline: write row %d (entity %q): %w", i, r.Entity, err)
		}
		if _, ok := groups[v]; !ok {
			order = append(order, v)
		}
		groups[v] = append(groups[v], r)
	}
	for _, v := range order {
		if err := s.insertRows(ctx, v, groups[v]); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) insertRows(ctx context.Context, v *view, rows []*schemas.FeatureRow) error {
	b, err := s.conn.PrepareBatch(ctx, v.insert)
	if err != nil {
		return fmt.Errorf("offline: insert %d rows into %s: prepare: %w", len(rows), v.table, err)
	}
	defer b.Close()
	vals := make([]any, len(fixedColumns)+len(v.features))
	feats := make([]float64, len(v.features))
	for _, r := range rows {
		for j := range feats {
			feats[j] = math.NaN()
		}
		for _, fv := range r.Values {
			if j, ok := v.index[fv.Name]; ok {
				feats[j] = fv.Value
			}
		}
		vals[0], vals[1], vals[2], vals[3] = r.Entity, time.UnixMilli(r.EventTime), r.EventTime, r.KnownTime
		vals[4], vals[5], vals[6], vals[7] = r.SourceTopic, r.SourcePartition, r.SourceOffset, r.EventID
		for j, f := range feats {
			vals[len(fixedColumns)+j] = f
		}
		if err := b.Append(vals...); err != nil {
			return fmt.Errorf("offline: insert %d rows into %s: append: %w", len(rows), v.table, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("offline: insert %d rows into %s: %w", len(rows), v.table, err)
	}
	return nil
}

// WriteLabels inserts labels into the labels table in one INSERT. The same
// delivery contract as Write holds: retried labels, identified by (card id,
// event time, txn id, label time), are never visible twice.
func (s *Store) WriteLabels(ctx context.Context, labels []schemas.Label) error {
	if len(labels) == 0 {
		return nil
	}
	table := s.qualify(LabelsTable)
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+table+" (txn_id, card_id, event_time, event_time_ms, label_time_ms, is_fraud)")
	if err != nil {
		return fmt.Errorf("offline: insert %d labels into %s: prepare: %w", len(labels), table, err)
	}
	defer b.Close()
	for _, l := range labels {
		var fraud uint8
		if l.IsFraud {
			fraud = 1
		}
		if err := b.Append(l.TxnID, l.CardID, time.UnixMilli(l.EventTime), l.EventTime, l.LabelTime, fraud); err != nil {
			return fmt.Errorf("offline: insert %d labels into %s: append: %w", len(labels), table, err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("offline: insert %d labels into %s: %w", len(labels), table, err)
	}
	return nil
}

// Latest returns the newest row of an entity's view version, newest by
// (event time, source partition, source offset): the row the online store
// should hold for it, for online/offline consistency checks. False when the
// entity has no row.
func (s *Store) Latest(ctx context.Context, viewName, version, entity string) (featurestore.Row, bool, error) {
	v, err := s.view(viewName, version)
	if err != nil {
		return featurestore.Row{}, false, fmt.Errorf("offline: latest: %w", err)
	}
	cols := make([]string, len(v.features))
	for i, f := range v.features {
		cols[i] = quote(f)
	}
	sel := "event_time_ms, known_time_ms, source_partition, source_offset"
	if len(cols) > 0 {
		sel += ", " + strings.Join(cols, ", ")
	}
	// Duplicates agree on every column, so the first row over the whole
	// sorting key is the same whichever copy it is.
	q := "SELECT " + sel + " FROM " + v.table + " WHERE entity = ? ORDER BY event_time_ms DESC, source_partition DESC, source_offset DESC LIMIT 1"
	rows, err := s.conn.Query(ctx, q, entity)
	if err != nil {
		return featurestore.Row{}, false, fmt.Errorf("offline: latest %s of %q: %w", v.table, entity, err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return featurestore.Row{}, false, fmt.Errorf("offline: latest %s of %q: %w", v.table, entity, err)
		}
		return featurestore.Row{}, false, nil
	}
	r := featurestore.Row{Entity: entity, View: v.name, Version: v.version, Values: make(map[string]float64, len(v.features))}
	feats := make([]float64, len(v.features))
	dest := []any{&r.EventTime, &r.KnownTime, &r.Partition, &r.Offset}
	for i := range feats {
		dest = append(dest, &feats[i])
	}
	if err := rows.Scan(dest...); err != nil {
		return featurestore.Row{}, false, fmt.Errorf("offline: latest %s of %q: scan: %w", v.table, entity, err)
	}
	for i, f := range v.features {
		r.Values[f] = feats[i]
	}
	return r, true, rows.Err()
}

// Complete returns the event time (Unix ms) up to which a view version's
// history is complete in the store: the least, over the source's partitions,
// of the newest event time materialized from each, minus lateness (an event
// may trail its partition's newest by that much). 0 when some of the
// partitions has no row yet. A training set whose spine stops there never
// pairs a label with a feature row that is merely not materialized yet.
func (s *Store) Complete(ctx context.Context, viewName, version string, partitions int, lateness int64) (int64, error) {
	v, err := s.view(viewName, version)
	if err != nil {
		return 0, fmt.Errorf("offline: complete: %w", err)
	}
	q := "SELECT count(), min(m) FROM (SELECT source_partition, max(event_time_ms) AS m FROM " + v.table + " GROUP BY source_partition)"
	var n uint64
	var m int64
	if err := s.conn.QueryRow(ctx, q).Scan(&n, &m); err != nil {
		return 0, fmt.Errorf("offline: complete %s: %w", v.table, err)
	}
	if int(n) < partitions {
		return 0, nil
	}
	return m - lateness, nil
}
