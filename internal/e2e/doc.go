// Package e2e holds Weir's end-to-end tests on real services; it has no
// non-test code.
//
//   - TestEndToEnd: the whole loop (a seeded payments stream through
//     processor, scorer, materializers, monitor, retrain policy and
//     trainer) on real Apache Kafka and on the embedded broker, with real
//     Redis and ClickHouse, checked against a batch recomputation from the
//     raw topic.
//   - TestCorrections: a late event within allowed lateness corrects the
//     rows after it, in Redis and in ClickHouse, and reads as known before
//     the correction still return the originals.
//   - TestLaneView: a view computed by `weir backfill`'s lane while the
//     processor skips it, under one weir.yaml: one row per event, no gap,
//     no overlap, sums equal to a recomputation.
//   - TestHotSwapUnderLoad: the champion moved about ten times a second
//     (registry.Promote and Rollback, as `weir models promote|rollback`)
//     under loadgen traffic: one served prediction per transaction, and
//     each names the version that scored it.
package e2e
