package processors

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/processors/statestore"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/streams"
)

// Event is a decoded, accepted source event with its computed features, as
// seen by an EventHook.
type Event struct {
	Key       string
	ID        string
	Time      int64 // ms
	Partition int32
	Offset    int64
	Rows      []*schemas.FeatureRow // one per view, in view order
	// Keys are the event's keys of the entities declared on its source:
	// every entity of TaskConfig.Entities whose key field is the source's
	// key or a repartition's field (an entity with views of the source), in
	// TaskConfig.Entities order. A hook reads other entities' features by
	// them (the scorer looks them up in the online store). Each Key aliases
	// the decoded event: valid only during the hook.
	Keys []EntityKey
}

// EntityKey is an event's key of one entity.
type EntityKey struct {
	Entity string // the entity's name (config.Entity.Name)
	Key    []byte
}

// EntityKey returns the event's key of the named entity; nil when the
// entity is not declared on the event's source.
func (ev *Event) EntityKey(entity string) []byte {
	for i := range ev.Keys {
		if ev.Keys[i].Entity == entity {
			return ev.Keys[i].Key
		}
	}
	return nil
}

// EventHook is called for every accepted event after its features are
// computed, inside the same transaction; it may append records to out (the
// scorer appends a prediction). It must not keep ev or its rows, which are
// reused for the next event.
type EventHook func(ctx context.Context, ev *Event, out []*kgo.Record) ([]*kgo.Record, error)

// TaskConfig configures a Task.
type TaskConfig struct {
	Source         config.Source
	Views          []*config.View
	Entities       []config.Entity
	FeatureTopics  []string // per view, in view order
	ChangelogTopic string
	// Repartitions forward accepted events to other entities' views.
	Repartitions []Repartition
	// Opts are base client options used to read the changelog on restore.
	Opts []kgo.Opt
	// Now is the wall clock (for max_future checks); nil means time.Now.
	Now func() time.Time
	// State says where committed state is kept (memory by default).
	State config.State
}

// Task is the streams.Processor of one source: it decodes events, applies
// the views' engine to per-partition state, and emits feature rows and
// changelog records.
type Task struct {
	cfg      TaskConfig
	eng      *Engine
	srcSerde *schemas.Serde
	rowSerde *schemas.Serde
	hooks    []EventHook
	log      *slog.Logger
	now      func() time.Time

	mu    sync.Mutex // guards parts against the rebalance callbacks
	parts map[int32]*partition

	vals []float64
	cats []string
	rows []*schemas.FeatureRow // one per view, reused for every event: the event's own rows
	// other are the rows emitted for other events (corrections, windows
	// closed), encoded from here so that rows keeps the event's own.
	other []*schemas.FeatureRow
	// arena allocates the output records.
	arena arena
	buf   []byte
	late  []bool // per view: the event was too late for it
	puts  []statestore.Put[*entityState]
	// broken is set when the state store failed: Process returns it.
	broken error

	// The record being processed and the output, for emitRow.
	cur     *kgo.Record
	curID   string
	curKey  []byte
	curEnt  string // curKey as a string
	curTime int64
	curPart int32
	curOut  []*kgo.Record
	emitFn  func(*Row)
	ownRow  []bool // per view: Rows[vi] holds the event's own row

	projFields []string // key, event time, id, then the other source fields read
	projection *schemas.Projection
	proj       []schemas.Value
	fieldPos   []int       // where each engine field's value is in proj
	catPos     []int       // where each categorical field's value is in proj
	filterPos  []int       // where each filter's field's value is in proj
	repartPos  []int       // where each repartition's key is in proj
	keys       []EntityKey // Event.Keys, reused for every event
	ev         Event       // handed to the hooks, reused for every event
	keyPos     []int       // where each of keys is in proj

	ttl int64 // ms: entities expire this long after their newest event

	entities        prometheus.Gauge
	expired         prometheus.Counter
	rowsOut         []prometheus.Counter // by view
	corrections     []prometheus.Counter // by view
	lateSkipped     []prometheus.Counter // by view
	timersGauge     prometheus.Gauge
	stateBytes      prometheus.Counter
	storeBytes      prometheus.Gauge
	restoreBytes    prometheus.Counter
	watermark       *prometheus.GaugeVec // by partition: event time, Unix seconds
	restoreRecords  prometheus.Counter
	restoreDuration prometheus.Counter
}

var _ streams.Processor = (*Task)(nil)

