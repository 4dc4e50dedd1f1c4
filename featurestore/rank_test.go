package featurestore_test

import (
	"testing"

	"github.com/weirhq/weir/featurestore"
	"github.com/weirhq/weir/featurestore/storetest"
	"github.com/weirhq/weir/schemas"
)

// TestCompareConformance checks that Compare picks the row every
// conformance case expects, among all rows and among those known by each
// cut-off.
func TestCompareConformance(t *testing.T) {
	for _, c := range storetest.Cases(func(string) string { return "e" }) {
		t.Run(c.Name, func(t *testing.T) {
			newest := func(knownAt int64) float64 {
				var best *schemas.FeatureRow
				for _, b := range c.Batches {
					for i := range b {
						r := &b[i]
						if knownAt != 0 && r.KnownTime > knownAt {
							continue
						}
						if best == nil || featurestore.Compare(featurestore.RankOf(r), featurestore.RankOf(best)) > 0 {
							best = r
						}
					}
				}
				return best.Values[0].Value
			}
			if got := newest(0); got != c.Newest {
				t.Errorf("newest x = %v, want %v", got, c.Newest)
			}
			for k, want := range c.KnownAt {
				if got := newest(k); got != want {
					t.Errorf("known at %d: newest x = %v, want %v", k, got, want)
				}
			}
		})
	}
}

func TestRevised(t *testing.T) {
	if featurestore.Revised(7, -1) != 7 || featurestore.Revised(7, 3) != 3 || featurestore.Revised(7, 0) != 0 {
		t.Error("Revised: want the revised offset of a correction, else the row's own")
	}
}
