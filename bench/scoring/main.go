// Command scoring benchmarks Weir's XGBoost evaluator (scoring/model)
// against XGBoost's own C library, through its Python package, and against
// the Go library github.com/dmitryikh/leaves, on the same model and rows,
// in one run:
//
//  1. xgb.py train (beside this file) trains a 100-tree, depth-6
//     binary:logistic model on 30 features (5% missing values) with
//     xgboost-cpu, saves it as JSON (what Weir loads) and in XGBoost's old
//     binary format (what leaves loads; XGBoost 3.x no longer writes it, so
//     the script writes the same trees in the 0.90 layout), with 10,000
//     fresh rows and XGBoost's predictions of them;
//  2. checks that Weir's and leaves' predictions equal XGBoost's to 1e-6,
//     row by row, before timing anything;
//  3. times, alternating the sides (Weir, leaves, XGBoost; -runs times):
//     single-row calls (Weir Score, leaves PredictSingle, XGBoost
//     inplace_predict of one row, the C call it makes with its arguments
//     prepared, and DMatrix + predict per call) and a
//     batch of all rows (Weir PredictBatch, leaves PredictDense with one
//     thread, XGBoost inplace_predict and predict of a DMatrix with
//     nthread=1), with the CPU the machine spent on other processes;
//  4. prints CPU ns per prediction (the process's user+system time, which
//     other processes inflate less than wall time), median [range], wall
//     ns, and the ratios.
//
// Then, with Redis (-redis, $WEIR_REDIS_ADDR or the `make setup` stack),
// it benchmarks the inline scorer's work per event (scorer.go): gather the
// features (scoring/lookup), score with the same model, encode the
// prediction record, one event at a time as a partition task does, with
// all 30 features from the event's own rows and with 20 own and 10 of
// another entity read from Redis in one pipelined round trip per event;
// every score checked against XGBoost's first. It prints events per
// CPU-second (of this process, and with the Redis server's CPU) and the
// p50, p99 and p99.9 of the time added per event.
//
// It is its own module, so that leaves is not a dependency of Weir. Run:
//
//	make bench-scoring        (or: cd bench/scoring && go run . -python $WEIR_PYTHON)
//	cd bench/scoring && go run . -python $WEIR_PYTHON -compare=false   (the scorer alone)
package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dmitryikh/leaves"

	"github.com/weirhq/weir/scoring/model"
)

type meta struct {
	Features, Trees, Depth, Nodes, Rows int
	XGBoost                             string `json:"xgboost"`
}

func main() {
	python := flag.String("python", os.Getenv("WEIR_PYTHON"), "Python with xgboost (the project venv's)")
	runs := flag.Int("runs", 3, "timed runs per side, alternated")
	dir := flag.String("dir", "", "work directory (default: a fresh temporary one)")
	minTime := flag.Duration("time", time.Second, "minimum time per measurement")
	redis := flag.String("redis", "", "Redis for the scorer benchmark (default $WEIR_REDIS_ADDR, else the one in $WEIR_DATA/env)")
	compare := flag.Bool("compare", true, "time the evaluators side by side (false: only the scorer benchmark)")
	flag.Parse()
	if err := run(*python, *dir, *runs, *minTime, redisAddr(*redis), *compare); err != nil {
		fmt.Fprintln(os.Stderr, "bench-scoring:", err)
		os.Exit(1)
	}
}

