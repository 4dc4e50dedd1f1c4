package faulttest

import (
	"bufio"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
	accepted int
	dead     map[[2]int64]string // (partition, offset) -> reason
}

// dumpRaw writes the source topic to a CSV for the oracle: every record's
// partition, offset and key, its decoded transaction fields, and the
// dead-letter reason the processor must give it ("" when it must accept it).
// Call it once production is over.
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
	t.Logf("raw topic: %d records, %d to accept, %d to dead-letter (dumped in %s)", d.records, d.accepted, len(d.dead), time.Since(start).Round(time.Millisecond))
	return d
}

// expected is one oracle row.
type expected struct {
	key, txnID string
	values     []float64
	seen       int
}

// runOracle runs testdata/oracle.py over the raw dump and reads its rows.
func (r *rig) runOracle(rawPath string) (names []string, want map[[2]int64]*expected) {
	t := r.t
	t.Helper()
	script, err := filepath.Abs("testdata/oracle.py")
	if err != nil {
		t.Fatal(err)
	}
	outPath := filepath.Join(r.dir, "expected.csv")
	start := time.Now()
	cmd := exec.Command(r.py, script, rawPath, outPath)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", r.py, script, err, out)
	}
	t.Logf("%s (%s)", strings.TrimSpace(string(out)), time.Since(start).Round(time.Millisecond))
	f, err := os.Open(outPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cr := csv.NewReader(bufio.NewReaderSize(f, 1<<20))
	cr.ReuseRecord = true
	head, err := cr.Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(head) < 5 || strings.Join(head[:4], ",") != "partition,offset,key,txn_id" {
		t.Fatalf("oracle header %v", head)
	}
	names = append([]string(nil), head[4:]...)
	want = map[[2]int64]*expected{}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		part, err1 := strconv.ParseInt(rec[0], 10, 32)
		off, err2 := strconv.ParseInt(rec[1], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatalf("oracle row %v: %v", rec, err)
		}
		e := &expected{key: rec[2], txnID: rec[3], values: make([]float64, len(names))}
		for i := range names {
			if e.values[i], err = strconv.ParseFloat(rec[4+i], 64); err != nil {
				t.Fatalf("oracle row %v: %v", rec, err)
			}
		}
		want[[2]int64{part, off}] = e
	}
	return names, want
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
// oracle's recomputation from the raw dump. Call it once the processor has
// stopped: it reads every topic up to its end as it is then.
func (r *rig) check(ctx context.Context, raw rawDump) {
	t := r.t
	t.Helper()
	names, want := r.runOracle(raw.path)
	if len(want) != raw.accepted {
		t.Fatalf("oracle has %d rows for %d accepted records", len(want), raw.accepted)
	}

	const maxShown = 20
	var shown []string
	show := func(format string, a ...any) {
		if len(shown) < maxShown {
			shown = append(shown, fmt.Sprintf(format, a...))
		}
	}
	var rows, dups, extra, wrong int
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
		k := [2]int64{int64(row.SourcePartition), row.SourceOffset}
		e := want[k]
		switch {
		case e == nil:
			extra++
			show("row for source %d@%d (features %d@%d): the oracle has no such accepted record", k[0], k[1], rec.Partition, rec.Offset)
			return
		case e.seen > 0:
			dups++
			show("duplicate row for source %d@%d (features %d@%d), copy %d", k[0], k[1], rec.Partition, rec.Offset, e.seen+1)
		}
		e.seen++
		bad := func(format string, a ...any) {
			wrong++
			show("source %d@%d card %s (features %d@%d): %s", k[0], k[1], e.key, rec.Partition, rec.Offset, fmt.Sprintf(format, a...))
		}
		if row.SourceTopic != src || row.View != view || rec.Partition != row.SourcePartition || string(rec.Key) != e.key || row.Entity != e.key || row.EventID != e.txnID {
			bad("row names topic %s view %s partition %d key %q entity %q event %q; want %s %s %d %q %q %q",
				row.SourceTopic, row.View, rec.Partition, rec.Key, row.Entity, row.EventID, src, view, k[0], e.key, e.key, e.txnID)
			return
		}
		if len(row.Values) != len(names) {
			bad("%d values, oracle has %d", len(row.Values), len(names))
			return
		}
		for i, v := range row.Values {
			if v.Name != names[i] {
				bad("value %d is %s, oracle's is %s", i, v.Name, names[i])
				return
			}
			if !equal(v.Value, e.values[i]) {
				bad("%s = %v, oracle %v", v.Name, v.Value, e.values[i])
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	var missing int
	for k, e := range want {
		if e.seen == 0 {
			missing++
			show("no row for source %d@%d (card %s, %s)", k[0], k[1], e.key, e.txnID)
		}
	}
	t.Logf("features topic: %d rows read in %s: %d duplicates, %d missing, %d not in the oracle, %d wrong values or fields",
		rows, time.Since(start).Round(time.Millisecond), dups, missing, extra, wrong)

	// Dead letters: one per flagged record, with its reason, exactly once.
	var deadRows, deadDups, deadExtra, deadWrong int
	deadSeen := map[[2]int64]int{}
	err = r.readAll(ctx, r.cfg.DeadLetterTopic(), func(rec *kgo.Record) {
		deadRows++
		p, err1 := strconv.ParseInt(streams.HeaderValue(rec, streams.HeaderPartition), 10, 32)
		o, err2 := strconv.ParseInt(streams.HeaderValue(rec, streams.HeaderOffset), 10, 64)
		k := [2]int64{p, o}
		reason, flagged := raw.dead[k]
		switch {
		case err1 != nil || err2 != nil || streams.HeaderValue(rec, streams.HeaderTopic) != src:
			deadWrong++
			show("dead letter %d@%d: source headers %q/%q/%q", rec.Partition, rec.Offset,
				streams.HeaderValue(rec, streams.HeaderTopic), streams.HeaderValue(rec, streams.HeaderPartition), streams.HeaderValue(rec, streams.HeaderOffset))
			return
		case !flagged:
			deadExtra++
			show("dead letter for source %d@%d (%s: %s), which the oracle accepts", p, o,
				streams.HeaderValue(rec, streams.HeaderReason), streams.HeaderValue(rec, streams.HeaderError))
		case deadSeen[k] > 0:
			deadDups++
			show("duplicate dead letter for source %d@%d", p, o)
		case streams.HeaderValue(rec, streams.HeaderReason) != reason:
			deadWrong++
			show("dead letter for source %d@%d: reason %s, want %s", p, o, streams.HeaderValue(rec, streams.HeaderReason), reason)
		}
		deadSeen[k]++
	})
	if err != nil {
		t.Fatal(err)
	}
	var deadMissing int
	for k := range raw.dead {
		if deadSeen[k] == 0 {
			deadMissing++
			show("no dead letter for source %d@%d (%s)", k[0], k[1], raw.dead[k])
		}
	}
	t.Logf("dead-letter topic: %d records: %d duplicates, %d missing, %d not flagged, %d wrong", deadRows, deadDups, deadMissing, deadExtra, deadWrong)
	if dups+missing+extra+wrong+deadDups+deadMissing+deadExtra+deadWrong > 0 {
		t.Errorf("the output differs from the batch recomputation (first %d problems):\n%s", len(shown), strings.Join(shown, "\n"))
	}
}
