// Package client is the Go client of Weir's online feature serving API
// (featurestore/serve, mounted at /v1/features by the serve role).
//
//	c, err := client.New("http://127.0.0.1:9464", client.WithToken(os.Getenv("WEIR_SERVE_TOKEN")))
//	res, err := c.Get(ctx, []string{"card-1", "card-2"}, "card_activity.txn_count_5m", "card_activity.amount_last")
//	v := res.Results[0].Values[1] // card-1's amount_last
//	if v.Status == client.Present { use(v.Value, v.Age) }
//
// A Client is safe for concurrent use. Every call is bounded by the
// context and by the client's timeout (WithTimeout, default 1s), whichever
// ends first.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client calls one Weir server.
type Client struct {
	endpoint string
	hc       *http.Client
	auth     string // "Bearer <token>" or ""
	timeout  time.Duration
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the http.Client requests go through (default: one
// with its own transport keeping up to 64 idle connections to the server).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithToken sets the bearer token sent with every request ("" sends none).
func WithToken(token string) Option {
	return func(c *Client) {
		c.auth = ""
		if token != "" {
			c.auth = "Bearer " + token
		}
	}
}

// WithTimeout bounds each call (default 1s; 0 or less: only the context).
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// New returns a client of the server at baseURL (scheme, host and port, as
// serve.addr; a path is kept as a prefix).
func New(baseURL string, opts ...Option) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("client: base URL %q: %w", baseURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("client: base URL %q: want http://host:port or https://host:port", baseURL)
	}
	c := &Client{endpoint: strings.TrimSuffix(u.String(), "/") + "/v1/features", timeout: time.Second}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 64, 64
		c.hc = &http.Client{Transport: tr}
	}
	return c, nil
}

// CloseIdleConnections closes the client's idle connections to the server.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Status says whether a value is present.
type Status uint8

const (
	// Missing: the entity has no row of the view version, or its row lacks
	// the feature. Value is 0, EventTime and Age are 0.
	Missing Status = iota
	// Present: Value holds the feature's newest value.
	Present
	// Expired: the newest row is older than the view's TTL. Value is 0;
	// EventTime and Age say how old the row is.
	Expired
)

func (s Status) String() string {
	switch s {
	case Present:
		return "present"
	case Expired:
		return "expired"
	}
	return "missing"
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Status) UnmarshalText(b []byte) error {
	switch string(b) {
	case "present":
		*s = Present
	case "missing":
		*s = Missing
	case "expired":
		*s = Expired
	default:
		return fmt.Errorf("unknown status %q", b)
	}
	return nil
}

// Value is one entity's value of one feature.
type Value struct {
	Value  float64
	Status Status
	// EventTime is when the value held (Unix ms), Age how long before the
	// server's now that was; both 0 when Missing.
	EventTime int64
	Age       time.Duration
}

// Result is one entity's values, in the order of Response.Features.
type Result struct {
	Entity string
	Values []Value
}

// Response is the answer to Get.
type Response struct {
	// Now is the server's clock that ages were computed against.
	Now time.Time
	// Entity names the entity type the views are keyed by.
	Entity string
	// Features are the resolved references, view:version.feature, whole
	// views expanded, in the order of every Result's Values.
	Features []string
	// Results holds one Result per requested entity, in request order.
	Results []Result
}

// Index returns the position of a feature in Features, matched by the
// resolved reference or by view.feature without a version; -1 if absent.
func (r *Response) Index(feature string) int {
	for i, f := range r.Features {
		if f == feature {
			return i
		}
	}
	for i, f := range r.Features {
		view, rest, _ := strings.Cut(f, ":")
		_, name, _ := strings.Cut(rest, ".")
		if view+"."+name == feature {
			return i
		}
	}
	return -1
}

