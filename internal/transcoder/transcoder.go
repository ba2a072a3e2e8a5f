package transcoder

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/ctxdep/ctxdep/internal/dtype"
	"github.com/ctxdep/ctxdep/internal/torchfile"
)

// Transcoder is a sparse replacement for one MLP layer.
type Transcoder struct {
	Path    string
	DIn     int       // C, input width
	DOut    int       // output width
	DSAE    int       // F, number of features
	WEnc    []float32 // (C, F)
	BEnc    []float32 // (F)
	WDec    []float32 // (F, DOut)
	BDec    []float32 // (C) input pre-bias, subtracted before encoding
	BDecOut []float32 // (DOut) output bias
	// Threshold (F) makes the activation JumpReLU: feature j fires when
	// its pre-activation exceeds both 0 and Threshold[j]. nil for ReLU.
	Threshold []float32

	// From the pickled LanguageModelSAERunnerConfig; empty or -1 when
	// absent.
	ModelName    string
	HookPoint    string // "blocks.L.ln2.hook_normalized"
	OutHookPoint string // "blocks.L.hook_mlp_out"
	Layer        int    // hook_point_layer
}

// Load reads a transcoder file written by torch.save: a dict with "cfg"
// (a LanguageModelSAERunnerConfig) and "state_dict" (W_enc, b_enc, W_dec,
// b_dec, b_dec_out). Shapes come from the tensors; the cfg, when it has the
// fields, must agree with them. A NaN or ±Inf in any of the tensors is an
// error that names it and its index. A SAELens transcoder directory, or
// its sae_weights.safetensors, is read by LoadSAELens.
func Load(path string) (*Transcoder, error) {
	if IsSAELens(path) {
		return LoadSAELens(path)
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return nil, fmt.Errorf("transcoder: %s is a directory without a SAELens transcoder's %s and %s", path, SAELensConfig, SAELensWeights)
	}
	obj, err := torchfile.Load(path)
	if err != nil {
		return nil, err
	}
	tc, err := fromObject(obj)
	if err != nil {
		return nil, fmt.Errorf("transcoder: %s: %w", path, err)
	}
	tc.Path = path
	return tc, nil
}

func fromObject(obj any) (*Transcoder, error) {
	sd, err := torchfile.StateDict(obj)
	if err != nil {
		return nil, err
	}
	tensor := func(name string, rank int) (*torchfile.Tensor, error) {
		v, ok := sd.Get(name)
		if !ok {
			return nil, fmt.Errorf("state_dict has no %q (not a transcoder file?)", name)
		}
		t, ok := v.(*torchfile.Tensor)
		if !ok {
			return nil, fmt.Errorf("state_dict %q is not a tensor", name)
		}
		if len(t.Shape) != rank {
			return nil, fmt.Errorf("%s has shape %v, want %d dimensions", name, t.Shape, rank)
		}
		return t, nil
	}
	wEnc, err := tensor("W_enc", 2)
	if err != nil {
		return nil, err
	}
	tc := &Transcoder{DIn: wEnc.Shape[0], DSAE: wEnc.Shape[1], Layer: -1}
	wDec, err := tensor("W_dec", 2)
	if err != nil {
		return nil, err
	}
	tc.DOut = wDec.Shape[1]
	if err := tc.checkWidths(); err != nil {
		return nil, err
	}
	shapes := []struct {
		name string
		dst  *[]float32
		want []int
	}{
		{"W_enc", &tc.WEnc, []int{tc.DIn, tc.DSAE}},
		{"b_enc", &tc.BEnc, []int{tc.DSAE}},
		{"W_dec", &tc.WDec, []int{tc.DSAE, tc.DOut}},
		{"b_dec", &tc.BDec, []int{tc.DIn}},
		{"b_dec_out", &tc.BDecOut, []int{tc.DOut}},
	}
	for _, s := range shapes {
		t, err := tensor(s.name, len(s.want))
		if err != nil {
			return nil, err
		}
		if !slices.Equal(t.Shape, s.want) {
			return nil, fmt.Errorf("%s has shape %v, want %v", s.name, t.Shape, s.want)
		}
		if *s.dst, err = t.Float32(); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		if err := dtype.CheckFinite(s.name, *s.dst, s.want...); err != nil {
			return nil, fmt.Errorf("%w: the transcoder file is damaged; download it again", err)
		}
	}
	if err := tc.readConfig(obj); err != nil {
		return nil, err
	}
	return tc, nil
}

// readConfig copies the cfg fields we use and checks those that describe
// shapes against the tensors.
func (tc *Transcoder) readConfig(obj any) error {
	d, ok := obj.(*torchfile.Dict)
	if !ok {
		return nil
	}
	v, ok := d.Get("cfg")
	if !ok {
		return nil
	}
	cfg, ok := v.(*torchfile.Object)
	if !ok {
		return nil
	}
	str := func(name string) string {
		s, _ := attr[string](cfg, name)
		return s
	}
	tc.ModelName, tc.HookPoint, tc.OutHookPoint = str("model_name"), str("hook_point"), str("out_hook_point")
	if l, ok := attr[int64](cfg, "hook_point_layer"); ok {
		tc.Layer = int(l)
	}
	for _, f := range []struct {
		name string
		want int
	}{{"d_in", tc.DIn}, {"d_sae", tc.DSAE}, {"d_out", tc.DOut}} {
		if got, ok := attr[int64](cfg, f.name); ok && int(got) != f.want {
			return fmt.Errorf("cfg.%s = %d disagrees with the weights (%d)", f.name, got, f.want)
		}
	}
	if t, ok := attr[bool](cfg, "is_transcoder"); ok && !t {
		return errors.New("cfg.is_transcoder is false: this is a plain SAE, not a transcoder")
	}
	return nil
}

