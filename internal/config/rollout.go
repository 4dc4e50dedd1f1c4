package config

import (
	"fmt"
	"math"
	"time"

	"gopkg.in/yaml.v3"
)

// Rollout strategies (models[].rollout.strategy).
const (
	// RolloutChampion serves arms[0] (default champion) to every event.
	RolloutChampion = "champion"
	// RolloutShadow serves arms[0] and also scores every event with each
	// other arm, logging those predictions with served false.
	RolloutShadow = "shadow"
	// RolloutCanary serves arms[1] to Percent % of entities, chosen by a
	// deterministic hash of (model name, entity), and arms[0] to the rest.
	RolloutCanary = "canary"
	// RolloutAB serves each arm to a share of entities proportional to its
	// weight, by the same deterministic hash.
	RolloutAB = "ab"
	// RolloutBandit chooses an arm per event by Thompson sampling on Beta
	// posteriors of delayed rewards, each arm keeping at least Floor.
	RolloutBandit = "bandit"
)

// Bandit rewards (models[].rollout.reward).
const (
	// RewardCorrect: 1 when the served decision equals the label.
	RewardCorrect = "correct"
	// RewardLabel: 1 when the label is positive (is_fraud true), whatever
	// the decision: for arms whose positives are the outcome sought.
	RewardLabel = "label"
)

// Rollout says which registry aliases score a model's events and whose
// decision is served. The arms are registry aliases (champion, challenger
// or any alias name `weir models` moves); each arm serves the version its
// alias points at, once that version's artifact verified. arms[0] is the
// fallback: an event whose chosen arm has no verified version is served
// by arms[0] (and is counted). Unset, a model serves its champion only.
//
//	rollout:
//	  strategy: canary        # champion (default) | shadow | canary | ab | bandit
//	  arms: [champion, challenger]
//	  percent: 10             # canary: % of entities served by arms[1]
//
//	rollout:
//	  strategy: ab
//	  arms: [{alias: champion, weight: 90}, {alias: challenger, weight: 10}]
//
//	rollout:
//	  strategy: bandit
//	  arms: [champion, challenger]
//	  floor: 0.05             # every arm serves at least 5% of events
//	  reward: correct         # 1 when the served decision equals the label
//	  prior: {alpha: 1, beta: 1}
//	  label_wait: 1h          # how long a served prediction awaits its label
type Rollout struct {
	// Strategy is one of the Rollout* constants; default champion.
	Strategy string `yaml:"strategy"`
	// Arms are the aliases that score. Default: [champion] for champion,
	// [champion, challenger] for the others. A canary has exactly two;
	// shadow, ab and bandit two or more.
	Arms []Arm `yaml:"arms"`
	// Percent (canary only) is the share of entities, 0 to 100, that
	// arms[1] serves.
	Percent float64 `yaml:"percent"`
	// Floor (bandit only) is the least share of events each arm serves,
	// 0 to 1/len(arms); default 0.05. With probability len(arms)*Floor an
	// event's arm is chosen uniformly, else by Thompson sampling.
	Floor *float64 `yaml:"floor"`
	// Reward (bandit only) is correct (default) or label.
	Reward string `yaml:"reward"`
	// Prior (bandit only) is every arm's Beta prior; default alpha 1,
	// beta 1 (uniform).
	Prior Prior `yaml:"prior"`
	// LabelWait (bandit only) is how long, in event time, a served
	// prediction waits for its label before it is dropped unrewarded;
	// default 1h.
	LabelWait Duration `yaml:"label_wait"`
}

// Arm is one rollout arm: a registry alias and, for an A/B rollout, its
// weight. In YAML an arm is an alias name or {alias, weight}.
type Arm struct {
	Alias  string  `yaml:"alias"`
	Weight float64 `yaml:"weight"` // ab only; relative, >= 0
}

// UnmarshalYAML implements yaml.Unmarshaler: a plain string is an alias.
func (a *Arm) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		a.Alias = n.Value
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: an arm is an alias name or {alias, weight}", n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "alias":
			if err := v.Decode(&a.Alias); err != nil {
				return err
			}
		case "weight":
			if err := v.Decode(&a.Weight); err != nil {
				return err
			}
		default:
			return fmt.Errorf("line %d: field %s not found in an arm (alias, weight)", k.Line, k.Value)
		}
	}
	return nil
}

// Prior is a Beta prior.
type Prior struct {
	Alpha float64 `yaml:"alpha"`
	Beta  float64 `yaml:"beta"`
}

// Aliases returns the arms' aliases, in order.
func (r *Rollout) Aliases() []string {
	out := make([]string, len(r.Arms))
	for i, a := range r.Arms {
		out[i] = a.Alias
	}
	return out
}

