// Command trainingset times `weir training-set` side by side with Feast's
// get_historical_features on the same feature history and the same spine
// (`make bench-trainingset`; README.md beside it):
//
//  1. generates the data of featurestore/trainingset's tests at the spine
//     size asked for (testdata/gen.py: three views of ten features, with
//     corrections, equal event times, hopping windows, retried duplicates,
//     NaNs, spine rows on and just past the TTL), loads the feature rows into
//     ClickHouse through Weir's offline store and merges the tables;
//  2. exports every row those tables hold, in Weir's rank order, to Parquet,
//     and (feast_ts.py prepare) turns it into two Feast repos over the same
//     files: the default file offline store (dask) and the duckdb one;
//  3. checks correctness first: one build of each side; Weir's output
//     against the pandas merge_asof oracle of the package's tests, each
//     Feast output against Weir's, row for row and cell for cell;
//  4. times -repeats builds of each side, alternated, each a process of its
//     own under GNU time: wall seconds, peak RSS and CPU of the process,
//     ClickHouse's CPU and RSS growth (Weir's join queries run there), the
//     rest of the machine's CPU; then medians, ranges and Feast/Weir ratios.
//
// Both sides read the feature history in every build (Weir from ClickHouse,
// Feast from its Parquet files), read the spine from Parquet and write the
// training set to Parquet (zstd).
//
// Run it from the module root with the local stack up:
//
//	make bench-trainingset
//	. .weir/env && go run ./bench/trainingset -rows 100000 -repeats 3
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

type flags struct {
	sizes       []int
	repeats     int
	engines     []string
	python      string
	feastPython string
	work        string
	data        string
	clickhouse  string
	db          string
	maxRSSMB    float64
	timeout     time.Duration
	noisy       float64
	weirOnly    []int
	naive       bool
	duckdbMem   string
}

func log(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "==> "+format+"\n", args...)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func ints(s string) ([]int, error) {
	var out []int
	for _, e := range strings.Split(s, ",") {
		if e = strings.TrimSpace(e); e == "" {
			continue
		}
		n, err := strconv.Atoi(strings.ReplaceAll(e, "_", ""))
		if err != nil {
			return nil, fmt.Errorf("%q: not an integer", e)
		}
		out = append(out, n)
	}
	return out, nil
}

