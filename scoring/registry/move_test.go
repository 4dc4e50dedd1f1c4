package registry

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring/model"
)

// TestMoveReason: every Move renders to a text that ParseMove reads back
// to the same Move (records written before moves had a field hold it in
// their reason), and reasons not written by Move.String do not parse.
func TestMoveReason(t *testing.T) {
	for _, c := range []struct {
		m    Move
		want string
	}{
		{Move{Action: ActionPromote, Alias: "champion", From: 2, To: 3, Previous: 2, By: "alice", Why: "new features"},
			"promote champion v2->v3 by alice: new features"},
		{Move{Action: ActionPromote, Alias: "challenger", To: 1, By: "ci job 7", Why: "a: b (c)\nsecond line"},
			"promote challenger none->v1 by ci job 7: a: b (c)\nsecond line"},
		{Move{Action: ActionRollback, Alias: "champion", From: 3, To: 2, Previous: 1, By: "bob", Why: "AUC fell"},
			"rollback champion v3->v2 by bob (previous v1): AUC fell"},
		{Move{Action: ActionRollback, Alias: "champion", From: 12, To: 10, By: "bob", Why: "x"},
			"rollback champion v12->v10 by bob (previous none): x"},
		{Move{Action: ActionPromote, Alias: "champion", From: 4, To: 4, Previous: 1, By: "bob", Why: "again"},
			"promote champion v4->v4 by bob (previous v1): again"},
	} {
		if got := c.m.String(); got != c.want {
			t.Errorf("String() = %q, want %q", got, c.want)
		}
		back, ok := ParseMove(c.want)
		if !ok || back != c.m {
			t.Errorf("ParseMove(%q) = %+v, %v; want %+v", c.want, back, ok, c.m)
		}
	}
	for _, r := range []string{
		"", "bootstrap: no version of the model existed", "rollback: v2 degraded", "promote: requested by policy",
		"promote champion 2->3 by a: x", "promote champion v2->v3 by a", "demote champion v2->v3 by a: x",
		"promote champion v2->v3 by a (previous 1): x",
	} {
		if m, ok := ParseMove(r); ok {
			t.Errorf("ParseMove(%q) = %+v, want no move", r, m)
		}
	}
}

