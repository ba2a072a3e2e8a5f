package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyFile copies src to dst, making dst's directory.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(dst), 0o755)
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// A midcoder's rows belong to the features of the transcoder it was fitted
// on: report and evaluate refuse one fitted on another transcoder of the
// same width (here the fp16 copy of layer 1's: another file, other
// values), and report's --pinv refuses a file fit wrote (it would compare
// the fit with itself: cosine 1 everywhere).
func TestMidcoderOfAnotherTranscoderRefused(t *testing.T) {
	cache := buildCache(t, true)
	tmp := t.TempDir()
	fit, other := filepath.Join(tmp, "fit"), filepath.Join(tmp, "fit-fp16")
	if code, _, errs := ctxdep(t, fitArgs(cache, fit)...); code != 0 {
		t.Fatalf("fit: %d %s", code, errs)
	}
	args := fitArgs(cache, other)
	for i, a := range args {
		if a == tinyTC {
			args[i] = filepath.Join(tinyTC, "fp16")
		}
	}
	if code, _, errs := ctxdep(t, args...); code != 0 {
		t.Fatalf("fit with the fp16 transcoder: %d %s", code, errs)
	}
	mid := func(dir string) string { return filepath.Join(dir, "midcoder.safetensors") }
	report := func(out string, extra ...string) (int, string) {
		code, _, errs := ctxdep(t, append([]string{"report", "-q", "--cache", cache, "--model", tinyModel, "--transcoders", tinyTC,
			"--out", out, "--top-k", "2"}, extra...)...)
		return code, errs
	}

	out := filepath.Join(tmp, "r")
	code, errs := report(out, "--midcoder", mid(other))
	expectError(t, code, errs, 1, "--midcoder "+mid(other), "another transcoder", "fp16")
	code, errs = report(out, "--midcoder", mid(fit), "--pinv", mid(other))
	expectError(t, code, errs, 1, "--pinv "+mid(other), "another transcoder")
	code, errs = report(out, "--midcoder", mid(fit), "--pinv", mid(fit))
	expectError(t, code, errs, 1, "--pinv "+mid(fit), `records method "fit", not "pinv"`, "pinv-baseline")
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused report left %s: %v", out, err)
	}
	code, _, errs = ctxdep(t, "evaluate", "-q", "--cache", cache, "--model", tinyModel, "--transcoders", tinyTC, "--midcoder", mid(other))
	expectError(t, code, errs, 1, "another transcoder")

	// The cache stores the float32 transcoder's acts: naming the fp16 one
	// does not make the fp16 fit's rows fit them.
	code, _, errs = ctxdep(t, "report", "-q", "--cache", cache, "--model", tinyModel, "--transcoders", filepath.Join(tinyTC, "fp16"),
		"--out", out, "--top-k", "2", "--midcoder", mid(other))
	expectError(t, code, errs, 1, "another transcoder")
	// The fit of the transcoder whose acts the cache stores is taken.
	if code, errs := report(out, "--midcoder", mid(fit)); code != 0 {
		t.Errorf("report with the fit's own transcoder: %d %s", code, errs)
	}
}

// A safetensors file of another kind given as --midcoder (a cache shard)
// is named as not a midcoder file, not as an unsupported version.
func TestMidcoderNotAMidcoder(t *testing.T) {
	cache := buildCache(t, true)
	shards, _ := filepath.Glob(filepath.Join(cache, "shard-*"))
	if len(shards) == 0 {
		t.Fatal("no shards")
	}
	code, _, errs := ctxdep(t, "report", "-q", "--cache", cache, "--model", tinyModel, "--transcoders", tinyTC,
		"--out", filepath.Join(t.TempDir(), "r"), "--midcoder", shards[0])
	expectError(t, code, errs, 1, shards[0], "is not a midcoder file", "ctxdep fit and pinv-baseline write")
}

