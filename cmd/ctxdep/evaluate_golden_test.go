package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/ctxdep/ctxdep/internal/blasimpl"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/npy"
	"github.com/ctxdep/ctxdep/internal/provenance"
)

// evalGoldenDir holds the golden numbers of TestEvaluatePinvGolden and
// the midcoder weights they were computed with.
const evalGoldenDir = "../../testdata/golden/evaluate"

// evalGolden is testdata/golden/evaluate/expected.json.
type evalGolden struct {
	Evaluate struct {
		Tokens         int64   `json:"tokens"`
		Predictions    int64   `json:"predictions"`
		CEClean        float64 `json:"ce_clean"`
		CETranscoder   float64 `json:"ce_transcoder"`
		CEZeroAblation float64 `json:"ce_zero_ablation"`
		MSETranscoder  float64 `json:"mse_transcoder"`
		NMSETranscoder float64 `json:"nmse_transcoder"`
		Midcoders      []struct {
			Act  string  `json:"act"`
			WMid string  `json:"w_mid"`
			BMid string  `json:"b_mid"`
			CE   float64 `json:"ce"`
			MSE  float64 `json:"mse"`
			NMSE float64 `json:"nmse"`
		} `json:"midcoders"`
	} `json:"evaluate"`
	Pinv struct {
		SigmaMax float64   `json:"sigma_max"`
		RTol     float64   `json:"rtol"`
		Cutoff   float64   `json:"cutoff"`
		Rank     int       `json:"rank"`
		Sigma    []float64 `json:"sigma"`
		ReLU     pinvLoss  `json:"relu"`
		GeluNew  pinvLoss  `json:"gelu_new"`
	} `json:"pinv_baseline"`
}

type pinvLoss struct {
	Loss     float64 `json:"loss"`
	LossNorm float64 `json:"loss_norm"`
}

// Tolerances of TestEvaluatePinvGolden. ctxdep runs the model, the
// transcoder and the midcoder forward in float32 (sums in float64) and
// holds the processed weights as float32; the golden values are float64
// throughout, so the gap is float32 rounding, and it depends on the BLAS
// kernel's summation order. Largest errors over every number of a kind,
// measured on linux/amd64 (an AVX-512 AMD EPYC; Debian's OpenBLAS 0.3.21,
// go test -v logs each error and the worst of each kind) with the pure-Go
// build and the OpenBLAS build under every kernel OpenBLAS accepts via
// OPENBLAS_CORETYPE on that CPU, which round in four distinct ways:
//
//	                 pure-Go   Cooperlake  Haswell   Sandybridge
//	                           (SkylakeX)  (Zen)     (Nehalem, Core2, ...)
//	tolCE   (rel)    6.8e-9    6.8e-9      1.14e-8   9.6e-9    gelu_new midcoder ce
//	tolDCE  (nats)   9.2e-8    2.9e-8      1.0e-7    1.45e-7   gelu_new ce - ce_clean
//	tolMSE  (rel)    5.8e-8    6.4e-8      6.0e-8    7.7e-8    relu midcoder nmse
//	tolPinv (rel)    8.7e-7    9.4e-7      9.0e-7    8.1e-7    pinv loss_norm
//	tolSpec (/σmax)  9.0e-9    9.0e-9      9.0e-9    9.0e-9    kept σ[3]
//
// Cooperlake is OpenBLAS's own choice on that CPU (SkylakeX and
// SapphireRapids round the same), Haswell the kernel that make test forces
// for its second OpenBLAS run on AVX-512 machines; Opteron, Bulldozer,
// Piledriver, Steamroller and Excavator die there with SIGILL (FMA4 and
// other instructions the CPU lacks), so are unmeasured.
// GOMAXPROCS 1, 2 and 16 give the same numbers. Each tolerance is 13 to
// 17 times the worst error of its kind over all of these.
//
// tolPinv and tolSpec cover a fixed error, not kernel noise: rounding the
// processed W_in and W_out to float32 moves the spectrum by 9.0e-9·σ_max
// (σ[3]; ctxdep's kept σ match svdvals of the float32-rounded W_in @ W_out
// to 1e-12) and the pinv loss by 8.9e-7 (the generator's diagnostics
// report it), because W_dec @ pinv(W_in @ W_out) amplifies it.
//
// The CEs are also compared as differences from ce_clean (what the
// research reads), in absolute nats: with only the absolute CEs checked,
// errors of opposite sign in ce_clean and a splice could move their
// difference by twice tolCE·CE.
//
// What they catch, checked by mutation (pure-Go and OpenBLAS Haswell
// alike): the gelu_new midcoder and pinv-baseline run through relu move
// that midcoder's ce by 3.3e-4, its ce - ce_clean by 3.9e-3 nats, its mse
// by 7.1e-3 and the pinv loss by 4.4e-3; nudging one of the relu
// midcoder's 1024 W_mid entries (typically 0.3) by 3e-4 moves its ce by
// 1.7e-7 and its mse by 1.2e-6 (by 1e-3: ce - ce_clean by 6.6e-6 nats), and
// fails, while by 1e-4 it stays within float32 rounding and passes; GELU's
// cubic coefficient 0.044715 -> 0.04471 in the AVX2 kernel moves the relu
// midcoder's nmse by 1.5e-6 and the gelu_new midcoder's mse by 1.2e-6 and
// fails on tolMSE (the tiny random model's CEs move less, ≤ 4.7e-7 nats);
// golden ce_clean and ce_transcoder moved 1.2e-6 nats in opposite
// directions pass tolCE and fail tolDCE; a kept σ moved by 2e-7·σ_max, or
// the pinv gelu_new loss by 2e-5, fails.
var (
	tolCE   = tolerance{"tolCE", 1.5e-7}   // relative; the CEs are ≈ 11.8 nats, so ≈ 1.8e-6 nats
	tolDCE  = tolerance{"tolDCE", 2e-6}    // nats, absolute: each splice's ce - ce_clean (0.10 to 0.27 nats)
	tolMSE  = tolerance{"tolMSE", 1e-6}    // relative: mse and nmse of the transcoder and of each midcoder
	tolPinv = tolerance{"tolPinv", 1.5e-5} // relative: pinv-baseline loss and loss_norm
	tolSpec = tolerance{"tolSpec", 1.5e-7} // relative to σ_max: σ_max, cutoff and the kept singular values
)

