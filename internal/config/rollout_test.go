package config

import (
	"reflect"
	"testing"
	"time"
)

// TestRolloutDefaults checks what testdata/rollout.good.yaml's rollouts
// become once defaults are applied.
func TestRolloutDefaults(t *testing.T) {
	c, err := Load("testdata/rollout.good.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	floor := 0.05
	want := map[string]Rollout{
		"fraud":        {Strategy: RolloutChampion, Arms: []Arm{{Alias: "champion"}}},
		"fraud_shadow": {Strategy: RolloutShadow, Arms: []Arm{{Alias: "champion"}, {Alias: "challenger"}}},
		"fraud_canary": {Strategy: RolloutCanary, Arms: []Arm{{Alias: "champion"}, {Alias: "challenger"}}, Percent: 12.5},
		"fraud_ab":     {Strategy: RolloutAB, Arms: []Arm{{Alias: "champion", Weight: 3}, {Alias: "blue", Weight: 1}}},
		"fraud_bandit": {Strategy: RolloutBandit, Arms: []Arm{{Alias: "champion"}, {Alias: "challenger"}, {Alias: "explorer"}},
			Floor: &floor, Reward: RewardCorrect, Prior: Prior{Alpha: 1, Beta: 1}, LabelWait: Duration(time.Hour)},
	}
	for name, w := range want {
		m, ok := c.Model(name)
		if !ok {
			t.Fatalf("model %s missing", name)
		}
		if !reflect.DeepEqual(m.Rollout, w) {
			t.Errorf("model %s: rollout\n got %+v\nwant %+v", name, m.Rollout, w)
		}
	}
	m, _ := c.Model("fraud_bandit")
	if got := m.Rollout.Aliases(); !reflect.DeepEqual(got, []string{"champion", "challenger", "explorer"}) {
		t.Errorf("Aliases() = %v", got)
	}
}
