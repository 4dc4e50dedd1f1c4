package agg

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestTopKExact(t *testing.T) {
	r := rand.New(rand.NewPCG(10, 10))
	for _, capacity := range []int{1, 5, 50} {
		tk := NewTopK(capacity)
		m := map[string]uint64{}
		for range 2000 {
			cat := fmt.Sprintf("c%d", int(float64(capacity)*r.Float64()*r.Float64()))
			tk.Add(cat)
			m[cat]++
		}
		for _, k := range []int{1, 3, capacity, capacity + 5} {
			if got, want := tk.Top(k, nil), bruteTop(m, k); !slices.Equal(got, want) {
				t.Errorf("capacity %d: Top(%d) = %q, want %q", capacity, k, got, want)
			}
		}
		for cat, n := range m {
			if got, err := tk.Count(cat); got != n || err != 0 {
				t.Errorf("capacity %d: Count(%q) = %d±%d, want %d exactly", capacity, cat, got, err, n)
			}
		}
	}
}

// checkSpaceSaving checks Space-Saving's guarantees for a stream of n
// values with true counts m: every category with count > n/capacity is
// tracked, and every tracked estimate est with error err has
// est-err ≤ f ≤ est and est-f ≤ n/capacity.
// It returns the number of categories above n/capacity.
func checkSpaceSaving(t *testing.T, tk *TopK, m map[string]uint64, when string) (heavy int) {
	t.Helper()
	n := tk.Total()
	bound := n / uint64(tk.Capacity())
	tracked := map[string]bool{}
	for _, cat := range tk.Top(tk.Capacity(), nil) {
		tracked[cat] = true
		est, err := tk.Count(cat)
		f := m[cat]
		if est-err > f || f > est || est-f > bound || err > bound {
			t.Fatalf("%s: %q: estimate %d±%d, true %d, N/m = %d", when, cat, est, err, f, bound)
		}
	}
	for cat, f := range m {
		if f > bound {
			heavy++
			if !tracked[cat] {
				t.Fatalf("%s: %q with count %d > N/m = %d not reported", when, cat, f, bound)
			}
		}
	}
	return heavy
}

func zipfStream(seed uint64, n int, s float64, alphabet uint64) []string {
	r := rand.New(rand.NewPCG(seed, seed))
	z := rand.NewZipf(r, s, 1, alphabet-1)
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("item-%d", z.Uint64())
	}
	return out
}

func TestTopKSpaceSaving(t *testing.T) {
	for _, tc := range []struct {
		s        float64
		capacity int
	}{
		{1.1, 20}, {1.5, 10}, {2, 50}, {1.05, 200},
	} {
		t.Run(fmt.Sprintf("s=%v/m=%d", tc.s, tc.capacity), func(t *testing.T) {
			stream := zipfStream(uint64(tc.capacity), 100_000, tc.s, 50_000)
			tk := NewTopK(tc.capacity)
			m := map[string]uint64{}
			for _, cat := range stream {
				tk.Add(cat)
				m[cat]++
			}
			if checkSpaceSaving(t, tk, m, "stream") == 0 {
				t.Fatal("no category above N/m: a vacuous test")
			}

			// The same stream in four parts, each its own Zipf shuffle,
			// merged as a tree: the guarantees hold for the whole.
			parts := make([]*TopK, 4)
			for i := range parts {
				parts[i] = NewTopK(tc.capacity)
			}
			for i, cat := range stream {
				parts[(i/1000+i)%4].Add(cat)
			}
			parts[0].Merge(parts[1])
			parts[2].Merge(parts[3])
			parts[0].Merge(parts[2])
			if parts[0].Total() != uint64(len(stream)) {
				t.Fatalf("merged Total() = %d", parts[0].Total())
			}
			checkSpaceSaving(t, parts[0], m, "merged")
		})
	}
}

func TestTopKMergeDisjoint(t *testing.T) {
	// Each side full of its own categories: a = {a:5 b:3 d:2±1} (d took
	// over c's counter), b = {z:6 x:4 w:3±2} (w took over y's). The merged
	// counters add the other side's smallest count to what it does not
	// track: a:5+3 b:3+3 d:2+3 z:6+2 x:4+2 w:3+2; b wins the tie with x.
	a, b := NewTopK(3), NewTopK(3)
	m := map[string]uint64{}
	for _, s := range []struct {
		tk   *TopK
		cats string
	}{{a, "aaaaabbbcd"}, {b, "xxxxyyzzzzzzw"}} {
		for _, c := range s.cats {
			s.tk.Add(string(c))
			m[string(c)]++
		}
	}
	a.Merge(b)
	if got, want := a.Top(3, nil), []string{"a", "z", "b"}; !slices.Equal(got, want) {
		t.Errorf("Top(3) = %q, want %q", got, want)
	}
	if n, err := a.Count("b"); n != 6 || err != 3 {
		t.Errorf("Count(b) = %d±%d, want 6±3", n, err)
	}
	checkSpaceSaving(t, a, m, "disjoint")
	var empty TopK
	a.Merge(&empty)
	if a.Total() != uint64(len("aaaaabbbcdxxxxyyzzzzzzw")) {
		t.Errorf("Total() = %d", a.Total())
	}
}

func TestTopKRoundTrip(t *testing.T) {
	for _, n := range []int{0, 3, 10_000} {
		tk := NewTopK(64)
		for _, cat := range zipfStream(11, n, 1.2, 1000) {
			tk.Add(cat)
		}
		b := tk.AppendBinary(nil)
		var got TopK
		rest, err := got.Decode(append(b, 'x'))
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if string(rest) != "x" {
			t.Fatalf("n=%d: rest %q", n, rest)
		}
		if !slices.Equal(got.Top(20, nil), tk.Top(20, nil)) || !bytes.Equal(got.AppendBinary(nil), b) {
			t.Fatalf("n=%d: decoded differs", n)
		}
		c := tk.Clone()
		for _, cat := range zipfStream(12, 1000, 1.2, 2000) {
			c.Add(cat)
			got.Add(cat)
		}
		if !bytes.Equal(got.AppendBinary(nil), c.AppendBinary(nil)) {
			t.Fatalf("n=%d: decoded and clone diverge", n)
		}
		t.Logf("n=%d: %d bytes", n, len(b))
	}
}

func BenchmarkTopKAdd(b *testing.B) {
	cats := benchCats(100_000)
	tk := NewTopK(100)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tk.Add(cats[i&4095])
	}
}

func BenchmarkTopKTop(b *testing.B) {
	cats := benchCats(100_000)
	tk := NewTopK(100)
	for _, cat := range cats {
		tk.Add(cat)
	}
	dst := make([]string, 0, 5)
	b.ReportAllocs()
	for b.Loop() {
		dst = tk.Top(5, dst[:0])
	}
}
