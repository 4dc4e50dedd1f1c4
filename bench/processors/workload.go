package main

import (
	"fmt"
	"strings"
	"time"
)

// A workload is the view both sides compute: its features, in Weir's
// feature order, which is also the order of the Kafka Streams app's output
// doubles and of the oracle's results.
type workload struct {
	name     string // -workload
	view     string // Weir's view name
	features []featureDef
	// ttl is the Weir view's ttl (an entity is forgotten a ttl after its
	// newest event).
	ttl time.Duration
	// fromDemo: the view is deploy/demo/weir.yaml's, checked against
	// features; else the harness writes the view itself.
	fromDemo bool
	// eventRate is the default loadgen density (events per second of event
	// time).
	eventRate float64
	events    int
}

// featureDef is one feature: an aggregation of amount (count: of events)
// over the sliding window (t-window, t]; window 0 is unbounded (last).
type featureDef struct {
	name   string
	agg    string // count, sum, mean, min, max, last
	window time.Duration
}

// issue4 is the workload of issue 4: three exact sliding windows with five
// aggregations each.
func issue4() *workload {
	w := &workload{name: "windows", view: "card_windows", ttl: 24 * time.Hour, eventRate: 50, events: 5_000_000}
	for _, win := range []struct {
		d    time.Duration
		name string
	}{{5 * time.Minute, "5m"}, {time.Hour, "1h"}, {24 * time.Hour, "24h"}} {
		w.features = append(w.features,
			featureDef{"txn_count_" + win.name, "count", win.d},
			featureDef{"amount_sum_" + win.name, "sum", win.d},
			featureDef{"amount_mean_" + win.name, "mean", win.d},
			featureDef{"amount_min_" + win.name, "min", win.d},
			featureDef{"amount_max_" + win.name, "max", win.d})
	}
	return w
}

// demo is the first version's workload: card_activity of the demo config.
func demo() *workload {
	return &workload{name: "demo", view: "card_activity", ttl: 24 * time.Hour, fromDemo: true, eventRate: 200, events: 1_000_000,
		features: []featureDef{
			{"txn_count_5m", "count", 5 * time.Minute}, {"amount_sum_5m", "sum", 5 * time.Minute},
			{"txn_count_1h", "count", time.Hour}, {"amount_sum_1h", "sum", time.Hour}, {"amount_max_1h", "max", time.Hour},
			{"amount_last", "last", 0},
		}}
}

func workloadByName(name string) (*workload, error) {
	switch name {
	case "windows":
		return issue4(), nil
	case "demo":
		return demo(), nil
	}
	return nil, fmt.Errorf("-workload %q: want windows or demo", name)
}

// describe is a one-line summary of the features.
func (w *workload) describe() string {
	var wins []time.Duration
	by := map[time.Duration][]string{}
	for _, f := range w.features {
		if _, ok := by[f.window]; !ok {
			wins = append(wins, f.window)
		}
		by[f.window] = append(by[f.window], f.agg)
	}
	var parts []string
	for _, d := range wins {
		name := shortDur(d)
		if d == 0 {
			name = "unbounded"
		}
		parts = append(parts, strings.Join(by[d], "+")+" "+name)
	}
	return fmt.Sprintf("%s: %d features (%s), exact sliding windows as of each event", w.view, len(w.features), strings.Join(parts, ", "))
}

func shortDur(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// ksFeatures is the Kafka Streams app's --features argument:
// agg:window_ms,... in output order.
func (w *workload) ksFeatures() string {
	var parts []string
	for _, f := range w.features {
		parts = append(parts, fmt.Sprintf("%s:%d", f.agg, f.window.Milliseconds()))
	}
	return strings.Join(parts, ",")
}

// weirView is the view's weir.yaml entry.
func (w *workload) weirView(source, entity string) map[string]any {
	var fs []any
	for _, f := range w.features {
		m := map[string]any{"name": f.name, "agg": f.agg}
		if f.agg != "count" {
			m["field"] = "amount"
		}
		if f.window > 0 {
			m["window"] = f.window.String()
		}
		fs = append(fs, m)
	}
	return map[string]any{"name": w.view, "source": source, "entity": entity, "ttl": w.ttl.String(), "features": fs}
}
