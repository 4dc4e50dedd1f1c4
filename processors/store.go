package processors

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"unsafe"

	"github.com/cockroachdb/pebble/v2"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/processors/statestore"
)

// store is the committed state of one partition's entities.
type store = statestore.Store[*entityState]

// stateCodec encodes whole entity states for the on-disk store.
type stateCodec struct{ e *Engine }

func (c stateCodec) Append(dst []byte, s *entityState) []byte { return c.e.appendState(dst, s) }
func (c stateCodec) Decode(b []byte) (*entityState, error)    { return c.e.decodeState(b) }

// SizeBytes estimates the heap the state holds (statestore.Sizer): the
// cached size, if known.
func (s *entityState) SizeBytes() int {
	if s.size > 0 {
		return int(s.size)
	}
	return s.measure()
}

// sized refreshes the cached size.
func (s *entityState) sized() {
	s.size = int32(min(s.measure(), math.MaxInt32))
}

// measure estimates the heap the state holds, in O(windows).
func (s *entityState) measure() int {
	n := 64
	if sl := s.slide; sl != nil {
		n += 96 + cap(sl.events)*int(unsafe.Sizeof(pastEvent{}))
		if len(sl.events) > 0 { // every event has as many values and categories
			ev := &sl.events[0]
			if x := ev.x; x != nil {
				n += len(sl.events) * (48 + 8*len(x.more) + 32*len(x.cats))
			}
		}
		for _, w := range sl.wins {
			n += 40 + len(w.acc)*128
			for _, a := range w.acc {
				n += 8 * (cap(a.mins) + cap(a.maxs) + cap(a.last))
			}
		}
	}
	for _, ws := range s.wins {
		for _, w := range ws {
			n += 64 + len(w.acc)*160
		}
	}
	return n
}

// expiry is the time the store's TTL index files the entity under: its
// newest event, or never while it has windows open.
func (s *entityState) expiry() int64 {
	if s.openWindows() {
		return math.MaxInt64
	}
	return s.maxTime
}

// openStore opens partition part's store of the kind the config names.
func (t *Task) openStore(part int32) (store, error) {
	if t.cfg.State.Store != config.StorePebble {
		return statestore.NewMemory[*entityState](), nil
	}
	return statestore.OpenPebble[*entityState](t.pebbleConfig(), part, stateCodec{t.eng})
}

func (t *Task) pebbleConfig() statestore.PebbleConfig {
	return statestore.PebbleConfig{Dir: t.stateDir(), CacheBytes: int64(t.cfg.State.CacheMB) << 20, Logger: t.log}
}

// stateDir is the source's directory of on-disk stores.
func (t *Task) stateDir() string {
	return filepath.Join(t.cfg.State.Dir, t.cfg.ChangelogTopic)
}

// diskRestorer restores partitions into on-disk stores without holding
// their state in memory: it first mirrors the changelog's newest record per
// key into a scratch Pebble database, keyed so that an entity's records are
// adjacent, then builds one entity at a time from it.
type diskRestorer struct {
	e     *Engine
	dir   string
	db    *pebble.DB
	batch *pebble.Batch
}

func (e *Engine) newDiskRestorer(dir string, part int32) (*diskRestorer, error) {
	dir = filepath.Join(dir, "restore-"+strconv.Itoa(int(part)))
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("restore: clear %s: %w", dir, err)
	}
	db, err := pebble.Open(dir, &pebble.Options{DisableWAL: true, Logger: quietPebble{}})
	if err != nil {
		return nil, fmt.Errorf("restore: open scratch pebble in %s: %w", dir, err)
	}
	return &diskRestorer{e: e, dir: dir, db: db, batch: db.NewBatch()}, nil
}

// mirrorKey is the changelog key with its entity length-prefixed, so an
// entity's records sort together and apart from any other's.
func mirrorKey(key []byte) []byte {
	name, suffix := splitChangelogKey(key)
	k := binary.AppendUvarint(make([]byte, 0, len(key)+2), uint64(len(name)))
	k = append(k, name...)
	return append(k, suffix...)
}

// splitChangelogKey splits a changelog key into the entity and the suffix
// of its kind (none for a version 2 or 3 record).
func splitChangelogKey(key []byte) (name, suffix []byte) {
	switch {
	case len(key) >= 9 && key[len(key)-1] == kindEvent:
		return key[:len(key)-9], key[len(key)-9:]
	case len(key) >= 1 && key[len(key)-1] == kindHead:
		return key[:len(key)-1], key[len(key)-1:]
	}
	return key, nil
}

func (d *diskRestorer) apply(key, value []byte) error {
	var err error
	if value == nil {
		err = d.batch.Delete(mirrorKey(key), nil)
	} else {
		err = d.batch.Set(mirrorKey(key), value, nil)
	}
	if err != nil {
		return fmt.Errorf("restore: scratch write: %w", err)
	}
	if d.batch.Len() > 16<<20 {
		if err := d.batch.Commit(pebble.NoSync); err != nil {
			return fmt.Errorf("restore: scratch commit: %w", err)
		}
		d.batch = d.db.NewBatch()
	}
	return nil
}

// finish builds every entity from the mirror into st, calling each for
// every state put, and removes the scratch database.
func (d *diskRestorer) finish(st store, each func(string, *entityState)) error {
	defer d.close()
	if err := d.batch.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("restore: scratch commit: %w", err)
	}
	it, err := d.db.NewIter(nil)
	if err != nil {
		return fmt.Errorf("restore: scratch read: %w", err)
	}
	defer it.Close()
	var (
		puts    []statestore.Put[*entityState]
		current []byte
		r       *restorer
	)
	flushEntity := func() {
		for name, s := range r.finish() {
			each(name, s)
			puts = append(puts, statestore.Put[*entityState]{Key: name, State: s, Time: s.expiry()})
		}
	}
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		n, w := binary.Uvarint(k)
		if w <= 0 || int(n) > len(k)-w {
			return fmt.Errorf("%w: scratch key", errCorruptState)
		}
		name := k[w : w+int(n)]
		if r == nil || string(name) != string(current) {
			if r != nil {
				flushEntity()
			}
			current = append(current[:0], name...)
			r = d.e.newRestorer()
		}
		orig := append(append([]byte(nil), name...), k[w+int(n):]...)
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("restore: scratch read: %w", err)
		}
		if err := r.apply(orig, append([]byte(nil), v...)); err != nil {
			return err
		}
		if len(puts) >= 10_000 {
			if err := st.Apply(puts); err != nil {
				return fmt.Errorf("restore: store: %w", err)
			}
			puts = puts[:0]
		}
	}
	if r != nil {
		flushEntity()
	}
	if err := st.Apply(puts); err != nil {
		return fmt.Errorf("restore: store: %w", err)
	}
	return nil
}

func (d *diskRestorer) close() {
	if d.db != nil {
		d.db.Close()
		d.db = nil
	}
	os.RemoveAll(d.dir)
}

// quietPebble drops the scratch database's log lines.
type quietPebble struct{}

func (quietPebble) Infof(string, ...any)  {}
func (quietPebble) Errorf(string, ...any) {}
func (quietPebble) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf(format, args...))
}
