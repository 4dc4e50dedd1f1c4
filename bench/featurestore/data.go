package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/weirhq/weir/featurestore/client"
)

// viewName is the one feature view both sides serve.
const viewName = "card_features"

// dataset is what both stores are loaded with.
type dataset struct {
	features []string
	keys     []string
	et       []int64     // event time, Unix ms, by entity
	vals     [][]float64 // by entity, then feature
	index    map[string]int
}

// generate makes n entities with nf features each: values of assorted
// magnitudes and signs (every bit must survive both stores), event times in
// the 30 minutes before now.
func generate(n, nf int, seed uint64, now time.Time) *dataset {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	d := &dataset{index: make(map[string]int, n)}
	for j := range nf {
		d.features = append(d.features, fmt.Sprintf("f%d", j))
	}
	for i := range n {
		k := fmt.Sprintf("card-%07d", i)
		d.index[k] = i
		d.keys = append(d.keys, k)
		d.et = append(d.et, now.Add(-time.Duration(r.Int64N(int64(30*time.Minute)))).UnixMilli())
		row := make([]float64, nf)
		for j := range row {
			row[j] = r.NormFloat64() * math.Pow(10, float64(r.IntN(7)-3))
		}
		d.vals = append(d.vals, row)
	}
	return d
}

// writeCSV writes the data for Feast's loader: card_id, event_time_ms, then
// the features, floats in the shortest form that parses back exactly.
func (d *dataset) writeCSV(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintf(w, "card_id,event_time_ms,%s\n", strings.Join(d.features, ","))
	var b []byte
	for i, k := range d.keys {
		b = append(b[:0], k...)
		b = append(b, ',')
		b = strconv.AppendInt(b, d.et[i], 10)
		for _, x := range d.vals[i] {
			b = append(b, ',')
			b = strconv.AppendFloat(b, x, 'g', -1, 64)
		}
		b = append(b, '\n')
		w.Write(b)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// requestSet is a fixed list of requests of one batch size, the same
// entities for both sides, cycled through by the load.
type requestSet struct {
	batch     int
	entities  [][]string
	weirBody  [][]byte
	feastBody [][]byte
}

func newRequestSet(d *dataset, batch, n int, seed uint64) *requestSet {
	r := rand.New(rand.NewPCG(seed, 0x7e57))
	rs := &requestSet{batch: batch}
	feastFeatures := make([]string, len(d.features))
	for j, f := range d.features {
		feastFeatures[j] = viewName + ":" + f
	}
	for range n {
		ents := make([]string, batch)
		for i := range ents {
			ents[i] = d.keys[r.IntN(len(d.keys))]
		}
		rs.entities = append(rs.entities, ents)
		w, _ := json.Marshal(map[string]any{"entities": ents, "features": []string{viewName}})
		f, _ := json.Marshal(map[string]any{"features": feastFeatures, "entities": map[string][]string{"card_id": ents}})
		rs.weirBody = append(rs.weirBody, w)
		rs.feastBody = append(rs.feastBody, f)
	}
	return rs
}

// check asks both sides the first n requests of rs and compares every value
// with the data; it returns how many values it compared per side.
func check(ctx context.Context, weir *weirServer, feast *feastServer, d *dataset, rs *requestSet, n int) (int, error) {
	c := weir.client(nil)
	defer c.CloseIdleConnections()
	compared := 0
	for i := range min(n, len(rs.entities)) {
		ents := rs.entities[i]
		res, err := c.Get(ctx, ents, viewName)
		if err != nil {
			return 0, fmt.Errorf("weir: %w", err)
		}
		if len(res.Features) != len(d.features) {
			return 0, fmt.Errorf("weir: features %q", res.Features)
		}
		for e, r := range res.Results {
			k := d.index[ents[e]]
			if r.Entity != ents[e] {
				return 0, fmt.Errorf("weir: result %d is %s, asked %s", e, r.Entity, ents[e])
			}
			for j, v := range r.Values {
				want := d.vals[k][d.featureIndex(res.Features[j])]
				if v.Status != client.Present || v.Value != want || v.EventTime != d.et[k] {
					return 0, fmt.Errorf("weir: %s %s = %v %s at %d, want %v present at %d", ents[e], res.Features[j], v.Value, v.Status, v.EventTime, want, d.et[k])
				}
				compared++
			}
		}
		if feast == nil {
			continue
		}
		fr, err := feast.get(ctx, rs.feastBody[i])
		if err != nil {
			return 0, fmt.Errorf("feast: %w", err)
		}
		for e := range ents {
			k := d.index[ents[e]]
			for j, f := range d.features {
				got, status, ok := fr.value(f, e)
				if !ok || status != "PRESENT" || got != d.vals[k][j] {
					return 0, fmt.Errorf("feast: %s %s = %v %s (found %v), want %v PRESENT", ents[e], f, got, status, ok, d.vals[k][j])
				}
			}
		}
	}
	return compared, nil
}

// featureIndex maps "view:version.fN" to N's column.
func (d *dataset) featureIndex(ref string) int {
	_, name, _ := strings.Cut(ref, ".")
	for j, f := range d.features {
		if f == name {
			return j
		}
	}
	return -1
}

// feastAnswer is the feature server's /get-online-features answer: one
// result per feature (the join key first), values across entities.
type feastAnswer struct {
	Metadata struct {
		FeatureNames []string `json:"feature_names"`
	} `json:"metadata"`
	Results []struct {
		Values   []any    `json:"values"`
		Statuses []string `json:"statuses"`
	} `json:"results"`
}

// value returns feature f of the e-th entity.
func (a *feastAnswer) value(f string, e int) (float64, string, bool) {
	for i, name := range a.Metadata.FeatureNames {
		if name != f && name != viewName+"__"+f && name != viewName+":"+f {
			continue
		}
		if i >= len(a.Results) || e >= len(a.Results[i].Values) || e >= len(a.Results[i].Statuses) {
			return 0, "", false
		}
		x, ok := a.Results[i].Values[e].(float64)
		return x, a.Results[i].Statuses[e], ok
	}
	return 0, "", false
}
