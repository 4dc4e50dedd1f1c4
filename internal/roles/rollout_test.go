package roles_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/roles"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring/model"
	"github.com/weirhq/weir/scoring/rollout"
)

// TestRolloutStrategies runs the processor role on real Kafka with five
// models on one source, one per rollout strategy, each with a champion v1
// and a second arm v2 (different weights), and checks every model's
// predictions topic: every event has exactly one served prediction and
// (shadow) exactly one shadow one; each prediction names the arm and the
// version whose model gives its score on its logged vector; canary and A/B
// arms are a function of the entity (recomputed with rollout.Bucket) with
// shares within binomial bounds; the bandit's arms, before any label,
// equal rollout.Thompson recomputed from the event id and the prior. Half
// way, the shadow and canary models' challenger is hot-swapped to v3: no
// event is dropped or scored twice, events after the swap are scored by
// v3, and per partition a version never follows a newer one. Then labels
// reward the bandit's challenger: the rewards topic must hold exactly the
// tally of served predictions and labels, and new events must follow
// Thompson on that posterior.
func TestRolloutStrategies(t *testing.T) {
	ctx := context.Background()
	seeds := testenv.RealKafka(t)
	cfg, err := config.Load("../../deploy/demo/weir.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	cfg.Kafka.Brokers = seeds
	cfg.Kafka.ClientID = testenv.Name("rollout")
	cfg.Topics.Prefix = testenv.Name("weir")
	cfg.Topics.Partitions = 2
	cfg.Sources[0].Topic = testenv.Name("payments")
	cfg.Labels.Topic = testenv.Name("labels")
	cfg.Monitors, cfg.Retrain = nil, nil
	cfg.SchemaRegistry.URL = schemaRegistry(t)
	floor := 0.05
	base := cfg.Models[0]
	rollouts := map[string]config.Rollout{
		"champ":  {},
		"shadow": {Strategy: config.RolloutShadow},
		"canary": {Strategy: config.RolloutCanary, Percent: 20},
		"ab":     {Strategy: config.RolloutAB, Arms: []config.Arm{{Alias: "champion", Weight: 3}, {Alias: "blue", Weight: 1}}},
		"bandit": {Strategy: config.RolloutBandit, Floor: &floor},
	}
	cfg.Models = nil
	for name, r := range rollouts {
		m := base
		m.Name, m.Rollout = name, r
		cfg.Models = append(cfg.Models, m)
	}
	// Defaults (arms, prior) as Load applies them.
	if err := reloadDefaults(cfg); err != nil {
		t.Fatal(err)
	}

	env, err := roles.NewEnv(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), "rollouttest")
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	if err := env.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	models, err := env.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	feats := base.Features
	n := len(feats)
	arts := map[int32]*model.LogReg{}
	for _, m := range cfg.Models {
		for v, alias := range []string{"champion", m.Rollout.Arms[len(m.Rollout.Arms)-1].Alias} {
			if v == 1 && alias == "champion" {
				continue
			}
			lr := &model.LogReg{Format: model.Format, Name: m.Name, Features: feats, Transforms: make([]string, n),
				Mean: make([]float64, n), Std: []float64{1, 1, 1}, Weights: []float64{0.3 - 0.5*float64(v), 0.01, 0.02 * float64(v)}, Bias: float64(v) - 1}
			art, err := lr.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			rec, err := models.Publish(ctx, schemas.ModelRecord{Name: m.Name, Format: model.Format, Features: feats, CreatedBy: "test", Aliases: []string{alias}}, art)
			if err != nil || rec.Version != int32(v+1) {
				t.Fatalf("publish %s %s: v%d %v", m.Name, alias, rec.Version, err)
			}
			arts[int32(v+1)] = lr
		}
	}
	plan, err := env.Build(ctx, []string{"processor"})
	if err != nil {
		t.Fatal(err)
	}
	defer plan.Close()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- roles.RunAll(rctx, plan.Runners) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	// 400 cards, 4 events each.
	txn, err := env.Serde(ctx, cfg.Sources[0].Topic, schemas.TransactionSchema)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := env.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const cards, per = 400, 4
	start := time.Now().Add(-time.Hour).Truncate(time.Minute).UnixMilli()
	var recs []*kgo.Record
	for i := range cards * per {
		tx := schemas.Transaction{TxnID: fmt.Sprintf("t-%d", i), CardID: fmt.Sprintf("card-%d", i%cards), MerchantID: "m", Amount: float64(i%97 + 1),
			Currency: "GBP", Country: "GB", DeviceID: "d", EventTime: start + int64(i)*100}
		b, err := txn.Encode(&tx)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: cfg.Sources[0].Topic, Key: []byte(tx.CardID), Value: b})
	}
	// Hot swap: half way through, the shadow and canary models' challenger
	// moves to v3. Publish returns once this process's registry (the one
	// the scorers read) serves it, so the events produced after it are
	// scored by v3 when the challenger serves or shadows them.
	swapped := map[string]bool{"shadow": true, "canary": true}
	half := len(recs) / 2
	if err := cl.ProduceSync(ctx, recs[:half]...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	v3 := &model.LogReg{Format: model.Format, Features: feats, Transforms: make([]string, n), Mean: make([]float64, n), Std: []float64{1, 1, 1},
		Weights: []float64{-0.1, 0.02, 0.05}, Bias: 0.5}
	arts[3] = v3
	for name := range swapped {
		v3.Name = name
		art, err := v3.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if rec, err := models.Publish(ctx, schemas.ModelRecord{Name: name, Format: model.Format, Features: feats, CreatedBy: "test", Aliases: []string{"challenger"}}, art); err != nil || rec.Version != 3 {
			t.Fatalf("publish %s v3: v%d %v", name, rec.Version, err)
		}
	}
	if err := cl.ProduceSync(ctx, recs[half:]...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	events := cards * per
	afterSwap := func(id string) bool {
		var i int
		fmt.Sscanf(id, "t-%d", &i)
		return i >= half
	}

	var banditServed map[string]schemas.Prediction
	for _, m := range cfg.Models {
		t.Run(m.Name, func(t *testing.T) {
			want := events
			if m.Rollout.Strategy == config.RolloutShadow {
				want *= 2
			}
			preds := consumeRollout(t, env, cfg.PredictionsTopic(m.Name), want)
			served := map[string]schemas.Prediction{}
			shadow := map[string]schemas.Prediction{}
			entityArm := map[string]string{}
			lastV := map[string]struct {
				off int64
				v   int32
			}{}
			armEvents := map[string]int{}
			armEntities := map[string]int{}
			for _, p := range preds {
				// The score is the named version's on the logged vector.
				x := make([]float64, len(p.Features))
				for i, f := range p.Features {
					x[i] = f.Value
				}
				lr := arts[p.ModelVersion]
				if lr == nil || math.Abs(lr.Score(x)-p.Score) > 1e-12 || p.Decision != (p.Score >= m.Threshold) {
					t.Fatalf("prediction %s: v%d score %v decision %v; that version scores %v", p.PredictionID, p.ModelVersion, p.Score, p.Decision, lr.Score(x))
				}
				wantV := int32(2)
				switch {
				case p.RolloutArm == "champion":
					wantV = 1
				case swapped[m.Name] && (afterSwap(p.PredictionID) || p.ModelVersion == 3):
					wantV = 3
				}
				if p.ModelVersion != wantV {
					t.Fatalf("prediction %s by arm %s names v%d, want v%d", p.PredictionID, p.RolloutArm, p.ModelVersion, wantV)
				}
				// Per source partition, a swapped arm's versions never go back.
				if p.RolloutArm != "champion" {
					k := fmt.Sprint(p.SourcePartition)
					if last, ok := lastV[k]; ok && ((p.SourceOffset > last.off && p.ModelVersion < last.v) || (p.SourceOffset < last.off && p.ModelVersion > last.v)) {
						t.Fatalf("partition %s: v%d at offset %d, v%d at offset %d", k, last.v, last.off, p.ModelVersion, p.SourceOffset)
					}
					lastV[k] = struct {
						off int64
						v   int32
					}{p.SourceOffset, p.ModelVersion}
				}
				into := served
				if p.Shadow {
					into = shadow
				}
				if _, dup := into[p.PredictionID]; dup {
					t.Fatalf("event %s has two predictions with shadow=%v", p.PredictionID, p.Shadow)
				}
				into[p.PredictionID] = p
				if p.Shadow {
					continue
				}
				armEvents[p.RolloutArm]++
				if a, ok := entityArm[p.Entity]; !ok {
					entityArm[p.Entity] = p.RolloutArm
					armEntities[p.RolloutArm]++
				} else if a != p.RolloutArm && (m.Rollout.Strategy == config.RolloutCanary || m.Rollout.Strategy == config.RolloutAB) {
					t.Fatalf("entity %s served by %s and %s", p.Entity, a, p.RolloutArm)
				}
			}
			if len(served) != events {
				t.Fatalf("%d events with a served prediction, want %d", len(served), events)
			}
			u := func(p schemas.Prediction) float64 { return rollout.Bucket(m.Name, p.Entity) }
			switch m.Rollout.Strategy {
			case config.RolloutChampion:
				if armEvents["champion"] != events {
					t.Fatalf("arms %v", armEvents)
				}
			case config.RolloutShadow:
				if armEvents["champion"] != events || len(shadow) != events {
					t.Fatalf("served arms %v, %d shadow predictions", armEvents, len(shadow))
				}
				for id, p := range shadow {
					if p.RolloutArm != "challenger" || served[id].PredictionID != id {
						t.Fatalf("shadow prediction %+v", p)
					}
				}
			case config.RolloutCanary:
				for _, p := range served {
					if want := map[bool]string{true: "challenger", false: "champion"}[u(p) < 0.2]; p.RolloutArm != want {
						t.Fatalf("%s of %s (bucket %v) served by %s, want %s", p.PredictionID, p.Entity, u(p), p.RolloutArm, want)
					}
				}
				binomial(t, "canary entities", armEntities["challenger"], cards, 0.2)
			case config.RolloutAB:
				for _, p := range served {
					if want := []string{"champion", "blue"}[rollout.Weighted([]float64{3, 1}, u(p))]; p.RolloutArm != want {
						t.Fatalf("%s of %s served by %s, want %s", p.PredictionID, p.Entity, p.RolloutArm, want)
					}
				}
				binomial(t, "blue entities", armEntities["blue"], cards, 0.25)
			case config.RolloutBandit:
				prior := []rollout.Beta{{Alpha: 1, Beta: 1}, {Alpha: 1, Beta: 1}}
				for _, p := range served {
					if want := []string{"champion", "challenger"}[rollout.Thompson(rollout.Seed(m.Name, p.PredictionID), prior, floor)]; p.RolloutArm != want {
						t.Fatalf("%s served by %s, want %s (the prior's choice)", p.PredictionID, p.RolloutArm, want)
					}
				}
				binomial(t, "bandit challenger events", armEvents["challenger"], events, 0.5)
				banditServed = served
			}
			t.Logf("%s: events per arm %v, entities per arm %v, %d shadow", m.Name, armEvents, armEntities, len(shadow))
		})
	}
	if t.Failed() {
		return
	}

	// Bandit rewards through the processor's joiner: labels that make every
	// challenger decision right and every champion decision wrong. The
	// rewards topic must come to hold exactly that tally, and events scored
	// after it must follow Thompson on the posterior it gives.
	label, err := env.Serde(ctx, cfg.Labels.Topic, cfg.Labels.Schema)
	if err != nil {
		t.Fatal(err)
	}
	var labels []*kgo.Record
	wantCounts := map[string][2]int64{}
	for id, p := range banditServed {
		right := p.RolloutArm == "challenger"
		b, err := label.Encode(&schemas.Label{TxnID: id, CardID: p.Entity, EventTime: p.EventTime, LabelTime: p.EventTime + 1, IsFraud: p.Decision == right})
		if err != nil {
			t.Fatal(err)
		}
		labels = append(labels, &kgo.Record{Topic: cfg.Labels.Topic, Key: []byte(p.Entity), Value: b})
		c := wantCounts[p.RolloutArm]
		if right {
			c[0]++
		} else {
			c[1]++
		}
		wantCounts[p.RolloutArm] = c
	}
	if err := cl.ProduceSync(ctx, labels...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	post := rollout.NewPosteriors(env.Kafka, cfg.RewardsTopic(), nil)
	pctx, pcancel := context.WithCancel(ctx)
	pdone := make(chan error, 1)
	go func() { pdone <- post.Run(pctx) }()
	defer func() { pcancel(); <-pdone }()
	var st *rollout.State
	var cs0, cf0, hs0, hf0 int64
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		st = post.State("bandit")
		cs, cf := st.Counts("champion", 1)
		hs, hf := st.Counts("challenger", 2)
		cs0, cf0, hs0, hf0 = cs, cf, hs, hf
		if cs == wantCounts["champion"][0] && cf == wantCounts["champion"][1] && hs == wantCounts["challenger"][0] && hf == wantCounts["challenger"][1] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rewards topic holds %+v, want champion %v challenger %v (successes, failures)", st, wantCounts["champion"], wantCounts["challenger"])
		}
	}
	// Wait until the processor's own reader, which its scorers sample
	// from, exports the same counts.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		got := map[string]float64{}
		mfs, err := env.Metrics.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "weir_rollout_posterior_rewards" {
				continue
			}
			for _, m := range mf.GetMetric() {
				l := map[string]string{}
				for _, lp := range m.GetLabel() {
					l[lp.GetName()] = lp.GetValue()
				}
				if l["model"] == "bandit" {
					got[l["arm"]+"/"+l["version"]+"/"+l["outcome"]] = m.GetGauge().GetValue()
				}
			}
		}
		if got["champion/1/success"] == float64(cs0) && got["champion/1/failure"] == float64(cf0) &&
			got["challenger/2/success"] == float64(hs0) && got["challenger/2/failure"] == float64(hf0) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the processor's posteriors export %v, want the rewards topic's %+v", got, st)
		}
	}
	var more []*kgo.Record
	for i := range 400 {
		tx := schemas.Transaction{TxnID: fmt.Sprintf("t-%d", events+i), CardID: fmt.Sprintf("card-%d", i), MerchantID: "m", Amount: 5,
			Currency: "GBP", Country: "GB", DeviceID: "d", EventTime: start + int64(events+i)*100}
		b, err := txn.Encode(&tx)
		if err != nil {
			t.Fatal(err)
		}
		more = append(more, &kgo.Record{Topic: cfg.Sources[0].Topic, Key: []byte(tx.CardID), Value: b})
	}
	if err := cl.ProduceSync(ctx, more...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cs, cf := st.Counts("champion", 1)
	hs, hf := st.Counts("challenger", 2)
	posterior := []rollout.Beta{{Alpha: 1 + float64(cs), Beta: 1 + float64(cf)}, {Alpha: 1 + float64(hs), Beta: 1 + float64(hf)}}
	byArm := map[string]int{}
	for _, p := range consumeRollout(t, env, cfg.PredictionsTopic("bandit"), events+400) {
		if _, old := banditServed[p.PredictionID]; old {
			continue
		}
		want := []string{"champion", "challenger"}[rollout.Thompson(rollout.Seed("bandit", p.PredictionID), posterior, floor)]
		if p.RolloutArm != want {
			t.Fatalf("%s served by %s, want %s (Thompson on the rewards topic's posterior %v)", p.PredictionID, p.RolloutArm, want, posterior)
		}
		byArm[p.RolloutArm]++
	}
	binomial(t, "bandit champion events after the rewards", byArm["champion"], 400, floor)
	t.Logf("bandit after rewards %v: events per arm %v", posterior, byArm)
}

