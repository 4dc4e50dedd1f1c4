package scoring

import (
	"context"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

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
	if o.Blobs == nil {
		if o.Blobs, err = registry.NewBlobs(t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}
	o.Kafka, o.Topic, o.Serde = []kgo.Opt{kgo.SeedBrokers(seeds...)}, topic, serde
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
