package offline

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ViewRequest names the features of one view version a training set joins.
type ViewRequest struct {
	View string
	// Version defaults to the configured view's current version.
	Version string
	// Features default to all of the view's features, in view order.
	Features []string
}

// TrainingSetSpec says which labelled events a training set is built from
// and which features it joins to them.
type TrainingSetSpec struct {
	Views []ViewRequest
	// Since and Until bound the spine's event time (Unix ms), [Since, Until);
	// Until 0 means no upper bound.
	Since, Until int64
	// KnownAt, when not 0, builds the set as it was known at that time (Unix
	// ms): labels with label_time_ms <= KnownAt (the newest such label of a
	// transaction) and feature rows with known_time_ms <= KnownAt. It makes a
	// training set reproducible after more data arrives.
	KnownAt int64
}

// TrainingSet is a point-in-time-correct training set: row i is the labelled
// transaction IDs[i] of entity Entities[i] at EventTimes[i], with features
// X[i] and label Y[i]. Rows are in (entity, event time, txn id) order.
type TrainingSet struct {
	// X holds, for each row, the requested features of every view in
	// request order; NaN where the entity had no feature row at or before
	// the event within the view's TTL.
	X           [][]float64
	Y           []bool
	EventTimes  []int64
	Entities    []string
	IDs         []string
	Description Description
}

// Description says how a training set was made, to be stored with a model
// trained on it.
type Description struct {
	SpineTable string          `json:"spine_table"`
	Since      int64           `json:"since_ms"`
	Until      int64           `json:"until_ms,omitempty"`
	KnownAt    int64           `json:"known_at_ms,omitempty"`
	Views      []DescribedView `json:"views"`
	Features   []string        `json:"features"` // "view.feature", the columns of X
	Rows       int             `json:"rows"`
	Positives  int             `json:"positives"`
	SQL        []string        `json:"sql"`  // the queries run: the spine, then one per view
	Join       string          `json:"join"` // the point-in-time rule, in words
}

// DescribedView is one view a training set joined.
type DescribedView struct {
	View     string   `json:"view"`
	Version  string   `json:"version"`
	Table    string   `json:"table"`
	TTLMs    int64    `json:"ttl_ms"`
	Features []string `json:"features"`
}

// joinRule is the point-in-time rule, in words, for the description.
const joinRule = "for each spine row (labels.card_id = entity, spine event_time_ms t) and each view: " +
	"the feature row of that entity with the greatest (event_time_ms, source_partition, revised offset, source_offset, window_start_ms), " +
	"the revised offset being revises_offset for a correction and source_offset for a first version, " +
	"such that event_time_ms <= t and t - event_time_ms <= ttl_ms (and known_time_ms <= known_at when set): " +
	"a correction replaces the version it revises; NaN when there is none"

// spineRow is one labelled transaction.
type spineRow struct {
	entity string
	et     int64
	id     string
	fraud  bool
}