// Error is a failure the server answered with (not a transport error).
type Error struct {
	StatusCode int    // HTTP status
	Code       string // bad_request, unauthorized, method_not_allowed, too_large, unavailable, internal
	Field      string // the request part at fault, e.g. "features[2]"; may be empty
	Message    string
}

func (e *Error) Error() string {
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	return fmt.Sprintf("weir serve: %d %s: %s", e.StatusCode, e.Code, msg)
}

// Temporary reports whether retrying the same request may succeed.
func (e *Error) Temporary() bool { return e.StatusCode == http.StatusServiceUnavailable }

// Get returns the features of entities (keys of the entity the views are
// keyed by). A feature is "view.feature", "view:version.feature", or a view
// name ("view" or "view:version") for all of its features. A server's
// answer other than 200 is returned as *Error.
func (c *Client) Get(ctx context.Context, entities []string, features ...string) (*Response, error) {
	body, err := json.Marshal(struct {
		Entities []string `json:"entities"`
		Features []string `json:"features"`
	}{entities, features})
	if err != nil {
		return nil, fmt.Errorf("client: encode request: %w", err)
	}
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("client: post %s: %w", c.endpoint, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("client: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, decodeError(resp.StatusCode, b)
	}
	out, err := decode(b, len(entities))
	if err != nil {
		return nil, fmt.Errorf("client: decode answer: %w", err)
	}
	return out, nil
}

func decodeError(status int, b []byte) error {
	var w struct {
		Error struct {
			Code, Field, Message string
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &w); err != nil || w.Error.Code == "" {
		return &Error{StatusCode: status, Code: "http", Message: strings.TrimSpace(string(b))}
	}
	return &Error{StatusCode: status, Code: w.Error.Code, Field: w.Error.Field, Message: w.Error.Message}
}

// number is a JSON number, null, or one of the strings "NaN", "+Inf" and
// "-Inf".
type number struct {
	v  float64
	ok bool
}

func (n *number) UnmarshalJSON(b []byte) error {
	switch {
	case string(b) == "null":
		*n = number{}
		return nil
	case len(b) > 1 && b[0] == '"':
		b = b[1 : len(b)-1]
	}
	v, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return err
	}
	*n = number{v, true}
	return nil
}

// integer is a JSON integer or null (as 0).
type integer int64

func (n *integer) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*n = 0
		return nil
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	*n = integer(v)
	return err
}

type wireResult struct {
	Entity    string    `json:"entity"`
	Values    []number  `json:"values"`
	Status    []Status  `json:"status"`
	EventTime []integer `json:"event_time_ms"`
	Age       []integer `json:"age_ms"`
}

func decode(b []byte, entities int) (*Response, error) {
	var w struct {
		NowMs    int64        `json:"now_ms"`
		Entity   string       `json:"entity"`
		Features []string     `json:"features"`
		Results  []wireResult `json:"results"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return nil, err
	}
	if len(w.Results) != entities {
		return nil, fmt.Errorf("%d results for %d entities", len(w.Results), entities)
	}
	out := &Response{Now: time.UnixMilli(w.NowMs), Entity: w.Entity, Features: w.Features, Results: make([]Result, len(w.Results))}
	n := len(w.Features)
	values := make([]Value, n*len(w.Results)) // one allocation for all
	for i, r := range w.Results {
		if len(r.Values) != n || len(r.Status) != n || len(r.EventTime) != n || len(r.Age) != n {
			return nil, fmt.Errorf("result %d (%s): arrays of %d/%d/%d/%d values for %d features",
				i, r.Entity, len(r.Values), len(r.Status), len(r.EventTime), len(r.Age), n)
		}
		vs := values[i*n : (i+1)*n : (i+1)*n]
		for j := range vs {
			vs[j] = Value{Value: r.Values[j].v, Status: r.Status[j], EventTime: int64(r.EventTime[j]), Age: time.Duration(r.Age[j]) * time.Millisecond}
		}
		out.Results[i] = Result{Entity: r.Entity, Values: vs}
	}
	return out, nil
}
