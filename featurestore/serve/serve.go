// Package serve is the online feature serving API: an http.Handler that
// answers a batch of entities and features from the online store (Redis) in
// one pipelined round trip. The `serve` role mounts it at /v1/features on
// serve.addr; featurestore/client is its Go client.
//
// # Request
//
//	POST /v1/features
//	Authorization: Bearer <token>        (only when a token is configured)
//	{"entities": ["card-1", "card-2"],
//	 "features": ["card_activity.txn_count_5m", "card_activity:v1a2b3c4d.amount_last", "merchant_stats"]}
//
// A feature reference is view[:version].feature, or view[:version] for every
// feature of the view in definition order. Without a version a reference
// names the view's current version (config.View.Version of the served
// definition). A request never mixes two versions of one view: naming two is
// an error, as is a version the server does not serve. Every view of a
// request must be keyed by the same entity (config.View.Entity); the
// entities are that entity's keys.
//
// # Response
//
//	{"now_ms": 1733443200000, "entity": "card",
//	 "features": ["card_activity:v1a2b3c4d.txn_count_5m", "card_activity:v1a2b3c4d.amount_last"],
//	 "results": [
//	   {"entity": "card-1", "values": [3, 12.5], "status": ["present", "present"],
//	    "event_time_ms": [1733443190000, 1733443190000], "age_ms": [10000, 10000]},
//	   {"entity": "card-2", "values": [null, null], "status": ["missing", "missing"],
//	    "event_time_ms": [null, null], "age_ms": [null, null]}]}
//
// features lists the resolved references, with versions, whole views
// expanded; each result's arrays follow that order, one result per entity in
// request order (duplicates included). A status is
//
//   - present: the entity's newest row of the view version has the feature;
//     value, event time and age (now − event time, ms) are given;
//   - missing: no row (never written, or Redis dropped it), or a row without
//     the feature; value, event time and age are null;
//   - expired: the row's age exceeds the view's ttl (a row Redis still holds,
//     since Redis expires a key ttl after it was written, not after its event
//     time); value is null, event time and age are given.
//
// Values are JSON numbers, or the strings "NaN", "+Inf" and "-Inf" for
// non-finite values the processor emitted.
//
// # Errors
//
// Any other answer than 200 carries {"error": {"code", "field", "message"}}:
// 400 bad_request (field names the offending part, e.g. "features[2]"), 401
// unauthorized, 405 method_not_allowed, 413 too_large, 503 unavailable (Redis
// failed or timed out: retry) and 500 internal.
//
// # Metrics
//
// Registered on the Registerer given to New (none when nil):
//
//   - weir_serve_requests_total{outcome}: requests answered, by outcome (ok,
//     bad_request, unauthorized, too_large, unavailable, internal);
//   - weir_serve_request_seconds{outcome}: time from the request's arrival to
//     its last byte written, by outcome (ok or error);
//   - weir_serve_redis_seconds: the pipelined Redis read of a request;
//   - weir_serve_entities_total: entities answered (ok requests);
//   - weir_serve_values_total{view,status}: values answered by view and
//     status.
//
// The bearer token is compared in constant time (sha256 of both sides) and
// never logged or echoed.
package serve

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/internal/config"
)

// Reader is what the handler reads from: online.Store's GetFeatures, the
// event time and the named features of every lookup in one pipelined round
// trip (out[i] answers lookups[i]).
type Reader interface {
	GetFeatures(ctx context.Context, lookups []online.Lookup) ([]online.Features, error)
}

var _ Reader = (*online.Store)(nil)

