package faulttest

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/streams"
)

// Dead-letter reasons the raw dump flags, as the processor must give them.
const (
	deadMissingKey   = "missing_key"
	deadUndecodable  = "undecodable"
	deadKeyMismatch  = "key_mismatch"
	deadAbsurdTime   = "absurd_timestamp"
	minEventTimeUnix = 946684800000 // 2000-01-01T00:00:00Z in ms
)

// rawDump is what the source topic holds.
type rawDump struct {
	path     string // the CSV
	records  int
	accepted int                 // events: records that pass the per-record checks
	dead     map[[2]int64]string // (partition, offset) -> reason, of the others
}

// dumpRaw writes the source topic to a CSV for the oracle: every record's
// partition, offset and key, its decoded transaction fields, and the
// dead-letter reason the processor must give it for the record alone ("" if
// none: an event, which the oracle accepts or finds too late). Call it once
// production is over.
func (r *rig) dumpRaw(ctx context.Context) rawDump {
	t := r.t
	t.Helper()
	start := time.Now()
	path := filepath.Join(r.dir, "raw.csv")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := csv.NewWriter(f)
	w.Write([]string{"partition", "offset", "key", "card_id", "txn_id", "event_time", "amount", "dead"})
	d := rawDump{path: path, dead: map[[2]int64]string{}}
	err = r.readAll(ctx, r.cfg.Sources[0].Topic, func(rec *kgo.Record) {
		d.records++
		var tx schemas.Transaction
		reason := ""
		switch {
		case len(rec.Key) == 0:
			reason = deadMissingKey
		case r.txn.Decode(ctx, rec.Value, &tx) != nil:
			reason = deadUndecodable
		case tx.CardID == "":
			reason = deadMissingKey
		case tx.CardID != string(rec.Key):
			reason = deadKeyMismatch
		case tx.EventTime < minEventTimeUnix:
			reason = deadAbsurdTime
		}
		if reason != "" {
			d.dead[[2]int64{int64(rec.Partition), rec.Offset}] = reason
		} else {
			d.accepted++
		}
		w.Write([]string{
			strconv.Itoa(int(rec.Partition)), strconv.FormatInt(rec.Offset, 10), string(rec.Key),
			tx.CardID, tx.TxnID, strconv.FormatInt(tx.EventTime, 10), strconv.FormatFloat(tx.Amount, 'g', -1, 64), reason,
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		t.Fatal(err)
	}
	t.Logf("raw topic: %d records: %d events, %d to dead-letter as bad records (dumped in %s)", d.records, d.accepted, len(d.dead), time.Since(start).Round(time.Millisecond))
	return d
}

// oracle is the batch recomputation: what the view's topic and the
// dead-letter topic must hold once the processor has caught up.
type oracle struct {
	names []string               // the view's features, in row order
	want  map[[2]int64]*expected // accepted events by source (partition, offset)
	dead  map[[2]int64]string    // dead letters by source (partition, offset): raw.dead and the late events
	late  int                    // events too late to accept
	rows  int                    // feature rows: every accepted event's own row and its corrections
	fixes int                    // of which corrections
}

// expected is one accepted event: its final row, the versions its row
// must have, and what the view's topic held for it.
type expected struct {
	key, txnID string
	time       int64
	values     []float64 // the final version's values
	// causes are the offsets of the late events whose processing re-emits
	// the row, ascending: the versions after the event's own row.
	causes []int64

	versions int       // rows seen
	last     int64     // the cause of the last row seen: the event itself for its own row
	final    []float64 // the last row's values
}

// runOracle runs testdata/oracle.py over the raw dump, with the source's
// out_of_order and the view's lateness and TTL, and reads its answer.
func (r *rig) runOracle(raw rawDump) *oracle {
	t := r.t
	t.Helper()
	script, err := filepath.Abs("testdata/oracle.py")
	if err != nil {
		t.Fatal(err)
	}
	v, ok := r.cfg.View(view)
	if !ok {
		t.Fatalf("config has no view %s", view)
	}
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	start := time.Now()
	cmd := exec.Command(r.py, script, raw.path, r.dir,
		"--out-of-order-ms", ms(r.cfg.Sources[0].OutOfOrder.D()), "--lateness-ms", ms(v.Lateness.D()), "--ttl-ms", ms(v.TTL.D()))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	t.Logf("%s (%s)", strings.TrimSpace(string(out)), time.Since(start).Round(time.Millisecond))

	o := &oracle{want: map[[2]int64]*expected{}, dead: maps.Clone(raw.dead)}
	head := readCSV(t, filepath.Join(r.dir, "late.csv"), func(rec []string) {
		o.dead[[2]int64{parseInt(t, rec[0]), parseInt(t, rec[1])}] = streams.ReasonLate.Code
		o.late++
	})
	if strings.Join(head, ",") != "partition,offset" {
		t.Fatalf("oracle's late.csv header %v", head)
	}
	const fixed = 6 // partition, offset, key, txn_id, event_time, causes
	head = readCSV(t, filepath.Join(r.dir, "expected.csv"), func(rec []string) {
		e := &expected{key: rec[2], txnID: rec[3], time: parseInt(t, rec[4]), values: make([]float64, len(rec)-fixed), last: -1}
		for _, c := range strings.Fields(rec[5]) {
			e.causes = append(e.causes, parseInt(t, c))
		}
		for i := range e.values {
			var err error
			if e.values[i], err = strconv.ParseFloat(rec[fixed+i], 64); err != nil {
				t.Fatalf("oracle row %v: %v", rec, err)
			}
		}
		o.want[[2]int64{parseInt(t, rec[0]), parseInt(t, rec[1])}] = e
		o.rows += 1 + len(e.causes)
		o.fixes += len(e.causes)
	})
	if len(head) <= fixed || strings.Join(head[:fixed], ",") != "partition,offset,key,txn_id,event_time,causes" {
		t.Fatalf("oracle's expected.csv header %v", head)
	}
	o.names = append([]string(nil), head[fixed:]...)
	if len(o.want)+o.late != raw.accepted {
		t.Fatalf("oracle: %d accepted and %d too late of %d events", len(o.want), o.late, raw.accepted)
	}
	return o
}

// readCSV calls fn for every record of a CSV file but the header, which it
// returns. fn must not keep the record.
func readCSV(t *testing.T, path string, fn func([]string)) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cr := csv.NewReader(bufio.NewReaderSize(f, 1<<20))
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	head = slices.Clone(head)
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return head
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		fn(rec)
	}
}

func parseInt(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("oracle: %v", err)
	}
	return n
}

