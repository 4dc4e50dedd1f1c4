package offline

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/ext"
	"github.com/ClickHouse/clickhouse-go/v2/lib/column"
)

// KeysTable is the external table (ClickHouse "external data", sent with
// the query) that holds a chunk's entities in a Join's queries: one String
// column, entity.
const KeysTable = "weir_keys"

// Cutoff says which feature rows a point-in-time read may see besides
// event time: the zero Cutoff sees every row stored ("as of event time").
// Both cut-offs may be set; a row must then pass both.
type Cutoff struct {
	// KnownAt (Unix ms), when not 0, keeps the rows with known_time_ms <=
	// KnownAt: what the store held at that time, provided its
	// materializers had caught up to it.
	KnownAt int64
	// Offsets, when not nil, keeps the rows derived from source records
	// before the vector (see OffsetVector). An empty, non-nil vector keeps
	// nothing.
	Offsets OffsetVector
}

// OffsetVector is a position in the source topics, as a consumer group's
// committed offsets are: for each partition, the offset of the next record
// to read. A feature row is known at the vector when its source record
// (source_topic, source_partition, source_offset) is before it: source_offset
// < Offset of the entry for its topic and partition. An entry with an empty
// Topic is for that partition of every topic without an entry of its own; a
// row of a partition with no entry is not known. The source record is the
// one a row's provenance names: a sliding row's own event, a correction's
// late event (its cause), and a tumbling, hopping or session row's newest
// event in the window. So the rows known at a vector are those a processor
// that had read just the records before it could have computed; a
// window's final row emitted on close counts as known once its events are,
// even though the watermark that closed it came from a later record (give
// such views an availability delay of at least the source's out_of_order
// to model that).
type OffsetVector []PartitionOffset

// PartitionOffset is one partition's entry of an OffsetVector.
type PartitionOffset struct {
	Topic     string `json:"topic,omitempty"` // "" for every topic
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"` // the next offset to read
}

// topicName is what Kafka allows in a topic name; it is written into SQL
// between quotes.
var topicName = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// Validate reports an entry with a bad topic name or a negative offset, and
// two entries for the same topic and partition.
func (ov OffsetVector) Validate() error {
	seen := map[PartitionOffset]bool{}
	for _, e := range ov {
		if e.Topic != "" && !topicName.MatchString(e.Topic) {
			return fmt.Errorf("offline: offset vector: topic %q is not a Kafka topic name", e.Topic)
		}
		if e.Partition < 0 || e.Offset < 0 {
			return fmt.Errorf("offline: offset vector: %s partition %d offset %d: negative", e.Topic, e.Partition, e.Offset)
		}
		k := PartitionOffset{Topic: e.Topic, Partition: e.Partition}
		if seen[k] {
			return fmt.Errorf("offline: offset vector: partition %d of topic %q twice", e.Partition, e.Topic)
		}
		seen[k] = true
	}
	return nil
}

// Known reports whether a row derived from the source record (topic,
// partition, offset) is known at the vector: the Go form of the SQL the
// join filters with.
func (ov OffsetVector) Known(topic string, partition int32, offset int64) bool {
	next, found := int64(0), false
	for _, e := range ov {
		if e.Partition != partition {
			continue
		}
		if e.Topic == topic {
			next, found = e.Offset, true
			break
		}
		if e.Topic == "" && !found {
			next, found = e.Offset, true
		}
	}
	return found && offset < next
}

// sql is the vector's condition on a feature table's rows.
func (ov OffsetVector) sql() string {
	if len(ov) == 0 {
		return "source_offset < 0" // nothing is known
	}
	// Entries of a topic first, so they win over the entries for every
	// topic: multiIf takes the first condition that holds.
	entries := slices.Clone(ov)
	slices.SortStableFunc(entries, func(a, b PartitionOffset) int {
		if (a.Topic == "") == (b.Topic == "") {
			return 0
		}
		if a.Topic != "" {
			return -1
		}
		return 1
	})
	var b strings.Builder
	b.WriteString("source_offset < multiIf(")
	for _, e := range entries {
		if e.Topic != "" {
			b.WriteString("source_topic = '" + e.Topic + "' AND ")
		}
		fmt.Fprintf(&b, "source_partition = %d, %d, ", e.Partition, e.Offset)
	}
	b.WriteString("0)")
	return b.String()
}

// where is the cut-off's conditions, each starting with " AND ".
func (c Cutoff) where() string {
	var s string
	if c.KnownAt != 0 {
		s += " AND known_time_ms <= " + itoa(c.KnownAt)
	}
	if c.Offsets != nil {
		s += " AND " + c.Offsets.sql()
	}
	return s
}

// Join is a point-in-time join of feature view versions onto spine keys
// (entity, time), prepared by Store.Join. It is safe for concurrent use:
// Lookup may run for several views at once.
type Join struct {
	s     *Store
	views []joinView
	cut   Cutoff
	// Trace, when set before the first Lookup, is called with each query
	// a Lookup runs and the entities it sent as KeysTable (the caller must
	// not keep the slice). Tests use it to run the same queries elsewhere.
	Trace func(view int, query string, entities []string)
}

