package agg_test

import (
	"fmt"

	"github.com/weirhq/weir/processors/agg"
)

// A sliding window adds each event as it enters and removes it as it leaves.
func Example_slidingWindow() {
	var merchants agg.Counts
	amounts, _ := agg.NewQuantiles(0.01)
	events := []struct {
		merchant string
		amount   float64
	}{{"m1", 10}, {"m2", 20}, {"m1", 30}, {"m3", 1}}
	for _, e := range events {
		merchants.Add(e.merchant)
		amounts.Add(e.amount)
	}
	// The first three leave the window.
	for _, e := range events[:3] {
		merchants.Remove(e.merchant)
		amounts.Remove(e.amount)
	}
	fmt.Println(merchants.Len(), merchants.TopK(2, nil), amounts.Count())
	// Output: 1 [m3] 1
}

// State goes to the changelog as bytes and comes back exactly.
func ExampleQuantiles_Decode() {
	q, _ := agg.NewQuantiles(0.01)
	for _, x := range []float64{-2, 0, 1.5, 100} {
		q.Add(x)
	}
	b := q.AppendBinary(nil)
	var restored agg.Quantiles
	if _, err := restored.Decode(b); err != nil {
		panic(err)
	}
	fmt.Printf("%d bytes, median %.3g\n", len(b), restored.Quantile(0.5))
	// Output: 19 bytes, median 0
}
