package model

import (
	"math"
	"strings"
	"testing"
)

func valid() *LogReg {
	return &LogReg{
		Format:     Format,
		Name:       "fraud",
		Features:   []string{"card.amount", "card.count_1h"},
		Transforms: []string{TransformLog1p, TransformNone},
		Mean:       []float64{3, 2},
		Std:        []float64{1.5, 4},
		Weights:    []float64{0.8, -0.25},
		Bias:       -1.2,
		Metadata:   map[string]string{"trainer": "test"},
	}
}

func TestScoreFormula(t *testing.T) {
	m := valid()
	x := []float64{100, 6}
	z := -1.2 + 0.8*(math.Log1p(100)-3)/1.5 + -0.25*(6-2)/4
	want := 1 / (1 + math.Exp(-z))
	if got := m.Score(x); math.Abs(got-want) > 1e-15 {
		t.Fatalf("Score = %v, want %v", got, want)
	}
	// log1p clamps negative inputs at 0 rather than scoring NaN.
	if got, want := m.Score([]float64{-5, 6}), m.Score([]float64{0, 6}); got != want {
		t.Fatalf("Score with negative log1p input = %v, want %v (as for 0)", got, want)
	}
}

func TestSigmoidExtremes(t *testing.T) {
	for _, c := range []struct{ z, want float64 }{{0, 0.5}, {800, 1}, {-800, 0}, {math.Inf(1), 1}, {math.Inf(-1), 0}} {
		if got := Sigmoid(c.z); got != c.want || math.IsNaN(got) {
			t.Errorf("Sigmoid(%v) = %v, want %v", c.z, got, c.want)
		}
	}
	if got := Sigmoid(-30); got <= 0 {
		t.Errorf("Sigmoid(-30) = %v, want a positive underflow-free value", got)
	}
}

func TestScoreDoesNotAllocate(t *testing.T) {
	m := valid()
	x := []float64{12, 3}
	var sink float64
	if n := testing.AllocsPerRun(1000, func() { sink += m.Score(x) }); n != 0 {
		t.Fatalf("Score allocates %v times per call", n)
	}
}

func TestScorePanicsOnWrongLength(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Score of a short vector did not panic")
		}
	}()
	valid().Score([]float64{1})
}

func TestMarshalRoundTrip(t *testing.T) {
	m := valid()
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := got.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(b2) || SHA256(b) != SHA256(b2) {
		t.Fatalf("round trip changed the artifact:\n%s\n%s", b, b2)
	}
	x := []float64{42, 1}
	if got.Score(x) != m.Score(x) {
		t.Fatal("parsed model scores differently")
	}
}

func TestSHA256(t *testing.T) {
	// sha256("abc"), FIPS 180-2 appendix B.1.
	if got, want := SHA256([]byte("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Fatalf("SHA256(abc) = %s, want %s", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	ok, err := valid().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	s := string(ok)
	for _, c := range []struct{ name, in, want string }{
		{"empty", ``, "parse"},
		{"not json", `{"format":`, "parse"},
		{"unknown field", strings.Replace(s, `"bias"`, `"bias2": 1, "bias"`, 1), "unknown field"},
		{"trailing", s + "{}", "trailing data"},
		{"format", strings.Replace(s, Format, "xgboost", 1), `format "xgboost"`},
		{"name", strings.Replace(s, `"fraud"`, `""`, 1), "name is empty"},
		{"no features", `{"format":"logreg-json","name":"m","features":[],"transforms":[],"mean":[],"std":[],"weights":[],"bias":0}`, "no features"},
		{"short weights", `{"format":"logreg-json","name":"m","features":["a.b"],"transforms":[""],"mean":[0],"std":[1],"weights":[],"bias":0}`, "0 weights for 1 features"},
		{"short std", `{"format":"logreg-json","name":"m","features":["a.b"],"transforms":[""],"mean":[0],"std":[],"weights":[1],"bias":0}`, "0 stds for 1 features"},
		{"zero std", `{"format":"logreg-json","name":"m","features":["a.b"],"transforms":[""],"mean":[0],"std":[0],"weights":[1],"bias":0}`, "std 0, must be > 0"},
		{"huge", `{"format":"logreg-json","name":"m","features":["a.b"],"transforms":[""],"mean":[1e400],"std":[1],"weights":[1],"bias":0}`, "parse"},
		{"transform", `{"format":"logreg-json","name":"m","features":["a.b"],"transforms":["sqrt"],"mean":[0],"std":[1],"weights":[1],"bias":0}`, `unknown transform "sqrt"`},
		{"duplicate", `{"format":"logreg-json","name":"m","features":["a.b","a.b"],"transforms":["",""],"mean":[0,0],"std":[1,1],"weights":[1,1],"bias":0}`, `"a.b" appears twice`},
		{"empty feature", `{"format":"logreg-json","name":"m","features":[""],"transforms":[""],"mean":[0],"std":[1],"weights":[1],"bias":0}`, "empty name"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.in))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse error = %v, want one containing %q", err, c.want)
			}
		})
	}
}

func TestMarshalRefusesNonFinite(t *testing.T) {
	m := valid()
	m.Weights[1] = math.NaN()
	if _, err := m.Marshal(); err == nil || !strings.Contains(err.Error(), "finite") {
		t.Fatalf("Marshal of a NaN weight: err = %v", err)
	}
	m = valid()
	m.Bias = math.Inf(1)
	if _, err := m.Marshal(); err == nil || !strings.Contains(err.Error(), "bias") {
		t.Fatalf("Marshal of an infinite bias: err = %v", err)
	}
}

func BenchmarkScore(b *testing.B) {
	m := valid()
	x := []float64{12, 3}
	b.ReportAllocs()
	var sink float64
	for b.Loop() {
		sink += m.Score(x)
	}
	_ = sink
}
