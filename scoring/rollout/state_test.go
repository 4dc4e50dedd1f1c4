package rollout

import (
	"reflect"
	"testing"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
)

func TestStateRoundTrip(t *testing.T) {
	in := &State{Model: "fraud", Arms: []ArmCount{{Arm: "challenger", Version: 2, Successes: 7, Failures: 3}, {Arm: "champion", Version: 1, Successes: 1}},
		Predictions: map[int32]Position{0: {Resume: 4, Consumed: 9}, 3: {Resume: 2, Consumed: 2}}, Labels: map[int32]Position{1: {Resume: 5, Consumed: 6}}, UpdatedAt: 1700000000000}
	b, err := in.Encode()
	if err != nil {
		t.Fatal(err)
	}
	out, err := DecodeState(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Fatalf("round trip:\n in %+v\nout %+v", in, out)
	}
	if s, f := out.Counts("challenger", 2); s != 7 || f != 3 {
		t.Fatalf("Counts = %d, %d", s, f)
	}
	if s, f := out.Counts("challenger", 3); s != 0 || f != 0 {
		t.Fatal("another version has counts")
	}
	var none *State
	if s, f := none.Counts("champion", 1); s != 0 || f != 0 {
		t.Fatal("nil state has counts")
	}
	for _, bad := range []string{``, `{}`, `[1]`, `{"model":"m","arms":"x"}`, `{"model":"m","predictions":{"x":{}}}`} {
		if _, err := DecodeState([]byte(bad)); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

func FuzzDecodeState(f *testing.F) {
	f.Add([]byte(`{"model":"fraud","arms":[{"arm":"champion","version":1,"successes":3,"failures":1}],"predictions":{"0":{"resume":1,"consumed":2}}}`))
	f.Add([]byte(`{"model":""}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeState(b)
		if err != nil {
			return
		}
		again, err := s.Encode()
		if err != nil {
			t.Fatal(err)
		}
		s2, err := DecodeState(again)
		if err != nil || !reflect.DeepEqual(s, s2) {
			t.Fatalf("re-decode: %v\n%+v\n%+v", err, s, s2)
		}
	})
}

// TestJoinRewards checks the reward definitions and the rule that skips
// a pair joined before the restored State (both offsets below consumed).
func TestJoinRewards(t *testing.T) {
	for _, c := range []struct {
		reward             string
		decision, positive bool
		success            bool
	}{
		{config.RewardCorrect, true, true, true}, {config.RewardCorrect, false, false, true},
		{config.RewardCorrect, true, false, false}, {config.RewardCorrect, false, true, false},
		{config.RewardLabel, false, true, true}, {config.RewardLabel, true, true, true},
		{config.RewardLabel, true, false, false}, {config.RewardLabel, false, false, false},
	} {
		j, err := NewJoiner(JoinerOptions{Model: config.Model{Name: "m", Rollout: config.Rollout{Reward: c.reward}},
			Predictions: "p", Labels: "l", Rewards: "r", PredictionSerde: &schemas.Serde{}, LabelSerde: &schemas.Serde{}})
		if err != nil {
			t.Fatal(err)
		}
		s := &session{j: j, counts: map[armKey]*ArmCount{},
			restored: &State{Predictions: map[int32]Position{0: {Resume: 5, Consumed: 10}}, Labels: map[int32]Position{1: {Resume: 20, Consumed: 30}}}}
		w := waiting{arm: "challenger", version: 2, decision: c.decision, part: 0}
		l := early{positive: c.positive, part: 1}
		for _, off := range []struct{ pred, label int64 }{
			{9, 29},  // both consumed before the restore: joined already, skipped
			{10, 29}, // prediction new: counted
			{9, 30},  // label new: counted
			{12, 40},
		} {
			w.off, l.off = off.pred, off.label
			s.join(w, l)
		}
		got := s.counts[armKey{"challenger", 2}]
		want := ArmCount{Arm: "challenger", Version: 2}
		if c.success {
			want.Successes = 3
		} else {
			want.Failures = 3
		}
		if got == nil || *got != want {
			t.Errorf("reward %s, decision %v, label %v: %+v, want %+v", c.reward, c.decision, c.positive, got, want)
		}
	}
}
