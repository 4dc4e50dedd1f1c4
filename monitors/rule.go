package monitors

import (
	"fmt"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
)

// ruleState is one rule's hysteresis: the rule fires after it held in For
// consecutive evaluated windows and resolves after it did not hold in For
// consecutive evaluated windows. Windows that are not evaluated (too few
// predictions, no reference, AUC undefined) neither extend nor break a run.
type ruleState struct {
	rule    config.Rule
	firing  bool
	runHeld bool  // whether the current run is of windows where the rule held
	run     int   // length of the current run
	since   int64 // start of the first window of the current run (Unix ms)
}

// holds reports whether value op threshold. NaN never holds.
func holds(r config.Rule, value float64) bool {
	switch r.Op {
	case ">":
		return value > r.Threshold
	case "<":
		return value < r.Threshold
	}
	return false
}

// observe feeds the value of one evaluated window [start, end) and reports
// whether the rule changed state.
func (s *ruleState) observe(value float64, start int64) (changed bool) {
	held := holds(s.rule, value)
	if s.run == 0 || held != s.runHeld {
		s.runHeld, s.run, s.since = held, 0, start
	}
	s.run++
	if s.run >= max(s.rule.For, 1) && held != s.firing {
		s.firing = held
		return true
	}
	return false
}

// alert is the record of the state change observe just reported.
func (s *ruleState) alert(monitor, model string, version int32, value float64, end int64, reference string) schemas.Alert {
	state := schemas.AlertResolved
	if s.firing {
		state = schemas.AlertFiring
	}
	return schemas.Alert{
		AlertID:      fmt.Sprintf("%s/%s/%d/%s", monitor, s.rule.Name, end, state),
		Monitor:      monitor,
		Rule:         s.rule.Name,
		State:        state,
		ModelName:    model,
		ModelVersion: version,
		Metric:       s.rule.Metric,
		Feature:      s.rule.Feature,
		Value:        value,
		Threshold:    s.rule.Threshold,
		Windows:      int32(s.run),
		Since:        s.since,
		At:           end,
		Reference:    reference,
	}
}
