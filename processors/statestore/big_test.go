package statestore

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The big runs measure what a partition's state costs at scale; they run
// only with WEIR_STATESTORE_BIG=1:
//
//	WEIR_STATESTORE_BIG=1 go test -run TestBigPebble -v -timeout 2h ./processors/statestore
//	WEIR_STATESTORE_BIG=1 go test -run TestBigMemory -v ./processors/statestore
//
// WEIR_STATESTORE_N sets the number of entities (10,000,000 for Pebble,
// 1,000,000 for memory), WEIR_STATESTORE_STATE_BYTES the encoded state of
// each (600: three sliding windows of partial aggregates) and
// WEIR_STATESTORE_DIR where Pebble writes (a temporary directory).

func bigEnv(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

func skipUnlessBig(t *testing.T) {
	if os.Getenv("WEIR_STATESTORE_BIG") != "1" {
		t.Skip("set WEIR_STATESTORE_BIG=1 to run")
	}
}

const (
	bigBatch   = 10_000
	bigGets    = 1_000_000
	bigUpdates = 100_000
	bigTxn     = 1000 // updates per Apply, a transaction's worth
	bigBase    = int64(1_767_225_600_000)
	bigSpan    = int64(30 * 24 * time.Hour / time.Millisecond)
)

func bigKey(dst []byte, i int) []byte {
	return fmt.Appendf(dst, "card-%010d", i)
}

// fillState writes a plausible encoded state for entity id: accumulators of
// amounts in cents, counts and timestamps, which compress about as much as
// real windows (their low bytes are noise).
func fillState(dst []byte, id int, version uint64) {
	rng := rand.New(rand.NewPCG(uint64(id), version))
	for i := 0; i+8 <= len(dst); i += 8 {
		var w uint64
		switch i / 8 % 4 {
		case 0: // a sum of amounts
			w = math.Float64bits(float64(rng.IntN(10_000_000)) / 100)
		case 1: // a count
			w = uint64(rng.IntN(500))
		case 2: // an event time
			w = uint64(bigBase + rng.Int64N(bigSpan))
		case 3: // a min or max amount
			w = math.Float64bits(float64(rng.IntN(100_000)) / 100)
		}
		binary.LittleEndian.PutUint64(dst[i:], w)
	}
}

// procStatus returns a /proc/self/status field in bytes.
func procStatus(t *testing.T, field string) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

func duBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err == nil {
			n += info.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func heapBytes() (alloc, sys uint64) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc, m.Sys
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// quantiles returns p50, p99 and p99.9 of ds, sorting it.
func quantiles(ds []time.Duration) (p50, p99, p999 time.Duration) {
	slices.Sort(ds)
	at := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
	return at(0.5), at(0.99), at(0.999)
}

// bigRun loads n entities in a random order in batches of bigBatch, then
// reads bigGets random ones and updates bigUpdates in transactions of
// bigTxn, each read first as a task does. It returns what it measured.
func bigRun[S any](t *testing.T, s Store[S], n, stateBytes int, mk func(id int, state []byte) S, check func(S) bool) {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 7))
	order := make([]int32, n)
	for i := range order {
		order[i] = int32(i)
	}
	rng.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })

	arena := make([]byte, bigBatch*stateBytes)
	batch := make([]Put[S], 0, bigBatch)
	var keyBuf []byte
	var applies []time.Duration
	start := time.Now()
	for i, id := range order {
		st := arena[len(batch)*stateBytes : (len(batch)+1)*stateBytes]
		fillState(st, int(id), 0)
		keyBuf = bigKey(keyBuf[:0], int(id))
		batch = append(batch, Put[S]{Key: string(keyBuf), State: mk(int(id), st), Time: bigBase + int64(id)*bigSpan/int64(n)})
		if len(batch) == bigBatch || i == n-1 {
			t0 := time.Now()
			if err := s.Apply(batch); err != nil {
				t.Fatal(err)
			}
			applies = append(applies, time.Since(t0))
			batch = batch[:0]
		}
		if (i+1)%(n/10) == 0 {
			t.Logf("loaded %d in %s, size %s, RSS %s", i+1, time.Since(start).Round(time.Second), mib(s.SizeBytes()), mib(procStatus(t, "VmRSS")))
		}
	}
	load := time.Since(start)
	p50, p99, _ := quantiles(applies)
	t.Logf("LOAD: %d entities of %d bytes in %s: %.0f entities/s (%.1f MB/s of state); Apply of %d: p50 %s, p99 %s, max %s",
		n, stateBytes, load.Round(time.Millisecond), float64(n)/load.Seconds(), float64(n*stateBytes)/1e6/load.Seconds(),
		bigBatch, p50.Round(time.Microsecond), p99.Round(time.Microsecond), applies[len(applies)-1].Round(time.Microsecond))
	if s.Len() != n {
		t.Fatalf("Len = %d, want %d", s.Len(), n)
	}
	order = nil
	arena = nil

	gets := make([]time.Duration, bigGets)
	start = time.Now()
	for i := range gets {
		keyBuf = bigKey(keyBuf[:0], rng.IntN(n))
		k := string(keyBuf)
		t0 := time.Now()
		st, ok, err := s.Get(k)
		gets[i] = time.Since(t0)
		if err != nil || !ok || !check(st) {
			t.Fatalf("Get(%q): %v, %v", k, ok, err)
		}
	}
	el := time.Since(start)
	g50, g99, g999 := quantiles(gets)
	t.Logf("GET: %d random in %s: %.0f/s; p50 %s, p99 %s, p99.9 %s, max %s",
		bigGets, el.Round(time.Millisecond), float64(bigGets)/el.Seconds(), g50, g99, g999, gets[len(gets)-1])
	gets = nil

	state := make([]byte, stateBytes*bigTxn)
	txns := make([]time.Duration, 0, bigUpdates/bigTxn)
	batch = make([]Put[S], 0, bigTxn)
	start = time.Now()
	for i := range bigUpdates {
		id := rng.IntN(n)
		keyBuf = bigKey(keyBuf[:0], id)
		k := string(keyBuf)
		if len(batch) == 0 {
			txns = append(txns, 0)
		}
		t0 := time.Now()
		if _, _, err := s.Get(k); err != nil {
			t.Fatal(err)
		}
		st := state[len(batch)*stateBytes : (len(batch)+1)*stateBytes]
		fillState(st, id, 1)
		batch = append(batch, Put[S]{Key: k, State: mk(id, st), Time: bigBase + bigSpan + int64(i)})
		if len(batch) == bigTxn {
			if err := s.Apply(batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
		txns[len(txns)-1] += time.Since(t0)
	}
	el = time.Since(start)
	u50, u99, _ := quantiles(txns)
	t.Logf("UPDATE: %d read-modify-writes in transactions of %d in %s: %.0f/s; a transaction (%d Gets and one Apply): p50 %s, p99 %s, max %s",
		bigUpdates, bigTxn, el.Round(time.Millisecond), float64(bigUpdates)/el.Seconds(), bigTxn, u50.Round(time.Microsecond), u99.Round(time.Microsecond), txns[len(txns)-1].Round(time.Microsecond))

	// A TTL sweep: the entities of the oldest day, less the updated ones.
	start = time.Now()
	exp := 0
	if err := s.Expired(bigBase+bigSpan/30, func(string) bool { exp++; return true }); err != nil {
		t.Fatal(err)
	}
	t.Logf("EXPIRED: %d keys before the first day's end in %s", exp, time.Since(start).Round(time.Millisecond))
	if exp < n/30-bigUpdates || exp > n/30+1 {
		t.Errorf("Expired reported %d keys, want about %d", exp, n/30)
	}
}

func TestBigPebble(t *testing.T) {
	skipUnlessBig(t)
	n := bigEnv(t, "WEIR_STATESTORE_N", 10_000_000)
	stateBytes := bigEnv(t, "WEIR_STATESTORE_STATE_BYTES", 600)
	dir := os.Getenv("WEIR_STATESTORE_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	s, err := OpenPebble[[]byte](PebbleConfig{Dir: dir}, 0, bytesCodec{})
	if err != nil {
		t.Fatal(err)
	}
	// The states are copied into Pebble's batch: mk may reuse the arena.
	bigRun(t, s, n, stateBytes, func(_ int, st []byte) []byte { return st },
		func(st []byte) bool { return len(st) == stateBytes })

	alloc, sys := heapBytes()
	pdir := filepath.Join(dir, "partition-0")
	t.Logf("MEMORY: peak RSS (VmHWM) %s, RSS now %s, Go heap %s (runtime total %s)",
		mib(procStatus(t, "VmHWM")), mib(procStatus(t, "VmRSS")), mib(int64(alloc)), mib(int64(sys)))
	t.Logf("DISK: SizeBytes %s, files %s (%.0f bytes per entity; %d raw state bytes)",
		mib(s.SizeBytes()), mib(duBytes(t, pdir)), float64(duBytes(t, pdir))/float64(n), stateBytes)
	t.Logf("PEBBLE:\n%s", s.(*pebbleStore[[]byte]).db.Metrics().String())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pdir); !os.IsNotExist(err) {
		t.Errorf("Close left %s", pdir)
	}
}

// bigState is the memory store's state: a pointer, as the engine's is.
type bigState struct{ b []byte }

func TestBigMemory(t *testing.T) {
	skipUnlessBig(t)
	n := bigEnv(t, "WEIR_STATESTORE_N", 1_000_000)
	stateBytes := bigEnv(t, "WEIR_STATESTORE_STATE_BYTES", 600)

	// The keys and states first, to tell the store's own heap from theirs.
	base, _ := heapBytes()
	keys := make([]string, n)
	states := make([]*bigState, n)
	var kb []byte
	for i := range keys {
		kb = bigKey(kb[:0], i)
		keys[i] = string(kb)
		states[i] = &bigState{b: make([]byte, stateBytes)}
	}
	data, _ := heapBytes()
	s := NewMemory[*bigState]()
	batch := make([]Put[*bigState], 0, bigBatch)
	for i := range keys {
		batch = append(batch, Put[*bigState]{Key: keys[i], State: states[i], Time: bigBase + int64(i)*bigSpan/int64(n)})
		if len(batch) == bigBatch {
			if err := s.Apply(batch); err != nil {
				t.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := s.Apply(batch); err != nil {
		t.Fatal(err)
	}
	full, _ := heapBytes()
	keyState := int64(data-base) - int64(n)*(16+8) // less the slices keys and states
	t.Logf("MEMORY STORE: %d entities; keys and states %s (%.0f B each); the store's map and time index %s: %.1f B per entity; SizeBytes estimates the index at %d B per entity",
		n, mib(keyState), float64(keyState)/float64(n), mib(int64(full-data)), float64(full-data)/float64(n), s.(*memory[*bigState]).perEntry)
	runtime.KeepAlive(keys)
	runtime.KeepAlive(states)

	// Timings, with states copied as the Pebble run has them.
	bigRun(t, NewMemory[*bigState](), n, stateBytes, func(_ int, st []byte) *bigState { return &bigState{b: slices.Clone(st)} },
		func(st *bigState) bool { return len(st.b) == stateBytes })
	t.Logf("MEMORY: peak RSS (VmHWM) %s", mib(procStatus(t, "VmHWM")))
}
