package registry

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/weirhq/weir/schemas"
)

var rewriteDiffs = flag.Bool("rewrite-diffs", false, "rewrite testdata/diff/*.txt from the current output")

func diffRecs() (a, b schemas.ModelRecord) {
	a = schemas.ModelRecord{
		Name: "fraud", Version: 1, Format: "logreg-json",
		Features:    []string{"card_activity.txn_count_5m", "card_activity.amount_sum_5m", "card_activity.amount_last"},
		Views:       []string{"card_activity@3", "merchant@1"},
		ArtifactURI: "file:///m/fraud/v1.json", SHA256: "aaaa", CreatedAt: 1767225600000, CreatedBy: "bootstrap",
		Reason: "bootstrap: no version of the model existed", Metrics: map[string]float64{"holdout_auc": 0.8, "train_rows": 1000, "only_a": 1},
		TrainingSet: `{"spine_table":"db.labels","since_ms":0,"until_ms":1767225600000,"rows":1000,"views":[{"view":"card_activity","version":"3"}]}`,
		Aliases:     []string{},
	}
	b = schemas.ModelRecord{
		Name: "fraud", Version: 3, Format: "xgboost-json",
		Features:    []string{"card_activity.amount_last", "card_activity.txn_count_5m", "card_activity.amount_max_1h"},
		Views:       []string{"card_activity@4", "device@2"},
		ArtifactURI: "file:///m/fraud/v3.json", SHA256: "bbbb", CreatedAt: 1767312000000, CreatedBy: "retrain", ParentVersion: 1,
		Reason: "retrained on drift", Metrics: map[string]float64{"holdout_auc": 0.85, "train_rows": 1500, "only_b": 2},
		TrainingSet: `{"spine_table":"db.labels","since_ms":1767139200000,"until_ms":1767312000000,"rows":1500,"views":[{"view":"card_activity","version":"4"}]}`,
		Aliases:     []string{"champion"}, Signature: "c2ln",
		Moves: []schemas.AliasMove{
			{Alias: "champion", Action: ActionPromote, FromVersion: 1, PreviousVersion: 1, By: "alice", Reason: "drift", At: 1767312000001},
			{Alias: "shadow", Action: ActionPromote, FromVersion: 2, PreviousVersion: 2, By: "bob", Reason: "try it", At: 1767312000000},
		},
	}
	return a, b
}

func f64(v float64) *float64 { return &v }

