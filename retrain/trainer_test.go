package retrain

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/monitors/profile"
	"github.com/weirhq/weir/retrain/train"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring/model"
	"github.com/weirhq/weir/scoring/registry"
)

// fakeData returns rows by train_since: since 1000 gets 100 rows on the
// first load and 2000 after; since 999 never gets enough.
type fakeData struct {
	mu    sync.Mutex
	loads map[int64]int
}

type desc struct {
	Since int64 `json:"since"`
	Rows  int   `json:"rows"`
}

func (d *fakeData) Load(_ context.Context, m config.Model, since, until int64) ([][]float64, []bool, any, error) {
	d.mu.Lock()
	d.loads[since]++
	n := d.loads[since]
	d.mu.Unlock()
	rows := 10
	if since == 1000 && n > 1 {
		rows = 2000
	} else if since == 1000 {
		rows = 100
	}
	X, y := synthetic(uint64(since), rows)
	return X, y, desc{Since: since, Rows: rows}, nil
}

func (d *fakeData) count(since int64) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.loads[since]
}

type handled struct {
	cmd schemas.Command
	rec schemas.ModelRecord
	err error
}

func TestTrainer(t *testing.T) {
	f := newFixture(t)
	reg := f.startRegistry(t)
	ctx := ctxT(t)
	fraud := f.cfg.Models[0]

	// Bootstrap publishes v1 once.
	X, y := synthetic(1, 3000)
	v1, published, err := Bootstrap(ctx, f.cfg, reg, fraud, X, y, desc{Rows: 3000}, train.Options{}, nil)
	if err != nil || !published {
		t.Fatalf("bootstrap: %v %v", published, err)
	}
	if v1.Version != 1 || v1.CreatedBy != "bootstrap" || v1.ParentVersion != 0 || !slices.Equal(v1.Aliases, []string{registry.Champion}) {
		t.Fatalf("v1 %+v", v1)
	}
	if again, published, err := Bootstrap(ctx, f.cfg, reg, fraud, X, y, nil, train.Options{}, nil); err != nil || published || again.Version != 1 {
		t.Fatalf("second bootstrap: %v %v v%d", published, err, again.Version)
	}

	clk := &clock{t: time.UnixMilli(1_800_000_000_000)}
	var sleepsMu sync.Mutex
	var sleeps []time.Duration
	data := &fakeData{loads: map[int64]int{}}
	var committedAtC6 int64 // written in OnHandled, read after done
	done := make(chan handled, 8)
	tr, err := NewTrainer(f.cfg, TrainerOptions{
		Kafka: f.kafka, Group: "trainer-" + f.cfg.Topics.Prefix,
		Commands: f.serde(t, f.cfg.CommandsTopic(), schemas.CommandSchema),
		Models:   reg, Data: data, LabelPoll: 30 * time.Second,
		Registerer: prometheus.NewRegistry(), Now: clk.Now,
		Sleep: func(_ context.Context, d time.Duration) error {
			sleepsMu.Lock()
			sleeps = append(sleeps, d)
			sleepsMu.Unlock()
			clk.Advance(d)
			return nil
		},
		OnHandled: func(cmd schemas.Command, rec schemas.ModelRecord, err error) {
			if cmd.CommandID == "c6" {
				committedAtC6 = committed(t, f, "trainer-"+f.cfg.Topics.Prefix)
			}
			done <- handled{cmd, rec, err}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, tr.Run)
	cmds := f.serde(t, f.cfg.CommandsTopic(), schemas.CommandSchema)
	send := func(c schemas.Command) handled {
		t.Helper()
		f.produce(t, f.cfg.CommandsTopic(), cmds, c)
		h := recv(t, done)
		if h.cmd.CommandID != c.CommandID {
			t.Fatalf("handled %s, sent %s", h.cmd.CommandID, c.CommandID)
		}
		return h
	}

	// RETRAIN waits for labels (100 < min_rows 500, then 2000), then
	// publishes v2 as champion with v1 as parent.
	h := send(schemas.Command{CommandID: "c1", Type: schemas.CommandRetrain, ModelName: "fraud", Reason: "alert a1: psi of score", RequestedBy: "policy", TrainSince: 1000})
	if h.err != nil {
		t.Fatal(h.err)
	}
	if n := data.count(1000); n != 2 {
		t.Fatalf("%d loads, want 2", n)
	}
	if !slices.Equal(sleeps, []time.Duration{30 * time.Second}) {
		t.Fatalf("sleeps %v", sleeps)
	}
	v2 := h.rec
	if v2.Version != 2 || v2.ParentVersion != 1 || v2.CreatedBy != "retrain" || v2.Reason != "alert a1: psi of score" ||
		!slices.Equal(v2.Aliases, []string{registry.Champion}) || v2.Format != model.Format {
		t.Fatalf("v2 %+v", v2)
	}
	art, err := registry.Read(v2.ArtifactURI)
	if err != nil {
		t.Fatal(err)
	}
	if model.SHA256(art) != v2.SHA256 {
		t.Fatal("v2 sha256 does not match its artifact")
	}
	if want := []string{"card@" + f.cfg.Views[0].Version()}; !slices.Equal(v2.Views, want) {
		t.Fatalf("views %v, want %v", v2.Views, want)
	}
	var ts desc
	if err := json.Unmarshal([]byte(v2.TrainingSet), &ts); err != nil || ts != (desc{Since: 1000, Rows: 2000}) {
		t.Fatalf("training_set %q: %v", v2.TrainingSet, err)
	}
	prof, err := profile.Parse(v2.ReferenceProfile)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"card.amount", "card.count_1h", profile.ScoreName} {
		if h, ok := prof.Features[name]; !ok || h.Count != 2000 {
			t.Fatalf("profile of %s: %+v", name, h)
		}
	}
	for _, k := range []string{"train_auc", "holdout_auc", "train_log_loss", "train_rows"} {
		if _, ok := v2.Metrics[k]; !ok {
			t.Fatalf("metrics %v lack %s", v2.Metrics, k)
		}
	}
	if l, ok := reg.Champion("fraud"); !ok || l.Record.Version != 2 {
		t.Fatalf("champion after retrain: %+v", l)
	}
	if r1, _ := reg.Get("fraud", 1); len(r1.Aliases) != 0 {
		t.Fatalf("v1 aliases %v", r1.Aliases)
	}

	// RETRAIN without enough labels before label_timeout: a failure, no
	// version.
	sleeps = nil
	h = send(schemas.Command{CommandID: "c2", Type: schemas.CommandRetrain, ModelName: "fraud", TrainSince: 999})
	if h.err == nil || !strings.Contains(h.err.Error(), "10 labelled rows") || !strings.Contains(h.err.Error(), "min_rows is 500") {
		t.Fatalf("err = %v", h.err)
	}
	if n := data.count(999); n != 5 { // at 0, 30, 60, 90 and 120 s
		t.Fatalf("%d loads in 2m at 30s, want 5", n)
	}
	if n := testutil.ToFloat64(tr.failures.WithLabelValues("fraud", "labels")); n != 1 {
		t.Fatalf("failures{labels} = %v", n)
	}
	if n := len(reg.List("fraud")); n != 2 {
		t.Fatalf("%d versions after a failed retrain", n)
	}

	// ROLLBACK with no target: v2 was published as champion over its
	// parent, so back to v1. The move is recorded in v1's moves with the
	// command's requester and reason; v1's own reason stays.
	h = send(schemas.Command{CommandID: "c3", Type: schemas.CommandRollback, ModelName: "fraud", Reason: "v2 degraded", RequestedBy: "oncall"})
	if h.err != nil {
		t.Fatal(h.err)
	}
	if h.rec.Version != 1 || h.rec.Reason != v1.Reason {
		t.Fatalf("rollback wrote %+v", h.rec)
	}
	checkMove(t, h.rec, "rollback champion v2->v1 by oncall (previous none): v2 degraded")
	if l, _ := reg.Champion("fraud"); l.Record.Version != 1 {
		t.Fatalf("champion v%d after rollback", l.Record.Version)
	}
	// No holder is recorded before v1 and it has no parent: a second
	// rollback fails and moves nothing.
	if h = send(schemas.Command{CommandID: "c4", Type: schemas.CommandRollback, ModelName: "fraud"}); !errors.Is(h.err, registry.ErrNoPrevious) {
		t.Fatalf("rollback past v1: %v", h.err)
	}
	// PROMOTE v2, without a requester or reason: the command stands in.
	if h = send(schemas.Command{CommandID: "c5", Type: schemas.CommandPromote, ModelName: "fraud", TargetVersion: 2}); h.err != nil {
		t.Fatal(h.err)
	}
	checkMove(t, h.rec, "promote champion v1->v2 by weir.commands: PROMOTE command c5")
	if l, _ := reg.Champion("fraud"); l.Record.Version != 2 || h.rec.Reason != v2.Reason {
		t.Fatalf("champion v%d after promote, v2 reason %q", l.Record.Version, h.rec.Reason)
	}
	if n := testutil.ToFloat64(tr.commands.WithLabelValues(schemas.CommandRetrain, "ok")); n != 1 {
		t.Fatalf("commands{RETRAIN,ok} = %v", n)
	}

	// Commands are committed after handling: while c6 is being handled,
	// the group's offset covers c1..c5 and not c6.
	h = send(schemas.Command{CommandID: "c6", Type: schemas.CommandPromote, ModelName: "fraud"})
	if h.err == nil || !strings.Contains(h.err.Error(), "needs a target") {
		t.Fatalf("promote without target: %v", h.err)
	}
	if committedAtC6 != 5 {
		t.Fatalf("committed offset while handling c6 = %d, want 5", committedAtC6)
	}

	// A ROLLBACK after a promote made elsewhere (weir models promote)
	// goes where that promote recorded, not to the parent: v3, child of
	// v1, is promoted over v2, and the command goes back to v2; the next
	// walks on to v1 (v2's previous, from c5), the next finds nothing.
	art1, err := registry.Read(v1.ArtifactURI)
	if err != nil {
		t.Fatal(err)
	}
	v3, err := reg.Publish(ctx, schemas.ModelRecord{Name: "fraud", Features: v1.Features, CreatedBy: "test", Reason: "v3's own", ParentVersion: 1}, art1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := registry.Promote(ctx, reg, "fraud", registry.Champion, 3, "alice", "by hand"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id   string
		want int32
		move string
	}{
		{"c7", 2, "rollback champion v3->v2 by oncall (previous v1): c7"},
		{"c8", 1, "rollback champion v2->v1 by oncall (previous none): c8"},
	} {
		h = send(schemas.Command{CommandID: c.id, Type: schemas.CommandRollback, ModelName: "fraud", Reason: c.id, RequestedBy: "oncall"})
		if h.err != nil || h.rec.Version != c.want {
			t.Fatalf("%s: rolled back to v%d (%v), want v%d", c.id, h.rec.Version, h.err, c.want)
		}
		checkMove(t, h.rec, c.move)
		if l, _ := reg.Champion("fraud"); l.Record.Version != c.want {
			t.Fatalf("%s: champion v%d, want v%d", c.id, l.Record.Version, c.want)
		}
	}
	if h = send(schemas.Command{CommandID: "c9", Type: schemas.CommandRollback, ModelName: "fraud", RequestedBy: "oncall"}); !errors.Is(h.err, registry.ErrNoPrevious) {
		t.Fatalf("c9: %v", h.err)
	}

	// The target is verified before the alias moves: a PROMOTE and a
	// ROLLBACK to v3, whose artifact changed, fail and v1 keeps it.
	if err := os.WriteFile(strings.TrimPrefix(v3.ArtifactURI, "file://"), []byte(`{"tampered":true}`), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []schemas.Command{
		{CommandID: "c10", Type: schemas.CommandPromote, ModelName: "fraud", TargetVersion: 3},
		{CommandID: "c11", Type: schemas.CommandRollback, ModelName: "fraud", TargetVersion: 3},
	} {
		if h = send(c); !errors.Is(h.err, registry.ErrChecksum) {
			t.Fatalf("%s to a tampered v3: %v", c.CommandID, h.err)
		}
		if v, _ := reg.Alias("fraud", registry.Champion); v != 1 {
			t.Fatalf("%s: champion alias on v%d, want v1 kept", c.CommandID, v)
		}
	}
	if n := testutil.ToFloat64(tr.failures.WithLabelValues("fraud", "alias")); n != 5 { // c4, c6, c9, c10, c11
		t.Fatalf("failures{alias} = %v, want 5", n)
	}
}

// checkMove checks the champion move recorded in rec.
func checkMove(t *testing.T, rec schemas.ModelRecord, want string) {
	t.Helper()
	m, ok := registry.MoveOf(rec, registry.Champion)
	if !ok || m.String() != want || m.At.IsZero() {
		t.Fatalf("v%d records move %q (%v), want %q", rec.Version, m, ok, want)
	}
}

// committed returns the group's committed offset of the commands topic.
func committed(t *testing.T, f *fixture, group string) int64 {
	cl, err := kgo.NewClient(f.kafka...)
	if err != nil {
		t.Error(err)
		return -1
	}
	defer cl.Close()
	offs, err := kadm.NewClient(cl).FetchOffsets(ctxT(t), group)
	if err != nil {
		t.Error(err)
		return -1
	}
	o, ok := offs.Lookup(f.cfg.CommandsTopic(), 0)
	if !ok {
		return -1
	}
	return o.At
}
