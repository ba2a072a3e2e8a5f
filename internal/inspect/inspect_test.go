package inspect

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// A hand-made cache of 2 sequences × 2 tokens × C = 2 and a 3-feature
// transcoder whose activations and reconstructions are worked out by hand.
func TestRunHandChecked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	man := actcache.Manifest{Layer: 0, DModel: 2, ContextLength: 2, NSequences: 2, DType: "float32",
		Hooks: actcache.HookNames(0), SequencesPerShard: 1, Data: actcache.Data{Kind: "test"}}
	w, err := actcache.Create(dir, man)
	if err != nil {
		t.Fatal(err)
	}
	// x rows: (1,−1) (−1,1) | (1,−1) (2,−2);  y rows: (1,1) (0,2) | (3,−1) (0,0)
	xs := [][]float32{{1, -1, -1, 1}, {1, -1, 2, -2}}
	ys := [][]float32{{1, 1, 0, 2}, {3, -1, 0, 0}}
	for i := 0; i < 2; i++ {
		if err := w.WriteShard(i, []int32{1, 2}, xs[i], ys[i], nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	c, err := actcache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Features: f0 = relu(x0), f1 = relu(x1), f2 = relu(x0 − 3) (never fires
	// on this data). Decoder: f0 → (1, 0), f1 → (0, 1), f2 → (5, 5); no biases.
	tc := &transcoder.Transcoder{DIn: 2, DOut: 2, DSAE: 3, Layer: 0,
		WEnc: []float32{1, 0, 1, 0, 1, 0}, BEnc: []float32{0, 0, -3},
		WDec: []float32{1, 0, 0, 1, 5, 5}, BDec: []float32{0, 0}, BDecOut: []float32{0, 0}}
	rep, err := Run(context.Background(), c, Options{Transcoder: tc, TransProv: provenance.File{Path: "tc"}, LogFreq: []float32{-1, -4, -5}})
	if err != nil {
		t.Fatal(err)
	}
	// Reconstructions: (1,0) (0,1) (1,0) (2,0). Errors vs y: (0,1) (0,1) (−2,1) (2,0):
	// squared sum 1+1+5+4 = 11 over 8 elements. mean(y²) = (2+4+10+0)/8 = 2.
	q := rep.Transcoder
	want := []struct {
		name      string
		got, want float64
	}{
		{"l0_mean", q.L0Mean, 1},
		{"mse", q.MSE, 11.0 / 8},
		{"nmse", q.NMSE, 11.0 / 16},
		{"fire_frac", q.FireFrac, 2.0 / 3},
		{"features_never_firing", float64(q.FeaturesNeverFiring), 1},
		{"live (fire on the cache: 2 of 3)", float64(q.Live), 2},
		{"frequent_in_training", float64(*q.FrequentInTraining), 1},
		{"live_features (frequent_in_training's former name)", float64(*q.LiveFeatures), 1},
		{"x mean", rep.X.Mean, 0},
		{"x mean_square", rep.X.MeanSquare, (2 + 2 + 2 + 8) / 8.0},
		{"x max_abs_token_mean", rep.X.MaxAbsRowMean, 0},
		{"y mean", rep.Y.Mean, 0.75},
		{"y mean_square", rep.Y.MeanSquare, 2},
		{"y min", rep.Y.Min, -1},
		{"y max", rep.Y.Max, 3},
		{"y max_abs_token_mean", rep.Y.MaxAbsRowMean, 1},
		{"y mean_token_norm", rep.Y.MeanNorm, (math.Sqrt(2) + 2 + math.Sqrt(10) + 0) / 4},
		{"y mean_token_variance", rep.Y.MeanRowVar, (0 + 1 + 4 + 0) / 4.0},
	}
	for _, w := range want {
		if math.Abs(w.got-w.want) > 1e-12 {
			t.Errorf("%s = %g, want %g", w.name, w.got, w.want)
		}
	}
	if q.ActsSource != "encoded" {
		t.Errorf("acts_source = %q", q.ActsSource)
	}
}
