package catalog_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/weirhq/weir/featurestore/catalog"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/testenv"
)

func views() (v1, v2, other config.View) {
	v1 = config.View{Name: "card_recent", Source: "payments", Entity: "card", TTL: config.Duration(48 * time.Hour),
		Features: []config.Feature{
			{Name: "txn_count_1h", Agg: "count", Window: config.Duration(time.Hour)},
			{Name: "big_sum_1h", Agg: "sum", Field: "amount", Window: config.Duration(time.Hour),
				Where: &config.Filter{Field: "amount", Op: ">", Value: 100.5}},
			{Name: "not_gb", Agg: "count", Window: config.Duration(time.Hour),
				Where: &config.Filter{Field: "country", Op: "!=", Value: "GB"}},
			{Name: "recent", Agg: "last_n", Field: "amount", N: 5},
		}}
	v2 = v1
	v2.Features = append(append([]config.Feature(nil), v1.Features...), config.Feature{Name: "amount_p90_1h", Agg: "quantile", Field: "amount", Q: 0.9, Window: config.Duration(time.Hour)})
	other = config.View{Name: "merchant_day", Source: "payments", Entity: "merchant", Kind: config.KindTumbling,
		Window: config.Duration(24 * time.Hour), Emit: config.EmitBoth, Lateness: config.Duration(time.Minute),
		Features: []config.Feature{{Name: "n", Agg: "count", Where: &config.Filter{Field: "n_items", Op: ">=", Value: 3}}}}
	return v1, v2, other
}

// TestRoundTrip: an encoded definition decodes to the same version (the
// version hashes every field the YAML carries, filters with float, int and
// string constants included); a record under another version's key is
// refused.
func TestRoundTrip(t *testing.T) {
	v1, v2, other := views()
	for _, v := range []config.View{v1, v2, other} {
		at := time.Date(2026, 12, 6, 1, 2, 3, 0, time.UTC)
		b, err := catalog.Encode(catalog.Entry{View: v, Version: v.Version(), RegisteredAt: at, By: "test"})
		if err != nil {
			t.Fatal(err)
		}
		e, err := catalog.Decode(catalog.Key(v.Name, v.Version()), b)
		if err != nil {
			t.Fatalf("%s: %v\n%s", v.Name, err, b)
		}
		if e.Version != v.Version() || e.View.Version() != v.Version() || !e.RegisteredAt.Equal(at) || e.By != "test" {
			t.Errorf("%s: decoded %+v, want version %s", v.Name, e, v.Version())
		}
	}
	b, _ := catalog.Encode(catalog.Entry{View: v2, Version: v2.Version()})
	if _, err := catalog.Decode(catalog.Key(v1.Name, v1.Version()), b); err == nil || !strings.Contains(err.Error(), v2.Version()) {
		t.Errorf("a v2 definition under v1's key: err %v, want it refused naming %s", err, v2.Version())
	}
}

// TestPublishRead: publishing the same views twice writes each version
// once; a changed definition adds a version beside the old one; Previous
// gives the versions weir.yaml no longer has; a corrupt record is skipped
// and reported.
func TestPublishRead(t *testing.T) {
	seeds, _ := testenv.Kafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts := []kgo.Opt{kgo.SeedBrokers(seeds...)}
	topic := testenv.Name("views")
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, map[string]*string{"cleanup.policy": ptr("compact")}, topic); err != nil {
		t.Fatal(err)
	}
	empty, err := catalog.Read(ctx, opts, testenv.Name("absent"))
	if err != nil || len(empty.Views()) != 0 {
		t.Fatalf("a catalog topic that does not exist: %v, %v; want empty", empty.Views(), err)
	}

	v1, v2, other := views()
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	if n, err := catalog.Publish(ctx, opts, topic, []config.View{v1, other}, "processor payments", t0); err != nil || n != 2 {
		t.Fatalf("first publish: %d, %v; want 2", n, err)
	}
	if n, err := catalog.Publish(ctx, opts, topic, []config.View{v1, other}, "processor payments", t0.Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("same views again: %d, %v; want 0 written", n, err)
	}
	if n, err := catalog.Publish(ctx, opts, topic, []config.View{v2, other}, "processor payments", t0.Add(2*time.Hour)); err != nil || n != 1 {
		t.Fatalf("changed view: %d, %v; want 1", n, err)
	}
	// A record that lies about its version.
	b, _ := catalog.Encode(catalog.Entry{View: v1, Version: v1.Version()})
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("card_recent/vdeadbeef"), Value: b}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	c, err := catalog.Read(ctx, opts, topic)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Views(); strings.Join(got, ",") != "card_recent,merchant_day" {
		t.Errorf("views %v", got)
	}
	vs := c.Versions("card_recent")
	if len(vs) != 2 || vs[0].Version != v1.Version() || vs[1].Version != v2.Version() || !vs[0].RegisteredAt.Equal(t0) {
		t.Errorf("card_recent versions %+v, want %s then %s", vs, v1.Version(), v2.Version())
	}
	if len(c.Skipped) != 1 || !strings.Contains(c.Skipped[0].Error(), "vdeadbeef") {
		t.Errorf("skipped %v, want the vdeadbeef record", c.Skipped)
	}
	prev := c.Previous([]config.View{v2, other})
	if len(prev) != 1 || prev[0].Version() != v1.Version() {
		t.Errorf("previous of the new config: %v, want only %s", prev, v1.Version())
	}
	got, ok := c.Get("card_recent", v1.Version())
	if !ok || len(got.Features) != len(v1.Features) || got.Features[1].Where.String() != v1.Features[1].Where.String() {
		t.Errorf("Get v1: %+v %v", got, ok)
	}
}

func ptr(s string) *string { return &s }