// equal is equality to 1e-9 relative (exact for counts and the last
// amount; sums may add in another order).
func equal(got, want float64) bool {
	if got == want {
		return true
	}
	return math.Abs(got-want) <= 1e-9*math.Max(math.Abs(got), math.Abs(want))
}

// check compares the view's topic and the dead-letter topic with the
// oracle. Call it once the processor has stopped: it reads every topic up
// to its end as it is then.
//
// A row is a version of one event's row: its own (revises_offset -1,
// source_offset the event's) or a correction (revises_offset the event's,
// source_offset the late event's that changed it). So a version is
// (partition, event offset, cause offset), with the event offset
// revises_offset if it is set, source_offset if not, and the cause offset
// source_offset; a duplicate is the same version twice (say, a killed
// run's correction that its successor emitted again). Each event must have
// exactly the versions the oracle lists, each once, in processing (cause
// offset) order on its partition, and the last, its final row, must have
// the oracle's values. Every row names its event's key, event time and
// partition, and the event id of its cause.
func (r *rig) check(ctx context.Context, o *oracle) {
	t := r.t
	t.Helper()
	const maxShown = 20
	var shown []string
	show := func(format string, a ...any) {
		if len(shown) < maxShown {
			shown = append(shown, fmt.Sprintf(format, a...))
		}
	}
	var rows, fixes, dups, extra, disordered, wrong int
	seen := map[[3]int64]bool{} // versions: partition, event offset, cause offset
	src := r.cfg.Sources[0].Topic
	start := time.Now()
	err := r.readAll(ctx, r.cfg.FeaturesTopic(view), func(rec *kgo.Record) {
		rows++
		var row schemas.FeatureRow
		if err := r.rows.Decode(ctx, rec.Value, &row); err != nil {
			wrong++
			show("features %d@%d: undecodable: %v", rec.Partition, rec.Offset, err)
			return
		}
		ev, cause := row.SourceOffset, row.SourceOffset
		if row.RevisesOffset >= 0 {
			ev = row.RevisesOffset
			fixes++
		}
		part := int64(row.SourcePartition)
		e, c := o.want[[2]int64{part, ev}], o.want[[2]int64{part, cause}]
		what := fmt.Sprintf("row of source %d@%d", part, ev)
		if cause != ev {
			what += fmt.Sprintf(" corrected by %d@%d", part, cause)
		}
		what += fmt.Sprintf(" (features %d@%d)", rec.Partition, rec.Offset)
		switch {
		case e == nil || c == nil:
			extra++
			show("%s: the oracle accepts no such event", what)
			return
		case row.RevisesOffset >= 0 && cause == ev:
			wrong++
			show("%s: a correction that revises its own event", what)
			return
		case cause != ev && !slices.Contains(e.causes, cause):
			extra++
			show("%s: the oracle expects corrections by %v only", what, e.causes)
			return
		case seen[[3]int64{part, ev, cause}]:
			dups++
			show("%s: duplicate", what)
			return
		case cause <= e.last:
			disordered++
			show("%s: after the version of %d@%d", what, part, e.last)
		}
		seen[[3]int64{part, ev, cause}] = true
		e.versions++
		e.last = cause
		e.final = e.final[:0]
		bad := func(format string, a ...any) {
			wrong++
			show("%s card %s: %s", what, e.key, fmt.Sprintf(format, a...))
		}
		if row.SourceTopic != src || row.View != view || rec.Partition != row.SourcePartition || string(rec.Key) != e.key || row.Entity != e.key ||
			row.EventID != c.txnID || row.EventTime != e.time {
			bad("row names topic %s view %s partition %d key %q entity %q event %q time %d; want %s %s %d %q %q %q %d",
				row.SourceTopic, row.View, rec.Partition, rec.Key, row.Entity, row.EventID, row.EventTime, src, view, part, e.key, e.key, c.txnID, e.time)
			return
		}
		if len(row.Values) != len(o.names) {
			bad("%d values, oracle has %d", len(row.Values), len(o.names))
			return
		}
		for i, v := range row.Values {
			if v.Name != o.names[i] {
				bad("value %d is %s, oracle's is %s", i, v.Name, o.names[i])
				return
			}
			e.final = append(e.final, v.Value)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	var missing, finals int
	for k, e := range o.want {
		if e.versions < 1+len(e.causes) {
			missing += 1 + len(e.causes) - e.versions
			show("source %d@%d (card %s, %s): %d of its %d versions (corrections by %v)", k[0], k[1], e.key, e.txnID, e.versions, 1+len(e.causes), e.causes)
			continue
		}
		for i, v := range e.final {
			if !equal(v, e.values[i]) {
				finals++
				show("source %d@%d card %s: final %s = %v, oracle %v (%d versions)", k[0], k[1], e.key, o.names[i], v, e.values[i], e.versions)
			}
		}
	}
	t.Logf("features topic: %d rows (%d corrections) read in %s: %d duplicates, %d versions missing, %d not in the oracle, %d out of order, %d wrong fields, %d wrong final values",
		rows, fixes, time.Since(start).Round(time.Millisecond), dups, missing, extra, disordered, wrong, finals)

	// Dead letters: one per flagged record, with its reason, exactly once.
	var deadRows, deadLate, deadDups, deadExtra, deadWrong int
	deadSeen := map[[2]int64]int{}
	err = r.readAll(ctx, r.cfg.DeadLetterTopic(), func(rec *kgo.Record) {
		deadRows++
		p, err1 := strconv.ParseInt(streams.HeaderValue(rec, streams.HeaderPartition), 10, 32)
		off, err2 := strconv.ParseInt(streams.HeaderValue(rec, streams.HeaderOffset), 10, 64)
		k := [2]int64{p, off}
		reason, flagged := o.dead[k]
		got := streams.HeaderValue(rec, streams.HeaderReason)
		if got == streams.ReasonLate.Code {
			deadLate++
		}
		switch {
		case err1 != nil || err2 != nil || streams.HeaderValue(rec, streams.HeaderTopic) != src:
			deadWrong++
			show("dead letter %d@%d: source headers %q/%q/%q", rec.Partition, rec.Offset,
				streams.HeaderValue(rec, streams.HeaderTopic), streams.HeaderValue(rec, streams.HeaderPartition), streams.HeaderValue(rec, streams.HeaderOffset))
			return
		case !flagged:
			deadExtra++
			show("dead letter for source %d@%d (%s: %s), which the oracle accepts", p, off, got, streams.HeaderValue(rec, streams.HeaderError))
		case deadSeen[k] > 0:
			deadDups++
			show("duplicate dead letter for source %d@%d", p, off)
		case got != reason:
			deadWrong++
			show("dead letter for source %d@%d: reason %s (%s), want %s", p, off, got, streams.HeaderValue(rec, streams.HeaderError), reason)
		}
		deadSeen[k]++
	})
	if err != nil {
		t.Fatal(err)
	}
	var deadMissing int
	for k, reason := range o.dead {
		if deadSeen[k] == 0 {
			deadMissing++
			show("no dead letter for source %d@%d (%s)", k[0], k[1], reason)
		}
	}
	t.Logf("dead-letter topic: %d records (%d late): %d duplicates, %d missing, %d not flagged, %d wrong", deadRows, deadLate, deadDups, deadMissing, deadExtra, deadWrong)
	if dups+missing+extra+disordered+wrong+finals+deadDups+deadMissing+deadExtra+deadWrong > 0 {
		t.Errorf("the output differs from the batch recomputation (first %d problems):\n%s", len(shown), strings.Join(shown, "\n"))
	}
}