// tolerance is the largest error TestEvaluatePinvGolden accepts for one
// kind of number, named for its log.
type tolerance struct {
	name string
	max  float64
}

// goldenCheck compares ctxdep's numbers with the golden ones and keeps the
// largest error of each tolerance, which the test logs at the end (go test
// -v) for re-measuring the margins on another machine or BLAS kernel.
type goldenCheck struct {
	t     *testing.T
	worst map[tolerance]float64 // the largest error seen of each tolerance
	order []tolerance
}

// near fails unless |got - want| / scale <= tol, and logs the error either
// way; scale is |want| for a relative error, 1 for an absolute one.
func (c *goldenCheck) near(what string, got, want, scale float64, tol tolerance) {
	c.t.Helper()
	e := math.Abs(got-want) / scale
	c.t.Logf("%-44s got %.12g want %.12g err %.2e (%s %.2g)", what, got, want, e, tol.name, tol.max)
	if !(e <= tol.max) {
		c.t.Errorf("%s = %.12g, want %.12g (error %.3g > %s %g)", what, got, want, e, tol.name, tol.max)
	}
	if _, ok := c.worst[tol]; !ok {
		c.order = append(c.order, tol)
	}
	c.worst[tol] = math.Max(c.worst[tol], e)
}

// rel compares relative to |want|.
func (c *goldenCheck) rel(what string, got, want float64, tol tolerance) {
	c.t.Helper()
	c.near(what, got, want, math.Abs(want), tol)
}

// summary logs the largest error of each tolerance and its margin.
func (c *goldenCheck) summary(kernel string) {
	c.t.Helper()
	for _, tol := range c.order {
		c.t.Logf("worst %-7s %.2e (tolerance %.2g, %.0fx; BLAS %s)", tol.name, c.worst[tol], tol.max, tol.max/c.worst[tol], kernel)
	}
}

