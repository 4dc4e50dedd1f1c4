// Package storetest holds the conformance cases every feature store passes,
// online and offline: which of an entity's rows is the newest when
// corrections, rows of equal event times and windows of one instant meet
// replays, duplicates and any order of arrival. Each store's tests write the
// cases and check the row it returns; the expected rows are written out by
// hand, not computed by featurestore.Compare.
package storetest

import "github.com/weirhq/weir/schemas"

// Case is one entity's history.
type Case struct {
	Name string
	// Batches are written in order, one Write each.
	Batches [][]schemas.FeatureRow
	// Newest is the x of the row the store must return as the entity's
	// newest.
	Newest float64
	// KnownAt maps a cut-off (known time, Unix ms) to the x of the newest
	// row known by then, for stores that read as known at.
	KnownAt map[int64]float64
}

// Row is entity's row of view "card" version "v1" at event time et, from
// source offset off, revising rev (-1: a first version), in window [ws, we)
// (0, 0: a sliding row), known at kt, with features x and y = -x. Cases give
// every distinct row its own x.
func Row(entity string, et, off, rev, ws, we, kt int64, x float64) schemas.FeatureRow {
	return schemas.FeatureRow{
		Entity: entity, View: "card", ViewVersion: "v1", EventTime: et, KnownTime: kt,
		SourceTopic: "tx", SourcePartition: 3, SourceOffset: off, EventID: "ev",
		Values:      []schemas.FeatureValue{{Name: "x", Value: x}, {Name: "y", Value: -x}},
		WindowStart: ws, WindowEnd: we, RevisesOffset: rev,
	}
}

func first(et, off, kt int64, x float64) schemas.FeatureRow { return Row("", et, off, -1, 0, 0, kt, x) }

func fix(et, off, rev, kt int64, x float64) schemas.FeatureRow {
	return Row("", et, off, rev, 0, 0, kt, x)
}

func win(et, off, rev, ws, we, kt int64, x float64) schemas.FeatureRow {
	return Row("", et, off, rev, ws, we, kt, x)
}

func b(rows ...schemas.FeatureRow) []schemas.FeatureRow { return rows }

