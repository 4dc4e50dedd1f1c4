package main

// The inline scorer's throughput and added latency with Redis lookups
// (issue 6): the processor's scorer hook work per event, in one goroutine
// as a partition task runs it, with and without the other entity's
// features read from real Redis.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/weirhq/weir/featurestore/online"
	"github.com/weirhq/weir/internal/config"
	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/scoring"
	"github.com/weirhq/weir/scoring/lookup"
	"github.com/weirhq/weir/scoring/model"
	"github.com/weirhq/weir/scoring/registry"
)

// ownFeatures of the model's 30 are the card's (the event's own entity,
// from the task's rows); the rest are the merchant's, from Redis.
const ownFeatures = 20

// redisAddr is -redis, else $WEIR_REDIS_ADDR, else the one `make setup`
// wrote to $WEIR_DATA/env (make exports WEIR_DATA); "" when none.
func redisAddr(flagged string) string {
	if flagged != "" {
		return flagged
	}
	if a := os.Getenv("WEIR_REDIS_ADDR"); a != "" {
		return a
	}
	f, err := os.Open(filepath.Join(os.Getenv("WEIR_DATA"), "env"))
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "export WEIR_REDIS_ADDR="); ok {
			return strings.Trim(a, `"'`)
		}
	}
	return ""
}

// servingOne serves one loaded version as every alias.
type servingOne struct{ l *registry.Loaded }

func (s servingOne) Serving(string, string) (*registry.Loaded, bool) { return s.l, true }

// side is one way of scoring the events.
type side struct {
	name   string
	lk     *lookup.Lookup
	sc     *scoring.Scorer
	events []lookup.Event
}

// eventKeys is one event's entity keys.
type eventKeys struct{ card, merchant []byte }

func (k *eventKeys) EntityKey(e string) []byte {
	switch e {
	case "card":
		return k.card
	case "merchant":
		return k.merchant
	}
	return nil
}

// score does the scorer hook's work for event i: gather the features,
// score, encode the prediction record.
func (s *side) score(ctx context.Context, i int, buf []byte) ([]byte, schemas.Prediction, error) {
	ev := s.events[i]
	v, err := s.lk.Fetch(ctx, ev)
	if err != nil {
		return buf, schemas.Prediction{}, err
	}
	p, err := s.sc.Score(scoring.Event{Entity: string(ev.Keys.EntityKey("card")), ID: "e", Time: ev.Time, Offset: int64(i), Features: v})
	v.Release()
	if err != nil {
		return buf, p, err
	}
	return schemas.AppendPrediction(buf[:0], &p), p, nil
}

