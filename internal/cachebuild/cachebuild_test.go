package cachebuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/dtype"
	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/npy"
	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/testutil"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// Golden x and y for the token file come from testdata/gen/gen_fixtures.py
// (PyTorch, float64 TransformerLens path; see testdata/gen/README.md).
const (
	modelDir    = "../../testdata/tiny-gpt2"
	tokensFile  = "../../testdata/tokens/tiny-int64.npy"
	goldenCache = "../../testdata/golden/cache_hooks.safetensors"
	tcFile      = "../../testdata/tiny-transcoders/final_sparse_autoencoder_gpt2-small_blocks.1.ln2.hook_normalized_64.pt"
)

type fixture struct {
	model     *gpt2.Model
	modelProv provenance.File
	rows      Int32Rows
	dataProv  provenance.File
}

func load(t *testing.T) fixture {
	t.Helper()
	m, err := gpt2.Load(modelDir)
	if err != nil {
		t.Fatal(err)
	}
	mp, err := provenance.Hash(filepath.Join(modelDir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	tok, shape, err := npy.ReadInt32(tokensFile)
	if err != nil {
		t.Fatal(err)
	}
	dp, err := provenance.Hash(tokensFile)
	if err != nil {
		t.Fatal(err)
	}
	return fixture{m, mp, Int32Rows{Data: tok, T: shape[1]}, dp}
}

func (f fixture) options(out string, layer int) Options {
	return Options{Layers: []Layer{{Layer: layer, Out: out}}, Model: f.model, ModelProv: f.modelProv, Rows: f.rows,
		DataKind: "tokens-npy", DataProv: f.dataProv, BatchSize: 4, PerShard: 4, DType: "float32", Version: "test"}
}

// build1 builds o, a build of one layer, and returns its manifest.
func build1(ctx context.Context, o Options) (*actcache.Manifest, error) {
	m, err := Build(ctx, o)
	if err != nil {
		return nil, err
	}
	return m[0], nil
}

// readAll concatenates every shard of a cache.
func readAll(t *testing.T, dir string) (tok []int32, x, y []float32, acts []*transcoder.Acts) {
	t.Helper()
	c, err := actcache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range c.Manifest.Shards {
		sd, err := c.ReadShard(i)
		if err != nil {
			t.Fatal(err)
		}
		tok = append(tok, sd.Tokens...)
		x = append(x, sd.X...)
		y = append(y, sd.Y...)
		acts = append(acts, sd.Acts)
	}
	return
}

// The cache holds TransformerLens's x and y for every row, in input order,
// across shards (6 rows, 4 per shard: shards of 4 and 2).
func TestBuildMatchesTransformerLens(t *testing.T) {
	f := load(t)
	g := testutil.Golden(t, goldenCache)
	for layer := 0; layer < 3; layer++ {
		out := filepath.Join(t.TempDir(), "cache")
		man, err := build1(context.Background(), f.options(out, layer))
		if err != nil {
			t.Fatal(err)
		}
		if !man.Complete || man.NSequences != 6 || man.NTokens != 96 || len(man.Shards) != 2 || man.Shards[1].NSequences != 2 {
			t.Fatalf("manifest %+v", man)
		}
		if man.Hooks.X != fmt.Sprintf("blocks.%d.ln2.hook_normalized", layer) {
			t.Errorf("hooks %+v", man.Hooks)
		}
		tok, x, y, _ := readAll(t, out)
		for i := range tok {
			if tok[i] != f.rows.Data[i] {
				t.Fatalf("token %d = %d, want %d", i, tok[i], f.rows.Data[i])
			}
		}
		// 1e-5 + 1e-5·|want|: PyTorch float32 itself is ≤ 5.2e-6 from the golden here.
		testutil.Close(t, fmt.Sprint("x.", layer), x, g[fmt.Sprint("x.", layer)], 1e-5, 1e-5)
		testutil.Close(t, fmt.Sprint("y.", layer), y, g[fmt.Sprint("y.", layer)], 1e-5, 1e-5)
	}
}

// float16 storage holds exactly the float16 rounding of the float32 values.
func TestBuildFloat16(t *testing.T) {
	f := load(t)
	dir := t.TempDir()
	o32 := f.options(filepath.Join(dir, "f32"), 2)
	o16 := f.options(filepath.Join(dir, "f16"), 2)
	o16.DType = "float16"
	for _, o := range []Options{o32, o16} {
		if _, err := build1(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	_, x32, y32, _ := readAll(t, o32.Layers[0].Out)
	_, x16, y16, _ := readAll(t, o16.Layers[0].Out)
	for i := range x32 {
		if want := dtype.Float16ToFloat32(dtype.Float32ToFloat16(x32[i])); x16[i] != want {
			t.Fatalf("x[%d] = %g, want float16(%g) = %g", i, x16[i], x32[i], want)
		}
		if want := dtype.Float16ToFloat32(dtype.Float32ToFloat16(y32[i])); y16[i] != want {
			t.Fatalf("y[%d] = %g, want %g", i, y16[i], want)
		}
	}
}

// Stored activations equal encoding the stored x.
func TestBuildWithActs(t *testing.T) {
	f := load(t)
	o := f.options(filepath.Join(t.TempDir(), "c"), 1)
	withActs(t)(0, &o)
	man, err := build1(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if !man.WithActs || man.DSAE != 64 || man.Transcoder.SHA256 != o.Layers[0].TransProv.SHA256 {
		t.Fatalf("manifest %+v", man)
	}
	c, err := actcache.Open(o.Layers[0].Out)
	if err != nil {
		t.Fatal(err)
	}
	enc := o.Layers[0].Transcoder.NewEncoder()
	for i := range man.Shards {
		sd, err := c.ReadShard(i)
		if err != nil {
			t.Fatal(err)
		}
		var want transcoder.Acts
		enc.Encode(&want, sd.X, len(sd.X)/16)
		if fmt.Sprint(want.Indptr) != fmt.Sprint(sd.Acts.Indptr) || fmt.Sprint(want.Indices) != fmt.Sprint(sd.Acts.Indices) {
			t.Fatalf("shard %d: stored acts differ from Encode(x)", i)
		}
		testutil.Close(t, "acts_values", sd.Acts.Values, want.Values, 0, 0)
	}
}

// failingRows fails when asked for rows at or beyond failAt.
type failingRows struct {
	Int32Rows
	failAt int
}

func (r failingRows) Read(dst []int32, first, n int) error {
	if first+n > r.failAt {
		return errors.New("disk on fire")
	}
	return r.Int32Rows.Read(dst, first, n)
}

// An interrupted build leaves only complete shards and an incomplete
// manifest; re-running keeps them and ends with files identical to an
// uninterrupted build.
func TestResume(t *testing.T) {
	f := load(t)
	dir := t.TempDir()
	ref := f.options(filepath.Join(dir, "ref"), 1)
	if _, err := build1(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	o := f.options(filepath.Join(dir, "resumed"), 1)
	o.Rows = failingRows{f.rows, 4} // shard 0 (rows 0..3) succeeds, shard 1 fails
	if _, err := build1(context.Background(), o); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Build error = %v", err)
	}
	if _, err := actcache.Open(o.Layers[0].Out); err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("Open(interrupted) error = %v", err)
	}
	entries, _ := os.ReadDir(o.Layers[0].Out)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if fmt.Sprint(names) != "[manifest.json shard-00000.safetensors]" {
		t.Fatalf("after interruption the directory holds %v", names)
	}
	st0, _ := os.Stat(filepath.Join(o.Layers[0].Out, actcache.ShardName(0)))
	o.Rows = f.rows
	if _, err := build1(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	st1, _ := os.Stat(filepath.Join(o.Layers[0].Out, actcache.ShardName(0)))
	if !os.SameFile(st0, st1) || !st0.ModTime().Equal(st1.ModTime()) {
		t.Error("the complete shard was rewritten instead of kept")
	}
	for i := 0; i < 2; i++ {
		a, _ := os.ReadFile(filepath.Join(ref.Layers[0].Out, actcache.ShardName(i)))
		b, _ := os.ReadFile(filepath.Join(o.Layers[0].Out, actcache.ShardName(i)))
		if !bytes.Equal(a, b) {
			t.Errorf("shard %d differs from the uninterrupted build", i)
		}
	}
	// A cancelled context stops between batches with the context's error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := build1(ctx, f.options(filepath.Join(dir, "cancelled"), 1)); !errors.Is(err, context.Canceled) {
		t.Errorf("Build(cancelled) error = %v", err)
	}
}

// A directory holding a cache of other settings is refused and untouched.
func TestRefuseOtherSettings(t *testing.T) {
	f := load(t)
	out := filepath.Join(t.TempDir(), "c")
	if _, err := build1(context.Background(), f.options(out, 1)); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(out, actcache.ManifestName))
	if _, err := build1(context.Background(), f.options(out, 2)); err == nil || !strings.Contains(err.Error(), "other settings") {
		t.Fatalf("Build(other layer) error = %v", err)
	}
	// Another --batch-size would compute the rows still to write in other
	// batches than the rows kept: refused, naming the setting.
	o := f.options(out, 1)
	o.BatchSize = 2
	if _, err := build1(context.Background(), o); err == nil || !strings.Contains(err.Error(), "batch size 4, not 2") {
		t.Fatalf("Build(other batch size) error = %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(out, actcache.ManifestName))
	if !bytes.Equal(before, after) {
		t.Error("manifest changed")
	}
}

// Hand-checked: 6 rows in batches of 4 are batches [0, 4) and [4, 6). Four
// workers cache rows [0, 1), [1, 3), [3, 4), [4, 6): the first three each
// compute batch [0, 4), the last batch [4, 6).
func TestWorkerLoad(t *testing.T) {
	for i, want := range [][2]int{{1, 4}, {2, 4}, {1, 4}, {2, 2}} {
		cached, computed := WorkerLoad(actcache.Worker{Index: i, Count: 4, TotalRows: 6}, 4)
		if cached != want[0] || computed != want[1] {
			t.Errorf("worker %d of 4: WorkerLoad = %d, %d; want %d, %d", i, cached, computed, want[0], want[1])
		}
	}
}

func TestBadInput(t *testing.T) {
	f := load(t)
	dir := t.TempDir()
	bad := make([]int32, 2*16)
	bad[20] = 50257
	for _, c := range []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"layer out of range", func(o *Options) { o.Layers[0].Layer = 3 }, "out of range"},
		{"token outside vocab", func(o *Options) { o.Rows = Int32Rows{Data: bad, T: 16} }, "outside the vocabulary"},
		{"rows longer than context", func(o *Options) { o.Rows = Int32Rows{Data: make([]int32, 33), T: 33} }, "longer than the model's context"},
		{"transcoder width", func(o *Options) { o.Layers[0].Transcoder = transcoder.Random(8, 4, 1, 1) }, "d_in 8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := f.options(filepath.Join(dir, c.name), 1)
			c.mod(&o)
			_, err := build1(context.Background(), o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Build error = %v, want one containing %q", err, c.want)
			}
			if _, err := os.Stat(filepath.Join(o.Layers[0].Out, actcache.ShardName(0))); err == nil {
				t.Error("a shard was written")
			}
		})
	}
}

// failingPass fills x and y with small values, except for batch big (from
// 0), whose x is beyond float16's range, and fails from batch errAt on.
type failingPass struct {
	c, calls, big, errAt int
}

func (p *failingPass) Run(tokens []int32, b, t int, out []Capture) error {
	k := p.calls
	p.calls++
	if k >= p.errAt {
		return errors.New("the pass failed")
	}
	v := float32(0.5)
	if k == p.big {
		v = 1e6
	}
	for i := range out[0].X[:b*t*p.c] {
		out[0].X[i], out[0].Y[i] = v, 0.25
	}
	return nil
}

// A shard write that fails while the next batches compute (here float16
// refusing a value beyond its range, in batch 1 of 6) ends the build with
// that error, not the later pass's, and leaves the cache resumable: the
// writer's lock is released and the shard before it kept.
func TestBuildWriteErrorWins(t *testing.T) {
	f := load(t)
	out := filepath.Join(t.TempDir(), "c")
	o := f.options(out, 1)
	o.BatchSize, o.PerShard, o.DType = 1, 1, "float16"
	o.Pass = &failingPass{c: f.model.DModel, big: 1, errAt: 2}
	_, err := build1(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "65504") {
		t.Fatalf("build: %v, want the float16 range error", err)
	}
	o.Pass = &failingPass{c: f.model.DModel, big: -1, errAt: 1 << 30}
	man, err := build1(context.Background(), o)
	if err != nil {
		t.Fatalf("resuming: %v", err)
	}
	if len(man.Shards) != 6 {
		t.Errorf("resumed build has %d shards, want 6", len(man.Shards))
	}
}
