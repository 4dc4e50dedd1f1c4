package serve_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/weirhq/weir/featurestore"
	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/featurestore/serve"
	"github.com/weirhq/weir/internal/config"
)

var (
	now = time.UnixMilli(1_700_000_000_000)

	card = config.View{Name: "card", Source: "payments", Entity: "card", TTL: config.Duration(time.Hour), Features: []config.Feature{
		{Name: "n", Agg: "count", Window: config.Duration(5 * time.Minute)},
		{Name: "sum", Agg: "sum", Field: "amount", Window: config.Duration(5 * time.Minute)},
	}}
	// cardOld is an earlier definition of card: another version.
	cardOld = config.View{Name: "card", Source: "payments", Entity: "card", TTL: config.Duration(time.Hour), Features: []config.Feature{
		{Name: "n", Agg: "count", Window: config.Duration(time.Minute)},
	}}
	cardStats = config.View{Name: "card_stats", Source: "payments", Entity: "card", Features: []config.Feature{{Name: "last", Agg: "last", Field: "amount"}}}
	merchant  = config.View{Name: "merchant", Source: "payments", Entity: "merchant", TTL: config.Duration(time.Hour), Features: []config.Feature{{Name: "x", Agg: "count"}}}

	cur, old = card.Version(), cardOld.Version()
)

// fakeStore is a Reader over a map; it counts calls (round trips).
type fakeStore struct {
	mu    sync.Mutex
	rows  map[online.Key]featurestore.Row
	err   error
	calls int
	keys  int
}

func (f *fakeStore) GetFeatures(_ context.Context, lookups []online.Lookup) ([]online.Features, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	f.keys += len(lookups)
	if f.err != nil {
		return nil, f.err
	}
	out := make([]online.Features, len(lookups))
	for i, l := range lookups {
		out[i] = online.Features{Values: make([]float64, len(l.Features)), Has: make([]bool, len(l.Features))}
		r, ok := f.rows[l.Key]
		if !ok {
			continue
		}
		out[i].Found, out[i].EventTime = true, r.EventTime
		for j, name := range l.Features {
			out[i].Values[j], out[i].Has[j] = r.Values[name]
		}
	}
	return out, nil
}

func newStore() *fakeStore {
	f := &fakeStore{rows: map[online.Key]featurestore.Row{}}
	put := func(v *config.View, entity string, age time.Duration, values map[string]float64) {
		k := online.Key{View: v.Name, Version: v.Version(), Entity: entity}
		f.rows[k] = featurestore.Row{Entity: entity, View: v.Name, Version: k.Version, EventTime: now.Add(-age).UnixMilli(), Values: values}
	}
	put(&card, "c1", time.Second, map[string]float64{"n": 3, "sum": 12.5})
	put(&card, "c2", 2*time.Hour, map[string]float64{"n": 1, "sum": 4}) // past the 1h TTL
	put(&card, "c3", time.Minute, map[string]float64{"n": 1})           // no sum
	put(&card, "inf", time.Second, map[string]float64{"n": math.NaN(), "sum": math.Inf(1)})
	put(&card, `we"ird<`, time.Second, map[string]float64{"n": 1e21, "sum": -0.5})
	put(&cardOld, "c1", time.Second, map[string]float64{"n": 7})
	put(&cardStats, "c1", 100*24*time.Hour, map[string]float64{"last": 9}) // no TTL: never expires
	put(&merchant, "m1", time.Second, map[string]float64{"x": 2})
	return f
}

// answer is the response body, decoded loosely.
type answer struct {
	NowMs    int64    `json:"now_ms"`
	Entity   string   `json:"entity"`
	Features []string `json:"features"`
	Results  []struct {
		Entity    string   `json:"entity"`
		Values    []any    `json:"values"`
		Status    []string `json:"status"`
		EventTime []*int64 `json:"event_time_ms"`
		Age       []*int64 `json:"age_ms"`
	} `json:"results"`
	Error *struct {
		Code, Field, Message string
	} `json:"error"`
}

