package agg

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// bruteTop is TopK by sorting the whole map.
func bruteTop(m map[string]uint64, k int) []string {
	type cn struct {
		cat string
		n   uint64
	}
	all := make([]cn, 0, len(m))
	for c, n := range m {
		all = append(all, cn{c, n})
	}
	slices.SortFunc(all, func(a, b cn) int {
		if a.n != b.n {
			if a.n > b.n {
				return -1
			}
			return 1
		}
		return strings.Compare(a.cat, b.cat)
	})
	cats := []string{}
	for _, e := range all[:min(k, len(all))] {
		cats = append(cats, e.cat)
	}
	return cats
}

func checkCounts(t *testing.T, c *Counts, m map[string]uint64, ks []int, when string) {
	t.Helper()
	if c.Len() != len(m) {
		t.Fatalf("%s: Len() = %d, want %d", when, c.Len(), len(m))
	}
	for cat, n := range m {
		if got := c.Count(cat); got != n {
			t.Fatalf("%s: Count(%q) = %d, want %d", when, cat, got, n)
		}
	}
	for _, k := range ks {
		got, want := c.TopK(k, nil), bruteTop(m, k)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: TopK(%d) = %q, want %q", when, k, got, want)
		}
	}
}

func TestCountsRandom(t *testing.T) {
	for _, tc := range []struct {
		name     string
		alphabet int     // distinct categories
		pAdd     float64 // probability that a step adds
		steps    int
		ks       []int
	}{
		{"few-ties", 4, 0.55, 20_000, []int{1, 2, 3, 5}},
		{"small", 20, 0.55, 20_000, []int{3}},
		{"small-many-k", 20, 0.5, 20_000, []int{1, 3, 10, 25}},
		{"draining", 50, 0.4, 20_000, []int{5}},
		{"wide", 2000, 0.6, 4000, []int{3, 10}},
		{"wide-growing", 2000, 0.8, 4000, []int{1, 50}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(tc.alphabet), 7))
			var c Counts // the zero value is ready
			m := map[string]uint64{}
			added := []string{} // a multiset to remove from, so removals hit
			for step := range tc.steps {
				if r.Float64() < tc.pAdd || len(added) == 0 {
					// Skewed choice: low categories are frequent.
					cat := fmt.Sprintf("c%03d", int(float64(tc.alphabet)*r.Float64()*r.Float64()))
					c.Add(cat)
					m[cat]++
					added = append(added, cat)
				} else if r.IntN(10) == 0 {
					c.Remove("absent") // a no-op
				} else {
					j := r.IntN(len(added))
					cat := added[j]
					added[j] = added[len(added)-1]
					added = added[:len(added)-1]
					c.Remove(cat)
					if m[cat]--; m[cat] == 0 {
						delete(m, cat)
					}
				}
				// TopK after every step, for the cache; the whole check now and then.
				k := tc.ks[step%len(tc.ks)]
				if got, want := c.TopK(k, nil), bruteTop(m, k); !slices.Equal(got, want) {
					t.Fatalf("step %d: TopK(%d) = %q, want %q", step, k, got, want)
				}
				if step%500 == 0 {
					checkCounts(t, &c, m, tc.ks, fmt.Sprintf("step %d", step))
				}
			}
			checkCounts(t, &c, m, tc.ks, "end")
		})
	}
}

func TestCountsTies(t *testing.T) {
	var c Counts
	for _, cat := range []string{"b", "a", "c", "b", "a", "d", "\xff", ""} {
		c.Add(cat)
	}
	if got, want := c.TopK(10, nil), []string{"a", "b", "", "c", "d", "\xff"}; !slices.Equal(got, want) {
		t.Fatalf("TopK = %q, want %q", got, want)
	}
	c.Remove("a")
	c.Remove("nope")
	if got, want := c.TopK(2, []string{"x"}), []string{"x", "b", ""}; !slices.Equal(got, want) {
		t.Fatalf("TopK appended = %q, want %q", got, want)
	}
	c.Remove("b")
	c.Remove("b")
	if got, want := c.TopK(3, nil), []string{"", "a", "c"}; !slices.Equal(got, want) {
		t.Fatalf("TopK = %q, want %q", got, want)
	}
	if c.Len() != 5 || c.Count("b") != 0 {
		t.Fatalf("Len() = %d, Count(b) = %d", c.Len(), c.Count("b"))
	}
	if got := c.TopK(0, nil); len(got) != 0 {
		t.Fatalf("TopK(0) = %q", got)
	}
}

