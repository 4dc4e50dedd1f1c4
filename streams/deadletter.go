package streams

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Reason is one entry of the dead-letter catalogue. The reason header of a
// dead-lettered record is written from it and nowhere else.
type Reason struct {
	Code      string // stable, written to the weir.reason header
	Retriable bool   // whether replaying the record later could succeed
	Help      string // one line for the operator
}

// The dead-letter catalogue.
var (
	ReasonUndecodable = Reason{"undecodable", false, "the value is not Avro in the Confluent wire format under a schema the registry knows, or does not match the source schema"}
	ReasonMissingKey  = Reason{"missing_key", false, "the record has no key (or its key field is empty); producers must key records by the source's key field"}
	ReasonKeyMismatch = Reason{"key_mismatch", false, "the record key differs from the key field in its value; the producer partitions by the wrong key"}
	ReasonAbsurdTime  = Reason{"absurd_timestamp", false, "the event time is before 2000, beyond max_future ahead of the wall clock, or further than max_skew from its partition's watermark"}
	ReasonLate        = Reason{"late", false, "the event is older than its partition's watermark (newest event time minus the source's out_of_order) by more than the allowed lateness of every view"}
)

// Reasons lists the catalogue; codes are unique (a test checks).
var Reasons = []Reason{ReasonUndecodable, ReasonMissingKey, ReasonKeyMismatch, ReasonAbsurdTime, ReasonLate}

// Header keys of a dead-lettered record.
const (
	HeaderReason    = "weir.reason"
	HeaderError     = "weir.error"
	HeaderTopic     = "weir.source.topic"
	HeaderPartition = "weir.source.partition"
	HeaderOffset    = "weir.source.offset"
)

// DeadLetter is the error a processor returns for a record that belongs on
// the dead-letter topic; the loop writes it there in the same transaction and
// goes on.
type DeadLetter struct {
	Reason Reason
	Err    error
}

func (d *DeadLetter) Error() string { return fmt.Sprintf("dead letter (%s): %v", d.Reason.Code, d.Err) }
func (d *DeadLetter) Unwrap() error { return d.Err }

// Dead returns a *DeadLetter for reason wrapping err.
func Dead(reason Reason, err error) error { return &DeadLetter{Reason: reason, Err: err} }

// AsDeadLetter reports whether err is (or wraps) a *DeadLetter.
func AsDeadLetter(err error) (*DeadLetter, bool) {
	var d *DeadLetter
	ok := errors.As(err, &d)
	return d, ok
}

// DeadLetterRecord builds the dead-letter record of src: its key and value
// unchanged, its headers kept, the reason, error and source position added,
// on the dead-letter partition of the same number.
func DeadLetterRecord(topic string, src *kgo.Record, d *DeadLetter) *kgo.Record {
	h := append([]kgo.RecordHeader(nil), src.Headers...)
	h = append(h,
		kgo.RecordHeader{Key: HeaderReason, Value: []byte(d.Reason.Code)},
		kgo.RecordHeader{Key: HeaderError, Value: []byte(d.Err.Error())},
		kgo.RecordHeader{Key: HeaderTopic, Value: []byte(src.Topic)},
		kgo.RecordHeader{Key: HeaderPartition, Value: []byte(strconv.Itoa(int(src.Partition)))},
		kgo.RecordHeader{Key: HeaderOffset, Value: []byte(strconv.FormatInt(src.Offset, 10))},
	)
	return &kgo.Record{Topic: topic, Partition: src.Partition, Key: src.Key, Value: src.Value, Headers: h, Timestamp: src.Timestamp}
}

// HeaderValue returns the value of the first header named key.
func HeaderValue(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// RetryError is the error a processor returns for a record that failed for a
// reason that may pass, such as an unreachable dependency: the loop aborts
// the transaction, waits with backoff, and processes again from the
// committed offsets. Nothing is dead-lettered and nothing is lost.
type RetryError struct{ Err error }

func (r *RetryError) Error() string { return "retriable: " + r.Err.Error() }
func (r *RetryError) Unwrap() error { return r.Err }

// Retry returns a *RetryError wrapping err.
func Retry(err error) error { return &RetryError{Err: err} }
