package retrain

import (
	"context"
	"encoding/json"
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

	// ROLLBACK with no target: back to v2's parent, v1.
	h = send(schemas.Command{CommandID: "c3", Type: schemas.CommandRollback, ModelName: "fraud", Reason: "v2 degraded", RequestedBy: "oncall"})
	if h.err != nil {
		t.Fatal(h.err)
	}
	if h.rec.Version != 1 || h.rec.Reason != "rollback: v2 degraded" {
		t.Fatalf("rollback wrote %+v", h.rec)
	}
	if l, _ := reg.Champion("fraud"); l.Record.Version != 1 {
		t.Fatalf("champion v%d after rollback", l.Record.Version)
	}
	// v1 has no parent: a second rollback fails.
	if h = send(schemas.Command{CommandID: "c4", Type: schemas.CommandRollback, ModelName: "fraud"}); h.err == nil || !strings.Contains(h.err.Error(), "no parent") {
		t.Fatalf("rollback past v1: %v", h.err)
	}
	// PROMOTE v2.
	if h = send(schemas.Command{CommandID: "c5", Type: schemas.CommandPromote, ModelName: "fraud", TargetVersion: 2}); h.err != nil {
		t.Fatal(h.err)
	}
	if l, _ := reg.Champion("fraud"); l.Record.Version != 2 {
		t.Fatalf("champion v%d after promote", l.Record.Version)
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