// partition is the state of one assigned source partition.
type partition struct {
	store store // committed state
	fresh bool  // store.Get decodes a private copy (on disk)
	// mutated: an event of this transaction changed a committed state in
	// place (memory store); stale: such a transaction aborted, so the
	// state must be restored from the changelog before it is used again.
	mutated, stale bool
	staged         map[string]*entityState // nil: the entity expired in this transaction
	watermark      int64                   // greatest accepted event time, committed
	stagedWM       int64
	timers         *timers
	lastEvent      time.Time // wall clock of the last event processed
	swept          int64     // watermark at the last sweep for expired entities
	// stagedSwept is the watermark of a sweep in this transaction.
	stagedSwept int64
}

// NewTask returns a task; srcSerde decodes source values, rowSerde encodes
// feature rows (nil when there are no views: a task may only run hooks).
// reg may be nil.
func NewTask(cfg TaskConfig, srcSerde, rowSerde *schemas.Serde, log *slog.Logger, reg prometheus.Registerer, hooks ...EventHook) (*Task, error) {
	eng, err := NewEngine(cfg.Source, cfg.Views, cfg.Entities)
	if err != nil {
		return nil, err
	}
	if len(cfg.FeatureTopics) != len(cfg.Views) {
		return nil, fmt.Errorf("processors: %d feature topics for %d views", len(cfg.FeatureTopics), len(cfg.Views))
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	l := prometheus.Labels{"source": cfg.Source.Name}
	t := &Task{
		cfg: cfg, eng: eng, srcSerde: srcSerde, rowSerde: rowSerde, hooks: hooks, log: log, now: now,
		parts:           map[int32]*partition{},
		vals:            make([]float64, eng.NumValues()),
		cats:            make([]string, len(eng.CatFields())),
		late:            make([]bool, eng.NumViews()),
		ownRow:          make([]bool, eng.NumViews()),
		timersGauge:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "weir_processor_window_timers", Help: "Entities with windows waiting to close or be purged.", ConstLabels: l}),
		stateBytes:      prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_processor_changelog_bytes_total", Help: "Bytes of state written to the changelog (staged: an abort replays them); its rate is the changelog write rate.", ConstLabels: l}),
		storeBytes:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "weir_processor_store_bytes", Help: "Approximate bytes held by the state stores (heap estimate in memory; disk and memtables for pebble).", ConstLabels: l}),
		restoreBytes:    prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_processor_restore_bytes_total", Help: "Changelog bytes read while restoring state.", ConstLabels: l}),
		entities:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "weir_processor_entities", Help: "Entities held in processor state.", ConstLabels: l}),
		restoreRecords:  prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_processor_restore_records_total", Help: "Changelog records read while restoring state.", ConstLabels: l}),
		restoreDuration: prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_processor_restore_seconds_total", Help: "Time spent restoring state from the changelog.", ConstLabels: l}),
		expired:         prometheus.NewCounter(prometheus.CounterOpts{Name: "weir_processor_entities_expired_total", Help: "Entities dropped from state a TTL after their newest event.", ConstLabels: l}),
	}
	for _, v := range cfg.Views {
		t.ttl = max(t.ttl, v.TTL.D().Milliseconds())
	}
	rows := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_processor_rows_total", Help: "Feature rows emitted (staged; a transaction abort replays them).", ConstLabels: l}, []string{"view"})
	corr := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_processor_corrections_total", Help: "Feature rows emitted again with corrected values after a late event (staged).", ConstLabels: l}, []string{"view"})
	late := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "weir_processor_late_total", Help: "Events a view skipped as later than its allowed lateness (events no view took are dead-lettered with reason late).", ConstLabels: l}, []string{"view"})
	for _, v := range cfg.Views {
		t.rowsOut = append(t.rowsOut, rows.WithLabelValues(v.Name))
		t.corrections = append(t.corrections, corr.WithLabelValues(v.Name))
		t.lateSkipped = append(t.lateSkipped, late.WithLabelValues(v.Name))
	}
	t.watermark = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "weir_processor_watermark_seconds", Help: "Greatest committed event time of the source partition (Unix seconds); time() minus it is the watermark delay.", ConstLabels: l}, []string{"partition"})
	// Project each source field once: a field may be aggregated and filtered on.
	pos := func(name string) int {
		if i := slices.Index(t.projFields, name); i >= 0 {
			return i
		}
		t.projFields = append(t.projFields, name)
		return len(t.projFields) - 1
	}
	t.projFields = []string{cfg.Source.Key, cfg.Source.EventTime, cfg.Source.IDField}
	if cfg.Source.Key == cfg.Source.EventTime || cfg.Source.Key == cfg.Source.IDField || cfg.Source.EventTime == cfg.Source.IDField {
		return nil, fmt.Errorf("processors: source %s: key, event_time and id must be three different fields", cfg.Source.Name)
	}
	for _, f := range eng.Fields() {
		t.fieldPos = append(t.fieldPos, pos(f))
	}
	for _, f := range eng.Filters() {
		t.filterPos = append(t.filterPos, pos(f.Field))
	}
	for _, f := range eng.CatFields() {
		t.catPos = append(t.catPos, pos(f))
	}
	for _, r := range cfg.Repartitions {
		if r.Partitions < 1 {
			return nil, fmt.Errorf("processors: repartition to %s: %d partitions", r.Topic, r.Partitions)
		}
		t.repartPos = append(t.repartPos, pos(r.Field))
	}
	for _, e := range cfg.Entities {
		pos := -1
		if e.Key == cfg.Source.Key {
			pos = 0
		}
		for i, r := range cfg.Repartitions {
			if pos < 0 && r.Field == e.Key {
				pos = t.repartPos[i]
			}
		}
		if pos >= 0 {
			t.keys = append(t.keys, EntityKey{Entity: e.Name})
			t.keyPos = append(t.keyPos, pos)
		}
	}
	if _, err := schemas.NewProjector(srcSerde.Schema().Avro, srcSerde.Schema().Avro, t.projFields); err != nil {
		return nil, fmt.Errorf("processors: source %s (schema %s): %w", cfg.Source.Name, srcSerde.Schema().Name, err)
	}
	t.proj = make([]schemas.Value, len(t.projFields))
	t.projection = srcSerde.Projection(t.projFields)
	if eng.NumViews() > 0 && (rowSerde == nil || rowSerde.Schema().Name != schemas.FeatureRowSchema) {
		return nil, fmt.Errorf("processors: feature rows need a serde of the %s schema", schemas.FeatureRowSchema)
	}
	for vi := range eng.NumViews() {
		name, version, feats := eng.View(vi)
		row := &schemas.FeatureRow{View: name, ViewVersion: version, Values: make([]schemas.FeatureValue, len(feats))}
		for fi, fn := range feats {
			row.Values[fi].Name = fn
		}
		t.rows = append(t.rows, row)
		other := *row
		other.Values = slices.Clone(row.Values)
		t.other = append(t.other, &other)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{t.entities, t.expired, t.restoreRecords, t.restoreDuration, rows, t.watermark, corr, late, t.timersGauge, t.stateBytes, t.storeBytes, t.restoreBytes} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("processors: register metrics: %w", err)
			}
		}
	}
	t.emitFn = t.emitRow
	return t, nil
}

