package online_test

import (
	"context"
	"math"
	"testing"

	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
)

// TestGetFeatures reads named features of several keys: present, absent
// from the row, a key never written, non-finite values, and the same key
// twice with other features.
func TestGetFeatures(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	s := online.New(rdb, prefix, views)
	ctx := context.Background()
	if err := s.Write(ctx, []schemas.FeatureRow{row("a", 10, 1, 1.5), row("b", 20, 2, math.NaN())}); err != nil {
		t.Fatal(err)
	}
	key := func(e string) online.Key { return online.Key{View: "card", Version: "v1", Entity: e} }
	got, err := s.GetFeatures(ctx, []online.Lookup{
		{Key: key("a"), Features: []string{"y", "x", "z"}},
		{Key: key("nope"), Features: []string{"x"}},
		{Key: key("b"), Features: []string{"x", "y"}},
		{Key: key("a"), Features: nil},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("%d answers for 4 lookups", len(got))
	}
	if a := got[0]; !a.Found || a.EventTime != 10 || a.Values[0] != -1.5 || a.Values[1] != 1.5 || !a.Has[0] || !a.Has[1] || a.Has[2] || a.Values[2] != 0 {
		t.Errorf("a: %+v", a)
	}
	if n := got[1]; n.Found || len(n.Values) != 1 || n.Has[0] {
		t.Errorf("never written: %+v", n)
	}
	if b := got[2]; !b.Found || b.EventTime != 20 || !math.IsNaN(b.Values[0]) || !math.IsNaN(b.Values[1]) || !b.Has[0] || !b.Has[1] {
		t.Errorf("b: %+v", b)
	}
	if a := got[3]; !a.Found || a.EventTime != 10 || len(a.Values) != 0 {
		t.Errorf("a without features: %+v", a)
	}
	if got, err := s.GetFeatures(ctx, nil); err != nil || got != nil {
		t.Errorf("no lookups: %v, %v", got, err)
	}
}
