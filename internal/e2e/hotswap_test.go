package e2e

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/loadgen"
	"github.com/weirhq/weir/internal/roles"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring"
	"github.com/weirhq/weir/scoring/model"
	"github.com/weirhq/weir/scoring/registry"
)

const (
	hotswapEvents = 6000
	hotswapRate   = 1000 // events per second: 6s of traffic
	hotswapEvery  = 100 * time.Millisecond
	// hotswapLag bounds how long after a move a scorer may still serve the
	// version moved away from (its registry reads the topic behind the
	// writer).
	hotswapLag = 2 * time.Second
)

// tenure is one stretch of wall-clock time a version held the champion
// alias, as the writer saw it: from just before the move that gave it the
// alias to just after the move that took it away.
type tenure struct {
	version    int32
	start, end time.Time
}

// TestHotSwapUnderLoad runs the processor with the inline scorer on real
// Kafka while loadgen streams transactions, and moves the champion alias
// about ten times a second from a second process's registry with
// registry.Promote and registry.Rollback, as `weir models promote` and
// `rollback` do, through v1..v3 (logistic regressions with different
// weights). It then reads the predictions topic read_committed and checks
// that every transaction has exactly one served prediction; that the
// versions each partition's predictions name, in offset order, are a
// subsequence of the order the writer made them champion (a scorer never
// goes back to a version it swapped away from); that the named version
// was champion within hotswapLag of the scoring time; and that each
// score equals the named version's artifact, loaded here with
// scoring/model, evaluated on the prediction's logged feature vector, so
// a swap can never mislabel the version that scored.
func TestHotSwapUnderLoad(t *testing.T) {
	seeds := testenv.RealKafka(t)
	ctx := context.Background()
	cfg, err := config.Load("../../deploy/demo/weir.yaml", func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = t.TempDir()
	cfg.Kafka.Brokers = seeds
	cfg.Kafka.ClientID = testenv.Name("hotswap")
	cfg.Topics.Prefix = testenv.Name("weir")
	cfg.Sources[0].Topic = testenv.Name("payments")
	cfg.Labels.Topic = testenv.Name("labels")
	cfg.SchemaRegistry.URL = serveRegistry(t)
	m, _ := cfg.Model("fraud")

	env, err := roles.NewEnv(cfg, roleLog(t, 40), "hotswap")
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	if err := env.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	// The writer is another process's registry, as the CLI's is.
	cli, err := roles.NewEnv(cfg, roleLog(t, 20), "cli")
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	writer, err := cli.Models(ctx)
	if err != nil {
		t.Fatal(err)
	}
	arts := map[int32][]byte{}
	models := map[int32]model.Model{}
	for v := int32(1); v <= 3; v++ {
		lr := &model.LogReg{
			Format: model.Format, Name: m.Name, Features: m.Features,
			Transforms: []string{"", model.TransformLog1p, model.TransformLog1p},
			Mean:       []float64{1, 4, 3}, Std: []float64{2, 1.5, 1},
			Weights: []float64{0.3 * float64(v), -0.2 + 0.5*float64(v), 0.1 * float64(v*v)}, Bias: -float64(v),
		}
		b, err := lr.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		rec := schemas.ModelRecord{Name: m.Name, Version: v, Features: m.Features, CreatedBy: "hotswap test", Reason: fmt.Sprintf("v%d", v)}
		if v == 1 {
			rec.Aliases = []string{registry.Champion}
		}
		if rec, err = writer.Publish(ctx, rec, b); err != nil {
			t.Fatal(err)
		} else if rec.SHA256 != model.SHA256(b) {
			t.Fatalf("v%d published with sha256 %s, artifact %s", v, rec.SHA256, model.SHA256(b))
		}
		arts[v] = b
		// The oracle's own copy of each version, loaded from the bytes.
		if models[v], err = model.Load(model.Format, b); err != nil {
			t.Fatal(err)
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
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("processor: %v", err)
			}
		}
	}
	defer stop()

	// Traffic.
	src := cfg.Sources[0]
	txn, err := env.Serde(ctx, src.Topic, src.Schema)
	if err != nil {
		t.Fatal(err)
	}
	lab, err := env.Serde(ctx, cfg.Labels.Topic, cfg.Labels.Schema)
	if err != nil {
		t.Fatal(err)
	}
	pcl, err := env.Client(kgo.ProducerLinger(5 * time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer pcl.Close()
	gen := loadgen.New(loadgen.Config{Seed: 17, Start: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), EventsPerSecond: 200})
	var st loadgen.Stats
	var perr error
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		st, perr = loadgen.Run(ctx, pcl, gen, loadgen.RunConfig{TxnTopic: src.Topic, LabelTopic: cfg.Labels.Topic, Txn: txn, Label: lab, Count: hotswapEvents, Rate: hotswapRate}, env.Log)
	}()

	// Swaps, while the traffic lasts: promote v2, promote v3, roll back
	// (to v2, v3's previous holder), promote v1, and again.
	var mu sync.Mutex
	tenures := []tenure{{version: 1}}
	moves := 0
	var took []time.Duration // each move, verify to read back
	type op struct {
		promote bool
		to      int32
	}
	cycle := []op{{true, 2}, {true, 3}, {false, 0}, {true, 1}}
	ticker := time.NewTicker(hotswapEvery)
	defer ticker.Stop()
swapping:
	for i := 0; ; i++ {
		select {
		case <-produced:
			break swapping
		case <-ticker.C:
		}
		o := cycle[i%len(cycle)]
		begin := time.Now()
		var mv registry.Move
		var err error
		if o.promote {
			mv, err = registry.Promote(ctx, writer, m.Name, registry.Champion, o.to, "hotswap-test", fmt.Sprintf("swap %d", i))
		} else {
			mv, err = registry.Rollback(ctx, writer, m.Name, registry.Champion, 0, "hotswap-test", fmt.Sprintf("swap %d", i))
		}
		end := time.Now()
		if err != nil {
			t.Fatalf("move %d: %v", i, err)
		}
		mu.Lock()
		last := &tenures[len(tenures)-1]
		if last.version != mv.From {
			t.Fatalf("move %d %+v: the writer thought v%d held the alias", i, mv, last.version)
		}
		last.end = end
		tenures = append(tenures, tenure{version: mv.To, start: begin})
		moves++
		took = append(took, end.Sub(begin))
		mu.Unlock()
	}
	if perr != nil {
		t.Fatal(perr)
	}
	if moves < 20 {
		t.Fatalf("only %d moves during the traffic: the test swapped too slowly to mean anything", moves)
	}
	slices.Sort(took)
	t.Logf("%d transactions produced, %d champion moves while they flowed; a move (verify, two records, read back) took median %s, max %s",
		st.Transactions, moves, took[len(took)/2].Round(time.Microsecond), took[len(took)-1].Round(time.Microsecond))

	preds := readPredictions(t, env, cfg.PredictionsTopic(m.Name), st.Transactions)
	stop()
	swaps := mustCounter(t, env, "weir_registry_swaps_total")

	// Exactly one served prediction per transaction.
	byID := map[string]*schemas.Prediction{}
	byVersion := map[int32]int{}
	for _, p := range preds {
		if p.RolloutArm != scoring.ArmChampion {
			t.Fatalf("prediction %s served by arm %q; the model has no rollout, so the champion serves", p.PredictionID, p.RolloutArm)
		}
		if byID[p.PredictionID] != nil {
			t.Fatalf("two served predictions for %s (v%d at %d@%d and v%d at %d@%d)", p.PredictionID,
				byID[p.PredictionID].ModelVersion, byID[p.PredictionID].SourcePartition, byID[p.PredictionID].SourceOffset,
				p.ModelVersion, p.SourcePartition, p.SourceOffset)
		}
		byID[p.PredictionID] = p
		byVersion[p.ModelVersion]++
	}
	if len(byID) != st.Transactions {
		t.Fatalf("%d served predictions for %d transactions", len(byID), st.Transactions)
	}
	for n := 1; n <= st.Transactions; n++ {
		if id := fmt.Sprintf("txn-%d-%09d", 17, n); byID[id] == nil {
			t.Fatalf("no prediction for %s", id)
		}
	}

	// Each score is the named version's, on the logged vector.
	for _, p := range preds {
		mdl, ok := models[p.ModelVersion]
		if !ok {
			t.Fatalf("prediction %s names v%d, never published", p.PredictionID, p.ModelVersion)
		}
		x := make([]float64, len(p.Features))
		for i, f := range p.Features {
			if f.Name != m.Features[i] {
				t.Fatalf("prediction %s feature %d is %s, want %s", p.PredictionID, i, f.Name, m.Features[i])
			}
			x[i] = f.Value
		}
		if got := mdl.Score(x); got != p.Score {
			others := ""
			for v, o := range models {
				if o.Score(x) == p.Score {
					others += fmt.Sprintf(" v%d's", v)
				}
			}
			t.Fatalf("prediction %s names v%d and scores %v; v%d's artifact scores %v (the score is%s)", p.PredictionID, p.ModelVersion, p.Score, p.ModelVersion, got, others)
		}
	}

	// The versions each partition saw, in order, follow the writer's order.
	order := make([]int32, len(tenures))
	for i, tn := range tenures {
		order[i] = tn.version
	}
	byPart := map[int32][]*schemas.Prediction{}
	for _, p := range preds {
		byPart[p.SourcePartition] = append(byPart[p.SourcePartition], p)
	}
	for part, ps := range byPart {
		sort.Slice(ps, func(i, j int) bool { return ps[i].SourceOffset < ps[j].SourceOffset })
		j := 0
		for i, p := range ps {
			if i > 0 && p.ModelVersion == ps[i-1].ModelVersion {
				continue
			}
			for j < len(order) && order[j] != p.ModelVersion {
				j++
			}
			if j == len(order) {
				t.Fatalf("partition %d: prediction %s at offset %d by v%d is out of the champion order %v", part, p.PredictionID, p.SourceOffset, p.ModelVersion, order)
			}
		}
	}

	// The named version held the alias around the time it scored.
	var worst time.Duration
	for _, p := range preds {
		at := time.UnixMilli(p.ScoredTime)
		best := time.Duration(-1)
		for _, tn := range tenures {
			if tn.version != p.ModelVersion || (!tn.start.IsZero() && at.Before(tn.start.Truncate(time.Millisecond))) {
				continue
			}
			d := time.Duration(0)
			if !tn.end.IsZero() && at.After(tn.end) {
				d = at.Sub(tn.end)
			}
			if best < 0 || d < best {
				best = d
			}
		}
		if best < 0 || best > hotswapLag {
			t.Fatalf("prediction %s scored at %s by v%d, which was not champion then nor within %s before (tenures %v)", p.PredictionID, at.Format(time.RFC3339Nano), p.ModelVersion, hotswapLag, tenures)
		}
		worst = max(worst, best)
	}
	if len(byVersion) != 3 {
		t.Fatalf("predictions by version %v: want all three versions to have served", byVersion)
	}
	t.Logf("predictions by version %v; the scorer's registry swapped %v times for %d moves; longest a version served after the writer moved away: %s", byVersion, swaps, moves, worst)
}

