// Package agg provides mergeable aggregate accumulators for windowed features:
// removable ones for sliding windows and compact sketches for tumbling,
// hopping and session windows.
//
// Removable (a sliding window adds an event when it enters and removes it when
// it leaves, so memory follows the window's current contents, not its history):
//
//   - Counts: exact category counts; Len is the distinct count, TopK the most
//     frequent categories.
//   - Quantiles: a DDSketch (Masson, Rim and Lee, VLDB 2019) with exact
//     integer bin counts: every quantile is within the relative accuracy of
//     the exact one.
//
// Not removable, bounded memory:
//
//   - Distinct: exact distinct count up to a limit, then HyperLogLog.
//   - TopK: exact counts up to a capacity, then Space-Saving (Metwally,
//     Agrawal and El Abbadi, ICDT 2005).
//
// Every accumulator merges with another of its kind (the window's panes, or
// sessions that an event bridges) and serializes with AppendBinary and
// Decode, which round-trip exactly: decoding what AppendBinary wrote gives an
// accumulator that answers, encodes and evolves like the original. No
// accumulator is safe for concurrent use; each belongs to one partition task.
//
// # Encoding
//
// Each encoding starts with one header byte, the kind in the high nibble and
// the format version in the low one (Counts 0x11, Distinct 0x21, TopK 0x31,
// Quantiles 0x41), so that a value of one kind never decodes as another.
// Integers are unsigned LEB128 varints (encoding/binary's Uvarint) unless
// said otherwise, strings a varint length and the bytes:
//
//	Counts     0x11 n (category count)*n             in slot order
//	Distinct   0x21 limit precision(1 byte) 0x00 n category*n    exact, insertion order
//	           0x21 limit precision(1 byte) 0x01 len hll         HyperLogLog (axiomhq's format)
//	TopK       0x31 capacity total m (category count err)*m   in heap order
//	Quantiles  0x41 gamma(8 bytes, little-endian float64) zero negative positive
//	           where a store is n, then n bins: the first key as a zigzag
//	           varint, later keys as the varint gap to the previous key (> 0),
//	           each followed by its count (> 0)
//
// Decode reads one value from the front of its input and returns the rest, so
// values can be concatenated. It rejects what AppendBinary cannot have
// written (zero counts, repeated categories, unordered or out-of-range bin
// keys, counters out of heap order) with an error wrapping ErrCorrupt,
// leaves the receiver unchanged on error, and allocates only in proportion to
// its input's length. Each decoder has a fuzz target.
package agg
