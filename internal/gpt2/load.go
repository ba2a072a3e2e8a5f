package gpt2

import (
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/ctxdep/ctxdep/internal/dtype"
	"github.com/ctxdep/ctxdep/internal/kernels"
	"github.com/ctxdep/ctxdep/internal/par"
)

// LoadParts reads the weights of a Hugging Face GPT-2 checkpoint directory
// that parts names, and processes them as Load does, bit for bit: a model
// whose other weights are nil (Model.Loaded says which it holds). The
// whole header is checked as Load checks it; only the weights read are
// checked to be finite.
//
// Tensors are read with positioned reads straight into the model's memory
// (safetensors) and processed as they arrive, on GOMAXPROCS goroutines, one
// tensor group each, so that reading and processing overlap.
func LoadParts(dir string, parts Parts) (*Model, error) {
	cfg, err := ReadConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	path, err := WeightsPath(dir)
	if err != nil {
		return nil, err
	}
	src, err := openSource(path)
	if err != nil {
		return nil, err
	}
	defer src.close()
	m, err := loadParts(cfg, src, parts.normal(cfg))
	if err != nil {
		return nil, fmt.Errorf("gpt2: %s: %w", path, err)
	}
	return m, nil
}

// hfShapes returns the HF tensors of a checkpoint of shape cfg (un-prefixed
// names) and their shapes.
func hfShapes(cfg Config) map[string][]int {
	c, n, v := cfg.DModel, cfg.DMLP, cfg.DVocab
	want := map[string][]int{
		"wte.weight": {v, c}, "wpe.weight": {cfg.NCtx, c},
		"ln_f.weight": {c}, "ln_f.bias": {c},
	}
	for l := 0; l < cfg.NLayer; l++ {
		p := "h." + strconv.Itoa(l) + "."
		for name, shape := range map[string][]int{
			"ln_1.weight": {c}, "ln_1.bias": {c},
			"attn.c_attn.weight": {c, 3 * c}, "attn.c_attn.bias": {3 * c},
			"attn.c_proj.weight": {c, c}, "attn.c_proj.bias": {c},
			"ln_2.weight": {c}, "ln_2.bias": {c},
			"mlp.c_fc.weight": {c, n}, "mlp.c_fc.bias": {n},
			"mlp.c_proj.weight": {n, c}, "mlp.c_proj.bias": {c},
		} {
			want[p+name] = shape
		}
	}
	return want
}

// checkHeader checks the checkpoint's tensor list against cfg: no
// unexpected or repeated tensor, every shape as config.json says, none
// missing. It returns the tensors by un-prefixed HF name.
func checkHeader(cfg Config, src source) (map[string]sourceTensor, error) {
	want := hfShapes(cfg)
	got := make(map[string]sourceTensor, len(want))
	for _, t := range src.tensors() {
		name, ok := hfName(t.name)
		if !ok {
			continue
		}
		shape, ok := want[name]
		if !ok {
			return nil, fmt.Errorf("unexpected tensor %q (is this a GPT-2 checkpoint matching config.json?)", t.name)
		}
		if _, dup := got[name]; dup {
			return nil, fmt.Errorf("tensor %q appears twice", name)
		}
		if !slices.Equal(t.shape, shape) {
			return nil, fmt.Errorf("tensor %q has shape %v, want %v (from config.json)", t.name, t.shape, shape)
		}
		got[name] = t
	}
	var missing []string
	for name := range want {
		if _, ok := got[name]; !ok {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		if len(missing) > 4 {
			missing = append(missing[:4], fmt.Sprintf("and %d more", len(missing)-4))
		}
		return nil, fmt.Errorf("missing tensors %s", strings.Join(missing, ", "))
	}
	return got, nil
}

// loader reads the tensors of one checkpoint.
type loader struct {
	byName map[string]sourceTensor
	whole  bool // read each tensor in one piece (readHF, the reference)
}

// read reads the named tensor (un-prefixed HF name) into a new slice and
// checks that it is finite.
func (ld *loader) read(name string) ([]float32, error) { return ld.readRows(name, nil) }

// chunkBytes is how much of a tensor readRows reads at a time: small
// enough to be worked on while it is in the core's cache.
const chunkBytes = 256 << 10

// readRows reads the named tensor (un-prefixed HF name) into a new slice in
// chunks of whole rows (of its last dimension), checks each chunk is finite
// and, when fn is set, calls it on the chunk, rows m0, m0+1, … of the
// tensor as a matrix, as it arrives.
func (ld *loader) readRows(name string, fn func(chunk []float32, m0 int)) ([]float32, error) {
	t := ld.byName[name]
	n, k := 1, 1
	for _, d := range t.shape {
		n *= d
	}
	if len(t.shape) > 0 && t.shape[len(t.shape)-1] > 0 {
		k = t.shape[len(t.shape)-1]
	}
	dst := make([]float32, n)
	rows := max(1, chunkBytes/4/k)
	if ld.whole {
		rows = max(1, n/k)
	}
	for lo := 0; lo < n; lo += rows * k {
		hi := min(lo+rows*k, n)
		chunk := dst[lo:hi]
		if err := t.read(chunk, lo); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", t.name, err)
		}
		if !dtype.AllFinite(chunk) {
			err := dtype.CheckFinite(fmt.Sprintf("tensor %q", t.name), dst[:hi], t.shape...)
			return nil, fmt.Errorf("%w: the weights are damaged; download the model again", err)
		}
		if fn != nil {
			fn(chunk, lo/k)
		}
	}
	return dst, nil
}