// readPredictions reads a predictions topic read_committed until it holds
// n served predictions (shadow ones are left out), then a second more to
// catch any extra.
func readPredictions(t *testing.T, env *roles.Env, topic string, n int) []*schemas.Prediction {
	t.Helper()
	serde, err := env.Serde(context.Background(), topic, schemas.PredictionSchema)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := env.Client(kgo.ConsumeTopics(topic), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out []*schemas.Prediction
	decode := func(fs kgo.Fetches) {
		fs.EachRecord(func(r *kgo.Record) {
			p := &schemas.Prediction{}
			if err := serde.Decode(context.Background(), r.Value, p); err != nil {
				t.Fatalf("%s@%d/%d: %v", topic, r.Partition, r.Offset, err)
			}
			if served(p) {
				out = append(out, p)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("%s: %d of %d served predictions", topic, len(out), n)
		}
		decode(fs)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Second)
	defer cancel2()
	decode(cl.PollFetches(ctx2))
	return out
}

// served reports whether a prediction is the one served for its event:
// rollouts log shadow predictions beside it.
func served(p *schemas.Prediction) bool { return !p.Shadow }

// mustCounter returns the sum of a counter family in env's metrics.
func mustCounter(t *testing.T, env *roles.Env, name string) float64 {
	t.Helper()
	mfs, err := env.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.Metric {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
