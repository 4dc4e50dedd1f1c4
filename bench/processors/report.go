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
	Ratio          ratios        `json:"ratio_weir_over_kstreams"`
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
	r.Summary = nil
	by := map[string][]*runResult{}
	for _, x := range r.Runs {
		by[x.Side] = append(by[x.Side], x)
	}
	for _, side := range []string{"weir", "kstreams"} {
		rs := by[side]
		if len(rs) == 0 {
			continue
		}
		s := sideSummary{Side: side, Runs: len(rs)}
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
	}
	if len(r.Summary) == 2 {
		w, k := r.Summary[0], r.Summary[1]
		r.Ratio.EventsPerSec = w.EventsPerSec.Median / k.EventsPerSec.Median
		r.Ratio.EventsPerCPUSec = w.EventsPerCPUSec.Median / k.EventsPerCPUSec.Median
		r.Ratio.HalfPerSec = w.HalfPerSec.Median / k.HalfPerSec.Median
		r.Ratio.HalfPerCPUSec = w.HalfPerCPUSec.Median / k.HalfPerCPUSec.Median
		var p1, p2 []float64
		for i := range min(len(by["weir"]), len(by["kstreams"])) {
			p1 = append(p1, by["weir"][i].EventsPerSec/by["kstreams"][i].EventsPerSec)
			p2 = append(p2, by["weir"][i].EventsPerCPUSec/by["kstreams"][i].EventsPerCPUSec)
		}
		r.Ratio.PairsEventsPerSec, r.Ratio.PairsEventsPerCPUSec = spreadOf(p1), spreadOf(p2)
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
	fmt.Fprintf(w, "\nWeir processor vs Kafka Streams: view card_activity (count+sum 5m, count+sum+max 1h, last; exact as of each event)\n")
	fmt.Fprintf(w, "run %s on %d cores; exactly-once on both sides, commit interval %d ms, snappy, lateness %d ms\n", r.ID, r.Cores, r.CommitMs, r.LatenessMs)
	fmt.Fprintf(w, "input: %d events over %d cards (%.0f events per second of event time), %d partitions, %d late; produced in %.1fs\n",
		r.Events, r.Cards, r.EventRate, r.Partitions, r.Late, r.ProduceSeconds)
	var cs []string
	for _, c := range r.Ceilings {
		cs = append(cs, kfmt(c.EventsPerSec))
	}
	fmt.Fprintf(w, "ceiling (franz-go read_committed, count only): %s events/s, median %s\n", strings.Join(cs, " "), kfmt(r.Ceiling))
	fmt.Fprintf(w, "Kafka Streams: %d stream thread(s), %s store with caching, heap %s; JIT warm-up included (fresh JVM per run)\n", r.KSThreads, r.KSStore, r.KSHeap)
	fmt.Fprintf(w, "load before the runs (all but broker and harness): %s of the machine\n\n", pct(r.Baseline))

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "#\tside\trun\tevents/s\tsecs\tstartup s\tproc CPU s\tevents/CPU s\tcores\t2nd half ev/s\t2nd half ev/CPU s\tbroker CPU s\tother CPU\tof ceiling\tpeak RSS MB\t")
	for _, x := range r.Runs {
		mark := ""
		if x.Noisy {
			mark = " *"
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%.2f\t%.1f\t%.2f\t%s\t%.2f\t%s\t%s\t%.2f\t%s%s\t%s\t%.0f\t\n",
			x.Order, x.Side, x.Run, kfmt(x.EventsPerSec), x.Seconds, x.StartupSeconds, x.CPU.Proc, kfmt(x.EventsPerCPUSec), x.Cores,
			kfmt(x.SecondHalfEventsPerSec), kfmt(x.SecondHalfEventsPerCPUSec), x.CPU.Broker, pct(x.OtherFraction), mark, pct(x.CeilingFraction), x.PeakRSSMB)
	}
	tw.Flush()
	fmt.Fprintln(w, "(* other processes used more than the noise threshold of the machine during the run)")
	for _, x := range r.Runs {
		if len(x.TopOthers) > 0 {
			fmt.Fprintf(w, "  #%d busiest others: %s\n", x.Order, strings.Join(x.TopOthers, ", "))
		}
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "#\tside\trun\toutputs/ev\toutput B/ev\tchangelog rec/ev\tchangelog B/ev\tdead letters\tcheck\t")
	for _, x := range r.Runs {
		ok := "ok"
		if !x.Check.ok() || x.DeadLetters != 0 {
			ok = "FAILED"
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%.3f\t%.0f\t%.3f\t%.0f\t%d\t%s: %d missing, %d dup, %d stray, %d/%d sampled wrong\t\n",
			x.Order, x.Side, x.Run, x.OutputsPerEvent, x.OutputBytesPerEvent, x.ChangelogPerEvent, x.ChangelogBytesPerEvent, x.DeadLetters,
			ok, x.Check.Missing, x.Check.Duplicates, x.Check.Strays, x.Check.Mismatches, x.Check.Sampled)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "side\truns (noisy)\tevents/s median [range]\tevents per CPU s\t2nd half events/s\t2nd half per CPU s\tcores\tof ceiling\tbroker CPU µs/event\tout/ev\tchangelog/ev")
	for _, s := range r.Summary {
		fmt.Fprintf(tw, "%s\t%d (%d)\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.3f\t%.3f\n", s.Side, s.Runs, s.Noisy,
			s.EventsPerSec.show(kfmt), s.EventsPerCPUSec.show(kfmt), s.HalfPerSec.show(kfmt), s.HalfPerCPUSec.show(kfmt),
			s.Cores.show(f2), s.Ceiling.show(pct), s.BrokerCPUPerEv.show(f2), s.OutputsPerEvent, s.ChangelogPerEv)
	}
	tw.Flush()
	if len(r.Summary) == 2 {
		fmt.Fprintf(w, "\nWeir / Kafka Streams (medians): events/s %.2fx (per A/B pair %s), events per CPU second %.2fx (per pair %s)\n",
			r.Ratio.EventsPerSec, r.Ratio.PairsEventsPerSec.show(rx), r.Ratio.EventsPerCPUSec, r.Ratio.PairsEventsPerCPUSec.show(rx))
		fmt.Fprintf(w, "second half of the input only (past JIT warm-up): events/s %.2fx, events per CPU second %.2fx\n", r.Ratio.HalfPerSec, r.Ratio.HalfPerCPUSec)
	}
}
