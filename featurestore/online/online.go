// Package online is the Redis online store: for every entity and feature view
// version it keeps the newest feature row, newest by featurestore.Compare,
// under a key with a hash tag on the entity so that one entity's views share
// a Redis Cluster slot:
//
//	<prefix>:{<entity>}:<view>:<version>
//
// The value is a hash with one field per feature (the float formatted so that
// it parses back to the same bits) and metadata fields: _et (event time,
// Unix ms), _off (source offset), _part (source partition) and _kt (known
// time, Unix ms), always; _rev (the source offset the row revises) only for
// a correction, and _ws and _we (window start and end, Unix ms) only for a
// tumbling, hopping or session row. An absent _rev reads as -1 and absent
// window fields as 0, so hashes written before those fields existed read as
// first versions of sliding rows. Every applied write replaces the whole hash
// and sets the key's expiry to the view's TTL. last_n lists and top_k labels
// are not stored here (the offline store keeps them); a feature's value is.
//
// Writes are idempotent and ordered by a Lua script run with EVALSHA: a row
// is applied only if it is newer than the stored one by (event time, revised
// offset, source offset, window start), the order of featurestore.Compare.
// So a correction of the stored row (same event time, the same revised
// offset, a higher source offset) replaces it, and replayed, duplicated and
// out-of-order rows never regress a value. Offsets are compared without the
// partition because an entity's rows all come from one partition of the
// features topic (it is keyed by entity).
//
// # Redis Cluster, ACL and TLS
//
// Dial connects to one node or to a Redis Cluster (go-redis ClusterClient),
// as an ACL user or with requirepass, over TLS when configured. Every
// command here names its keys: the write script touches only KEYS[1], the
// row's own key, and builds no key inside Lua, so each EVALSHA runs on the
// node that owns the key's slot and passes ACL key patterns such as
// ~<prefix>:*. The hash tag {<entity>} puts all of an entity's view versions
// in one slot (the prefix may not contain braces; config refuses it), so a
// multi-key command on one entity never crosses slots. The exception is an
// entity that starts with '}' (the tag is then empty and Redis hashes the
// whole key): its views may land in different slots, which no command here
// minds, as each touches one key. A pipelined Write or
// GetMany is split by node; after NOSCRIPT the script is loaded on every
// master. Key scans (SampleEntities, CountKeys) walk every master of a
// cluster.
//
// This package exports no metrics; the materializer that drives Write counts
// rows and latency.
package online

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/weirhq/weir/featurestore"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
)

// Metadata fields of a row's hash. Feature names may not start with '_'.
const (
	fieldEventTime = "_et"
	fieldOffset    = "_off"
	fieldPartition = "_part"
	fieldKnownTime = "_kt"
	fieldRevises   = "_rev" // only for corrections
	fieldWinStart  = "_ws"  // only for windowed rows
	fieldWinEnd    = "_we"  // only for windowed rows
)

// ErrUnknownView is returned for a row of a view the store was not
// configured with (its TTL is unknown).
var ErrUnknownView = errors.New("unknown view")

// ErrReservedName is returned for a feature named like a metadata field.
var ErrReservedName = errors.New("feature names starting with '_' are reserved")

