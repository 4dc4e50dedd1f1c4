// Package featurestore holds what the feature store's parts share: the Row an
// online or offline store returns for one entity's feature view, and the
// order that says which of an entity's rows is the newest. The parts live in
// subpackages:
//
//   - online: Redis, newest row per entity and view version (newest by
//     Compare), TTL per view;
//   - offline: ClickHouse history, one table per view version, the labels
//     table, point-in-time training sets;
//   - materialize: consumer-group materializers from weir.features.<view>
//     and the labels topic into those stores (at-least-once into idempotent
//     sinks), and Rebuild, which refills Redis from the feature topics;
//   - verify: checks that Redis holds the newest ClickHouse row of sampled
//     entities;
//   - trainingset: point-in-time training sets from a spine (CSV, Parquet
//     or ClickHouse) to Parquet, CSV or ClickHouse, as of event time or as
//     known at a time or an offset vector;
//   - serve and client: the HTTP/JSON serving API and its Go client;
//   - backfill: a new view version's history from a replay of the source
//     topic, handed over to the live stream at an offset vector.
//
// # Versions and corrections
//
// A processor emits a row for an event (sliding views) or a window
// (tumbling, hopping, session), and emits it again, corrected, when a late
// event within the view's lateness changes it. A correction has the event
// time of the row it corrects, its own source offset (the late event's: the
// cause) and names in revises_offset the source offset of the version it
// replaces. So several rows of one entity may share an event time: the
// versions of one row, the rows of events with equal times, the rows of
// overlapping hopping windows. Both stores order them the same way, by
// Compare: event time, then the revised offset (revises_offset for a
// correction, the row's own offset for a first version), then the source
// offset, then the window start. The newest row is the greatest; a
// point-in-time read at t takes the greatest with event time at or before t
// (and, as known at k, known time at or before k). That makes a correction
// beat the version it replaces, and the row of a later event at the same
// time beat every version of an earlier event's row.
//
// This package exports no metrics.
package featurestore

import (
	"cmp"

	"github.com/weirhq/weir/schemas"
)

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
	// Partition and Offset locate the source event the row derives from:
	// for a correction, the late event that caused it.
	Partition int32
	Offset    int64
	// Revises is -1 for a first version; for a correction, the source
	// offset of the version it replaces.
	Revises int64
	// WindowStart and WindowEnd bound a tumbling, hopping or session row's
	// window, [start, end) in Unix ms; both 0 for sliding rows.
	WindowStart, WindowEnd int64
	// Values maps feature name to value.
	Values map[string]float64
	// Lists holds last_n features' values (newest first) and Labels top_k
	// features' categories (most frequent first). Only the offline store
	// keeps them; the online store returns them nil.
	Lists  map[string][]float64
	Labels map[string][]string
}

// Rank is what Compare orders rows by.
type Rank struct {
	EventTime   int64
	Revised     int64 // revises_offset for a correction, else the source offset
	Offset      int64 // source offset
	WindowStart int64
}

// RankOf returns a feature row's rank.
func RankOf(r *schemas.FeatureRow) Rank {
	return Rank{EventTime: r.EventTime, Revised: Revised(r.SourceOffset, r.RevisesOffset), Offset: r.SourceOffset, WindowStart: r.WindowStart}
}

// Revised is the offset a row's versions share: revises for a correction
// (revises >= 0), the row's own offset for a first version.
func Revised(offset, revises int64) int64 {
	if revises >= 0 {
		return revises
	}
	return offset
}

// Compare orders two ranks of one entity's rows: negative when a is older
// than b, 0 when they are the same version of the same row (a duplicate),
// positive when a is newer.
func Compare(a, b Rank) int {
	if c := cmp.Compare(a.EventTime, b.EventTime); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Revised, b.Revised); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Offset, b.Offset); c != 0 {
		return c
	}
	return cmp.Compare(a.WindowStart, b.WindowStart)
}
