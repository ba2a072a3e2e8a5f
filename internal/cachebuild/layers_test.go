package cachebuild

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/kernels"
	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/safetensors"
	"github.com/ctxdep/ctxdep/internal/testutil"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// layerOptions is a build of layers (each with its own transcoder's acts)
// into dir/layer-LL.
func layerOptions(t *testing.T, f fixture, dir string, layers ...int) Options {
	t.Helper()
	o := f.options("", layers[0])
	o.Layers = nil
	for _, l := range layers {
		file := fmt.Sprintf("../../testdata/tiny-transcoders/final_sparse_autoencoder_gpt2-small_blocks.%d.ln2.hook_normalized_64.pt", l)
		tc, err := transcoder.Load(file)
		if err != nil {
			t.Fatal(err)
		}
		tp, err := provenance.Hash(file)
		if err != nil {
			t.Fatal(err)
		}
		o.Layers = append(o.Layers, Layer{Layer: l, Out: actcache.LayerDir(dir, l), Transcoder: tc, TransProv: &tp})
	}
	return o
}

// sameShards reports the first shard file of dir a that differs from b's.
func sameShards(t *testing.T, a, b string) {
	t.Helper()
	ma, err := actcache.ReadManifest(a)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ma.Shards {
		x, _ := os.ReadFile(filepath.Join(a, actcache.ShardName(i)))
		y, err := os.ReadFile(filepath.Join(b, actcache.ShardName(i)))
		if err != nil || !bytes.Equal(x, y) {
			t.Errorf("%s: shard %d differs from %s's (%v)", a, i, b, err)
		}
	}
}

// One pass over layers 0, 1 and 2 writes, for each layer, shard files
// identical byte for byte (tokens, x, y, acts) to a build of that layer
// alone: the blocks before a layer run the same GEMMs whether the pass
// stops there or goes on.
func TestLayerSetMatchesOneLayerBuilds(t *testing.T) {
	f := load(t)
	dir := t.TempDir()
	set := layerOptions(t, f, filepath.Join(dir, "set"), 0, 1, 2)
	mans, err := Build(context.Background(), set)
	if err != nil {
		t.Fatal(err)
	}
	if len(mans) != 3 {
		t.Fatalf("%d manifests for 3 layers", len(mans))
	}
	for i, l := range []int{0, 1, 2} {
		if mans[i].Layer != l || !mans[i].Complete || !mans[i].WithActs {
			t.Errorf("layer %d manifest %+v", l, mans[i])
		}
		one := layerOptions(t, f, filepath.Join(dir, fmt.Sprint("one-", l)), l)
		if _, err := Build(context.Background(), one); err != nil {
			t.Fatal(err)
		}
		sameShards(t, set.Layers[i].Out, one.Layers[0].Out)
	}
}

