package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// report is the whole benchmark's result.
type report struct {
	ID             string        `json:"id"`
	Started        string        `json:"started"`
	Cores          int           `json:"cores"`
	Workload       string        `json:"workload"`
	Events         int           `json:"events"`
	Cards          int           `json:"cards"`
	EventRate      float64       `json:"event_rate"`
	Partitions     int           `json:"partitions"`
	CommitMs       int64         `json:"commit_ms"`
	LatenessMs     int64         `json:"lateness_ms"`
	Late           int           `json:"late_events"`
	ProduceSeconds float64       `json:"produce_seconds"`
	Ceilings       []ceilingRun  `json:"ceiling_runs"`
	Ceiling        float64       `json:"ceiling_events_per_sec"` // median
	Baseline       float64       `json:"baseline_other_fraction"`
	KSThreads      int           `json:"kstreams_threads"`
	KSStore        string        `json:"kstreams_store"`
	KSHeap         string        `json:"kstreams_heap"`
	Runs           []*runResult  `json:"runs"`
	Summary        []sideSummary `json:"summary"`
	// Ratios are Weir over Kafka Streams, one per guarantee both ran.
	Ratios          []ratios         `json:"ratios_weir_over_kstreams"`
	WeirAtLeastOnce bool             `json:"weir_at_least_once"`
	Profiled        *runResult       `json:"profiled_run,omitempty"`
	ProfilePath     string           `json:"profile,omitempty"`
	ProfileTop      string           `json:"profile_top,omitempty"`
	Latency         []*latencyResult `json:"latency,omitempty"`
}

type spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func spreadOf(xs []float64) spread {
	s := spread{Median: median(xs), Min: math.Inf(1), Max: math.Inf(-1)}
	for _, x := range xs {
		s.Min, s.Max = min(s.Min, x), max(s.Max, x)
	}
	return s
}

func (s spread) show(f func(float64) string) string {
	return fmt.Sprintf("%s [%s–%s]", f(s.Median), f(s.Min), f(s.Max))
}

type sideSummary struct {
	Side            string  `json:"side"`
	Guarantee       string  `json:"guarantee"`
	Runs            int     `json:"runs"`
	Noisy           int     `json:"noisy_runs"`
	EventsPerSec    spread  `json:"events_per_sec"`
	EventsPerCPUSec spread  `json:"events_per_cpu_sec"`
	Cores           spread  `json:"cores"`
	Ceiling         spread  `json:"ceiling_fraction"`
	BrokerCPUPerEv  spread  `json:"broker_cpu_us_per_event"`
	HalfPerSec      spread  `json:"second_half_events_per_sec"`
	HalfPerCPUSec   spread  `json:"second_half_events_per_cpu_sec"`
	OutputsPerEvent float64 `json:"outputs_per_event"`
	OutBytesPerEv   float64 `json:"output_bytes_per_event"`
	ChangelogPerEv  float64 `json:"changelog_per_event"`
	ChgBytesPerEv   float64 `json:"changelog_bytes_per_event"`
}

type ratios struct {
	Guarantee       string  `json:"guarantee"`
	EventsPerSec    float64 `json:"events_per_sec"` // of the medians
	EventsPerCPUSec float64 `json:"events_per_cpu_sec"`
	// Of the medians over the second half of the input.
	HalfPerSec    float64 `json:"second_half_events_per_sec"`
	HalfPerCPUSec float64 `json:"second_half_events_per_cpu_sec"`
	// Per A/B pair (Weir run i over Kafka Streams run i).
	PairsEventsPerSec    spread `json:"pairs_events_per_sec"`
	PairsEventsPerCPUSec spread `json:"pairs_events_per_cpu_sec"`
}

