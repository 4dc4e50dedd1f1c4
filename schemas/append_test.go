package schemas_test

import (
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"

	"github.com/weirhq/weir/schemas"
)

// TestAppendMatchesHamba checks the hand-written encoders against
// hamba/avro: what they write decodes, with hamba, to the same record. (The
// bytes may differ: hamba writes array blocks with their byte size, which
// Avro allows as well as the plain count written here.)
func TestAppendMatchesHamba(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	str := func() string { return strings.Repeat("é", r.IntN(3)) + strings.Repeat("x", r.IntN(80)) }
	num := func() float64 {
		switch r.IntN(5) {
		case 0:
			return math.Inf(1)
		case 1:
			return math.Copysign(0, -1)
		default:
			return r.NormFloat64() * 1e6
		}
	}
	rows, preds := schemas.MustParse(schemas.FeatureRowSchema), schemas.MustParse(schemas.PredictionSchema)
	for i := range 500 {
		fr := schemas.FeatureRow{Entity: str(), View: str(), ViewVersion: str(), EventTime: r.Int64() - r.Int64(), KnownTime: int64(r.Uint32()),
			SourceTopic: str(), SourcePartition: int32(r.Uint32()), SourceOffset: r.Int64(), EventID: str(), Values: []schemas.FeatureValue{},
			WindowStart: r.Int64() - r.Int64(), WindowEnd: int64(r.Uint32()), RevisesOffset: int64(i%3) - 1}
		for range r.IntN(4) * (i % 2) {
			v := schemas.FeatureValue{Name: str(), Value: num(), List: []float64{}, Labels: []string{}}
			for range r.IntN(3) * (i % 3) {
				v.List = append(v.List, num())
				v.Labels = append(v.Labels, str())
			}
			fr.Values = append(fr.Values, v)
		}
		p := schemas.Prediction{PredictionID: str(), Entity: str(), EventTime: r.Int64(), ScoredTime: -r.Int64(), ModelName: str(),
			ModelVersion: int32(r.Uint32()), RolloutArm: str(), Score: num(), Threshold: num(), Decision: i%3 == 0,
			SourcePartition: int32(i), SourceOffset: int64(i) << 40, LatencyUs: int64(i), Features: []schemas.UsedFeature{}, Shadow: i%5 == 1}
		for range r.IntN(4) * (i % 2) {
			p.Features = append(p.Features, schemas.UsedFeature{Name: str(), Value: num(), AgeMs: -int64(i), Stale: r.IntN(2) == 0})
		}
		for _, c := range []struct {
			schema *schemas.Schema
			in     any
			got    []byte
			out    any
		}{
			{rows, &fr, schemas.AppendFeatureRow(nil, &fr), &schemas.FeatureRow{}},
			{preds, &p, schemas.AppendPrediction(nil, &p), &schemas.Prediction{}},
		} {
			if err := avro.Unmarshal(c.schema.Avro, c.got, c.out); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.in, c.out) {
				t.Fatalf("%s round trip:\n in %+v\nout %+v", c.schema.Name, c.in, c.out)
			}
		}
	}
}

func BenchmarkAppendFeatureRow(b *testing.B) {
	fr := schemas.FeatureRow{Entity: "card-000042", View: "card_activity", ViewVersion: "v6d146b17", EventTime: 1767225600000, KnownTime: 1767225600100,
		SourceTopic: "payments.transactions", SourcePartition: 3, SourceOffset: 123456, EventID: "txn-1-000000042"}
	for _, n := range []string{"txn_count_5m", "amount_sum_5m", "txn_count_1h", "amount_sum_1h", "amount_max_1h", "amount_last"} {
		fr.Values = append(fr.Values, schemas.FeatureValue{Name: n, Value: 42.5})
	}
	sc := schemas.MustParse(schemas.FeatureRowSchema)
	b.Run("hand-written", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for i := 0; i < b.N; i++ {
			buf = schemas.AppendFeatureRow(buf[:0], &fr)
		}
	})
	b.Run("hamba", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := avro.Marshal(sc.Avro, &fr); err != nil {
				b.Fatal(err)
			}
		}
	})
}
