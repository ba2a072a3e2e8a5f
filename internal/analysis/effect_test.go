package analysis

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/ctxdep/ctxdep/internal/blasimpl"
	"github.com/ctxdep/ctxdep/internal/dtype"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/testutil"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// Golden statistics from testdata/gen/effect_golden.py (float64, token by
// token in PyTorch); regenerate with `/usr/bin/python3 testdata/gen/effect_golden.py`.
const goldenEffect = "../../testdata/golden/effect/effect.safetensors"

// denseActs returns the CSR form of a dense (m, f) activation matrix,
// keeping the entries > 0.
func denseActs(d []float32, m, f int) *transcoder.Acts {
	a := &transcoder.Acts{Indptr: []int64{0}}
	for r := 0; r < m; r++ {
		for j := 0; j < f; j++ {
			if v := d[r*f+j]; v > 0 {
				a.Indices = append(a.Indices, int32(j))
				a.Values = append(a.Values, v)
			}
		}
		a.Indptr = append(a.Indptr, int64(len(a.Indices)))
	}
	return a
}

// effectRun adds acts to a new accumulator in batches of batch rows, with
// pre from the fitted midcoder as Report computes it, and returns the result.
func effectRun(t *testing.T, mlp *midcoder.MLP, fit, pinv *midcoder.Params, wDec []float32, d []float32, m, batch, group int) *EffectResult {
	t.Helper()
	ea, err := NewEffectAccumulator(mlp, fit, pinv, wDec)
	if err != nil {
		t.Fatal(err)
	}
	if group > 0 {
		ea.group = group
		ea.part = 3 // pinvSums' features in several parts too
	}
	md := midcoder.NewModel(mlp, fit, batch)
	for r0 := 0; r0 < m; r0 += batch {
		r1 := min(m, r0+batch)
		acts := denseActs(d[r0*fit.F:r1*fit.F], r1-r0, fit.F)
		ea.Add(acts, md.PreActivations(acts))
	}
	return ea.Result()
}

// checkStat compares got with want: NaN exactly where want is NaN,
// elsewhere within abs + rel·|want|.
func checkStat(t *testing.T, what string, got, want []float64, abs, rel float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
	}
	for i := range want {
		if math.IsNaN(want[i]) != math.IsNaN(got[i]) || !math.IsNaN(want[i]) && !(math.Abs(got[i]-want[i]) <= abs+rel*math.Abs(want[i])) {
			t.Errorf("%s[%d] = %.9g, want %.9g", what, i, got[i], want[i])
		}
	}
}