func (r *report) summarize() {
	r.Summary, r.Ratios = nil, nil
	type key struct{ g, side string }
	by := map[key][]*runResult{}
	var gs []string
	for _, x := range r.Runs {
		k := key{x.Guarantee, x.Side}
		if len(by[key{x.Guarantee, "weir"}])+len(by[key{x.Guarantee, "kstreams"}]) == 0 {
			gs = append(gs, x.Guarantee)
		}
		by[k] = append(by[k], x)
	}
	for _, g := range gs {
		sums := map[string]sideSummary{}
		for _, side := range []string{"weir", "kstreams"} {
			rs := by[key{g, side}]
			if len(rs) == 0 {
				continue
			}
			s := sideSummary{Side: side, Guarantee: g, Runs: len(rs)}
			var eps, epc, cores, ceil, brk, hps, hpc []float64
			for _, x := range rs {
				eps = append(eps, x.EventsPerSec)
				epc = append(epc, x.EventsPerCPUSec)
				cores = append(cores, x.Cores)
				ceil = append(ceil, x.CeilingFraction)
				brk = append(brk, 1e6*x.CPU.Broker/float64(r.Events))
				hps = append(hps, x.SecondHalfEventsPerSec)
				hpc = append(hpc, x.SecondHalfEventsPerCPUSec)
				if x.Noisy {
					s.Noisy++
				}
				s.OutputsPerEvent += x.OutputsPerEvent / float64(len(rs))
				s.OutBytesPerEv += x.OutputBytesPerEvent / float64(len(rs))
				s.ChangelogPerEv += x.ChangelogPerEvent / float64(len(rs))
				s.ChgBytesPerEv += x.ChangelogBytesPerEvent / float64(len(rs))
			}
			s.EventsPerSec, s.EventsPerCPUSec, s.Cores, s.Ceiling, s.BrokerCPUPerEv = spreadOf(eps), spreadOf(epc), spreadOf(cores), spreadOf(ceil), spreadOf(brk)
			s.HalfPerSec, s.HalfPerCPUSec = spreadOf(hps), spreadOf(hpc)
			r.Summary = append(r.Summary, s)
			sums[side] = s
		}
		w, okw := sums["weir"]
		k, okk := sums["kstreams"]
		if !okw || !okk {
			continue
		}
		rt := ratios{Guarantee: g}
		rt.EventsPerSec = w.EventsPerSec.Median / k.EventsPerSec.Median
		rt.EventsPerCPUSec = w.EventsPerCPUSec.Median / k.EventsPerCPUSec.Median
		rt.HalfPerSec = w.HalfPerSec.Median / k.HalfPerSec.Median
		rt.HalfPerCPUSec = w.HalfPerCPUSec.Median / k.HalfPerCPUSec.Median
		var p1, p2 []float64
		ws, ks := by[key{g, "weir"}], by[key{g, "kstreams"}]
		for i := range min(len(ws), len(ks)) {
			p1 = append(p1, ws[i].EventsPerSec/ks[i].EventsPerSec)
			p2 = append(p2, ws[i].EventsPerCPUSec/ks[i].EventsPerCPUSec)
		}
		rt.PairsEventsPerSec, rt.PairsEventsPerCPUSec = spreadOf(p1), spreadOf(p2)
		r.Ratios = append(r.Ratios, rt)
	}
}

func kfmt(x float64) string {
	switch {
	case math.IsNaN(x) || math.IsInf(x, 0):
		return "-"
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.1fk", x/1e3)
	}
	return fmt.Sprintf("%.0f", x)
}

func pct(x float64) string { return fmt.Sprintf("%.0f%%", 100*x) }
func f2(x float64) string  { return fmt.Sprintf("%.2f", x) }
func rx(x float64) string  { return fmt.Sprintf("%.2fx", x) }