// checkWidths refuses a transcoder without features, inputs or outputs:
// every command would have nothing to compute, and fit would write a
// midcoder that no reader accepts.
func (tc *Transcoder) checkWidths() error {
	if tc.DIn < 1 || tc.DSAE < 1 || tc.DOut < 1 {
		return fmt.Errorf("W_enc is [%d, %d] and W_dec [%d, %d]: a transcoder needs at least one input, feature and output", tc.DIn, tc.DSAE, tc.DSAE, tc.DOut)
	}
	return nil
}

func attr[T any](o *torchfile.Object, name string) (T, bool) {
	var zero T
	v, ok := o.Attr(name)
	if !ok {
		return zero, false
	}
	t, ok := v.(T)
	return t, ok
}

// LoadSparsity reads a _log_feature_sparsity.pt file: one float32 tensor
// (F) of log10(firing frequency + 1e-10) per feature; or SAELens's
// sparsity.safetensors, which holds the same.
func LoadSparsity(path string) ([]float32, error) {
	if strings.HasSuffix(path, ".safetensors") {
		return loadSparsitySafetensors(path)
	}
	obj, err := torchfile.Load(path)
	if err != nil {
		return nil, err
	}
	t, ok := obj.(*torchfile.Tensor)
	if !ok {
		return nil, fmt.Errorf("transcoder: %s: holds %T, want one tensor of log10 feature frequencies", path, obj)
	}
	if len(t.Shape) != 1 {
		return nil, fmt.Errorf("transcoder: %s: sparsity tensor has shape %v, want one dimension", path, t.Shape)
	}
	v, err := t.Float32()
	if err != nil {
		return nil, fmt.Errorf("transcoder: %s: %w", path, err)
	}
	return v, nil
}

// LiveThreshold is the notebook's cut-off: a feature is live when its
// log10 frequency exceeds −4 (fires on more than 1 in 10,000 tokens).
const LiveThreshold = -4

// CountLive returns how many features have log10 frequency > LiveThreshold.
func CountLive(logFreq []float32) int {
	n := 0
	for _, v := range logFreq {
		if v > LiveThreshold {
			n++
		}
	}
	return n
}

// FileName is the released transcoder file name for a layer and width.
func FileName(layer, width int) string {
	return fmt.Sprintf("final_sparse_autoencoder_gpt2-small_blocks.%d.ln2.hook_normalized_%d.pt", layer, width)
}

// SparsityName is the name of the sparsity file next to a transcoder file.
func SparsityName(layer, width int) string {
	return fmt.Sprintf("final_sparse_autoencoder_gpt2-small_blocks.%d.ln2.hook_normalized_%d_log_feature_sparsity.pt", layer, width)
}

var fileRE = regexp.MustCompile(`^final_sparse_autoencoder_gpt2-small_blocks\.(\d+)\.ln2\.hook_normalized_(\d+)\.pt$`)

// Find returns the transcoder file for layer in dir, whatever its width,
// and its sparsity file ("" when that is absent). More than one width for
// the layer is an error that names them. Where dir holds no such file, the
// SAELens transcoder for the layer is looked for: dir itself, or a
// directory below it (two levels at most) whose cfg.json names a hook of
// the layer; its weights file is returned.
func Find(dir string, layer int) (model, sparsity string, err error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", "", fmt.Errorf("transcoder: %w", err)
	}
	var found []string
	width := 0
	for _, e := range entries {
		m := fileRE.FindStringSubmatch(e.Name())
		if m == nil || m[1] != strconv.Itoa(layer) {
			continue
		}
		found = append(found, e.Name())
		width, _ = strconv.Atoi(m[2])
	}
	switch len(found) {
	case 0:
		if w, err := findSAELens(dir, layer); err != nil || w != "" {
			return w, SAELensSparsityNextTo(w), err
		}
		return "", "", fmt.Errorf("transcoder: %s has no final_sparse_autoencoder_gpt2-small_blocks.%d.ln2.hook_normalized_{F}.pt for layer %d, nor a SAELens transcoder directory for it", dir, layer, layer)
	case 1:
	default:
		return "", "", fmt.Errorf("transcoder: %s has several transcoders for layer %d: %v; pass --transcoder FILE", dir, layer, found)
	}
	model = filepath.Join(dir, found[0])
	sparsity = filepath.Join(dir, SparsityName(layer, width))
	if _, err := os.Stat(sparsity); err != nil {
		sparsity = ""
	}
	return model, sparsity, nil
}
