package model

import (
	"strings"
	"testing"
)

func TestLoadDispatch(t *testing.T) {
	lr, err := valid().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if got := Detect(lr); got != FormatLogReg {
		t.Fatalf("Detect(logreg) = %q", got)
	}
	m, err := Load(FormatLogReg, lr)
	if err != nil {
		t.Fatal(err)
	}
	x := []float64{100, 6}
	if m.ModelFormat() != FormatLogReg || m.NumFeatures() != 2 || m.NumOutputs() != 1 || m.Score(x) != valid().Score(x) ||
		m.Predict(nil, x)[0] != m.Score(x) || m.FeatureNames()[0] != "card.amount" {
		t.Fatalf("Load(logreg) = %+v", m)
	}
	if got := Detect([]byte(xgbTiny)); got != FormatXGBoostJSON {
		t.Fatalf("Detect(xgboost) = %q", got)
	}
	if got := Detect([]byte(lgbTiny)); got != FormatLightGBMText {
		t.Fatalf("Detect(lightgbm) = %q", got)
	}
	if got := Detect([]byte("hello")); got != "" {
		t.Fatalf("Detect(hello) = %q", got)
	}
	// A format names the parser: no guessing across formats.
	for _, c := range []struct{ format, in string }{
		{FormatXGBoostJSON, string(lr)}, {FormatLightGBMText, xgbTiny}, {FormatLogReg, lgbTiny}, {"onnx", xgbTiny},
	} {
		if m, err := Load(c.format, []byte(c.in)); err == nil || m != nil {
			t.Errorf("Load(%s) of another format: %v, %v", c.format, m, err)
		} else if c.format == "onnx" && !strings.Contains(err.Error(), `unknown format "onnx"`) {
			t.Errorf("Load(onnx): %v", err)
		}
	}
}
