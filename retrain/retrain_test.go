package retrain

import (
	"context"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
	sregistry "github.com/weirhq/weir/schemas/registry"
	"github.com/weirhq/weir/scoring/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a settable wall clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	cfg   *config.Config
	kafka []kgo.Opt
	sr    schemas.SRClient
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	seeds, _ := testenv.Kafka(t)
	cfg := &config.Config{
		Kafka:  config.Kafka{ClientID: "weirtest", Brokers: seeds},
		Topics: config.Topics{Prefix: testenv.Name("weirtest"), Partitions: 1, Replication: 1},
		Views: []config.View{{Name: "card", Source: "payments", Entity: "card", Features: []config.Feature{
			{Name: "amount", Agg: "last", Field: "amount"},
			{Name: "count_1h", Agg: "count", Window: config.Duration(time.Hour)},
		}}},
		Models: []config.Model{{Name: "fraud", Source: "payments", Features: []string{"card.amount", "card.count_1h"}, Threshold: 0.5}},
		Monitors: []config.Monitor{{Name: "fraud-drift", Model: "fraud", Rules: []config.Rule{
			{Name: "score_drift", Metric: "psi", Feature: "score", Op: ">", Threshold: 0.2, For: 2},
			{Name: "auc_drop", Metric: "auc", Op: "<", Threshold: 0.7, For: 1},
		}}},
		Retrain: []config.RetrainPolicy{{Model: "fraud", OnRules: []string{"score_drift"}, Cooldown: config.Duration(10 * time.Minute),
			Backend: "local", MinRows: 500, Lookback: config.Duration(time.Hour), LabelTimeout: config.Duration(2 * time.Minute)}},
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx := ctxT(t)
	for _, topic := range []string{cfg.AlertsTopic(), cfg.CommandsTopic(), cfg.ModelsTopic()} {
		resp, err := adm.CreateTopic(ctx, 1, 1, nil, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatalf("create %s: %v", topic, err)
		}
	}
	srv, err := sregistry.Open("")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	sr, err := schemas.NewSRClient(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{cfg: cfg, kafka: []kgo.Opt{kgo.SeedBrokers(seeds...)}, sr: sr}
}

func (f *fixture) serde(t *testing.T, topic, schema string) *schemas.Serde {
	t.Helper()
	s, err := schemas.NewSerde(context.Background(), f.sr, schemas.Subject(topic), schemas.MustParse(schema))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// produce writes values to topic, encoded with serde.
func (f *fixture) produce(t *testing.T, topic string, serde *schemas.Serde, vs ...any) {
	t.Helper()
	cl, err := kgo.NewClient(f.kafka...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, v := range vs {
		b, err := serde.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctxT(t), &kgo.Record{Topic: topic, Value: b}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// run runs fn in a goroutine until the test ends and checks it returned nil.
func run(t *testing.T, fn func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(60 * time.Second):
		t.Fatal("timed out")
		panic("unreachable")
	}
}

// startRegistry runs a model registry on the fixture's models topic.
func (f *fixture) startRegistry(t *testing.T) *registry.Registry {
	t.Helper()
	blobs, err := registry.NewBlobs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r, err := registry.New(registry.Options{Kafka: f.kafka, Topic: f.cfg.ModelsTopic(),
		Serde: f.serde(t, f.cfg.ModelsTopic(), schemas.ModelRecordSchema), Blobs: blobs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close) // after Run stopped: cleanups run last-in first-out
	run(t, r.Run)
	if err := r.WaitReady(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	return r
}

// synthetic returns n labelled rows: a heavy-tailed amount and a count,
// fraud more likely for large amounts and bursts.
func synthetic(seed uint64, n int) ([][]float64, []bool) {
	r := rand.New(rand.NewPCG(seed, 99))
	var X [][]float64
	var y []bool
	for range n {
		amount := math.Exp(3 + r.NormFloat64())
		count := float64(r.IntN(6))
		z := -4 + 0.8*math.Log1p(amount) + 0.3*count
		X = append(X, []float64{amount, count})
		y = append(y, r.Float64() < 1/(1+math.Exp(-z)))
	}
	return X, y
}
