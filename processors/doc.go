// Package processors computes feature views from a source topic, exactly
// once, in event time.
//
// Views come in four kinds (config.View.Kind):
//
//   - sliding: each feature aggregates its own window (t-window, t] ending
//     at every event; one row per event. Exact at both ends and O(1)
//     amortized per event and feature: running accumulators over the
//     entity's retained events, added at the head and removed at the tail
//     (see sliding.go).
//   - tumbling and hopping: one row per entity and window [start, end),
//     windows aligned to multiples of the hop (a tumbling window's hop is
//     its length).
//   - session: one row per entity and session [first event, last event +
//     gap); sessions that an event bridges merge.
//
// Windowed views emit on update (a row as of every event, the window's
// running value), on close (one final row as of the window's last instant
// when the partition watermark passes its end) or both.
//
// Time: a partition's watermark is its newest event time minus the source's
// out_of_order. An event behind the watermark by more than a view's allowed
// lateness is too late for it; one too late for every view is dead-lettered
// with reason "late". An event within the lateness corrects what it changes,
// and the corrected rows are emitted as new versions that name, in
// revises_offset, the source offset of the version they replace: for
// sliding views, the rows of the entity's later events; for windowed views,
// the closed window's final row. A partition with no events for the source's
// idle_timeout closes its windows at the least watermark of the task's busy
// partitions, through streams.Punctuator, so a quiet partition does not hold
// its windows open.
//
// Aggregations: count, sum, mean, min, max, variance, stddev, last,
// last_n, distinct, top_k, quantile (DDSketch), ratio of two features, and
// time_since_last, each optionally over the events a where-filter holds for
// (processors/agg holds the sketches).
//
// The output is one FeatureRow per row, written in the same Kafka
// transaction as the state changelog and the consumer offsets (see
// streams.Loop), so it is exactly once. State is per entity (the sliding
// views' retained events, the windowed views' open windows with their
// accumulators), staged per transaction (Commit makes it permanent, Abort
// drops it) and restored on partition assignment from the compacted
// changelog topic, read with read_committed up to its last stable offset.
// The memory store's states are changed in place by events, not copied
// per transaction: an abort after such a change marks the partition
// stale, and its next event first restores it from the changelog (aborts
// are rare: a failed produce or commit, a retriable error). The on-disk
// store decodes a private copy of each state it reads.
// The changelog record format is in docs/format/changelog.md. An entity is
// forgotten (a changelog tombstone) once its newest event is older than the
// longest view TTL behind its partition's watermark and it has no open
// window; an event that arrives for it after that starts from empty state.
//
// Bad input is returned as *streams.DeadLetter (undecodable, missing key, key
// mismatch, absurd timestamp, late) and dead-lettered by the loop.
//
// Metrics:
//
//	weir_processor_entities{source}              entities held in state
//	weir_processor_entities_expired_total{source} entities dropped a TTL after their newest event
//	weir_processor_rows_total{source,view}       feature rows emitted
//	weir_processor_corrections_total{source,view} rows emitted again after a late event
//	weir_processor_late_total{source,view}       events a view skipped as too late
//	weir_processor_window_timers{source}         entities with windows waiting to close
//	weir_processor_watermark_seconds{source,partition} greatest committed event time
//	weir_processor_changelog_bytes_total{source} state bytes written to the changelog
//	weir_processor_restore_records_total{source} changelog records restored
//	weir_processor_restore_bytes_total{source}   changelog bytes restored
//	weir_processor_restore_seconds_total{source} time spent restoring
package processors
