package processors

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
)

var featRE = regexp.MustCompile(`^(\w+)=(\w+)(?:\((\w+)\))?(?:/(\w+))?(?:\[(\w+)(==|!=|<=|>=|<|>)([^\]]+)\])?(?:\{(\w+)=([^}]+)\})?$`)

// TestWindowScripts runs testdata/*.txt, scripts of one partition:
//
//	# lateness: 1m         the source's allowed lateness (before views)
//	# out_of_order: 30s    the source's out-of-orderness
//	# view: name=agg(field)/window[filter]{param=value} ...
//	                       a sliding view; "# view kind=tumbling window=1h
//	                       emit=both: ..." a windowed one
//	send k= ts= field=...  applies an event (offsets count sends from 0)
//	advance                closes windows at the watermark (Flush)
//	expect name=value ...  checks the next row emitted and drops it
//	expect row view=1 time= start= end= revises= name=value ...
//	                       the same, with the row's attributes
//	expect none            no rows left
//	expect late            the last send was dead-lettered as late
//
// Lists are written [a,b].
func TestWindowScripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scripts")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { runScript(t, file) })
	}
}

// scriptRow is an emitted row, copied.
type scriptRow struct {
	Row
	vals []schemas.FeatureValue
}

func runScript(t *testing.T, file string) {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		eng       *Engine
		src       = config.Source{Name: "s", Key: "k", Lateness: config.Duration(time.Minute)}
		views     []*config.View
		states    = map[string]*entityState{}
		lastErr   error
		pending   []scriptRow
		newest    int64
		off       int64
		closedAt  = int64(math.MinInt64)
		stale     = true
		wm        = func() int64 { return newest - src.OutOfOrder.D().Milliseconds() }
		collect   = func(r *Row) { pending = append(pending, scriptRow{*r, cloneValues(r.Values)}) }
		day       = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		parseTime = func(where, s string) int64 {
			ts, err := time.Parse("15:04:05.999", s)
			if err != nil {
				t.Fatalf("%s: time %q: %v", where, s, err)
			}
			return day.Add(time.Duration(ts.Hour())*time.Hour + time.Duration(ts.Minute())*time.Minute + time.Duration(ts.Second())*time.Second + time.Duration(ts.Nanosecond())).UnixMilli()
		}
	)
	newest = math.MinInt64
	build := func(where string) {
		if !stale {
			return
		}
		eng, err = NewEngine(src, views, []config.Entity{{Name: "e", Key: "k"}})
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		stale = false
	}
	sc := bufio.NewScanner(f)
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		where := fmt.Sprintf("%s:%d", file, ln)
		switch {
		case strings.HasPrefix(line, "# lateness:"), strings.HasPrefix(line, "# out_of_order:"):
			name, val, _ := strings.Cut(strings.TrimPrefix(line, "# "), ":")
			d, err := time.ParseDuration(strings.TrimSpace(val))
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if name == "lateness" {
				src.Lateness = config.Duration(d)
			} else {
				src.OutOfOrder = config.Duration(d)
			}
			stale = true
		case strings.HasPrefix(line, "# view"):
			head, specs, ok := strings.Cut(strings.TrimPrefix(line, "# view"), ":")
			if !ok {
				t.Fatalf("%s: '# view [options]: features'", where)
			}
			v := &config.View{Name: fmt.Sprintf("v%d", len(views)), Source: "s", Entity: "e", TTL: config.Duration(24 * time.Hour), Kind: config.KindSliding}
			for opt, val := range fields(t, where, head) {
				switch opt {
				case "kind":
					v.Kind = val
				case "emit":
					v.Emit = val
				case "window", "hop", "gap", "lateness":
					d, err := time.ParseDuration(val)
					if err != nil {
						t.Fatalf("%s: %s: %v", where, opt, err)
					}
					*map[string]*config.Duration{"window": &v.Window, "hop": &v.Hop, "gap": &v.Gap, "lateness": &v.Lateness}[opt] = config.Duration(d)
				default:
					t.Fatalf("%s: unknown view option %q", where, opt)
				}
			}
			for _, spec := range strings.Fields(specs) {
				m := featRE.FindStringSubmatch(spec)
				if m == nil {
					t.Fatalf("%s: bad feature %q", where, spec)
				}
				ft := config.Feature{Name: m[1], Agg: m[2], Field: m[3]}
				if m[4] != "" {
					d, err := time.ParseDuration(m[4])
					if err != nil {
						t.Fatalf("%s: %v", where, err)
					}
					ft.Window = config.Duration(d)
				}
				if m[5] != "" {
					var v any = m[7]
					if x, err := strconv.ParseFloat(m[7], 64); err == nil {
						v = x
					}
					ft.Where = &config.Filter{Field: m[5], Op: m[6], Value: v}
				}
				switch m[8] {
				case "":
				case "k":
					ft.K, _ = strconv.Atoi(m[9])
				case "n":
					ft.N, _ = strconv.Atoi(m[9])
				case "q":
					ft.Q, _ = strconv.ParseFloat(m[9], 64)
				case "of":
					ft.Of = strings.Split(m[9], ",")
				default:
					t.Fatalf("%s: unknown parameter %q", where, m[8])
				}
				v.Features = append(v.Features, ft)
			}
			views = append(views, v)
			stale = true
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "send "):
			build(where)
			pending = pending[:0]
			kv := fields(t, where, strings.TrimPrefix(line, "send "))
			at := parseTime(where, kv["ts"])
			vals := make([]float64, eng.NumValues())
			for i, fn := range eng.Fields() {
				vals[i], err = strconv.ParseFloat(kv[fn], 64)
				if err != nil {
					t.Fatalf("%s: field %s: %v", where, fn, err)
				}
			}
			for i, f := range eng.Filters() {
				v := schemas.Value{Kind: schemas.KindBytes, Bytes: []byte(kv[f.Field])}
				if x, err := strconv.ParseFloat(kv[f.Field], 64); err == nil {
					v = schemas.Value{Kind: schemas.KindDouble, Double: x}
				}
				pass, err := holds(f, v)
				if err != nil {
					t.Fatalf("%s: %v", where, err)
				}
				if pass {
					vals[len(eng.Fields())+i] = 1
				}
			}
			var cats []string
			for _, c := range eng.CatFields() {
				cats = append(cats, kv[c])
			}
			var st *entityState
			if s := states[kv["k"]]; s != nil {
				st = s.clone()
			}
			w := wm()
			if newest == math.MinInt64 {
				w = math.MinInt64
			}
			st, lastErr = eng.Apply(st, Input{Time: at, Offset: off, Vals: vals, Cats: cats, Watermark: w}, collect, nil)
			off++
			if lastErr == nil {
				states[kv["k"]] = st
				newest = max(newest, at)
			}
		case line == "advance":
			build(where)
			pending = pending[:0]
			if w := wm(); newest != math.MinInt64 && w > closedAt {
				keys := make([]string, 0, len(states))
				for k := range states {
					keys = append(keys, k)
				}
				slices.Sort(keys)
				for _, k := range keys {
					st := states[k].clone()
					eng.Advance(st, w, collect)
					states[k] = st
				}
				closedAt = w
			}
		case line == "expect late":
			if !errors.Is(lastErr, ErrLate) {
				t.Fatalf("%s: want ErrLate, got %v", where, lastErr)
			}
		case line == "expect none":
			if len(pending) > 0 {
				t.Fatalf("%s: %d rows left, first %s", where, len(pending), showRow(eng, pending[0]))
			}
		case strings.HasPrefix(line, "expect "):
			if lastErr != nil {
				t.Fatalf("%s: last send failed: %v", where, lastErr)
			}
			if len(pending) == 0 {
				t.Fatalf("%s: no row emitted", where)
			}
			r := pending[0]
			pending = pending[1:]
			want := fields(t, where, strings.TrimPrefix(strings.TrimPrefix(line, "expect "), "row "))
			checkRow(t, where, eng, r, want, parseTime)
		default:
			t.Fatalf("%s: unknown line %q", where, line)
		}
	}
}