// Engine returns the task's engine.
func (t *Task) Engine() *Engine { return t.eng }

// minTime is the earliest event time accepted: 2000-01-01.
var minTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

// Process implements streams.Processor.
func (t *Task) Process(ctx context.Context, rec *kgo.Record, out []*kgo.Record) ([]*kgo.Record, error) {
	if t.broken != nil {
		return out, t.broken
	}
	p := t.parts[rec.Partition]
	if p == nil {
		return out, fmt.Errorf("record of unassigned partition %d", rec.Partition)
	}
	if p.stale {
		var err error
		if p, err = t.reload(ctx, rec.Partition); err != nil {
			return out, streams.Retry(err)
		}
	}
	if len(rec.Key) == 0 {
		return out, streams.Dead(streams.ReasonMissingKey, errors.New("record has no key"))
	}
	if rec.Key[len(rec.Key)-1] <= kindEvent {
		return out, streams.Dead(streams.ReasonMissingKey, fmt.Errorf("entity key %q ends in a control byte, which the changelog's keys reserve", rec.Key))
	}
	vals := t.proj
	if err := t.projection.Project(ctx, rec.Value, vals); err != nil {
		if errors.Is(err, schemas.ErrRegistryUnavailable) {
			return out, streams.Retry(err)
		}
		return out, streams.Dead(streams.ReasonUndecodable, err)
	}
	src := &t.cfg.Source
	if vals[0].Kind != schemas.KindBytes || len(vals[0].Bytes) == 0 {
		return out, streams.Dead(streams.ReasonMissingKey, fmt.Errorf("key field %q is empty or not a string", src.Key))
	}
	if !bytes.Equal(vals[0].Bytes, rec.Key) {
		return out, streams.Dead(streams.ReasonKeyMismatch, fmt.Errorf("record key %q, field %s %q", rec.Key, src.Key, vals[0].Bytes))
	}
	for i, r := range t.cfg.Repartitions {
		if v := vals[t.repartPos[i]]; v.Kind != schemas.KindBytes || len(v.Bytes) == 0 {
			return out, streams.Dead(streams.ReasonMissingKey, fmt.Errorf("entity key field %q is empty or not a string", r.Field))
		}
	}
	if vals[1].Kind != schemas.KindLong {
		return out, streams.Dead(streams.ReasonUndecodable, fmt.Errorf("event time field %q is missing or not a timestamp", src.EventTime))
	}
	ts := vals[1].Long
	if err := t.checkTime(p, ts); err != nil {
		return out, streams.Dead(streams.ReasonAbsurdTime, err)
	}
	nf := len(t.eng.Fields())
	for i, f := range t.eng.Fields() {
		v, ok := vals[t.fieldPos[i]].Float()
		if !ok {
			return out, streams.Dead(streams.ReasonUndecodable, fmt.Errorf("field %q is missing or not a number", f))
		}
		t.vals[i] = v
	}
	for i, f := range t.eng.Filters() {
		pass, err := holds(f, vals[t.filterPos[i]])
		if err != nil {
			return out, streams.Dead(streams.ReasonUndecodable, err)
		}
		t.vals[nf+i] = 0
		if pass {
			t.vals[nf+i] = 1
		}
	}
	for i, f := range t.eng.CatFields() {
		switch v := vals[t.catPos[i]]; v.Kind {
		case schemas.KindBytes:
			t.cats[i] = string(v.Bytes)
		case schemas.KindLong:
			t.cats[i] = strconv.FormatInt(v.Long, 10)
		default:
			return out, streams.Dead(streams.ReasonUndecodable, fmt.Errorf("field %q is missing or not a string", f))
		}
	}
	key := string(rec.Key)
	id := string(vals[2].Bytes)

	st, err := p.stage(key, false)
	if err != nil {
		t.fail(fmt.Errorf("state store: %w", err))
		return out, t.broken
	}
	t.cur, t.curID, t.curKey, t.curEnt, t.curTime, t.curPart, t.curOut = rec, id, rec.Key, key, ts, rec.Partition, out
	clear(t.ownRow)
	st, err = t.eng.Apply(st, Input{Time: ts, Offset: rec.Offset, Vals: t.vals, Cats: t.cats, Watermark: p.wm(t.eng)}, t.emitFn, t.late)
	out, t.curOut = t.curOut, nil
	if err != nil {
		if errors.Is(err, ErrLate) {
			return out, streams.Dead(streams.ReasonLate, err)
		}
		return out, err
	}
	for vi, l := range t.late {
		if l {
			t.lateSkipped[vi].Inc()
		}
	}
	st.sized()
	p.staged[key] = st
	p.stagedWM = max(p.stagedWM, ts)
	p.lastEvent = time.Now()
	if t.eng.HasTimers() {
		p.timers.set(key, t.eng.NextTimer(st))
	}
	for i, r := range t.cfg.Repartitions {
		k := slices.Clone(vals[t.repartPos[i]].Bytes)
		out = append(out, &kgo.Record{Topic: r.Topic, Partition: Partition(k, r.Partitions), Key: k, Value: rec.Value, Headers: rec.Headers})
	}
	if len(t.hooks) == 0 {
		return out, nil
	}
	// The rows are the task's, reused for every event: hooks must not keep
	// them. A view's row is the event's own only if the view emitted one.
	for i, pos := range t.keyPos {
		t.keys[i].Key = vals[pos].Bytes
	}
	// The event is the task's too (it would escape to the heap per event).
	ev := &t.ev
	*ev = Event{Key: key, ID: id, Time: ts, Partition: rec.Partition, Offset: rec.Offset, Rows: t.eventRows(), Keys: t.keys}
	for _, h := range t.hooks {
		if out, err = h(ctx, ev, out); err != nil {
			return out, err
		}
	}
	return out, nil
}