func scorerBench(ctx context.Context, addr, dir string, m meta, rows []float64, want []float32, runs int, minTime time.Duration) error {
	if addr == "" {
		fmt.Println("\n(no Redis: -redis, WEIR_REDIS_ADDR or `make setup`; the scorer-with-lookups benchmark is skipped)")
		return nil
	}
	fmt.Printf("\n==> the inline scorer with Redis lookups (Redis %s)\n", addr)
	nf := m.Features
	if nf != 30 {
		return fmt.Errorf("scorer benchmark: the model has %d features, want 30", nf)
	}
	b, err := os.ReadFile(filepath.Join(dir, "model.json"))
	if err != nil {
		return err
	}
	ens, err := model.ParseXGBoostJSON(b)
	if err != nil {
		return err
	}
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis %s: %w", addr, err)
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	prefix := "weirbench:" + hex.EncodeToString(rnd[:])

	feats := func(from, to int) []config.Feature {
		var out []config.Feature
		for i := from; i < to; i++ {
			out = append(out, config.Feature{Name: fmt.Sprintf("f%d", i), Agg: "last", Field: "amount"})
		}
		return out
	}
	day := config.Duration(24 * time.Hour)
	cfg := lookup.Config{
		Source:   config.Source{Name: "payments", Key: "card_id"},
		Entities: []config.Entity{{Name: "card", Key: "card_id"}, {Name: "merchant", Key: "merchant_id"}},
		Views: []config.View{
			{Name: "card_bench", Source: "payments", Entity: "card", TTL: day, Kind: config.KindSliding, Features: feats(0, ownFeatures)},
			{Name: "merchant_bench", Source: "payments", Entity: "merchant", TTL: day, Kind: config.KindSliding, Features: feats(ownFeatures, nf)},
			{Name: "card_all", Source: "payments", Entity: "card", TTL: day, Kind: config.KindSliding, Features: feats(0, nf)},
		},
	}
	store := online.New(rdb, prefix, cfg.Views)
	defer func() {
		if _, err := store.DeleteAll(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "bench-scoring: clean up Redis:", err)
		}
	}()

	// One event per row: card c<r> at merchant m<r>. The merchant's 10
	// features are in Redis, written a minute before the event through the
	// online store's own write path; the card's are the event's row.
	t0 := time.Now().UnixMilli()
	mv := cfg.Views[1]
	var writes []schemas.FeatureRow
	for r := range m.Rows {
		row := schemas.FeatureRow{Entity: "m" + strconv.Itoa(r), View: mv.Name, ViewVersion: mv.Version(), EventTime: t0 - 60_000, KnownTime: t0, SourceOffset: int64(r), RevisesOffset: -1}
		for j := ownFeatures; j < nf; j++ {
			row.Values = append(row.Values, schemas.FeatureValue{Name: fmt.Sprintf("f%d", j), Value: rows[r*nf+j]})
		}
		writes = append(writes, row)
	}
	for chunk := range slices.Chunk(writes, 1000) {
		if err := store.Write(ctx, chunk); err != nil {
			return err
		}
	}
	mkSide := func(name, ownView string, names []string) (*side, error) {
		c := cfg
		c.Model = config.Model{Name: "bench", Source: "payments", Features: names, Threshold: 0.5}
		lk, err := lookup.New(c, store, lookup.Options{})
		if err != nil {
			return nil, err
		}
		loaded := &registry.Loaded{Record: schemas.ModelRecord{Name: "bench", Version: 1, Format: "xgboost-json", Features: names}, Model: ens}
		sc, err := scoring.NewScorer(c.Model, servingOne{loaded}, scoring.Options{})
		if err != nil {
			return nil, err
		}
		s := &side{name: name, lk: lk, sc: sc}
		own := 0
		for _, n := range names {
			if strings.HasPrefix(n, ownView+".") {
				own++
			}
		}
		for r := range m.Rows {
			row := &schemas.FeatureRow{Entity: "c" + strconv.Itoa(r), View: ownView, EventTime: t0}
			for j := range own {
				row.Values = append(row.Values, schemas.FeatureValue{Name: fmt.Sprintf("f%d", j), Value: rows[r*nf+j]})
			}
			s.events = append(s.events, lookup.Event{Time: t0, Rows: []*schemas.FeatureRow{row},
				Keys: &eventKeys{card: []byte(row.Entity), merchant: []byte("m" + strconv.Itoa(r))}})
		}
		return s, nil
	}
	var mixed, local []string
	for j := range nf {
		if j < ownFeatures {
			mixed = append(mixed, fmt.Sprintf("card_bench.f%d", j))
		} else {
			mixed = append(mixed, fmt.Sprintf("merchant_bench.f%d", j))
		}
		local = append(local, fmt.Sprintf("card_all.f%d", j))
	}
	withRedis, err := mkSide(fmt.Sprintf("%d own + %d from Redis", ownFeatures, nf-ownFeatures), "card_bench", mixed)
	if err != nil {
		return err
	}
	ownOnly, err := mkSide(fmt.Sprintf("%d own, no Redis", nf), "card_all", local)
	if err != nil {
		return err
	}
	sides := []*side{ownOnly, withRedis}

	// Correctness first: every event's score equals XGBoost's prediction
	// of its row on both sides, and the Redis side logs the merchant's
	// values (NaN ones as missing) at the age written.
	for _, s := range sides {
		var buf []byte
		for r := range m.Rows {
			var p schemas.Prediction
			if buf, p, err = s.score(ctx, r, buf); err != nil {
				return err
			}
			if d := math.Abs(p.Score - float64(want[r])); d > 1e-6 {
				return fmt.Errorf("%s: event %d scored %v, XGBoost %v: no timing", s.name, r, p.Score, want[r])
			}
			for j, f := range p.Features {
				x := rows[r*nf+j]
				if math.IsNaN(x) != (f.AgeMs == -1) || !math.IsNaN(x) && f.Value != x {
					return fmt.Errorf("%s: event %d feature %s logged %+v, row has %v", s.name, r, f.Name, f, x)
				}
				if wantAge := int64(60_000); j >= ownFeatures && s == withRedis && !math.IsNaN(x) && f.AgeMs != wantAge {
					return fmt.Errorf("%s: event %d feature %s age %d, want %d", s.name, r, f.Name, f.AgeMs, wantAge)
				}
			}
		}
		fmt.Printf("check %-26s: %d events scored as XGBoost predicts (1e-6), feature vectors as written\n", s.name, m.Rows)
	}

	type result struct{ perCPU, perCPUAll, wall, p50, p99, p999, others float64 }
	res := map[string][]result{}
	for r := range runs {
		fmt.Printf("==> run %d of %d\n", r+1, runs)
		for _, s := range sides {
			x, err := measureSide(ctx, rdb, s, m.Rows, minTime)
			if err != nil {
				return err
			}
			res[s.name] = append(res[s.name], x)
			fmt.Printf("  %-26s %8.0f events per CPU-second (%8.0f with Redis's CPU), %8.0f events/s wall; added latency p50 %5.1f µs, p99 %6.1f µs, p99.9 %6.1f µs (other processes %.0f%% of the machine)\n",
				s.name, x.perCPU, x.perCPUAll, x.wall, x.p50, x.p99, x.p999, 100*x.others)
		}
	}
	med := func(name string, f func(result) float64) (float64, float64, float64) {
		var v []float64
		for _, x := range res[name] {
			v = append(v, f(x))
		}
		return median(v), slices.Min(v), slices.Max(v)
	}
	fmt.Println()
	fmt.Printf("| scorer hook per event (%d events, one goroutine) | events per CPU-second of the scorer, median [range] | with Redis's CPU | events/s wall | added latency p50 | p99 | p99.9 |\n", m.Rows)
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, s := range sides {
		c, lo, hi := med(s.name, func(x result) float64 { return x.perCPU })
		all, _, _ := med(s.name, func(x result) float64 { return x.perCPUAll })
		w, _, _ := med(s.name, func(x result) float64 { return x.wall })
		p50, _, _ := med(s.name, func(x result) float64 { return x.p50 })
		p99, p99lo, p99hi := med(s.name, func(x result) float64 { return x.p99 })
		p999, _, _ := med(s.name, func(x result) float64 { return x.p999 })
		fmt.Printf("| %s | %.0f [%.0f–%.0f] | %.0f | %.0f | %.1f µs | %.1f µs [%.1f–%.1f] | %.1f µs |\n", s.name, c, lo, hi, all, w, p50, p99, p99lo, p99hi, p999)
	}
	a, _, _ := med(ownOnly.name, func(x result) float64 { return x.perCPU })
	bb, _, _ := med(withRedis.name, func(x result) float64 { return x.perCPU })
	la, _, _ := med(ownOnly.name, func(x result) float64 { return x.p99 })
	lb, _, _ := med(withRedis.name, func(x result) float64 { return x.p99 })
	fmt.Printf("\nThe Redis lookup costs %.1fx the scorer's CPU per event (own-only / with Redis throughput per CPU-second) and adds %.1f µs at p99.\n", a/bb, lb-la)
	var others []float64
	for _, rs := range res {
		for _, x := range rs {
			others = append(others, x.others)
		}
	}
	fmt.Printf("other processes used up to %.0f%% of the machine during a measurement", 100*slices.Max(others))
	if slices.Max(others) > 0.05 {
		fmt.Print(" (NOISY: more than 5%)")
	}
	fmt.Println()
	return nil
}