func cloneValues(vs []schemas.FeatureValue) []schemas.FeatureValue {
	c := make([]schemas.FeatureValue, len(vs))
	for i, v := range vs {
		c[i] = schemas.FeatureValue{Name: v.Name, Value: v.Value, List: slices.Clone(v.List), Labels: slices.Clone(v.Labels)}
	}
	return c
}

func showRow(eng *Engine, r scriptRow) string {
	name, _, _ := eng.View(r.View)
	s := fmt.Sprintf("view=%s time=%s", name, time.UnixMilli(r.Time).UTC().Format("15:04:05.999"))
	if r.WindowEnd != 0 {
		s += fmt.Sprintf(" start=%s end=%s", time.UnixMilli(r.WindowStart).UTC().Format("15:04:05.999"), time.UnixMilli(r.WindowEnd).UTC().Format("15:04:05.999"))
	}
	s += fmt.Sprintf(" revises=%d", r.Revises)
	for _, v := range r.vals {
		s += " " + v.Name + "=" + showValue(v)
	}
	return s
}

func showValue(v schemas.FeatureValue) string {
	switch {
	case len(v.Labels) > 0:
		return "[" + strings.Join(v.Labels, ",") + "]"
	case len(v.List) > 0:
		var parts []string
		for _, x := range v.List {
			parts = append(parts, strconv.FormatFloat(x, 'g', -1, 64))
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	return strconv.FormatFloat(v.Value, 'g', -1, 64)
}

func checkRow(t *testing.T, where string, eng *Engine, r scriptRow, want map[string]string, parseTime func(string, string) int64) {
	t.Helper()
	name, _, _ := eng.View(r.View)
	for k, w := range want {
		switch k {
		case "view":
			if name != w {
				t.Errorf("%s: row %s, want view %s", where, showRow(eng, r), w)
			}
			continue
		case "time", "start", "end":
			got := map[string]int64{"time": r.Time, "start": r.WindowStart, "end": r.WindowEnd}[k]
			if got != parseTime(where, w) {
				t.Errorf("%s: row %s, want %s=%s", where, showRow(eng, r), k, w)
			}
			continue
		case "revises":
			if strconv.FormatInt(r.Revises, 10) != w {
				t.Errorf("%s: row %s, want revises=%s", where, showRow(eng, r), w)
			}
			continue
		}
		i := slices.IndexFunc(r.vals, func(v schemas.FeatureValue) bool { return v.Name == k })
		if i < 0 {
			t.Fatalf("%s: row %s has no feature %s", where, showRow(eng, r), k)
		}
		got := r.vals[i]
		if strings.HasPrefix(w, "[") {
			if showValue(got) != w && !(w == "[]" && len(got.List) == 0 && len(got.Labels) == 0) {
				t.Errorf("%s: %s = %s, want %s (row %s)", where, k, showValue(got), w, showRow(eng, r))
			}
			continue
		}
		tol := 1e-12
		if strings.HasPrefix(w, "~") {
			w, tol = w[1:], quantileAccuracy
		}
		wv, err := strconv.ParseFloat(w, 64)
		if err != nil {
			t.Fatalf("%s: %s=%q: %v", where, k, w, err)
		}
		if g := got.Value; g != wv && !(math.IsNaN(g) && math.IsNaN(wv)) && math.Abs(g-wv) > tol*math.Abs(wv) {
			t.Errorf("%s: %s = %v, want %v (row %s)", where, k, g, wv, showRow(eng, r))
		}
	}
}

func fields(t *testing.T, where, s string) map[string]string {
	m := map[string]string{}
	for _, kv := range strings.Fields(s) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("%s: %q is not key=value", where, kv)
		}
		m[k] = v
	}
	return m
}