// A case worked by hand: C = 2, N = 3, F = 3, ReLU, zero biases.
//
//	W_in = [[1, 0, 1], [0, 1, −1]]   W_out = [[1, 0], [0, 1], [1, 1]]
//	W_mid = [[1, 0], [0, 1], [1, 1]] → drives d0 = [1, 0, 1], d1 = [0, 1, −1]
//
//	token  acts (f0, f1)  pre          φ'       e(f0)   e(f1)
//	t0     (1, 0)         [1, 0, 1]    [1,0,1]  [2, 1]  –
//	t1     (0, 2)         [0, 2, −2]   [0,1,0]  –       [0, 1]
//	t2     (1, 1)         [1, 1, 0]    [1,1,0]  [1, 0]  [0, 1]
//	t3     (1, 3)         [1, 3, −2]   [1,1,0]  [1, 0]  [0, 1]
//
// f0: Σe = [4, 1], Σ‖e‖ = √5 + 2: consistency √17/(2 + √5); W_dec[0] =
// [1, 0]: cos 4/√17. Its pinv mid vector [0, 1] drives [0, 1, −1]: e^pinv =
// [−1, −1], [0, 1], [0, 1], Σ = [−1, 1]: cos −3/√34.
// f1: Σe = [0, 3], Σ‖e‖ = 3: consistency 1; W_dec[1] = [1, 1]: cos 1/√2;
// pinv [1, 0] drives [1, 0, 1]: e^pinv = 0, [1, 0], [1, 0]: cos 0.
// f2 never fires: NaN everywhere. Pre-activations of exactly 0 (t0, t2)
// gate their neuron off.
func TestEffectHandComputed(t *testing.T) {
	blasimpl.Use(0)
	mlp := &midcoder.MLP{C: 2, N: 3, WIn: []float32{1, 0, 1, 0, 1, -1}, BIn: make([]float32, 3),
		WOut: []float32{1, 0, 0, 1, 1, 1}, BOut: make([]float32, 2)}
	fit := &midcoder.Params{F: 3, C: 2, WMid: []float32{1, 0, 0, 1, 1, 1}, BMid: make([]float32, 2)}
	pinv := &midcoder.Params{F: 3, C: 2, WMid: []float32{0, 1, 1, 0, 5, 5}, BMid: make([]float32, 2)}
	wDec := []float32{1, 0, 1, 1, 0, 1}
	acts := []float32{1, 0, 0, 0, 2, 0, 1, 1, 0, 1, 3, 0}
	nan := math.NaN()
	for _, batch := range []int{4, 1, 3} {
		for _, group := range []int{0, 1, 2} {
			r := effectRun(t, mlp, fit, pinv, wDec, acts, 4, batch, group)
			if r.Count[0] != 3 || r.Count[1] != 3 || r.Count[2] != 0 {
				t.Fatalf("counts %v", r.Count)
			}
			checkStat(t, "effect_consistency", r.EffectConsistency, []float64{math.Sqrt(17) / (2 + math.Sqrt(5)), 1, nan}, 1e-12, 1e-7)
			checkStat(t, "cos_effect_dec", r.CosEffectDec, []float64{4 / math.Sqrt(17), 1 / math.Sqrt2, nan}, 1e-12, 1e-7)
			checkStat(t, "cos_effect_pinv", r.CosEffectPinv, []float64{-3 / math.Sqrt(34), 0, nan}, 1e-12, 1e-7)
			checkStat(t, "mean_effect_norm", r.MeanEffectNorm, []float64{(2 + math.Sqrt(5)) / 3, 1, nan}, 1e-12, 1e-7)
		}
	}
	// Without pinv and W_dec their cosines are NaN; consistency is unchanged.
	r := effectRun(t, mlp, fit, nil, nil, acts, 4, 4, 0)
	checkStat(t, "cos_effect_dec without W_dec", r.CosEffectDec, []float64{nan, nan, nan}, 0, 0)
	checkStat(t, "cos_effect_pinv without pinv", r.CosEffectPinv, []float64{nan, nan, nan}, 0, 0)
	checkStat(t, "effect_consistency without pinv", r.EffectConsistency, []float64{math.Sqrt(17) / (2 + math.Sqrt(5)), 1, nan}, 1e-12, 1e-7)
	// A feature that fires only where all its neurons are gated off has no
	// effect at all: consistency and cosines NaN, mean norm 0.
	r = effectRun(t, mlp, fit, pinv, wDec, []float32{0, 0, 0}, 1, 1, 0)
	r2 := effectRun(t, mlp, &midcoder.Params{F: 3, C: 2, WMid: []float32{-1, 0, 0, 1, 1, 1}, BMid: make([]float32, 2)}, pinv, wDec, []float32{1, 0, 0}, 1, 1, 0)
	checkStat(t, "no tokens", r.EffectConsistency, []float64{nan, nan, nan}, 0, 0)
	checkStat(t, "gated off", r2.EffectConsistency, []float64{nan, nan, nan}, 0, 0)
	checkStat(t, "gated off", r2.CosEffectDec, []float64{nan, nan, nan}, 0, 0)
	checkStat(t, "gated off", r2.MeanEffectNorm, []float64{0, nan, nan}, 0, 0)
}

