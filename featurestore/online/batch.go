package online

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// Lookup names the features to read from one entity's view version.
type Lookup struct {
	Key      Key
	Features []string
}

// Features is what GetFeatures read for one Lookup.
type Features struct {
	// Found reports whether the key exists (written and not expired).
	Found bool
	// EventTime is the row's event time, Unix ms.
	EventTime int64
	// Values and Has follow the lookup's Features: Has[i] reports whether
	// the row holds Features[i], and Values[i] is its value then.
	Values []float64
	Has    []bool
}

// GetFeatures reads the event time and the named features of every lookup
// with one HMGET per key, all in one pipelined round trip. It reads only
// the fields asked for, so it is the serving path's read; GetMany returns
// whole rows. out[i] answers lookups[i]; the slices of all answers share one
// allocation.
func (s *Store) GetFeatures(ctx context.Context, lookups []Lookup) ([]Features, error) {
	if len(lookups) == 0 {
		return nil, nil
	}
	n := 0
	for _, l := range lookups {
		n += len(l.Features)
	}
	cmds := make([]*redis.SliceCmd, len(lookups))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		fields := make([]string, 0, len(lookups)+n)
		for i, l := range lookups {
			start := len(fields)
			fields = append(fields, fieldEventTime)
			fields = append(fields, l.Features...)
			cmds[i] = p.HMGet(ctx, RedisKey(s.prefix, l.Key), fields[start:]...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("online: get features of %d keys: %w", len(lookups), err)
	}
	out := make([]Features, len(lookups))
	values, has := make([]float64, n), make([]bool, n)
	for i, l := range lookups {
		f := &out[i]
		k := len(l.Features)
		f.Values, f.Has = values[:k:k], has[:k:k]
		values, has = values[k:], has[k:]
		reply := cmds[i].Val()
		et, ok := reply[0].(string)
		if !ok {
			continue // no key: HMGET answers nil for every field
		}
		f.Found = true
		if f.EventTime, err = strconv.ParseInt(et, 10, 64); err != nil {
			return nil, fmt.Errorf("online: get %s: field %s: %w", RedisKey(s.prefix, l.Key), fieldEventTime, err)
		}
		for j, v := range reply[1:] {
			str, ok := v.(string)
			if !ok {
				continue
			}
			if f.Values[j], err = strconv.ParseFloat(str, 64); err != nil {
				return nil, fmt.Errorf("online: get %s: feature %s: %w", RedisKey(s.prefix, l.Key), l.Features[j], err)
			}
			f.Has[j] = true
		}
	}
	return out, nil
}