// centring returns a readRows callback that centres each row (kernels.CentreRows).
func centring(k int) func(chunk []float32, _ int) {
	return func(chunk []float32, _ int) { kernels.CentreRows(chunk, len(chunk)/k, k) }
}

// reads reads the named tensors, stopping at the first error.
func (ld *loader) reads(names ...string) ([][]float32, error) {
	out := make([][]float32, len(names))
	for i, name := range names {
		var err error
		if out[i], err = ld.read(name); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// loadParts reads and processes parts (normal for cfg) of src. Each job
// reads one group of tensors and applies to it the processing steps that
// touch only that group, in process's order and arithmetic, so the result
// is process's bit for bit; jobs run on GOMAXPROCS goroutines, the largest
// first. The first failing job (in job order) is the error.
func loadParts(cfg Config, src source, parts Parts) (*Model, error) {
	byName, err := checkHeader(cfg, src)
	if err != nil {
		return nil, err
	}
	ld := &loader{byName: byName}
	c, n, v := cfg.DModel, cfg.DMLP, cfg.DVocab
	m := &Model{Config: cfg, Blocks: make([]Block, cfg.NLayer), Loaded: parts}
	var jobs []func() error

	if parts.Blocks > 0 || parts.Unembed {
		jobs = append(jobs, func() error {
			// W_U is the transpose of the *unprocessed* wte (tied
			// weights) with ln_f folded in, then centred; W_E is wte
			// centred. Both are made from each chunk of wte's rows as it
			// arrives.
			var u *unembedding
			if parts.Unembed {
				ln, err := ld.reads("ln_f.weight", "ln_f.bias")
				if err != nil {
					return err
				}
				u = newUnembedding(ln[0], ln[1], c, v)
			}
			wte, err := ld.readRows("wte.weight", func(chunk []float32, j0 int) {
				if u != nil {
					u.rows(chunk, j0)
				}
				if parts.Blocks > 0 {
					kernels.CentreRows(chunk, len(chunk)/c, c)
				}
			})
			if err != nil {
				return err
			}
			if u != nil {
				m.WU, m.BU = u.finish()
			}
			if parts.Blocks > 0 {
				m.WE = wte
			}
			return nil
		})
	}
	if parts.Blocks > 0 {
		jobs = append(jobs, func() error {
			wpe, err := ld.readRows("wpe.weight", centring(c))
			m.WPos = wpe
			return err
		})
	}
	// Each block: attention (fold ln_1, centre W_O and b_O, fold the value
	// biases), the MLP's input (fold ln_2) and its output (centre).
	for l := 0; l < cfg.NLayer; l++ {
		p := "h." + strconv.Itoa(l) + "."
		b := &m.Blocks[l]
		if l < parts.Blocks {
			jobs = append(jobs, func() error {
				t, err := ld.reads(p+"ln_1.weight", p+"ln_1.bias", p+"attn.c_attn.bias", p+"attn.c_proj.bias")
				if err != nil {
					return err
				}
				ln1W, ln1B, attnB, projB := t[0], t[1], t[2], t[3]
				fold := newLayerNormFold(attnB, ln1W, ln1B, 3*c)
				attnW, err := ld.readRows(p+"attn.c_attn.weight", fold.rows)
				if err != nil {
					return err
				}
				fold.apply(attnW, attnB, c)
				projW, err := ld.readRows(p+"attn.c_proj.weight", centring(c))
				if err != nil {
					return err
				}
				kernels.CentreRows(projB, 1, c)
				foldValueBiases(attnB, projW, projB, c)
				b.WQKV, b.BQKV, b.WO, b.BO = attnW, attnB, projW, projB
				return nil
			})
		}
		if parts.hasMLP(l) {
			jobs = append(jobs, func() error {
				t, err := ld.reads(p+"ln_2.weight", p+"ln_2.bias", p+"mlp.c_fc.bias")
				if err != nil {
					return err
				}
				fold := newLayerNormFold(t[2], t[0], t[1], n)
				fcW, err := ld.readRows(p+"mlp.c_fc.weight", fold.rows)
				if err != nil {
					return err
				}
				fold.apply(fcW, t[2], c)
				b.WIn, b.BIn = fcW, t[2]
				return nil
			}, func() error {
				outW, err := ld.readRows(p+"mlp.c_proj.weight", centring(c))
				if err != nil {
					return err
				}
				outB, err := ld.read(p + "mlp.c_proj.bias")
				if err != nil {
					return err
				}
				kernels.CentreRows(outB, 1, c)
				b.WOut, b.BOut = outW, outB
				return nil
			})
		}
	}
	errs := make([]error, len(jobs))
	par.Jobs(len(jobs), runtime.GOMAXPROCS(0), func(_, j int) { errs[j] = jobs[j]() })
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return m, nil
}

// foldValueBiases is TransformerLens's fold_value_biases for one block:
// b_O += b_V @ W_O, then b_V = 0, with bqkv's V part as b_V.
func foldValueBiases(bqkv, wo, bo []float32, c int) {
	bv := bqkv[2*c : 3*c]
	acc := make([]float64, c)
	for j := range acc {
		acc[j] = float64(bo[j])
	}
	for k, b := range bv {
		row := wo[k*c : (k+1)*c]
		for j, w := range row {
			acc[j] += float64(b) * float64(w)
		}
	}
	for j := range acc {
		bo[j] = float32(acc[j])
	}
	clear(bv)
}

// unembedding makes W_U (C, V) and b_U (V) from the unprocessed wte (V, C)
// and ln_f, a chunk of wte's rows at a time: foldLayerNorm on wte's
// transpose (whose column j is wte's row j), written tile by tile, then
// kernels.CentreRows over the vocabulary, each value computed as process computes
// it.
type unembedding struct {
	gamma, beta []float32
	c, v        int
	wu, bu      []float32
	mean        []float64
}

func newUnembedding(gamma, beta []float32, c, v int) *unembedding {
	return &unembedding{gamma: gamma, beta: beta, c: c, v: v, wu: make([]float32, c*v), bu: make([]float32, v)}
}

// rows folds wte's rows j0, j0+1, … (chunk) into columns j0… of W_U.
func (u *unembedding) rows(chunk []float32, j0 int) {
	c, v := u.c, u.v
	j1 := j0 + len(chunk)/c
	u.mean = slices.Grow(u.mean[:0], j1-j0)[:j1-j0]
	for j := j0; j < j1; j++ {
		var bacc, sum float64
		for m, x := range chunk[(j-j0)*c : (j-j0+1)*c] {
			g, be := float64(u.gamma[m]), float64(u.beta[m])
			bacc += float64(x) * be
			sum += float64(x) * g
		}
		u.bu[j] = float32(bacc)
		u.mean[j-j0] = sum / float64(c)
	}
	for m := 0; m < c; m++ {
		g := float64(u.gamma[m])
		out := u.wu[m*v+j0 : m*v+j1]
		for jj := range out {
			out[jj] = float32(float64(chunk[jj*c+m])*g - u.mean[jj])
		}
	}
}

// finish centres W_U's rows and b_U, once every row of wte is folded in.
func (u *unembedding) finish() (wu, bu []float32) {
	centreRowsPar(u.wu, u.c, u.v)
	kernels.CentreRows(u.bu, 1, u.v)
	return u.wu, u.bu
}

// centreRowsPar is kernels.CentreRows with the rows shared among goroutines.
func centreRowsPar(w []float32, r, k int) {
	par.For(r, func(lo, hi int) { kernels.CentreRows(w[lo*k:hi*k], hi-lo, k) })
}