// TestChangelogRoundTrip checks that a state survives encode/decode and that
// corrupt values are refused, never panicking.
func TestChangelogRoundTrip(t *testing.T) {
	eng, states := scriptedStates(t)
	for key, st := range states {
		b := eng.appendState(nil, st)
		got, err := eng.decodeState(b)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if again := eng.appendState(nil, got); !bytes.Equal(again, b) {
			t.Fatalf("%s: round trip changed the encoding", key)
		}
		other := *eng
		other.fingerprint++
		if _, err := other.decodeState(b); !errors.Is(err, errOtherDefinition) {
			t.Fatalf("state of another view definition: %v", err)
		}
		for i := range b {
			if _, err := eng.decodeState(b[:i]); err == nil {
				t.Fatalf("%s: accepted a state truncated to %d bytes", key, i)
			}
		}
	}
}

// scriptedStates builds an engine with sliding and windowed views of every
// aggregation and feeds it events, some out of order.
func scriptedStates(t testing.TB) (*Engine, map[string]*entityState) {
	slide := &config.View{Name: "s", Source: "s", Entity: "e", TTL: config.Duration(24 * time.Hour), Features: []config.Feature{
		{Name: "n", Agg: "count", Window: config.Duration(time.Hour)},
		{Name: "sd", Agg: "stddev", Field: "amount", Window: config.Duration(time.Hour)},
		{Name: "mn", Agg: "min", Field: "amount", Window: config.Duration(5 * time.Minute)},
		{Name: "d", Agg: "distinct", Field: "merchant", Window: config.Duration(time.Hour)},
		{Name: "top", Agg: "top_k", Field: "merchant", Window: config.Duration(time.Hour), K: 2},
		{Name: "q", Agg: "quantile", Field: "amount", Window: config.Duration(time.Hour), Q: 0.9},
		{Name: "ln", Agg: "last_n", Field: "amount", Window: config.Duration(time.Hour), N: 3},
		{Name: "l", Agg: "last", Field: "amount"},
	}}
	var views = []*config.View{slide}
	for _, kind := range []string{config.KindTumbling, config.KindHopping, config.KindSession} {
		v := &config.View{Name: kind, Source: "s", Entity: "e", TTL: config.Duration(24 * time.Hour), Kind: kind, Emit: config.EmitBoth,
			Window: config.Duration(time.Hour), Hop: config.Duration(15 * time.Minute), Gap: config.Duration(10 * time.Minute), Features: []config.Feature{
				{Name: "n", Agg: "count"}, {Name: "mx", Agg: "max", Field: "amount"}, {Name: "d", Agg: "distinct", Field: "merchant"},
				{Name: "top", Agg: "top_k", Field: "merchant", K: 2}, {Name: "q", Agg: "quantile", Field: "amount", Q: 0.5},
				{Name: "ln", Agg: "last_n", Field: "amount", N: 2}, {Name: "r", Agg: "ratio", Of: []string{"mx", "n"}},
			}}
		switch kind {
		case config.KindTumbling:
			v.Hop = 0
			v.Gap = 0
		case config.KindSession:
			v.Window, v.Hop = 0, 0
		default:
			v.Gap = 0
		}
		views = append(views, v)
	}
	eng, err := NewEngine(config.Source{Name: "s", Key: "k", Lateness: config.Duration(10 * time.Minute)}, views, []config.Entity{{Name: "e", Key: "k"}})
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]*entityState{}
	wm := int64(math.MinInt64)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	for i := range 400 {
		key := fmt.Sprintf("k%d", i%3)
		ts := base + int64(i)*20_000
		if i%7 == 3 {
			ts -= 240_000 // out of order, within the lateness
		}
		in := Input{Time: ts, Offset: int64(i), Vals: []float64{float64(i%13) * 1.5}, Cats: []string{fmt.Sprintf("m%d", i%5)}, Watermark: wm}
		st := states[key]
		if st != nil {
			st = st.clone()
		}
		st, err = eng.Apply(st, in, func(*Row) {}, nil)
		if err != nil {
			t.Fatal(err)
		}
		states[key] = st
		wm = max(wm, ts)
		if i%50 == 0 {
			for _, st := range states {
				eng.Advance(st, wm, func(*Row) {})
			}
		}
	}
	return eng, states
}

