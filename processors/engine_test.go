package processors

import (
	"bufio"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
)

var featRE = regexp.MustCompile(`^(\w+)=(\w+)(?:\((\w+)\))?(?:/(\w+))?(?:\[(\w+)(==|!=|<=|>=|<|>)([^\]]+)\])?$`)

// TestWindowScripts runs testdata/*.txt: a "# view:" line declares features
// as name=agg(field)/window, "send k= ts= field=" applies an event and
// "expect name=value ..." or "expect late" checks the result.
func TestWindowScripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scripts")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { runScript(t, file) })
	}
}

func runScript(t *testing.T, file string) {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		eng      *Engine
		lateness = time.Minute
		states   = map[string]*entityState{}
		out      [][]float64
		lastErr  error
		names    []string
	)
	day := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sc := bufio.NewScanner(f)
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		where := fmt.Sprintf("%s:%d", file, ln)
		switch {
		case strings.HasPrefix(line, "# lateness:"):
			d, err := time.ParseDuration(strings.TrimSpace(strings.TrimPrefix(line, "# lateness:")))
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			lateness = d
			eng = nil
		case strings.HasPrefix(line, "# view:"):
			var v config.View
			v.Name, v.Source, v.Entity, v.TTL = "v", "s", "e", config.Duration(24*time.Hour)
			for _, spec := range strings.Fields(strings.TrimPrefix(line, "# view:")) {
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
				v.Features = append(v.Features, ft)
				names = append(names, ft.Name)
			}
			views := []*config.View{&v}
			eng, err = NewEngine(config.Source{Name: "s", Key: "k", Lateness: config.Duration(lateness)}, views, []config.Entity{{Name: "e", Key: "k"}})
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			out = eng.NewOutput()
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "send "):
			if eng == nil {
				t.Fatalf("%s: send before '# view:'", where)
			}
			kv := fields(t, where, strings.TrimPrefix(line, "send "))
			ts, err := time.Parse("15:04:05.999", kv["ts"])
			if err != nil {
				t.Fatalf("%s: ts: %v", where, err)
			}
			at := day.Add(time.Duration(ts.Hour())*time.Hour + time.Duration(ts.Minute())*time.Minute + time.Duration(ts.Second())*time.Second + time.Duration(ts.Nanosecond()))
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
			var st *entityState
			if s := states[kv["k"]]; s != nil {
				st = s.clone()
			}
			st, lastErr = eng.Apply(st, at.UnixMilli(), vals, out)
			if lastErr == nil {
				states[kv["k"]] = st
			}
		case line == "expect late":
			if !errors.Is(lastErr, ErrLate) {
				t.Fatalf("%s: want ErrLate, got %v", where, lastErr)
			}
		case strings.HasPrefix(line, "expect "):
			if lastErr != nil {
				t.Fatalf("%s: last send failed: %v", where, lastErr)
			}
			want := fields(t, where, strings.TrimPrefix(line, "expect "))
			for i, n := range names {
				w, ok := want[n]
				if !ok {
					t.Fatalf("%s: expect lacks %s", where, n)
				}
				wv, _ := strconv.ParseFloat(w, 64)
				if got := out[0][i]; got != wv && !(math.IsNaN(got) && math.IsNaN(wv)) && math.Abs(got-wv) > 1e-12*math.Abs(wv) {
					t.Errorf("%s: %s = %v, want %v", where, n, got, wv)
				}
			}
		default:
			t.Fatalf("%s: unknown line %q", where, line)
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
	st := &entityState{maxTime: 1_700_000_000_000, events: []pastEvent{{time: 1_699_999_990_000, vals: []float64{1.5, -2}}, {time: 1_700_000_000_000, vals: []float64{3, 4}}}}
	b := appendState(nil, st, 2, 7)
	got, err := decodeState(b, 2, 7)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(st) {
		t.Fatalf("round trip: %v, want %v", got, st)
	}
	if _, err := decodeState(b, 3, 7); err == nil {
		t.Fatal("accepted a state with another field count")
	}
	if _, err := decodeState(b, 2, 8); !errors.Is(err, errOtherDefinition) {
		t.Fatalf("state of another view definition: %v", err)
	}
	for i := range b {
		if _, err := decodeState(b[:i], 2, 7); err == nil {
			t.Fatalf("accepted a state truncated to %d bytes", i)
		}
	}
}

func FuzzDecodeState(f *testing.F) {
	f.Add(appendState(nil, &entityState{maxTime: 5, events: []pastEvent{{time: 4, vals: []float64{1}}}}, 1, 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeState(b, 1, 3)
		if err != nil {
			return
		}
		if again, err := decodeState(appendState(nil, st, 1, 3), 1, 3); err != nil || len(again.events) != len(st.events) {
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
	out := e.NewOutput()
	vals := []float64{42}
	keys := make([]string, 1000)
	states := make([]*entityState, len(keys))
	for i := range keys {
		keys[i] = fmt.Sprintf("card-%06d", i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		k := i % len(keys)
		// 1000 cards, one event each per 5 s of event time: ~720 per card
		// per hour, the 1h window holds up to that many.
		ts := int64(i/len(keys)) * 5000
		st, err := e.Apply(states[k], ts, vals, out)
		if err != nil {
			b.Fatal(err)
		}
		states[k] = st
	}
}
