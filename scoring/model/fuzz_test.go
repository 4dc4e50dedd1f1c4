package model

import (
	"math"
	"testing"
)

// FuzzParse checks that Parse never panics, and that whatever it accepts
// is a model that scores without panicking, marshals, and parses back to
// the same bytes.
func FuzzParse(f *testing.F) {
	good, err := valid().Marshal()
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		string(good),
		`{"format":"logreg-json","name":"m","features":["a.b"],"transforms":[""],"mean":[0],"std":[1],"weights":[1],"bias":0}`,
		`{"format":"logreg-json","name":"m","features":["a.b","c.d"],"transforms":["log1p",""],"mean":[0,1],"std":[1,2],"weights":[1,-1],"bias":0.5,"metadata":{"k":"v"}}`,
		`{"format":"logreg-json","name":"m","features":["a.b"],"transforms":[""],"mean":[0],"std":[0],"weights":[1],"bias":0}`,
		`{"format":"logreg-json","name":"m","features":["a.b"],"transforms":[],"mean":[0],"std":[1],"weights":[1],"bias":0}`,
		`{}`, `[]`, `null`, ``, `{"format":"logreg-json"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			if m != nil {
				t.Fatal("Parse returned a model with an error")
			}
			return
		}
		x := make([]float64, len(m.Features))
		for i := range x {
			x[i] = float64(i) - 1
		}
		if p := m.Score(x); !(p >= 0 && p <= 1) && !math.IsNaN(p) {
			t.Fatalf("Score = %v, outside [0,1]", p)
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed model: %v", err)
		}
		m2, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse of a marshalled model: %v", err)
		}
		out2, err := m2.Marshal()
		if err != nil || string(out) != string(out2) {
			t.Fatalf("marshal not stable: %v\n%s\n%s", err, out, out2)
		}
	})
}