func run(python, dir string, runs int, minTime time.Duration, redis string, compare bool) error {
	if python == "" {
		return fmt.Errorf("no Python: pass -python or set WEIR_PYTHON (. .weir/env)")
	}
	script, err := filepath.Abs("xgb.py")
	if err != nil {
		return err
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "bench-scoring-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	fmt.Println("==> training the model with XGBoost (xgb.py train)")
	if out, err := exec.Command(python, script, "train", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("xgb.py train: %w\n%s", err, out)
	}
	var m meta
	if err := readJSON(filepath.Join(dir, "meta.json"), &m); err != nil {
		return err
	}
	rows, err := readFloats[float64](filepath.Join(dir, "rows.f64"))
	if err != nil {
		return err
	}
	want, err := readFloats[float32](filepath.Join(dir, "pred.f32"))
	if err != nil {
		return err
	}
	if len(rows) != m.Rows*m.Features || len(want) != m.Rows {
		return fmt.Errorf("%d values and %d predictions for %d rows of %d features", len(rows), len(want), m.Rows, m.Features)
	}
	b, err := os.ReadFile(filepath.Join(dir, "model.json"))
	if err != nil {
		return err
	}
	weir, err := model.ParseXGBoostJSON(b)
	if err != nil {
		return err
	}
	lv, err := leaves.XGEnsembleFromFile(filepath.Join(dir, "model.bin"), true)
	if err != nil {
		return fmt.Errorf("leaves: %w", err)
	}
	fmt.Printf("model: %d trees, depth %d, %d nodes, %d features; %d rows (5%% missing); XGBoost %s, %s, GOMAXPROCS %d\n",
		m.Trees, m.Depth, m.Nodes, m.Features, m.Rows, m.XGBoost, runtime.Version(), runtime.GOMAXPROCS(0))

	// Correctness first: both Go sides against XGBoost, every row.
	nf := m.Features
	batch := weir.PredictBatch(make([]float64, 0, m.Rows), rows)
	lvBatch := make([]float64, m.Rows)
	if err := lv.PredictDense(rows, m.Rows, nf, lvBatch, 0, 1); err != nil {
		return fmt.Errorf("leaves: %w", err)
	}
	for _, side := range []struct {
		name   string
		single func([]float64) float64
		batch  []float64
	}{
		{"weir", weir.Score, batch},
		{"leaves", func(x []float64) float64 { return lv.PredictSingle(x, 0) }, lvBatch},
	} {
		var bad, exact int
		var worst float64
		for r := range m.Rows {
			w := float64(want[r])
			s := side.single(rows[r*nf : (r+1)*nf])
			d := max(math.Abs(s-w), math.Abs(side.batch[r]-w))
			worst = max(worst, d)
			if d > 1e-6 {
				bad++
			}
			if s == w {
				exact++
			}
		}
		fmt.Printf("check %-6s vs XGBoost: %d of %d rows differ by more than 1e-6 (max |diff| %.3g), %d bit-equal\n",
			side.name, bad, m.Rows, worst, exact)
		if bad > 0 {
			return fmt.Errorf("%s disagrees with XGBoost on %d rows: no timing", side.name, bad)
		}
	}

	if !compare {
		return scorerBench(context.Background(), redis, dir, m, rows, want, runs, minTime)
	}
	res := map[string][]float64{}     // CPU ns per prediction, per run
	wallRes := map[string][]float64{} // wall ns per prediction, per run
	others := []float64{}
	for r := range runs {
		fmt.Printf("==> run %d of %d\n", r+1, runs)
		var sink float64
		measure := func(name string, f func()) {
			cpu, wall, oth := timeIt(m.Rows, minTime, f)
			res[name] = append(res[name], cpu)
			wallRes[name] = append(wallRes[name], wall)
			others = append(others, oth)
			fmt.Printf("  %-24s %9.1f CPU ns/prediction, %9.1f wall (other processes %.0f%% of the machine)\n", name, cpu, wall, 100*oth)
		}
		measure("weir single", func() {
			for i := 0; i < len(rows); i += nf {
				sink += weir.Score(rows[i : i+nf])
			}
		})
		measure("weir batch", func() { batch = weir.PredictBatch(batch[:0], rows) })
		measure("leaves single", func() {
			for i := 0; i < len(rows); i += nf {
				sink += lv.PredictSingle(rows[i:i+nf], 0)
			}
		})
		measure("leaves batch", func() { _ = lv.PredictDense(rows, m.Rows, nf, lvBatch, 0, 1) })
		_ = sink

		busy0, total0, _ := machineTicks()
		cmd := exec.Command(python, script, "time", dir)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("xgb.py time: %w\n%s", err, stderr.String())
		}
		busy1, total1, _ := machineTicks()
		child := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		oth := othersShare(busy1-busy0, total1-total0, child)
		var py map[string]float64
		if err := json.Unmarshal(stdout.Bytes(), &py); err != nil {
			return fmt.Errorf("xgb.py time output %q: %w", stdout.String(), err)
		}
		others = append(others, oth)
		for _, k := range []struct{ key, name string }{
			{"single_inplace", "xgboost single inplace"}, {"single_capi", "xgboost single C call"},
			{"single_dmatrix", "xgboost single dmatrix"},
			{"batch_inplace", "xgboost batch inplace"}, {"batch_dmatrix", "xgboost batch dmatrix"},
			{"python_loop", "python loop alone"},
		} {
			res[k.name] = append(res[k.name], py[k.key+"_cpu_ns"])
			wallRes[k.name] = append(wallRes[k.name], py[k.key+"_wall_ns"])
			fmt.Printf("  %-24s %9.1f CPU ns/prediction, %9.1f wall\n", k.name, py[k.key+"_cpu_ns"], py[k.key+"_wall_ns"])
		}
		fmt.Printf("  (xgboost run: other processes %.0f%% of the machine)\n", 100*oth)
	}

	med := func(k string) float64 { return median(res[k]) }
	fmt.Println()
	fmt.Println("| side | call | CPU ns per prediction, median [range] | wall ns, median |")
	fmt.Println("|---|---|---|---|")
	for _, k := range []struct{ key, side, call string }{
		{"weir single", "Weir", "`Score`, one row per call"},
		{"leaves single", "leaves", "`PredictSingle`, one row per call"},
		{"xgboost single inplace", "XGBoost (Python)", "`inplace_predict`, one row per call"},
		{"xgboost single C call", "XGBoost (C, through ctypes)", "`XGBoosterPredictFromDense`, one row per call, arguments prepared"},
		{"xgboost single dmatrix", "XGBoost (Python)", "`DMatrix` + `predict`, one row per call"},
		{"python loop alone", "Python", "the loop and row slicing alone"},
		{"weir batch", "Weir", fmt.Sprintf("`PredictBatch`, %d rows", m.Rows)},
		{"leaves batch", "leaves", fmt.Sprintf("`PredictDense`, %d rows, 1 thread", m.Rows)},
		{"xgboost batch inplace", "XGBoost (Python)", fmt.Sprintf("`inplace_predict`, %d rows, nthread=1", m.Rows)},
		{"xgboost batch dmatrix", "XGBoost (Python)", fmt.Sprintf("`predict` of a `DMatrix`, %d rows, nthread=1", m.Rows)},
	} {
		v := res[k.key]
		fmt.Printf("| %s | %s | %s [%s–%s] | %s |\n", k.side, k.call, ns(median(v)), ns(slices.Min(v)), ns(slices.Max(v)), ns(median(wallRes[k.key])))
	}
	fmt.Println()
	fmt.Println("Ratios of CPU time per prediction (medians):")
	fmt.Printf("single row: XGBoost inplace_predict / Weir = %.1fx; its C call alone / Weir = %.1fx; leaves / Weir = %.2fx\n",
		med("xgboost single inplace")/med("weir single"),
		med("xgboost single C call")/med("weir single"),
		med("leaves single")/med("weir single"))
	fmt.Printf("batch:      XGBoost inplace_predict / Weir = %.2fx; leaves / Weir = %.2fx\n",
		med("xgboost batch inplace")/med("weir batch"), med("leaves batch")/med("weir batch"))
	fmt.Printf("other processes used up to %.0f%% of the machine during a measurement", 100*slices.Max(others))
	if slices.Max(others) > 0.05 {
		fmt.Print(" (NOISY: more than 5%)")
	}
	fmt.Println()
	return scorerBench(context.Background(), redis, dir, m, rows, want, runs, minTime)
}

