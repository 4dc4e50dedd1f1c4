package statestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testState is the state of the conformance tests.
type testState struct {
	N int64
	S string
}

func (s testState) SizeBytes() int { return 16 + len(s.S) }

// errUndecodable is returned by testCodec for a state whose S is "bad".
var errUndecodable = errors.New("undecodable test state")

type testCodec struct{}

func (testCodec) Append(dst []byte, s testState) []byte {
	return append(binary.AppendVarint(dst, s.N), s.S...)
}

func (testCodec) Decode(b []byte) (testState, error) {
	n, k := binary.Varint(b)
	if k <= 0 {
		return testState{}, errors.New("bad varint")
	}
	if string(b[k:]) == "bad" {
		return testState{}, errUndecodable
	}
	return testState{N: n, S: string(b[k:])}, nil
}

// impl opens the stores of one implementation for the conformance suite.
type impl struct {
	name string
	// open returns an empty store of the partition; all of a test's
	// partitions share one directory.
	open func(t *testing.T, dir string, part int32) Store[testState]
	// codec: the store encodes states (a codec's error surfaces in Get).
	codec bool
}

var impls = []impl{
	{name: "memory", open: func(*testing.T, string, int32) Store[testState] { return NewMemory[testState]() }},
	{name: "pebble", codec: true, open: func(t *testing.T, dir string, part int32) Store[testState] {
		t.Helper()
		s, err := OpenPebble[testState](PebbleConfig{Dir: dir, CacheBytes: 1 << 20, MemTableBytes: 1 << 20}, part, testCodec{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
}

// forEach runs test over every implementation, with a store of partition
// 0 closed at the end.
func forEach(t *testing.T, test func(t *testing.T, s Store[testState])) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			s := im.open(t, t.TempDir(), 0)
			defer func() {
				if err := s.Close(); err != nil {
					t.Error(err)
				}
			}()
			test(t, s)
		})
	}
}

func put(key string, n int64, time int64) Put[testState] {
	return Put[testState]{Key: key, State: testState{N: n, S: "s-" + key}, Time: time}
}

func del(key string) Put[testState] { return Put[testState]{Key: key, Delete: true} }

func apply(t *testing.T, s Store[testState], puts ...Put[testState]) {
	t.Helper()
	if err := s.Apply(puts); err != nil {
		t.Fatal(err)
	}
}

// expired returns the keys Expired reports, sorted.
func expired(t *testing.T, s Store[testState], horizon int64) []string {
	t.Helper()
	var keys []string
	if err := s.Expired(horizon, func(k string) bool { keys = append(keys, k); return true }); err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	return keys
}

// check compares the store with the states it should hold.
func check(t *testing.T, s Store[testState], want map[string]testState) {
	t.Helper()
	if s.Len() != len(want) {
		t.Errorf("Len = %d, want %d", s.Len(), len(want))
	}
	for k, w := range want {
		got, ok, err := s.Get(k)
		if err != nil || !ok || got != w {
			t.Errorf("Get(%q) = %+v, %v, %v; want %+v", k, got, ok, err, w)
		}
	}
}

func TestGetApply(t *testing.T) {
	st := func(key string, n int64) testState { return testState{N: n, S: "s-" + key} }
	cases := []struct {
		name    string
		batches [][]Put[testState]
		want    map[string]testState
		missing []string
	}{
		{name: "empty", missing: []string{"a"}},
		{name: "put", batches: [][]Put[testState]{{put("a", 1, 10), put("b", 2, 10)}},
			want: map[string]testState{"a": st("a", 1), "b": st("b", 2)}, missing: []string{"c"}},
		{name: "overwrite", batches: [][]Put[testState]{{put("a", 1, 10)}, {put("a", 2, 20)}},
			want: map[string]testState{"a": st("a", 2)}},
		{name: "delete", batches: [][]Put[testState]{{put("a", 1, 10), put("b", 2, 10)}, {del("a")}},
			want: map[string]testState{"b": st("b", 2)}, missing: []string{"a"}},
		{name: "delete missing", batches: [][]Put[testState]{{del("a")}, {del("a"), del("b")}}, missing: []string{"a", "b"}},
		{name: "put after delete", batches: [][]Put[testState]{{put("a", 1, 10)}, {del("a")}, {put("a", 3, 30)}},
			want: map[string]testState{"a": st("a", 3)}},
		{name: "last change in a batch wins", batches: [][]Put[testState]{
			{put("a", 1, 10), put("a", 2, 20), del("b"), put("b", 3, 10), del("c"), put("d", 4, 5), del("d")},
			{put("c", 5, 10), del("c"), put("c", 6, 40), put("c", 7, 40)},
		}, want: map[string]testState{"a": st("a", 2), "b": st("b", 3), "c": st("c", 7)}, missing: []string{"d"}},
		{name: "key bytes", batches: [][]Put[testState]{{put("\x00", 1, 10), put("ключ", 2, 10), put("a\xffb", 3, 10)}},
			want: map[string]testState{"\x00": st("\x00", 1), "ключ": st("ключ", 2), "a\xffb": st("a\xffb", 3)}, missing: []string{"a", "\x00\x00"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			forEach(t, func(t *testing.T, s Store[testState]) {
				for _, b := range c.batches {
					apply(t, s, b...)
				}
				check(t, s, c.want)
				for _, k := range c.missing {
					if got, ok, err := s.Get(k); ok || err != nil {
						t.Errorf("Get(%q) = %+v, %v, %v; want none", k, got, ok, err)
					}
				}
			})
		})
	}
}