func FuzzDecodeState(f *testing.F) {
	eng, states := scriptedStates(f)
	for _, st := range states {
		f.Add(eng.appendState(nil, st))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := eng.decodeState(b)
		if err != nil {
			return
		}
		if _, err := eng.decodeState(eng.appendState(nil, st)); err != nil {
			t.Fatalf("re-encoding a decoded state: %v", err)
		}
	})
}

// TestFingerprint checks that what the retained state depends on changes
// the fingerprint and what it does not (names, TTL) leaves it.
func TestFingerprint(t *testing.T) {
	mk := func(window time.Duration, lateness time.Duration, field, name string) uint64 {
		v := &config.View{Name: "v", Source: "s", Entity: "e", TTL: config.Duration(24 * time.Hour),
			Features: []config.Feature{{Name: name, Agg: "sum", Field: field, Window: config.Duration(window)}}}
		e, err := NewEngine(config.Source{Name: "s", Key: "k", Lateness: config.Duration(lateness)}, []*config.View{v}, []config.Entity{{Name: "e", Key: "k"}})
		if err != nil {
			t.Fatal(err)
		}
		return e.fingerprint
	}
	base := mk(time.Hour, time.Minute, "amount", "a")
	if mk(time.Hour, time.Minute, "amount", "renamed") != base {
		t.Error("renaming a feature changed the state fingerprint")
	}
	for name, fp := range map[string]uint64{"window": mk(2*time.Hour, time.Minute, "amount", "a"), "lateness": mk(time.Hour, 2*time.Minute, "amount", "a"), "field": mk(time.Hour, time.Minute, "fee", "a")} {
		if fp == base {
			t.Errorf("changing the %s kept the state fingerprint", name)
		}
	}
}

