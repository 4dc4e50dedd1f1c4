// Package backfill computes the history of a new or changed view version
// from raw history and hands over to the live stream with no gap and no
// overlap (`weir backfill`).
//
// # Source of history
//
// A Kafka replay of the view's source topic from a time. Weir keeps no raw
// events in ClickHouse (the offline store holds feature rows and labels
// only), so the topic's retention bounds how far back a backfill reaches.
// The start time is Kafka's record timestamp (the producer's CreateTime or
// the broker's LogAppendTime), not the event time: each source partition
// starts at its first offset whose timestamp is at or after it.
//
// # The lane
//
// A backfill runs the new version in a lane of its own, named after the view
// and version: consumer group <client_id>.backfill.<view>.<version>,
// compacted changelog <changelog topic of the source>.backfill.<view>.<version>,
// transactional id <group>.<instance>, two materializer groups
// <group>.online and <group>.offline, and its own dead-letter topic
// <dead-letter topic>.backfill.<view>.<version> (the processor has
// dead-lettered the same bad records already). The lane runs no scorer. The lane is the processor's own code,
// streams.Loop over a processors.Task holding only that view, so each source
// record's feature rows, the lane's state changelog and its consumer offset
// commit in one Kafka transaction: every source record from the start on is
// processed exactly once, in partition order, with the view's state carried
// across transactions, restarts and runs by the lane's changelog. The rows
// go to the view's features topic (view_version = the new version), the
// lane's materializers write them into ClickHouse (the version's own table,
// idempotent by rank) and Redis (the version's own keys, through the ordered
// write: a row older than the stored one is dropped). Nothing the running
// processor, its materializers or the serving API use is touched: the
// current version keeps being computed and served as before.
//
// On a lane's first run its group's offsets are set to the start vector S
// (the offsets at Config.From) and its materializers' groups to the
// features topic's end offsets (the lane has written nothing before). A
// later run finds the group's offsets and continues from them; From is
// then ignored.
//
// # Cut-over and handover
//
// A run captures the cut-over C, the source's last stable offsets, when it
// starts. It returns once the lane's committed offsets have reached C on
// every partition (or only transaction markers and aborted records lie
// between) and both materializers have written every row the lane had
// committed by then. It stops the lane at its committed offsets H (at or
// past C: live records that arrived meanwhile are processed too) and
// reports them as the handover vector. The next run, or Config.Follow
// (which does not stop the lane, so the lane becomes the version's live
// processor), continues at exactly H with the state restored from the lane's
// changelog. [S, H) and [H, ...) partition the source: no record is left out
// and none is processed twice, and a row is the one a processor that had
// read the source from S would have written. An interrupted run (ctx ended)
// reports its handover vector the same way and returns ctx's error. Under
// kafka.guarantee: at_least_once the lane runs that mode of the loop and
// inherits its duplicates after a failure.
//
// The lane owns the version: the source's main processor must not compute
// it too, or the version gets two writers whose rows differ where the main
// processor's state for the view began later. Mark the view `lane: true`
// in weir.yaml (config.View.Lane): the source's processor then skips it, and
// every role, the lane with Follow included, runs with the one weir.yaml
// (a materializer of the new version writes the lane's rows again, which is
// idempotent; the inline scorer reads the view from Redis). Or run the
// main processor with the definition it had. Before the lane starts, a run reads the last GuardTail
// records of each features-topic partition and refuses, naming the view,
// when one is a row of the version for a source offset the lane has not
// processed: someone else computes the version. Folding a lane's state
// into the main processor (so it computes the version again) is not built:
// the lane stays the version's processor.
//
// Rows of events within a window's length after the replay start see only
// the replayed events: start a window (plus the view's lateness) before the
// first row that must be complete.
//
// # Progress and metrics
//
// Progress is logged every Config.Progress: source offsets done of those
// up to the cut-over and, once the lane is at the cut-over, the rows each
// materializer has left to write. The lane
// registers the loop's, the task's and the materializers' metrics on
// Config.Metrics (streams.Loop, processors and materialize list them; the
// materializers are named backfill.online.<view> and backfill.offline.<view>).
// This package exports no metrics of its own.
package backfill
