// Package featurestore holds what the feature store's parts share: the Row an
// online or offline store returns for one entity's feature view. The parts
// live in subpackages:
//
//   - online: Redis, newest row per entity and view version, newer-wins by
//     (event time, source offset), TTL per view;
//   - offline: ClickHouse history, one table per view version, the labels
//     table, point-in-time training sets;
//   - materialize: consumer-group materializers from weir.features.<view>
//     and the labels topic into those stores (at-least-once into idempotent
//     sinks).
//
// This package exports no metrics.
package featurestore

// Row is one version of one entity's feature view values as a store holds
// it. Online and offline stores return the same type so that a consistency
// check can compare them field by field.
type Row struct {
	Entity  string
	View    string
	Version string
	// EventTime is when the values hold, KnownTime when the processor
	// emitted them (Unix milliseconds).
	EventTime int64
	KnownTime int64
	// Partition and Offset locate the source event the row derives from.
	Partition int32
	Offset    int64
	// Values maps feature name to value.
	Values map[string]float64
}
