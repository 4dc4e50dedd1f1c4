package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// target sends the i-th request of a request set and waits for its answer.
type target func(ctx context.Context, i int) error

// stepResult is one rate step of a series.
type stepResult struct {
	Rate     float64 `json:"rate"`
	Achieved float64 `json:"achieved"` // answered OK per second, first send to last answer
	Sent     int     `json:"sent"`
	Errors   int     `json:"errors"` // failed, timed out, or not sent (over max-inflight)
	ErrorMsg string  `json:"error_sample,omitempty"`
	// Latencies of the answered requests from their send, ms.
	P50  float64 `json:"p50_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p999_ms"`
	Max  float64 `json:"max_ms"`
	// LagP99 is the 99th percentile of how late requests were sent after
	// their scheduled time, ms: the harness's own delay (a busy machine, or
	// a rate beyond the sender); latency from the schedule is at most lag
	// plus latency.
	LagP99    float64 `json:"send_lag_p99_ms"`
	CPU       cpuUse  `json:"cpu"`
	Noisy     bool    `json:"noisy"`
	Sustained bool    `json:"sustained"`
}

// series is one side's ladder at one batch size.
type series struct {
	Side    string       `json:"side"`
	Batch   int          `json:"batch"`
	Repeat  int          `json:"repeat"`
	Steps   []stepResult `json:"steps"`
	MaxRate float64      `json:"max_sustained_rate"` // the best achieved rate of a sustained step
	// PerServerCPU is answered requests per CPU second of the side's server
	// processes over the sustained steps: what the server costs, which
	// other processes on the machine disturb far less than rates.
	PerServerCPU float64 `json:"requests_per_server_cpu_second"`
}

// warm sends n requests one after another (connections, caches, lazy
// imports), unmeasured.
func warm(ctx context.Context, t target, n int) {
	for i := range n {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = t(cctx, i)
		cancel()
	}
}

// ladder runs one series: ascending rates until one is not sustained.
func ladder(ctx context.Context, f *flags, side string, batch, repeat int, t target, pids func() []int, cpu *cpuMeter) *series {
	s := &series{Side: side, Batch: batch, Repeat: repeat}
	fmt.Printf("--- %s, batch %d, repeat %d\n", side, batch, repeat+1)
	offset := 0
	var cpuSec, answered float64
	defer func() {
		if cpuSec > 0 {
			s.PerServerCPU = answered / cpuSec
		}
	}()
	for _, rate := range f.rates {
		if ctx.Err() != nil {
			break
		}
		before := cpu.read(pids())
		r := step(ctx, t, rate, f.step, f.timeout, f.maxInflight, offset)
		r.CPU = before.to(cpu.read(pids()))
		r.Noisy = r.CPU.MachineCapacity > 0 && r.CPU.Other/r.CPU.MachineCapacity > f.noisy
		offset += r.Sent
		s.Steps = append(s.Steps, r)
		mark := ""
		if r.Noisy {
			mark = " NOISY"
		}
		if !r.Sustained {
			mark += " NOT SUSTAINED"
		}
		fmt.Printf("    %6.0f/s: achieved %8.1f/s  p50 %7.3f  p99 %7.3f  p99.9 %7.3f  max %8.3f ms  send lag p99 %.3f ms  errors %d/%d  cpu: server %.2f redis %.2f harness %.2f other %.2f of %.2f s%s\n",
			rate, r.Achieved, r.P50, r.P99, r.P999, r.Max, r.LagP99, r.Errors, r.Sent, r.CPU.Server, r.CPU.Redis, r.CPU.Harness, r.CPU.Other, r.CPU.MachineCapacity, mark)
		if r.ErrorMsg != "" {
			fmt.Printf("             first error: %s\n", r.ErrorMsg)
		}
		if !r.Sustained {
			break
		}
		s.MaxRate = max(s.MaxRate, r.Achieved)
		cpuSec += r.CPU.Server
		answered += float64(r.Sent - r.Errors)
		time.Sleep(200 * time.Millisecond) // let the last step's connections settle
	}
	return s
}

// step sends requests open loop at rate for d: request i is due at start +
// i/rate and sent then, on a goroutine of its own, whatever the answers
// before it did (so a stalled server is not hidden by a sender that waits
// for it). Latency counts from the send; how late the send was is kept
// apart (LagP99), since on a busy 2-core machine the sender's own wake-ups
// are late by about a millisecond at low rates.
func step(ctx context.Context, t target, rate float64, d, timeout time.Duration, maxInflight, offset int) stepResult {
	n := max(1, int(rate*d.Seconds()))
	lat, lag := make([]time.Duration, n), make([]time.Duration, n)
	var (
		inflight atomic.Int64
		wg       sync.WaitGroup
		errMu    sync.Mutex
		errs     int
		firstErr string
	)
	fail := func(msg string) {
		errMu.Lock()
		errs++
		if firstErr == "" {
			firstErr = msg
		}
		errMu.Unlock()
	}
	start := time.Now()
	sent := 0
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		due := start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		sent++
		lat[i] = -1
		if inflight.Load() >= int64(maxInflight) {
			fail(fmt.Sprintf("over %d requests in flight", maxInflight))
			continue
		}
		inflight.Add(1)
		wg.Add(1)
		go func(i int, due time.Time) {
			defer wg.Done()
			defer inflight.Add(-1)
			sent := time.Now()
			lag[i] = sent.Sub(due)
			cctx, cancel := context.WithTimeout(ctx, timeout)
			err := t(cctx, offset+i)
			cancel()
			if err != nil {
				fail(err.Error())
				return
			}
			lat[i] = time.Since(sent)
		}(i, due)
	}
	wg.Wait()
	elapsed := time.Since(start)
	ok := make([]time.Duration, 0, sent)
	for _, l := range lat[:sent] {
		if l >= 0 {
			ok = append(ok, l)
		}
	}
	slices.Sort(ok)
	lags := slices.Clone(lag[:sent])
	slices.Sort(lags)
	r := stepResult{Rate: rate, Sent: sent, Errors: errs, ErrorMsg: firstErr, Achieved: float64(len(ok)) / elapsed.Seconds()}
	if len(ok) > 0 {
		r.P50, r.P99, r.P999, r.Max = ms(pct(ok, 0.50)), ms(pct(ok, 0.99)), ms(pct(ok, 0.999)), ms(ok[len(ok)-1])
	}
	if len(lags) > 0 {
		r.LagP99 = ms(pct(lags, 0.99))
	}
	r.Sustained = sent == n && r.Achieved >= 0.95*rate && float64(errs) <= 0.01*float64(sent)
	return r
}

// pct is the q-quantile of sorted xs (nearest rank).
func pct(xs []time.Duration, q float64) time.Duration {
	i := int(q*float64(len(xs)) + 0.5)
	return xs[min(max(i-1, 0), len(xs)-1)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
