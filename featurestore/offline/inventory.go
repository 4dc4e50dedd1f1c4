package offline

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// StoredVersion is one version of a view found in the database: its table
// and what it holds. Versions of earlier definitions stay beside the
// current one until someone drops their tables.
type StoredVersion struct {
	Version string
	Table   string // unqualified
	// Columns are the feature columns (the table's columns after the fixed
	// ones, without ingested_at): the features of that version's definition.
	Columns []string
	// Rows counts stored rows, duplicates from retried inserts not yet
	// merged away included; Entities estimates the distinct entities
	// (ClickHouse uniq).
	Rows, Entities uint64
	// MinEventTime and MaxEventTime bound the rows' event times and
	// MaxKnownTime is the newest known time (Unix ms); 0 when Rows is 0.
	MinEventTime, MaxEventTime, MaxKnownTime int64
}

// versionSuffix is how a table name ends: _v and 8 hex digits
// (config.View.Version).
var versionSuffix = regexp.MustCompile(`_(v[0-9a-f]{8})$`)

// StoredVersions lists the versions of view that have a table in the
// store's database (features_<view>_<version>), sorted by version string:
// a version is a hash, so nothing tells which definition came first. It
// reads system.tables and system.columns, and one aggregate per table.
// Nothing needs to be configured: versions of earlier definitions are
// found too.
func (s *Store) StoredVersions(ctx context.Context, view string) ([]StoredVersion, error) {
	rows, err := s.conn.Query(ctx, "SELECT name FROM system.tables WHERE database = ?", s.db)
	if err != nil {
		return nil, fmt.Errorf("offline: list tables of view %s: %w", view, err)
	}
	var out []StoredVersion
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return nil, fmt.Errorf("offline: list tables of view %s: %w", view, err)
		}
		// features_card_ also starts features_card_activity_...: the rest
		// must be exactly a version.
		m := versionSuffix.FindStringSubmatch(name)
		if m == nil || TableName(view, m[1]) != name {
			continue
		}
		out = append(out, StoredVersion{Version: m[1], Table: name})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("offline: list tables of view %s: %w", view, err)
	}
	slices.SortFunc(out, func(a, b StoredVersion) int { return strings.Compare(a.Version, b.Version) })
	fixed := map[string]bool{"ingested_at": true}
	for _, c := range fixedColumns {
		fixed[c] = true
	}
	for i := range out {
		v := &out[i]
		cols, err := s.conn.Query(ctx, "SELECT name FROM system.columns WHERE database = ? AND table = ?", s.db, v.Table) // in table order (18.16 has no position column)
		if err != nil {
			return nil, fmt.Errorf("offline: columns of %s: %w", v.Table, err)
		}
		for cols.Next() {
			var c string
			if err := cols.Scan(&c); err != nil {
				cols.Close()
				return nil, fmt.Errorf("offline: columns of %s: %w", v.Table, err)
			}
			if !fixed[c] {
				v.Columns = append(v.Columns, c)
			}
		}
		cols.Close()
		q := "SELECT count(), uniq(entity), min(event_time_ms), max(event_time_ms), max(known_time_ms) FROM " + s.qualify(v.Table)
		if err := s.conn.QueryRow(ctx, q).Scan(&v.Rows, &v.Entities, &v.MinEventTime, &v.MaxEventTime, &v.MaxKnownTime); err != nil {
			return nil, fmt.Errorf("offline: size of %s: %w", v.Table, err)
		}
	}
	return out, nil
}

// SampleEntities returns up to n distinct entities of a view version's
// table, a pseudo-random choice that seed fixes (the same seed, the same
// sample of the same data).
func (s *Store) SampleEntities(ctx context.Context, viewName, version string, n int, seed uint64) ([]string, error) {
	v, err := s.view(viewName, version)
	if err != nil {
		return nil, fmt.Errorf("offline: sample entities: %w", err)
	}
	if n <= 0 {
		return nil, nil
	}
	q := "SELECT entity FROM " + v.table + " GROUP BY entity ORDER BY cityHash64(concat(?, entity)) LIMIT " + strconv.Itoa(n)
	rows, err := s.conn.Query(ctx, q, fmt.Sprint(seed))
	if err != nil {
		return nil, fmt.Errorf("offline: sample entities of %s: %w", v.table, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var e string
		if err := rows.Scan(&e); err != nil {
			return nil, fmt.Errorf("offline: sample entities of %s: %w", v.table, err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}
