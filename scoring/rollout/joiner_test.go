package rollout

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/schemas/registry"
)

// banditRig is a predictions topic, a labels topic and a rewards topic on
// Kafka, with their serdes.
type banditRig struct {
	kafka                  []kgo.Opt
	preds, labels, rewards string
	predSerde, labelSerde  *schemas.Serde
	cl                     *kgo.Client
	model                  config.Model
}

func newBanditRig(t *testing.T, floor float64) *banditRig {
	t.Helper()
	seeds, _ := testenv.Kafka(t)
	ctx := context.Background()
	r := &banditRig{kafka: []kgo.Opt{kgo.SeedBrokers(seeds...)},
		preds: testenv.Name("weirtest.predictions"), labels: testenv.Name("weirtest.labels"), rewards: testenv.Name("weirtest.rewards")}
	cl, err := kgo.NewClient(r.kafka...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	r.cl = cl
	for _, topic := range []string{r.preds, r.labels} {
		resp, err := kadm.NewClient(cl).CreateTopic(ctx, 2, 1, nil, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := EnsureTopic(ctx, cl, r.rewards, 1); err != nil {
		t.Fatal(err)
	}
	srv, err := registry.Open("")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	sr, err := schemas.NewSRClient(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	if r.predSerde, err = schemas.NewSerde(ctx, sr, schemas.Subject(r.preds), schemas.MustParse(schemas.PredictionSchema)); err != nil {
		t.Fatal(err)
	}
	if r.labelSerde, err = schemas.NewSerde(ctx, sr, schemas.Subject(r.labels), schemas.MustParse(schemas.LabelSchema)); err != nil {
		t.Fatal(err)
	}
	r.model = config.Model{Name: "fraud", Threshold: 0.5, Rollout: config.Rollout{Strategy: config.RolloutBandit,
		Arms: []config.Arm{{Alias: "champion"}, {Alias: "challenger"}}, Floor: &floor, Reward: config.RewardCorrect,
		Prior: config.Prior{Alpha: 1, Beta: 1}, LabelWait: config.Duration(time.Hour)}}
	return r
}

// run starts fn until the returned stop is called.
func run(t *testing.T, fn func(context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func (r *banditRig) joiner(t *testing.T) *Joiner {
	t.Helper()
	j, err := NewJoiner(JoinerOptions{Kafka: r.kafka, Model: r.model, Predictions: r.preds, Labels: r.labels, Rewards: r.rewards,
		PredictionSerde: r.predSerde, LabelSerde: r.labelSerde, Group: testenv.Name("weirtest.rewards"), FlushInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func (r *banditRig) produce(t *testing.T, recs []*kgo.Record) {
	t.Helper()
	if err := r.cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestBanditConvergesOnDelayedLabels runs a synthetic bandit: rounds of
// events whose arm is chosen by Thompson on the posteriors the rewards
// topic held at the round's start, with a challenger (v2) whose decisions
// are right 80% of the time against a champion (v1) at 55%, and every
// round's labels published only after the next round's predictions (some
// labels of one round before its predictions, some events never
// labelled, a label whose prediction never comes, shadow predictions
// beside served ones). The Joiner is replaced
// by a new one half way. The published counts must equal the test's own
// tally of served predictions and labels exactly (no reward lost or
// counted twice across the restart); the bandit must move to the
// challenger while the champion keeps at least its floor.
func TestBanditConvergesOnDelayedLabels(t *testing.T) {
	const floor = 0.05
	r := newBanditRig(t, floor)
	post := NewPosteriors(r.kafka, r.rewards, nil)
	run(t, post.Run)
	stopJoiner := run(t, r.joiner(t).Run)

	type tally struct{ succ, fail int64 }
	oracle := map[string]*tally{"champion": {}, "challenger": {}}
	version := map[string]int32{"champion": 1, "challenger": 2}
	accuracy := map[string]float64{"champion": 0.55, "challenger": 0.8}
	arms := []string{"champion", "challenger"}
	rng := rand.New(rand.NewPCG(7, 11))
	waitCounts := func(what string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			st := post.State(r.model.Name)
			ok := true
			for _, a := range arms {
				s, f := st.Counts(a, version[a])
				if s != oracle[a].succ || f != oracle[a].fail {
					ok = false
				}
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: rewards topic holds %+v, the test counted champion %+v challenger %+v", what, st, *oracle["champion"], *oracle["challenger"])
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	const rounds, per = 14, 300
	var pendingLabels []*kgo.Record
	var pendingTally []func()
	share := make([]map[string]int, rounds)
	for round := range rounds {
		if round == rounds/2 {
			stopJoiner()
			stopJoiner = run(t, r.joiner(t).Run)
		}
		st := post.State(r.model.Name) // one snapshot per round
		postr := make([]Beta, len(arms))
		for i, a := range arms {
			s, f := st.Counts(a, version[a])
			postr[i] = Beta{Alpha: 1 + float64(s), Beta: 1 + float64(f)}
		}
		share[round] = map[string]int{}
		var preds, labels, early []*kgo.Record
		var tallies, earlyTallies []func()
		for i := range per {
			id := fmt.Sprintf("r%d-e%d", round, i)
			arm := arms[Thompson(Seed(r.model.Name, id), postr, floor)]
			share[round][arm]++
			decision := rng.IntN(2) == 0
			correct := rng.Float64() < accuracy[arm]
			label := decision == correct // is_fraud such that the decision is right iff correct
			p := schemas.Prediction{PredictionID: id, Entity: "c", EventTime: int64(round*per + i), ModelName: r.model.Name, ModelVersion: version[arm],
				RolloutArm: arm, Decision: decision, Features: []schemas.UsedFeature{}}
			b, _ := r.predSerde.Encode(&p)
			preds = append(preds, &kgo.Record{Topic: r.preds, Key: []byte(id), Value: b})
			if i%10 == 0 { // a shadow prediction: never rewarded
				sp := p
				sp.Shadow, sp.RolloutArm, sp.ModelVersion, sp.Decision = true, "challenger", 2, label
				b, _ := r.predSerde.Encode(&sp)
				preds = append(preds, &kgo.Record{Topic: r.preds, Key: []byte(id), Value: b})
			}
			if i%17 == 0 { // never labelled
				continue
			}
			lb, _ := r.labelSerde.Encode(&schemas.Label{TxnID: id, CardID: "c", EventTime: p.EventTime, IsFraud: label})
			rec := &kgo.Record{Topic: r.labels, Key: []byte(id), Value: lb}
			count := func() {
				if correct {
					oracle[arm].succ++
				} else {
					oracle[arm].fail++
				}
			}
			if i%23 == 0 {
				early, earlyTallies = append(early, rec), append(earlyTallies, count)
			} else {
				labels, tallies = append(labels, rec), append(tallies, count)
			}
		}
		if round == rounds/2-1 {
			// A label whose prediction never comes: it holds the labels'
			// resume offset back, so the restarted Joiner re-reads pairs it
			// joined already.
			lb, _ := r.labelSerde.Encode(&schemas.Label{TxnID: "orphan", CardID: "c", EventTime: int64(round * per), IsFraud: true})
			r.produce(t, []*kgo.Record{{Topic: r.labels, Value: lb}})
		}
		r.produce(t, early)
		r.produce(t, preds)
		for _, f := range earlyTallies { // labels that came first are joined now
			f()
		}
		// The previous round's labels come now, after this round's predictions.
		r.produce(t, pendingLabels)
		for _, f := range pendingTally {
			f()
		}
		waitCounts(fmt.Sprintf("round %d", round))
		pendingLabels, pendingTally = labels, tallies
	}
	r.produce(t, pendingLabels)
	for _, f := range pendingTally {
		f()
	}
	waitCounts("the end")

	var late, lateChamp int
	for _, s := range share[rounds-4:] {
		late += s["champion"] + s["challenger"]
		lateChamp += s["champion"]
	}
	t.Logf("challenger share per round: %v", func() []float64 {
		var out []float64
		for _, s := range share {
			out = append(out, float64(s["challenger"])/per)
		}
		return out
	}())
	if frac := float64(late-lateChamp) / float64(late); frac < 0.8 {
		t.Errorf("the challenger served %.2f of the last 4 rounds' events, want at least 0.8", frac)
	}
	// The floor: the champion keeps at least 5% (within binomial noise).
	within := float64(late)*floor - 5*math.Sqrt(float64(late)*floor*(1-floor))
	if float64(lateChamp) < within {
		t.Errorf("the champion served %d of %d late events, below the floor %v", lateChamp, late, floor)
	}
}
