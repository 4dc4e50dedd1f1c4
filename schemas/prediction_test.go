package schemas_test

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/hamba/avro/v2"

	"github.com/weirhq/weir/schemas"
)

// schemaWithout returns an embedded schema without one field: the schema
// records were written with before the field existed.
func schemaWithout(t *testing.T, name, field string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(schemas.MustParse(name).Text), &m); err != nil {
		t.Fatal(err)
	}
	var kept []any
	for _, f := range m["fields"].([]any) {
		if f.(map[string]any)["name"] != field {
			kept = append(kept, f)
		}
	}
	if len(kept) == len(m["fields"].([]any)) {
		t.Fatalf("%s.avsc has no field %q", name, field)
	}
	m["fields"] = kept
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPredictionShadowCompatible checks that adding shadow kept
// prediction.avsc compatible both ways, that a prediction written before it
// reads as served (shadow false) and that an old reader reads a new record.
func TestPredictionShadowCompatible(t *testing.T) {
	ctx := context.Background()
	oldJSON := schemaWithout(t, schemas.PredictionSchema, "shadow")
	old, err := avro.Parse(oldJSON)
	if err != nil {
		t.Fatal(err)
	}
	cur := schemas.MustParse(schemas.PredictionSchema).Avro
	compat := avro.NewSchemaCompatibility()
	if err := compat.Compatible(cur, old); err != nil {
		t.Fatalf("new reader, old writer: %v", err)
	}
	if err := compat.Compatible(old, cur); err != nil {
		t.Fatalf("old reader, new writer: %v", err)
	}

	reg := newRegistry(t)
	oldID, err := reg.Register(ctx, "old-prediction-value", oldJSON)
	if err != nil {
		t.Fatal(err)
	}
	s, err := schemas.NewSerde(ctx, reg, "prediction-value", schemas.MustParse(schemas.PredictionSchema))
	if err != nil {
		t.Fatal(err)
	}
	in := schemas.Prediction{PredictionID: "e1", Entity: "c1", ModelName: "m", ModelVersion: 2, RolloutArm: "champion", Score: 0.25,
		Threshold: 0.5, Features: []schemas.UsedFeature{}}
	body, err := avro.Marshal(old, &in)
	if err != nil {
		t.Fatal(err)
	}
	var got schemas.Prediction
	got.Shadow = true // the decoder must set it from the default
	if err := s.Decode(ctx, append(schemas.AppendHeader(nil, oldID), body...), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, in) || got.Shadow {
		t.Fatalf("old record read as\n%+v\nwant\n%+v", got, in)
	}

	// A new shadow record read by an old reader: every field but shadow.
	in.Shadow = true
	rs, err := compat.Resolve(old, cur)
	if err != nil {
		t.Fatal(err)
	}
	var back schemas.Prediction
	if err := avro.Unmarshal(rs, schemas.AppendPrediction(nil, &in), &back); err != nil {
		t.Fatal(err)
	}
	if in.Shadow = false; !reflect.DeepEqual(back, in) {
		t.Fatalf("new record read by the old schema as\n%+v\nwant\n%+v", back, in)
	}
}

// TestMonitorMetricShadowCompatible checks that adding shadow kept
// monitor_metric.avsc compatible both ways and that a metric written
// before it reads as a served version's (shadow false).
func TestMonitorMetricShadowCompatible(t *testing.T) {
	ctx := context.Background()
	oldJSON := schemaWithout(t, schemas.MonitorMetricSchema, "shadow")
	old, err := avro.Parse(oldJSON)
	if err != nil {
		t.Fatal(err)
	}
	cur := schemas.MustParse(schemas.MonitorMetricSchema).Avro
	compat := avro.NewSchemaCompatibility()
	if err := compat.Compatible(cur, old); err != nil {
		t.Fatalf("new reader, old writer: %v", err)
	}
	if err := compat.Compatible(old, cur); err != nil {
		t.Fatalf("old reader, new writer: %v", err)
	}
	reg := newRegistry(t)
	oldID, err := reg.Register(ctx, "old-metrics-value", oldJSON)
	if err != nil {
		t.Fatal(err)
	}
	s, err := schemas.NewSerde(ctx, reg, "metrics-value", schemas.MustParse(schemas.MonitorMetricSchema))
	if err != nil {
		t.Fatal(err)
	}
	in := schemas.MonitorMetric{Monitor: "m", ModelName: "fraud", ModelVersion: 2, Metric: "psi", Feature: "score", WindowStart: 60_000, WindowEnd: 120_000, Value: 0.3, Count: 40}
	body, err := avro.Marshal(old, &in)
	if err != nil {
		t.Fatal(err)
	}
	got := schemas.MonitorMetric{Shadow: true} // the decoder must set it from the default
	if err := s.Decode(ctx, append(schemas.AppendHeader(nil, oldID), body...), &got); err != nil {
		t.Fatal(err)
	}
	if got != in {
		t.Fatalf("old metric read as\n%+v\nwant\n%+v", got, in)
	}
}