// TestEvaluatePinvGolden checks `evaluate --midcoder` and `pinv-baseline
// --cache` against an independent float64 reference.
//
// What it proves: on the tiny fixtures (layer 1 of testdata/tiny-gpt2, its
// transcoder in testdata/tiny-transcoders, the 6 x 16 tokens of
// testdata/tokens/tiny-int64.npy), with the CPU backend and the BLAS
// backend and kernel it runs under (logged), ctxdep's ce_clean,
// ce_transcoder, ce_zero_ablation and the ce of two fixed midcoders (one
// through relu, one through gelu_new), each splice's ce - ce_clean, the
// mse and nmse of the transcoder and of each midcoder, and pinv-baseline's
// loss and loss_norm through relu and gelu_new (from the cache's stored
// acts, and through relu from acts encoded again), σ_max, cutoff, rtol,
// rank and kept singular values, all equal the reference's to within
// float32 rounding (the tolerances above). It does not cover other layers,
// GPT-2-small's shapes or the CUDA backend.
//
// Where the golden values came from: testdata/gen/gen_eval_golden.py
// computed them with PyTorch in float64 from the same fixtures (the HF
// forward and the TransformerLens-processed forward, which it asserts
// agree to 1e-9; the stored numbers are the latter's) and wrote them to
// testdata/golden/evaluate/expected.json, with the midcoders' seeded
// weights as the .npy files next to it. No Go code of ctxdep, and none of
// its output, was used to make them. The committed file was written with
// Debian's python3-torch (versions in the file) under
// OPENBLAS_CORETYPE=Haswell; other BLAS kernels change the reference in
// its last digits (≤ 1e-14 relative), far below the tolerances.
func TestEvaluatePinvGolden(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(evalGoldenDir, "expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g evalGolden
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatalf("expected.json: %v", err)
	}
	if len(g.Evaluate.Midcoders) != 2 {
		t.Fatalf("expected.json has %d midcoders, want 2", len(g.Evaluate.Midcoders))
	}
	info := blasimpl.Use(0)
	kernel := info.Backend + "/" + info.Kernel
	chk := &goldenCheck{t: t, worst: map[tolerance]float64{}}
	defer chk.summary(kernel)
	cache := buildCache(t, true)
	modelProv, err := provenance.Hash(filepath.Join(tinyModel, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	tcProv, err := provenance.Hash(filepath.Join(tinyTC, "final_sparse_autoencoder_gpt2-small_blocks.1.ln2.hook_normalized_64.pt"))
	if err != nil {
		t.Fatal(err)
	}

	// The golden midcoders as midcoder files, written by ctxdep's own writer.
	dir := t.TempDir()
	args := []string{"evaluate", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--cache", cache, "--json"}
	var files []string
	for _, m := range g.Evaluate.Midcoders {
		w, ws, err := npy.ReadFloat32(filepath.Join(evalGoldenDir, m.WMid))
		if err != nil {
			t.Fatal(err)
		}
		b, bs, err := npy.ReadFloat32(filepath.Join(evalGoldenDir, m.BMid))
		if err != nil {
			t.Fatal(err)
		}
		if len(ws) != 2 || len(bs) != 1 || ws[1] != bs[0] {
			t.Fatalf("%s %v, %s %v: want [F, C] and [C]", m.WMid, ws, m.BMid, bs)
		}
		p := midcoder.NewParams(ws[0], ws[1])
		copy(p.WMid, w)
		copy(p.BMid, b)
		meta := midcoder.Meta{Layer: 1, DModel: ws[1], DSAE: ws[0], Method: "fit",
			Config:     midcoder.Config{Layer: 1, ContextLength: 16, Act: m.Act},
			Provenance: midcoder.Provenance{Model: modelProv, Transcoder: tcProv},
			CreatedBy:  "TestEvaluatePinvGolden"}
		f := filepath.Join(dir, m.Act+".safetensors")
		if err := midcoder.Save(f, p, meta); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
		args = append(args, "--midcoder", f)
	}

	code, stdout, errs := ctxdep(t, args...)
	if code != 0 {
		t.Fatalf("evaluate: status %d, stderr %s", code, errs)
	}
	var ev struct {
		Tokens         int64   `json:"tokens"`
		Predictions    int64   `json:"predictions"`
		CEClean        float64 `json:"ce_clean"`
		CETranscoder   float64 `json:"ce_transcoder"`
		MSETranscoder  float64 `json:"mse_transcoder"`
		NMSETranscoder float64 `json:"nmse_transcoder"`
		CEZeroAblation float64 `json:"ce_zero_ablation"`
		Midcoders      []struct {
			File string  `json:"file"`
			CE   float64 `json:"ce"`
			MSE  float64 `json:"mse"`
			NMSE float64 `json:"nmse"`
		} `json:"midcoders"`
	}
	if err := json.Unmarshal([]byte(stdout), &ev); err != nil {
		t.Fatalf("evaluate --json: %v: %s", err, stdout)
	}
	want := g.Evaluate
	if ev.Tokens != want.Tokens || ev.Predictions != want.Predictions {
		t.Errorf("evaluate: %d tokens, %d predictions; want %d, %d", ev.Tokens, ev.Predictions, want.Tokens, want.Predictions)
	}
	chk.rel("evaluate ce_clean", ev.CEClean, want.CEClean, tolCE)
	chk.rel("evaluate ce_transcoder", ev.CETranscoder, want.CETranscoder, tolCE)
	chk.rel("evaluate ce_zero_ablation", ev.CEZeroAblation, want.CEZeroAblation, tolCE)
	chk.rel("evaluate mse_transcoder", ev.MSETranscoder, want.MSETranscoder, tolMSE)
	chk.rel("evaluate nmse_transcoder", ev.NMSETranscoder, want.NMSETranscoder, tolMSE)
	// The research reads each splice's CE against the clean CE: compare the
	// differences too, in nats, so that errors of opposite sign in ce_clean
	// and a splice (each within tolCE) cannot move a difference by twice it.
	chk.near("evaluate ce_transcoder - ce_clean", ev.CETranscoder-ev.CEClean, want.CETranscoder-want.CEClean, 1, tolDCE)
	chk.near("evaluate ce_zero_ablation - ce_clean", ev.CEZeroAblation-ev.CEClean, want.CEZeroAblation-want.CEClean, 1, tolDCE)
	if len(ev.Midcoders) != len(files) {
		t.Fatalf("evaluate: %d midcoders in --json, want %d: %s", len(ev.Midcoders), len(files), stdout)
	}
	for i, m := range want.Midcoders {
		got := ev.Midcoders[i]
		if got.File != files[i] {
			t.Errorf("midcoders[%d].file %q, want %q", i, got.File, files[i])
		}
		chk.rel("evaluate midcoder "+m.Act+" ce", got.CE, m.CE, tolCE)
		chk.near("evaluate midcoder "+m.Act+" ce - ce_clean", got.CE-ev.CEClean, m.CE-want.CEClean, 1, tolDCE)
		chk.rel("evaluate midcoder "+m.Act+" mse", got.MSE, m.MSE, tolMSE)
		chk.rel("evaluate midcoder "+m.Act+" nmse", got.NMSE, m.NMSE, tolMSE)
	}

	// pinv-baseline on the cache: its stored acts, and (a cache without
	// them) the acts encoded again from x.
	noActs := buildCache(t, false)
	for _, c := range []struct {
		cache, act string
		want       pinvLoss
	}{
		{cache, "relu", g.Pinv.ReLU},
		{cache, "gelu_new", g.Pinv.GeluNew},
		{noActs, "relu", g.Pinv.ReLU},
	} {
		name := "pinv " + c.act
		if c.cache == noActs {
			name += " (encoded acts)"
		}
		out := filepath.Join(t.TempDir(), "pinv.safetensors")
		code, stdout, errs := ctxdep(t, "pinv-baseline", "-q", "--model", tinyModel, "--transcoders", tinyTC,
			"--cache", c.cache, "--act", c.act, "--out", out, "--json")
		if code != 0 {
			t.Fatalf("%s: status %d, stderr %s", name, code, errs)
		}
		var res struct { // pinv-baseline --json, as a user reads it
			Rank     int       `json:"rank"`
			RTol     float64   `json:"rtol"`
			SigmaMax float64   `json:"sigma_max"`
			Loss     *float64  `json:"loss"`
			LossNorm *float64  `json:"loss_norm"`
			Cutoff   float64   `json:"cutoff"`
			Sigma    []float64 `json:"sigma"`
		}
		if err := json.Unmarshal([]byte(stdout), &res); err != nil {
			t.Fatalf("%s --json: %v: %s", name, err, stdout)
		}
		if res.Loss == nil || res.LossNorm == nil {
			t.Fatalf("%s --json has no loss or loss_norm: %s", name, stdout)
		}
		chk.rel(name+" loss", *res.Loss, c.want.Loss, tolPinv)
		chk.rel(name+" loss_norm", *res.LossNorm, c.want.LossNorm, tolPinv)
		chk.rel(name+" sigma_max", res.SigmaMax, g.Pinv.SigmaMax, tolSpec)
		chk.rel(name+" cutoff", res.Cutoff, g.Pinv.Cutoff, tolSpec)
		if res.RTol != g.Pinv.RTol || res.Rank != g.Pinv.Rank || len(res.Sigma) != len(g.Pinv.Sigma) {
			t.Errorf("%s: rtol %g, rank %d, %d singular values; want %g, %d, %d",
				name, res.RTol, res.Rank, len(res.Sigma), g.Pinv.RTol, g.Pinv.Rank, len(g.Pinv.Sigma))
		}
		for i := 0; i < g.Pinv.Rank && i < len(res.Sigma); i++ {
			// The kept singular values, relative to σ_max; the dropped one is
			// round-off (≈1e-16 in float64, ≈1e-15 from float32 weights), with
			// no reference value.
			chk.near(fmt.Sprintf("%s sigma[%d] (/σ_max)", name, i), res.Sigma[i], g.Pinv.Sigma[i], g.Pinv.SigmaMax, tolSpec)
		}
	}
}
