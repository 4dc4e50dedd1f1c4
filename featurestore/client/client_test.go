package client_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/weirhq/weir/featurestore/client"
	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/featurestore/serve"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/internal/testenv"
	"github.com/weirhq/weir/schemas"
)

// TestMain fails the package when a client or server leaves goroutines
// behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	card = config.View{Name: "card", Source: "payments", Entity: "card", TTL: config.Duration(time.Hour), Features: []config.Feature{
		{Name: "n", Agg: "count", Window: config.Duration(5 * time.Minute)},
		{Name: "sum", Agg: "sum", Field: "amount", Window: config.Duration(5 * time.Minute)},
	}}
	cardOld = config.View{Name: "card", Source: "payments", Entity: "card", TTL: config.Duration(time.Hour), Features: []config.Feature{
		{Name: "n", Agg: "count", Window: config.Duration(time.Minute)},
	}}
	merchant = config.View{Name: "merchant", Source: "payments", Entity: "merchant", TTL: config.Duration(time.Hour), Features: []config.Feature{{Name: "x", Agg: "count"}}}
)

// row is a feature row of view v for entity e, age old, with values.
func row(v *config.View, e string, age time.Duration, off int64, values ...float64) schemas.FeatureRow {
	r := schemas.FeatureRow{Entity: e, View: v.Name, ViewVersion: v.Version(), EventTime: time.Now().Add(-age).UnixMilli(), KnownTime: time.Now().UnixMilli(), SourceOffset: off, RevisesOffset: -1}
	for i, x := range values {
		r.Values = append(r.Values, schemas.FeatureValue{Name: v.Features[i].Name, Value: x})
	}
	return r
}

// stack is a serving handler on real Redis behind an HTTP server, with the
// online store that fills it.
type stack struct {
	store *online.Store
	url   string
}

func newStack(t *testing.T, opts serve.Options) *stack {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	return newStackOn(t, rdb, prefix, opts)
}