// writeScript applies one row if it is newer than the stored one.
//
//	KEYS[1] the row's key
//	ARGV    event time, offset, partition, known time, TTL in ms (0: none),
//	        revises offset (-1: a first version), window start, window end
//	        (both 0: a sliding row), then feature name, value pairs
//
// Rows are ordered by (event time, revised offset, offset, window start),
// the revised offset being the revises offset of a correction and the
// offset of a first version (featurestore.Compare). It returns 1 when the
// row was applied and 0 when it was not newer. Lua numbers are doubles:
// exact for millisecond times and offsets below 2^53.
var writeScript = redis.NewScript(`
local et = tonumber(ARGV[1])
local off = tonumber(ARGV[2])
local rev = tonumber(ARGV[6])
local ws = tonumber(ARGV[7])
local revised = off
if rev >= 0 then revised = rev end
local cur = redis.call('HMGET', KEYS[1], '_et', '_off', '_rev', '_ws')
if cur[1] then
  local cet = tonumber(cur[1]) or -1
  local coff = tonumber(cur[2]) or -1
  local crev = tonumber(cur[3]) or -1
  local cws = tonumber(cur[4]) or 0
  local crevised = coff
  if crev >= 0 then crevised = crev end
  if cet ~= et then
    if cet > et then return 0 end
  elseif crevised ~= revised then
    if crevised > revised then return 0 end
  elseif coff ~= off then
    if coff > off then return 0 end
  elseif cws >= ws then
    return 0
  end
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '_et', ARGV[1], '_off', ARGV[2], '_part', ARGV[3], '_kt', ARGV[4], unpack(ARGV, 9))
if rev >= 0 then
  redis.call('HSET', KEYS[1], '_rev', ARGV[6])
end
if ws ~= 0 or tonumber(ARGV[8]) ~= 0 then
  redis.call('HSET', KEYS[1], '_ws', ARGV[7], '_we', ARGV[8])
end
local ttl = tonumber(ARGV[5])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
`)

// Store is the Redis online store. It is safe for concurrent use.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	ttl    map[string]time.Duration // by view name
}

// New returns a store writing keys under prefix (config.Redis.KeyPrefix) for
// the given views, whose TTLs it applies. rdb may be a *redis.Client or a
// *redis.ClusterClient.
func New(rdb redis.UniversalClient, prefix string, views []config.View) *Store {
	ttl := make(map[string]time.Duration, len(views))
	for _, v := range views {
		ttl[v.Name] = v.TTL.D()
	}
	return &Store{rdb: rdb, prefix: prefix, ttl: ttl}
}

// RedisKey returns the Redis key of an entity's view version under prefix.
func RedisKey(prefix string, k Key) string {
	return prefix + ":{" + k.Entity + "}:" + k.View + ":" + k.Version
}

// Write applies rows in one pipelined round trip (two when Redis lost the
// script and it must be loaded again).
//
// Delivery contract: Write is idempotent per row by (entity, view, version,
// event time, revised offset, offset, window start). A row is applied only
// if it is newer than the stored row by featurestore.Compare, so a caller
// delivering at least once may replay any rows, in any order and any
// batching, and the store still ends with the newest row per key. Rows older than the stored one are dropped
// silently; that is success, not an error. Write returns nil only when every
// row was applied or found stale; on error some rows may have been applied
// and the caller should retry the whole batch. Write does not keep rows.
func (s *Store) Write(ctx context.Context, rows []schemas.FeatureRow) error {
	if len(rows) == 0 {
		return nil
	}
	keys := make([][]string, len(rows))
	args := make([][]any, len(rows))
	for i := range rows {
		r := &rows[i]
		ttl, ok := s.ttl[r.View]
		if !ok {
			return fmt.Errorf("online: write row %d (entity %q): view %q: %w", i, r.Entity, r.View, ErrUnknownView)
		}
		a := make([]any, 0, 8+2*len(r.Values))
		a = append(a, r.EventTime, r.SourceOffset, r.SourcePartition, r.KnownTime, ttl.Milliseconds(),
			max(r.RevisesOffset, -1), r.WindowStart, r.WindowEnd)
		for _, v := range r.Values {
			if strings.HasPrefix(v.Name, "_") {
				return fmt.Errorf("online: write row %d (view %s): feature %q: %w", i, r.View, v.Name, ErrReservedName)
			}
			a = append(a, v.Name, strconv.FormatFloat(v.Value, 'g', -1, 64))
		}
		keys[i] = []string{RedisKey(s.prefix, Key{View: r.View, Version: r.ViewVersion, Entity: r.Entity})}
		args[i] = a
	}
	run := func() error {
		_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range keys {
				writeScript.EvalSha(ctx, p, keys[i], args[i]...)
			}
			return nil
		})
		return err
	}
	err := run()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// Redis restarted or was flushed: load the script and replay the
		// batch, which the script makes harmless for rows already applied.
		if lerr := writeScript.Load(ctx, s.rdb).Err(); lerr != nil {
			return fmt.Errorf("online: load write script: %w", lerr)
		}
		err = run()
	}
	if err != nil {
		return fmt.Errorf("online: write %d rows: %w", len(rows), err)
	}
	return nil
}