// TrainingSet builds a point-in-time-correct training set: the spine is the
// labels table in [spec.Since, spec.Until), and for each spine row and
// requested view the features come from the entity's newest feature row (by
// featurestore.Compare, so the newest version of the newest row) whose event
// time is at or before the spine row's and within the view's TTL of it. With
// KnownAt, only rows known by then count: a correction emitted later is not
// seen, and the version it replaced is.
//
// ClickHouse 18.16 has no ASOF JOIN, so the join is a sorted merge here:
// the spine is read deduplicated and sorted by (entity, event time), each
// view's rows are streamed deduplicated and sorted by entity and then
// oldest first by featurestore.Compare, and one pass over both picks each
// spine row's feature row: the last one at or before it. Memory is the result plus one feature row per view. Views are joined
// on their entity equal to the label's card_id.
func (s *Store) TrainingSet(ctx context.Context, spec TrainingSetSpec) (*TrainingSet, error) {
	type joined struct {
		v        *view
		features []string
		cols     []int // positions in v.features
	}
	var js []joined
	desc := Description{SpineTable: s.db + "." + LabelsTable, Since: spec.Since, Until: spec.Until, KnownAt: spec.KnownAt, Join: joinRule}
	width := 0
	for _, r := range spec.Views {
		version := r.Version
		if version == "" {
			for k := range s.views {
				if k.name == r.View {
					version = k.version
				}
			}
		}
		v, err := s.view(r.View, version)
		if err != nil {
			return nil, fmt.Errorf("offline: training set: %w", err)
		}
		j := joined{v: v, features: r.Features}
		if len(j.features) == 0 {
			j.features = v.features
		}
		for _, f := range j.features {
			c, ok := v.index[f]
			if !ok {
				return nil, fmt.Errorf("offline: training set: view %s has no feature %q (has %v)", v.name, f, v.features)
			}
			j.cols = append(j.cols, c)
			desc.Features = append(desc.Features, v.name+"."+f)
		}
		width += len(j.features)
		js = append(js, j)
		desc.Views = append(desc.Views, DescribedView{View: v.name, Version: v.version, Table: strings.ReplaceAll(v.table, "`", ""), TTLMs: v.ttlMs, Features: j.features})
	}

	spineWhere := "event_time_ms >= " + itoa(spec.Since)
	if spec.Until != 0 {
		spineWhere += " AND event_time_ms < " + itoa(spec.Until)
	}
	if spec.KnownAt != 0 {
		spineWhere += " AND label_time_ms <= " + itoa(spec.KnownAt)
	}
	labels := s.qualify(LabelsTable)
	spineSQL := "SELECT card_id, event_time_ms, txn_id, argMax(is_fraud, label_time_ms) FROM " + labels +
		" WHERE " + spineWhere + " GROUP BY card_id, event_time_ms, txn_id ORDER BY card_id, event_time_ms, txn_id"
	desc.SQL = append(desc.SQL, spineSQL)
	spine, err := s.readSpine(ctx, spineSQL)
	if err != nil {
		return nil, err
	}

	ts := &TrainingSet{
		X:          make([][]float64, len(spine)),
		Y:          make([]bool, len(spine)),
		EventTimes: make([]int64, len(spine)),
		Entities:   make([]string, len(spine)),
		IDs:        make([]string, len(spine)),
	}
	flat := make([]float64, len(spine)*width)
	for i, r := range spine {
		ts.X[i] = flat[i*width : (i+1)*width : (i+1)*width]
		ts.Y[i], ts.EventTimes[i], ts.Entities[i], ts.IDs[i] = r.fraud, r.et, r.entity, r.id
		if r.fraud {
			desc.Positives++
		}
	}

	off := 0
	for _, j := range js {
		v := j.v
		cols := make([]string, len(j.cols))
		for k, c := range j.cols {
			cols[k] = "any(" + quote(v.features[c]) + ")"
		}
		where := "event_time_ms >= " + itoa(satSub(spec.Since, v.ttlMs))
		if spec.Until != 0 {
			where += " AND event_time_ms < " + itoa(spec.Until)
		}
		if spec.KnownAt != 0 {
			where += " AND known_time_ms <= " + itoa(spec.KnownAt)
		}
		where += " AND entity IN (SELECT card_id FROM " + labels + " WHERE " + spineWhere + ")"
		sel := "entity, event_time_ms, source_partition, source_offset"
		if len(cols) > 0 {
			sel += ", " + strings.Join(cols, ", ")
		}
		// GROUP BY the sorting key drops duplicates; the order puts every
		// entity's rows oldest first, so the last at or before a spine row
		// is its newest version.
		q := "SELECT " + sel + " FROM " + v.table + " WHERE " + where +
			" GROUP BY " + sortingKey +
			" ORDER BY entity, event_time_ms, source_partition, " + revised + ", source_offset, window_start_ms"
		desc.SQL = append(desc.SQL, q)
		if err := s.mergeView(ctx, q, v, len(cols), spine, ts.X, off); err != nil {
			return nil, err
		}
		off += len(cols)
	}
	desc.Rows = len(spine)
	ts.Description = desc
	return ts, nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// satSub is a-b without wrapping below MinInt64.
func satSub(a, b int64) int64 {
	if a < math.MinInt64+b {
		return math.MinInt64
	}
	return a - b
}

func (s *Store) readSpine(ctx context.Context, q string) ([]spineRow, error) {
	rows, err := s.conn.Query(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("offline: training set: read spine: %w", err)
	}
	defer rows.Close()
	var out []spineRow
	for rows.Next() {
		var r spineRow
		var fraud uint8
		if err := rows.Scan(&r.entity, &r.et, &r.id, &fraud); err != nil {
			return nil, fmt.Errorf("offline: training set: read spine: %w", err)
		}
		r.fraud = fraud != 0
		if n := len(out); n > 0 && (out[n-1].entity > r.entity || out[n-1].entity == r.entity && out[n-1].et > r.et) {
			return nil, fmt.Errorf("offline: training set: spine not in (entity, event time) order at %q %d", r.entity, r.et)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("offline: training set: read spine: %w", err)
	}
	return out, nil
}

// featRow is one feature row streamed from a view's table.
type featRow struct {
	entity    string
	et        int64
	part      int32
	off       int64
	values    []float64
	dest      []any
	populated bool
}

func newFeatRow(n int) *featRow {
	r := &featRow{values: make([]float64, n)}
	r.dest = []any{&r.entity, &r.et, &r.part, &r.off}
	for i := range r.values {
		r.dest = append(r.dest, &r.values[i])
	}
	return r
}

// mergeView streams q's rows, sorted like the spine, and writes each spine
// row's point-in-time feature values into x[i][off:off+n].
func (s *Store) mergeView(ctx context.Context, q string, v *view, n int, spine []spineRow, x [][]float64, off int) error {
	rows, err := s.conn.Query(ctx, q)
	if err != nil {
		return fmt.Errorf("offline: training set: read %s: %w", v.table, err)
	}
	defer rows.Close()
	// cur is the last row consumed: the greatest row not after the current
	// spine row. next is the row read ahead.
	cur, next := newFeatRow(n), newFeatRow(n)
	advance := func() (bool, error) {
		if !rows.Next() {
			return false, rows.Err()
		}
		prevEntity, prevET := next.entity, next.et
		wasPopulated := next.populated
		if cur.populated {
			prevEntity, prevET, wasPopulated = cur.entity, cur.et, true
		}
		if err := rows.Scan(next.dest...); err != nil {
			return false, err
		}
		next.populated = true
		if wasPopulated && (prevEntity > next.entity || prevEntity == next.entity && prevET > next.et) {
			return false, fmt.Errorf("rows not in (entity, event time) order at %q %d", next.entity, next.et)
		}
		return true, nil
	}
	ok, err := advance()
	for i := range spine {
		sp := &spine[i]
		for ok && err == nil && (next.entity < sp.entity || next.entity == sp.entity && next.et <= sp.et) {
			cur, next = next, cur
			ok, err = advance()
		}
		if err != nil {
			return fmt.Errorf("offline: training set: read %s: %w", v.table, err)
		}
		dst := x[i][off : off+n]
		if cur.populated && cur.entity == sp.entity && sp.et-cur.et <= v.ttlMs {
			copy(dst, cur.values)
		} else {
			for k := range dst {
				dst[k] = math.NaN()
			}
		}
	}
	return nil
}
