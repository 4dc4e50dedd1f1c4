package offline

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// fakeRows is a rowSource over rows of (entity, event time, one value).
type fakeRows struct {
	rows []fakeRow
	i    int
}

type fakeRow struct {
	entity string
	et     int64
	v      float64
}

func (f *fakeRows) Next() bool { f.i++; return f.i <= len(f.rows) }
func (f *fakeRows) Err() error { return nil }
func (f *fakeRows) Scan(dest ...any) error {
	r := f.rows[f.i-1]
	*dest[0].(*string), *dest[1].(*int64), *dest[2].(*float64) = r.entity, r.et, r.v
	return nil
}

// TestMerge checks the sorted merge against a scan of every row for every
// key: the last row of the key's entity at or before T - delay, within the
// TTL; ties of event time are taken in row order (the query's rank order).
func TestMerge(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 200 {
		ents := []string{"a", "b", "c", "d"}[:1+rng.IntN(4)]
		var rows []fakeRow
		for i := range rng.IntN(40) {
			rows = append(rows, fakeRow{ents[rng.IntN(len(ents))], int64(rng.IntN(50)), float64(i)})
		}
		slices.SortStableFunc(rows, func(a, b fakeRow) int {
			return cmp.Or(cmp.Compare(a.entity, b.entity), cmp.Compare(a.et, b.et))
		})
		var keys []Key
		for i := range rng.IntN(40) {
			keys = append(keys, Key{Entity: []string{"a", "b", "c", "d", "e"}[rng.IntN(5)], T: int64(rng.IntN(60)), Row: i})
		}
		slices.SortFunc(keys, func(a, b Key) int {
			return cmp.Or(cmp.Compare(a.Entity, b.Entity), cmp.Compare(a.T, b.T), cmp.Compare(a.Row, b.Row))
		})
		delay, ttl := int64(rng.IntN(5)), int64(rng.IntN(20))
		vals := make([]float64, len(keys))
		found := make([]bool, len(keys))
		if err := merge(&fakeRows{rows: rows}, keys, delay, ttl, [][]float64{vals}, found); err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			want, ok := 0.0, false
			for _, r := range rows {
				if r.entity == k.Entity && r.et <= k.T-delay && k.T-r.et <= ttl {
					want, ok = r.v, true
				} else if r.entity == k.Entity && r.et <= k.T-delay {
					ok = false // a newer row too old for the TTL cannot exist: rows are sorted
				}
			}
			if found[k.Row] != ok || ok && vals[k.Row] != want {
				t.Fatalf("trial %d, key %+v (delay %d, ttl %d): got %v %v, want %v %v\nrows %v", trial, k, delay, ttl, vals[k.Row], found[k.Row], want, ok, rows)
			}
		}
	}
}

func TestMergeRejectsUnsortedRows(t *testing.T) {
	rows := &fakeRows{rows: []fakeRow{{"b", 1, 0}, {"a", 2, 0}}}
	err := merge(rows, []Key{{Entity: "b", T: 5}}, 0, 10, [][]float64{make([]float64, 1)}, make([]bool, 1))
	if err == nil || !strings.Contains(err.Error(), "not in (entity, event time) order") {
		t.Fatalf("err = %v", err)
	}
}

func TestOffsetVector(t *testing.T) {
	ov := OffsetVector{{Partition: 0, Offset: 10}, {Topic: "x", Partition: 0, Offset: 3}, {Partition: 1, Offset: 5}}
	if err := ov.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		topic  string
		p      int32
		off    int64
		known  bool
		reason string
	}{
		{"y", 0, 9, true, "every topic's entry"},
		{"y", 0, 10, false, "the vector's offset is the next to read"},
		{"x", 0, 2, true, "the topic's own entry"},
		{"x", 0, 3, false, "the topic's entry wins over every topic's"},
		{"x", 1, 4, true, "no entry of its own: every topic's"},
		{"y", 2, 0, false, "a partition without an entry knows nothing"},
	} {
		if got := ov.Known(c.topic, c.p, c.off); got != c.known {
			t.Errorf("Known(%s, %d, %d) = %v: %s", c.topic, c.p, c.off, got, c.reason)
		}
	}
	sql := ov.sql()
	if want := "source_offset < multiIf(source_topic = 'x' AND source_partition = 0, 3, source_partition = 0, 10, source_partition = 1, 5, 0)"; sql != want {
		t.Errorf("sql:\n%s\nwant\n%s", sql, want)
	}
	if got := (OffsetVector{}).sql(); got != "source_offset < 0" {
		t.Errorf("empty vector: %s", got)
	}
	for _, bad := range []OffsetVector{
		{{Topic: "a'b", Partition: 0, Offset: 1}},
		{{Partition: 0, Offset: -1}},
		{{Partition: 0, Offset: 1}, {Partition: 0, Offset: 2}},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%v: valid", bad)
		}
	}
}

func TestPartitionFilter(t *testing.T) {
	for _, c := range []struct {
		lo, hi int64
		want   string
	}{
		{1_500, 9_999, " AND event_time >= toDateTime(1) AND event_time <= toDateTime(9)"},
		{-5, 10, ""},
		{10, 5, ""},
	} {
		if got := partitionFilter(c.lo, c.hi); got != c.want {
			t.Errorf("partitionFilter(%d, %d) = %q, want %q", c.lo, c.hi, got, c.want)
		}
	}
}