// Key names one entity's view version for GetMany.
type Key struct {
	View    string
	Version string
	Entity  string
}

// Get returns the newest row of an entity's view version; false when there is
// none (never written, or expired).
func (s *Store) Get(ctx context.Context, view, version, entity string) (featurestore.Row, bool, error) {
	rows, found, err := s.GetMany(ctx, []Key{{View: view, Version: version, Entity: entity}})
	if err != nil {
		return featurestore.Row{}, false, err
	}
	return rows[0], found[0], nil
}

// GetMany returns the rows of keys in one pipelined round trip: rows[i] is
// keys[i]'s row when found[i].
func (s *Store) GetMany(ctx context.Context, keys []Key) (rows []featurestore.Row, found []bool, err error) {
	if len(keys) == 0 {
		return nil, nil, nil
	}
	cmds := make([]*redis.MapStringStringCmd, len(keys))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.HGetAll(ctx, RedisKey(s.prefix, k))
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("online: get %d keys: %w", len(keys), err)
	}
	rows = make([]featurestore.Row, len(keys))
	found = make([]bool, len(keys))
	for i, k := range keys {
		h := cmds[i].Val()
		if len(h) == 0 {
			continue
		}
		r, err := parseRow(k, h)
		if err != nil {
			return nil, nil, fmt.Errorf("online: get %s: %w", RedisKey(s.prefix, k), err)
		}
		rows[i], found[i] = r, true
	}
	return rows, found, nil
}

// parseRow decodes a row's hash.
func parseRow(k Key, h map[string]string) (featurestore.Row, error) {
	r := featurestore.Row{Entity: k.Entity, View: k.View, Version: k.Version, Revises: -1, Values: make(map[string]float64, len(h))}
	var err error
	parseInt := func(field string, optional bool) int64 {
		s, ok := h[field]
		if !ok {
			if !optional {
				err = errors.Join(err, fmt.Errorf("field %s missing", field))
			}
			return 0
		}
		n, perr := strconv.ParseInt(s, 10, 64)
		if perr != nil {
			err = errors.Join(err, fmt.Errorf("field %s: %w", field, perr))
		}
		return n
	}
	r.EventTime = parseInt(fieldEventTime, false)
	r.Offset = parseInt(fieldOffset, false)
	r.Partition = int32(parseInt(fieldPartition, false))
	r.KnownTime = parseInt(fieldKnownTime, false)
	if _, ok := h[fieldRevises]; ok {
		r.Revises = parseInt(fieldRevises, true)
	}
	r.WindowStart = parseInt(fieldWinStart, true)
	r.WindowEnd = parseInt(fieldWinEnd, true)
	for name, s := range h {
		if strings.HasPrefix(name, "_") {
			continue
		}
		v, perr := strconv.ParseFloat(s, 64)
		if perr != nil {
			err = errors.Join(err, fmt.Errorf("feature %s: %w", name, perr))
			continue
		}
		r.Values[name] = v
	}
	return r, err
}

// SampleEntities returns up to n entities that have a key of the view
// version, in the order a key scan finds them (Redis's hash order, which
// has nothing to do with the entities' names or ages). It scans every master
// of a cluster and stops once it has n.
func (s *Store) SampleEntities(ctx context.Context, view, version string, n int) ([]string, error) {
	if n <= 0 {
		return nil, nil
	}
	head, tail := s.prefix+":{", "}:"+view+":"+version
	var out []string
	var mu sync.Mutex
	err := s.scan(ctx, escapeGlob(s.prefix)+":{*}:"+escapeGlob(view)+":"+escapeGlob(version), 0, func(keys []string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, k := range keys {
			if e, ok := strings.CutPrefix(k, head); ok {
				if e, ok = strings.CutSuffix(e, tail); ok && len(out) < n {
					out = append(out, e)
				}
			}
		}
		return len(out) < n
	})
	if err != nil {
		return nil, fmt.Errorf("online: sample entities of %s@%s: %w", view, version, err)
	}
	return out, nil
}