// TestPromoteRollback walks a champion through promotes and rollbacks on
// Kafka: each moves the alias (the serving champion follows), records
// the move (who, why, from, previous) in the target's moves and leaves
// its own reason alone, refuses a tampered target or a stale From
// without moving, and rollbacks walk back through the recorded holders
// rather than undoing each other. History then reads the same timeline
// from the topic, and a second registry replaying it agrees.
func TestPromoteRollback(t *testing.T) {
	f := newFixture(t)
	r := f.start(t)
	ctx := ctxT(t)
	for i, champ := range []bool{true, false, false, false} {
		rec := schemas.ModelRecord{Name: "fraud", CreatedBy: "test", Reason: "v" + string(rune('1'+i)), ParentVersion: int32(i)}
		if champ {
			rec.Aliases = []string{Champion}
		}
		if _, err := r.Publish(ctx, rec, artifact(t, -float64(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	// v4's artifact is tampered with after publishing.
	if err := os.WriteFile(f.blobs.Path("fraud", 4, model.Format), artifact(t, 99), 0o644); err != nil {
		t.Fatal(err)
	}

	step := func(what string, got Move, err error, from, to, previous int32) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got.From != from || got.To != to || got.Previous != previous {
			t.Fatalf("%s: moved %+v, want v%d->v%d previous v%d", what, got, from, to, previous)
		}
		if c := champion(t, r); c != to {
			t.Fatalf("%s: serving v%d, want v%d", what, c, to)
		}
		rec, _ := r.Get("fraud", to)
		if want := "v" + string(rune('0'+to)); rec.Reason != want {
			t.Fatalf("%s: v%d reason %q, want its own %q kept", what, to, rec.Reason, want)
		}
		rm, ok := MoveOf(rec, Champion)
		if !ok || rm.At.IsZero() || rm.At.After(time.Now()) || rm.Model != "fraud" {
			t.Fatalf("%s: v%d records move %+v (%v)", what, to, rm, ok)
		}
		if rm.At = (time.Time{}); rm != got {
			t.Fatalf("%s: v%d records move %+v, want %+v", what, to, rm, got)
		}
		if last, _ := LastMove(rec); last.String() != got.String() {
			t.Fatalf("%s: v%d last move %q, want %q", what, to, last, got)
		}
	}
	m, err := Promote(ctx, r, "fraud", Champion, 2, "alice", "better AUC")
	step("promote v2", m, err, 1, 2, 1)
	m, err = Promote(ctx, r, "fraud", Champion, 3, "alice", "newer")
	step("promote v3", m, err, 2, 3, 2)

	// Refusals move nothing.
	for _, c := range []struct {
		what string
		err  error
		want error
		msg  string
	}{
		{"tampered", func() error { _, err := Promote(ctx, r, "fraud", Champion, 4, "alice", "x"); return err }(), ErrChecksum, "v4"},
		{"missing", func() error { _, err := Promote(ctx, r, "fraud", Champion, 9, "alice", "x"); return err }(), ErrNoVersion, "v9"},
		{"no reason", func() error { _, err := Promote(ctx, r, "fraud", Champion, 2, "alice", " "); return err }(), nil, "a reason is required"},
		{"no by", func() error { _, err := Promote(ctx, r, "fraud", Champion, 2, " ", "x"); return err }(), nil, "by"},
		{"stale from", func() error {
			_, err := r.MoveAlias(ctx, Move{Action: ActionPromote, Model: "fraud", Alias: Champion, From: 2, To: 1, Previous: 2, By: "alice", Why: "x"})
			return err
		}(), ErrAliasMoved, "v3 holds it, not v2"},
		{"bad action", func() error {
			_, err := r.MoveAlias(ctx, Move{Action: "demote", Model: "fraud", Alias: Champion, From: 3, To: 1, By: "alice", Why: "x"})
			return err
		}(), nil, "action"},
		{"rollback to holder", func() error { _, err := Rollback(ctx, r, "fraud", Champion, 3, "alice", "x"); return err }(), nil, "already holds"},
		{"rollback to tampered", func() error { _, err := Rollback(ctx, r, "fraud", Champion, 4, "alice", "x"); return err }(), ErrChecksum, "v4"},
	} {
		if c.err == nil || (c.want != nil && !errors.Is(c.err, c.want)) || !strings.Contains(c.err.Error(), c.msg) {
			t.Errorf("%s: err = %v, want %v naming %q", c.what, c.err, c.want, c.msg)
		}
		if v, _ := r.Alias("fraud", Champion); v != 3 || champion(t, r) != 3 {
			t.Fatalf("%s: champion alias v%d, want v3 kept", c.what, v)
		}
	}

	m, err = Promote(ctx, r, "fraud", Champion, 3, "alice", "again")
	if err != nil || m.From != 3 || m.To != 3 {
		t.Fatalf("promote the holder: %+v, %v", m, err)
	}
	m, err = Rollback(ctx, r, "fraud", Champion, 0, "alice", "v3 is bad")
	step("rollback", m, err, 3, 2, 1)
	m, err = Rollback(ctx, r, "fraud", Champion, 0, "alice", "v2 is bad too")
	step("rollback again", m, err, 2, 1, 0)
	if _, err := Rollback(ctx, r, "fraud", Champion, 0, "alice", "and again"); !errors.Is(err, ErrNoPrevious) {
		t.Fatalf("rollback past the first champion: %v", err)
	}
	m, err = Rollback(ctx, r, "fraud", Champion, 3, "alice", "v3 after all")
	step("rollback -to v3", m, err, 1, 3, 2) // v3 took over from v2 when it was promoted
	m, err = Rollback(ctx, r, "fraud", Champion, 0, "alice", "last")
	step("rollback from v3", m, err, 3, 2, 1)

	recs, err := ReadTopic(ctx, []kgo.Opt{kgo.SeedBrokers(f.seeds...)}, f.topic, f.serde)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range History(recs, "fraud") {
		got = append(got, strings.Join([]string{c.Alias, vname(c.From), vname(c.To), c.Action, c.By, c.Reason}, " "))
		if c.At.IsZero() {
			t.Errorf("change %+v without a time", c)
		}
	}
	want := []string{
		"champion none v1 publish test v1",
		"champion v1 v2 promote alice better AUC",
		"champion v2 v3 promote alice newer",
		"champion v3 v2 rollback alice v3 is bad",
		"champion v2 v1 rollback alice v2 is bad too",
		"champion v1 v3 rollback alice v3 after all",
		"champion v3 v2 rollback alice last",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("history:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if h := History(recs, "other"); len(h) != 0 {
		t.Fatalf("history of another model: %v", h)
	}
	if got := champion(t, f.start(t)); got != 2 {
		t.Fatalf("replayed champion v%d, want v2", got)
	}
}

// TestHistoryCompacted: after compaction only each version's latest
// record is left; History still names the move that gave the holder its
// alias (recorded in its moves, or in its reason by a writer from before
// moves existed), and a tombstone of the holder releases it.
func TestHistoryCompacted(t *testing.T) {
	rec := func(v int32, reason string, aliases ...string) TopicRecord {
		return TopicRecord{Key: Key("fraud", v), Record: &schemas.ModelRecord{Name: "fraud", Version: v, Reason: reason, CreatedBy: "trainer", Aliases: aliases}}
	}
	recs := []TopicRecord{
		rec(1, "first"),
		rec(2, "retrain"),
		rec(3, "promote champion v2->v3 by carol: fix", Champion),
		{Key: Key("other", 1), Record: &schemas.ModelRecord{Name: "other", Version: 1, Aliases: []string{Champion}}},
		rec(4, "shadow it", "shadow"),
		{Key: Key("fraud", 5), Record: &schemas.ModelRecord{Name: "fraud", Version: 5, Reason: "its own", CreatedBy: "trainer", Aliases: []string{"shadow"},
			Moves: []schemas.AliasMove{
				{Alias: Champion, Action: ActionRollback, FromVersion: 6, By: "erin", Reason: "an older move", At: 1},
				{Alias: "shadow", Action: ActionPromote, FromVersion: 4, PreviousVersion: 4, By: "dave", Reason: "better", At: 2},
			}}},
		{Key: Key("fraud", 3)}, // tombstone
	}
	for i := range recs {
		recs[i].Offset = int64(i)
	}
	var got []string
	for _, c := range History(recs, "fraud") {
		got = append(got, strings.Join([]string{c.Alias, vname(c.From), vname(c.To), c.Action, c.By, c.Reason}, " "))
	}
	want := []string{
		"champion v2 v3 promote carol fix",
		"shadow none v4 publish trainer shadow it",
		"shadow v4 v5 promote dave better",
		"champion v3 none release  ",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("history:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
