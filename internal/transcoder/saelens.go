package transcoder

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/ctxdep/ctxdep/internal/dtype"
	"github.com/ctxdep/ctxdep/internal/safetensors"
)

// The files of a transcoder saved by SAELens (SAE.save_model): one
// directory per transcoder.
const (
	SAELensConfig   = "cfg.json"
	SAELensWeights  = "sae_weights.safetensors"
	SAELensSparsity = "sparsity.safetensors"
)

// Architectures of SAELens transcoders that ctxdep reads: ReLU, and
// JumpReLU (a feature fires only above its threshold).
const (
	ArchTranscoder         = "transcoder"
	ArchJumpReLUTranscoder = "jumprelu_transcoder"
)

// saelensConfig is the part of a SAELens cfg.json that ctxdep reads.
// SAELens 6 keeps the hook and model names under "metadata"; older
// versions kept them at the top level.
type saelensConfig struct {
	Architecture         string `json:"architecture"`
	DIn                  *int   `json:"d_in"`
	DSAE                 *int   `json:"d_sae"`
	DOut                 *int   `json:"d_out"`
	ApplyBDecToInput     *bool  `json:"apply_b_dec_to_input"`
	NormalizeActivations string `json:"normalize_activations"`
	ReshapeActivations   string `json:"reshape_activations"`
	ActivationFn         string `json:"activation_fn"`
	ActivationFnStr      string `json:"activation_fn_str"`
	saelensHooks
	Metadata saelensHooks `json:"metadata"`
}

type saelensHooks struct {
	ModelName   string `json:"model_name"`
	HookName    string `json:"hook_name"`
	HookNameOut string `json:"hook_name_out"`
}

// IsSAELensDir reports whether dir holds a SAELens transcoder's cfg.json
// and weights.
func IsSAELensDir(dir string) bool {
	for _, f := range []string{SAELensConfig, SAELensWeights} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || !st.Mode().IsRegular() {
			return false
		}
	}
	return true
}

// IsSAELens reports whether path names a SAELens transcoder: its
// directory, or the weights file in it.
func IsSAELens(path string) bool {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return IsSAELensDir(path)
	}
	return filepath.Base(path) == SAELensWeights
}

// LoadSAELens reads a transcoder saved by SAELens: dir (or the weights file
// in it) holds cfg.json and sae_weights.safetensors with W_enc [d_in,
// d_sae], b_enc [d_sae], W_dec [d_sae, d_out], b_dec [d_out] and, for
// architecture jumprelu_transcoder, threshold [d_sae]. SAELens transcoders
// subtract nothing from their input (their b_dec is the output bias), so
// BDec is zero and BDecOut is b_dec. Skip transcoders (W_skip), other
// architectures and input normalisations are refused with an error that
// says why. Path is the weights file.
func LoadSAELens(path string) (*Transcoder, error) {
	dir, weights := path, filepath.Join(path, SAELensWeights)
	if filepath.Base(path) == SAELensWeights {
		dir, weights = filepath.Dir(path), path
	}
	tc, err := loadSAELens(dir, weights)
	if err != nil {
		return nil, fmt.Errorf("transcoder: %s: %w", dir, err)
	}
	tc.Path = weights
	return tc, nil
}

func readSAELensConfig(dir string) (*saelensConfig, error) {
	raw, err := os.ReadFile(filepath.Join(dir, SAELensConfig))
	if err != nil {
		return nil, err
	}
	var cfg saelensConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", SAELensConfig, err)
	}
	if cfg.Metadata.HookName == "" {
		cfg.Metadata.HookName = cfg.HookName
	}
	if cfg.Metadata.HookNameOut == "" {
		cfg.Metadata.HookNameOut = cfg.HookNameOut
	}
	if cfg.Metadata.ModelName == "" {
		cfg.Metadata.ModelName = cfg.ModelName
	}
	return &cfg, nil
}

var hookLayerRE = regexp.MustCompile(`^blocks\.(\d+)\.(.+)$`)

// hookLayer returns the block of a TransformerLens hook name, -1 when it
// names none.
func hookLayer(hook string) int {
	m := hookLayerRE.FindStringSubmatch(hook)
	if m == nil {
		return -1
	}
	l, err := strconv.Atoi(m[1])
	if err != nil {
		return -1
	}
	return l
}

