package trainingset

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/weirhq/weir/featurestore/offline"
)

func TestParseFeatures(t *testing.T) {
	got, err := ParseFeatures([]string{"card.b", "merchant:v2.*", "card.a"})
	if err != nil {
		t.Fatal(err)
	}
	want := []offline.ViewRequest{{View: "card", Features: []string{"b", "a"}}, {View: "merchant", Version: "v2"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for _, bad := range [][]string{
		{"card"}, {"card."}, {".a"}, {":v1.a"},
		{"card:v1.a", "card:v2.b"}, // two versions
		{"card:v1.a", "card.b"},    // one named, one default: name one version
		{"card.a", "card.a"},       // twice
		{"card.*", "card.a"},
	} {
		if _, err := ParseFeatures(bad); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
}

func TestParseOffsets(t *testing.T) {
	got, err := ParseOffsets("0=10, payments.tx/1=20,weir.repartition.payments.merchant/0=5")
	if err != nil {
		t.Fatal(err)
	}
	want := offline.OffsetVector{{Partition: 0, Offset: 10}, {Topic: "payments.tx", Partition: 1, Offset: 20}, {Topic: "weir.repartition.payments.merchant", Partition: 0, Offset: 5}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if ov, err := ParseOffsets("none"); err != nil || ov == nil || len(ov) != 0 {
		t.Errorf("none: %v %v", ov, err)
	}
	for _, bad := range []string{"", "0", "a=1", "0=b", "0=1,0=2", "0=-1", "bad topic/0=1"} {
		if _, err := ParseOffsets(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestTimeUnits(t *testing.T) {
	for _, c := range []struct {
		u    TimeUnit
		n    int64
		want int64
	}{{Seconds, 3, 3000}, {Milliseconds, 3, 3}, {Microseconds, 3999, 3}, {Nanoseconds, -1, -1}, {Microseconds, -1001, -2}} {
		if got, err := c.u.toMillis(c.n); err != nil || got != c.want {
			t.Errorf("%d in %d ns units: %d %v, want %d", c.n, c.u, got, err, c.want)
		}
	}
	v := &Vector{Strs: []string{"2026-01-01T00:00:00.5Z", "1767225600500", "x"}}
	for i, want := range []int64{1767225600500, 1767225600500} {
		if got, err := timeOf(v, String, Milliseconds, i); err != nil || got != want {
			t.Errorf("%q: %d %v", v.Strs[i], got, err)
		}
	}
	if _, err := timeOf(v, String, Milliseconds, 2); err == nil {
		t.Error("x: no error")
	}
}

// sample is a chunk of every type, nulls, NaN, and text that needs
// quoting.
func sample() ([]Column, *Chunk) {
	cols := []Column{
		{Name: "z_id", Type: String},
		{Name: "flag", Type: Bool},
		{Name: "n", Type: Int64, Nullable: true},
		{Name: "a__f", Type: Float64, Nullable: true},
	}
	c := &Chunk{Len: 4, Cols: []Vector{
		{Strs: []string{"plain", "with,comma", "with \"quote\"", " lead\nline"}},
		{Ints: []int64{1, 0, 1, 0}},
		{Ints: []int64{-5, 0, math.MaxInt64, 7}, Null: []bool{false, true, false, false}},
		{Floats: []float64{1.5, math.NaN(), 0, 1e-300}, Null: []bool{false, false, true, false}},
	}}
	return cols, c
}

func hashOf(cols []Column, c *Chunk) string {
	h := newContentHash(cols)
	h.add(cols, c)
	return h.sum()
}

func TestRoundTrips(t *testing.T) {
	cols, c := sample()
	want := hashOf(cols, c)
	d := &Description{Format: Format, Columns: cols, Rows: int64(c.Len), ContentHash: want}
	dir := t.TempDir()
	for _, name := range []string{"out.csv", "out.parquet"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			w, err := OpenWriter(t.Context(), nil, path, "", false)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Begin(cols); err != nil {
				t.Fatal(err)
			}
			// Two writes: the output must not depend on how rows came.
			if err := w.Write(c); err != nil {
				t.Fatal(err)
			}
			if err := w.Write(&Chunk{Cols: c.Cols}); err != nil {
				t.Fatal(err)
			}
			if err := w.Finish(d); err != nil {
				t.Fatal(err)
			}
			if _, err := OpenWriter(t.Context(), nil, path, "", false); err == nil {
				t.Error("an existing output is not refused")
			}
			var s Spine
			types := map[string]Type{}
			for _, col := range cols {
				types[col.Name] = col.Type
			}
			var stored *Description
			if strings.HasSuffix(name, ".csv") {
				s, err = OpenCSV(path, types)
				b, rerr := os.ReadFile(SidecarPath(path))
				if rerr != nil {
					t.Fatal(rerr)
				}
				stored = new(Description)
				if err := json.Unmarshal(b, stored); err != nil {
					t.Fatal(err)
				}
			} else {
				s, err = OpenParquet(path)
				if err == nil {
					stored, err = ReadParquetDescription(path)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if !strings.HasSuffix(name, ".csv") && !reflect.DeepEqual(s.Columns(), cols) {
				t.Errorf("columns %+v, want %+v (in order)", s.Columns(), cols)
			}
			if !reflect.DeepEqual(stored, d) {
				t.Errorf("stored description %+v, want %+v", stored, d)
			}
			got, n, err := ContentHash(s, cols)
			if err != nil {
				t.Fatal(err)
			}
			if got != want || n != int64(c.Len) {
				t.Errorf("read back %s of %d rows, wrote %s of %d", got, n, want, c.Len)
			}
			matches, _ := filepath.Glob(filepath.Join(dir, ".*.tmp"))
			if len(matches) > 0 {
				t.Errorf("temporary files left: %v", matches)
			}
		})
	}
}

func TestContentHashSeesEveryCell(t *testing.T) {
	cols, c := sample()
	base := hashOf(cols, c)
	for _, mut := range []func(c *Chunk){
		func(c *Chunk) { c.Cols[0].Strs[0] = "plain " },
		func(c *Chunk) { c.Cols[1].Ints[1] = 1 },
		func(c *Chunk) { c.Cols[2].Null[1] = false },
		func(c *Chunk) { c.Cols[3].Floats[0] = math.Nextafter(1.5, 2) },
		func(c *Chunk) { c.Cols[0].Strs[0], c.Cols[0].Strs[1] = "plainw", "ith,comma" },
	} {
		_, m := sample()
		mut(m)
		if hashOf(cols, m) == base {
			t.Error("a changed cell keeps the hash")
		}
	}
	_, other := sample()
	other.Cols[3].Floats[1] = math.Float64frombits(0x7ff8000000000042) // another NaN payload
	if hashOf(cols, other) != base {
		t.Error("NaN payloads change the hash (CSV cannot keep them)")
	}
	renamed := append([]Column(nil), cols...)
	renamed[0].Name = "y_id"
	if hashOf(renamed, c) == base {
		t.Error("a renamed column keeps the hash")
	}
}

func TestCSVInference(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.csv")
	if err := os.WriteFile(path, []byte("id,ts,x,s\n007,1000,1.5,a\n008,,2,\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := OpenCSV(path, map[string]Type{"id": String})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := []Column{{"id", String, true}, {"ts", Int64, true}, {"x", Float64, true}, {"s", String, true}}
	if !reflect.DeepEqual(s.Columns(), want) {
		t.Errorf("columns %+v, want %+v", s.Columns(), want)
	}
	var c Chunk
	if err := s.Next(&c, 10); err != nil || c.Len != 2 {
		t.Fatalf("%d rows, %v", c.Len, err)
	}
	if c.Cols[0].Strs[0] != "007" || !c.Cols[1].IsNull(1) || c.Cols[2].Floats[1] != 2 {
		t.Errorf("chunk %+v", c)
	}
	if err := s.Next(&c, 10); err != io.EOF {
		t.Errorf("at the end: %v", err)
	}
}

func TestBar(t *testing.T) {
	now := time.Unix(0, 0)
	var b bytes.Buffer
	bar := NewBar(&b, func() time.Time { return now }, false)
	bar.Update(10, 100)
	now = now.Add(time.Second)
	bar.Update(20, 100) // within 5 s of the last line: not drawn
	now = now.Add(5 * time.Second)
	bar.Update(50, 100)
	bar.Done()
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.Contains(lines[1], " 50% 50/100 rows") {
		t.Errorf("bar:\n%s", b.String())
	}
}
