// Package streams is Weir's Kafka plumbing on franz-go: client options from
// config (seeds, SASL), topic provisioning with kadm, the
// consume-process-produce loop that every stage runs in, the dead-letter
// catalogue and writer, and the embedded broker (kfake persisted to disk)
// that `weir dev` runs.
//
// The loop has two modes (kafka.guarantee, LoopConfig.AtLeastOnce):
//
//   - exactly_once (the default): each batch's outputs, changelog, dead
//     letters and consumer offsets commit in one Kafka transaction
//     (kgo.GroupTransactSession). Every input record is reflected exactly
//     once in what read_committed consumers see and in restored state;
//     outputs become visible at the commit.
//   - at_least_once: no transactions. Each batch's output is produced
//     idempotently, the loop waits until every record of it is
//     acknowledged, then commits the batch's offsets. Every input has its
//     outputs at least once: a failure or restart between the produce and
//     the offset commit writes that batch's outputs (and changelog records)
//     again, and state restored from the changelog may then count those
//     records twice. Outputs are visible as soon as they are acknowledged,
//     and there are no transaction markers or fencing round trips.
//
// Both modes gather a batch the same way (kafka.commit_interval, at most
// MaxBatch records), block rebalances until the batch has ended, and treat
// dead letters, retries and punctuation alike.
//
// Metrics (registered on the Registerer passed in, never globally):
//
//	weir_stream_records_in_total{stage}        records consumed
//	weir_stream_records_out_total{stage}       records produced (committed)
//	weir_stream_deadletter_total{stage,reason} records dead-lettered
//	weir_stream_txn_commit_seconds{stage}      transaction commit latency; at least once, the time to
//	                                           flush a batch's output and commit its offsets
//	weir_stream_txn_aborted_total{stage}       aborted transactions (at least once, batches rewound)
//	weir_stream_session_restarts_total{stage}  sessions restarted after an error
//	weir_stream_consumer_lag{stage,topic,partition} records behind the high watermark, as of the last fetch
package streams
