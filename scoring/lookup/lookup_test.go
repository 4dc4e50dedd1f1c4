package lookup_test

import (
	"context"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring"
	"github.com/weirhq/weir/scoring/lookup"
	"github.com/weirhq/weir/scoring/model"
	"github.com/weirhq/weir/scoring/registry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is a card source with an own sliding view, an own view that
// emits on close (no row per event), and a merchant view (another entity).
func fixture() lookup.Config {
	d := func(x time.Duration) config.Duration { return config.Duration(x) }
	return lookup.Config{
		Source:   config.Source{Name: "payments", Key: "card_id"},
		Entities: []config.Entity{{Name: "card", Key: "card_id"}, {Name: "merchant", Key: "merchant_id"}},
		Views: []config.View{
			{Name: "card_activity", Source: "payments", Entity: "card", TTL: d(24 * time.Hour),
				Features: []config.Feature{{Name: "count_5m", Agg: "count"}, {Name: "sum_5m", Agg: "sum"}}},
			{Name: "card_daily", Source: "payments", Entity: "card", TTL: d(48 * time.Hour), Kind: config.KindTumbling, Emit: "close",
				Features: []config.Feature{{Name: "count_1d", Agg: "count"}}},
			{Name: "merchant_activity", Source: "payments", Entity: "merchant", TTL: d(time.Hour),
				Features: []config.Feature{{Name: "count_1h", Agg: "count"}, {Name: "sum_1h", Agg: "sum"}, {Name: "max_1h", Agg: "max"}}},
		},
		Model: config.Model{Name: "fraud", Source: "payments", Threshold: 0.5, Default: -7,
			Defaults: map[string]float64{"merchant_activity.sum_1h": -9},
			Features: []string{"card_activity.sum_5m", "merchant_activity.count_1h", "card_daily.count_1d", "merchant_activity.sum_1h", "card_activity.count_5m"},
			MaxAge:   d(10 * time.Minute), MaxAges: map[string]config.Duration{"merchant_activity.sum_1h": d(time.Minute)}},
	}
}

// keys is an event's entity keys.
type keys map[string]string

func (k keys) EntityKey(e string) []byte {
	if s, ok := k[e]; ok {
		return []byte(s)
	}
	return nil
}

// counting counts the store's round trips.
type counting struct {
	lookup.Store
	calls atomic.Int64
}

func (c *counting) GetFeatures(ctx context.Context, l []online.Lookup) ([]online.Features, error) {
	c.calls.Add(1)
	return c.Store.GetFeatures(ctx, l)
}

// champion serves one logistic-regression version of the model.
type champion struct{ l *registry.Loaded }

func (c champion) Serving(string, string) (*registry.Loaded, bool) { return c.l, true }

func logreg(t *testing.T, features []string) champion {
	t.Helper()
	n := len(features)
	m := &model.LogReg{Format: model.Format, Name: "fraud", Features: features, Transforms: make([]string, n),
		Mean: make([]float64, n), Std: make([]float64, n), Weights: make([]float64, n)}
	for i := range n {
		m.Std[i], m.Weights[i] = 1, 0.01
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	return champion{&registry.Loaded{Record: schemas.ModelRecord{Name: "fraud", Version: 1, Format: model.Format, Features: features}, Model: m}}
}

// TestFetch scores events through a Lookup over real Redis with the
// scorer, and checks every logged feature's value, age, stale flag and
// missing default against what was written, and that each event reads
// Redis at most once.
func TestFetch(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	c := fixture()
	st := online.New(rdb, prefix, c.Views)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixMilli()
	min := time.Minute.Milliseconds()
	row := func(view, version, entity string, at int64, vals ...float64) schemas.FeatureRow {
		v := viewOf(c, view)
		r := schemas.FeatureRow{Entity: entity, View: view, ViewVersion: version, EventTime: at, KnownTime: at, SourceOffset: at, RevisesOffset: -1}
		for i, x := range vals {
			r.Values = append(r.Values, schemas.FeatureValue{Name: v.Features[i].Name, Value: x})
		}
		return r
	}
	mv, dv := viewOf(c, "merchant_activity"), viewOf(c, "card_daily")
	// m1 5 min old, m2 30 s old, m3 never written, m4 13 min old
	// (beyond max_age, within its TTL).
	if err := st.Write(ctx, []schemas.FeatureRow{
		row("merchant_activity", mv.Version(), "m1", t0-5*min, 11, 110.5, 60),
		row("merchant_activity", mv.Version(), "m2", t0-min/2, 3, 30.25, 20),
		row("merchant_activity", mv.Version(), "m4", t0-13*min, 7, math.NaN(), 9),
		row("card_daily", dv.Version(), "c1", t0-20*min, 40),
		row("card_daily", dv.Version(), "c2", t0-2*min, 4),
	}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	store := &counting{Store: st}
	l, err := lookup.New(c, store, lookup.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if !l.NeedsStore() {
		t.Fatal("NeedsStore false for a model with a merchant view")
	}
	sc, err := scoring.NewScorer(c.Model, logreg(t, c.Model.Features), scoring.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	own := func(card string, at int64, count, sum float64) []*schemas.FeatureRow {
		r := row("card_activity", "v", card, at, count, sum)
		return []*schemas.FeatureRow{&r}
	}
	// want per model feature: value, age (-1: missing), stale.
	type f struct {
		v     float64
		age   int64
		stale bool
	}
	miss := func(def float64) f { return f{def, -1, false} }
	for _, tc := range []struct {
		name  string
		ev    lookup.Event
		reads int64
		want  [5]f // sum_5m, count_1h, count_1d, sum_1h, count_5m
	}{
		{"all found, some stale", lookup.Event{Time: t0, Rows: own("c1", t0, 2, 50), Keys: keys{"card": "c1", "merchant": "m1"}}, 1,
			[5]f{{50, 0, false}, {11, 5 * min, false}, {40, 20 * min, true}, {110.5, 5 * min, true}, {2, 0, false}}},
		{"fresh", lookup.Event{Time: t0, Rows: own("c2", t0, 1, 5), Keys: keys{"card": "c2", "merchant": "m2"}}, 1,
			[5]f{{5, 0, false}, {3, min / 2, false}, {4, 2 * min, false}, {30.25, min / 2, false}, {1, 0, false}}},
		{"merchant never written", lookup.Event{Time: t0, Rows: own("c2", t0, 1, 5), Keys: keys{"card": "c2", "merchant": "m3"}}, 1,
			[5]f{{5, 0, false}, miss(-7), {4, 2 * min, false}, miss(-9), {1, 0, false}}},
		{"NaN in Redis is missing, the rest of its row stale", lookup.Event{Time: t0, Rows: own("c2", t0, 1, 5), Keys: keys{"card": "c2", "merchant": "m4"}}, 1,
			[5]f{{5, 0, false}, {7, 13 * min, true}, {4, 2 * min, false}, miss(-9), {1, 0, false}}},
		{"no merchant key", lookup.Event{Time: t0, Rows: own("c2", t0, 1, 5), Keys: keys{"card": "c2"}}, 1,
			[5]f{{5, 0, false}, miss(-7), {4, 2 * min, false}, miss(-9), {1, 0, false}}},
		{"own rows only: no Redis read", lookup.Event{Time: t0, Keys: keys{"card": "c9"},
			Rows: append(own("c9", t0, 1, 5), func() *schemas.FeatureRow { r := row("card_daily", "v", "c9", t0-15*min, 8); return &r }())}, 0,
			[5]f{{5, 0, false}, miss(-7), {8, 15 * min, true}, miss(-9), {1, 0, false}}},
		{"row newer than the event: negative age, not stale", lookup.Event{Time: t0 - 10*min, Rows: own("c2", t0-10*min, 1, 5), Keys: keys{"card": "c2", "merchant": "m2"}}, 1,
			[5]f{{5, 0, false}, {3, -10*min + min/2, false}, {4, -8 * min, false}, {30.25, -10*min + min/2, false}, {1, 0, false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := store.calls.Load()
			v, err := l.Fetch(ctx, tc.ev)
			if err != nil {
				t.Fatal(err)
			}
			p, err := sc.Score(scoring.Event{Entity: "card", ID: "e", Time: tc.ev.Time, Features: v})
			v.Release()
			if err != nil {
				t.Fatal(err)
			}
			if n := store.calls.Load() - before; n != tc.reads {
				t.Fatalf("%d Redis round trips, want %d", n, tc.reads)
			}
			for i, w := range tc.want {
				got := p.Features[i]
				if got.Name != c.Model.Features[i] || got.Value != w.v || got.AgeMs != w.age || got.Stale != w.stale {
					t.Errorf("%s: got value %v age %d stale %v, want %v %d %v", got.Name, got.Value, got.AgeMs, got.Stale, w.v, w.age, w.stale)
				}
			}
		})
	}
	// Counts: stale per feature and missing per feature, over all cases.
	for _, m := range []struct {
		metric, feature string
		want            float64
	}{
		{"weir_scoring_stale_features_total", "card_daily.count_1d", 2},
		{"weir_scoring_stale_features_total", "merchant_activity.sum_1h", 1},
		{"weir_scoring_stale_features_total", "merchant_activity.count_1h", 1},
		{"weir_scoring_missing_features_total", "merchant_activity.count_1h", 3},
		{"weir_scoring_missing_features_total", "merchant_activity.sum_1h", 4},
	} {
		if got := counter(t, reg, m.metric, m.feature); got != m.want {
			t.Errorf("%s{feature=%q} = %v, want %v", m.metric, m.feature, got, m.want)
		}
	}
}

// counter returns a counter's value: the series whose feature label is
// feature, or the first series when feature is "".
func counter(t *testing.T, reg *prometheus.Registry, name, feature string) float64 {
	t.Helper()
	mf, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mf {
		if m.GetName() != name {
			continue
		}
		for _, x := range m.GetMetric() {
			if feature == "" {
				return x.GetCounter().GetValue()
			}
			for _, lp := range x.GetLabel() {
				if lp.GetName() == "feature" && lp.GetValue() == feature {
					return x.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestFetchOtherSource: a view of the same entity computed from another
// source (logins keyed by card_id) is read from Redis by the event's own
// key, since the event's rows are only its own source's.
func TestFetchOtherSource(t *testing.T) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	c := fixture()
	c.Views = append(c.Views, config.View{Name: "login_activity", Source: "logins", Entity: "card", TTL: config.Duration(time.Hour),
		Features: []config.Feature{{Name: "fails_1h", Agg: "count"}}})
	c.Model.Features = []string{"card_activity.count_5m", "login_activity.fails_1h"}
	c.Model.MaxAge, c.Model.MaxAges = 0, nil // max ages are the views' ttls
	lv := viewOf(c, "login_activity")
	if err := online.New(rdb, prefix, c.Views).Write(ctx, []schemas.FeatureRow{{Entity: "c1", View: lv.Name, ViewVersion: lv.Version(), EventTime: 900, RevisesOffset: -1,
		Values: []schemas.FeatureValue{{Name: "fails_1h", Value: 3}}}}); err != nil {
		t.Fatal(err)
	}
	l, err := lookup.New(c, online.New(rdb, prefix, c.Views), lookup.Options{})
	if err != nil {
		t.Fatal(err)
	}
	row := &schemas.FeatureRow{View: "card_activity", EventTime: 1000, Values: []schemas.FeatureValue{{Name: "count_5m", Value: 2}, {Name: "sum_5m", Value: 9}}}
	v, err := l.Fetch(ctx, lookup.Event{Time: 1000, Rows: []*schemas.FeatureRow{row}, Keys: keys{"card": "c1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Release()
	for _, w := range []struct {
		name string
		v    float64
		at   int64
	}{{"card_activity.count_5m", 2, 1000}, {"login_activity.fails_1h", 3, 900}} {
		if x, at, ok := v.Feature(w.name); !ok || x != w.v || at != w.at {
			t.Errorf("%s: %v at %d (%v), want %v at %d", w.name, x, at, ok, w.v, w.at)
		}
	}
	if v.Stale("login_activity.fails_1h", time.Hour.Milliseconds()+1) != true || v.Stale("login_activity.fails_1h", time.Hour.Milliseconds()) {
		t.Error("login_activity.fails_1h: stale not exactly past its view's ttl (the model has no max_age for it)")
	}
}

// TestFetchRedisDown: a read that fails fails Fetch (the hook retries the
// transaction) and is counted; no vector is returned to be scored.
func TestFetchRedisDown(t *testing.T) {
	testenv.RedisAddr(t) // the test is about Redis: run it where Redis runs
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer rdb.Close()
	c := fixture()
	reg := prometheus.NewRegistry()
	l, err := lookup.New(c, online.New(rdb, "weirtest:down", c.Views), lookup.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	v, err := l.Fetch(context.Background(), lookup.Event{Time: 1, Keys: keys{"card": "c", "merchant": "m"}})
	if err == nil || v != nil || !strings.Contains(err.Error(), "fraud") {
		t.Fatalf("Fetch with Redis down: %v, %v", v, err)
	}
	if n := counter(t, reg, "weir_scoring_lookup_errors_total", ""); n != 1 {
		t.Fatalf("lookup errors %v, want 1", n)
	}
}

func viewOf(c lookup.Config, name string) *config.View {
	for i := range c.Views {
		if c.Views[i].Name == name {
			return &c.Views[i]
		}
	}
	panic("no view " + name)
}

// TestNewErrors: a model naming an unknown view or feature is refused.
func TestNewErrors(t *testing.T) {
	for _, tc := range []struct{ feature, want string }{
		{"nope.x", `unknown view "nope"`},
		{"card_activity.nope", `no feature "nope"`},
		{"card_activity", "not of the form"},
	} {
		c := fixture()
		c.Model.Features = append(c.Model.Features, tc.feature)
		if _, err := lookup.New(c, nil, lookup.Options{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.feature, err, tc.want)
		}
	}
}

// BenchmarkFetch gathers one event's features with one merchant view
// read from real Redis (two features) and an own row.
func BenchmarkFetch(b *testing.B) {
	ctx := context.Background()
	rdb, prefix := testenv.Redis(b)
	c := fixture()
	c.Model.Features = []string{"card_activity.sum_5m", "merchant_activity.count_1h", "merchant_activity.sum_1h", "card_activity.count_5m"}
	st := online.New(rdb, prefix, c.Views)
	mv := viewOf(c, "merchant_activity")
	if err := st.Write(ctx, []schemas.FeatureRow{{Entity: "m1", View: mv.Name, ViewVersion: mv.Version(), EventTime: 1, RevisesOffset: -1,
		Values: []schemas.FeatureValue{{Name: "count_1h", Value: 3}, {Name: "sum_1h", Value: 4.5}, {Name: "max_1h", Value: 2}}}}); err != nil {
		b.Fatal(err)
	}
	l, err := lookup.New(c, st, lookup.Options{})
	if err != nil {
		b.Fatal(err)
	}
	row := &schemas.FeatureRow{View: "card_activity", EventTime: 2, Values: []schemas.FeatureValue{{Name: "count_5m", Value: 1}, {Name: "sum_5m", Value: 2}}}
	ev := lookup.Event{Time: 2, Rows: []*schemas.FeatureRow{row}, Keys: keys{"card": "c1", "merchant": "m1"}}
	b.ReportAllocs()
	for b.Loop() {
		v, err := l.Fetch(ctx, ev)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, ok := v.Feature("merchant_activity.sum_1h"); !ok {
			b.Fatal("merchant feature missing")
		}
		v.Release()
	}
}