// bruteEffect is the reference: per token, per active feature, the
// formula in float64 (drive, gate, product with W_out), from pre as given.
func bruteEffect(mlp *midcoder.MLP, fit, pinv *midcoder.Params, wDec, acts, pre []float32, m int) *EffectResult {
	c, n, f := mlp.C, mlp.N, fit.F
	nan := math.NaN()
	r := &EffectResult{Count: make([]int64, f)}
	drive := func(w []float32, fi int) []float64 {
		d := make([]float64, n)
		for k := 0; k < n; k++ {
			for j := 0; j < c; j++ {
				d[k] += float64(w[fi*c+j]) * float64(mlp.WIn[j*n+k])
			}
		}
		return d
	}
	effect := func(d []float64, t int) []float64 {
		e := make([]float64, c)
		for k := 0; k < n; k++ {
			x := float64(pre[t*n+k])
			var g float64
			if mlp.Act == midcoder.ReLU {
				if x > 0 {
					g = 1
				}
			} else {
				g = geluNewDeriv64(x)
			}
			for j := 0; j < c; j++ {
				e[j] += g * d[k] * float64(mlp.WOut[k*c+j])
			}
		}
		return e
	}
	norm := func(v []float64) float64 { return math.Sqrt(dot64(v, v)) }
	cos := func(a, b []float64) float64 {
		if norm(a) == 0 || norm(b) == 0 {
			return nan
		}
		return dot64(a, b) / (norm(a) * norm(b))
	}
	for fi := 0; fi < f; fi++ {
		d := drive(fit.WMid, fi)
		var dp []float64
		if pinv != nil {
			dp = drive(pinv.WMid, fi)
		}
		s, sp := make([]float64, c), make([]float64, c)
		var ns float64
		for t := 0; t < m; t++ {
			if !(acts[t*f+fi] > 0) {
				continue
			}
			r.Count[fi]++
			e := effect(d, t)
			ns += norm(e)
			for j := range s {
				s[j] += e[j]
			}
			if pinv != nil {
				for j, v := range effect(dp, t) {
					sp[j] += v
				}
			}
		}
		ec, cd, cp, mn := nan, nan, nan, nan
		if r.Count[fi] > 0 {
			mn = ns / float64(r.Count[fi])
			if ns > 0 {
				ec = norm(s) / ns
			}
			if wDec != nil {
				dec := make([]float64, c)
				for j := range dec {
					dec[j] = float64(wDec[fi*c+j])
				}
				cd = cos(s, dec)
			}
			if pinv != nil {
				cp = cos(s, sp)
			}
		}
		r.EffectConsistency = append(r.EffectConsistency, ec)
		r.CosEffectDec = append(r.CosEffectDec, cd)
		r.CosEffectPinv = append(r.CosEffectPinv, cp)
		r.MeanEffectNorm = append(r.MeanEffectNorm, mn)
	}
	return r
}

// geluNewDeriv64 is gelu_new's derivative, written out independently of
// kernels: d/dx 0.5·x·(1 + tanh u), u = √(2/π)·(x + 0.044715·x³).
func geluNewDeriv64(x float64) float64 {
	k := math.Sqrt(2 / math.Pi)
	th := math.Tanh(k * (x + 0.044715*x*x*x))
	return 0.5*(1+th) + 0.5*x*(1-th*th)*k*(1+3*0.044715*x*x)
}