// TestDiffRecords compares records field by field against expectations
// written out by hand from the records above.
func TestDiffRecords(t *testing.T) {
	a, b := diffRecs()
	d := DiffRecords(a, b)
	wantFields := []FieldDiff{
		{"format", "logreg-json", "xgboost-json"},
		{"sha256", "aaaa", "bbbb"},
		{"artifact_uri", "file:///m/fraud/v1.json", "file:///m/fraud/v3.json"},
		{"signature", "unsigned", "signed c2ln"},
		{"parent_version", "none", "v1"},
		{"created_at", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"},
		{"created_by", "bootstrap", "retrain"},
		{"reason", "bootstrap: no version of the model existed", "retrained on drift"},
		{"last_move", "", "promote champion v1->v3 by alice: drift"},
		{"aliases", "", "champion"},
	}
	if !reflect.DeepEqual(d.Fields, wantFields) {
		t.Errorf("fields:\n%+v\nwant\n%+v", d.Fields, wantFields)
	}
	wantFeat := FeatureDiff{
		Added: []string{"card_activity.amount_max_1h"}, Removed: []string{"card_activity.amount_sum_5m"}, Reordered: true,
		A: a.Features, B: b.Features,
	}
	if !reflect.DeepEqual(d.Features, wantFeat) {
		t.Errorf("features %+v, want %+v", d.Features, wantFeat)
	}
	wantViews := ViewDiff{Added: []string{"device@2"}, Removed: []string{"merchant@1"}, Changed: []FieldDiff{{"card_activity", "3", "4"}}}
	if !reflect.DeepEqual(d.Views, wantViews) {
		t.Errorf("views %+v, want %+v", d.Views, wantViews)
	}
	wantTS := []FieldDiff{
		{"rows", "1000", "1500"},
		{"since_ms", "0", "1767139200000 (2025-12-31T00:00:00Z)"},
		{"until_ms", "1767225600000 (2026-01-01T00:00:00Z)", "1767312000000 (2026-01-02T00:00:00Z)"},
		{"views", `[{"version":"3","view":"card_activity"}]`, `[{"version":"4","view":"card_activity"}]`},
	}
	if !reflect.DeepEqual(d.TrainingSet, wantTS) {
		t.Errorf("training set:\n%+v\nwant\n%+v", d.TrainingSet, wantTS)
	}
	auc1, auc3 := 0.8, 0.85
	wantMetrics := []MetricDiff{
		{"holdout_auc", f64(auc1), f64(auc3), f64(auc3 - auc1)},
		{"only_a", f64(1), nil, nil},
		{"only_b", nil, f64(2), nil},
		{"train_rows", f64(1000), f64(1500), f64(500)},
	}
	if !reflect.DeepEqual(d.Metrics, wantMetrics) {
		t.Errorf("metrics %s, want %s", js(d.Metrics), js(wantMetrics))
	}

	// A record written before moves had a field: its last move is the
	// one in its reason.
	old := a
	old.Reason = "rollback champion v3->v1 by bob (previous none): v3 bad"
	wantOld := []FieldDiff{{"reason", old.Reason, a.Reason}, {"last_move", old.Reason, ""}}
	if got := DiffRecords(old, a).Fields; !reflect.DeepEqual(got, wantOld) {
		t.Errorf("an old record's move:\n%+v\nwant\n%+v", got, wantOld)
	}

	// A version against itself differs in nothing.
	same := DiffRecords(b, b)
	if len(same.Fields) != 0 || !same.Features.Same() || !same.Views.Same() || len(same.TrainingSet) != 0 {
		t.Errorf("v3 against itself: %s", js(same))
	}
	for _, m := range same.Metrics {
		if m.Delta == nil || *m.Delta != 0 {
			t.Errorf("metric %s against itself: %s", m.Name, js(m))
		}
	}
}

// TestDiffFeatures: added, removed and reordered are independent.
func TestDiffFeatures(t *testing.T) {
	for _, c := range []struct {
		a, b             []string
		added, removed   []string
		reordered, equal bool
	}{
		{[]string{"x", "y"}, []string{"x", "y"}, nil, nil, false, true},
		{[]string{"x", "y"}, []string{"y", "x"}, nil, nil, true, false},
		{[]string{"x", "y", "z"}, []string{"x", "z"}, nil, []string{"y"}, false, false},
		{[]string{"x", "z"}, []string{"w", "x", "z"}, []string{"w"}, nil, false, false},
		{[]string{"x", "y", "z"}, []string{"z", "w", "x"}, []string{"w"}, []string{"y"}, true, false},
		{nil, []string{"x"}, []string{"x"}, nil, false, false},
	} {
		d := diffFeatures(c.a, c.b)
		if !reflect.DeepEqual(d.Added, c.added) || !reflect.DeepEqual(d.Removed, c.removed) || d.Reordered != c.reordered || d.Same() != c.equal {
			t.Errorf("%v -> %v: %+v", c.a, c.b, d)
		}
	}
}

// TestDiffText: the human-readable form, against testdata/diff/*.txt
// (-rewrite-diffs rewrites them).
func TestDiffText(t *testing.T) {
	a, b := diffRecs()
	for _, c := range []struct {
		file string
		d    Diff
	}{
		{"v1_v3.txt", DiffRecords(a, b)},
		{"v3_v3.txt", DiffRecords(b, b)},
		{"empty.txt", DiffRecords(schemas.ModelRecord{Name: "m", Version: 1}, schemas.ModelRecord{Name: "m", Version: 2, TrainingSet: "not json"})},
	} {
		var buf bytes.Buffer
		if err := c.d.WriteText(&buf, 60); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", "diff", c.file)
		if *rewriteDiffs {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if buf.String() != string(want) {
			t.Errorf("%s:\n%s\nwant:\n%s", c.file, buf.String(), want)
		}
	}
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