// TestCountsCompaction empties most slots so that Remove compacts them.
func TestCountsCompaction(t *testing.T) {
	var c Counts
	m := map[string]uint64{}
	for i := range 10_000 {
		cat := fmt.Sprint(i)
		c.Add(cat)
		c.Add(cat)
		m[cat] = 2
	}
	c.TopK(5, nil)
	for i := range 9_990 {
		cat := fmt.Sprint(i)
		c.Remove(cat)
		c.Remove(cat)
		delete(m, cat)
	}
	if len(c.ents) > 200 {
		t.Fatalf("%d slots for %d categories", len(c.ents), c.Len())
	}
	checkCounts(t, &c, m, []int{1, 5, 20}, "compacted")
}

func randomCounts(r *rand.Rand, n int) (*Counts, map[string]uint64) {
	c := &Counts{}
	m := map[string]uint64{}
	for range n {
		cat := fmt.Sprintf("cat-%d", r.IntN(n/3+1))
		c.Add(cat)
		m[cat]++
	}
	return c, m
}

func TestCountsMergeClone(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	a, ma := randomCounts(r, 500)
	b, mb := randomCounts(r, 300)
	a.TopK(3, nil) // a cache that Merge must drop
	clone := a.Clone()
	a.Merge(b)
	for cat, n := range mb {
		ma[cat] += n
	}
	checkCounts(t, a, ma, []int{1, 7}, "merged")
	clone.Add("only-in-clone")
	if a.Count("only-in-clone") != 0 {
		t.Fatal("clone shares state")
	}
}

func TestCountsRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	for _, n := range []int{0, 1, 50, 3000} {
		c, m := randomCounts(r, n)
		for i := range n / 2 { // free some slots
			c.Remove(fmt.Sprintf("cat-%d", i))
			if m[fmt.Sprintf("cat-%d", i)] > 0 {
				if m[fmt.Sprintf("cat-%d", i)]--; m[fmt.Sprintf("cat-%d", i)] == 0 {
					delete(m, fmt.Sprintf("cat-%d", i))
				}
			}
		}
		b := c.AppendBinary(nil)
		var got Counts
		rest, err := got.Decode(append(b, 0xAA))
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		if !bytes.Equal(rest, []byte{0xAA}) {
			t.Fatalf("n=%d: rest %x", n, rest)
		}
		checkCounts(t, &got, m, []int{3}, fmt.Sprintf("n=%d decoded", n))
		if !bytes.Equal(got.AppendBinary(nil), b) {
			t.Fatalf("n=%d: re-encoding differs", n)
		}
	}
}

func BenchmarkCountsAdd(b *testing.B) {
	cats := benchCats(1000)
	var c Counts
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Add(cats[i&4095])
	}
}

// BenchmarkCountsRemove is a sliding window of 1000 events: one Add and one
// Remove per op.
func BenchmarkCountsRemove(b *testing.B) {
	cats := benchCats(1000)
	var c Counts
	for i := range 1000 {
		c.Add(cats[i])
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Remove(cats[i&4095])
		c.Add(cats[(i+1000)&4095])
	}
}

// BenchmarkCountsTopK is a sliding window of 1000 events over about 400
// categories emitting its top 3 at every event: Add, Remove and TopK(3).
func BenchmarkCountsTopK(b *testing.B) {
	cats := benchCats(1000)
	var c Counts
	for i := range 1000 {
		c.Add(cats[i])
	}
	dst := make([]string, 0, 3)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		c.Remove(cats[i&4095])
		c.Add(cats[(i+1000)&4095])
		dst = c.TopK(3, dst[:0])
	}
	b.ReportMetric(float64(c.Len()), "categories")
}

// benchCats returns 4096 categories drawn from a Zipf law over n.
func benchCats(n int) []string {
	r := rand.New(rand.NewPCG(6, 6))
	z := rand.NewZipf(r, 1.1, 1, uint64(n-1))
	cats := make([]string, 4096)
	for i := range cats {
		cats[i] = fmt.Sprintf("merchant-%d", z.Uint64())
	}
	return cats
}