func (r *Rollout) applyDefaults() {
	if r.Strategy == "" {
		r.Strategy = RolloutChampion
	}
	if len(r.Arms) == 0 {
		r.Arms = []Arm{{Alias: "champion"}}
		if r.Strategy != RolloutChampion {
			r.Arms = append(r.Arms, Arm{Alias: "challenger"})
		}
	}
	if r.Strategy != RolloutBandit {
		return
	}
	if r.Floor == nil {
		f := 0.05
		r.Floor = &f
	}
	if r.Reward == "" {
		r.Reward = RewardCorrect
	}
	if r.Prior.Alpha == 0 {
		r.Prior.Alpha = 1
	}
	if r.Prior.Beta == 0 {
		r.Prior.Beta = 1
	}
	if r.LabelWait == 0 {
		r.LabelWait = Duration(time.Hour)
	}
}

// MaxArms is the most arms a rollout may have.
const MaxArms = 8

// RewardsTopic is the compacted topic of the bandit rollouts' reward
// counts, one record per model (scoring/rollout).
func (c *Config) RewardsTopic() string { return c.Topics.Prefix + ".rollout.rewards" }

// validateRollout checks models[i].rollout; f is "models[i]", labels the
// labels topic (a bandit's rewards come from it).
func validateRollout(bad func(field, format string, a ...any), f string, r *Rollout, labels string) {
	f += ".rollout"
	minArms, maxArms := 2, 0
	switch r.Strategy {
	case RolloutChampion:
		minArms, maxArms = 1, 1
	case RolloutCanary:
		maxArms = 2
	case RolloutShadow, RolloutAB, RolloutBandit:
	default:
		bad(f+".strategy", "unknown strategy %q (champion, shadow, canary, ab or bandit)", r.Strategy)
		return
	}
	switch n := len(r.Arms); {
	case n < minArms:
		bad(f+".arms", "a %s rollout needs at least %d arms, got %d", r.Strategy, minArms, n)
	case maxArms > 0 && n > maxArms:
		bad(f+".arms", "a %s rollout takes %d arm(s), got %d", r.Strategy, maxArms, n)
	case n > MaxArms:
		bad(f+".arms", "at most %d arms, got %d", MaxArms, n)
	}
	seen := map[string]bool{}
	var sum float64
	for j, a := range r.Arms {
		af := fmt.Sprintf("%s.arms[%d]", f, j)
		switch {
		case a.Alias == "":
			bad(af, "alias is required")
		case seen[a.Alias]:
			bad(af, "alias %q is used twice", a.Alias)
		}
		seen[a.Alias] = true
		switch {
		case r.Strategy != RolloutAB && a.Weight != 0:
			bad(af+".weight", "only an ab rollout takes weights")
		case a.Weight < 0 || math.IsNaN(a.Weight) || math.IsInf(a.Weight, 0):
			bad(af+".weight", "must be a finite number, 0 or more, got %g", a.Weight)
		}
		sum += a.Weight
	}
	if r.Strategy == RolloutAB && !(sum > 0) && len(r.Arms) >= 2 {
		bad(f+".arms", "an ab rollout needs weights with a positive sum")
	}
	if r.Strategy == RolloutCanary {
		if !(r.Percent >= 0 && r.Percent <= 100) {
			bad(f+".percent", "must be in [0, 100], got %g", r.Percent)
		}
	} else if r.Percent != 0 {
		bad(f+".percent", "only a canary rollout takes a percent")
	}
	if r.Strategy != RolloutBandit {
		for _, x := range []struct {
			field string
			set   bool
		}{{"floor", r.Floor != nil}, {"reward", r.Reward != ""}, {"prior", r.Prior != Prior{}}, {"label_wait", r.LabelWait != 0}} {
			if x.set {
				bad(f+"."+x.field, "only a bandit rollout takes a %s", x.field)
			}
		}
		return
	}
	if n := len(r.Arms); n > 0 && r.Floor != nil {
		if fl := *r.Floor; !(fl >= 0 && fl*float64(n) <= 1) {
			bad(f+".floor", "must be in [0, 1/%d] for %d arms, got %g", n, n, fl)
		}
	}
	if labels == "" {
		bad(f+".strategy", "a bandit rollout learns from labels: set labels.topic")
	}
	if r.Reward != RewardCorrect && r.Reward != RewardLabel {
		bad(f+".reward", "unknown reward %q (correct or label)", r.Reward)
	}
	if !(r.Prior.Alpha > 0) || !(r.Prior.Beta > 0) || math.IsInf(r.Prior.Alpha, 0) || math.IsInf(r.Prior.Beta, 0) {
		bad(f+".prior", "alpha and beta must be positive and finite, got %g and %g", r.Prior.Alpha, r.Prior.Beta)
	}
	if r.LabelWait < 0 {
		bad(f+".label_wait", "must not be negative")
	}
}
