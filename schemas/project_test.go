package schemas_test

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hamba/avro/v2"

	"github.com/weirhq/weir/schemas"
)

// wide exercises every kind the projector skips or reads, around the fields
// it projects.
const wide = `{"type":"record","name":"Wide","fields":[
 {"name":"tags","type":{"type":"array","items":"string"}},
 {"name":"key","type":"string"},
 {"name":"attrs","type":{"type":"map","values":["null","double"]}},
 {"name":"nested","type":{"type":"record","name":"N","fields":[{"name":"a","type":"int"},{"name":"b","type":{"type":"fixed","name":"F","size":3}}]}},
 {"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}},
 {"name":"kind","type":{"type":"enum","name":"K","symbols":["A","B","C"]}},
 {"name":"amount","type":["null","double"]},
 {"name":"small","type":"float"},
 {"name":"count","type":"int"},
 {"name":"flag","type":"boolean"},
 {"name":"blob","type":"bytes"},
 {"name":"tail","type":{"type":"array","items":{"type":"record","name":"T","fields":[{"name":"x","type":"long"}]}}}
]}`

// TestProjectMatchesHamba decodes random records with the projector and
// with hamba's generic decoder and compares every projected field.
func TestProjectMatchesHamba(t *testing.T) {
	sc := avro.MustParse(wide)
	fields := []string{"key", "t", "amount", "small", "count", "flag", "blob"}
	p, err := schemas.NewProjector(sc, sc, fields)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	out := make([]schemas.Value, len(fields))
	for i := range 2000 {
		rec := map[string]any{
			"tags":   []any{},
			"key":    string(rune('a' + r.IntN(26))),
			"attrs":  map[string]any{},
			"nested": map[string]any{"a": int(r.Int32()), "b": [3]byte{1, 2, 3}},
			"t":      time.UnixMilli(r.Int64() >> (24 + r.IntN(20))),
			"kind":   []string{"A", "B", "C"}[r.IntN(3)],
			"amount": nil,
			"small":  float32(r.NormFloat64()),
			"count":  int(r.Int32()) - int(r.Int32()>>1),
			"flag":   r.IntN(2) == 1,
			"blob":   []byte{byte(i), 0, 255},
			"tail":   []any{},
		}
		for range r.IntN(4) {
			rec["tags"] = append(rec["tags"].([]any), "tag")
			rec["attrs"].(map[string]any)[string(rune('k'+r.IntN(5)))] = map[string]any{"double": r.Float64()}
			rec["tail"] = append(rec["tail"].([]any), map[string]any{"x": r.Int64()})
		}
		if i%2 == 0 {
			rec["amount"] = map[string]any{"double": r.NormFloat64() * 100}
		}
		body, err := avro.Marshal(sc, rec)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Project(body, out); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		var back map[string]any
		if err := avro.Unmarshal(sc, body, &back); err != nil {
			t.Fatal(err)
		}
		if string(out[0].Bytes) != back["key"].(string) || out[1].Long != back["t"].(time.Time).UnixMilli() {
			t.Fatalf("record %d: key/t %q %d, hamba %v %v", i, out[0].Bytes, out[1].Long, back["key"], back["t"])
		}
		if a := back["amount"]; a == nil {
			if out[2].Kind != schemas.KindNull {
				t.Fatalf("record %d: amount %+v, want null", i, out[2])
			}
		} else if out[2].Double != unionDouble(a) {
			t.Fatalf("record %d: amount %+v, hamba %v", i, out[2], a)
		}
		if out[3].Double != float64(back["small"].(float32)) || out[4].Long != int64(back["count"].(int)) ||
			(out[5].Long == 1) != back["flag"].(bool) || string(out[6].Bytes) != string(back["blob"].([]byte)) {
			t.Fatalf("record %d: %+v, hamba %v", i, out, back)
		}
	}
}

