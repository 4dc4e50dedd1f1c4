package agg

import (
	"encoding/binary"
	"math"
	"slices"
)

// binStore holds a DDSketch's non-empty bins for one sign, sorted by key:
// memory and the cost of a rank query follow the number of non-empty bins,
// and a bin that empties is dropped. Keys are the mapping's indices of |x|.
type binStore struct {
	keys   []int32
	counts []uint64
	total  uint64
}

func (s *binStore) add(k int32) {
	i, found := slices.BinarySearch(s.keys, k)
	if found {
		s.counts[i]++
	} else {
		s.keys = slices.Insert(s.keys, i, k)
		s.counts = slices.Insert(s.counts, i, 1)
	}
	s.total++
}

// remove takes one value out of bin k and reports whether there was one.
func (s *binStore) remove(k int32) bool {
	i, found := slices.BinarySearch(s.keys, k)
	if !found {
		return false
	}
	s.total--
	if s.counts[i]--; s.counts[i] > 0 {
		return true
	}
	s.keys = slices.Delete(s.keys, i, i+1)
	s.counts = slices.Delete(s.counts, i, i+1)
	if n := len(s.keys); cap(s.keys) > 64 && n < cap(s.keys)/4 {
		// Give back what a larger past window needed.
		s.keys = append(make([]int32, 0, 2*n), s.keys...)
		s.counts = append(make([]uint64, 0, 2*n), s.counts...)
	}
	return true
}

// keyAtRank returns the key of the bin holding the value of 0-based rank
// in ascending key order, as DDSketch's key_at_rank does: the first bin whose
// running count exceeds rank (lower) or reaches rank+1 (!lower). It walks
// from whichever end is nearer. The store must not be empty.
func (s *binStore) keyAtRank(rank float64, lower bool) int32 {
	past := func(cum uint64) bool {
		if lower {
			return float64(cum) > rank
		}
		return float64(cum) >= rank+1
	}
	if rank < float64(s.total)/2 {
		var cum uint64
		for i, n := range s.counts {
			if cum += n; past(cum) {
				return s.keys[i]
			}
		}
		return s.keys[len(s.keys)-1]
	}
	cum := s.total // running count through bin i
	for i := len(s.counts) - 1; i > 0; i-- {
		if cum -= s.counts[i]; !past(cum) {
			return s.keys[i]
		}
	}
	return s.keys[0]
}

// merge adds o's bins to s.
func (s *binStore) merge(o *binStore) {
	if len(o.keys) == 0 {
		return
	}
	keys := make([]int32, 0, len(s.keys)+len(o.keys))
	counts := make([]uint64, 0, len(s.keys)+len(o.keys))
	i, j := 0, 0
	for i < len(s.keys) || j < len(o.keys) {
		switch {
		case j == len(o.keys) || i < len(s.keys) && s.keys[i] < o.keys[j]:
			keys, counts = append(keys, s.keys[i]), append(counts, s.counts[i])
			i++
		case i == len(s.keys) || o.keys[j] < s.keys[i]:
			keys, counts = append(keys, o.keys[j]), append(counts, o.counts[j])
			j++
		default:
			keys, counts = append(keys, s.keys[i]), append(counts, s.counts[i]+o.counts[j])
			i, j = i+1, j+1
		}
	}
	s.keys, s.counts = keys, counts
	s.total += o.total
}

func (s *binStore) clone() binStore {
	return binStore{
		keys:   slices.Clone(s.keys),
		counts: slices.Clone(s.counts),
		total:  s.total,
	}
}

func (s *binStore) appendBinary(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s.keys)))
	for i, k := range s.keys {
		if i == 0 {
			dst = binary.AppendVarint(dst, int64(k))
		} else {
			dst = binary.AppendUvarint(dst, uint64(int64(k)-int64(s.keys[i-1])))
		}
		dst = binary.AppendUvarint(dst, s.counts[i])
	}
	return dst
}

// decode reads a store whose keys must lie in [minKey, maxKey].
func (s *binStore) decode(d *decoder, minKey, maxKey int32) {
	n := d.count(2)
	*s = binStore{keys: make([]int32, 0, n), counts: make([]uint64, 0, n)}
	var k int64
	for i := 0; i < n && d.err == nil; i++ {
		if i == 0 {
			k = d.varint()
		} else {
			gap := d.uvarint()
			if gap == 0 || gap > math.MaxUint32 {
				d.fail("key gap %d", gap)
			}
			k += int64(gap)
		}
		c := d.uvarint()
		switch {
		case d.err != nil:
		case k < int64(minKey) || k > int64(maxKey):
			d.fail("key %d outside [%d, %d]", k, minKey, maxKey)
		case c == 0:
			d.fail("bin %d has count 0", k)
		case s.total+c < s.total:
			d.fail("count overflows")
		default:
			s.keys = append(s.keys, int32(k))
			s.counts = append(s.counts, c)
			s.total += c
		}
	}
}
