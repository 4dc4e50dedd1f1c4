package processors

import "hash/fnv"

// Repartition forwards a source's accepted events, unchanged, to a topic
// keyed by another entity's key field, so that the views of that entity (a
// merchant, a device) see all of its events in one partition. The source's
// task writes the forwarded records in its own transaction (exactly once);
// an event whose entity field is empty is dead-lettered as missing_key,
// whole, before anything of it is written.
type Repartition struct {
	Field      string // the entity's key field in the source record
	Topic      string
	Partitions int
}

// Partition is the repartition topic's partition of an entity key:
// FNV-1a of the key modulo the partition count.
func Partition(key []byte, partitions int) int32 {
	h := fnv.New32a()
	h.Write(key)
	return int32(h.Sum32() % uint32(partitions))
}