func loadSAELens(dir, weights string) (*Transcoder, error) {
	cfg, err := readSAELensConfig(dir)
	if err != nil {
		return nil, err
	}
	f, err := safetensors.Open(weights)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, ok := f.Tensor("W_skip"); ok {
		return nil, errors.New("a skip transcoder (it has W_skip): ctxdep's midcoder does not model the skip connection yet; use a transcoder without one")
	}
	_, hasThreshold := f.Tensor("threshold")
	arch := cfg.Architecture
	if arch == "" {
		arch = ArchTranscoder
		if hasThreshold {
			arch = ArchJumpReLUTranscoder
		}
	}
	switch arch {
	case ArchTranscoder, ArchJumpReLUTranscoder:
	case "skip_transcoder", "jumprelu_skip_transcoder":
		return nil, fmt.Errorf("architecture %q is a skip transcoder: ctxdep's midcoder does not model the skip connection yet; use a transcoder without one", arch)
	default:
		return nil, fmt.Errorf("architecture %q is not a transcoder ctxdep reads (%s or %s)", arch, ArchTranscoder, ArchJumpReLUTranscoder)
	}
	if arch == ArchTranscoder && hasThreshold {
		return nil, fmt.Errorf("architecture %q, but the weights have a threshold (a JumpReLU transcoder is %q)", arch, ArchJumpReLUTranscoder)
	}
	for _, a := range []string{cfg.ActivationFn, cfg.ActivationFnStr} {
		if a != "" && a != "relu" {
			return nil, fmt.Errorf("activation function %q: ctxdep reads ReLU and JumpReLU transcoders", a)
		}
	}
	if cfg.ApplyBDecToInput != nil && *cfg.ApplyBDecToInput {
		return nil, errors.New("apply_b_dec_to_input is true, which SAELens does not allow for a transcoder (its b_dec is the output bias)")
	}
	if n := cfg.NormalizeActivations; n != "" && n != "none" {
		return nil, fmt.Errorf("normalize_activations %q: ctxdep feeds the transcoder the MLP input as it is; fold the normalisation into the weights first", n)
	}
	if r := cfg.ReshapeActivations; r != "" && r != "none" {
		return nil, fmt.Errorf("reshape_activations %q: not an MLP transcoder", r)
	}

	tensor := func(name string, rank int) (safetensors.TensorInfo, error) {
		t, ok := f.Tensor(name)
		if !ok {
			return t, fmt.Errorf("%s has no tensor %q (not a SAELens transcoder?)", SAELensWeights, name)
		}
		if len(t.Shape) != rank {
			return t, fmt.Errorf("%s has shape %v, want %d dimensions", name, t.Shape, rank)
		}
		return t, nil
	}
	wEnc, err := tensor("W_enc", 2)
	if err != nil {
		return nil, err
	}
	wDec, err := tensor("W_dec", 2)
	if err != nil {
		return nil, err
	}
	tc := &Transcoder{DIn: wEnc.Shape[0], DSAE: wEnc.Shape[1], DOut: wDec.Shape[1], Layer: -1}
	if err := tc.checkWidths(); err != nil {
		return nil, err
	}
	for _, c := range []struct {
		key  string
		cfg  *int
		want int
	}{{"d_in", cfg.DIn, tc.DIn}, {"d_sae", cfg.DSAE, tc.DSAE}, {"d_out", cfg.DOut, tc.DOut}} {
		if c.cfg != nil && *c.cfg != c.want {
			return nil, fmt.Errorf("%s has %s %d, the weights %d", SAELensConfig, c.key, *c.cfg, c.want)
		}
	}
	shapes := []struct {
		name string
		dst  *[]float32
		want []int
	}{
		{"W_enc", &tc.WEnc, []int{tc.DIn, tc.DSAE}},
		{"b_enc", &tc.BEnc, []int{tc.DSAE}},
		{"W_dec", &tc.WDec, []int{tc.DSAE, tc.DOut}},
		{"b_dec", &tc.BDecOut, []int{tc.DOut}},
	}
	if arch == ArchJumpReLUTranscoder {
		shapes = append(shapes, struct {
			name string
			dst  *[]float32
			want []int
		}{"threshold", &tc.Threshold, []int{tc.DSAE}})
	}
	for _, s := range shapes {
		t, err := tensor(s.name, len(s.want))
		if err != nil {
			return nil, err
		}
		if !slices.Equal(t.Shape, s.want) {
			return nil, fmt.Errorf("%s has shape %v, want %v", s.name, t.Shape, s.want)
		}
		if *s.dst, err = f.Float32(s.name); err != nil {
			return nil, err
		}
		if err := dtype.CheckFinite(s.name, *s.dst, s.want...); err != nil {
			return nil, fmt.Errorf("%w: the transcoder file is damaged; download it again", err)
		}
	}
	tc.BDec = make([]float32, tc.DIn)

	m := cfg.Metadata
	tc.ModelName, tc.HookPoint, tc.OutHookPoint = m.ModelName, m.HookName, m.HookNameOut
	if m.HookName != "" {
		tc.Layer = hookLayer(m.HookName)
		l := tc.Layer
		if l < 0 || (m.HookName != fmt.Sprintf("blocks.%d.ln2.hook_normalized", l) && m.HookName != fmt.Sprintf("blocks.%d.hook_mlp_in", l)) {
			return nil, fmt.Errorf("hook_name %q: ctxdep feeds a transcoder the MLP input, blocks.L.ln2.hook_normalized (or blocks.L.hook_mlp_in)", m.HookName)
		}
		if out := m.HookNameOut; out != "" && out != fmt.Sprintf("blocks.%d.hook_mlp_out", l) {
			return nil, fmt.Errorf("hook_name_out %q: ctxdep's transcoders replace the MLP of their block, blocks.%d.hook_mlp_out", out, l)
		}
	}
	return tc, nil
}

