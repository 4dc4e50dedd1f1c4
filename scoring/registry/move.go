package registry

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/weirhq/weir/schemas"
)

// Actions of a Move.
const (
	ActionPromote  = "promote"
	ActionRollback = "rollback"
)

var (
	// ErrNoPrevious: a rollback without a target, and the alias holder's
	// record names no earlier holder to go back to.
	ErrNoPrevious = errors.New("no earlier holder recorded")
	// ErrAliasMoved: MoveAlias of a Move whose From no longer holds the
	// alias (another move came first).
	ErrAliasMoved = errors.New("the alias moved meanwhile")
)

// Move is one alias move, made by Promote or Rollback (the CLI's and the
// trainer's commands). MoveAlias records it in the moves of the record of
// the version that gains the alias (a schemas.AliasMove per alias), beside
// the version's own reason, so that it survives compaction with that
// record and a rollback knows where to go.
type Move struct {
	Action string `json:"action"` // ActionPromote or ActionRollback
	Model  string `json:"model"`
	Alias  string `json:"alias"`
	// From is the version that held the alias before (0: none); To the
	// version that holds it now. From == To: nothing moved.
	From int32 `json:"from"`
	To   int32 `json:"to"`
	// Previous is where a rollback from To goes: From after a promote;
	// after a rollback, the version that held the alias before To last
	// gained it (0: none recorded).
	Previous int32  `json:"previous"`
	By       string `json:"by"`
	Why      string `json:"why"`
	// At is when MoveAlias recorded it (zero for a move read from an
	// old record's reason).
	At time.Time `json:"at"`
}

// String renders m for a person:
//
//	promote champion v2->v3 by alice: new features
//	rollback champion v3->v2 by bob (previous v1): AUC fell 4 points
//
// Records written before schemas.ModelRecord had moves hold this text as
// their reason; ParseMove reads it back.
func (m Move) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s->v%d by %s", m.Action, m.Alias, vname(m.From), m.To, m.By)
	if m.Action != ActionPromote || m.Previous != m.From {
		fmt.Fprintf(&b, " (previous %s)", vname(m.Previous))
	}
	b.WriteString(": ")
	b.WriteString(m.Why)
	return b.String()
}

func vname(v int32) string {
	if v == 0 {
		return "none"
	}
	return "v" + strconv.Itoa(int(v))
}

// record is m as the target record's moves entry.
func (m Move) record() schemas.AliasMove {
	return schemas.AliasMove{Alias: m.Alias, Action: m.Action, FromVersion: m.From, PreviousVersion: m.Previous,
		By: m.By, Reason: m.Why, At: m.At.UnixMilli()}
}

var moveRE = regexp.MustCompile(`^(promote|rollback) (\S+) (none|v\d+)->v(\d+) by ([^:()\n]*?)(?: \(previous (none|v\d+)\))?: ((?s).*)$`)

// ParseMove reads a reason written by Move.String, as records written
// before schemas.ModelRecord had moves hold it; ok is false for any other
// reason (a version's own reason, an old trainer's "rollback: ...").
// Model is left empty.
func ParseMove(reason string) (m Move, ok bool) {
	s := moveRE.FindStringSubmatch(reason)
	if s == nil {
		return Move{}, false
	}
	parse := func(v string) (int32, bool) {
		if v == "none" {
			return 0, true
		}
		n, err := strconv.ParseInt(strings.TrimPrefix(v, "v"), 10, 32)
		return int32(n), err == nil
	}
	m = Move{Action: s[1], Alias: s[2], By: s[5], Why: s[7]}
	var ok1, ok2, ok3 bool
	m.From, ok1 = parse(s[3])
	m.To, ok2 = parse("v" + s[4])
	m.Previous, ok3 = m.From, true
	if s[6] != "" {
		m.Previous, ok3 = parse(s[6])
	}
	return m, ok1 && ok2 && ok3
}

// MoveOf returns the last move recorded in rec that gave its version
// alias: its moves entry for alias, or, in a record written before moves
// existed, a move in its reason (see ParseMove).
func MoveOf(rec schemas.ModelRecord, alias string) (Move, bool) {
	for i := len(rec.Moves) - 1; i >= 0; i-- {
		if rec.Moves[i].Alias == alias {
			return fromRecord(rec, rec.Moves[i]), true
		}
	}
	if m, ok := ParseMove(rec.Reason); ok && m.Alias == alias && m.To == rec.Version {
		m.Model = rec.Name
		return m, true
	}
	return Move{}, false
}

// LastMove returns the latest move recorded in rec, of any alias (see
// MoveOf).
func LastMove(rec schemas.ModelRecord) (Move, bool) {
	best := -1
	for i, am := range rec.Moves {
		if best < 0 || am.At >= rec.Moves[best].At {
			best = i
		}
	}
	if best >= 0 {
		return fromRecord(rec, rec.Moves[best]), true
	}
	if m, ok := ParseMove(rec.Reason); ok && m.To == rec.Version {
		m.Model = rec.Name
		return m, true
	}
	return Move{}, false
}

