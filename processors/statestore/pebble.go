package statestore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

// Defaults of PebbleConfig.
const (
	DefaultCacheBytes    = 64 << 20
	DefaultMemTableBytes = 16 << 20
)

// PebbleConfig configures the on-disk stores. Zero values take the
// defaults.
type PebbleConfig struct {
	// Dir holds one directory per partition, partition-<n>, deleted when
	// the partition's store opens and closes.
	Dir string `yaml:"dir"`
	// CacheBytes is the block cache of each partition's store (default
	// 64 MiB).
	CacheBytes int64 `yaml:"cache_bytes"`
	// MemTableBytes is the size of each partition's memtable (default
	// 16 MiB); up to two may be held while one is flushed.
	MemTableBytes int64 `yaml:"memtable_bytes"`
	// Logger receives Pebble's own log lines; nil discards them.
	Logger *slog.Logger `yaml:"-"`
}

// maxMemTableBytes is Pebble's limit on MemTableSize.
const maxMemTableBytes = 4<<30 - 1

// Validate reports the first invalid field.
func (c *PebbleConfig) Validate() error {
	switch {
	case c.Dir == "":
		return errors.New("statestore: pebble: dir: empty")
	case c.CacheBytes < 0:
		return fmt.Errorf("statestore: pebble: cache_bytes: %d is negative", c.CacheBytes)
	case c.MemTableBytes < 0:
		return fmt.Errorf("statestore: pebble: memtable_bytes: %d is negative", c.MemTableBytes)
	case c.MemTableBytes > maxMemTableBytes:
		return fmt.Errorf("statestore: pebble: memtable_bytes: %d is over Pebble's limit of 4 GiB", c.MemTableBytes)
	}
	return nil
}

// withDefaults returns c with the zero fields set to their defaults.
func (c PebbleConfig) withDefaults() PebbleConfig {
	if c.CacheBytes == 0 {
		c.CacheBytes = DefaultCacheBytes
	}
	if c.MemTableBytes == 0 {
		c.MemTableBytes = DefaultMemTableBytes
	}
	return c
}

// Keys of the Pebble store. An entity's state is under prefixState + key,
// its value the entity's time (8 bytes) then the encoded state. The time
// index has an empty value under prefixTime + time + key, the time
// big-endian with its sign bit flipped so that keys sort by time.
const (
	prefixState = 's'
	prefixTime  = 't'
	timeLen     = 8
)

// pebbleStore is the Pebble Store of one partition.
type pebbleStore[S any] struct {
	db     *pebble.DB
	dir    string
	part   int32
	codec  Codec[S]
	n      atomic.Int64
	closed atomic.Bool
	// Buffers reused by Get, Apply and Expired.
	key, val []byte
	// known holds the time of the keys read by Get since the last Apply
	// (a task reads every entity it changes), then of the keys an Apply
	// has changed so far: Apply reads the DB only for the others to find
	// the time index entry it replaces.
	known map[string]knownTime
}

// knownTime is a key's time, or that it has no state.
type knownTime struct {
	time   int64
	exists bool
}

// maxKnown bounds the times Get remembers between two Applys.
const maxKnown = 1 << 16

var _ Store[int] = (*pebbleStore[int])(nil)

// OpenPebble opens an empty store for a partition in the directory
// cfg.Dir/partition-<partition>, deleting whatever was there.
func OpenPebble[S any](cfg PebbleConfig, partition int32, codec Codec[S]) (Store[S], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if partition < 0 {
		return nil, fmt.Errorf("statestore: pebble: partition %d is negative", partition)
	}
	cfg = cfg.withDefaults()
	dir := filepath.Join(cfg.Dir, "partition-"+strconv.Itoa(int(partition)))
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("statestore: partition %d: clear %s: %w", partition, dir, err)
	}
	cache := pebble.NewCache(cfg.CacheBytes)
	defer cache.Unref() // the DB holds its own reference
	opts := &pebble.Options{
		Cache:              cache,
		MemTableSize:       uint64(cfg.MemTableBytes),
		DisableWAL:         true, // the changelog topic is the source of truth
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{log: cfg.Logger, part: partition},
	}
	for i := range opts.Levels {
		// Get reads one key: a bloom filter skips the tables without it.
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("statestore: partition %d: open pebble in %s: %w", partition, dir, err)
	}
	return &pebbleStore[S]{db: db, dir: dir, part: partition, codec: codec, known: map[string]knownTime{}}, nil
}

func appendStateKey(dst []byte, key string) []byte {
	return append(append(dst, prefixState), key...)
}

func appendTimeKey(dst []byte, t int64, key string) []byte {
	dst = binary.BigEndian.AppendUint64(append(dst, prefixTime), uint64(t)^1<<63)
	return append(dst, key...)
}

func (s *pebbleStore[S]) Get(key string) (S, bool, error) {
	var zero S
	s.key = appendStateKey(s.key[:0], key)
	v, closer, err := s.db.Get(s.key)
	if errors.Is(err, pebble.ErrNotFound) {
		s.remember(key, knownTime{})
		return zero, false, nil
	}
	if err != nil {
		return zero, false, fmt.Errorf("statestore: partition %d: get %q: %w", s.part, key, err)
	}
	// Decode straight from Pebble's buffer, valid until closer.Close.
	var st S
	if len(v) < timeLen {
		err = fmt.Errorf("value of %d bytes is shorter than its time", len(v))
	} else {
		s.remember(key, knownTime{time: int64(binary.BigEndian.Uint64(v)), exists: true})
		st, err = s.codec.Decode(v[timeLen:])
	}
	closer.Close()
	if err != nil {
		return zero, false, fmt.Errorf("statestore: partition %d: decode %q: %w", s.part, key, err)
	}
	return st, true, nil
}