// A layer set cut short resumes: each layer keeps the shards it has and
// the batches any layer still needs are computed again; the result is the
// uninterrupted build's, byte for byte. A layer whose cache was removed
// is rebuilt alone from the same pass.
func TestLayerSetResume(t *testing.T) {
	f := load(t)
	dir := t.TempDir()
	ref := layerOptions(t, f, filepath.Join(dir, "ref"), 1, 2)
	if _, err := Build(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	o := layerOptions(t, f, filepath.Join(dir, "cut"), 1, 2)
	o.Rows = failingRows{f.rows, 4}
	if _, err := Build(context.Background(), o); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Build error = %v", err)
	}
	o.Rows = f.rows
	if _, err := Build(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	for i := range o.Layers {
		sameShards(t, o.Layers[i].Out, ref.Layers[i].Out)
	}
	// Layer 2's shard 1 removed: rewritten, layer 1's kept untouched.
	os.Remove(filepath.Join(o.Layers[1].Out, actcache.ShardName(1)))
	st0, _ := os.Stat(filepath.Join(o.Layers[0].Out, actcache.ShardName(1)))
	if _, err := Build(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	st1, _ := os.Stat(filepath.Join(o.Layers[0].Out, actcache.ShardName(1)))
	if !os.SameFile(st0, st1) {
		t.Error("layer 1's complete shard was rewritten")
	}
	for i := range o.Layers {
		sameShards(t, o.Layers[i].Out, ref.Layers[i].Out)
	}
}

// Layers out of order or repeated are refused before any file is written.
func TestLayerSetOrder(t *testing.T) {
	f := load(t)
	dir := t.TempDir()
	o := layerOptions(t, f, dir, 2, 1)
	if _, err := Build(context.Background(), o); err == nil || !strings.Contains(err.Error(), "ascending") {
		t.Errorf("Build(2, 1) error = %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a refused build left %d entries", len(entries))
	}
}

// kernels.LayerNormScale is TransformerLens's ln2.hook_scale: on PyTorch's golden
// hooks (testdata/gen/gen_fixtures.py: resid_mid and x = ln2.hook_normalized
// of the tiny model, float64 rounded to float32), x · scale is the centred
// resid_mid at every token and layer.
func TestLayerNormScaleMatchesTransformerLens(t *testing.T) {
	g := testutil.Golden(t, "../../testdata/golden/gpt2_hooks.safetensors")
	const c = 16
	for l := 0; l < 3; l++ {
		resid, x := g[fmt.Sprint("resid_mid.", l)], g[fmt.Sprint("x.", l)]
		m := len(resid) / c
		scale := make([]float32, m)
		kernels.LayerNormScale(scale, resid, m, c, 1e-5)
		for r := 0; r < m; r++ {
			var mean float64
			for _, v := range resid[r*c : (r+1)*c] {
				mean += float64(v) / c
			}
			for j := 0; j < c; j++ {
				want := float64(resid[r*c+j]) - mean
				if got := float64(x[r*c+j]) * float64(scale[r]); math.Abs(got-want) > 1e-5+1e-5*math.Abs(want) {
					t.Fatalf("layer %d token %d channel %d: x·scale = %g, centred resid_mid %g", l, r, j, got, want)
				}
			}
		}
	}
}

// A build WithScale stores each layer's scale, and nothing else changes:
// x and y are the bytes of a build without it, and scale is
// LayerNormScale of the pass's resid_mid.
func TestBuildWithScale(t *testing.T) {
	f := load(t)
	dir := t.TempDir()
	o := layerOptions(t, f, filepath.Join(dir, "scale"), 1, 2)
	o.WithScale = true
	if _, err := Build(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	ref := layerOptions(t, f, filepath.Join(dir, "plain"), 1, 2)
	if _, err := Build(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	ws := f.model.NewWorkspace(6 * 16)
	want := map[int][]float32{}
	hooks := &gpt2.Hooks{Observe: func(hook string, l int, v []float32) {
		if hook == "hook_resid_mid" {
			want[l] = make([]float32, 6*16)
			kernels.LayerNormScale(want[l], v, 6*16, f.model.DModel, f.model.Eps)
		}
	}}
	if _, _, err := f.model.RunToBlock(ws, f.rows.Data, 6, 16, 2, hooks); err != nil {
		t.Fatal(err)
	}
	for i, l := range []int{1, 2} {
		a, _ := actcache.Open(o.Layers[i].Out)
		b, _ := actcache.Open(ref.Layers[i].Out)
		if !a.Manifest.WithScale || b.Manifest.WithScale {
			t.Fatalf("with_scale %v / %v", a.Manifest.WithScale, b.Manifest.WithScale)
		}
		var scale, xa, xb []float32
		for s := range a.Manifest.Shards {
			da, err := a.ReadShard(s)
			if err != nil {
				t.Fatal(err)
			}
			db, _ := b.ReadShard(s)
			scale, xa, xb = append(scale, da.Scale...), append(xa, da.X...), append(xb, db.X...)
		}
		// 6 rows of 16 tokens in one batch of 4 and one of 2: the reference
		// pass above runs all 6 at once, so compare to rounding.
		testutil.Close(t, fmt.Sprint("scale.", l), scale, want[l], 1e-6, 1e-6)
		if !slices.Equal(xa, xb) {
			t.Errorf("layer %d: x differs from the build without scale", l)
		}
	}
}

// A shard with acts names the transcoder's width in its metadata (d_sae),
// so that a Python reader of one shard can size the CSR matrix.
func TestShardMetadataDSAE(t *testing.T) {
	f := load(t)
	o := layerOptions(t, f, t.TempDir(), 1)
	if _, err := Build(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	st, err := safetensors.Open(filepath.Join(o.Layers[0].Out, actcache.ShardName(0)))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if got := st.Metadata()["d_sae"]; got != "64" {
		t.Errorf("d_sae metadata %q, want 64", got)
	}
}
