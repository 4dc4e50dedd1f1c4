package schemas

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// magic is the first byte of every Confluent-framed record.
const magic = 0

// ErrNotFramed is returned for a value that does not start with the Confluent
// magic byte and a schema id.
var ErrNotFramed = errors.New("not in the Confluent wire format (magic byte 0, 4-byte schema id)")

// AppendHeader appends the Confluent wire-format header for schema id to dst.
func AppendHeader(dst []byte, id int) []byte {
	dst = append(dst, magic)
	return binary.BigEndian.AppendUint32(dst, uint32(id))
}

// SplitHeader returns the schema id and Avro body of a framed value.
func SplitHeader(b []byte) (id int, body []byte, err error) {
	if len(b) < 5 || b[0] != magic {
		return 0, nil, fmt.Errorf("schemas: %d-byte value: %w", len(b), ErrNotFramed)
	}
	return int(binary.BigEndian.Uint32(b[1:5])), b[5:], nil
}
