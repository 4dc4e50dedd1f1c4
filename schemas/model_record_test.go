package schemas_test

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/hamba/avro/v2"

	"github.com/weirhq/weir/schemas"
)

// TestModelRecordMovesCompatible checks that adding moves kept
// model_record.avsc compatible both ways: a record written before it
// (whose reason may hold a move's text) decodes with its reason kept and
// no moves, and an old reader reads a new record without its moves.
func TestModelRecordMovesCompatible(t *testing.T) {
	ctx := context.Background()
	oldJSON := schemaWithout(t, schemas.ModelRecordSchema, "moves")
	old, err := avro.Parse(oldJSON)
	if err != nil {
		t.Fatal(err)
	}
	cur := schemas.MustParse(schemas.ModelRecordSchema).Avro
	compat := avro.NewSchemaCompatibility()
	if err := compat.Compatible(cur, old); err != nil {
		t.Fatalf("new reader, old writer: %v", err)
	}
	if err := compat.Compatible(old, cur); err != nil {
		t.Fatalf("old reader, new writer: %v", err)
	}

	reg := newRegistry(t)
	oldID, err := reg.Register(ctx, "old-models-value", oldJSON)
	if err != nil {
		t.Fatal(err)
	}
	s, err := schemas.NewSerde(ctx, reg, "models-value", schemas.MustParse(schemas.ModelRecordSchema))
	if err != nil {
		t.Fatal(err)
	}
	in := schemas.ModelRecord{Name: "fraud", Version: 3, Format: "xgboost-json", Features: []string{"card.amount"}, Views: []string{"card@1"},
		CreatedAt: 1767225600000, CreatedBy: "retrain", Reason: "promote champion v2->v3 by alice: new features", ParentVersion: 2,
		Metrics: map[string]float64{"holdout_auc": 0.9}, Aliases: []string{"champion"}, Signature: "c2ln"}
	body, err := avro.Marshal(old, &in)
	if err != nil {
		t.Fatal(err)
	}
	// Into a fresh value: hamba/avro leaves a non-empty slice as it was
	// when it decodes an empty array into it.
	var got schemas.ModelRecord
	if err := s.Decode(ctx, append(schemas.AppendHeader(nil, oldID), body...), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Moves) != 0 {
		t.Fatalf("an old record read with moves %+v", got.Moves)
	}
	got.Moves = nil
	if !reflect.DeepEqual(got, in) {
		t.Fatalf("old record read as\n%+v\nwant\n%+v", got, in)
	}

	// A new record read by an old reader: every field but moves.
	in.Reason = "new features"
	in.Moves = []schemas.AliasMove{
		{Alias: "champion", Action: "promote", FromVersion: 2, PreviousVersion: 2, By: "alice", Reason: "better AUC", At: 1767225600001},
		{Alias: "shadow", Action: "rollback", FromVersion: 5, By: "bob", Reason: "v5 drifted", At: 1767225600002},
	}
	b, err := s.Encode(&in)
	if err != nil {
		t.Fatal(err)
	}
	_, newBody, err := schemas.SplitHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := compat.Resolve(old, cur)
	if err != nil {
		t.Fatal(err)
	}
	var back schemas.ModelRecord
	if err := avro.Unmarshal(rs, newBody, &back); err != nil {
		t.Fatal(err)
	}
	want := in
	want.Moves = nil
	if !reflect.DeepEqual(back, want) {
		t.Fatalf("new record read by the old schema as\n%+v\nwant\n%+v", back, want)
	}
}

// TestModelRecordJSON: a record's JSON names are its Avro field names,
// the nested moves' included.
func TestModelRecordJSON(t *testing.T) {
	rec := schemas.ModelRecord{Name: "fraud", Version: 3, Aliases: []string{"champion"},
		Moves: []schemas.AliasMove{{Alias: "champion", Action: "promote", FromVersion: 2, PreviousVersion: 2, By: "alice", Reason: "x", At: 1}}}
	b, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	var sch struct {
		Fields []struct {
			Name string          `json:"name"`
			Type json.RawMessage `json:"type"`
		} `json:"fields"`
	}
	if err := json.Unmarshal([]byte(schemas.MustParse(schemas.ModelRecordSchema).Text), &sch); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range sch.Fields {
		names = append(names, f.Name)
		if _, ok := got[f.Name]; !ok {
			t.Errorf("JSON lacks the Avro field %q: %s", f.Name, b)
		}
	}
	if len(got) != len(sch.Fields) {
		t.Errorf("JSON has %d keys, the schema %d fields (%s): %s", len(got), len(sch.Fields), strings.Join(names, ","), b)
	}
	mv := got["moves"].([]any)[0].(map[string]any)
	for _, k := range []string{"alias", "action", "from_version", "previous_version", "by", "reason", "at"} {
		if _, ok := mv[k]; !ok {
			t.Errorf("a move's JSON lacks %q: %s", k, b)
		}
	}
	if len(mv) != 7 || mv["from_version"] != float64(2) || got["version"] != float64(3) {
		t.Errorf("JSON %s", b)
	}
}
