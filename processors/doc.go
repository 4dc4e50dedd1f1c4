// Package processors computes feature views from a source topic: for every
// source event, each view's features are aggregations over sliding event-time
// windows (t-window, t] ending at that event, over the entity's events
// processed so far in its partition. The result is one FeatureRow per event
// per view, written in the same Kafka transaction as the state changelog and
// the consumer offsets (see streams.Loop), so the output is exactly once.
//
// State is per entity: the entity's events within the longest window plus the
// source's allowed lateness. It is staged per transaction (Commit makes it
// permanent, Abort drops it) and restored on partition assignment from the
// compacted changelog topic, read with read_committed up to its last stable
// offset. The changelog record format is in docs/format/changelog.md. An
// entity is forgotten (a changelog tombstone) once its newest event is older
// than the longest view TTL behind its partition's watermark; an event that
// arrives for it after that starts from empty state.
//
// Bad input is returned as *streams.DeadLetter (undecodable, missing key, key
// mismatch, absurd timestamp, late) and dead-lettered by the loop.
//
// Metrics:
//
//	weir_processor_entities{source}              entities held in state
//	weir_processor_entities_expired_total{source} entities dropped a TTL after their newest event
//	weir_processor_rows_total{source,view}       feature rows emitted
//	weir_processor_watermark_seconds{source,partition} greatest committed event time
//	weir_processor_restore_records_total{source} changelog records restored
//	weir_processor_restore_seconds_total{source} time spent restoring
package processors