func main() {
	var f flags
	var sizes, engines, weirOnly string
	data := envOr("WEIR_DATA", ".weir")
	flag.StringVar(&sizes, "rows", "1000000", "spine sizes, comma-separated: each is generated, checked and timed on both sides")
	flag.StringVar(&weirOnly, "weir-only-rows", "", "spine sizes timed on Weir's side only (e.g. where Feast cannot finish)")
	flag.IntVar(&f.repeats, "repeats", 3, "timed builds of each side per size, alternated (0: only the correctness builds, whose numbers are logged)")
	flag.StringVar(&engines, "engines", "duckdb", "Feast offline stores to run: duckdb, dask (the default file store: wrong results, and past 11 GB at 100k rows)")
	flag.StringVar(&f.python, "python", envOr("WEIR_PYTHON", filepath.Join(data, "venv/bin/python")), "the project's Python (gen.py, oracle.py)")
	flag.StringVar(&f.feastPython, "feast-python", filepath.Join(data, "feast-venv/bin/python"), "Feast's venv's Python (bench/featurestore/feast/venv.sh)")
	flag.StringVar(&f.work, "work", filepath.Join(data, "bench-trainingset"), "work directory (data, exports, outputs)")
	flag.StringVar(&f.clickhouse, "clickhouse", envOr("WEIR_CLICKHOUSE_ADDR", "127.0.0.1:19000"), "ClickHouse (native protocol)")
	flag.StringVar(&f.db, "db", "weirbench_ts", "ClickHouse database the benchmark owns (dropped and refilled)")
	flag.Float64Var(&f.maxRSSMB, "max-rss", 12_000, "kill a build whose processes' RSS passes this many MB")
	flag.DurationVar(&f.timeout, "timeout", 15*time.Minute, "kill a build running longer")
	flag.BoolVar(&f.naive, "naive", true, "also run Feast's duckdb store once without the reconciliation (event times as stored, one created timestamp) and count what differs")
	flag.StringVar(&f.duckdbMem, "duckdb-memory-limit", "8GB", "SET memory_limit on the duckdb backend of Feast's duckdb store, so that it spills instead of growing ('': DuckDB's default, 80% of RAM, which passed 12 GB at 1M rows)")
	flag.Float64Var(&f.noisy, "noisy", 0.05, "mark a run noisy when other processes used more than this share of the machine")
	flag.Parse()
	f.data = data
	var err error
	if f.sizes, err = ints(sizes); err != nil {
		fatal(err)
	}
	if f.weirOnly, err = ints(weirOnly); err != nil {
		fatal(err)
	}
	for _, e := range strings.Split(engines, ",") {
		if e = strings.TrimSpace(e); e != "" {
			if e != "duckdb" && e != "dask" {
				fatal(fmt.Errorf("-engines: %q is neither duckdb nor dask", e))
			}
			f.engines = append(f.engines, e)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, &f); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench/trainingset:", err)
	os.Exit(1)
}

// sizeRun is what one spine size produced.
type sizeRun struct {
	rows    int
	weir    []*result
	feast   map[string][]*result
	checks  map[string]string // engine -> the comparison's JSON line
	matched map[string]bool
	oracle  string
	naive   string // Feast duckdb without the reconciliation vs Weir
}

func run(ctx context.Context, f *flags) error {
	if err := os.MkdirAll(f.work, 0o755); err != nil {
		return err
	}
	weir := filepath.Join(f.work, "weir")
	log("go build -o %s ./cmd/weir", weir)
	if out, err := exec.Command("go", "build", "-o", weir, "./cmd/weir").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	chPid := clickHousePid(f.data)
	if chPid == 0 {
		log("warning: no ClickHouse server process found; its CPU is not counted")
	}
	conn, err := openClickHouse(ctx, f.clickhouse)
	if err != nil {
		return fmt.Errorf("clickhouse %s: %w", f.clickhouse, err)
	}
	defer conn.Close()

	var runs []*sizeRun
	all := append(append([]int(nil), f.sizes...), f.weirOnly...)
	for i, n := range all {
		feastToo := i < len(f.sizes)
		sr, err := runSize(ctx, f, conn, chPid, weir, n, feastToo)
		if err != nil {
			return err
		}
		runs = append(runs, sr)
	}
	report(f, runs)
	return nil
}

func runSize(ctx context.Context, f *flags, ch driver.Conn, chPid int, weirBin string, n int, feastToo bool) (*sizeRun, error) {
	dir := filepath.Join(f.work, strconv.Itoa(n))
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	m, err := generate(f.python, dataDir, n)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dir, "weir.yaml")
	views, err := writeConfig(cfgPath, f.clickhouse, f.db, m)
	if err != nil {
		return nil, err
	}
	if err := load(ctx, ch, f.db, dataDir, views); err != nil {
		return nil, err
	}
	var infos []viewInfo
	var featRefs []string
	var delays []string
	for _, v := range m.Views {
		infos = append(infos, viewInfo{Name: v.Name, EntityColumn: v.EntityColumn, TTLMs: v.TTLMs, DelayMs: v.DelayMs, Features: v.Features})
		featRefs = append(featRefs, v.Name+".*")
		if v.DelayMs != 0 {
			delays = append(delays, fmt.Sprintf("%s=%dms", v.Name, v.DelayMs))
		}
	}
	viewsJSON, _ := json.Marshal(infos)
	if err := os.WriteFile(filepath.Join(dir, "views.json"), viewsJSON, 0o644); err != nil {
		return nil, err
	}
	sr := &sizeRun{rows: n, feast: map[string][]*result{}, checks: map[string]string{}, matched: map[string]bool{}}

	outDir := filepath.Join(dir, "out")
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	weirOut := filepath.Join(outDir, "weir.parquet")
	weirArgv := []string{weirBin, "training-set", "-config", cfgPath, "-spine", filepath.Join(dataDir, "spine.parquet"),
		"-timestamp", "ts", "-features", strings.Join(featRefs, ","), "-out", weirOut, "-replace", "-progress", "never"}
	for _, d := range delays {
		weirArgv = append(weirArgv, "-view-delay", d)
	}

	// Correctness first.
	log("correctness, %d spine rows: weir training-set", n)
	first, err := timed(ctx, "weir", chPid, f.maxRSSMB, f.timeout, f.noisy, weirArgv...)
	if err != nil {
		return nil, err
	}
	logResult(first)
	out, err := exec.CommandContext(ctx, f.python, "featurestore/trainingset/testdata/oracle.py", "--data", dataDir, "--got", weirOut).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("oracle.py on Weir's output: %v\n%s", err, out)
	}
	sr.oracle = strings.TrimSpace(string(out))
	log("oracle (pandas merge_asof) on Weir's output: %s", sr.oracle)

	var feastArgv map[string][]string
	engines := f.engines
	if !feastToo {
		engines = nil
	}
	if len(engines) > 0 {
		start := time.Now()
		counts, err := export(ctx, ch, f.db, filepath.Join(dir, "export"), views)
		if err != nil {
			return nil, err
		}
		log("exported %v rows from ClickHouse in %s", counts, time.Since(start).Round(time.Millisecond))
		out, err := exec.CommandContext(ctx, f.feastPython, "bench/trainingset/feast_ts.py", "prepare", "--work", dir).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("feast_ts.py prepare: %v\n%s", err, out)
		}
		feastArgv = map[string][]string{}
		for _, e := range engines {
			feastArgv[e] = []string{f.feastPython, "bench/trainingset/feast_ts.py", "build", "--repo", filepath.Join(dir, "feast", e),
				"--spine", filepath.Join(dir, "feast", "spine.parquet"), "--out", filepath.Join(outDir, "feast_"+e+".parquet")}
			if e == "duckdb" && f.duckdbMem != "" {
				feastArgv[e] = append(feastArgv[e], "--duckdb-memory-limit", f.duckdbMem)
			}
		}
		debug.FreeOSMemory() // the export's rows: this process idles beside the timed ones
	}
	var timedEngines []string
	for _, e := range engines {
		log("correctness, %d spine rows: Feast get_historical_features, %s offline store", n, e)
		r, err := timed(ctx, "feast-"+e, chPid, f.maxRSSMB, f.timeout, f.noisy, feastArgv[e]...)
		if err != nil {
			return nil, err
		}
		logResult(r)
		if r.killed != "" {
			sr.checks[e] = "did not finish: " + r.killed
			log("feast %s: %s", e, sr.checks[e])
			continue
		}
		cmp := exec.CommandContext(ctx, f.feastPython, "bench/trainingset/feast_ts.py", "compare", "--weir", weirOut,
			"--feast", filepath.Join(outDir, "feast_"+e+".parquet"), "--views", string(viewsJSON))
		out, err := cmp.Output()
		if err != nil && len(out) == 0 {
			return nil, fmt.Errorf("feast_ts.py compare: %v", err)
		}
		sr.checks[e] = strings.TrimSpace(string(out))
		sr.matched[e] = err == nil
		log("feast %s vs weir: %s", e, sr.checks[e])
		timedEngines = append(timedEngines, e)
	}

	if f.naive && feastArgv["duckdb"] != nil && sr.matched["duckdb"] {
		// What the reconciliation changes: Feast's duckdb store on the same
		// rows with event times as stored and one created timestamp.
		log("without the reconciliation, %d spine rows: Feast duckdb on duckdb_naive", n)
		argv := []string{f.feastPython, "bench/trainingset/feast_ts.py", "build", "--repo", filepath.Join(dir, "feast", "duckdb_naive"),
			"--spine", filepath.Join(dir, "feast", "spine.parquet"), "--out", filepath.Join(outDir, "feast_duckdb_naive.parquet")}
		if f.duckdbMem != "" {
			argv = append(argv, "--duckdb-memory-limit", f.duckdbMem)
		}
		_ = os.Remove(filepath.Join(outDir, "feast_duckdb_naive.parquet"))
		r, err := timed(ctx, "feast-duckdb-naive", chPid, f.maxRSSMB, f.timeout, f.noisy, argv...)
		if err != nil {
			return nil, err
		}
		if r.killed != "" {
			sr.naive = "did not finish: " + r.killed
		} else {
			out, _ := exec.CommandContext(ctx, f.feastPython, "bench/trainingset/feast_ts.py", "compare", "--weir", weirOut,
				"--feast", filepath.Join(outDir, "feast_duckdb_naive.parquet"), "--views", string(viewsJSON)).Output()
			sr.naive = strings.TrimSpace(string(out))
		}
		log("feast duckdb without the reconciliation vs weir: %s", sr.naive)
	}

	for rep := 1; rep <= f.repeats; rep++ {
		log("timing, %d spine rows, repeat %d/%d: weir", n, rep, f.repeats)
		r, err := timed(ctx, "weir", chPid, f.maxRSSMB, f.timeout, f.noisy, weirArgv...)
		if err != nil {
			return nil, err
		}
		logResult(r)
		sr.weir = append(sr.weir, r)
		for _, e := range timedEngines {
			log("timing, %d spine rows, repeat %d/%d: feast %s", n, rep, f.repeats, e)
			r, err := timed(ctx, "feast-"+e, chPid, f.maxRSSMB, f.timeout, f.noisy, feastArgv[e]...)
			if err != nil {
				return nil, err
			}
			logResult(r)
			sr.feast[e] = append(sr.feast[e], r)
		}
	}
	return sr, nil
}

