package trainingset

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
)

// hashVersion starts every content hash's input, so that a change of the
// encoding below changes every hash.
const hashVersion = "weir.training_set.content/v1\n"

// contentHash is the SHA-256 of a training set's rows, independent of the
// output format, so that a Parquet file, a CSV file and a ClickHouse table
// of the same rows carry the same hash. Its input is hashVersion, then each
// column's name and type (uvarint length, bytes, one type byte, one
// nullable byte), then every row, column by column: a null is the byte 0;
// a value is the byte 1 and then, for Int64 and Bool, 8 bytes little-endian
// two's complement, for Float64 the 8 bytes of its IEEE 754 bits
// little-endian (every NaN as 0x7ff8000000000000: text formats keep no NaN
// payload), for String its uvarint byte length and bytes.
type contentHash struct {
	h   hash.Hash
	buf []byte
}

// canonicalNaN is the bits every NaN hashes as.
const canonicalNaN = 0x7ff8000000000000

func newContentHash(cols []Column) *contentHash {
	c := &contentHash{h: sha256.New()}
	c.buf = append(c.buf, hashVersion...)
	for _, col := range cols {
		c.buf = binary.AppendUvarint(c.buf, uint64(len(col.Name)))
		c.buf = append(c.buf, col.Name...)
		c.buf = append(c.buf, byte(col.Type), b2b(col.Nullable))
	}
	c.h.Write(c.buf)
	return c
}

func b2b(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// add hashes the chunk's rows; cols are its columns' types.
func (c *contentHash) add(cols []Column, ch *Chunk) {
	for i := 0; i < ch.Len; i++ {
		b := c.buf[:0]
		for j, col := range cols {
			v := &ch.Cols[j]
			if v.IsNull(i) {
				b = append(b, 0)
				continue
			}
			b = append(b, 1)
			switch col.Type {
			case Int64, Bool:
				b = binary.LittleEndian.AppendUint64(b, uint64(v.Ints[i]))
			case Float64:
				bits := math.Float64bits(v.Floats[i])
				if f := v.Floats[i]; f != f {
					bits = canonicalNaN
				}
				b = binary.LittleEndian.AppendUint64(b, bits)
			case String:
				b = binary.AppendUvarint(b, uint64(len(v.Strs[i])))
				b = append(b, v.Strs[i]...)
			}
		}
		c.h.Write(b)
		c.buf = b
	}
}

func (c *contentHash) sum() string { return "sha256:" + hex.EncodeToString(c.h.Sum(nil)) }

// ContentHash reads s to its end and returns the content hash of its rows
// as the columns cols (a Description's: names, types and nullability),
// which s must have, by name, with the same types (Bool may read back as
// Int64, as from ClickHouse; both hash alike), and the number of rows.
// Columns of s not in cols (a ClickHouse output's spine_row) are ignored.
// It checks a stored training set against its description.
func ContentHash(s Spine, cols []Column) (string, int64, error) {
	have := s.Columns()
	idx := make([]int, len(cols))
	for i, c := range cols {
		idx[i] = -1
		for j, h := range have {
			if h.Name == c.Name {
				idx[i] = j
			}
		}
		if idx[i] < 0 {
			return "", 0, fmt.Errorf("trainingset: content hash: no column %s", c.Name)
		}
		ht := have[idx[i]].Type
		if ht != c.Type && !(c.Type == Bool && ht == Int64) {
			return "", 0, fmt.Errorf("trainingset: content hash: column %s is %s, want %s", c.Name, ht, c.Type)
		}
	}
	h := newContentHash(cols)
	var in, out Chunk
	var rows int64
	for {
		err := s.Next(&in, DefaultChunkRows)
		if errors.Is(err, io.EOF) {
			return h.sum(), rows, nil
		}
		if err != nil {
			return "", 0, err
		}
		out.Len = in.Len
		out.Cols = out.Cols[:0]
		for _, j := range idx {
			out.Cols = append(out.Cols, in.Cols[j])
		}
		h.add(cols, &out)
		rows += int64(in.Len)
	}
}
