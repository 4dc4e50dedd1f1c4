package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// report is the whole benchmark's result (results.json).
type report struct {
	Started      string    `json:"started"`
	Cores        int       `json:"cores"`
	Entities     int       `json:"entities"`
	Features     int       `json:"features"`
	StepSeconds  float64   `json:"step_seconds"`
	Repeats      int       `json:"repeats"`
	FeastVersion string    `json:"feast_version,omitempty"`
	FeastWorkers int       `json:"feast_workers"`
	Checked      []string  `json:"checked"`
	Series       []*series `json:"series"`

	Throughput []throughputRow `json:"throughput"`
	Latency    []latencyRow    `json:"latency"`
	NoisySteps int             `json:"noisy_steps"`
}

type spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

func spreadOf(xs []float64) spread {
	if len(xs) == 0 {
		return spread{} // N 0: nothing measured
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return spread{Median: m, Min: s[0], Max: s[len(s)-1], N: len(s)}
}

// throughputRow is one batch size's highest sustained rates, requests per
// server CPU second, and their ratios.
type throughputRow struct {
	Batch int               `json:"batch"`
	Sides map[string]spread `json:"max_sustained_rate"` // by side
	// Ratios of medians, Weir over Feast, by Weir side; with the range
	// [min Weir / max Feast, max Weir / min Feast]; 0 where Feast sustained
	// no step.
	Ratios    map[string]spread `json:"ratio_over_feast,omitempty"`
	PerCPU    map[string]spread `json:"requests_per_server_cpu_second"`
	PerCPURat map[string]spread `json:"per_cpu_ratio_over_feast,omitempty"`
}

// div is a/b, or 0 when b is not positive.
func div(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// ratios divides each Weir side's spread by Feast's.
func ratios(sides map[string]spread) map[string]spread {
	fs, ok := sides["feast"]
	if !ok {
		return nil
	}
	out := map[string]spread{}
	for side, ws := range sides {
		if side != "feast" {
			out[side] = spread{Median: div(ws.Median, fs.Median), Min: div(ws.Min, fs.Max), Max: div(ws.Max, fs.Min), N: min(ws.N, fs.N)}
		}
	}
	return out
}

// latencyRow is one batch size and rate: the medians over repeats of the
// steps that sustained it, by side.
type latencyRow struct {
	Batch int                    `json:"batch"`
	Rate  float64                `json:"rate"`
	Sides map[string]latencyCell `json:"sides"`
}

type latencyCell struct {
	P50  spread `json:"p50_ms"`
	P99  spread `json:"p99_ms"`
	P999 spread `json:"p999_ms"`
}

func (r *report) summarize(f *flags) {
	for _, b := range f.batches {
		row := throughputRow{Batch: b, Sides: map[string]spread{}, PerCPU: map[string]spread{}}
		for _, side := range f.sides {
			var xs, ys []float64
			for _, s := range r.Series {
				if s.Side == side && s.Batch == b {
					xs = append(xs, s.MaxRate)
					ys = append(ys, s.PerServerCPU)
				}
			}
			row.Sides[side], row.PerCPU[side] = spreadOf(xs), spreadOf(ys)
		}
		row.Ratios, row.PerCPURat = ratios(row.Sides), ratios(row.PerCPU)
		r.Throughput = append(r.Throughput, row)
		for _, rate := range f.rates {
			lr := latencyRow{Batch: b, Rate: rate, Sides: map[string]latencyCell{}}
			for _, side := range f.sides {
				var p50, p99, p999 []float64
				for _, s := range r.Series {
					if s.Side != side || s.Batch != b {
						continue
					}
					for _, st := range s.Steps {
						if st.Rate == rate && st.Sustained {
							p50, p99, p999 = append(p50, st.P50), append(p99, st.P99), append(p999, st.P999)
						}
					}
				}
				if len(p50) > 0 {
					lr.Sides[side] = latencyCell{spreadOf(p50), spreadOf(p99), spreadOf(p999)}
				}
			}
			if len(lr.Sides) > 0 {
				r.Latency = append(r.Latency, lr)
			}
		}
	}
	for _, s := range r.Series {
		for _, st := range s.Steps {
			if st.Noisy {
				r.NoisySteps++
			}
		}
	}
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "\n==> summary: %d entities x %d features, %d cores, steps of %.0fs, %d repeats; Feast %s with %d workers\n",
		r.Entities, r.Features, r.Cores, r.StepSeconds, r.Repeats, r.FeastVersion, r.FeastWorkers)
	if r.NoisySteps > 0 {
		fmt.Fprintf(w, "WARNING: %d steps had other processes above the noise threshold (marked noisy in results.json)\n", r.NoisySteps)
	}
	fmt.Fprintln(w, "\nhighest sustained rate, requests/s (median [min-max] of repeats); entities/s = requests/s x batch")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var sides []string
	if len(r.Throughput) > 0 {
		for s := range r.Throughput[0].Sides {
			sides = append(sides, s)
		}
		slices.Sort(sides)
	}
	fmt.Fprintf(tw, "batch\t%s\tratios over feast\n", strings.Join(sides, "\t"))
	for _, row := range r.Throughput {
		var cells, ratios []string
		for _, s := range sides {
			sp := row.Sides[s]
			cells = append(cells, fmt.Sprintf("%.0f [%.0f-%.0f]", sp.Median, sp.Min, sp.Max))
		}
		for _, s := range sides {
			if q, ok := row.Ratios[s]; ok {
				ratios = append(ratios, fmt.Sprintf("%s %.1fx [%.1f-%.1f]", s, q.Median, q.Min, q.Max))
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\n", row.Batch, strings.Join(cells, "\t"), strings.Join(ratios, ", "))
	}
	tw.Flush()
	fmt.Fprintln(w, "\nrequests per CPU second of the server processes, over the sustained steps (median [min-max] of repeats)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "batch\t%s\tratios over feast\n", strings.Join(sides, "\t"))
	for _, row := range r.Throughput {
		var cells, ratios []string
		for _, s := range sides {
			sp := row.PerCPU[s]
			cells = append(cells, fmt.Sprintf("%.0f [%.0f-%.0f]", sp.Median, sp.Min, sp.Max))
		}
		for _, s := range sides {
			if q, ok := row.PerCPURat[s]; ok {
				ratios = append(ratios, fmt.Sprintf("%s %.1fx [%.1f-%.1f]", s, q.Median, q.Min, q.Max))
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\n", row.Batch, strings.Join(cells, "\t"), strings.Join(ratios, ", "))
	}
	tw.Flush()
	fmt.Fprintln(w, "\nlatency at fixed rates, ms, p50 / p99 / p99.9 (medians of the repeats that sustained the rate)")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "batch\trate/s\t%s\n", strings.Join(sides, "\t"))
	for _, row := range r.Latency {
		var cells []string
		for _, s := range sides {
			c, ok := row.Sides[s]
			if !ok {
				cells = append(cells, "-")
				continue
			}
			cells = append(cells, fmt.Sprintf("%.3f / %.3f / %.3f (%d)", c.P50.Median, c.P99.Median, c.P999.Median, c.P50.N))
		}
		fmt.Fprintf(tw, "%d\t%.0f\t%s\n", row.Batch, row.Rate, strings.Join(cells, "\t"))
	}
	tw.Flush()
	for _, s := range sides {
		if s == "feast" {
			continue
		}
		var c *latencyCell
		for _, row := range r.Latency {
			if cell, ok := row.Sides[s]; ok && row.Batch == 1 && row.Rate == 5000 {
				c = &cell
			}
		}
		switch {
		case c == nil:
			fmt.Fprintf(w, "goal: single-entity p99 < 1 ms at 5k requests/s, %s: NOT met (5000/s not sustained or not run)\n", s)
		default:
			verdict := "met"
			if c.P99.Max >= 1 || c.P99.N < r.Repeats {
				verdict = "NOT met"
			}
			fmt.Fprintf(w, "goal: single-entity p99 < 1 ms at 5k requests/s, %s: p99 %.3f ms [%.3f-%.3f] in %d of %d repeats: %s\n",
				s, c.P99.Median, c.P99.Min, c.P99.Max, c.P99.N, r.Repeats, verdict)
		}
	}
}