// reloadDefaults applies the rollout defaults Load applies
// (internal/config TestRolloutDefaults checks those) to models built in a
// test, and validates.
func reloadDefaults(cfg *config.Config) error {
	for i := range cfg.Models {
		r := &cfg.Models[i].Rollout
		if r.Strategy == "" {
			r.Strategy = config.RolloutChampion
		}
		if len(r.Arms) == 0 {
			r.Arms = []config.Arm{{Alias: "champion"}}
			if r.Strategy != config.RolloutChampion {
				r.Arms = append(r.Arms, config.Arm{Alias: "challenger"})
			}
		}
		if r.Strategy == config.RolloutBandit {
			r.Reward, r.Prior, r.LabelWait = config.RewardCorrect, config.Prior{Alpha: 1, Beta: 1}, config.Duration(time.Hour)
		}
	}
	return cfg.Validate()
}

// binomial fails unless got of n is within 5 standard deviations of p.
func binomial(t *testing.T, what string, got, n int, p float64) {
	t.Helper()
	sd := math.Sqrt(float64(n) * p * (1 - p))
	if math.Abs(float64(got)-float64(n)*p) > 5*sd {
		t.Errorf("%s: %d of %d, want %.0f ± %.0f", what, got, n, float64(n)*p, 5*sd)
	}
}

// consumeRollout reads want predictions with read_committed.
func consumeRollout(t *testing.T, env *roles.Env, topic string, want int) []schemas.Prediction {
	t.Helper()
	ctx := context.Background()
	serde, err := env.Serde(ctx, topic, schemas.PredictionSchema)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := env.Client(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []schemas.Prediction
	deadline := time.Now().Add(2 * time.Minute)
	for len(out) < want {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d predictions after 2 minutes", len(out), want)
		}
		fctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := cl.PollFetches(fctx)
		cancel()
		fs.EachRecord(func(r *kgo.Record) {
			var p schemas.Prediction
			if err := serde.Decode(ctx, r.Value, &p); err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		})
	}
	// Nothing more comes (a second prediction of an event would).
	fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if fs := cl.PollFetches(fctx); fs.NumRecords() > 0 {
		t.Fatalf("%d predictions more than the %d expected", fs.NumRecords(), want)
	}
	return out
}
