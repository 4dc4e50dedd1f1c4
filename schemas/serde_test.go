package schemas_test

import (
	"context"
	"errors"
	"net"
	"reflect"
	"testing"

	"github.com/weirhq/weir/schemas"
	"github.com/weirhq/weir/schemas/registry"
)

func newRegistry(t *testing.T) schemas.SRClient {
	t.Helper()
	s, err := registry.Open("")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() { l.Close() })
	cl, err := schemas.NewSRClient("http://" + l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	reg := newRegistry(t)
	cases := []struct {
		schema string
		in     any
		out    any
	}{
		{schemas.TransactionSchema, &schemas.Transaction{TxnID: "t1", CardID: "c1", Amount: 12.5, EventTime: 1700000000123}, &schemas.Transaction{}},
		{schemas.LabelSchema, &schemas.Label{TxnID: "t1", IsFraud: true, LabelTime: 5}, &schemas.Label{}},
		{schemas.FeatureRowSchema, &schemas.FeatureRow{Entity: "c1", View: "v", Values: []schemas.FeatureValue{{Name: "a", Value: 1, List: []float64{}, Labels: []string{"x"}}}, RevisesOffset: -1}, &schemas.FeatureRow{}},
		{schemas.PredictionSchema, &schemas.Prediction{PredictionID: "p", ModelVersion: 3, Features: []schemas.UsedFeature{{Name: "a", Value: 2, AgeMs: 5}}}, &schemas.Prediction{}},
		{schemas.MonitorMetricSchema, &schemas.MonitorMetric{Metric: "psi", Value: 0.3}, &schemas.MonitorMetric{}},
		{schemas.AlertSchema, &schemas.Alert{State: schemas.AlertFiring, Rule: "r"}, &schemas.Alert{}},
		{schemas.CommandSchema, &schemas.Command{Type: schemas.CommandRetrain, ModelName: "m"}, &schemas.Command{}},
		{schemas.ModelRecordSchema, &schemas.ModelRecord{Name: "m", Version: 2, Metrics: map[string]float64{"auc": 0.9}, Features: []string{"a"}, Views: []string{}, Aliases: []string{"champion"},
			Moves: []schemas.AliasMove{{Alias: "champion", Action: "rollback", FromVersion: 3, PreviousVersion: 1, By: "bob", Reason: "AUC fell", At: 1767225600000}}}, &schemas.ModelRecord{}},
	}
	if len(cases) != len(schemas.Names()) {
		t.Fatalf("%d cases for %d schemas: add the new schema here", len(cases), len(schemas.Names()))
	}
	for _, c := range cases {
		t.Run(c.schema, func(t *testing.T) {
			s, err := schemas.NewSerde(ctx, reg, c.schema+"-value", schemas.MustParse(c.schema))
			if err != nil {
				t.Fatal(err)
			}
			b, err := s.Encode(c.in)
			if err != nil {
				t.Fatal(err)
			}
			if id, _, err := schemas.SplitHeader(b); err != nil || id != s.ID() {
				t.Fatalf("header: id %d err %v, want id %d", id, err, s.ID())
			}
			if err := s.Decode(ctx, b, c.out); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.in, c.out) {
				t.Fatalf("round trip:\n in %+v\nout %+v", c.in, c.out)
			}
		})
	}
}

// TestEvolvedWriter decodes a value written with an older schema that lacks a
// field with a default, which the reader fills in.
func TestEvolvedWriter(t *testing.T) {
	ctx := context.Background()
	reg := newRegistry(t)
	old := `{"type":"record","name":"Label","namespace":"weir.payments","fields":[{"name":"txn_id","type":"string"},{"name":"card_id","type":"string"},{"name":"event_time","type":"long"},{"name":"label_time","type":"long"},{"name":"is_fraud","type":"boolean"},{"name":"extra","type":"string"}]}`
	oldID, err := reg.Register(ctx, "evo-value", old)
	if err != nil {
		t.Fatal(err)
	}
	s, err := schemas.NewSerde(ctx, reg, "label-value", schemas.MustParse(schemas.LabelSchema))
	if err != nil {
		t.Fatal(err)
	}
	// Body written with the old schema: strings are zigzag length + bytes.
	body := []byte{2, 't', 2, 'c', 4, 6, 1, 2, 'x'}
	var l schemas.Label
	if err := s.Decode(ctx, append(schemas.AppendHeader(nil, oldID), body...), &l); err != nil {
		t.Fatal(err)
	}
	if l.TxnID != "t" || l.CardID != "c" || l.EventTime != 2 || l.LabelTime != 3 || !l.IsFraud {
		t.Fatalf("decoded %+v", l)
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	reg := newRegistry(t)
	s, err := schemas.NewSerde(ctx, reg, "t-value", schemas.MustParse(schemas.TransactionSchema))
	if err != nil {
		t.Fatal(err)
	}
	var tx schemas.Transaction
	if err := s.Decode(ctx, []byte("hello world"), &tx); !errors.Is(err, schemas.ErrNotFramed) {
		t.Fatalf("unframed: %v", err)
	}
	if err := s.Decode(ctx, append(schemas.AppendHeader(nil, s.ID()), 0xff, 0xff), &tx); err == nil {
		t.Fatal("garbage body decoded")
	}
	if err := s.Decode(ctx, append(schemas.AppendHeader(nil, 9999), 0), &tx); err == nil {
		t.Fatal("unknown schema id decoded")
	}
}