type joinView struct {
	v        *view
	features []string
	cols     []int // positions in v.features
	delayMs  int64
}

// Join prepares a point-in-time join of the requested views under cut.
// A view's version defaults to its configured one, its features to all of
// the view's, in view order.
func (s *Store) Join(reqs []ViewRequest, cut Cutoff) (*Join, error) {
	if err := cut.Offsets.Validate(); err != nil {
		return nil, err
	}
	j := &Join{s: s, cut: cut}
	for _, r := range reqs {
		jv, err := s.joinView(r)
		if err != nil {
			return nil, fmt.Errorf("offline: join: %w", err)
		}
		j.views = append(j.views, jv)
	}
	return j, nil
}

func (s *Store) joinView(r ViewRequest) (joinView, error) {
	version := r.Version
	if version == "" {
		if c := s.current[r.View]; c != nil {
			version = c.version
		}
	}
	v, err := s.view(r.View, version)
	if err != nil {
		return joinView{}, err
	}
	if r.Delay < 0 {
		return joinView{}, fmt.Errorf("view %s: negative availability delay %s", r.View, r.Delay)
	}
	jv := joinView{v: v, features: r.Features, delayMs: r.Delay.Milliseconds()}
	if len(jv.features) == 0 {
		jv.features = v.features
	}
	for _, f := range jv.features {
		c, ok := v.index[f]
		if !ok {
			return joinView{}, fmt.Errorf("view %s has no feature %q (has %v)", v.name, f, v.features)
		}
		jv.cols = append(jv.cols, c)
	}
	return jv, nil
}

// Views describes the joined views, in request order.
func (j *Join) Views() []DescribedView {
	out := make([]DescribedView, len(j.views))
	for i, jv := range j.views {
		out[i] = jv.describe()
	}
	return out
}

func (jv *joinView) describe() DescribedView {
	return DescribedView{View: jv.v.name, Version: jv.v.version, Table: strings.ReplaceAll(jv.v.table, "`", ""),
		TTLMs: jv.v.ttlMs, DelayMs: jv.delayMs, Features: slices.Clone(jv.features)}
}

// Cutoff is the join's cut-off.
func (j *Join) Cutoff() Cutoff { return j.cut }

// SQL is view i's query with the placeholders {lo} and {hi} for the
// event-time range a Lookup reads ({lo_s} and {hi_s} in seconds; that
// condition is left out where they are out of DateTime's range), for
// descriptions.
func (j *Join) SQL(i int) string {
	return j.views[i].query(keysFilter, "{lo}", "{hi}", " AND event_time >= toDateTime({lo_s}) AND event_time <= toDateTime({hi_s})", j.cut)
}

// keysFilter restricts a Lookup's query to the chunk's entities.
const keysFilter = "entity IN (SELECT entity FROM " + KeysTable + ")"

// query is the SQL of one view's rows for a merge: rows whose entity
// passes filter, with event time in [lo, hi] (SQL expressions) and
// passing the cut-off, in merge order: by entity, then oldest first by
// featurestore.Compare (the partition, constant per entity, after the
// event time), so the last row at or before a spine row is its newest
// version. partition, when not empty, is a condition on event_time (the
// partition key) that lets ClickHouse skip months.
//
// Duplicates (retried inserts) are not removed: they agree on every
// column, so they sort next to each other, and the merge, which takes the
// last row at or before a time, gives the same result with or without
// them. A GROUP BY on the sorting key would remove them at 2.5 times the
// query's cost (1.26M rows on 18.16: 2.1 s against 0.83 s).
func (jv *joinView) query(filter, lo, hi, partition string, cut Cutoff) string {
	var b strings.Builder
	b.WriteString("SELECT entity, event_time_ms")
	for _, c := range jv.cols {
		b.WriteString(", " + quote(jv.v.features[c]))
	}
	b.WriteString(" FROM " + jv.v.table + " WHERE " + filter)
	b.WriteString(partition)
	b.WriteString(" AND event_time_ms >= " + lo + " AND event_time_ms <= " + hi)
	b.WriteString(cut.where())
	b.WriteString(" ORDER BY entity, event_time_ms, source_partition, " + revised + ", source_offset, window_start_ms")
	return b.String()
}

// window is the event-time range [lo, hi] of the rows that spine rows at
// times [minT, maxT] can use: at or before t - delay, within the TTL of t.
func (jv *joinView) window(minT, maxT int64) (lo, hi int64) {
	return satSub(minT, jv.ttlMs()), satSub(maxT, jv.delayMs)
}

func (jv *joinView) ttlMs() int64 { return jv.v.ttlMs }

// partitionFilter is a condition on event_time, the tables' partition key,
// equivalent to event_time_ms in [lo, hi] where both are in DateTime's
// range; empty otherwise.
func partitionFilter(lo, hi int64) string {
	if lo < 0 || hi < lo || hi/1000 > math.MaxUint32 {
		return ""
	}
	return fmt.Sprintf(" AND event_time >= toDateTime(%d) AND event_time <= toDateTime(%d)", lo/1000, hi/1000)
}