// eventRows are the rows of the views that emitted the event's own row
// (sliding views, and windowed views that emit on update).
func (t *Task) eventRows() []*schemas.FeatureRow {
	all := true
	for _, own := range t.ownRow {
		all = all && own
	}
	if all {
		return t.rows
	}
	var rows []*schemas.FeatureRow
	for vi, own := range t.ownRow {
		if own {
			rows = append(rows, t.rows[vi])
		}
	}
	return rows
}

// emitRow turns an engine row into a feature row record on the current
// record's partition. Rows of timers (no current record) carry no event id.
func (t *Task) emitRow(r *Row) {
	ofEvent := t.cur != nil && r.Offset == t.cur.Offset
	// The event's own row: a sliding row, or a window's update row (not a
	// correction of a later event's row after a late one).
	own := ofEvent && r.Revises < 0 && r.Time == t.curTime
	row := t.other[r.View]
	if own {
		row = t.rows[r.View]
		t.ownRow[r.View] = true
	}
	row.Entity, row.EventTime, row.KnownTime = t.curEnt, r.Time, t.now().UnixMilli()
	row.SourceTopic, row.SourcePartition, row.SourceOffset = t.cfg.Source.Topic, t.curPart, r.Offset
	row.WindowStart, row.WindowEnd, row.RevisesOffset = r.WindowStart, r.WindowEnd, r.Revises
	row.EventID = ""
	if ofEvent {
		row.EventID = t.curID
	}
	for fi := range row.Values {
		v, dst := &r.Values[fi], &row.Values[fi]
		dst.Value = v.Value
		if own { // the hooks read it after the engine reused its buffers
			dst.List, dst.Labels = append(dst.List[:0], v.List...), append(dst.Labels[:0], v.Labels...)
		} else {
			dst.List, dst.Labels = v.List, v.Labels
		}
	}
	t.buf = schemas.AppendFeatureRow(t.rowSerde.AppendHeader(t.buf[:0]), row)
	t.curOut = append(t.curOut, t.arena.record(t.cfg.FeatureTopics[r.View], t.curPart, t.curKey, t.arena.copy(t.buf)))
	t.rowsOut[r.View].Inc()
	if r.Revises >= 0 {
		t.corrections[r.View].Inc()
	}
}

