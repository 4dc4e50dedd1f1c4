package materialize_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"slices"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/featurestore/materialize"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
)

// copySink keeps a deep copy of every row it is given: the materializer
// decodes the next batch into the same rows.
type copySink struct {
	mu   sync.Mutex
	rows map[int64]schemas.FeatureRow
}

func (s *copySink) Write(_ context.Context, rows []schemas.FeatureRow) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rows {
		c := r
		c.Values = nil
		for _, v := range r.Values {
			v.List, v.Labels = slices.Clone(v.List), slices.Clone(v.Labels)
			c.Values = append(c.Values, v)
		}
		s.rows[r.SourceOffset] = c
	}
	return nil
}

// TestBatchReuse decodes rows of different shapes into reused batch rows
// (batches of 1, 2 and 3): a row with fewer values, or with empty lists and
// labels, after a fuller one reads exactly as produced, nothing left over.
func TestBatchReuse(t *testing.T) {
	seeds, _ := testenv.Kafka(t)
	reg := newRegistry(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	topic := testenv.Name("weir.features.card")
	prod, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	createTopics(t, prod, topic)
	sd := serde(t, reg, topic, schemas.FeatureRowSchema)
	want := map[int64]schemas.FeatureRow{}
	var recs []*kgo.Record
	for i := range 60 {
		r := schemas.FeatureRow{Entity: "e", View: view.Name, ViewVersion: view.Version(), EventTime: int64(i), SourceOffset: int64(i), RevisesOffset: -1,
			Values: []schemas.FeatureValue{{Name: "n", Value: float64(i), List: []float64{}, Labels: []string{}}}}
		switch i % 3 {
		case 0: // full: two values, a list and labels
			r.Values[0].List, r.Values[0].Labels = []float64{float64(i), 2}, []string{"a", "b"}
			r.Values = append(r.Values, schemas.FeatureValue{Name: "amt", Value: 1, List: []float64{3}, Labels: []string{"c"}})
			r.WindowStart, r.WindowEnd, r.RevisesOffset = 5, 9, int64(i-1)
		case 2: // no values at all
			r.Values = []schemas.FeatureValue{}
		}
		want[r.SourceOffset] = r
		recs = append(recs, featureRecord(t, sd, topic, r))
	}
	if err := prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(prod)
	for _, batch := range []int{1, 2, 3} {
		sink := &copySink{rows: map[int64]schemas.FeatureRow{}}
		cfg := materialize.Config{Name: "reuse", Opts: []kgo.Opt{kgo.SeedBrokers(seeds...)}, Group: testenv.Name("reuse"), Topic: topic, MaxBatch: batch}
		m, err := materialize.NewFeatures(cfg, &view, sd, sink, log, nil)
		if err != nil {
			t.Fatal(err)
		}
		stop := start(t, m)
		eventually(t, fmt.Sprintf("batch %d: offsets committed", batch), func() (bool, string) {
			return committedAll(t, adm, cfg.Group, topic, next(recs...))
		})
		stop()
		for o, w := range want {
			g := sink.rows[o]
			// Empty lists decode as empty or nil; compare their contents.
			norm := func(r schemas.FeatureRow) schemas.FeatureRow {
				r.Values = slices.Clone(r.Values)
				for k := range r.Values {
					if len(r.Values[k].List) == 0 {
						r.Values[k].List = nil
					}
					if len(r.Values[k].Labels) == 0 {
						r.Values[k].Labels = nil
					}
				}
				if len(r.Values) == 0 {
					r.Values = nil
				}
				return r
			}
			if !reflect.DeepEqual(norm(g), norm(w)) {
				t.Errorf("batch %d, row %d: got %+v, want %+v", batch, o, g, w)
			}
		}
	}
}
