package analysis

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// report on a midcoder holding a NaN (issue 18, row 5: it said every
// feature was perfectly context-independent) is refused naming the tensor
// and index, for the fitted midcoder and the pinv one.
func TestReportRefusesNonFiniteMidcoder(t *testing.T) {
	spoil := func(p *midcoder.Params, w, b int, v float32) *midcoder.Params {
		q := &midcoder.Params{F: p.F, C: p.C, WMid: slices.Clone(p.WMid), BMid: slices.Clone(p.BMid)}
		if w >= 0 {
			q.WMid[w] = v
		}
		if b >= 0 {
			q.BMid[b] = v
		}
		return q
	}
	nan := float32(math.NaN())
	for _, tc := range []struct {
		name      string
		fit, pinv *midcoder.Params
		want      string
	}{
		{"NaN in the fit's W_mid", spoil(handFit, 2*2+1, -1, nan), handPinv, "the fitted midcoder's W_mid holds NaN at [2, 1]"},
		{"Inf in the fit's b_mid", spoil(handFit, -1, 0, float32(math.Inf(1))), nil, "the fitted midcoder's b_mid holds +Inf at [0]"},
		{"NaN in the pinv's W_mid", handFit, spoil(handPinv, 0, -1, nan), "the pinv midcoder's W_mid holds NaN at [0, 0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Report(context.Background(), ReportInput{Cache: handCache(t, true), MLP: handMLP(), Fit: tc.fit, Pinv: tc.pinv, TopK: 2}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Report error = %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// pinv-baseline with an Inf in W_dec (issue 18, row 5: it wrote Inf, exit
// 0) is refused, and so is a NaN or Inf in W_in or W_out, each naming the
// matrix and index; a result beyond float32's range is refused too.
func TestPinvBaselineRefusesNonFinite(t *testing.T) {
	const f, c, n = 3, 2, 2
	wDec := []float32{1, 0, 0, 1, 1, 1}
	wIn := []float32{2, 0, 0, 1}
	wOut := []float32{1, 0, 0, 1}
	if _, _, err := PinvBaseline(wDec, wIn, wOut, f, c, n); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		m    []float32
		k    int
		v    float32
		want string
	}{
		{"Inf in W_dec", wDec, 2*2 + 1, float32(math.Inf(1)), "W_dec holds +Inf at [2, 1]"},
		{"NaN in W_in", wIn, 1, float32(math.NaN()), "W_in holds NaN at [0, 1]"},
		{"-Inf in W_out", wOut, 2, float32(math.Inf(-1)), "W_out holds -Inf at [1, 0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := tc.m[tc.k]
			tc.m[tc.k] = tc.v
			defer func() { tc.m[tc.k] = old }()
			out, _, err := PinvBaseline(wDec, wIn, wOut, f, c, n)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("PinvBaseline = %v, %v; want an error mentioning %q", out, err, tc.want)
			}
		})
	}
}

// A finite baseline beyond float32's range is refused: W_in @ W_out =
// 1e-30·I keeps every singular value, so its pinv scales W_dec by 1e30.
func TestPinvBaselineRefusesOverflow(t *testing.T) {
	small := []float32{1e-30, 0, 0, 1e-30}
	out, _, err := PinvBaseline([]float32{0, 0, 0, 1e9}, small, []float32{1, 0, 0, 1}, 2, 2, 2)
	if err == nil || !strings.Contains(err.Error(), "W_mid holds +Inf at [1, 1]") {
		t.Errorf("PinvBaseline = %v, %v; want an error about W_mid[1, 1]", out, err)
	}
}

// PinvMidcoder's refusal names the transcoder file W_dec came from.
func TestPinvMidcoderNamesTheTranscoder(t *testing.T) {
	m := gpt2.Random(gpt2.Config{NLayer: 1, DModel: 4, NHead: 1, DHead: 4, DMLP: 8, NCtx: 4, DVocab: 5}, 1)
	tc := transcoder.Random(4, 6, 4, 2)
	tc.Path = "/models/tc.pt"
	tc.WDec[5] = float32(math.Inf(1))
	_, _, err := PinvMidcoder(m, 0, tc)
	if err == nil || !strings.Contains(err.Error(), "W_dec holds +Inf at [1, 1]") || !strings.Contains(err.Error(), tc.Path) {
		t.Errorf("PinvMidcoder error = %v", err)
	}
}