// cells renders each result as "entity: value/status/age ..." for compact
// comparisons.
func (a *answer) cells() []string {
	var out []string
	for _, r := range a.Results {
		var b strings.Builder
		b.WriteString(r.Entity + ":")
		for i := range r.Values {
			v, _ := json.Marshal(r.Values[i])
			age := "-"
			if r.Age[i] != nil {
				age = time.Duration(*r.Age[i] * int64(time.Millisecond)).String()
			}
			if (r.EventTime[i] == nil) != (r.Age[i] == nil) || r.EventTime[i] != nil && *r.EventTime[i] != now.UnixMilli()-*r.Age[i] {
				age = "inconsistent"
			}
			b.WriteString(" " + string(v) + "/" + r.Status[i] + "/" + age)
		}
		out = append(out, b.String())
	}
	return out
}

func TestHandler(t *testing.T) {
	body := func(entities, features string) string {
		return `{"entities": ` + entities + `, "features": ` + features + `}`
	}
	tests := []struct {
		name    string
		opts    func(*serve.Options)
		method  string // default POST
		auth    string
		body    string
		store   func(*fakeStore)
		status  int    // default 200
		field   string // the error's field, when status != 200
		message string // a substring of the error's message
		// On 200: the resolved features and the results as cells().
		features []string
		cells    []string
		raw      string // the exact body, when set
	}{
		{
			name: "exact answer for one entity",
			body: body(`["c1"]`, `["card.n", "card.sum"]`),
			raw: `{"now_ms":1700000000000,"entity":"card","features":["card:` + cur + `.n","card:` + cur + `.sum"],"results":[` +
				`{"entity":"c1","values":[3,12.5],"status":["present","present"],"event_time_ms":[1699999999000,1699999999000],"age_ms":[1000,1000]}]}`,
		},
		{
			name:     "present, expired, row without the feature, no row",
			body:     body(`["c1", "c2", "c3", "nope"]`, `["card.n", "card.sum"]`),
			features: []string{"card:" + cur + ".n", "card:" + cur + ".sum"},
			cells: []string{
				"c1: 3/present/1s 12.5/present/1s",
				"c2: null/expired/2h0m0s null/expired/2h0m0s",
				"c3: 1/present/1m0s null/missing/-",
				"nope: null/missing/- null/missing/-",
			},
		},
		{
			name:     "a whole view in definition order, beside a feature of another view",
			body:     body(`["c1"]`, `["card", "card_stats.last"]`),
			features: []string{"card:" + cur + ".n", "card:" + cur + ".sum", "card_stats:" + cardStats.Version() + ".last"},
			cells:    []string{"c1: 3/present/1s 12.5/present/1s 9/present/2400h0m0s"},
		},
		{
			name:     "a view without ttl never expires",
			body:     body(`["c1"]`, `["card_stats"]`),
			features: []string{"card_stats:" + cardStats.Version() + ".last"},
			cells:    []string{"c1: 9/present/2400h0m0s"},
		},
		{
			name:     "non-finite values as strings",
			body:     body(`["inf"]`, `["card"]`),
			features: []string{"card:" + cur + ".n", "card:" + cur + ".sum"},
			cells:    []string{`inf: "NaN"/present/1s "+Inf"/present/1s`},
		},
		{
			name:     "entity keys needing escapes, large numbers",
			body:     body(`["we\"ird<"]`, `["card"]`),
			features: []string{"card:" + cur + ".n", "card:" + cur + ".sum"},
			cells:    []string{`we"ird<: 1e+21/present/1s -0.5/present/1s`},
		},
		{
			name:     "duplicate entities and features are answered as asked",
			body:     body(`["c1", "c1"]`, `["card.n", "card.n"]`),
			features: []string{"card:" + cur + ".n", "card:" + cur + ".n"},
			cells:    []string{"c1: 3/present/1s 3/present/1s", "c1: 3/present/1s 3/present/1s"},
		},
		{
			name:     "the current version named explicitly",
			body:     body(`["c1"]`, `["card:`+cur+`.sum"]`),
			features: []string{"card:" + cur + ".sum"},
			cells:    []string{"c1: 12.5/present/1s"},
		},
		{
			name:     "a previous version named explicitly reads its own keys",
			body:     body(`["c1", "c2"]`, `["card:`+old+`"]`),
			features: []string{"card:" + old + ".n"},
			cells:    []string{"c1: 7/present/1s", "c2: null/missing/-"},
		},
		{
			name: "two versions of a view in one request", body: body(`["c1"]`, `["card:`+old+`.n", "card.sum"]`),
			status: 400, field: "features[1]", message: "never mixes versions",
		},
		{
			name: "two versions, both named", body: body(`["c1"]`, `["card.sum", "card:`+old+`"]`),
			status: 400, field: "features[1]", message: `features[0] "card.sum" names version ` + cur,
		},
		{
			name: "unknown version", body: body(`["c1"]`, `["card_stats.last", "card:v00000000.n"]`),
			status: 400, field: "features[1]", message: `no served version "v00000000"`,
		},
		{
			name: "unknown view", body: body(`["c1"]`, `["cards.n"]`),
			status: 400, field: "features[0]", message: `unknown view "cards" (served: card, card_stats, merchant)`,
		},
		{
			name: "unknown feature", body: body(`["c1"]`, `["card.avg"]`),
			status: 400, field: "features[0]", message: `has no feature "avg" (features: n, sum)`,
		},
		{name: "feature of a previous version only", body: body(`["c1"]`, `["card:`+old+`.sum"]`), status: 400, field: "features[0]", message: `has no feature "sum"`},
		{name: "empty reference", body: body(`["c1"]`, `["card.n", ""]`), status: 400, field: "features[1]", message: "empty reference"},
		{name: "empty feature name", body: body(`["c1"]`, `["card."]`), status: 400, field: "features[0]", message: "empty feature name"},
		{name: "empty version", body: body(`["c1"]`, `["card:.n"]`), status: 400, field: "features[0]", message: "empty version"},
		{name: "no view name", body: body(`["c1"]`, `[":v1.n"]`), status: 400, field: "features[0]", message: "no view name"},
		{
			name: "views of two entities", body: body(`["c1"]`, `["card.n", "merchant.x"]`),
			status: 400, field: "features[1]", message: `keyed by entity "merchant", but features[0] "card.n" by "card"`,
		},
		{name: "no features", body: `{"entities": ["c1"]}`, status: 400, field: "features", message: "empty"},
		{name: "no entities", body: `{"features": ["card"]}`, status: 400, field: "entities", message: "empty"},
		{name: "empty entity key", body: body(`["c1", ""]`, `["card"]`), status: 400, field: "entities[1]", message: "empty entity key"},
		{name: "entities not a list", body: body(`"c1"`, `["card"]`), status: 400, field: "entities", message: "want a list of strings, got a JSON string"},
		{name: "an entity not a string", body: body(`["c1", 7]`, `["card"]`), status: 400, field: "entities", message: "want a string, got a JSON number"},
		{name: "features not a list", body: body(`["c1"]`, `{"card": 1}`), status: 400, field: "features", message: "want a list of strings, got a JSON object"},
		{name: "unknown field", body: `{"entity": ["c1"], "features": ["card"]}`, status: 400, field: "entity", message: "unknown field"},
		{name: "not JSON", body: `{"entities": [c1]}`, status: 400, message: "not valid JSON at byte"},
		{name: "truncated JSON", body: `{"entities": ["c1"`, status: 400, message: "truncated"},
		{name: "empty body", body: ``, status: 400, message: "body is empty"},
		{name: "null body", body: `null`, status: 400, message: "body is null"},
		{name: "a list, not an object", body: `[1]`, status: 400, message: "body is a JSON array"},
		{name: "two JSON values", body: body(`["c1"]`, `["card"]`) + ` {}`, status: 400, message: "more than one JSON value"},
		{
			name: "too many entities", opts: func(o *serve.Options) { o.MaxEntities = 2 }, body: body(`["a", "b", "c"]`, `["card"]`),
			status: 400, field: "entities", message: "3 entities, at most 2",
		},
		{
			name: "too many values", opts: func(o *serve.Options) { o.MaxValues = 5 }, body: body(`["a", "b", "c"]`, `["card"]`),
			status: 400, field: "features", message: "3 entities x 2 features = 6 values, at most 5",
		},
		{
			name: "body too large", opts: func(o *serve.Options) { o.MaxBodyBytes = 10 }, body: body(`["c1"]`, `["card"]`),
			status: 413, message: "body over 10 bytes",
		},
		{name: "GET", method: http.MethodGet, body: "", status: 405, message: "use POST"},
		{
			name: "token required, none sent", opts: func(o *serve.Options) { o.Token = "s3cret" }, body: body(`["c1"]`, `["card.n"]`),
			status: 401, field: "Authorization", message: "missing or wrong bearer token",
		},
		{
			name: "token required, wrong one", opts: func(o *serve.Options) { o.Token = "s3cret" }, auth: "Bearer s3cret2", body: body(`["c1"]`, `["card.n"]`),
			status: 401, field: "Authorization",
		},
		{
			name: "token required, another scheme", opts: func(o *serve.Options) { o.Token = "s3cret" }, auth: "Basic s3cret", body: body(`["c1"]`, `["card.n"]`),
			status: 401, field: "Authorization",
		},
		{
			name: "token required, bad request still needs it", opts: func(o *serve.Options) { o.Token = "s3cret" }, body: `nonsense`,
			status: 401, field: "Authorization",
		},
		{
			name: "token required and sent", opts: func(o *serve.Options) { o.Token = "s3cret" }, auth: "Bearer s3cret", body: body(`["c1"]`, `["card.n"]`),
			features: []string{"card:" + cur + ".n"}, cells: []string{"c1: 3/present/1s"},
		},
		{
			name: "store failure", store: func(f *fakeStore) { f.err = errors.New("connection refused") }, body: body(`["c1"]`, `["card.n"]`),
			status: 503, message: "online store read failed: connection refused",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newStore()
			if tt.store != nil {
				tt.store(store)
			}
			opts := serve.Options{Views: []config.View{card, cardStats, merchant}, Previous: []config.View{cardOld}, Now: func() time.Time { return now }}
			if tt.opts != nil {
				tt.opts(&opts)
			}
			h, err := serve.New(store, opts)
			if err != nil {
				t.Fatal(err)
			}
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequest(method, "/v1/features", strings.NewReader(tt.body))
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			want := tt.status
			if want == 0 {
				want = http.StatusOK
			}
			raw := rec.Body.String()
			if rec.Code != want {
				t.Fatalf("status %d, want %d; body %s", rec.Code, want, raw)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var a answer
			if err := json.Unmarshal([]byte(raw), &a); err != nil {
				t.Fatalf("answer is not JSON: %v\n%s", err, raw)
			}
			if want != http.StatusOK {
				if a.Error == nil || a.Error.Field != tt.field || !strings.Contains(a.Error.Message, tt.message) || a.Error.Code == "" {
					t.Fatalf("error %s, want field %q and a message with %q", raw, tt.field, tt.message)
				}
				if strings.Contains(raw, "s3cret") {
					t.Errorf("the answer echoes the token: %s", raw)
				}
				if want == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
					t.Error("401 without WWW-Authenticate")
				}
				if want == http.StatusBadRequest && store.calls != 0 {
					t.Errorf("a bad request read the store %d times", store.calls)
				}
				return
			}
			if tt.raw != "" && raw != tt.raw {
				t.Errorf("body\n%s\nwant\n%s", raw, tt.raw)
			}
			if store.calls != 1 {
				t.Errorf("%d store reads, want one round trip", store.calls)
			}
			if a.NowMs != now.UnixMilli() || a.Entity == "" {
				t.Errorf("now_ms %d, entity %q", a.NowMs, a.Entity)
			}
			if tt.features != nil && strings.Join(a.Features, " ") != strings.Join(tt.features, " ") {
				t.Errorf("features %q, want %q", a.Features, tt.features)
			}
			if tt.cells != nil && strings.Join(a.cells(), "\n") != strings.Join(tt.cells, "\n") {
				t.Errorf("results\n%s\nwant\n%s", strings.Join(a.cells(), "\n"), strings.Join(tt.cells, "\n"))
			}
		})
	}
}

