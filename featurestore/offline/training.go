package offline

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"time"
)

// ViewRequest names the features of one view version a training set joins.
type ViewRequest struct {
	View string
	// Version defaults to the configured view's current version.
	Version string
	// Features default to all of the view's features, in view order.
	Features []string
	// Delay is the view's availability delay: a feature row is usable by
	// spine rows at or after its event time plus Delay (default 0).
	Delay time.Duration
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
	DelayMs  int64    `json:"delay_ms,omitempty"`
	Features []string `json:"features"`
}

// joinRule is the point-in-time rule, in words, for the description.
const joinRule = "for each spine row (labels.card_id = entity, spine event_time_ms t) and each view: " + JoinRule

// JoinRule is the point-in-time rule of Join.Lookup and TrainingSet, in
// words, for descriptions.
const JoinRule = "the feature row of that entity with the greatest (event_time_ms, source_partition, revised offset, source_offset, window_start_ms), " +
	"the revised offset being revises_offset for a correction and source_offset for a first version, " +
	"such that event_time_ms <= t - delay_ms and t - event_time_ms <= ttl_ms, among the rows the cut-off keeps " +
	"(known_time_ms <= known_at; source_offset < the offset vector's entry for the row's source topic and partition): " +
	"a correction replaces the version it revises; missing (NaN, or null) when there is none"

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
// time is at or before the spine row's (less the view's Delay) and within
// the view's TTL of it. With KnownAt, only rows known by then count: a
// correction emitted later is not seen, and the version it replaced is.
//
// ClickHouse 18.16 has no ASOF JOIN, so the join is a sorted merge here
// (Join's): the spine is read deduplicated and sorted by (entity, event
// time), each view's rows are streamed sorted by entity and
// then oldest first by featurestore.Compare, and one pass over both picks
// each spine row's feature row: the last one at or before it. Memory is the
// result plus two feature rows per view. Views are joined on their entity
// equal to the label's card_id.
func (s *Store) TrainingSet(ctx context.Context, spec TrainingSetSpec) (*TrainingSet, error) {
	var js []joinView
	desc := Description{SpineTable: s.db + "." + LabelsTable, Since: spec.Since, Until: spec.Until, KnownAt: spec.KnownAt, Join: joinRule}
	width := 0
	for _, r := range spec.Views {
		jv, err := s.joinView(r)
		if err != nil {
			return nil, fmt.Errorf("offline: training set: %w", err)
		}
		for _, f := range jv.features {
			desc.Features = append(desc.Features, jv.v.name+"."+f)
		}
		width += len(jv.features)
		js = append(js, jv)
		desc.Views = append(desc.Views, jv.describe())
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
	keys := make([]Key, len(spine))
	for i, r := range spine {
		ts.X[i] = flat[i*width : (i+1)*width : (i+1)*width]
		ts.Y[i], ts.EventTimes[i], ts.Entities[i], ts.IDs[i] = r.fraud, r.et, r.entity, r.id
		keys[i] = Key{Entity: r.entity, T: r.et, Row: i}
		if r.fraud {
			desc.Positives++
		}
	}

	cut := Cutoff{KnownAt: spec.KnownAt}
	found := make([]bool, len(spine))
	off := 0
	for _, jv := range js {
		lo, hi := satSub(spec.Since, jv.ttlMs()), int64(math.MaxInt64)
		if spec.Until != 0 {
			hi = satSub(spec.Until-1, jv.delayMs)
		}
		q := jv.query("entity IN (SELECT card_id FROM "+labels+" WHERE "+spineWhere+")", itoa(lo), itoa(hi), "", cut)
		desc.SQL = append(desc.SQL, q)
		cols := make([][]float64, len(jv.cols))
		for k := range cols {
			cols[k] = make([]float64, len(spine))
		}
		if err := s.mergeQuery(ctx, q, &jv, keys, cols, found); err != nil {
			return nil, err
		}
		for i := range spine {
			for k := range cols {
				v := math.NaN()
				if found[i] {
					v = cols[k][i]
				}
				ts.X[i][off+k] = v
			}
		}
		off += len(cols)
	}
	desc.Rows = len(spine)
	ts.Description = desc
	return ts, nil
}

func (s *Store) mergeQuery(ctx context.Context, q string, jv *joinView, keys []Key, cols [][]float64, found []bool) error {
	rows, err := s.conn.Query(ctx, q)
	if err != nil {
		return fmt.Errorf("offline: training set: read %s: %w", jv.v.table, err)
	}
	defer rows.Close()
	if err := merge(rows, keys, jv.delayMs, jv.ttlMs(), cols, found); err != nil {
		return fmt.Errorf("offline: training set: read %s: %w", jv.v.table, err)
	}
	return nil
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