func TestApplyAtomic(t *testing.T) {
	forEach(t, func(t *testing.T, s Store[testState]) {
		apply(t, s, put("a", 1, 10))
		err := s.Apply([]Put[testState]{put("a", 2, 20), put("b", 1, 10), {Key: "", State: testState{N: 3}, Time: 5}})
		if !errors.Is(err, ErrEmptyKey) {
			t.Fatalf("Apply with an empty key: %v, want ErrEmptyKey", err)
		}
		check(t, s, map[string]testState{"a": {N: 1, S: "s-a"}})
		if got := expired(t, s, 100); !slices.Equal(got, []string{"a"}) {
			t.Errorf("Expired(100) = %q after a failed Apply", got)
		}
		// Every change of a committed batch is visible at once.
		var batch []Put[testState]
		for i := range 1000 {
			batch = append(batch, put(fmt.Sprint("k", i), int64(i), int64(i)))
		}
		apply(t, s, batch...)
		if s.Len() != 1001 {
			t.Errorf("Len = %d, want 1001", s.Len())
		}
	})
}

func TestExpired(t *testing.T) {
	// Times span several of the memory store's time buckets (1<<bucketShift ms).
	const m = 1 << bucketShift
	cases := []struct {
		name    string
		batches [][]Put[testState]
		horizon int64
		want    []string
	}{
		{name: "empty", horizon: 100},
		{name: "before horizon", batches: [][]Put[testState]{{put("a", 1, 10), put("b", 1, 99), put("c", 1, 100), put("d", 1, 5*m)}},
			horizon: 100, want: []string{"a", "b"}},
		{name: "buckets", batches: [][]Put[testState]{{put("a", 1, 0), put("b", 1, m-1), put("c", 1, m), put("d", 1, 3*m+7), put("e", 1, 3*m+8), put("f", 1, 9*m)}},
			horizon: 3*m + 8, want: []string{"a", "b", "c", "d"}},
		{name: "negative times", batches: [][]Put[testState]{{put("a", 1, -5*m), put("b", 1, -1), put("c", 1, 0), put("d", 1, 1)}},
			horizon: 0, want: []string{"a", "b"}},
		{name: "update to newer time", batches: [][]Put[testState]{{put("a", 1, 10), put("b", 1, 20)}, {put("a", 2, 5*m)}},
			horizon: 100, want: []string{"b"}},
		{name: "update within a bucket", batches: [][]Put[testState]{{put("a", 1, 10), put("b", 1, 20)}, {put("a", 2, 150)}},
			horizon: 100, want: []string{"b"}},
		{name: "update to older time", batches: [][]Put[testState]{{put("a", 1, 5*m), put("b", 1, 20)}, {put("a", 2, 10)}},
			horizon: 100, want: []string{"a", "b"}},
		{name: "update in one batch", batches: [][]Put[testState]{{put("a", 1, 10), put("a", 2, 5*m), put("b", 1, 10), put("b", 2, 20)}},
			horizon: 100, want: []string{"b"}},
		{name: "delete", batches: [][]Put[testState]{{put("a", 1, 10), put("b", 1, 20), put("c", 1, 30)}, {del("b")}},
			horizon: 100, want: []string{"a", "c"}},
		{name: "delete then put newer", batches: [][]Put[testState]{{put("a", 1, 10)}, {del("a"), put("a", 2, 5*m)}},
			horizon: 100},
		{name: "every entity moved", batches: [][]Put[testState]{{put("a", 1, 10), put("b", 1, 20), put("c", 1, 30)}, {put("b", 1, 9*m), put("a", 1, 9*m), put("c", 1, 9*m)}},
			horizon: 9 * m, want: nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			forEach(t, func(t *testing.T, s Store[testState]) {
				for _, b := range c.batches {
					apply(t, s, b...)
				}
				if got := expired(t, s, c.horizon); !slices.Equal(got, c.want) {
					t.Errorf("Expired(%d) = %q, want %q", c.horizon, got, c.want)
				}
				// Again: Expired itself changes nothing.
				if got := expired(t, s, c.horizon); !slices.Equal(got, c.want) {
					t.Errorf("second Expired(%d) = %q, want %q", c.horizon, got, c.want)
				}
			})
		})
	}
}

