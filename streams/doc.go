// Package streams is Weir's Kafka plumbing on franz-go: client options from
// config (seeds, SASL), topic provisioning with kadm, the transactional
// consume-process-produce loop that every exactly-once stage runs in, the
// dead-letter catalogue and writer, and the embedded broker (kfake persisted
// to disk) that `weir dev` runs.
//
// Metrics (registered on the Registerer passed in, never globally):
//
//	weir_stream_records_in_total{stage}        records consumed
//	weir_stream_records_out_total{stage}       records produced (committed)
//	weir_stream_deadletter_total{stage,reason} records dead-lettered
//	weir_stream_txn_commit_seconds{stage}      transaction commit latency
//	weir_stream_txn_aborted_total{stage}       aborted transactions
//	weir_stream_session_restarts_total{stage}  transactional sessions restarted after an error
//	weir_stream_consumer_lag{stage,topic,partition} records behind the high watermark, as of the last fetch
package streams