// On random data, in batches and groups of several sizes (a group boundary
// inside a token, a token split over batches of one row), the accumulator
// matches the brute-force reference, for both activations; a feature kept
// off every token has NaN statistics.
func TestEffectBruteForce(t *testing.T) {
	blasimpl.Use(0)
	const c, n, f, m = 8, 12, 10, 37
	r := rand.New(rand.NewPCG(7, 8))
	for _, act := range []midcoder.Activation{midcoder.ReLU, midcoder.GeluNew} {
		mlp := &midcoder.MLP{C: c, N: n, Act: act, WIn: testutil.RandNormal(r, c*n, 0.5), BIn: testutil.RandNormal(r, n, 0.3),
			WOut: testutil.RandNormal(r, n*c, 0.5), BOut: make([]float32, c)}
		fit := &midcoder.Params{F: f, C: c, WMid: testutil.RandNormal(r, f*c, 1), BMid: testutil.RandNormal(r, c, 0.2)}
		pinv := &midcoder.Params{F: f, C: c, WMid: testutil.RandNormal(r, f*c, 1), BMid: make([]float32, c)}
		wDec := testutil.RandNormal(r, f*c, 1)
		acts := make([]float32, m*f)
		for i := range acts {
			if i%f != 3 && r.Float64() < 0.35 {
				acts[i] = float32(r.Float64() * 2)
			}
		}
		pre := make([]float32, m*n)
		md := midcoder.NewModel(mlp, fit, m)
		copy(pre, md.PreActivations(denseActs(acts, m, f)))
		want := bruteEffect(mlp, fit, pinv, wDec, acts, pre, m)
		if want.Count[3] != 0 || !math.IsNaN(want.EffectConsistency[3]) {
			t.Fatal("feature 3 should never fire")
		}
		for _, bg := range [][2]int{{m, 0}, {5, 3}, {1, 2}, {16, 7}} {
			got := effectRun(t, mlp, fit, pinv, wDec, acts, m, bg[0], bg[1])
			for i := range want.Count {
				if got.Count[i] != want.Count[i] {
					t.Fatalf("%v, batch %d group %d: count[%d] = %d, want %d", act, bg[0], bg[1], i, got.Count[i], want.Count[i])
				}
			}
			checkStat(t, act.String()+" effect_consistency", got.EffectConsistency, want.EffectConsistency, 1e-6, 1e-5)
			checkStat(t, act.String()+" cos_effect_dec", got.CosEffectDec, want.CosEffectDec, 1e-6, 1e-5)
			checkStat(t, act.String()+" cos_effect_pinv", got.CosEffectPinv, want.CosEffectPinv, 1e-6, 1e-5)
			checkStat(t, act.String()+" mean_effect_norm", got.MeanEffectNorm, want.MeanEffectNorm, 1e-6, 1e-5)
		}
		// One goroutine gives the same bits.
		all := effectRun(t, mlp, fit, pinv, wDec, acts, m, 16, 7)
		prev := runtime.GOMAXPROCS(1)
		one := effectRun(t, mlp, fit, pinv, wDec, acts, m, 16, 7)
		runtime.GOMAXPROCS(prev)
		for i := range one.EffectConsistency {
			if !sameBits(one.EffectConsistency[i], all.EffectConsistency[i]) || !sameBits(one.CosEffectPinv[i], all.CosEffectPinv[i]) {
				t.Errorf("%v feature %d: GOMAXPROCS 1 gives %v, %v; %d gives %v, %v", act, i,
					one.EffectConsistency[i], one.CosEffectPinv[i], prev, all.EffectConsistency[i], all.CosEffectPinv[i])
			}
		}
	}
}

// actDeriv's gelu_new derivative matches central finite differences of the
// float64 formula (step 1e-5: truncation ~1e-11, rounding ~1e-11), and
// ReLU's is the 0/1 gate with 0 at 0.
func TestEffectActDeriv(t *testing.T) {
	gelu := func(x float64) float64 {
		return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
	}
	var pre []float32
	for x := -9.0; x <= 9; x += 0.0625 {
		pre = append(pre, float32(x))
	}
	pre = append(pre, 0, -1e-3, 1e-3, 30, -30)
	g := make([]float32, len(pre))
	actDeriv(g, pre, midcoder.GeluNew)
	const h = 1e-5
	for i, v := range pre {
		x := float64(v)
		fd := (gelu(x+h) - gelu(x-h)) / (2 * h)
		if math.Abs(float64(g[i])-fd) > 1e-6 {
			t.Errorf("gelu_new'(%g) = %.9g, finite difference %.9g", x, g[i], fd)
		}
	}
	actDeriv(g, pre, midcoder.ReLU)
	for i, v := range pre {
		want := float32(0)
		if v > 0 {
			want = 1
		}
		if g[i] != want {
			t.Errorf("relu'(%g) = %g, want %g", v, g[i], want)
		}
	}
}

