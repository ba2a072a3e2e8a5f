package gpt2

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/testutil"

	"github.com/ctxdep/ctxdep/internal/kernels"
)

// referenceLoad is the loader before LoadParts: every tensor read whole,
// then process, one step at a time.
func referenceLoad(t *testing.T, dir string) *Model {
	t.Helper()
	cfg, err := ReadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	path, err := WeightsPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	src, err := openSource(path)
	if err != nil {
		t.Fatal(err)
	}
	defer src.close()
	hf, err := readHF(cfg, src)
	if err != nil {
		t.Fatal(err)
	}
	return process(cfg, hf)
}

// compareParts checks that got holds exactly the weights p names, each
// bit-identical to want's.
func compareParts(t *testing.T, got, want *Model, p Parts) {
	t.Helper()
	q := p.normal(want.Config)
	check := func(name string, g, w []float32, in bool) {
		t.Helper()
		switch {
		case in && ((g == nil) != (w == nil) || !testutil.SameBits(g, w)):
			t.Errorf("%v: %s differs from the reference loader's", p, name)
		case !in && g != nil:
			t.Errorf("%v: %s was loaded", p, name)
		}
	}
	check("W_E", got.WE, want.WE, q.Blocks > 0)
	check("W_pos", got.WPos, want.WPos, q.Blocks > 0)
	check("W_U", got.WU, want.WU, q.Unembed)
	check("b_U", got.BU, want.BU, q.Unembed)
	for l := range want.Blocks {
		g, w := got.Blocks[l], want.Blocks[l]
		full, mlp := l < q.Blocks, q.hasMLP(l)
		for _, x := range []struct {
			name string
			g, w []float32
			in   bool
		}{
			{"W_QKV", g.WQKV, w.WQKV, full}, {"b_QKV", g.BQKV, w.BQKV, full}, {"W_O", g.WO, w.WO, full}, {"b_O", g.BO, w.BO, full},
			{"W_in", g.WIn, w.WIn, mlp}, {"b_in", g.BIn, w.BIn, mlp}, {"W_out", g.WOut, w.WOut, mlp}, {"b_out", g.BOut, w.BOut, mlp},
		} {
			check(x.name+" of block "+string(rune('0'+l)), x.g, x.w, x.in)
		}
	}
	if got.Config != want.Config || !got.Has(p) {
		t.Errorf("%v: config %+v, Has = %v", p, got.Config, got.Has(p))
	}
}

// LoadParts (positioned reads, processing per tensor group in parallel,
// W_U transposed and folded in one pass) gives the reference loader's
// processed weights bit for bit, whole or in part, in both formats.
func TestLoadPartsMatchesReference(t *testing.T) {
	rand := t.TempDir()
	cfg := Config{NLayer: 3, NHead: 4, DModel: 72, DHead: 18, DMLP: 100, NCtx: 40, DVocab: 1003, Eps: kernels.LayerNormEps}
	if err := WriteRandomCheckpoint(rand, cfg, 7); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{tinyDir, legacyDir, zipDir, rand} {
		want := referenceLoad(t, dir)
		for _, p := range []Parts{All(), Through(0), Through(1), MLP(1), MLP(2, 0), {Unembed: true}, MLP(1).With(Parts{Unembed: true}), Through(0).With(MLP(2)), Through(99), MLP(-1, 99)} {
			got, err := LoadParts(dir, p)
			if err != nil {
				t.Fatalf("%s: LoadParts(%v): %v", dir, p, err)
			}
			compareParts(t, got, want, p)
		}
		m, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		compareParts(t, m, want, All())
		if !m.Whole() {
			t.Errorf("%s: Load's model is not whole", dir)
		}
	}
}

func TestPartsHas(t *testing.T) {
	m, err := LoadParts(tinyDir, Through(0).With(MLP(1)))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		q    Parts
		want bool
	}{
		{Through(0), true}, {MLP(0), true}, {MLP(1), true}, {MLP(0, 1), true}, {Parts{}, true},
		{Through(1), false}, {MLP(2), false}, {Parts{Unembed: true}, false}, {All(), false},
	} {
		if got := m.Has(c.q); got != c.want {
			t.Errorf("Has(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if m.Whole() {
		t.Error("a model loaded in part is whole")
	}
	if err := m.checkParts(Through(1), "RunToBlock"); err == nil || !strings.Contains(err.Error(), "blocks 0-1") {
		t.Errorf("checkParts: %v", err)
	}
	full := Random(Config{NLayer: 2, NHead: 1, DModel: 4, DHead: 4, DMLP: 8, NCtx: 4, DVocab: 5, Eps: 1e-5}, 1)
	if !full.Whole() || !full.Has(All()) {
		t.Error("Random's model is not whole")
	}
	for p, want := range map[string]string{
		All().String():      "the whole model",
		Through(8).String(): "the embeddings and blocks 0-8",
		MLP(8).String():     "block 8's MLP",
		MLP(3, 8).With(Parts{Unembed: true}).String(): "the MLPs of blocks 3, 8 and the unembedding",
		Parts{}.String(): "nothing",
	} {
		if p != want {
			t.Errorf("String = %q, want %q", p, want)
		}
	}
}
