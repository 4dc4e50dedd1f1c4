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
//	window_start_ms Int64, window_end_ms Int64, revises_offset Int64 DEFAULT -1,
//	<one Float64 column per feature, in view order>,
//	<one <feature>_list Array(Float64) per last_n feature and one
//	 <feature>_labels Array(String) per top_k feature, in view order>,
//	ingested_at DateTime DEFAULT now()
//	ENGINE ReplacingMergeTree PARTITION BY toYYYYMM(event_time)
//	ORDER BY (entity, event_time_ms, source_partition, source_offset,
//	          window_start_ms, revises_offset)
//
// window_start_ms and window_end_ms bound a tumbling, hopping or session
// row's window (0 for sliding rows); revises_offset is -1 for a first
// version and, for a correction, the source offset of the version it
// replaces (featurestore explains versions). Every version is a row of its
// own: the sorting key tells apart a correction (another source offset),
// the rows of overlapping hopping windows at one instant (another window
// start) and the corrections of two rows with equal event times caused by
// one late event (another revised offset), so merges collapse only true
// duplicates.
//
// Migrate upgrades a table created before these columns existed (ClickHouse
// 18.16 has no ADD COLUMN IF NOT EXISTS, so it reads system.columns): one
// ALTER adds window_start_ms and revises_offset and appends them to the
// sorting key (ClickHouse allows that only for columns added in the same
// ALTER, without a default), a second gives revises_offset its DEFAULT -1,
// so the rows written before read as first versions of sliding rows, and
// window_end_ms and the array columns are added as plain columns.
//
// Adding a feature to a view changes its definition, so its version
// (config.View.Version hashes the definition) and its table: the old
// version's table stays as it was, and serving and training sets that name
// it are unaffected. Inherit starts the new version's table from the old
// one's history without rewriting it: the old partitions are attached (hard
// links to the same parts) and the added features' columns are added with
// DEFAULT nan, a metadata-only ALTER, so the rows from before read NaN for
// them (see Inherit).
//
// Labels go to one table, labels (txn_id, card_id, event_time, event_time_ms,
// label_time_ms, is_fraud UInt8, ingested_at), ReplacingMergeTree ordered by
// (card_id, event_time_ms, txn_id, label_time_ms): a retried label collapses,
// a later relabelling of the same transaction is kept beside the earlier one
// so that a training set as known at some time can still see the earlier.
//
// Writes are at-least-once friendly: a retried batch inserts duplicates that
// ReplacingMergeTree collapses eventually, and every read here deduplicates
// explicitly (GROUP BY the sorting key, or an ORDER BY with LIMIT 1), so
// duplicates are never visible in results. Reads that pick one row of an
// entity take the newest by featurestore.Compare (event time, revised
// offset, source offset, window start; the source partition, constant per
// entity, after the event time), among rows known by a cut-off when asked
// "as known at". The SQL runs on ClickHouse 18.16 (no ASOF JOIN, DateTime64
// or window functions; every INSERT names its columns) as well as on current
// ClickHouse.
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
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

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
	"source_topic", "source_partition", "source_offset", "event_id",
	"window_start_ms", "window_end_ms", "revises_offset"}

// sortingKey is a feature table's ORDER BY.
const sortingKey = "entity, event_time_ms, source_partition, source_offset, window_start_ms, revises_offset"

// revised is the SQL of featurestore.Revised: the offset a row's versions
// share.
const revised = "if(revises_offset >= 0, revises_offset, source_offset)"

// identifier is what view, version, feature and database names must look
// like: they become unquoted parts of table and column names.
var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Store is the ClickHouse offline store. It is safe for concurrent use.
type Store struct {
	conn  driver.Conn
	db    string
	views map[viewKey]*view
	// current is each view name's first version in New's list: the one a
	// request without a version names.
	current map[string]*view
}

type viewKey struct{ name, version string }