// SAELensLayer returns the block whose MLP the SAELens transcoder in dir
// reads, from its cfg.json's hook name; -1 when it names none.
func SAELensLayer(dir string) (int, error) {
	cfg, err := readSAELensConfig(dir)
	if err != nil {
		return -1, fmt.Errorf("transcoder: %s: %w", dir, err)
	}
	return hookLayer(cfg.Metadata.HookName), nil
}

// findSAELens looks for the SAELens transcoder of layer: dir itself, or
// one of its subdirectories (and theirs: hub repositories keep one folder
// per layer, sometimes nested by width), chosen by the hook name in its
// cfg.json. It returns the weights file, or "" when there is none.
func findSAELens(dir string, layer int) (string, error) {
	var found []string
	var walk func(d string, depth int) error
	walk = func(d string, depth int) error {
		if IsSAELensDir(d) {
			l, err := SAELensLayer(d)
			if err != nil {
				return err
			}
			if l == layer || l < 0 && d == dir { // dir itself, named by the user
				found = append(found, d)
			}
			return nil
		}
		if depth == 0 {
			return nil
		}
		entries, err := os.ReadDir(d)
		if err != nil {
			return nil
		}
		for _, e := range entries {
			p := filepath.Join(d, e.Name())
			if st, err := os.Stat(p); err == nil && st.IsDir() && !strings.HasPrefix(e.Name(), ".") {
				if err := walk(p, depth-1); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(dir, 2); err != nil {
		return "", err
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return filepath.Join(found[0], SAELensWeights), nil
	}
	return "", fmt.Errorf("transcoder: %s has several SAELens transcoders for layer %d: %v; pass --transcoder DIR", dir, layer, found)
}

// SAELensSparsityNextTo returns the sparsity.safetensors next to a SAELens
// weights file, "" when there is none.
func SAELensSparsityNextTo(weights string) string {
	p := filepath.Join(filepath.Dir(weights), SAELensSparsity)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// loadSparsitySafetensors reads a SAELens sparsity.safetensors: the log10
// feature frequencies, in its only tensor (SAELens names it "sparsity").
func loadSparsitySafetensors(path string) ([]float32, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ts := f.Tensors()
	name := "sparsity"
	if _, ok := f.Tensor(name); !ok {
		if len(ts) != 1 {
			return nil, fmt.Errorf("transcoder: %s: no tensor \"sparsity\" of log10 feature frequencies", path)
		}
		name = ts[0].Name
	}
	t, _ := f.Tensor(name)
	if len(t.Shape) != 1 {
		return nil, fmt.Errorf("transcoder: %s: sparsity tensor has shape %v, want one dimension", path, t.Shape)
	}
	return f.Float32(name)
}

// WriteSAELens writes tc as a SAELens transcoder directory (cfg.json and
// sae_weights.safetensors) in dir, for tests and fixtures. A transcoder
// whose input bias BDec is not zero is written with it folded into b_enc:
// (x − b_dec)·W_enc + b_enc = x·W_enc + (b_enc − b_dec·W_enc), summed in
// float64 and rounded once.
func WriteSAELens(dir string, tc *Transcoder) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	c, f := tc.DIn, tc.DSAE
	bEnc := make([]float32, f)
	for j := range bEnc {
		s := float64(tc.BEnc[j])
		for i := 0; i < c; i++ {
			s -= float64(tc.BDec[i]) * float64(tc.WEnc[i*f+j])
		}
		bEnc[j] = float32(s)
	}
	arch := ArchTranscoder
	tensors := []safetensors.Tensor{
		{Name: "W_enc", DType: safetensors.F32, Shape: []int{c, f}, Data: safetensors.Float32Bytes(nil, tc.WEnc)},
		{Name: "b_enc", DType: safetensors.F32, Shape: []int{f}, Data: safetensors.Float32Bytes(nil, bEnc)},
		{Name: "W_dec", DType: safetensors.F32, Shape: []int{f, tc.DOut}, Data: safetensors.Float32Bytes(nil, tc.WDec)},
		{Name: "b_dec", DType: safetensors.F32, Shape: []int{tc.DOut}, Data: safetensors.Float32Bytes(nil, tc.BDecOut)},
	}
	if tc.Threshold != nil {
		arch = ArchJumpReLUTranscoder
		tensors = append(tensors, safetensors.Tensor{Name: "threshold", DType: safetensors.F32, Shape: []int{f}, Data: safetensors.Float32Bytes(nil, tc.Threshold)})
	}
	cfg := map[string]any{
		"architecture":          arch,
		"d_in":                  c,
		"d_sae":                 f,
		"d_out":                 tc.DOut,
		"dtype":                 "float32",
		"device":                "cpu",
		"apply_b_dec_to_input":  false,
		"normalize_activations": "none",
		"reshape_activations":   "none",
		"metadata": map[string]any{
			"model_name":    tc.ModelName,
			"hook_name":     tc.HookPoint,
			"hook_name_out": tc.OutHookPoint,
		},
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(cfg); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, SAELensConfig), b.Bytes(), 0o644); err != nil {
		return err
	}
	return safetensors.WriteFile(filepath.Join(dir, SAELensWeights), tensors, nil)
}