func TestExpiredStops(t *testing.T) {
	forEach(t, func(t *testing.T, s Store[testState]) {
		for i := range 10 {
			apply(t, s, put(fmt.Sprint("k", i), 1, int64(i)<<bucketShift))
		}
		calls := 0
		if err := s.Expired(1<<62, func(key string) bool {
			calls++
			// fn may read the store.
			if _, ok, err := s.Get(key); !ok || err != nil {
				t.Errorf("Get(%q) in Expired: %v, %v", key, ok, err)
			}
			return calls < 3
		}); err != nil {
			t.Fatal(err)
		}
		if calls != 3 {
			t.Errorf("fn called %d times after returning false at 3", calls)
		}
	})
}

// TestModel applies random batches and compares the store with a map after
// each: states, Len, and Expired at random horizons.
func TestModel(t *testing.T) {
	forEach(t, func(t *testing.T, s Store[testState]) {
		rng := rand.New(rand.NewPCG(1, 2))
		type entry struct {
			st   testState
			time int64
		}
		model := map[string]entry{}
		for range 300 {
			batch := make([]Put[testState], rng.IntN(40))
			for i := range batch {
				key := fmt.Sprint("card-", rng.IntN(200))
				if rng.IntN(5) == 0 {
					batch[i] = del(key)
					delete(model, key)
					continue
				}
				tm := rng.Int64N(40 << bucketShift)
				batch[i] = Put[testState]{Key: key, State: testState{N: rng.Int64(), S: key}, Time: tm}
				model[key] = entry{batch[i].State, tm}
			}
			apply(t, s, batch...)
			want := map[string]testState{}
			for k, e := range model {
				want[k] = e.st
			}
			check(t, s, want)
			h := rng.Int64N(42 << bucketShift)
			var wantExp []string
			for k, e := range model {
				if e.time < h {
					wantExp = append(wantExp, k)
				}
			}
			slices.Sort(wantExp)
			if got := expired(t, s, h); !slices.Equal(got, wantExp) {
				t.Fatalf("Expired(%d) = %q, want %q", h, got, wantExp)
			}
		}
	})
}

func TestLargeBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 changes")
	}
	forEach(t, func(t *testing.T, s Store[testState]) {
		const n = 100_000
		batch := make([]Put[testState], n)
		for i := range batch {
			batch[i] = put(fmt.Sprintf("card-%010d", i), int64(i), int64(i))
		}
		apply(t, s, batch...)
		if s.Len() != n {
			t.Errorf("Len = %d, want %d", s.Len(), n)
		}
		for _, i := range []int{0, n / 2, n - 1} {
			k := fmt.Sprintf("card-%010d", i)
			if got, ok, err := s.Get(k); err != nil || !ok || got.N != int64(i) {
				t.Errorf("Get(%q) = %+v, %v, %v", k, got, ok, err)
			}
		}
		count := 0
		if err := s.Expired(n/4, func(string) bool { count++; return true }); err != nil {
			t.Fatal(err)
		}
		if count != n/4 {
			t.Errorf("Expired(%d) reported %d keys, want %d", n/4, count, n/4)
		}
		if s.SizeBytes() <= 0 {
			t.Errorf("SizeBytes = %d with %d entities", s.SizeBytes(), n)
		}
	})
}

func TestSizeBytes(t *testing.T) {
	forEach(t, func(t *testing.T, s Store[testState]) {
		empty := s.SizeBytes()
		var batch []Put[testState]
		for i := range 2000 {
			batch = append(batch, put(fmt.Sprint("k", i), int64(i), int64(i)))
		}
		apply(t, s, batch...)
		if full := s.SizeBytes(); full < empty+2000*8 {
			t.Errorf("SizeBytes = %d with 2000 entities, %d empty", full, empty)
		}
	})
}

// TestPartitions uses the stores of several partitions at once, with the
// same keys in each.
func TestPartitions(t *testing.T) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) {
			dir := t.TempDir()
			const parts = 4
			var wg sync.WaitGroup
			errs := make(chan error, parts)
			for p := range int32(parts) {
				s := im.open(t, dir, p)
				wg.Go(func() {
					defer func() {
						if err := s.Close(); err != nil {
							errs <- err
						}
					}()
					for i := range 200 {
						k := fmt.Sprint("card-", i%50)
						if err := s.Apply([]Put[testState]{{Key: k, State: testState{N: int64(p), S: k}, Time: int64(i)}}); err != nil {
							errs <- err
							return
						}
						got, ok, err := s.Get(k)
						if err != nil || !ok || got.N != int64(p) {
							errs <- fmt.Errorf("partition %d: Get(%q) = %+v, %v, %v", p, k, got, ok, err)
							return
						}
					}
					if s.Len() != 50 {
						errs <- fmt.Errorf("partition %d: Len = %d, want 50", p, s.Len())
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
		})
	}
}