// OwnReason reports whether rec.Reason is why the version was created:
// false for a record written before moves existed whose reason a move
// overwrote.
func OwnReason(rec schemas.ModelRecord) bool {
	m, ok := ParseMove(rec.Reason)
	return !ok || m.To != rec.Version
}

func fromRecord(rec schemas.ModelRecord, am schemas.AliasMove) Move {
	return Move{Action: am.Action, Model: rec.Name, Alias: am.Alias, From: am.FromVersion, To: rec.Version,
		Previous: am.PreviousVersion, By: am.By, Why: am.Reason, At: time.UnixMilli(am.At).UTC()}
}

// previous is where a rollback of alias from rec's version goes: the
// Previous of the move that gave it the alias, when one is recorded, else
// its parent version (a version published with the alias, such as a
// retrain's, replaced its parent), else 0.
func previous(rec schemas.ModelRecord, alias string) int32 {
	if m, ok := MoveOf(rec, alias); ok {
		return m.Previous
	}
	return rec.ParentVersion
}

// Mover is what Promote and Rollback need of a registry; *Registry
// implements it.
type Mover interface {
	Alias(name, alias string) (int32, bool)
	Get(name string, version int32) (schemas.ModelRecord, bool)
	MoveAlias(ctx context.Context, m Move) (schemas.ModelRecord, error)
}

var _ Mover = (*Registry)(nil)

// Promote points alias of model at version to, recording who asked and
// why. The target's artifact is verified before anything is written
// (MoveAlias): a version that would not serve is refused and the alias
// stays where it was. Promoting the version that already holds the alias
// writes nothing and returns a Move with From == To.
func Promote(ctx context.Context, r Mover, model, alias string, to int32, by, why string) (Move, error) {
	fail := func(err error) (Move, error) {
		return Move{}, fmt.Errorf("registry: promote %s %s to v%d: %w", model, alias, to, err)
	}
	m := Move{Action: ActionPromote, Model: model, Alias: alias, To: to, By: by, Why: why}
	if err := checkMove(m); err != nil {
		return fail(err)
	}
	rec, ok := r.Get(model, to)
	if !ok {
		return fail(ErrNoVersion)
	}
	m.From, _ = r.Alias(model, alias)
	m.Previous = m.From
	if m.From == to {
		m.Previous = previous(rec, alias)
	}
	// When From == To, MoveAlias still verifies the artifact and writes
	// nothing.
	if _, err := r.MoveAlias(ctx, m); err != nil {
		return fail(err)
	}
	return m, nil
}

// Rollback points alias of model back at version to, or, when to is 0, at
// the version that held it before the current holder gained it (see
// [Move] Previous; for a holder that no move recorded there, its parent
// version). It returns ErrNoPrevious when none is recorded. The target is
// verified first, as Promote does. After a rollback the target's Previous
// is its own earlier one, so repeated rollbacks walk further back rather
// than undoing each other.
func Rollback(ctx context.Context, r Mover, model, alias string, to int32, by, why string) (Move, error) {
	fail := func(err error) (Move, error) {
		return Move{}, fmt.Errorf("registry: rollback %s %s: %w", model, alias, err)
	}
	m := Move{Action: ActionRollback, Model: model, Alias: alias, To: to, By: by, Why: why}
	if err := checkMove(m); err != nil {
		return fail(err)
	}
	cur, ok := r.Alias(model, alias)
	if !ok {
		return fail(fmt.Errorf("no version holds %s", alias))
	}
	if to == 0 {
		rec, _ := r.Get(model, cur)
		if to = previous(rec, alias); to == 0 {
			return fail(fmt.Errorf("v%d: %w (no move recorded the holder before it and it has no parent); name the version", cur, ErrNoPrevious))
		}
	}
	if to == cur {
		return fail(fmt.Errorf("v%d already holds %s", to, alias))
	}
	target, ok := r.Get(model, to)
	if !ok {
		return fail(fmt.Errorf("v%d: %w", to, ErrNoVersion))
	}
	m.From, m.To, m.Previous = cur, to, previous(target, alias)
	if m.Previous == to || m.Previous == cur {
		// A record that points at itself or back at what is rolled
		// away from is no way back.
		m.Previous = 0
	}
	if _, err := r.MoveAlias(ctx, m); err != nil {
		return fail(err)
	}
	return m, nil
}

// checkMove refuses a move that could not be recorded readably.
func checkMove(m Move) error {
	switch {
	case m.Action != ActionPromote && m.Action != ActionRollback:
		return fmt.Errorf("action %q: %s or %s", m.Action, ActionPromote, ActionRollback)
	case m.Alias == "" || strings.ContainsAny(m.Alias, " \t\n"):
		return fmt.Errorf("alias %q: one word", m.Alias)
	case strings.TrimSpace(m.By) == "" || strings.Contains(m.By, "\n"):
		return fmt.Errorf("by %q: say who, on one line", m.By)
	case strings.TrimSpace(m.Why) == "":
		return errors.New("a reason is required")
	}
	return nil
}