func (r *report) print(w io.Writer) {
	r.summarize()
	fmt.Fprintf(w, "\nWeir processor vs Kafka Streams: view %s\n", r.Workload)
	fmt.Fprintf(w, "run %s on %d cores; commit interval %d ms on both sides, snappy, lateness %d ms\n", r.ID, r.Cores, r.CommitMs, r.LatenessMs)
	fmt.Fprintf(w, "input: %d events over %d cards (%.0f events per second of event time: %.1f h), %d partitions, %d late; produced in %.1fs\n",
		r.Events, r.Cards, r.EventRate, float64(r.Events)/r.EventRate/3600, r.Partitions, r.Late, r.ProduceSeconds)
	var cs []string
	for _, c := range r.Ceilings {
		cs = append(cs, kfmt(c.EventsPerSec))
	}
	fmt.Fprintf(w, "ceiling (franz-go read_committed, count only): %s events/s, median %s\n", strings.Join(cs, " "), kfmt(r.Ceiling))
	fmt.Fprintf(w, "Kafka Streams: %d stream thread(s), %s store with caching, heap %s; JIT warm-up included (fresh JVM per run)\n", r.KSThreads, r.KSStore, r.KSHeap)
	if !r.WeirAtLeastOnce {
		fmt.Fprintf(w, "Weir has no kafka.guarantee: at_least_once in this tree: its at-least-once runs were skipped\n")
	}
	fmt.Fprintf(w, "load before the runs (all but broker and harness): %s of the machine\n\n", pct(r.Baseline))

	runs := r.Runs
	if r.Profiled != nil {
		runs = append(append([]*runResult(nil), runs...), r.Profiled)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "#\tside\tguarantee\trun\tevents/s\tsecs\tstartup s\tproc CPU s\tevents/CPU s\tcores\t2nd half ev/s\t2nd half ev/CPU s\tbroker CPU s\tother CPU\tof ceiling\tpeak RSS MB\t")
	for _, x := range runs {
		mark := ""
		if x.Noisy {
			mark = " *"
		}
		side := x.Side
		if x.Profiled {
			side += " (profiled)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%.2f\t%.1f\t%.2f\t%s\t%.2f\t%s\t%s\t%.2f\t%s%s\t%s\t%.0f\t\n",
			x.Order, side, x.Guarantee, x.Run, kfmt(x.EventsPerSec), x.Seconds, x.StartupSeconds, x.CPU.Proc, kfmt(x.EventsPerCPUSec), x.Cores,
			kfmt(x.SecondHalfEventsPerSec), kfmt(x.SecondHalfEventsPerCPUSec), x.CPU.Broker, pct(x.OtherFraction), mark, pct(x.CeilingFraction), x.PeakRSSMB)
	}
	tw.Flush()
	fmt.Fprintln(w, "(* other processes used more than the noise threshold of the machine during the run)")
	for _, x := range runs {
		if len(x.TopOthers) > 0 {
			fmt.Fprintf(w, "  #%d busiest others: %s\n", x.Order, strings.Join(x.TopOthers, ", "))
		}
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "#\tside\tguarantee\trun\toutputs/ev\toutput B/ev\tchangelog rec/ev\tchangelog B/ev\tcorrections\tdead letters\tcheck\t")
	for _, x := range runs {
		ok := "ok"
		if !x.Check.ok() || x.DeadLetters != 0 {
			ok = "FAILED"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%.3f\t%.0f\t%.3f\t%.0f\t%d\t%d\t%s: %d missing, %d dup, %d stray, %d/%d sampled wrong\t\n",
			x.Order, x.Side, x.Guarantee, x.Run, x.OutputsPerEvent, x.OutputBytesPerEvent, x.ChangelogPerEvent, x.ChangelogBytesPerEvent, x.Check.Corrections, x.DeadLetters,
			ok, x.Check.Missing, x.Check.Duplicates, x.Check.Strays, x.Check.Mismatches, x.Check.Sampled)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "side\tguarantee\truns (noisy)\tevents/s median [range]\tevents per CPU s\t2nd half events/s\t2nd half per CPU s\tcores\tof ceiling\tbroker CPU µs/event\tout/ev\tchangelog/ev")
	for _, s := range r.Summary {
		fmt.Fprintf(tw, "%s\t%s\t%d (%d)\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.3f\t%.3f\n", s.Side, s.Guarantee, s.Runs, s.Noisy,
			s.EventsPerSec.show(kfmt), s.EventsPerCPUSec.show(kfmt), s.HalfPerSec.show(kfmt), s.HalfPerCPUSec.show(kfmt),
			s.Cores.show(f2), s.Ceiling.show(pct), s.BrokerCPUPerEv.show(f2), s.OutputsPerEvent, s.ChangelogPerEv)
	}
	tw.Flush()
	for _, rt := range r.Ratios {
		fmt.Fprintf(w, "\nWeir / Kafka Streams, %s (medians): events/s %.2fx (per A/B pair %s), events per CPU second %.2fx (per pair %s)\n",
			rt.Guarantee, rt.EventsPerSec, rt.PairsEventsPerSec.show(rx), rt.EventsPerCPUSec, rt.PairsEventsPerCPUSec.show(rx))
		fmt.Fprintf(w, "  second half of the input only (past JIT warm-up): events/s %.2fx, events per CPU second %.2fx\n", rt.HalfPerSec, rt.HalfPerCPUSec)
	}
	if r.ProfileTop != "" {
		fmt.Fprintf(w, "\nCPU profile of Weir's processor (the profiled run above): %s\n%s", r.ProfilePath, r.ProfileTop)
	}
	if len(r.Latency) > 0 {
		fmt.Fprintf(w, "\nEnd-to-end latency: produce time to the output visible to a consumer, paced input\n")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "side\tguarantee\tcommit ms\tconsumer\trate\tevents\tmissing\tp50 ms\tp99 ms\tp99.9 ms\tmax ms\tcores\tother CPU\t")
		for _, l := range r.Latency {
			mark := ""
			if l.Noisy {
				mark = " *"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.2f\t%s%s\t\n", l.Side, l.Guarantee, l.CommitMs, l.Isolation,
				kfmt(l.Achieved), l.Events, l.Missing, l.P50, l.P99, l.P999, l.Max, l.Cores, pct(l.Other), mark)
		}
		tw.Flush()
	}
}