// Options configure a Handler. Views is required.
type Options struct {
	// Views are the served view definitions; each is served at its
	// Version(), and a reference without a version names it.
	Views []config.View
	// Previous are older definitions of views that are still served when a
	// request names their version (while a deployment's models still read
	// them); nothing in weir.yaml lists them yet.
	Previous []config.View
	// Token, when not empty, is the bearer token every request must carry.
	Token string
	// MaxEntities and MaxValues bound a request's entities and its entities
	// times resolved features (defaults 1,000 and 100,000); MaxBodyBytes its
	// body (default 1 MiB).
	MaxEntities, MaxValues int
	MaxBodyBytes           int64
	// Timeout bounds a request's Redis read (default 1s).
	Timeout time.Duration
	// Now is the clock ages and expiry are computed against (time.Now when
	// nil).
	Now func() time.Time
	// Logger receives failed reads (nil: slog.Default()). Registerer receives
	// the metrics (nil: none).
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Handler serves POST requests for features (see the package doc). It is
// safe for concurrent use.
type Handler struct {
	cat      *catalog
	store    Reader
	token    [sha256.Size]byte
	hasToken bool
	opts     Options
	log      *slog.Logger
	m        *metrics
	bufs     sync.Pool // *[]byte response buffers
}

// New returns a handler reading from store.
func New(store Reader, opts Options) (*Handler, error) {
	if len(opts.Views) == 0 {
		return nil, errors.New("serve: no views to serve")
	}
	cat, err := newCatalog(opts.Views, opts.Previous)
	if err != nil {
		return nil, err
	}
	if opts.MaxEntities <= 0 {
		opts.MaxEntities = 1000
	}
	if opts.MaxValues <= 0 {
		opts.MaxValues = 100_000
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	h := &Handler{cat: cat, store: store, opts: opts, log: opts.Logger}
	if h.log == nil {
		h.log = slog.Default()
	}
	if opts.Token != "" {
		h.token, h.hasToken = sha256.Sum256([]byte(opts.Token)), true
	}
	if h.m, err = newMetrics(opts.Registerer, cat); err != nil {
		return nil, err
	}
	return h, nil
}

// Error is a request's failure as the API reports it.
type Error struct {
	Status  int    // HTTP status
	Code    string // bad_request, unauthorized, ...
	Field   string // the request part at fault, e.g. "features[2]"; may be empty
	Message string
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Message
	}
	return e.Message
}

func badRequest(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "bad_request", Field: field, Message: fmt.Sprintf(format, args...)}
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	bp, _ := h.bufs.Get().(*[]byte)
	if bp == nil {
		b := make([]byte, 0, 4096)
		bp = &b
	}
	out, err := h.serve(r, (*bp)[:0])
	if err != nil {
		out = appendError((*bp)[:0], err)
		w.Header().Set("Content-Type", "application/json")
		if err.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="weir"`)
		}
		if err.Status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", http.MethodPost)
		}
		w.WriteHeader(err.Status)
		_, _ = w.Write(out)
		h.m.request(err.Code, time.Since(start))
	} else {
		// A length up front: one write, no chunked encoding for big answers.
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
		_, _ = w.Write(out)
		h.m.request("ok", time.Since(start))
	}
	if cap(out) <= 1<<20 { // don't keep a huge response's buffer
		*bp = out
		h.bufs.Put(bp)
	}
}

func (h *Handler) serve(r *http.Request, dst []byte) ([]byte, *Error) {
	if r.Method != http.MethodPost {
		return nil, &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: "use POST with a JSON body"}
	}
	if !h.authorized(r.Header.Get("Authorization")) {
		return nil, &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Field: "Authorization", Message: "missing or wrong bearer token"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, h.opts.MaxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: fmt.Sprintf("body over %d bytes", h.opts.MaxBodyBytes)}
		}
		return nil, badRequest("", "read body: %v", err)
	}
	req, rerr := decodeRequest(body)
	if rerr != nil {
		return nil, rerr
	}
	p, rerr := h.plan(req)
	if rerr != nil {
		return nil, rerr
	}
	lookups := make([]online.Lookup, 0, len(req.Entities)*len(p.views))
	for _, e := range req.Entities {
		for i, v := range p.views {
			lookups = append(lookups, online.Lookup{Key: online.Key{View: v.name, Version: v.version, Entity: e}, Features: p.need[i]})
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.opts.Timeout)
	defer cancel()
	t := time.Now()
	feats, err := h.store.GetFeatures(ctx, lookups)
	h.m.redis.Observe(time.Since(t).Seconds())
	if err != nil {
		if r.Context().Err() != nil {
			return nil, &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "request canceled"}
		}
		h.log.Warn("serve: read online store", "keys", len(lookups), "err", err)
		return nil, &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "online store read failed: " + err.Error()}
	}
	return h.appendResponse(dst, req.Entities, p, feats, h.opts.Now()), nil
}

// authorized reports whether the Authorization header carries the token.
// Both sides are hashed first so that the comparison takes the same time
// whatever the presented token's length.
func (h *Handler) authorized(header string) bool {
	if !h.hasToken {
		return true
	}
	tok, ok := strings.CutPrefix(header, "Bearer ")
	if !ok {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return subtle.ConstantTimeCompare(got[:], h.token[:]) == 1
}