// view is a configured view version and its table.
type view struct {
	name, version string
	def           config.View // the definition it was built from
	table         string      // database-qualified, quoted
	tableName     string      // unqualified, unquoted
	ttlMs         int64
	features      []string
	index         map[string]int // feature name -> position
	// lists and labels are the last_n and top_k features, in view order,
	// each with an array column.
	lists, labels []string
	insert        string
}

// ListColumn names the Array(Float64) column of a last_n feature's values.
func ListColumn(feature string) string { return feature + "_list" }

// LabelsColumn names the Array(String) column of a top_k feature's
// categories.
func LabelsColumn(feature string) string { return feature + "_labels" }

// New returns a store on conn writing to database (created by Migrate) for
// the given views; each view's current version (config.View.Version) is the
// one it can write and read. views may hold several definitions (versions)
// of one view, e.g. weir.yaml's and older ones from the view catalog: the
// first of a name is the one a request without a version reads. Names that cannot be ClickHouse identifiers,
// and features named like another column, are errors.
func New(conn driver.Conn, database string, views []config.View) (*Store, error) {
	if !identifier.MatchString(database) {
		return nil, fmt.Errorf("offline: database name %q is not an identifier", database)
	}
	s := &Store{conn: conn, db: database, views: make(map[viewKey]*view, len(views)), current: map[string]*view{}}
	for i := range views {
		cv := &views[i]
		v := &view{name: cv.Name, version: cv.Version(), def: *cv, ttlMs: cv.TTL.D().Milliseconds(), index: map[string]int{}}
		if !identifier.MatchString(v.name) {
			return nil, fmt.Errorf("offline: view name %q is not an identifier", v.name)
		}
		v.tableName = TableName(v.name, v.version)
		v.table = s.qualify(v.tableName)
		taken := map[string]string{"ingested_at": "a fixed column"}
		for _, c := range fixedColumns {
			taken[c] = "a fixed column"
		}
		claim := func(col, by string) error {
			if other, ok := taken[col]; ok {
				return fmt.Errorf("offline: view %s: column %q of %s is already %s", v.name, col, by, other)
			}
			taken[col] = by
			return nil
		}
		for j, f := range cv.Features {
			if !identifier.MatchString(f.Name) {
				return nil, fmt.Errorf("offline: view %s: feature name %q cannot be a column (not an identifier)", v.name, f.Name)
			}
			if err := claim(f.Name, "feature "+f.Name); err != nil {
				return nil, err
			}
			v.features = append(v.features, f.Name)
			v.index[f.Name] = j
		}
		for _, f := range cv.Features {
			switch f.Agg {
			case "last_n":
				if err := claim(ListColumn(f.Name), "last_n feature "+f.Name); err != nil {
					return nil, err
				}
				v.lists = append(v.lists, f.Name)
			case "top_k":
				if err := claim(LabelsColumn(f.Name), "top_k feature "+f.Name); err != nil {
					return nil, err
				}
				v.labels = append(v.labels, f.Name)
			}
		}
		v.insert = "INSERT INTO " + v.table + " (" + strings.Join(v.columns(), ", ") + ")"
		s.views[viewKey{v.name, v.version}] = v
		if s.current[v.name] == nil {
			s.current[v.name] = v
		}
	}
	return s, nil
}

