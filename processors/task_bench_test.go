package processors

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/loadgen"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/schemas/registry"
)

// BenchmarkProcess measures the processor's per-event work without Kafka:
// decode, state update, every view's features, feature-row encoding, and
// the changelog records of a 1000-record transaction.
func BenchmarkProcess(b *testing.B) {
	ctx := context.Background()
	srv, err := registry.Open("")
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go srv.Serve(l)
	reg, err := schemas.NewSRClient("http://" + l.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Load("../deploy/demo/weir.yaml", func(string) string { return "" })
	if err != nil {
		b.Fatal(err)
	}
	src := cfg.Sources[0]
	txn, err := schemas.NewSerde(ctx, reg, "t-value", schemas.MustParse(schemas.TransactionSchema))
	if err != nil {
		b.Fatal(err)
	}
	rows, err := schemas.NewSerde(ctx, reg, "f-value", schemas.MustParse(schemas.FeatureRowSchema))
	if err != nil {
		b.Fatal(err)
	}
	task, err := NewTask(TaskConfig{Source: src, Views: cfg.ViewsOf(src.Name), Entities: cfg.Entities,
		FeatureTopics: []string{"f"}, ChangelogTopic: "c"}, txn, rows, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		b.Fatal(err)
	}
	task.parts[0] = &partition{committed: map[string]*entityState{}, staged: map[string]*entityState{}}
	g := loadgen.New(loadgen.Config{Seed: 1, Cards: 20000})
	recs := make([]*kgo.Record, 100000)
	for i := range recs {
		tx, _ := g.Next()
		v, err := txn.Encode(&tx)
		if err != nil {
			b.Fatal(err)
		}
		recs[i] = &kgo.Record{Topic: src.Topic, Key: []byte(tx.CardID), Value: v, Offset: int64(i)}
	}
	var out []*kgo.Record
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := recs[i%len(recs)]
		if i > 0 && i%len(recs) == 0 { // start the stream over, a day later
			task.parts[0] = &partition{committed: map[string]*entityState{}, staged: map[string]*entityState{}}
		}
		if out, err = task.Process(ctx, r, out[:0]); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 999 {
			out = task.Flush(out[:0])
			task.Commit()
		}
	}
}
