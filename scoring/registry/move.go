package registry

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/weirhq/weir/schemas"
)

// Actions of a Move.
const (
	ActionPromote  = "promote"
	ActionRollback = "rollback"
)

// ErrNoPrevious: a rollback without a target, and the alias holder's
// record names no earlier holder to go back to.
var ErrNoPrevious = errors.New("no earlier holder recorded")

// Move is one alias move made by Promote or Rollback. It is recorded as
// the Reason of the record of the version that gains the alias (see
// [Move.Reason]), so that it survives compaction with that record:
//
//	promote champion v2->v3 by alice: new features
//	rollback champion v3->v2 by bob (previous v1): AUC fell 4 points
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
}

// Reason renders m as the Reason of the target's record. ParseMove reads
// it back.
func (m Move) Reason() string {
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

var moveRE = regexp.MustCompile(`^(promote|rollback) (\S+) (none|v\d+)->v(\d+) by ([^:()\n]*?)(?: \(previous (none|v\d+)\))?: ((?s).*)$`)

// ParseMove reads a record Reason written by Move.Reason; ok is false for
// any other reason (a version's own reason, a trainer's "rollback: ...").
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

// previous is where a rollback of alias from rec's version goes: the
// Previous of the move recorded in its Reason when that move gave it the
// alias, else its parent version (what the trainer's ROLLBACK uses), else
// 0.
func previous(rec schemas.ModelRecord, alias string) int32 {
	if m, ok := ParseMove(rec.Reason); ok && m.Alias == alias && m.To == rec.Version {
		return m.Previous
	}
	return rec.ParentVersion
}

// Mover is what Promote and Rollback need of a registry; *Registry
// implements it.
type Mover interface {
	Alias(name, alias string) (int32, bool)
	Get(name string, version int32) (schemas.ModelRecord, bool)
	MoveAlias(ctx context.Context, name, alias string, version int32, reason string) (schemas.ModelRecord, error)
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
	if err := checkMove(alias, by, why); err != nil {
		return fail(err)
	}
	if _, ok := r.Get(model, to); !ok {
		return fail(ErrNoVersion)
	}
	from, _ := r.Alias(model, alias)
	m := Move{Action: ActionPromote, Model: model, Alias: alias, From: from, To: to, Previous: from, By: by, Why: why}
	if from == to {
		m.Previous = 0
		if rec, ok := r.Get(model, to); ok {
			m.Previous = previous(rec, alias)
		}
		// MoveAlias still verifies the artifact and writes nothing.
		if _, err := r.MoveAlias(ctx, model, alias, to, m.Reason()); err != nil {
			return fail(err)
		}
		return m, nil
	}
	if _, err := r.MoveAlias(ctx, model, alias, to, m.Reason()); err != nil {
		return fail(err)
	}
	return m, nil
}

// Rollback points alias of model back at version to, or, when to is 0, at
// the version that held it before the current holder gained it (see
// [Move] Previous; for a holder that no Promote or Rollback moved there,
// its parent version). It returns ErrNoPrevious when none is recorded.
// The target is verified first, as Promote does. After a rollback the
// target's Previous is its own earlier one, so repeated rollbacks walk
// further back rather than undoing each other.
func Rollback(ctx context.Context, r Mover, model, alias string, to int32, by, why string) (Move, error) {
	fail := func(err error) (Move, error) {
		return Move{}, fmt.Errorf("registry: rollback %s %s: %w", model, alias, err)
	}
	if err := checkMove(alias, by, why); err != nil {
		return fail(err)
	}
	cur, ok := r.Alias(model, alias)
	if !ok {
		return fail(fmt.Errorf("no version holds %s", alias))
	}
	if to == 0 {
		rec, _ := r.Get(model, cur)
		if to = previous(rec, alias); to == 0 {
			return fail(fmt.Errorf("v%d: %w (it was not moved there by promote or rollback and has no parent); name the version", cur, ErrNoPrevious))
		}
	}
	if to == cur {
		return fail(fmt.Errorf("v%d already holds %s", to, alias))
	}
	target, ok := r.Get(model, to)
	if !ok {
		return fail(fmt.Errorf("v%d: %w", to, ErrNoVersion))
	}
	m := Move{Action: ActionRollback, Model: model, Alias: alias, From: cur, To: to, Previous: previous(target, alias), By: by, Why: why}
	if m.Previous == to || m.Previous == cur {
		// A record that points at itself or back at what is rolled
		// away from is no way back.
		m.Previous = 0
	}
	if _, err := r.MoveAlias(ctx, model, alias, to, m.Reason()); err != nil {
		return fail(err)
	}
	return m, nil
}

// checkMove refuses a move that could not be recorded readably.
func checkMove(alias, by, why string) error {
	switch {
	case alias == "" || strings.ContainsAny(alias, " \t\n"):
		return fmt.Errorf("alias %q: one word", alias)
	case by == "" || strings.ContainsAny(by, ":()\n"):
		return fmt.Errorf("by %q: say who (no ':', '(', ')' or newline)", by)
	case strings.TrimSpace(why) == "":
		return errors.New("a reason is required")
	}
	return nil
}
