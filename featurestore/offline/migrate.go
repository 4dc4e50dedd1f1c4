package offline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/weirhq/weir/internal/config"
)

// Migrate creates the database, every view version's table and the labels
// table if they do not exist, and upgrades feature tables created by an
// earlier version of this package (see the package doc). It is idempotent,
// and processes migrating the same tables at once converge.
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
	for _, v := range s.views {
		if err := s.upgrade(ctx, v); err != nil {
			return err
		}
	}
	return nil
}

func (v *view) ddl() string {
	var b strings.Builder
	b.WriteString("CREATE TABLE IF NOT EXISTS " + v.table + " (\n")
	b.WriteString("  entity String,\n  event_time DateTime,\n  event_time_ms Int64,\n  known_time_ms Int64,\n")
	b.WriteString("  source_topic String,\n  source_partition Int32,\n  source_offset Int64,\n  event_id String,\n")
	b.WriteString("  window_start_ms Int64,\n  window_end_ms Int64,\n  revises_offset Int64 DEFAULT -1,\n")
	for _, f := range v.features {
		b.WriteString("  " + quote(f) + " Float64,\n")
	}
	for _, f := range v.lists {
		b.WriteString("  " + quote(ListColumn(f)) + " Array(Float64),\n")
	}
	for _, f := range v.labels {
		b.WriteString("  " + quote(LabelsColumn(f)) + " Array(String),\n")
	}
	b.WriteString("  ingested_at DateTime DEFAULT now()\n) ENGINE = ReplacingMergeTree\n")
	b.WriteString("PARTITION BY toYYYYMM(event_time)\nORDER BY (" + sortingKey + ")")
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

// upgrade adds the columns a feature table created by an earlier version of
// this package lacks. ClickHouse 18.16 has no ADD COLUMN IF NOT EXISTS, so
// the columns present are read from system.columns. When processes upgrade
// the same table at once, an ALTER fails for all but one of them; the others
// read the columns again and go on from there.
func (s *Store) upgrade(ctx context.Context, v *view) error {
	const attempts = 5 // more than the ALTERs there can be: each lost race means one more is done
	for attempt := 1; ; attempt++ {
		alters, err := s.pendingAlters(ctx, v)
		if err != nil || len(alters) == 0 {
			return err
		}
		for _, q := range alters {
			if err = s.conn.Exec(ctx, q); err != nil {
				break
			}
		}
		if err != nil && attempt == attempts {
			return fmt.Errorf("offline: migrate %s: %w", v.table, err)
		}
	}
}

// pendingAlters returns the ALTERs that bring v's table to the current
// layout, in order; none when it has it.
func (s *Store) pendingAlters(ctx context.Context, v *view) ([]string, error) {
	rows, err := s.conn.Query(ctx, "SELECT name, default_kind FROM system.columns WHERE database = ? AND table = ?", s.db, v.tableName)
	if err != nil {
		return nil, fmt.Errorf("offline: migrate %s: read columns: %w", v.table, err)
	}
	defer rows.Close()
	have := map[string]string{} // column name -> default kind
	for rows.Next() {
		var name, kind string
		if err := rows.Scan(&name, &kind); err != nil {
			return nil, fmt.Errorf("offline: migrate %s: read columns: %w", v.table, err)
		}
		have[name] = kind
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("offline: migrate %s: read columns: %w", v.table, err)
	}
	var alters []string
	alter := "ALTER TABLE " + v.table + " "
	// The sorting key's new columns, added without a default in the same
	// ALTER that appends them to the key (ClickHouse forbids anything else).
	_, hasWS := have["window_start_ms"]
	_, hasRev := have["revises_offset"]
	if !hasWS || !hasRev {
		if hasWS || hasRev {
			return nil, fmt.Errorf("offline: migrate %s: has only one of window_start_ms and revises_offset; add the other and append both to the sorting key (%s) by hand", v.table, sortingKey)
		}
		alters = append(alters, alter+"ADD COLUMN window_start_ms Int64 AFTER event_id, "+
			"ADD COLUMN revises_offset Int64 AFTER window_start_ms, MODIFY ORDER BY ("+sortingKey+")")
		have["window_start_ms"], have["revises_offset"] = "", ""
	}
	// Rows written before read as first versions.
	if have["revises_offset"] != "DEFAULT" {
		alters = append(alters, alter+"MODIFY COLUMN revises_offset Int64 DEFAULT -1")
	}
	after := "window_start_ms"
	var add []string
	addColumn := func(name, typ string) {
		if _, ok := have[name]; !ok {
			add = append(add, "ADD COLUMN "+quote(name)+" "+typ+" AFTER "+quote(after))
		}
		after = name
	}
	addColumn("window_end_ms", "Int64")
	after = "revises_offset"
	for _, f := range v.features {
		after = f
	}
	for _, f := range v.lists {
		addColumn(ListColumn(f), "Array(Float64)")
	}
	for _, f := range v.labels {
		addColumn(LabelsColumn(f), "Array(String)")
	}
	if len(add) > 0 {
		alters = append(alters, alter+strings.Join(add, ", "))
	}
	return alters, nil
}

// ErrNotExtension is returned by Inherit when the current definition of a
// view does not extend the earlier one it is asked to inherit from.
var ErrNotExtension = errors.New("not an extension")

// Inherit gives the current version of a view the history of an earlier
// version that it extends: every feature of from is in the current
// definition, defined the same, and the view's name, source, entity and
// window are the same; only features were added. A view's version hashes
// its whole definition, so the added feature makes a new version and a new
// table, and Inherit fills that table without rewriting history:
//
//  1. CREATE TABLE <new> AS <old>: the old table's columns and engine;
//  2. ALTER TABLE <new> ATTACH PARTITION p FROM <old>, per partition of the
//     old table: its parts are hard-linked, nothing is copied or rewritten,
//     and the old table keeps them too;
//  3. ALTER TABLE <new> ADD COLUMN <feature> Float64 DEFAULT nan (an empty
//     array for a last_n or top_k column) per added feature: a metadata
//     change, the parts keep their names and files. Rows written before
//     read NaN for the added features, as a missing feature reads
//     everywhere else, and the old features read as they were.
//
// Call it once per extension, before Migrate creates the new table (it
// refuses a new table that exists) and before the new version's rows are
// materialized. Rows the old version's materializer writes after the call
// stay in the old table only: the new version's history is the old one up
// to the call and its own rows after, with the added features NaN before
// its processor emitted them (a backfill fills them). A failed Inherit may
// leave the new table half filled: drop it and call again. The old table
// and its version are untouched; serving and training sets that name it go
// on as before.
func (s *Store) Inherit(ctx context.Context, from config.View) error {
	v := s.current[from.Name]
	if v == nil {
		return fmt.Errorf("offline: inherit %s: %w", from.Name, ErrUnknownView)
	}
	old := from.Version()
	if err := extends(&v.def, &from); err != nil {
		return fmt.Errorf("offline: inherit %s %s from %s: %w", v.name, v.version, old, err)
	}
	oldName := TableName(v.name, old)
	oldTable := s.qualify(oldName)
	fail := func(what string, err error) error {
		return fmt.Errorf("offline: inherit %s from %s: %s: %w", v.table, oldTable, what, err)
	}
	exists := func(table string) (bool, error) {
		var n uint64
		err := s.conn.QueryRow(ctx, "SELECT count() FROM system.tables WHERE database = ? AND name = ?", s.db, table).Scan(&n)
		return n > 0, err
	}
	if ok, err := exists(v.tableName); err != nil || ok {
		return fail("new table", cmpErr(err, errors.New("exists already (Inherit runs before Migrate creates it)")))
	}
	if ok, err := exists(oldName); err != nil || !ok {
		return fail("old table", cmpErr(err, errors.New("does not exist")))
	}
	if err := s.conn.Exec(ctx, "CREATE TABLE "+v.table+" AS "+oldTable); err != nil {
		return fail("create", err)
	}
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT partition FROM system.parts WHERE database = ? AND table = ? AND active", s.db, oldName)
	if err != nil {
		return fail("read partitions", err)
	}
	var parts []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return fail("read partitions", err)
		}
		parts = append(parts, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fail("read partitions", err)
	}
	slices.Sort(parts)
	for _, p := range parts {
		// The partition key is toYYYYMM(event_time): the partition is a number.
		if !isDigits(p) {
			return fail("attach", fmt.Errorf("partition %q is not a toYYYYMM value", p))
		}
		if err := s.conn.Exec(ctx, "ALTER TABLE "+v.table+" ATTACH PARTITION "+p+" FROM "+oldTable); err != nil {
			return fail("attach partition "+p, err)
		}
	}
	had := map[string]bool{}
	for _, f := range from.Features {
		had[f.Name] = true
	}
	var add []string
	after := "revises_offset"
	for _, f := range v.features {
		if !had[f] {
			add = append(add, "ADD COLUMN "+quote(f)+" Float64 DEFAULT nan AFTER "+quote(after))
		}
		after = f
	}
	for _, f := range v.lists {
		if !had[f] {
			add = append(add, "ADD COLUMN "+quote(ListColumn(f))+" Array(Float64) AFTER "+quote(after))
		}
		after = ListColumn(f)
	}
	for _, f := range v.labels {
		if !had[f] {
			add = append(add, "ADD COLUMN "+quote(LabelsColumn(f))+" Array(String) AFTER "+quote(after))
		}
		after = LabelsColumn(f)
	}
	if err := s.conn.Exec(ctx, "ALTER TABLE "+v.table+" "+strings.Join(add, ", ")); err != nil {
		return fail("add columns", err)
	}
	return nil
}

// extends returns nil when cur is from plus added features: the version of
// cur without them equals from's (config.View.Version hashes name, source,
// entity, window and features in order, so the shared features keep from's
// order and definitions).
func extends(cur, from *config.View) error {
	if cur.Version() == from.Version() {
		return fmt.Errorf("the same definition: %w", ErrNotExtension)
	}
	had := map[string]bool{}
	for _, f := range from.Features {
		had[f.Name] = true
	}
	trimmed := *cur
	trimmed.Features = nil
	for _, f := range cur.Features {
		if had[f.Name] {
			trimmed.Features = append(trimmed.Features, f)
		}
	}
	if len(trimmed.Features) != len(from.Features) || trimmed.Version() != from.Version() {
		return fmt.Errorf("the current definition changes or drops a feature of %s, or its name, source, entity or window, besides adding features: %w", from.Version(), ErrNotExtension)
	}
	return nil
}

// cmpErr is err, or else alt.
func cmpErr(err, alt error) error {
	if err != nil {
		return err
	}
	return alt
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}
