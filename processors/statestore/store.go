// Package statestore provides the keyed state stores of stream tasks: one
// per assigned partition, in memory (default) or on disk with Pebble for
// state larger than memory.
//
// A store holds the committed state of one source partition's entities,
// keyed by entity. The task keeps a transaction's changes itself and hands
// them to Apply once the Kafka transaction that wrote them to the changelog
// has committed, so a store never holds uncommitted state and needs no
// durability of its own: the compacted changelog topic is the source of
// truth, and a store is rebuilt from it on every partition assignment.
// That is why the Pebble store writes no WAL, never syncs, and deletes its
// files at Open and Close.
//
// Stores are generic over the state type S: the memory store keeps S as
// given (decoded), the Pebble store encodes it with a Codec. Each entity
// also carries the time of its newest event, kept in a time-ordered index
// so that Expired finds the entities a TTL sweep drops without scanning the
// store.
//
// A Store is used by one goroutine at a time, its partition's task; Len and
// SizeBytes may be called from any goroutine (metrics). Separate stores,
// one per partition, are independent and may be used concurrently.
package statestore

import "errors"

// Codec encodes states for a store that keeps bytes (Pebble).
type Codec[S any] interface {
	// Append appends the encoding of s to dst and returns the extended
	// buffer.
	Append(dst []byte, s S) []byte
	// Decode decodes a state. b is only valid during the call (it is the
	// store's read buffer): the state must not keep it.
	Decode(b []byte) (S, error)
}

// Put is one change to an entity's state.
type Put[S any] struct {
	Key   string
	State S
	// Time is the entity's newest event time (ms): Expired reports the
	// entity once a horizon passes it.
	Time int64
	// Delete removes the entity; State and Time are ignored.
	Delete bool
}

// Store is the committed state of one partition's entities.
type Store[S any] interface {
	// Get returns the entity's state; false if the store has none. The
	// memory store returns the value it was given: the caller must not
	// modify it in place but Put a copy.
	Get(key string) (S, bool, error)
	// Apply applies one committed transaction's changes, in order (the
	// last change to a key wins), atomically: after an error none of them
	// is visible. A restore may pass large batches (100,000 changes).
	// The store keeps no reference to puts after the call, but keeps the
	// states of the memory store.
	Apply(puts []Put[S]) error
	// Expired calls fn with the keys whose Time is before horizon, roughly
	// oldest first (the exact order is not specified), until fn returns
	// false. It reads the time index, not every entity. fn may call Get
	// but not Apply.
	Expired(horizon int64, fn func(key string) bool) error
	// Len is the number of entities.
	Len() int
	// SizeBytes is the approximate number of bytes the store holds: an
	// estimate of the heap used for the memory store, disk usage plus
	// memtables for Pebble.
	SizeBytes() int64
	// Close releases the store; the Pebble store also deletes its files.
	// The store must not be used afterwards.
	Close() error
}

// Sizer is implemented by states that know roughly how many bytes they
// hold; the memory store counts them in SizeBytes.
type Sizer interface {
	SizeBytes() int
}

// ErrEmptyKey is returned by Apply for a change with an empty key; none of
// the batch's changes is applied.
var ErrEmptyKey = errors.New("statestore: empty key")

// checkKeys returns ErrEmptyKey if a change has an empty key.
func checkKeys[S any](puts []Put[S]) error {
	for i := range puts {
		if puts[i].Key == "" {
			return ErrEmptyKey
		}
	}
	return nil
}