func (s *pebbleStore[S]) remember(key string, t knownTime) {
	if len(s.known) >= maxKnown {
		clear(s.known)
	}
	s.known[key] = t
}

// time returns the time stored with key: known, or read with it, an
// iterator over the DB as it was when the Apply began.
func (s *pebbleStore[S]) time(it **pebble.Iterator, key string) (int64, bool, error) {
	if k, ok := s.known[key]; ok {
		return k.time, k.exists, nil
	}
	if *it == nil {
		// Most keys looked up here are new (a restore): unlike Get, a
		// prefix seek may use the bloom filters of the last level, where
		// most tables are, and skips their data blocks.
		var err error
		if *it, err = s.db.NewIter(&pebble.IterOptions{UseL6Filters: true}); err != nil {
			return 0, false, err
		}
	}
	s.key = appendStateKey(s.key[:0], key)
	if !(*it).SeekPrefixGE(s.key) {
		return 0, false, (*it).Error()
	}
	v, err := (*it).ValueAndErr()
	if err != nil {
		return 0, false, err
	}
	if len(v) < timeLen {
		return 0, false, fmt.Errorf("value of %d bytes is shorter than its time", len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), true, nil
}

func (s *pebbleStore[S]) Apply(puts []Put[S]) error {
	if err := checkKeys(puts); err != nil {
		return err
	}
	// One batch, committed without sync: the changes appear at once.
	b := s.db.NewBatch()
	defer b.Close()
	// Whether Apply commits or fails, what Get learned is stale after it.
	defer clear(s.known)
	var it *pebble.Iterator
	defer func() {
		if it != nil {
			it.Close()
		}
	}()
	var dn int64
	for i := range puts {
		p := &puts[i]
		old, exists, err := s.time(&it, p.Key)
		if err != nil {
			return fmt.Errorf("statestore: partition %d: apply: read %q: %w", s.part, p.Key, err)
		}
		s.key = appendStateKey(s.key[:0], p.Key)
		if p.Delete {
			if !exists {
				continue
			}
			if err := b.Delete(s.key, nil); err != nil {
				return fmt.Errorf("statestore: partition %d: apply: %w", s.part, err)
			}
			if err := s.unindex(b, old, p.Key); err != nil {
				return err
			}
			s.known[p.Key] = knownTime{} // for a second change in the batch
			dn--
			continue
		}
		s.val = binary.BigEndian.AppendUint64(s.val[:0], uint64(p.Time))
		s.val = s.codec.Append(s.val, p.State)
		if err := b.Set(s.key, s.val, nil); err != nil {
			return fmt.Errorf("statestore: partition %d: apply: %w", s.part, err)
		}
		if !exists || old != p.Time {
			if exists {
				if err := s.unindex(b, old, p.Key); err != nil {
					return err
				}
			}
			s.key = appendTimeKey(s.key[:0], p.Time, p.Key)
			if err := b.Set(s.key, nil, nil); err != nil {
				return fmt.Errorf("statestore: partition %d: apply: %w", s.part, err)
			}
		}
		if !exists {
			dn++
		}
		s.known[p.Key] = knownTime{time: p.Time, exists: true}
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("statestore: partition %d: apply %d changes: %w", s.part, len(puts), err)
	}
	s.n.Add(dn)
	return nil
}

func (s *pebbleStore[S]) unindex(b *pebble.Batch, t int64, key string) error {
	s.key = appendTimeKey(s.key[:0], t, key)
	if err := b.Delete(s.key, nil); err != nil {
		return fmt.Errorf("statestore: partition %d: apply: %w", s.part, err)
	}
	return nil
}

func (s *pebbleStore[S]) Expired(horizon int64, fn func(key string) bool) error {
	upper := appendTimeKey(nil, horizon, "")
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixTime}, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("statestore: partition %d: expired: %w", s.part, err)
	}
	for valid := it.First(); valid; valid = it.Next() {
		if k := it.Key(); len(k) > 1+timeLen && !fn(string(k[1+timeLen:])) {
			break
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("statestore: partition %d: expired: %w", s.part, err)
	}
	return nil
}

func (s *pebbleStore[S]) Len() int { return int(s.n.Load()) }

func (s *pebbleStore[S]) SizeBytes() int64 {
	if s.closed.Load() {
		return 0
	}
	m := s.db.Metrics()
	return int64(m.DiskSpaceUsage() + m.MemTable.Size)
}

func (s *pebbleStore[S]) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	err := s.db.Close()
	s.n.Store(0)
	if rerr := os.RemoveAll(s.dir); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("statestore: partition %d: close: %w", s.part, err)
	}
	return nil
}

// pebbleLogger writes Pebble's log lines to slog; nil discards them.
type pebbleLogger struct {
	log  *slog.Logger
	part int32
}

func (l pebbleLogger) Infof(format string, args ...any) {
	if l.log != nil {
		l.log.Info(fmt.Sprintf(format, args...), "component", "pebble", "partition", l.part)
	}
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	if l.log != nil {
		l.log.Error(fmt.Sprintf(format, args...), "component", "pebble", "partition", l.part)
	}
}

// Fatalf is called on corruption or a broken invariant, which Pebble does
// not survive.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if l.log != nil {
		l.log.Error(msg, "component", "pebble", "partition", l.part)
	}
	panic("statestore: pebble: " + msg)
}
