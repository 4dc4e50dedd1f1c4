// Package schemas holds Weir's Avro schemas (embedded .avsc files), the Go
// records they map to, and the Confluent wire format (magic byte 0, 4-byte
// big-endian schema id, Avro binary body) used on every Weir topic.
//
// Schema ids come from a Confluent-compatible schema registry: Serde
// registers each schema under "<topic>-value" through any registry client that
// satisfies Registry (franz-go's pkg/sr client does), and decodes by looking up
// the writer schema of an unknown id. Package schemas/registry serves such a
// registry for `weir dev` and tests.
//
// schemas imports nothing of Weir.
package schemas