func (t *Task) checkTime(p *partition, ts int64) error {
	src := &t.cfg.Source
	if ts < minTime {
		return fmt.Errorf("event time %s is before 2000", time.UnixMilli(ts).UTC().Format(time.RFC3339))
	}
	if limit := t.now().Add(src.MaxFuture.D()).UnixMilli(); ts > limit {
		return fmt.Errorf("event time %s is more than max_future %s ahead of now", time.UnixMilli(ts).UTC().Format(time.RFC3339), src.MaxFuture.D())
	}
	wm := max(p.watermark, p.stagedWM)
	if wm > 0 && math.Abs(float64(ts-wm)) > float64(src.MaxSkew.D().Milliseconds()) {
		return fmt.Errorf("event time %s is more than max_skew %s from the partition watermark %s", time.UnixMilli(ts).UTC().Format(time.RFC3339), src.MaxSkew.D(), time.UnixMilli(wm).UTC().Format(time.RFC3339))
	}
	return nil
}

// Flush implements streams.Processor: one changelog record per entity
// changed in the transaction, keyed by entity, on the source partition's
// changelog partition.
func (t *Task) Flush(out []*kgo.Record) []*kgo.Record {
	now := time.Now()
	for part, p := range t.parts {
		if p.stale { // nothing staged; its timers wait for its restore
			continue
		}
		if t.eng.HasTimers() {
			out = t.fireTimers(part, p, t.timerWatermark(p, now), out)
		}
		t.expire(p)
		var size int
		for key, st := range p.staged {
			n := len(out)
			var prev *entityState
			if st == nil { // expired: its records are deleted
				var err error
				if prev, _, err = p.store.Get(key); err != nil {
					t.fail(fmt.Errorf("state store: %w", err))
				}
			}
			out = t.eng.appendChangelog(out, &t.arena, t.cfg.ChangelogTopic, part, key, prev, st)
			for _, r := range out[n:] {
				size += len(r.Key) + len(r.Value)
			}
		}
		t.stateBytes.Add(float64(size))
	}
	return out
}

// stage returns the entity's state for this transaction (nil if none or
// expired): its staged state, or its committed state. An on-disk store
// decodes a private copy; the memory store's committed state is changed in
// place unless copy is set, which costs a deep copy but keeps the committed
// state intact if the caller may leave its changes unstaged.
func (p *partition) stage(key string, copy bool) (*entityState, error) {
	if st, ok := p.staged[key]; ok {
		return st, nil
	}
	c, ok, err := p.store.Get(key)
	if err != nil || !ok {
		return nil, err
	}
	switch {
	case p.fresh:
		return c, nil
	case copy:
		return c.clone(), nil
	}
	p.mutated = true
	return c, nil
}

// wm is the partition's watermark as of this transaction: its newest event
// time minus the out-of-orderness; MinInt64 before its first event.
func (p *partition) wm(e *Engine) int64 {
	newest := max(p.watermark, p.stagedWM)
	if newest == 0 {
		return math.MinInt64
	}
	return newest - e.OutOfOrder()
}

// timerWatermark is the watermark windows close at in partition p: its own,
// or, once it has been idle (no events) for the source's idle timeout, at
// least the least watermark of the task's partitions that are not idle, so
// a quiet partition's windows still close.
func (t *Task) timerWatermark(p *partition, now time.Time) int64 {
	wm := p.wm(t.eng)
	idle := t.cfg.Source.IdleTimeout.D()
	if idle <= 0 || now.Sub(p.lastEvent) < idle {
		return wm
	}
	others := int64(math.MaxInt64)
	for _, o := range t.parts {
		if o != p && now.Sub(o.lastEvent) < idle {
			if w := o.wm(t.eng); w != math.MinInt64 {
				others = min(others, w)
			}
		}
	}
	if others == math.MaxInt64 {
		return wm
	}
	return max(wm, others)
}