// TestOneRoundTrip checks that a request reads every entity's every view in
// one store call.
func TestOneRoundTrip(t *testing.T) {
	store := newStore()
	h, err := serve.New(store, serve.Options{Views: []config.View{card, cardStats}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	var ents []string
	for range 100 {
		ents = append(ents, `"c1"`)
	}
	req := httptest.NewRequest(http.MethodPost, "/v1/features", strings.NewReader(`{"entities": [`+strings.Join(ents, ",")+`], "features": ["card.n", "card_stats", "card.sum"]}`))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 || store.calls != 1 || store.keys != 200 {
		t.Fatalf("status %d, %d calls, %d keys; want 200, 1 call of 200 keys (100 entities x 2 views)", rec.Code, store.calls, store.keys)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	h, err := serve.New(newStore(), serve.Options{Views: []config.View{card}, Now: func() time.Time { return now }, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []string{
		`{"entities": ["c1", "c2", "c3", "nope"], "features": ["card"]}`,
		`{"entities": ["c1"], "features": ["card.n"]}`,
		`{"entities": ["c1"], "features": ["nope"]}`,
	} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/v1/features", strings.NewReader(b)))
	}
	want := `
# HELP weir_serve_entities_total Entities answered in successful feature requests.
# TYPE weir_serve_entities_total counter
weir_serve_entities_total 5
# HELP weir_serve_requests_total Feature requests answered, by outcome.
# TYPE weir_serve_requests_total counter
weir_serve_requests_total{outcome="bad_request"} 1
weir_serve_requests_total{outcome="internal"} 0
weir_serve_requests_total{outcome="method_not_allowed"} 0
weir_serve_requests_total{outcome="ok"} 2
weir_serve_requests_total{outcome="too_large"} 0
weir_serve_requests_total{outcome="unauthorized"} 0
weir_serve_requests_total{outcome="unavailable"} 0
# HELP weir_serve_values_total Feature values answered, by view and status (present, missing, expired).
# TYPE weir_serve_values_total counter
weir_serve_values_total{status="expired",view="card"} 2
weir_serve_values_total{status="missing",view="card"} 3
weir_serve_values_total{status="present",view="card"} 4
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "weir_serve_entities_total", "weir_serve_requests_total", "weir_serve_values_total"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "weir_serve_request_seconds", "weir_serve_redis_seconds"); n != 3 {
		t.Errorf("%d latency series, want 3 (ok, error, redis)", n)
	}
	// A second handler on the same registry is refused, not a panic.
	if _, err := serve.New(newStore(), serve.Options{Views: []config.View{card}, Registerer: reg}); err == nil {
		t.Error("registering the metrics twice succeeded")
	}
}

func TestNewRefuses(t *testing.T) {
	if _, err := serve.New(newStore(), serve.Options{}); err == nil {
		t.Error("no views: no error")
	}
	if _, err := serve.New(newStore(), serve.Options{Views: []config.View{card, cardOld}}); err == nil || !strings.Contains(err.Error(), "view card defined twice") {
		t.Errorf("two current definitions of card: %v", err)
	}
}

// BenchmarkHandler measures the handler without Redis (the fake store), by
// batch size.
func BenchmarkHandler(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("entities=%d", n), func(b *testing.B) {
			h, err := serve.New(newStore(), serve.Options{Views: []config.View{card}})
			if err != nil {
				b.Fatal(err)
			}
			ents := make([]string, n)
			for i := range ents {
				ents[i] = `"c1"`
			}
			body := `{"entities": [` + strings.Join(ents, ",") + `], "features": ["card"]}`
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/features", strings.NewReader(body)))
				if rec.Code != 200 {
					b.Fatal(rec.Body.String())
				}
			}
		})
	}
}
