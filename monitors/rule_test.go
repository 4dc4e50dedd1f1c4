package monitors

import (
	"math"
	"testing"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
)

// TestRuleHysteresis feeds one value per evaluated window (window i starts
// at i*10) and checks every state change.
func TestRuleHysteresis(t *testing.T) {
	type change struct {
		window  int // index of the window that changed the state
		state   string
		windows int32
		since   int64
	}
	nan := math.NaN()
	for _, c := range []struct {
		name   string
		rule   config.Rule
		values []float64
		want   []change
	}{
		{
			name:   "fires after For windows, once",
			rule:   config.Rule{Op: ">", Threshold: 0.2, For: 2},
			values: []float64{0.1, 0.3, 0.3, 0.3, 0.3},
			want:   []change{{2, schemas.AlertFiring, 2, 10}},
		},
		{
			name:   "a broken run does not fire",
			rule:   config.Rule{Op: ">", Threshold: 0.2, For: 3},
			values: []float64{0.3, 0.3, 0.1, 0.3, 0.3, 0.1},
		},
		{
			name:   "resolves after For windows not holding",
			rule:   config.Rule{Op: ">", Threshold: 0.2, For: 2},
			values: []float64{0.3, 0.3, 0.1, 0.3, 0.1, 0.1, 0.1},
			want:   []change{{1, schemas.AlertFiring, 2, 0}, {5, schemas.AlertResolved, 2, 40}},
		},
		{
			name:   "at the threshold does not hold",
			rule:   config.Rule{Op: ">", Threshold: 0.2, For: 1},
			values: []float64{0.2, 0.2000001, 0.2},
			want:   []change{{1, schemas.AlertFiring, 1, 10}, {2, schemas.AlertResolved, 1, 20}},
		},
		{
			name:   "below, for AUC",
			rule:   config.Rule{Op: "<", Threshold: 0.7, For: 2},
			values: []float64{0.9, 0.6, 0.65, 0.8, 0.5, 0.75, 0.72},
			want:   []change{{2, schemas.AlertFiring, 2, 10}, {6, schemas.AlertResolved, 2, 50}},
		},
		{
			name:   "NaN never holds",
			rule:   config.Rule{Op: "<", Threshold: 0.7, For: 1},
			values: []float64{0.5, nan},
			want:   []change{{0, schemas.AlertFiring, 1, 0}, {1, schemas.AlertResolved, 1, 10}},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.rule.Name, c.rule.Metric = "r", "psi"
			s := &ruleState{rule: c.rule}
			var got []change
			for i, v := range c.values {
				if s.observe(v, int64(i*10)) {
					a := s.alert("m", "fraud", 1, v, int64(i*10+10), "ref")
					if a.At != int64(i*10+10) || a.Value != v && !math.IsNaN(v) || a.Threshold != c.rule.Threshold || a.Rule != "r" {
						t.Errorf("window %d: alert %+v", i, a)
					}
					got = append(got, change{i, a.State, a.Windows, a.Since})
				}
			}
			if len(got) != len(c.want) {
				t.Fatalf("changes %+v, want %+v", got, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Errorf("change %d: %+v, want %+v", i, got[i], c.want[i])
				}
			}
		})
	}
}
