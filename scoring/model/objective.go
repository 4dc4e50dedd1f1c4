package model

import "math"

// objective is how a tree model turns margins into outputs, computed in
// the precision its library uses (float32 for XGBoost, float64 for
// LightGBM) so that outputs match the library's to the last bit or two.
type objective struct {
	kind  uint8
	f32   bool
	scale float64 // LightGBM's sigmoid parameter for objSigmoid; 1 for XGBoost
}

const (
	objIdentity   uint8 = iota
	objSigmoid          // 1 / (1 + exp(-scale*m))
	objExp              // exp(m)
	objSoftmax          // softmax over the groups
	objArgmax           // index of the largest margin (XGBoost multi:softmax)
	objSigmoidOVA       // a sigmoid per group (LightGBM multiclassova)
)

func (o objective) outputs(nGroup int) int {
	if o.kind == objArgmax {
		return 1
	}
	return nGroup
}

// transform1 transforms a single-output model's margin.
func (o objective) transform1(m float64) float64 {
	switch o.kind {
	case objSigmoid, objSigmoidOVA:
		if o.f32 {
			return float64(xgbSigmoid(float32(m)))
		}
		return 1 / (1 + math.Exp(-o.scale*m))
	case objExp:
		if o.f32 {
			return float64(float32(math.Exp(float64(float32(m)))))
		}
		return math.Exp(m)
	}
	return m
}

// transform transforms the margins dst[n:] in place and returns dst; for
// objArgmax it leaves one value, the class.
func (o objective) transform(dst []float64, n int) []float64 {
	out := dst[n:]
	switch o.kind {
	case objSoftmax:
		if o.f32 {
			xgbSoftmax(out)
		} else {
			lgbSoftmax(out)
		}
	case objArgmax:
		best := 0
		for i, v := range out {
			if v > out[best] {
				best = i
			}
		}
		return append(dst[:n], float64(best))
	default:
		for i, v := range out {
			out[i] = o.transform1(v)
		}
	}
	return dst
}

// xgbSigmoid is XGBoost's common::Sigmoid, in float32.
func xgbSigmoid(x float32) float32 {
	x = min(-x, 88.7)
	return 1 / (float32(math.Exp(float64(x))) + 1)
}

// xgbSoftmax is XGBoost's common::Softmax: float32 exponentials of the
// margins less their maximum, summed in float64, divided in float32.
func xgbSoftmax(v []float64) {
	wmax := float32(v[0])
	for _, x := range v[1:] {
		wmax = max(float32(x), wmax)
	}
	var wsum float64
	for i, x := range v {
		e := float32(math.Exp(float64(float32(x) - wmax)))
		v[i] = float64(e)
		wsum += float64(e)
	}
	s := float32(wsum)
	for i, x := range v {
		v[i] = float64(float32(x) / s)
	}
}

// lgbSoftmax is LightGBM's Common::Softmax, in float64.
func lgbSoftmax(v []float64) {
	wmax := v[0]
	for _, x := range v[1:] {
		wmax = max(x, wmax)
	}
	var wsum float64
	for i, x := range v {
		v[i] = math.Exp(x - wmax)
		wsum += v[i]
	}
	for i := range v {
		v[i] /= wsum
	}
}