// Cases returns the conformance cases, their rows' Entity set to entity
// (name) for each case name, so that cases can share a store.
func Cases(entity func(caseName string) string) []Case {
	cs := []Case{
		{Name: "newer event time wins", Batches: [][]schemas.FeatureRow{b(first(10, 1, 100, 1)), b(first(20, 2, 101, 2))}, Newest: 2,
			KnownAt: map[int64]float64{100: 1, 101: 2}},
		{Name: "older event time never regresses", Batches: [][]schemas.FeatureRow{b(first(20, 2, 100, 2)), b(first(10, 9, 101, 1))}, Newest: 2,
			KnownAt: map[int64]float64{101: 2}},
		{Name: "equal event time, higher offset wins", Batches: [][]schemas.FeatureRow{b(first(10, 1, 100, 1), first(10, 2, 100, 2))}, Newest: 2},
		{Name: "replayed batch", Batches: [][]schemas.FeatureRow{b(first(10, 1, 100, 1), first(20, 2, 101, 2)), b(first(10, 1, 100, 1), first(20, 2, 101, 2))}, Newest: 2},
		// A late event at 15 (offset 3) corrects the row of the event at
		// 20 (offset 2): the correction has the event's time, the late
		// event's offset and revises the event's.
		{Name: "correction of the latest row wins", Batches: [][]schemas.FeatureRow{
			b(first(10, 1, 100, 1), first(20, 2, 101, 2)),
			b(first(15, 3, 200, 3), fix(20, 3, 2, 200, 4)),
		}, Newest: 4, KnownAt: map[int64]float64{101: 2, 199: 2, 200: 4}},
		{Name: "correction before the row it corrects", Batches: [][]schemas.FeatureRow{
			b(fix(20, 3, 2, 200, 4), first(15, 3, 200, 3)), b(first(20, 2, 101, 2), first(10, 1, 100, 1)),
		}, Newest: 4, KnownAt: map[int64]float64{150: 2}},
		{Name: "correction of an older row never regresses", Batches: [][]schemas.FeatureRow{
			b(first(10, 1, 100, 1), first(20, 2, 101, 2)), b(fix(10, 5, 1, 200, 3)),
		}, Newest: 2},
		{Name: "second correction wins", Batches: [][]schemas.FeatureRow{
			b(first(20, 1, 100, 1)), b(fix(20, 2, 1, 200, 2)), b(fix(20, 3, 1, 300, 3)), b(fix(20, 2, 1, 200, 2)),
		}, Newest: 3, KnownAt: map[int64]float64{100: 1, 250: 2, 300: 3}},
		// Two events at 20 (offsets 1 and 2), then a late event (offset
		// 3) corrects both rows: the same event time and offset, told
		// apart by the offset they revise. The later event's row is the
		// newest, in every version.
		{Name: "corrections of rows with equal event times", Batches: [][]schemas.FeatureRow{
			b(first(20, 1, 100, 1), first(20, 2, 100, 2)), b(first(10, 3, 200, 3), fix(20, 3, 1, 200, 4), fix(20, 3, 2, 200, 5)),
		}, Newest: 5, KnownAt: map[int64]float64{100: 2}},
		{Name: "corrections of rows with equal event times, reversed", Batches: [][]schemas.FeatureRow{
			b(fix(20, 3, 2, 200, 5)), b(fix(20, 3, 1, 200, 4)), b(first(20, 2, 100, 2), first(20, 1, 100, 1)),
		}, Newest: 5},
		{Name: "correction of an earlier twin loses to the later twin", Batches: [][]schemas.FeatureRow{
			b(first(20, 1, 100, 1), first(20, 2, 100, 2)), b(fix(20, 3, 1, 200, 4)),
		}, Newest: 2},
		// A window [0, 60)'s final row as of 59, corrected twice: each
		// correction revises the previous final row.
		{Name: "window final row corrected twice", Batches: [][]schemas.FeatureRow{
			b(win(59, 5, -1, 0, 60, 100, 1)), b(win(59, 7, 5, 0, 60, 200, 2)), b(win(59, 9, 7, 0, 60, 300, 3)),
		}, Newest: 3, KnownAt: map[int64]float64{100: 1, 200: 2, 299: 2, 300: 3}},
		{Name: "window corrections out of order", Batches: [][]schemas.FeatureRow{
			b(win(59, 9, 7, 0, 60, 300, 3), win(59, 5, -1, 0, 60, 100, 1)), b(win(59, 7, 5, 0, 60, 200, 2)),
		}, Newest: 3},
		{Name: "next window's row wins over a correction of the last", Batches: [][]schemas.FeatureRow{
			b(win(59, 5, -1, 0, 60, 100, 1), win(119, 8, -1, 60, 120, 150, 2)), b(win(59, 9, 5, 0, 60, 200, 3)),
		}, Newest: 2},
		// An event's update rows of overlapping hopping windows share its
		// time and offset: the window that started last wins.
		{Name: "hopping windows at one instant", Batches: [][]schemas.FeatureRow{
			b(win(30, 4, -1, 0, 60, 100, 1), win(30, 4, -1, 20, 80, 100, 3), win(30, 4, -1, 10, 70, 100, 2)),
		}, Newest: 3},
		// A late event bridges two sessions: the merged session's final
		// row (a new window, starting earlier) supersedes the later
		// session's.
		{Name: "merged session supersedes", Batches: [][]schemas.FeatureRow{
			b(win(99, 8, -1, 50, 100, 100, 1)), b(win(99, 9, -1, 10, 100, 200, 2)),
		}, Newest: 2},
	}
	for i := range cs {
		e := entity(cs[i].Name)
		for _, bt := range cs[i].Batches {
			for j := range bt {
				bt[j].Entity = e
			}
		}
	}
	return cs
}
