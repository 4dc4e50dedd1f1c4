// Package trainingset builds point-in-time training sets: it reads a spine
// (entity keys, a timestamp and labels, from a CSV or Parquet file or a
// ClickHouse table) in chunks, joins every chunk with the requested
// feature view versions of the offline store (offline.Join: for each view,
// the entity's newest feature row at or before the row's timestamp less
// the view's availability delay, within the view's TTL, among the rows the
// cut-off keeps, else null) and writes the spine's columns followed by one
// nullable Float64 column per feature, <view>__<feature>, to Parquet, CSV or
// a ClickHouse table, in the spine's order.
//
// # Cut-offs
//
// By default a training set is "as of event time": every row the store
// holds counts, so late corrections already stored are seen. "As known at"
// a time keeps the feature rows emitted by then (known_time_ms), and "as
// known at" a Kafka offset vector keeps the rows derived from source records
// before the vector (offline.OffsetVector defines it). Under a cut-off that
// is behind the materializers, rebuilding a training set later gives the
// same rows, and so the same bytes.
//
// # Description
//
// Every output carries its Description: the spine's source (with the file's
// SHA-256), views and versions, TTLs, delays, cut-offs, the SQL templates,
// the row count and a content hash of the rows (hash.go defines it; the same
// rows give the same hash in every output format). Parquet stores it as the
// key-value metadata "weir.training_set", CSV in a sidecar <path>.json, a
// ClickHouse table as a row of <database>.training_sets.
//
// # Memory
//
// The spine is read ChunkRows rows at a time (default 262,144). Two chunks
// are in flight: one is written while the next is read and joined, so
// memory is two chunks' spine values, keys and features plus what the
// output buffers (Parquet: one row group of 131,072 rows). A spine sorted by time makes the
// chunks' event-time ranges disjoint, so each view's rows are read about
// once; an unsorted spine reads the rows of each chunk's range per chunk.
//
// This package exports no metrics; progress goes to an optional callback.
package trainingset