// TestProjectEvolution projects fields of a value written with an older
// schema: a field the writer lacks comes from the reader's default, and one
// with no default is refused when the projector is built.
func TestProjectEvolution(t *testing.T) {
	writer := avro.MustParse(`{"type":"record","name":"R","fields":[{"name":"a","type":"long"},{"name":"x","type":"string"}]}`)
	reader := avro.MustParse(`{"type":"record","name":"R","fields":[{"name":"a","type":"long"},{"name":"c","type":"double","default":2.5}]}`)
	p, err := schemas.NewProjector(writer, reader, []string{"c", "a"})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := avro.Marshal(writer, map[string]any{"a": int64(-7), "x": "skip me"})
	out := make([]schemas.Value, 2)
	if err := p.Project(body, out); err != nil {
		t.Fatal(err)
	}
	if out[0].Double != 2.5 || out[1].Long != -7 {
		t.Fatalf("projected %+v", out)
	}
	if _, err := schemas.NewProjector(writer, reader, []string{"nope"}); err == nil {
		t.Fatal("a field neither schema has was accepted")
	}
}

// TestProjectTransaction checks the projector on the source schema the demo
// reads, against the struct hamba decodes.
func TestProjectTransaction(t *testing.T) {
	sc := schemas.MustParse(schemas.TransactionSchema).Avro
	fields := []string{"card_id", "event_time", "txn_id", "amount"}
	p, err := schemas.NewProjector(sc, sc, fields)
	if err != nil {
		t.Fatal(err)
	}
	tx := schemas.Transaction{TxnID: "t-1", CardID: "card-9", MerchantID: "m", Amount: math.Pi, Currency: "EUR", Country: "FR", DeviceID: "d", EventTime: 1767225600123}
	body, _ := avro.Marshal(sc, &tx)
	out := make([]schemas.Value, len(fields))
	if err := p.Project(body, out); err != nil {
		t.Fatal(err)
	}
	if string(out[0].Bytes) != tx.CardID || out[1].Long != tx.EventTime || string(out[2].Bytes) != tx.TxnID || out[3].Double != tx.Amount {
		t.Fatalf("projected %+v from %+v", out, tx)
	}
	for i := range body {
		if err := p.Project(body[:i], out); err == nil {
			t.Fatalf("a body cut to %d of %d bytes projected", i, len(body))
		}
	}
}

func FuzzProject(f *testing.F) {
	sc := avro.MustParse(wide)
	p, err := schemas.NewProjector(sc, sc, []string{"key", "amount", "blob"})
	if err != nil {
		f.Fatal(err)
	}
	body, _ := avro.Marshal(sc, map[string]any{"tags": []any{"x"}, "key": "k", "attrs": map[string]any{}, "nested": map[string]any{"a": 1, "b": [3]byte{}},
		"t": int64(1), "kind": "B", "amount": nil, "small": float32(1), "count": 2, "flag": true, "blob": []byte{1}, "tail": []any{}})
	f.Add(body)
	out := make([]schemas.Value, 3)
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = p.Project(b, out) // must not panic or hang
	})
}

func BenchmarkProjectTransaction(b *testing.B) {
	sc := schemas.MustParse(schemas.TransactionSchema).Avro
	tx := schemas.Transaction{TxnID: "txn-1-000000042", CardID: "card-000042", MerchantID: "m-0042", Amount: 42.5, Currency: "EUR", Country: "FR", DeviceID: "dev-000042", EventTime: 1767225600123}
	body, _ := avro.Marshal(sc, &tx)
	b.Run("projector", func(b *testing.B) {
		fields := []string{"card_id", "event_time", "txn_id", "amount"}
		p, _ := schemas.NewProjector(sc, sc, fields)
		out := make([]schemas.Value, len(fields))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if err := p.Project(body, out); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("hamba-map", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var m map[string]any
			if err := avro.Unmarshal(sc, body, &m); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// unionDouble reads a ["null","double"] value as hamba decodes it generically
// (a bare float64, or a map keyed by the branch name).
func unionDouble(a any) float64 {
	if m, ok := a.(map[string]any); ok {
		return m["double"].(float64)
	}
	return a.(float64)
}
