package gpt2

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/safetensors"
)

// copyModel copies the checkpoint directory src (config.json and weights
// file name) into a temporary directory and returns it with the weights'
// bytes.
func copyModel(t *testing.T, src, name string) (dir string, weights []byte) {
	t.Helper()
	dir = t.TempDir()
	for _, f := range []string{"config.json", name} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
		weights = b
	}
	return dir, weights
}

// tensorBytes returns the raw bytes of the named tensor of the tiny model's
// safetensors file.
func tensorBytes(t *testing.T, name string) []byte {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(tinyDir, SafetensorsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	raw, err := f.Raw(name)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Clone(raw)
}

// A NaN or an Inf in any weight of the checkpoint (issue 18, row 5: they
// gave a NaN cache, exit 0) is refused at load, naming the file, the tensor
// and the index; in safetensors and in torch's legacy format alike.
func TestLoadRefusesNonFiniteWeights(t *testing.T) {
	for _, tc := range []struct {
		name, tensor string
		elem         int
		value        float32
		index        string
	}{
		{"NaN in a matrix", "h.1.mlp.c_fc.weight", 2*64 + 5, float32(math.NaN()), "NaN at [2, 5]"},
		{"Inf in a bias", "h.2.attn.c_proj.bias", 3, float32(math.Inf(1)), "+Inf at [3]"},
		{"-Inf in the embedding", "wte.weight", 7*16 + 1, float32(math.Inf(-1)), "-Inf at [7, 1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := tensorBytes(t, tc.tensor)
			for _, src := range []struct{ dir, file string }{{tinyDir, SafetensorsFile}, {legacyDir, TorchFile}} {
				dir, w := copyModel(t, src.dir, src.file)
				// The tensor's bytes are stored whole in both formats.
				at := bytes.Index(w, want)
				if at < 0 || bytes.Index(w[at+1:], want) >= 0 {
					t.Fatalf("%s: %s's bytes are not found once", src.file, tc.tensor)
				}
				binary.LittleEndian.PutUint32(w[at+4*tc.elem:], math.Float32bits(tc.value))
				path := filepath.Join(dir, src.file)
				if err := os.WriteFile(path, w, 0o644); err != nil {
					t.Fatal(err)
				}
				_, err := Load(dir)
				if err == nil {
					t.Fatalf("%s: Load accepted a checkpoint with %s", src.file, tc.index)
				}
				msg := err.Error()
				for _, s := range []string{path, `"` + tc.tensor + `"`, tc.index} {
					if !strings.Contains(msg, s) {
						t.Errorf("%s: Load error %q does not mention %q", src.file, msg, s)
					}
				}
			}
		})
	}
}

// The causal-mask buffers are not weights: what they hold is not checked
// (torch stores -inf or -1e4 there).
func TestLoadIgnoresMaskBuffers(t *testing.T) {
	dir, w := copyModel(t, tinyDir, SafetensorsFile)
	f, err := safetensors.Parse(w)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := f.Tensor("h.0.attn.bias")
	off := 8 + int64(binary.LittleEndian.Uint64(w)) + info.Begin
	binary.LittleEndian.PutUint32(w[off:], math.Float32bits(float32(math.Inf(-1))))
	if err := os.WriteFile(filepath.Join(dir, SafetensorsFile), w, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err != nil {
		t.Fatal(err)
	}
}