// report --layers and evaluate --layers check every layer's midcoder files
// against the layer's cache before the first layer's pass: a wrong file
// for the last layer is refused with nothing on stdout (each layer's pass
// prints its "== layer" heading first).
func TestLayersMidcodersCheckedUpFront(t *testing.T) {
	set := buildSet(t)
	tmp := t.TempDir()
	fit, pinv := filepath.Join(tmp, "fit"), filepath.Join(tmp, "pinv")
	if code, _, errs := ctxdep(t, append(fitArgs(set, fit), "--layers", "all")...); code != 0 {
		t.Fatalf("fit --layers: %d %s", code, errs)
	}
	if code, _, errs := ctxdep(t, "pinv-baseline", "-q", "--cache", set, "--model", tinyModel, "--transcoders", tinyTC, "--layers", "all", "--out", pinv); code != 0 {
		t.Fatalf("pinv-baseline --layers: %d %s", code, errs)
	}
	// Layer 2's --pinv file is the fit's.
	mixed := filepath.Join(tmp, "mixed")
	copyFile(t, filepath.Join(pinv, "layer-01.safetensors"), filepath.Join(mixed, "layer-01.safetensors"))
	copyFile(t, filepath.Join(fit, "layer-02", "midcoder.safetensors"), filepath.Join(mixed, "layer-02.safetensors"))
	code, stdout, errs := ctxdep(t, "report", "--cache", set, "--layers", "all", "--model", tinyModel, "--transcoders", tinyTC,
		"--midcoder", fit, "--pinv", mixed, "--out", filepath.Join(tmp, "r"))
	expectError(t, code, errs, 1, "layer 2", "--pinv", `records method "fit"`)
	if stdout != "" {
		t.Errorf("report --layers worked before refusing layer 2's file: stdout %q", stdout)
	}
	// Layer 2's --midcoder file is layer 1's.
	wrong := filepath.Join(tmp, "wrong")
	copyFile(t, filepath.Join(fit, "layer-01", "midcoder.safetensors"), filepath.Join(wrong, "layer-01", "midcoder.safetensors"))
	copyFile(t, filepath.Join(fit, "layer-01", "midcoder.safetensors"), filepath.Join(wrong, "layer-02", "midcoder.safetensors"))
	code, stdout, errs = ctxdep(t, "evaluate", "--cache", set, "--layers", "all", "--model", tinyModel, "--transcoders", tinyTC, "--midcoder", wrong)
	expectError(t, code, errs, 1, "layer 2", "is for layer 1")
	if stdout != "" {
		t.Errorf("evaluate --layers worked before refusing layer 2's file: stdout %q", stdout)
	}
}

// The --layers check before any work compares a midcoder with the
// transcoder the layer's run uses: for evaluate the one it loads (not the
// one whose acts the cache stores: evaluate encodes x itself), so that
// --layers takes what --layer takes; and on a cache without acts, the one
// report and evaluate will load, so that a wrong file is refused before
// the first layer's output.
func TestLayersCheckTheTranscoderUsed(t *testing.T) {
	tmp := t.TempDir()
	fp16 := filepath.Join(tinyTC, "fp16")
	set := buildSet(t) // layers 1, 2, with the float32 transcoders' acts
	fit16 := filepath.Join(tmp, "fit16")
	if code, _, errs := ctxdep(t, "fit", "-q", "--cache", set, "--layers", "1", "--transcoders", fp16,
		"--batch-size", "2", "--steps-per-epoch", "3", "--train-tokens", "200", "--out", fit16); code != 0 {
		t.Fatalf("fit --layers 1 with the fp16 transcoder: %d %s", code, errs)
	}
	for _, sel := range [][]string{{"--layer", "1"}, {"--layers", "1"}} {
		arg := fit16
		if sel[0] == "--layer" {
			arg = filepath.Join(fit16, "layer-01", "midcoder.safetensors")
		}
		code, _, errs := ctxdep(t, append([]string{"evaluate", "-q", "--cache", set, "--transcoders", fp16, "--midcoder", arg}, sel...)...)
		if code != 0 {
			t.Errorf("evaluate %v with the fit's own transcoder: %d %s", sel, code, errs)
		}
	}

	// A cache without acts; layer 1's transcoder in --transcoders is not
	// the one the fit used.
	noActs := filepath.Join(tmp, "set-no-acts")
	if code, _, errs := ctxdep(t, "cache", "build", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--layers", "1,2",
		"--tokens", tokensNpy, "--sequences-per-shard", "4", "--batch-size", "4", "--out", noActs); code != 0 {
		t.Fatalf("cache build: %d %s", code, errs)
	}
	fit := filepath.Join(tmp, "fit")
	if code, _, errs := ctxdep(t, append(fitArgs(noActs, fit), "--layers", "all")...); code != 0 {
		t.Fatalf("fit --layers all: %d %s", code, errs)
	}
	mixed := filepath.Join(tmp, "mixed")
	for _, f := range []string{"blocks.1.ln2.hook_normalized_64.pt", "blocks.2.ln2.hook_normalized_64.pt"} {
		src := filepath.Join(tinyTC, "final_sparse_autoencoder_gpt2-small_"+f)
		if strings.Contains(f, "blocks.1.") {
			src = filepath.Join(fp16, "final_sparse_autoencoder_gpt2-small_"+f)
		}
		copyFile(t, src, filepath.Join(mixed, filepath.Base(src)))
	}
	code, stdout, errs := ctxdep(t, "evaluate", "--cache", noActs, "--layers", "all", "--model", tinyModel, "--transcoders", mixed, "--midcoder", fit)
	expectError(t, code, errs, 1, "layer 1", "another transcoder")
	if stdout != "" {
		t.Errorf("evaluate --layers worked before refusing layer 1's file: stdout %q", stdout)
	}
	code, stdout, errs = ctxdep(t, "report", "--cache", noActs, "--layers", "all", "--model", tinyModel, "--transcoders", mixed,
		"--midcoder", fit, "--out", filepath.Join(tmp, "r"))
	expectError(t, code, errs, 1, "layer 1", "another transcoder")
	if stdout != "" {
		t.Errorf("report --layers worked before refusing layer 1's file: stdout %q", stdout)
	}
}
