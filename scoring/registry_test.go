package scoring

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"math"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
	sr "github.com/weirhq/weir/schemas/registry"
	"github.com/weirhq/weir/scoring/model"
	"github.com/weirhq/weir/scoring/registry"
)

// startRegistry runs a model registry on a fresh compacted topic until the
// test ends.
func startRegistry(t *testing.T, o registry.Options) *registry.Registry {
	t.Helper()
	return runRegistry(t, newRegistryTopic(t), o)
}

// newRegistryTopic returns client options for a fresh compacted registry
// topic: Kafka, Topic and Serde set.
func newRegistryTopic(t *testing.T) registry.Options {
	t.Helper()
	seeds, _ := testenv.Kafka(t)
	topic := testenv.Name("weirtest.models")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	resp, err := kadm.NewClient(adm).CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
	srv, err := sr.Open("")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	cl, err := schemas.NewSRClient(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	serde, err := schemas.NewSerde(ctx, cl, schemas.Subject(topic), schemas.MustParse(schemas.ModelRecordSchema))
	if err != nil {
		t.Fatal(err)
	}
	return registry.Options{Kafka: []kgo.Opt{kgo.SeedBrokers(seeds...)}, Topic: topic, Serde: serde}
}

// runRegistry runs a registry on top's topic with o's other options until
// the test ends.
func runRegistry(t *testing.T, top, o registry.Options) *registry.Registry {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var err error
	if o.Blobs == nil {
		if o.Blobs, err = registry.NewBlobs(t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}
	o.Kafka, o.Topic, o.Serde = top.Kafka, top.Topic, top.Serde
	r, err := registry.New(o)
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(rctx) }()
	t.Cleanup(func() {
		rcancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		r.Close()
	})
	if err := r.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestRegistryTreeModelsEndToEnd publishes XGBoost and LightGBM models
// through the registry (the artifact's own feature names; LightGBM's
// Column_N mapped by position to the record's) and scores golden rows as
// events, absent where the row is NaN: every prediction is the library's
// and names the version that made it.
func TestRegistryTreeModelsEndToEnd(t *testing.T) {
	r := startRegistry(t, registry.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := NewScorer(config.Model{Name: "fraud", Threshold: 0.5}, r, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range []struct {
		path     string
		features []string // nil: from the artifact
	}{
		{"xgboost/binary_logistic_names.json", nil},
		{"lightgbm/binary.txt", []string{"card.c0", "card.c1", "card.c2", "card.c3", "card.c4", "card.c5"}},
	} {
		art, err := os.ReadFile(filepath.Join("model", "testdata", c.path))
		if err != nil {
			t.Fatal(err)
		}
		rec, err := r.Publish(ctx, schemas.ModelRecord{Name: "fraud", Features: c.features, Aliases: []string{registry.Champion}}, art)
		if err != nil {
			t.Fatalf("publish %s: %v", c.path, err)
		}
		if rec.Version != int32(i+1) || rec.Format != model.Detect(art) {
			t.Fatalf("published %s as v%d format %q", c.path, rec.Version, rec.Format)
		}
		_, rows, pred := readGolden(t, c.path)
		scored := 0
		for j, row := range rows {
			if hasInf(row) {
				continue
			}
			scored++
			p, err := s.Score(event(rec.Features, row))
			if err != nil {
				t.Fatal(err)
			}
			if p.ModelVersion != rec.Version || math.Abs(p.Score-pred[j][0]) > 1e-6 {
				t.Fatalf("%s row %d: v%d score %v, want v%d score %v", c.path, j, p.ModelVersion, p.Score, rec.Version, pred[j][0])
			}
		}
		if scored < len(rows)/2 {
			t.Fatalf("%s: only %d of %d rows scored", c.path, scored, len(rows))
		}
	}
}

// TestRegistryRefusesBadArtifacts: with a public key configured, a
// tampered artifact (its bytes changed after publishing), a wrongly signed
// one and an unsigned one, each made champion by a writer that does not
// check, are refused by the serving registry with a logged and counted
// reason, and the scorer keeps scoring with the previous version.
func TestRegistryRefusesBadArtifacts(t *testing.T) {
	_, good, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	_, other, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	top := newRegistryTopic(t)
	var logs syncBuffer
	prom := prometheus.NewRegistry()
	serving := runRegistry(t, top, registry.Options{
		PublicKey: good.Public().(ed25519.PublicKey), SigningKey: good,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Registerer: prom,
	})
	blobs, err := registry.NewBlobs(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	unchecked := runRegistry(t, top, registry.Options{Blobs: blobs}) // another process, no key
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := NewScorer(config.Model{Name: "fraud", Threshold: 0.5}, serving, Options{})
	if err != nil {
		t.Fatal(err)
	}

	art, err := os.ReadFile(filepath.Join("model", "testdata", "xgboost", "binary_logistic_names.json"))
	if err != nil {
		t.Fatal(err)
	}
	champ := []string{registry.Champion}
	v1, err := serving.Publish(ctx, schemas.ModelRecord{Name: "fraud", Aliases: champ}, art)
	if err != nil {
		t.Fatal(err)
	}
	if v1.Signature == "" {
		t.Fatal("Publish with a SigningKey wrote no signature")
	}
	waitAlias(t, unchecked, 1) // else its first Publish might pick version 1 too
	_, rows, pred := readGolden(t, "xgboost/binary_logistic_names.json")
	scoresV1 := func(what string) {
		t.Helper()
		for i, row := range rows[:50] {
			if hasInf(row) {
				continue
			}
			p, err := s.Score(event(v1.Features, row))
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if p.ModelVersion != 1 || math.Abs(p.Score-pred[i][0]) > 1e-6 {
				t.Fatalf("%s: row %d scored by v%d as %v, want v1 %v", what, i, p.ModelVersion, p.Score, pred[i][0])
			}
		}
	}
	scoresV1("v1")

	// The serving registry refuses to write what it would not serve.
	if _, err := serving.Publish(ctx, schemas.ModelRecord{Name: "fraud", Signature: registry.Sign(other, "fraud", model.FormatXGBoostJSON, art)}, art); !errors.Is(err, registry.ErrSignature) {
		t.Fatalf("Publish wrongly signed: %v, want ErrSignature", err)
	}

	tampered := append(slices.Clone(art), ' ') // still loads: other bytes, same model
	for _, c := range []struct {
		reason string
		rec    schemas.ModelRecord
		art    []byte
		after  func(rec schemas.ModelRecord)
		want   string
	}{
		{"checksum", schemas.ModelRecord{Name: "fraud", Signature: registry.Sign(good, "fraud", model.FormatXGBoostJSON, art)}, art,
			func(rec schemas.ModelRecord) { // tamper with the stored bytes
				u, _ := url.Parse(rec.ArtifactURI)
				if err := os.WriteFile(u.Path, tampered, 0o644); err != nil {
					t.Fatal(err)
				}
			}, "artifact checksum mismatch"},
		{"signature", schemas.ModelRecord{Name: "fraud", Signature: registry.Sign(other, "fraud", model.FormatXGBoostJSON, art)}, art, nil, "does not verify with the configured public key"},
		{"signature", schemas.ModelRecord{Name: "fraud"}, art, nil, "the record is unsigned"},
		{"signature", schemas.ModelRecord{Name: "fraud", Signature: registry.Sign(good, "other", model.FormatXGBoostJSON, art)}, art, nil, "does not verify"},
	} {
		rec, err := unchecked.Publish(ctx, c.rec, c.art)
		if err != nil {
			t.Fatal(err)
		}
		if c.after != nil {
			c.after(rec)
		}
		before := refused(t, prom, c.reason)
		rec.Aliases, rec.Reason = champ, "test: "+c.want
		produceRaw(t, top, rec) // MoveAlias would check the artifact

		waitAlias(t, serving, rec.Version)
		if l, _ := serving.Champion("fraud"); l.Record.Version != 1 {
			t.Fatalf("%s: v%d serves", c.want, l.Record.Version)
		}
		if got := refused(t, prom, c.reason); got != before+1 {
			t.Fatalf("%s: refused{reason=%s} = %v, want %v; log:\n%s", c.want, c.reason, got, before+1, logs.String())
		}
		if !strings.Contains(logs.String(), c.want) || !strings.Contains(logs.String(), "previous champion keeps serving") {
			t.Fatalf("%s: not logged:\n%s", c.want, logs.String())
		}
		scoresV1(c.want)
	}
}

// produceRaw writes a record as is to top's topic.
func produceRaw(t *testing.T, top registry.Options, rec schemas.ModelRecord) {
	t.Helper()
	cl, err := kgo.NewClient(top.Kafka...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	b, err := top.Serde.Encode(rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: top.Topic, Key: []byte(registry.Key(rec.Name, rec.Version)), Value: b}).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// refused reads weir_registry_artifacts_refused_total{model="fraud",reason}.
func refused(t *testing.T, g prometheus.Gatherer, reason string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "weir_registry_artifacts_refused_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["model"] == "fraud" && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// waitAlias waits until r's records show v as champion.
func waitAlias(t *testing.T, r *registry.Registry, v int32) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got, ok := r.Alias("fraud", registry.Champion); ok && got == v {
			return
		}
	}
	t.Fatalf("champion alias never reached v%d", v)
}

// syncBuffer is a log sink safe for Run's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
