package streams

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestReasonCatalogue(t *testing.T) {
	codes := map[string]bool{}
	for _, r := range Reasons {
		if codes[r.Code] {
			t.Errorf("reason code %q is used twice", r.Code)
		}
		codes[r.Code] = true
		if r.Code == "" || strings.ToLower(r.Code) != r.Code || strings.ContainsAny(r.Code, " .") {
			t.Errorf("reason code %q: want lower_snake_case", r.Code)
		}
		if r.Help == "" {
			t.Errorf("reason %q has no help line", r.Code)
		}
	}
}

func TestDeadLetterRecord(t *testing.T) {
	src := &kgo.Record{Topic: "payments", Partition: 3, Offset: 42, Key: []byte("k"), Value: []byte("v"),
		Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t1")}}}
	err := fmt.Errorf("process: %w", Dead(ReasonLate, errors.New("2m behind")))
	d, ok := AsDeadLetter(err)
	if !ok {
		t.Fatal("wrapped dead letter not found")
	}
	r := DeadLetterRecord("weir.deadletter", src, d)
	want := map[string]string{"trace": "t1", HeaderReason: "late", HeaderError: "2m behind", HeaderTopic: "payments", HeaderPartition: "3", HeaderOffset: "42"}
	for k, v := range want {
		if got := HeaderValue(r, k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	if r.Topic != "weir.deadletter" || r.Partition != 3 || string(r.Key) != "k" || string(r.Value) != "v" {
		t.Errorf("record %+v: want the source key, value and partition on the dead-letter topic", r)
	}
	if _, ok := AsDeadLetter(errors.New("plain")); ok {
		t.Error("a plain error counted as a dead letter")
	}
}