// fireTimers advances the windows of the partition's entities that are due
// at watermark wm, emitting final rows.
func (t *Task) fireTimers(part int32, p *partition, wm int64, out []*kgo.Record) []*kgo.Record {
	if wm == math.MinInt64 || p.timers.min() > wm {
		return out
	}
	t.cur, t.curPart, t.curOut = nil, part, out
	p.timers.due(wm, func(key string) {
		st, err := p.stage(key, true)
		if err != nil {
			t.fail(fmt.Errorf("state store: %w", err))
		}
		if st == nil {
			p.timers.set(key, math.MaxInt64)
			return
		}
		t.curKey, t.curEnt = []byte(key), key
		next, changed := t.eng.Advance(st, wm, t.emitFn)
		if changed {
			st.sized()
			p.staged[key] = st
		}
		p.timers.set(key, next)
	})
	out, t.curOut = t.curOut, nil
	return out
}

// Due reports whether a partition has windows to close without new input:
// a partition gone idle whose watermark now follows the others'
// (streams.Punctuator).
func (t *Task) Due(now time.Time) bool {
	if !t.eng.HasTimers() {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range t.parts {
		if p.stale {
			continue
		}
		if wm := t.timerWatermark(p, now); wm != math.MinInt64 && p.timers.min() <= wm {
			return true
		}
	}
	return false
}

// sweepEvery is how much the partition watermark advances between sweeps
// for expired entities.
const sweepEvery = time.Minute

// expire stages the removal of entities whose newest event is older than
// the views' TTL behind the partition watermark (event time). An event that
// arrives for such an entity later starts from empty state.
func (t *Task) expire(p *partition) {
	wm := max(p.watermark, p.stagedWM)
	if t.ttl <= 0 || wm-p.swept < sweepEvery.Milliseconds() {
		return
	}
	horizon := wm - t.ttl
	err := p.store.Expired(horizon, func(key string) bool {
		if _, touched := p.staged[key]; !touched {
			p.staged[key] = nil
			if t.eng.HasTimers() {
				p.timers.set(key, math.MaxInt64)
			}
		}
		return true
	})
	if err != nil {
		t.fail(fmt.Errorf("state store: %w", err))
	}
	p.stagedSwept = wm
}

// Commit implements streams.Processor.
func (t *Task) Commit() {
	var n, timers int
	var size int64
	for part, p := range t.parts {
		puts := t.puts[:0]
		for k, st := range p.staged {
			if st == nil {
				puts = append(puts, statestore.Put[*entityState]{Key: k, Delete: true})
				t.expired.Inc()
				continue
			}
			puts = append(puts, statestore.Put[*entityState]{Key: k, State: st, Time: st.expiry()})
		}
		if err := p.store.Apply(puts); err != nil {
			// The transaction committed but the store lost it: stop, so
			// the partition is restored from the changelog.
			t.fail(fmt.Errorf("state store of partition %d: %w", part, err))
		}
		clear(puts)
		t.puts = puts[:0]
		p.mutated = false
		clear(p.staged)
		p.watermark = max(p.watermark, p.stagedWM)
		p.swept = max(p.swept, p.stagedSwept)
		p.timers.commit()
		n += p.store.Len()
		size += p.store.SizeBytes()
		timers += p.timers.len()
	}
	t.timersGauge.Set(float64(timers))
	t.storeBytes.Set(float64(size))
	for part, p := range t.parts {
		t.watermark.WithLabelValues(strconv.Itoa(int(part))).Set(float64(p.watermark) / 1000)
	}
	t.entities.Set(float64(n))
}

// Abort implements streams.Processor.
func (t *Task) Abort() {
	for _, p := range t.parts {
		p.stale = p.stale || p.mutated
		p.mutated = false
		clear(p.staged)
		p.stagedWM = p.watermark
		p.stagedSwept = p.swept
		p.timers.abort()
	}
}

// Revoked implements streams.Processor.
func (t *Task) Revoked(m map[string][]int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, part := range m[t.cfg.Source.Topic] {
		if p := t.parts[part]; p != nil {
			if err := p.store.Close(); err != nil {
				t.log.Warn("close state store", "partition", part, "err", err)
			}
		}
		delete(t.parts, part)
		t.watermark.DeleteLabelValues(strconv.Itoa(int(part)))
	}
}

// Assigned implements streams.Processor: it restores each new partition's
// state from the changelog, reading with read_committed up to the last
// stable offset.
func (t *Task) Assigned(ctx context.Context, m map[string][]int32) error {
	parts := m[t.cfg.Source.Topic]
	if len(parts) == 0 {
		return nil
	}
	_, err := t.load(ctx, parts, "assigned")
	return err
}

// reload restores a stale partition, whose committed state an aborted
// transaction changed in place, from its changelog, and replaces it.
func (t *Task) reload(ctx context.Context, part int32) (*partition, error) {
	restored, err := t.load(ctx, []int32{part}, "aborted transaction")
	if err != nil {
		return nil, fmt.Errorf("reload state of partition %d after an aborted transaction: %w", part, err)
	}
	return restored[part], nil
}

// load restores partitions from the changelog and installs them, closing
// the stores they replace. why says in the log what asked for it.
func (t *Task) load(ctx context.Context, parts []int32, why string) (map[int32]*partition, error) {
	start := time.Now()
	restored, records, err := t.restore(ctx, parts)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	for part, p := range restored {
		if old := t.parts[part]; old != nil {
			if err := old.store.Close(); err != nil {
				t.log.Warn("close state store", "partition", part, "err", err)
			}
		}
		t.parts[part] = p
	}
	t.mu.Unlock()
	t.restoreRecords.Add(float64(records))
	t.restoreDuration.Add(time.Since(start).Seconds())
	t.log.Info("state restored", "source", t.cfg.Source.Name, "partitions", parts, "reason", why, "records", records, "took", time.Since(start).Round(time.Millisecond))
	return restored, nil
}

// settleWait bounds how long a restore waits for transactions open on the
// changelog to finish.
const settleWait = 10 * time.Second

// settledEnds returns the changelog partitions' last stable offsets once no
// transaction is open on them, or after settleWait. A previous owner's last
// transaction is committed to the group's offsets and to the changelog by
// separate markers: the offsets this instance resumes from may already
// include it while its changelog marker is still on the way, and restoring
// only to the stable offset then would miss its state. A transaction still
// open after settleWait belongs to a dead instance and will be aborted.
func (t *Task) settledEnds(ctx context.Context, adm *kadm.Client, parts []int32) (kadm.ListedOffsets, error) {
	deadline := time.Now().Add(settleWait)
	for {
		stable, err := adm.ListCommittedOffsets(ctx, t.cfg.ChangelogTopic)
		if err != nil {
			return nil, fmt.Errorf("restore: list stable offsets of %s: %w", t.cfg.ChangelogTopic, err)
		}
		high, err := adm.ListEndOffsets(ctx, t.cfg.ChangelogTopic)
		if err != nil {
			return nil, fmt.Errorf("restore: list end offsets of %s: %w", t.cfg.ChangelogTopic, err)
		}
		open := 0
		for _, p := range parts {
			s, _ := stable.Lookup(t.cfg.ChangelogTopic, p)
			h, _ := high.Lookup(t.cfg.ChangelogTopic, p)
			if s.Offset < h.Offset {
				open++
			}
		}
		if open == 0 || time.Now().After(deadline) {
			if open > 0 {
				t.log.Warn("restoring to the last stable offset with transactions still open on the changelog (a dead instance's, to be aborted)", "source", t.cfg.Source.Name, "partitions", open)
			}
			return stable, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (t *Task) restore(ctx context.Context, parts []int32) (_ map[int32]*partition, _ int, err error) {
	out := make(map[int32]*partition, len(parts))
	defer func() {
		if err != nil {
			for _, p := range out {
				p.store.Close()
			}
		}
	}()
	for _, p := range parts {
		st, err := t.openStore(p)
		if err != nil {
			return nil, 0, fmt.Errorf("restore: partition %d: %w", p, err)
		}
		out[p] = newPartition(st)
		out[p].fresh = t.cfg.State.Store == config.StorePebble
	}
	cl, err := kgo.NewClient(t.cfg.Opts...)
	if err != nil {
		return nil, 0, fmt.Errorf("restore: client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := t.settledEnds(ctx, adm, parts)
	if err != nil {
		return nil, 0, err
	}
	starts, err := adm.ListStartOffsets(ctx, t.cfg.ChangelogTopic)
	if err != nil {
		return nil, 0, fmt.Errorf("restore: list start offsets of %s: %w", t.cfg.ChangelogTopic, err)
	}
	want := map[int32]int64{} // partition -> stable end offset still to reach
	consume := map[int32]kgo.Offset{}
	for _, p := range parts {
		e, ok := ends.Lookup(t.cfg.ChangelogTopic, p)
		if !ok || e.Err != nil {
			return nil, 0, fmt.Errorf("restore: stable offset of %s/%d: %v", t.cfg.ChangelogTopic, p, e.Err)
		}
		s, _ := starts.Lookup(t.cfg.ChangelogTopic, p)
		if e.Offset > s.Offset {
			want[p] = e.Offset
			consume[p] = kgo.NewOffset().At(s.Offset)
		}
	}
	if len(want) == 0 {
		return out, 0, nil
	}
	rc, err := kgo.NewClient(append(append([]kgo.Opt(nil), t.cfg.Opts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{t.cfg.ChangelogTopic: consume}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
	)...)
	if err != nil {
		return nil, 0, fmt.Errorf("restore: consumer: %w", err)
	}
	defer rc.Close()
	records, size := 0, 0
	restorers := map[int32]recordSink{}
	for _, p := range parts {
		if t.cfg.State.Store == config.StorePebble {
			d, err := t.eng.newDiskRestorer(t.stateDir(), p)
			if err != nil {
				return nil, 0, err
			}
			defer d.close()
			restorers[p] = d
		} else {
			restorers[p] = t.eng.newRestorer()
		}
	}
	lastLog := time.Now()
	for len(want) > 0 {
		fs := rc.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		var ferr error
		fs.EachError(func(tp string, p int32, err error) { ferr = fmt.Errorf("restore: fetch %s/%d: %w", tp, p, err) })
		if ferr != nil {
			return nil, 0, ferr
		}
		var derr error
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if !ok {
				return
			}
			if !r.Attrs.IsControl() { // markers end transactions; nothing to apply
				var v []byte
				if len(r.Value) > 0 {
					v = r.Value
				}
				if err := restorers[r.Partition].apply(r.Key, v); err != nil && derr == nil {
					derr = fmt.Errorf("restore: %s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
				}
				records++
				size += len(r.Key) + len(r.Value)
			}
			if r.Offset >= end-1 {
				delete(want, r.Partition)
			}
		})
		if derr != nil {
			return nil, 0, derr
		}
		if time.Since(lastLog) > 5*time.Second {
			t.log.Info("restoring state", "source", t.cfg.Source.Name, "records", records, "bytes", size, "partitions_left", len(want))
			lastLog = time.Now()
		}
	}
	for part, r := range restorers {
		p := out[part]
		each := func(key string, st *entityState) {
			p.watermark = max(p.watermark, st.maxTime)
			if t.eng.HasTimers() {
				if at := t.eng.NextTimer(st); at != math.MaxInt64 {
					p.timers.set(key, at)
				}
			}
		}
		switch r := r.(type) {
		case *restorer:
			states := r.finish()
			puts := make([]statestore.Put[*entityState], 0, len(states))
			for key, st := range states {
				each(key, st)
				puts = append(puts, statestore.Put[*entityState]{Key: key, State: st, Time: st.expiry()})
			}
			if err := p.store.Apply(puts); err != nil {
				return nil, 0, fmt.Errorf("restore: partition %d: state store: %w", part, err)
			}
		case *diskRestorer:
			if err := r.finish(p.store, each); err != nil {
				return nil, 0, fmt.Errorf("restore: partition %d: %w", part, err)
			}
		}
		p.timers.commit()
	}
	t.restoreBytes.Add(float64(size))
	return out, records, nil
}

func newPartition(st store) *partition {
	return &partition{store: st, staged: map[string]*entityState{}, timers: newTimers(), lastEvent: time.Now()}
}

// recordSink takes the changelog records of a restore.
type recordSink interface {
	apply(key, value []byte) error
}

// fail makes the task stop at the next record: its state can no longer be
// trusted, and a restart restores it from the changelog.
func (t *Task) fail(err error) {
	if t.broken == nil {
		t.broken = err
		t.log.Error("processor state failed; stopping to restore from the changelog", "source", t.cfg.Source.Name, "err", err)
	}
}

// holds evaluates a where-filter on a projected source value.
func holds(f *config.Filter, v schemas.Value) (bool, error) {
	switch want := f.Value.(type) {
	case string:
		if v.Kind != schemas.KindBytes {
			return false, fmt.Errorf("where: field %q is not a string", f.Field)
		}
		eq := string(v.Bytes) == want
		return eq == (f.Op == "=="), nil
	default:
		x, ok := v.Float()
		if !ok {
			return false, fmt.Errorf("where: field %q is not a number", f.Field)
		}
		var c float64
		switch w := want.(type) {
		case int:
			c = float64(w)
		case float64:
			c = w
		}
		switch f.Op {
		case "==":
			return x == c, nil
		case "!=":
			return x != c, nil
		case "<":
			return x < c, nil
		case "<=":
			return x <= c, nil
		case ">":
			return x > c, nil
		case ">=":
			return x >= c, nil
		}
		return false, fmt.Errorf("where: unknown comparison %q", f.Op)
	}
}