// KeyCount is what CountKeys found of one view.
type KeyCount struct {
	// Versions maps each version found to its number of keys.
	Versions map[string]int64
	// Complete is false when the scan stopped at its budget: the counts are
	// then lower bounds.
	Complete bool
}

// CountKeys counts a view's keys per version, of every version present (the
// config's current one and any older ones still within their TTL). A scan
// walks the whole keyspace, so it examines at most about budget keys per
// node (0: no limit).
func (s *Store) CountKeys(ctx context.Context, view string, budget int) (KeyCount, error) {
	kc := KeyCount{Versions: map[string]int64{}, Complete: true}
	mid := "}:" + view + ":"
	var mu sync.Mutex
	err := s.scan(ctx, escapeGlob(s.prefix)+":{*}:"+escapeGlob(view)+":*", budget, func(keys []string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, k := range keys {
			if i := strings.LastIndex(k, mid); i >= 0 && !strings.Contains(k[i+len(mid):], ":") {
				kc.Versions[k[i+len(mid):]]++
			}
		}
		return true
	})
	if errors.Is(err, errBudget) {
		kc.Complete, err = false, nil
	}
	if err != nil {
		return KeyCount{}, fmt.Errorf("online: count keys of %s: %w", view, err)
	}
	return kc, nil
}

// DeleteAll deletes every key under the store's prefix, of every view and
// version, on every master of a cluster, and returns how many it deleted.
// `weir dev --fresh` and tests use it; a rebuild (see package materialize)
// fills the store again from the feature topics.
func (s *Store) DeleteAll(ctx context.Context) (int64, error) {
	var mu sync.Mutex
	var n int64
	var derr error
	err := s.scan(ctx, escapeGlob(s.prefix)+":*", 0, func(keys []string) bool {
		if len(keys) == 0 {
			return true
		}
		// One UNLINK per key: keys of different slots may not share one.
		cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				p.Unlink(ctx, k)
			}
			return nil
		})
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			derr = err
			return false
		}
		for _, c := range cmds {
			n += c.(*redis.IntCmd).Val()
		}
		return true
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return n, fmt.Errorf("online: delete keys under %s: %w", s.prefix, err)
	}
	return n, nil
}

// errBudget ends a scan that examined its budget of keys.
var errBudget = errors.New("scan budget spent")

// scanCount is the COUNT hint of each SCAN call.
const scanCount = 1000

// scan calls fn with the keys matching match, batch by batch, on every
// master of a cluster (concurrently: fn must be safe for that) or on the one
// node, until fn returns false or the keyspace is walked. budget bounds the
// keys examined per node (0: none); reaching it returns errBudget.
func (s *Store) scan(ctx context.Context, match string, budget int, fn func(keys []string) bool) error {
	one := func(ctx context.Context, c redis.Cmdable) error {
		var cursor uint64
		examined := 0
		for {
			keys, next, err := c.Scan(ctx, cursor, match, scanCount).Result()
			if err != nil {
				return err
			}
			if !fn(keys) {
				return errStop
			}
			if cursor = next; cursor == 0 {
				return nil
			}
			if examined += scanCount; budget > 0 && examined >= budget {
				return errBudget
			}
		}
	}
	var err error
	if cc, ok := s.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return one(ctx, c) })
	} else {
		err = one(ctx, s.rdb)
	}
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// errStop ends a scan whose callback has what it wanted.
var errStop = errors.New("scan stopped")

// escapeGlob escapes the characters SCAN's MATCH treats as a pattern.
func escapeGlob(s string) string {
	if !strings.ContainsAny(s, `*?[]\`) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