func newStackOn(t *testing.T, rdb redis.UniversalClient, prefix string, opts serve.Options) *stack {
	t.Helper()
	views := []config.View{card, merchant}
	store := online.New(rdb, prefix, append(views, cardOld))
	opts.Views, opts.Previous = views, []config.View{cardOld}
	h, err := serve.New(store, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &stack{store: store, url: srv.URL}
}

func newClient(t *testing.T, url string, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// TestGet writes rows with the online store and reads them back through the
// server: every status, versions, non-finite values.
func TestGet(t *testing.T) {
	s := newStack(t, serve.Options{})
	ctx := context.Background()
	if err := s.store.Write(ctx, []schemas.FeatureRow{
		row(&card, "c1", 2*time.Second, 10, 3, 12.5),
		row(&card, "c1", 3*time.Second, 9, 2, 10), // older: loses
		row(&card, "c2", 2*time.Hour, 11, 1, 4),   // past the 1h TTL, still in Redis
		row(&card, "c3", time.Second, 12, 5),      // no sum
		row(&card, "c4", time.Second, 13, math.NaN(), math.Inf(-1)),
		row(&cardOld, "c1", time.Second, 5, 7),
		row(&merchant, "m1", time.Second, 5, 8),
	}); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, s.url)
	res, err := c.Get(ctx, []string{"c1", "c2", "c3", "c4", "nope"}, "card")
	if err != nil {
		t.Fatal(err)
	}
	v := card.Version()
	if res.Entity != "card" || strings.Join(res.Features, " ") != "card:"+v+".n card:"+v+".sum" || len(res.Results) != 5 {
		t.Fatalf("entity %q, features %q, %d results", res.Entity, res.Features, len(res.Results))
	}
	if d := time.Since(res.Now); d < 0 || d > time.Minute {
		t.Errorf("server now %v, %v ago", res.Now, d)
	}
	type want struct {
		value  float64
		status client.Status
		age    time.Duration // approximately
	}
	wants := map[string][2]want{
		"c1":   {{3, client.Present, 2 * time.Second}, {12.5, client.Present, 2 * time.Second}},
		"c2":   {{0, client.Expired, 2 * time.Hour}, {0, client.Expired, 2 * time.Hour}},
		"c3":   {{5, client.Present, time.Second}, {0, client.Missing, 0}},
		"c4":   {{math.NaN(), client.Present, time.Second}, {math.Inf(-1), client.Present, time.Second}},
		"nope": {{0, client.Missing, 0}, {0, client.Missing, 0}},
	}
	for _, r := range res.Results {
		for i, got := range r.Values {
			w := wants[r.Entity][i]
			same := got.Value == w.value || math.IsNaN(got.Value) && math.IsNaN(w.value)
			if !same || got.Status != w.status || got.Age < w.age || got.Age > w.age+time.Minute {
				t.Errorf("%s %s: %v %s age %v, want %v %s age ~%v", r.Entity, res.Features[i], got.Value, got.Status, got.Age, w.value, w.status, w.age)
			}
			if got.Status != client.Missing && got.EventTime != res.Now.UnixMilli()-got.Age.Milliseconds() {
				t.Errorf("%s: event time %d, age %v, now %v", r.Entity, got.EventTime, got.Age, res.Now)
			}
			if got.Status == client.Missing && (got.EventTime != 0 || got.Age != 0) {
				t.Errorf("%s: missing with event time %d, age %v", r.Entity, got.EventTime, got.Age)
			}
		}
	}
	if i := res.Index("card.sum"); i != 1 {
		t.Errorf("Index(card.sum) = %d", i)
	}
	if i := res.Index("card:" + v + ".n"); i != 0 {
		t.Errorf("Index(card:%s.n) = %d", v, i)
	}
	if i := res.Index("card.avg"); i != -1 {
		t.Errorf("Index(card.avg) = %d", i)
	}

	// Version selection: the previous definition's keys, by name.
	res, err = c.Get(ctx, []string{"c1", "c2"}, "card:"+cardOld.Version()+".n")
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Results[0].Values[0]; got.Value != 7 || got.Status != client.Present || res.Results[1].Values[0].Status != client.Missing {
		t.Errorf("previous version: %+v", res.Results)
	}
	// The current version by name equals the default.
	res, err = c.Get(ctx, []string{"c1"}, "card:"+v+".sum", "card.n")
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Results[0].Values; got[0].Value != 12.5 || got[1].Value != 3 {
		t.Errorf("current version by name: %+v", got)
	}
	// Mixing versions is refused, naming the field.
	_, err = c.Get(ctx, []string{"c1"}, "card.sum", "card:"+cardOld.Version()+".n")
	var e *client.Error
	if !errors.As(err, &e) || e.StatusCode != 400 || e.Code != "bad_request" || e.Field != "features[1]" || !strings.Contains(e.Message, "never mixes versions") {
		t.Errorf("mixed versions: %v", err)
	}
	// A correction of c1's row replaces it.
	corr := row(&card, "c1", 2*time.Second, 14, 4, 20)
	corr.EventTime, corr.RevisesOffset = res.Results[0].Values[0].EventTime, 10
	if err := s.store.Write(ctx, []schemas.FeatureRow{corr}); err != nil {
		t.Fatal(err)
	}
	res, err = c.Get(ctx, []string{"c1"}, "card.n")
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Results[0].Values[0]; got.Value != 4 {
		t.Errorf("after a correction: %+v", got)
	}
}

func TestBadRequests(t *testing.T) {
	s := newStack(t, serve.Options{MaxEntities: 3})
	c := newClient(t, s.url)
	ctx := context.Background()
	for _, tt := range []struct {
		entities []string
		features []string
		field    string
		message  string
	}{
		{[]string{"c1"}, []string{"card.avg"}, "features[0]", `has no feature "avg"`},
		{[]string{"c1"}, []string{"card.n", "merchant.x"}, "features[1]", "a request serves one entity"},
		{[]string{"c1"}, []string{"card:v00000000"}, "features[0]", "no served version"},
		{[]string{"c1"}, nil, "features", "empty"},
		{nil, []string{"card"}, "entities", "empty"},
		{[]string{"a", "b", "c", "d"}, []string{"card"}, "entities", "4 entities, at most 3"},
		{[]string{"a", ""}, []string{"card"}, "entities[1]", "empty entity key"},
	} {
		_, err := c.Get(ctx, tt.entities, tt.features...)
		var e *client.Error
		if !errors.As(err, &e) || e.StatusCode != 400 || e.Field != tt.field || !strings.Contains(e.Message, tt.message) || e.Temporary() {
			t.Errorf("Get(%q, %q): %v; want 400 on %s: %s", tt.entities, tt.features, err, tt.field, tt.message)
		}
	}
}

func TestAuth(t *testing.T) {
	s := newStack(t, serve.Options{Token: "tok-3f9a"})
	ctx := context.Background()
	if err := s.store.Write(ctx, []schemas.FeatureRow{row(&card, "c1", time.Second, 1, 3, 4)}); err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{"", "tok-3f9", "tok-3f9ab"} {
		_, err := newClient(t, s.url, client.WithToken(tok)).Get(ctx, []string{"c1"}, "card")
		var e *client.Error
		if !errors.As(err, &e) || e.StatusCode != 401 || e.Code != "unauthorized" || strings.Contains(e.Error(), "tok-3f9") {
			t.Errorf("token %q: %v, want 401 unauthorized (without the token in it)", tok, err)
		}
	}
	res, err := newClient(t, s.url, client.WithToken("tok-3f9a")).Get(ctx, []string{"c1"}, "card")
	if err != nil {
		t.Fatal(err)
	}
	if v := res.Results[0].Values; v[0].Value != 3 || v[1].Value != 4 {
		t.Errorf("with the token: %+v", v)
	}
}

// TestRedisDown: a server whose Redis is gone answers 503, which the client
// reports as temporary.
func TestRedisDown(t *testing.T) {
	testenv.RedisAddr(t) // the same services rule as the others
	l := httptest.NewUnstartedServer(nil).Listener
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	rdb := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	s := newStackOn(t, rdb, "weirtest:down", serve.Options{})
	_, err := newClient(t, s.url).Get(context.Background(), []string{"c1"}, "card")
	var e *client.Error
	if !errors.As(err, &e) || e.StatusCode != 503 || e.Code != "unavailable" || !e.Temporary() {
		t.Errorf("Redis down: %v, want 503 unavailable", err)
	}
}

// TestTimeouts: the client's timeout and the caller's context both end a
// call to a server that does not answer.
func TestTimeouts(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)

	start := time.Now()
	_, err := newClient(t, srv.URL, client.WithTimeout(50*time.Millisecond)).Get(context.Background(), []string{"c1"}, "card")
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Errorf("client timeout: %v after %v", err, time.Since(start))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = newClient(t, srv.URL, client.WithTimeout(0)).Get(ctx, []string{"c1"}, "card")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("context deadline: %v", err)
	}
}

func TestNew(t *testing.T) {
	for _, u := range []string{"", "127.0.0.1:9464", "ftp://x", "http://", "::"} {
		if _, err := client.New(u); err == nil {
			t.Errorf("New(%q): no error", u)
		}
	}
	c, err := client.New("http://127.0.0.1:9464/")
	if err != nil {
		t.Fatal(err)
	}
	c.CloseIdleConnections()
}
