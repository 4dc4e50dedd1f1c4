package serve

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// latencyBuckets resolve the sub-millisecond answers a loopback Redis gives
// as well as slow ones.
var latencyBuckets = []float64{.0001, .00025, .0005, .00075, .001, .0025, .005, .01, .025, .05, .1, .25, 1}

// outcomes are the values of the outcome label, the Error codes and ok.
var outcomes = []string{"ok", "bad_request", "unauthorized", "method_not_allowed", "too_large", "unavailable", "internal"}

// metrics are the handler's collectors, resolved to their label values up
// front so that a request does no label lookups.
type metrics struct {
	requests map[string]prometheus.Counter
	okSecs   prometheus.Observer
	errSecs  prometheus.Observer
	redis    prometheus.Histogram
	entities prometheus.Counter
	values   [][numStatus]prometheus.Counter // by view id, status
}

func newMetrics(reg prometheus.Registerer, cat *catalog) (*metrics, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weir_serve_requests_total", Help: "Feature requests answered, by outcome.",
	}, []string{"outcome"})
	seconds := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "weir_serve_request_seconds", Help: "Time from a feature request's arrival to its answer, by outcome (ok or error).",
		Buckets: latencyBuckets,
	}, []string{"outcome"})
	redis := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "weir_serve_redis_seconds", Help: "The pipelined Redis read of a feature request.", Buckets: latencyBuckets,
	})
	entities := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "weir_serve_entities_total", Help: "Entities answered in successful feature requests.",
	})
	values := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "weir_serve_values_total", Help: "Feature values answered, by view and status (present, missing, expired).",
	}, []string{"view", "status"})
	if reg != nil {
		for _, c := range []prometheus.Collector{requests, seconds, redis, entities, values} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("serve: register metrics: %w", err)
			}
		}
	}
	m := &metrics{requests: map[string]prometheus.Counter{}, okSecs: seconds.WithLabelValues("ok"), errSecs: seconds.WithLabelValues("error"),
		redis: redis, entities: entities, values: make([][numStatus]prometheus.Counter, len(cat.all))}
	for _, o := range outcomes {
		m.requests[o] = requests.WithLabelValues(o)
	}
	for _, v := range cat.all {
		for s := range numStatus {
			m.values[v.id][s] = values.WithLabelValues(v.name, statusNames[s])
		}
	}
	return m, nil
}

// request counts an answered request.
func (m *metrics) request(outcome string, d time.Duration) {
	m.requests[outcome].Inc()
	if outcome == "ok" {
		m.okSecs.Observe(d.Seconds())
	} else {
		m.errSecs.Observe(d.Seconds())
	}
}

// answered counts a successful request's entities and values; counts are
// by the plan's views.
func (m *metrics) answered(views []*view, counts [][numStatus]float64, entities int) {
	m.entities.Add(float64(entities))
	for i, v := range views {
		for s, n := range counts[i] {
			if n > 0 {
				m.values[v.id][s].Add(n)
			}
		}
	}
}