// The layer-1 fixtures against PyTorch's float64, token-by-token
// computation: the fitted midcoder of golden/midcoder.safetensors (relu3),
// the pinv baseline of golden/pinv.safetensors, the tiny transcoder's
// W_dec and acts on 32 tokens. The Go side computes pre in float32
// (PreActivations), the products in float32 and the sums in float64: 1e-5
// relative.
func TestEffectMatchesTorch(t *testing.T) {
	blasimpl.Use(0)
	g := testutil.Golden(t, goldenEffect)
	w := testutil.Golden(t, goldenWeight)
	mc := testutil.Golden(t, "../../testdata/golden/midcoder.safetensors")
	pv := testutil.Golden(t, goldenPinv)
	tcg := testutil.Golden(t, "../../testdata/golden/transcoder.safetensors")
	tc, err := transcoder.Load(tcFile)
	if err != nil {
		t.Fatal(err)
	}
	const c, n, f, m = 16, 64, 64, 32
	fit := &midcoder.Params{F: f, C: c, WMid: mc["relu3.W_mid"], BMid: mc["relu3.b_mid"]}
	pinv := &midcoder.Params{F: f, C: c, WMid: pv["layer1.W_mid_f64"], BMid: make([]float32, c)}
	for _, act := range []midcoder.Activation{midcoder.ReLU, midcoder.GeluNew} {
		mlp := &midcoder.MLP{C: c, N: n, Act: act, WIn: w["blocks.1.mlp.W_in"], BIn: w["blocks.1.mlp.b_in"],
			WOut: w["blocks.1.mlp.W_out"], BOut: w["blocks.1.mlp.b_out"]}
		for _, batch := range []int{m, 16, 5} {
			got := effectRun(t, mlp, fit, pinv, tc.WDec, tcg["acts.1"], m, batch, 100)
			name := act.String()
			cnt := make([]float64, f)
			for i, v := range got.Count {
				cnt[i] = float64(v)
			}
			checkStat(t, name+" count", cnt, dtype.Float64s(g[name+".count"]), 0, 0)
			checkStat(t, name+" effect_consistency", got.EffectConsistency, dtype.Float64s(g[name+".effect_consistency"]), 1e-6, 1e-5)
			checkStat(t, name+" cos_effect_dec", got.CosEffectDec, dtype.Float64s(g[name+".cos_effect_dec"]), 1e-6, 1e-5)
			checkStat(t, name+" cos_effect_pinv", got.CosEffectPinv, dtype.Float64s(g[name+".cos_effect_pinv"]), 1e-6, 1e-5)
			checkStat(t, name+" mean_effect_norm", got.MeanEffectNorm, dtype.Float64s(g[name+".mean_effect_norm"]), 1e-6, 1e-5)
		}
	}
}

func sameBits(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }

// NewEffectAccumulator refuses inconsistent shapes.
func TestEffectBadInput(t *testing.T) {
	mlp := &midcoder.MLP{C: 2, N: 3, WIn: make([]float32, 6), BIn: make([]float32, 3), WOut: make([]float32, 6)}
	fit := midcoder.NewParams(4, 2)
	for name, tc := range map[string]struct {
		mlp       *midcoder.MLP
		fit, pinv *midcoder.Params
		wDec      []float32
	}{
		"no MLP":     {nil, fit, nil, nil},
		"no fit":     {mlp, nil, nil, nil},
		"fit width":  {mlp, midcoder.NewParams(4, 3), nil, nil},
		"pinv shape": {mlp, fit, midcoder.NewParams(5, 2), nil},
		"W_dec":      {mlp, fit, nil, make([]float32, 7)},
		"W_out":      {&midcoder.MLP{C: 2, N: 3, WIn: make([]float32, 6), WOut: make([]float32, 5)}, fit, nil, nil},
	} {
		if _, err := NewEffectAccumulator(tc.mlp, tc.fit, tc.pinv, tc.wDec); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