// columns are the quoted columns Write fills, in insert order: the fixed
// columns, the features, the list columns, the labels columns.
func (v *view) columns() []string {
	cols := slices.Clone(fixedColumns)
	for _, f := range v.features {
		cols = append(cols, quote(f))
	}
	for _, f := range v.lists {
		cols = append(cols, quote(ListColumn(f)))
	}
	for _, f := range v.labels {
		cols = append(cols, quote(LabelsColumn(f)))
	}
	return cols
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

// Write inserts rows into their view versions' tables, one INSERT per table.
//
// Delivery contract: Write may be retried with the same or overlapping rows
// (at-least-once delivery); duplicates of a row, identified by (entity,
// event time, source partition, source offset, window start, revises
// offset), are never visible to this package's reads. A row of a view
// version the store was not configured with fails the whole call with
// ErrUnknownView before anything is written. A feature missing from a row
// is stored as NaN (an empty array for its list or labels). On error some
// tables may have been written; the caller should retry the whole batch.
// Write does not keep rows.
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

// BatchHint asks the materializer (materialize.BatchHinter) for batches of
// up to 50,000 rows gathered for up to 250ms: ClickHouse writes a part per
// INSERT, so few large inserts cost its server a third of what batches of
// 5,000 did, and its merges stay behind nothing (bench/materialize).
func (s *Store) BatchHint() (maxRows int, linger time.Duration) {
	return 50_000, 250 * time.Millisecond
}

// insertRows sends rows as one block, column by column: a slice per column
// appended once (no value boxed per row, no per-row reflection in the
// driver), which is what lets one core write several hundred thousand rows
// a second (bench/materialize).
func (s *Store) insertRows(ctx context.Context, v *view, rows []*schemas.FeatureRow) error {
	b, err := s.conn.PrepareBatch(ctx, v.insert)
	if err != nil {
		return fmt.Errorf("offline: insert %d rows into %s: prepare: %w", len(rows), v.table, err)
	}
	defer b.Close()
	n, nf := len(rows), len(v.features)
	var (
		entity, topic, eventID   = make([]string, n), make([]string, n), make([]string, n)
		eventTime                = make([]time.Time, n)
		eventMs, knownMs, offset = make([]int64, n), make([]int64, n), make([]int64, n)
		wsMs, weMs, revises      = make([]int64, n), make([]int64, n), make([]int64, n)
		partition                = make([]int32, n)
		feats                    = make([]float64, n*nf) // feature j of row i at j*n+i
		lists                    = make([][][]float64, len(v.lists))
		labels                   = make([][][]string, len(v.labels))
		listPos, labelPos        = make([]int, nf), make([]int, nf)
		noList, noLabels         = []float64{}, []string{}
	)
	for j := range listPos {
		listPos[j], labelPos[j] = -1, -1
	}
	for k, f := range v.lists {
		lists[k], listPos[v.index[f]] = make([][]float64, n), k
	}
	for k, f := range v.labels {
		labels[k], labelPos[v.index[f]] = make([][]string, n), k
	}
	nan := math.NaN()
	for i := range feats {
		feats[i] = nan
	}
	for i, r := range rows {
		entity[i], topic[i], eventID[i] = r.Entity, r.SourceTopic, r.EventID
		eventTime[i], eventMs[i], knownMs[i] = time.UnixMilli(r.EventTime), r.EventTime, r.KnownTime
		partition[i], offset[i] = r.SourcePartition, r.SourceOffset
		wsMs[i], weMs[i], revises[i] = r.WindowStart, r.WindowEnd, max(r.RevisesOffset, -1)
		for _, l := range lists {
			l[i] = noList
		}
		for _, l := range labels {
			l[i] = noLabels
		}
		for k := range r.Values {
			fv := &r.Values[k]
			j := k
			if j >= nf || v.features[j] != fv.Name { // rows come in view order; anything else is looked up
				var ok bool
				if j, ok = v.index[fv.Name]; !ok {
					continue
				}
			}
			feats[j*n+i] = fv.Value
			if p := listPos[j]; p >= 0 && fv.List != nil {
				lists[p][i] = fv.List
			}
			if p := labelPos[j]; p >= 0 && fv.Labels != nil {
				labels[p][i] = fv.Labels
			}
		}
	}
	cols := []any{entity, eventTime, eventMs, knownMs, topic, partition, offset, eventID, wsMs, weMs, revises}
	for j := range nf {
		cols = append(cols, feats[j*n:(j+1)*n:(j+1)*n])
	}
	for _, l := range lists {
		cols = append(cols, l)
	}
	for _, l := range labels {
		cols = append(cols, l)
	}
	for c, col := range cols {
		if err := b.Column(c).Append(col); err != nil {
			return fmt.Errorf("offline: insert %d rows into %s: append column %d: %w", len(rows), v.table, c, err)
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
