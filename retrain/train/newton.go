package train

import (
	"fmt"
	"math"
)

// objective is the mean log loss plus (l2/2)·||w||² at beta = [bias, w...].
func objective(Z [][]float64, y []bool, beta []float64, l2 float64) float64 {
	var s float64
	for i, z := range Z {
		t := beta[0]
		for j, v := range z {
			t += beta[j+1] * v
		}
		s += softplus(t)
		if y[i] {
			s -= t
		}
	}
	s /= float64(len(Z))
	for _, w := range beta[1:] {
		s += l2 / 2 * w * w
	}
	return s
}

// softplus is log(1+e^t) without overflow.
func softplus(t float64) float64 { return math.Max(t, 0) + math.Log1p(math.Exp(-math.Abs(t))) }

// newton minimizes objective by Newton's method with Armijo backtracking.
func newton(Z [][]float64, y []bool, o Options) ([]float64, int, error) {
	n, d := len(Z), len(Z[0])+1
	beta := make([]float64, d)
	g := make([]float64, d)
	H := make([][]float64, d)
	for k := range H {
		H[k] = make([]float64, d)
	}
	x := make([]float64, d)
	next := make([]float64, d)
	f := objective(Z, y, beta, o.L2)
	for it := 1; it <= o.MaxIter; it++ {
		clear(g)
		for k := range H {
			clear(H[k])
		}
		for i, z := range Z {
			x[0] = 1
			copy(x[1:], z)
			t := 0.0
			for k := range x {
				t += beta[k] * x[k]
			}
			p := sigmoid(t)
			r := p
			if y[i] {
				r = p - 1
			}
			w := p * (1 - p)
			for a := range x {
				g[a] += r * x[a]
				for b := 0; b <= a; b++ {
					H[a][b] += w * x[a] * x[b]
				}
			}
		}
		for a := range d {
			g[a] /= float64(n)
			for b := 0; b <= a; b++ {
				H[a][b] /= float64(n)
				H[b][a] = H[a][b]
			}
			if a > 0 {
				g[a] += o.L2 * beta[a]
				H[a][a] += o.L2
			}
		}
		step, err := solve(H, g)
		if err != nil {
			return nil, it, fmt.Errorf("newton iteration %d: %w", it, err)
		}
		var slope float64
		for k := range step {
			slope += g[k] * step[k]
		}
		// Backtrack until the objective decreases enough.
		t := 1.0
		var fn float64
		for {
			for k := range beta {
				next[k] = beta[k] - t*step[k]
			}
			fn = objective(Z, y, next, o.L2)
			if fn <= f-1e-4*t*slope || t < 1e-10 {
				break
			}
			t /= 2
		}
		var maxStep float64
		for k := range step {
			maxStep = math.Max(maxStep, math.Abs(t*step[k]))
		}
		copy(beta, next)
		f = fn
		if maxStep < o.Tol {
			return beta, it, nil
		}
	}
	return nil, o.MaxIter, fmt.Errorf("no convergence in %d Newton iterations", o.MaxIter)
}

func sigmoid(t float64) float64 {
	if t >= 0 {
		return 1 / (1 + math.Exp(-t))
	}
	e := math.Exp(t)
	return e / (1 + e)
}

// solve solves H·s = g for symmetric positive definite H by Cholesky.
func solve(H [][]float64, g []float64) ([]float64, error) {
	d := len(g)
	L := make([][]float64, d)
	for i := range L {
		L[i] = make([]float64, d)
	}
	for i := range d {
		for j := 0; j <= i; j++ {
			s := H[i][j]
			for k := range j {
				s -= L[i][k] * L[j][k]
			}
			if i == j {
				if s <= 0 || math.IsNaN(s) {
					return nil, fmt.Errorf("hessian not positive definite (pivot %d = %g)", i, s)
				}
				L[i][i] = math.Sqrt(s)
			} else {
				L[i][j] = s / L[j][j]
			}
		}
	}
	z := make([]float64, d)
	for i := range d {
		s := g[i]
		for k := range i {
			s -= L[i][k] * z[k]
		}
		z[i] = s / L[i][i]
	}
	s := make([]float64, d)
	for i := d - 1; i >= 0; i-- {
		v := z[i]
		for k := i + 1; k < d; k++ {
			v -= L[k][i] * s[k]
		}
		s[i] = v / L[i][i]
	}
	return s, nil
}