// measureSide runs the side's events in order, round after round, until
// minTime has passed. It returns events per CPU-second of this process,
// and of this process plus the Redis server (INFO cpu), events per wall
// second, the p50, p99 and p99.9 of the per-event time (µs), and the
// share of the machine other processes used.
func measureSide(ctx context.Context, rdb *redis.Client, s *side, n int, minTime time.Duration) (struct{ perCPU, perCPUAll, wall, p50, p99, p999, others float64 }, error) {
	var out struct{ perCPU, perCPUAll, wall, p50, p99, p999, others float64 }
	var buf []byte
	var err error
	for i := range n { // warm
		if buf, _, err = s.score(ctx, i, buf); err != nil {
			return out, err
		}
	}
	lat := make([]float64, 0, 16*n)
	redis0, err := redisCPU(ctx, rdb)
	if err != nil {
		return out, err
	}
	busy0, total0, _ := machineTicks()
	cpu0 := processCPU()
	start := time.Now()
	events := 0
	for time.Since(start) < minTime {
		for i := range n {
			t := time.Now()
			if buf, _, err = s.score(ctx, i, buf); err != nil {
				return out, err
			}
			lat = append(lat, float64(time.Since(t).Nanoseconds())/1e3)
		}
		events += n
	}
	el := time.Since(start)
	cpu := processCPU() - cpu0
	busy1, total1, _ := machineTicks()
	redis1, err := redisCPU(ctx, rdb)
	if err != nil {
		return out, err
	}
	rcpu := redis1 - redis0
	slices.Sort(lat)
	q := func(p float64) float64 { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	out.perCPU = float64(events) / cpu.Seconds()
	out.perCPUAll = float64(events) / (cpu + rcpu).Seconds()
	out.wall = float64(events) / el.Seconds()
	out.p50, out.p99, out.p999 = q(0.5), q(0.99), q(0.999)
	out.others = othersShare(busy1-busy0, total1-total0, cpu+rcpu)
	return out, nil
}

// redisCPU is the Redis server's user+system CPU time (INFO cpu).
func redisCPU(ctx context.Context, rdb *redis.Client) (time.Duration, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("redis INFO cpu: %w", err)
	}
	var sec float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("redis INFO cpu %s: %w", k, err)
			}
			sec += f
		}
	}
	return time.Duration(sec * float64(time.Second)), nil
}