// Key is one spine row's key for one view: its entity and time (Unix
// ms), and Row, where its values go in the Lookup's output.
type Key struct {
	Entity string
	T      int64
	Row    int
}

// Lookup joins view i onto keys, which must be sorted by (Entity, T). For
// each key it sets found[key.Row] and, when found, cols[k][key.Row] to the
// value of the view's k-th requested feature in the entity's newest row
// (by featurestore.Compare) with event time at or before T minus the
// view's availability delay, within the view's TTL of T (T - event time <=
// ttl), among the rows the cut-off keeps. found[key.Row] is false, and the
// values untouched, when there is no such row. A stored NaN (a feature the
// row lacked) is returned as NaN with found true.
//
// One query reads the view's rows of the keys' entities (sent as the
// external table KeysTable) in the event-time range the keys can use,
// sorted like the keys; one pass merges the two. Memory is the keys' distinct
// entities plus two rows.
func (j *Join) Lookup(ctx context.Context, i int, keys []Key, cols [][]float64, found []bool) error {
	jv := &j.views[i]
	if len(keys) == 0 {
		return nil
	}
	if len(cols) != len(jv.cols) {
		return fmt.Errorf("offline: join %s: %d output columns for %d features", jv.v.table, len(cols), len(jv.cols))
	}
	tbl, err := ext.NewTable(KeysTable, ext.Column("entity", column.Type("String")))
	if err != nil {
		return fmt.Errorf("offline: join %s: %w", jv.v.table, err)
	}
	var entities []string
	minT, maxT := keys[0].T, keys[0].T
	for k := range keys {
		key := &keys[k]
		if k > 0 {
			prev := &keys[k-1]
			if prev.Entity > key.Entity || prev.Entity == key.Entity && prev.T > key.T {
				return fmt.Errorf("offline: join %s: keys not sorted by (entity, time) at %d (%q %d)", jv.v.table, k, key.Entity, key.T)
			}
		}
		if k == 0 || keys[k-1].Entity != key.Entity {
			entities = append(entities, key.Entity)
			if err := tbl.Append(key.Entity); err != nil {
				return fmt.Errorf("offline: join %s: %w", jv.v.table, err)
			}
		}
		minT, maxT = min(minT, key.T), max(maxT, key.T)
	}
	lo, hi := jv.window(minT, maxT)
	q := jv.query(keysFilter, itoa(lo), itoa(hi), partitionFilter(lo, hi), j.cut)
	if j.Trace != nil {
		j.Trace(i, q, entities)
	}
	rows, err := j.s.conn.Query(clickhouse.Context(ctx, clickhouse.WithExternalTable(tbl)), q)
	if err != nil {
		return fmt.Errorf("offline: join %s: %w", jv.v.table, err)
	}
	defer rows.Close()
	if err := merge(rows, keys, jv.delayMs, jv.ttlMs(), cols, found); err != nil {
		return fmt.Errorf("offline: join %s: %w", jv.v.table, err)
	}
	return nil
}

// rowSource is what merge reads: driver.Rows.
type rowSource interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
}

// featRow is one feature row streamed from a view's table.
type featRow struct {
	entity    string
	et        int64
	values    []float64
	dest      []any
	populated bool
}

func newFeatRow(n int) *featRow {
	r := &featRow{values: make([]float64, n)}
	r.dest = []any{&r.entity, &r.et}
	for i := range r.values {
		r.dest = append(r.dest, &r.values[i])
	}
	return r
}

// merge reads rows (entity, event_time_ms, values...) sorted by entity and
// then oldest first, and for each key (sorted by entity and time) takes the
// last row of its entity at or before key.T - delay, if key.T - its event
// time <= ttl.
func merge(rows rowSource, keys []Key, delay, ttl int64, cols [][]float64, found []bool) error {
	n := len(cols)
	// cur is the last row consumed: the greatest row not after the current
	// key. next is the row read ahead.
	cur, next := newFeatRow(n), newFeatRow(n)
	advance := func() (bool, error) {
		if !rows.Next() {
			return false, rows.Err()
		}
		prevEntity, prevET, was := next.entity, next.et, next.populated
		if cur.populated {
			prevEntity, prevET, was = cur.entity, cur.et, true
		}
		if err := rows.Scan(next.dest...); err != nil {
			return false, err
		}
		next.populated = true
		if was && (prevEntity > next.entity || prevEntity == next.entity && prevET > next.et) {
			return false, fmt.Errorf("rows not in (entity, event time) order at %q %d", next.entity, next.et)
		}
		return true, nil
	}
	ok, err := advance()
	for k := range keys {
		key := &keys[k]
		at := satSub(key.T, delay)
		for ok && err == nil && (next.entity < key.Entity || next.entity == key.Entity && next.et <= at) {
			cur, next = next, cur
			ok, err = advance()
		}
		if err != nil {
			return err
		}
		hit := cur.populated && cur.entity == key.Entity && cur.et <= at && key.T-cur.et <= ttl
		found[key.Row] = hit
		if hit {
			for c := range cols {
				cols[c][key.Row] = cur.values[c]
			}
		}
	}
	return nil
}
