package offline

import (
	"context"
	"fmt"
	"strings"

	"github.com/weirhq/weir/featurestore"
)

// newestFirst orders a feature table's rows of one entity newest first, by
// featurestore.Compare (the partition, constant per entity, after the event
// time).
const newestFirst = "event_time_ms DESC, source_partition DESC, " + revised + " DESC, source_offset DESC, window_start_ms DESC"

// Latest returns the newest row of an entity's view version by
// featurestore.Compare: the row the online store should hold for it, for
// online/offline consistency checks. A correction is newer than the version
// it replaces. False when the entity has no row.
func (s *Store) Latest(ctx context.Context, viewName, version, entity string) (featurestore.Row, bool, error) {
	return s.LatestKnownAt(ctx, viewName, version, entity, 0)
}

// LatestKnownAt is Latest as known at knownAt (Unix ms): the newest row
// among those with known_time_ms <= knownAt, so a correction emitted after
// knownAt is not seen and the version it replaces is. knownAt 0 means now.
func (s *Store) LatestKnownAt(ctx context.Context, viewName, version, entity string, knownAt int64) (featurestore.Row, bool, error) {
	v, err := s.view(viewName, version)
	if err != nil {
		return featurestore.Row{}, false, fmt.Errorf("offline: latest: %w", err)
	}
	cols := []string{"event_time_ms", "known_time_ms", "source_partition", "source_offset", "revises_offset", "window_start_ms", "window_end_ms"}
	for _, f := range v.features {
		cols = append(cols, quote(f))
	}
	for _, f := range v.lists {
		cols = append(cols, quote(ListColumn(f)))
	}
	for _, f := range v.labels {
		cols = append(cols, quote(LabelsColumn(f)))
	}
	where := "entity = ?"
	if knownAt != 0 {
		where += " AND known_time_ms <= " + itoa(knownAt)
	}
	// Duplicates agree on every column, so the first row is the same
	// whichever copy it is.
	q := "SELECT " + strings.Join(cols, ", ") + " FROM " + v.table + " WHERE " + where + " ORDER BY " + newestFirst + " LIMIT 1"
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
	lists := make([][]float64, len(v.lists))
	labels := make([][]string, len(v.labels))
	dest := []any{&r.EventTime, &r.KnownTime, &r.Partition, &r.Offset, &r.Revises, &r.WindowStart, &r.WindowEnd}
	for i := range feats {
		dest = append(dest, &feats[i])
	}
	for i := range lists {
		dest = append(dest, &lists[i])
	}
	for i := range labels {
		dest = append(dest, &labels[i])
	}
	if err := rows.Scan(dest...); err != nil {
		return featurestore.Row{}, false, fmt.Errorf("offline: latest %s of %q: scan: %w", v.table, entity, err)
	}
	for i, f := range v.features {
		r.Values[f] = feats[i]
	}
	if len(lists) > 0 {
		r.Lists = make(map[string][]float64, len(lists))
		for i, f := range v.lists {
			r.Lists[f] = lists[i]
		}
	}
	if len(labels) > 0 {
		r.Labels = make(map[string][]string, len(labels))
		for i, f := range v.labels {
			r.Labels[f] = labels[i]
		}
	}
	return r, true, rows.Err()
}

// Complete returns the event time (Unix ms) up to which a view version's
// history is complete in the store: the least, over the source's partitions,
// of the newest event time materialized from each, minus horizon. 0 when
// some of the partitions has no row yet. A training set whose spine stops
// there never pairs a label with a feature row that is merely not
// materialized yet.
//
// horizon is how far behind its partition's newest event time a row may
// still be written, first or corrected: the source's out_of_order plus the
// view's lateness. A late event within them is accepted and emits its own
// row and corrections of the rows after it, all with event times no further
// behind than that.
func (s *Store) Complete(ctx context.Context, viewName, version string, partitions int, horizon int64) (int64, error) {
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
	return m - horizon, nil
}