// BenchmarkApply measures one event through the demo view (six features over
// 5m and 1h windows) for an entity with a realistic retained history.
func BenchmarkApply(b *testing.B) {
	cfg, err := config.Load("../deploy/demo/weir.yaml", func(string) string { return "" })
	if err != nil {
		b.Fatal(err)
	}
	e, err := NewEngine(cfg.Sources[0], cfg.ViewsOf("payments"), cfg.Entities)
	if err != nil {
		b.Fatal(err)
	}
	vals := []float64{42}
	keys := make([]string, 1000)
	states := make([]*entityState, len(keys))
	for i := range keys {
		keys[i] = fmt.Sprintf("card-%06d", i)
	}
	emit := func(*Row) {}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i % len(keys)
		// 1000 cards, one event each per 5 s of event time: ~720 per card
		// per hour, the 1h window holds up to that many.
		ts := int64(i/len(keys)) * 5000
		st, err := e.Apply(states[k], Input{Time: ts, Offset: int64(i), Vals: vals, Watermark: ts - 5000}, emit, nil)
		if err != nil {
			b.Fatal(err)
		}
		st.written()
		states[k] = st
	}
}

// TestChangelogRestore writes states as changelog records in two
// transactions (the second adds events, drops some and expires an entity),
// restores them, and checks that the restored states equal the originals
// and compute the same rows for a further event.
func TestChangelogRestore(t *testing.T) {
	eng, states := scriptedStates(t)
	r := eng.newRestorer()
	flush := func(prev, cur map[string]*entityState) {
		for key, st := range cur {
			for _, rec := range eng.appendChangelog(nil, &arena{}, "c", 0, key, prev[key], st) {
				if err := r.apply(rec.Key, rec.Value); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	flush(nil, states)
	committed := map[string]*entityState{}
	for k, st := range states {
		committed[k] = st.clone()
	}
	// A second transaction: k0 gets events a day later (its history drops),
	// k1 expires, k2 is untouched.
	next := map[string]*entityState{"k1": nil}
	st := committed["k0"].clone()
	day := int64(24 * time.Hour / time.Millisecond)
	for i := range 3 {
		var err error
		st, err = eng.Apply(st, Input{Time: st.maxTime + day/2 + int64(i), Offset: 10_000 + int64(i), Vals: []float64{1}, Cats: []string{"m"}, Watermark: math.MinInt64}, func(*Row) {}, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
	next["k0"] = st
	flush(committed, next)
	want := map[string]*entityState{"k0": st, "k2": committed["k2"]}
	got := r.finish()
	if len(got) != len(want) {
		t.Fatalf("restored %d entities, want %d", len(got), len(want))
	}
	for k, w := range want {
		g := got[k]
		if g == nil {
			t.Fatalf("%s not restored", k)
		}
		if !bytes.Equal(eng.appendState(nil, g), eng.appendState(nil, w)) {
			t.Fatalf("%s: restored state differs", k)
		}
		rows := func(st *entityState) string {
			var b strings.Builder
			_, err := eng.Apply(st.clone(), Input{Time: st.maxTime + 1000, Offset: 20_000, Vals: []float64{7}, Cats: []string{"m1"}, Watermark: math.MinInt64}, func(r *Row) {
				fmt.Fprintf(&b, "%d %d %d", r.View, r.Time, r.WindowStart)
				for _, v := range r.Values { // to 10 digits: a rebuilt sum may differ in rounding
					fmt.Fprintf(&b, " %s=%.10g%.10g%q", v.Name, v.Value, v.List, v.Labels)
				}
				b.WriteString("\n")
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return b.String()
		}
		if g, w := rows(g), rows(w); g != w {
			t.Fatalf("%s: rows after restore\n%s\nwant\n%s", k, g, w)
		}
	}
}

// BenchmarkApplyHotKey measures one event of a single hot entity with a
// full 24h window: an event per second, 86,400 events in the window, five
// aggregations. The cost must not grow with the window's events.
func BenchmarkApplyHotKey(b *testing.B) {
	v := &config.View{Name: "v", Source: "s", Entity: "e", TTL: config.Duration(48 * time.Hour), Features: []config.Feature{
		{Name: "n", Agg: "count", Window: config.Duration(24 * time.Hour)},
		{Name: "s", Agg: "sum", Field: "amount", Window: config.Duration(24 * time.Hour)},
		{Name: "m", Agg: "mean", Field: "amount", Window: config.Duration(24 * time.Hour)},
		{Name: "mn", Agg: "min", Field: "amount", Window: config.Duration(24 * time.Hour)},
		{Name: "mx", Agg: "max", Field: "amount", Window: config.Duration(24 * time.Hour)},
	}}
	e, err := NewEngine(config.Source{Name: "s", Key: "k", Lateness: config.Duration(time.Minute)}, []*config.View{v}, []config.Entity{{Name: "e", Key: "k"}})
	if err != nil {
		b.Fatal(err)
	}
	emit := func(*Row) {}
	var st *entityState
	vals := []float64{0}
	apply := func(i int) {
		vals[0] = float64((i * 7919) % 1000)
		ts := int64(i) * 1000
		st, err = e.Apply(st, Input{Time: ts, Offset: int64(i), Vals: vals, Watermark: ts - 1000}, emit, nil)
		if err != nil {
			b.Fatal(err)
		}
		st.written()
	}
	const warm = 86_400
	for i := range warm {
		apply(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		apply(warm + i)
	}
}

// BenchmarkStateSize reports the memory an entity's state takes in the
// in-memory store (heap bytes per entity) and encoded (the on-disk store's
// value, bytes per entity), for the workload: three sliding windows
// (5m, 1h, 24h) with count, sum, mean, min and max of one field each, with
// 1, 10 or 100 events per entity in the 24h window.
func BenchmarkStateSize(b *testing.B) {
	var feats []config.Feature
	for _, w := range []time.Duration{5 * time.Minute, time.Hour, 24 * time.Hour} {
		for _, agg := range []string{"count", "sum", "mean", "min", "max"} {
			f := config.Feature{Name: fmt.Sprintf("%s_%s", agg, w), Agg: agg, Field: "amount", Window: config.Duration(w)}
			if agg == "count" {
				f.Field = ""
			}
			feats = append(feats, f)
		}
	}
	v := &config.View{Name: "v", Source: "s", Entity: "e", TTL: config.Duration(48 * time.Hour), Features: feats}
	e, err := NewEngine(config.Source{Name: "s", Key: "k", Lateness: config.Duration(time.Minute)}, []*config.View{v}, []config.Entity{{Name: "e", Key: "k"}})
	if err != nil {
		b.Fatal(err)
	}
	for _, perEntity := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("events=%d", perEntity), func(b *testing.B) {
			const entities = 20_000
			emit := func(*Row) {}
			var heap, encoded float64
			for range b.N {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				states := make(map[string]*entityState, entities)
				for i := range entities {
					key := fmt.Sprintf("card-%07d", i)
					var st *entityState
					for j := range perEntity {
						ts := int64(j) * (23 * time.Hour / time.Duration(perEntity)).Milliseconds()
						st, err = e.Apply(st, Input{Time: ts, Offset: int64(i*perEntity + j), Vals: []float64{float64(j)}, Watermark: math.MinInt64}, emit, nil)
						if err != nil {
							b.Fatal(err)
						}
					}
					st.written()
					states[key] = st
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				heap = float64(after.HeapAlloc-before.HeapAlloc) / entities
				var n int
				for _, st := range states {
					n += len(e.appendState(nil, st))
				}
				encoded = float64(n) / entities
				runtime.KeepAlive(states)
			}
			b.ReportMetric(heap, "heap-B/entity")
			b.ReportMetric(encoded, "encoded-B/entity")
		})
	}
}