// timeIt runs f (one pass over rows predictions) until minTime has passed
// and returns CPU ns per prediction (this process's user+system time,
// which other processes on the machine do not inflate the way they do wall
// time), wall ns per prediction, and the share of the machine's CPU that
// other processes used meanwhile.
func timeIt(rows int, minTime time.Duration, f func()) (cpuNs, wallNs, others float64) {
	f() // warm
	busy0, total0, _ := machineTicks()
	cpu0 := processCPU()
	start := time.Now()
	n := 0
	for time.Since(start) < minTime {
		f()
		n++
	}
	el := time.Since(start)
	cpu := processCPU() - cpu0
	busy1, total1, _ := machineTicks()
	preds := float64(n * rows)
	return float64(cpu.Nanoseconds()) / preds, float64(el.Nanoseconds()) / preds, othersShare(busy1-busy0, total1-total0, cpu)
}

// processCPU is this process's user+system CPU time (getrusage, µs).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func othersShare(busy, total int64, own time.Duration) float64 {
	if total <= 0 {
		return 0
	}
	ownTicks := own.Seconds() * 100 // USER_HZ
	return max(0, (float64(busy)-ownTicks)/float64(total))
}

// machineTicks is the machine's busy and total CPU ticks from /proc/stat.
func machineTicks() (busy, total int64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 {
		return 0, 0, fmt.Errorf("/proc/stat: %q", line)
	}
	var v [8]int64
	for i := range v {
		v[i], _ = strconv.ParseInt(f[i+1], 10, 64)
		total += v[i]
	}
	return total - v[3] - v[4], total, nil
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return math.NaN()
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ns(v float64) string {
	if v >= 10000 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func readFloats[T float32 | float64](path string) ([]T, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var z T
	out := make([]T, len(b)/binary.Size(z))
	if err := binary.Read(bytes.NewReader(b), binary.LittleEndian, out); err != nil {
		return nil, err
	}
	return out, nil
}