func logResult(r *result) {
	if r.killed != "" {
		log("  %s: killed, %s", r.side, r.killed)
		return
	}
	noisy := ""
	if r.noisy {
		noisy = " NOISY"
	}
	log("  %s: %.2f s wall, peak RSS %.0f MB, CPU %.1f s, ClickHouse CPU %.1f s (+%.0f MB), other CPU %.1f s%s %s",
		r.side, r.wall, r.rssMB, r.cpu, r.chCPU, r.chRSSMB, r.otherCPU, noisy, strings.TrimSpace(r.stdout))
}

// stats is the median and range of xs.
func stats(xs []float64) (med, lo, hi float64) {
	if len(xs) == 0 {
		return 0, 0, 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := len(s) / 2
	med = s[m]
	if len(s)%2 == 0 {
		med = (s[m-1] + s[m]) / 2
	}
	return med, s[0], s[len(s)-1]
}

func pick(rs []*result, get func(*result) float64) []float64 {
	var xs []float64
	for _, r := range rs {
		if r.killed == "" {
			xs = append(xs, get(r))
		}
	}
	return xs
}

func report(f *flags, runs []*sizeRun) {
	fmt.Println()
	fmt.Println("Training set: spine x 3 views x 10 features, Weir (`weir training-set`, ClickHouse 18.16) vs Feast 0.67 get_historical_features (Parquet files of the same rows)")
	fmt.Printf("medians of %d runs [min-max]; wall = process start to exit; RSS = the process's peak; CH = ClickHouse server during the run\n", f.repeats)
	for _, sr := range runs {
		fmt.Printf("\n%d spine rows\n", sr.rows)
		fmt.Printf("  oracle on weir: %s\n", sr.oracle)
		for _, e := range f.engines {
			if c, ok := sr.checks[e]; ok {
				fmt.Printf("  feast %s vs weir: match=%v %s\n", e, sr.matched[e], c)
			}
		}
		if sr.naive != "" {
			fmt.Printf("  feast duckdb WITHOUT the reconciliation vs weir: %s\n", sr.naive)
		}
		line := func(name string, rs []*result) {
			w, wl, wh := stats(pick(rs, func(r *result) float64 { return r.wall }))
			m, ml, mh := stats(pick(rs, func(r *result) float64 { return r.rssMB }))
			c, _, _ := stats(pick(rs, func(r *result) float64 { return r.cpu }))
			cc, _, _ := stats(pick(rs, func(r *result) float64 { return r.chCPU }))
			cm, _, _ := stats(pick(rs, func(r *result) float64 { return r.chRSSMB }))
			noisy := 0
			for _, r := range rs {
				if r.noisy {
					noisy++
				}
			}
			fmt.Printf("  %-13s wall %6.2f s [%.2f-%.2f]  peak RSS %6.0f MB [%.0f-%.0f]  CPU %5.1f s  CH CPU %4.1f s  CH RSS +%4.0f MB  noisy runs %d/%d\n",
				name, w, wl, wh, m, ml, mh, c, cc, cm, noisy, len(rs))
		}
		line("weir", sr.weir)
		for _, e := range f.engines {
			if rs := sr.feast[e]; len(rs) > 0 {
				line("feast-"+e, rs)
			}
		}
		w, _, _ := stats(pick(sr.weir, func(r *result) float64 { return r.wall }))
		wm, _, _ := stats(pick(sr.weir, func(r *result) float64 { return r.rssMB }))
		// Weir's CPU and memory with ClickHouse's during its runs (an upper
		// bound: other clients' queries count too); Feast's process alone,
		// as it touches nothing else.
		wc, _, _ := stats(pick(sr.weir, func(r *result) float64 { return r.cpu + r.chCPU }))
		wmc, _, _ := stats(pick(sr.weir, func(r *result) float64 { return r.rssMB + r.chRSSMB }))
		for _, e := range f.engines {
			rs := sr.feast[e]
			if len(rs) == 0 {
				continue
			}
			fw, _, _ := stats(pick(rs, func(r *result) float64 { return r.wall }))
			fm, _, _ := stats(pick(rs, func(r *result) float64 { return r.rssMB }))
			fc, _, _ := stats(pick(rs, func(r *result) float64 { return r.cpu }))
			var inproc []float64
			for _, r := range rs {
				var j struct {
					BuildS float64 `json:"build_s"`
				}
				if json.Unmarshal([]byte(strings.TrimSpace(r.stdout)), &j) == nil {
					inproc = append(inproc, j.BuildS)
				}
			}
			ib, _, _ := stats(inproc)
			correct := "results equal"
			if !sr.matched[e] {
				correct = "RESULTS DIFFER (see above)"
			}
			fmt.Printf("  feast-%s / weir: wall %.1fx, peak RSS %.1fx (%.1fx with ClickHouse's growth added to weir's), CPU %.1fx (weir's with ClickHouse's); feast in-process build (spine read to output written) %.2f s = %.1fx weir's wall; %s\n",
				e, fw/w, fm/wm, fm/wmc, fc/wc, ib, ib/w, correct)
		}
	}
}
