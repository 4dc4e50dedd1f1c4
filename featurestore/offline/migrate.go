package offline

import (
	"context"
	"fmt"
	"strings"
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
