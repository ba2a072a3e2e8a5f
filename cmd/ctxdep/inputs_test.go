package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// noDefaultInputs empties every default source of the model and the
// transcoders: the environment variables and the hub cache.
func noDefaultInputs(t *testing.T) {
	t.Helper()
	t.Setenv("CTXDEP_MODEL", "")
	t.Setenv("CTXDEP_TRANSCODERS", "")
	t.Setenv("HF_HOME", t.TempDir())
	t.Setenv("HF_HUB_CACHE", "")
}

// copyFiles copies the named files of src into a new temporary directory.
func copyFiles(t *testing.T, src string, names ...string) string {
	t.Helper()
	dst := t.TempDir()
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, n), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

const tinyTCFile = "final_sparse_autoencoder_gpt2-small_blocks.1.ln2.hook_normalized_64.pt"

// A cache remembers the model and transcoder it was built from: commands
// given --cache alone use them, and say so.
func TestCacheRemembersInputs(t *testing.T) {
	noDefaultInputs(t)
	model := copyFiles(t, tinyModel, "config.json", "model.safetensors")
	tcDir := copyFiles(t, tinyTC, tinyTCFile)
	cache := filepath.Join(t.TempDir(), "cache")
	code, _, errs := ctxdep(t, "cache", "build", "-q", "--model", model, "--transcoders", tcDir, "--layer", "1",
		"--tokens", tokensNpy, "--with-acts", "--out", cache)
	if code != 0 {
		t.Fatalf("cache build: %d %s", code, errs)
	}

	code, out, errs := ctxdep(t, "evaluate", "--cache", cache)
	if code != 0 {
		t.Fatalf("evaluate with the cache's inputs: %d %s", code, errs)
	}
	for _, want := range []string{
		"model: " + filepath.Join(model, "model.safetensors") + ", as recorded in the cache " + cache,
		"transcoder: " + filepath.Join(tcDir, tinyTCFile) + ", as recorded in the cache",
	} {
		if strings.Count(errs, want) != 1 {
			t.Errorf("evaluate's stderr does not say once %q:\n%s", want, errs)
		}
	}
	if !strings.Contains(out, "transcoder") {
		t.Errorf("evaluate printed %q", out)
	}
	// -q silences the note, not the choice.
	code, out2, errs := ctxdep(t, "evaluate", "-q", "--cache", cache)
	if code != 0 || errs != "" || out2 != out {
		t.Errorf("evaluate -q: %d, stderr %q, stdout %q, want %q", code, errs, out2, out)
	}
	code, out, errs = ctxdep(t, "inspect-cache", cache, "--json", "-q")
	if code != 0 || !strings.Contains(out, `"acts_source":"stored"`) || strings.Contains(out, "transcoder_note") {
		t.Errorf("inspect-cache with the cache's transcoder: %d %s %s", code, out, errs)
	}

	// A flag still wins over the cache's record.
	code, _, errs = ctxdep(t, "evaluate", "--cache", cache, "--model", tinyModel)
	if code != 0 || strings.Contains(errs, "model: ") {
		t.Errorf("evaluate --model: %d %s", code, errs)
	}

	// A changed transcoder is an error that names the flags to pass.
	tcPath := filepath.Join(tcDir, tinyTCFile)
	b, _ := os.ReadFile(tcPath)
	os.WriteFile(tcPath, append(b, 0), 0o644)
	code, _, errs = ctxdep(t, "evaluate", "--cache", cache)
	expectError(t, code, errs, 1, "transcoder", tcPath, "changed since the cache", "--transcoder FILE or --transcoders DIR")
	// A transcoder gone: inspect-cache goes on without one; evaluate,
	// which needs one, names the flags.
	os.Remove(tcPath)
	code, out, errs = ctxdep(t, "inspect-cache", cache, "--json", "-q")
	if code != 0 || !strings.Contains(out, "transcoder_note") {
		t.Errorf("inspect-cache without the recorded transcoder: %d %s %s", code, out, errs)
	}
	code, _, errs = ctxdep(t, "evaluate", "--cache", cache)
	expectError(t, code, errs, 1, tcPath, "no longer there", "--transcoder FILE or --transcoders DIR")

	// A changed model, then a model gone: errors naming --model.
	weights := filepath.Join(model, "model.safetensors")
	b, _ = os.ReadFile(weights)
	b[len(b)-1] ^= 1
	os.WriteFile(weights, b, 0o644)
	code, _, errs = ctxdep(t, "evaluate", "--cache", cache, "--transcoders", tinyTC)
	expectError(t, code, errs, 1, weights, "changed since the cache", "--model DIR")
	os.Remove(weights)
	code, _, errs = ctxdep(t, "evaluate", "--cache", cache, "--transcoders", tinyTC)
	expectError(t, code, errs, 1, weights, "no longer there", "--model DIR")
}

const tinySAELens = "../../testdata/tiny-transcoders-saelens"

// The SAELens form of the layer-1 transcoder, named by its directory or
// found in --transcoders by its cfg.json, gives what the pickle gives.
func TestSAELensTranscoder(t *testing.T) {
	noDefaultInputs(t)
	cache := buildCache(t, false)
	eval := func(flag, value string) map[string]any {
		t.Helper()
		code, out, errs := ctxdep(t, "evaluate", "-q", "--json", "--cache", cache, "--model", tinyModel, flag, value)
		if code != 0 {
			t.Fatalf("evaluate %s %s: %d %s", flag, value, code, errs)
		}
		var res map[string]any
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	want := eval("--transcoders", tinyTC)
	for _, c := range [][2]string{{"--transcoder", filepath.Join(tinySAELens, "layer-1")}, {"--transcoders", tinySAELens}} {
		got := eval(c[0], c[1])
		for _, k := range []string{"ce_transcoder", "nmse_transcoder"} {
			g, _ := got[k].(float64)
			w, _ := want[k].(float64)
			if math.Abs(g-w) > 1e-5*math.Abs(w) || w == 0 {
				t.Errorf("%s %s: %s = %v, the pickle's %v", c[0], c[1], k, got[k], want[k])
			}
		}
	}
	code, out, errs := ctxdep(t, "inspect-cache", cache, "-q", "--json", "--transcoder", filepath.Join(tinySAELens, "layer-1"))
	if code != 0 || !strings.Contains(out, `"live_features":`) {
		t.Errorf("inspect-cache with a SAELens transcoder: %d %s %s", code, out, errs)
	}
	code, _, errs = ctxdep(t, "evaluate", "--cache", cache, "--model", tinyModel, "--transcoders", tinySAELens, "--layer", "1", "--transcoder", filepath.Join(tinySAELens, "nothing"))
	expectError(t, code, errs, 1, "nothing")
}

// fakeSnapshot lays out repo at commit in the hub cache under home as
// huggingface_hub does (refs/main, snapshots/COMMIT/ with links to files
// of src), and returns the snapshot.
func fakeSnapshot(t *testing.T, home, repo, commit, src string, names ...string) string {
	t.Helper()
	dir := filepath.Join(home, "hub", "models--"+strings.ReplaceAll(repo, "/", "--"))
	snap := filepath.Join(dir, "snapshots", commit)
	if err := os.MkdirAll(snap, 0o755); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, "refs"), 0o755)
	os.WriteFile(filepath.Join(dir, "refs", "main"), []byte(commit), 0o644)
	for _, n := range names {
		abs, _ := filepath.Abs(filepath.Join(src, n))
		os.MkdirAll(filepath.Dir(filepath.Join(snap, n)), 0o755)
		if err := os.Symlink(abs, filepath.Join(snap, n)); err != nil {
			t.Fatal(err)
		}
	}
	return snap
}

// --model and --transcoders take hub repository ids, OWNER/NAME[@REV],
// found in the hub cache.
func TestHubRepoIDs(t *testing.T) {
	noDefaultInputs(t)
	home := os.Getenv("HF_HOME")
	fakeSnapshot(t, home, "someone/tiny-gpt2", "c0ffee", tinyModel, "config.json", "model.safetensors")
	fakeSnapshot(t, home, "someone/tiny-tc", "beef", tinyTC, tinyTCFile)
	fakeSnapshot(t, home, "someone/tiny-saelens", "f00d", tinySAELens, "layer-1/cfg.json", "layer-1/sae_weights.safetensors")
	cache := buildCache(t, false)
	for _, args := range [][]string{
		{"--model", "someone/tiny-gpt2", "--transcoders", "someone/tiny-tc"},
		{"--model", "someone/tiny-gpt2@main", "--transcoders", "someone/tiny-tc@beef"},
		{"--model", "someone/tiny-gpt2@c0ffee", "--transcoders", "someone/tiny-saelens"},
	} {
		code, _, errs := ctxdep(t, append([]string{"evaluate", "-q", "--cache", cache}, args...)...)
		if code != 0 {
			t.Errorf("evaluate %v: %d %s", args, code, errs)
		}
	}
	code, _, errs := ctxdep(t, "evaluate", "-q", "--cache", cache, "--model", "someone/tiny-gpt2@v2", "--transcoders", tinyTC)
	expectError(t, code, errs, 1, "--model someone/tiny-gpt2@v2", "at revision v2", "not in the hub cache", "huggingface-cli download someone/tiny-gpt2 --revision v2")
	t.Setenv("CTXDEP_TRANSCODERS", "nobody/nothing")
	code, _, errs = ctxdep(t, "evaluate", "-q", "--cache", cache, "--model", tinyModel)
	expectError(t, code, errs, 1, "$CTXDEP_TRANSCODERS nobody/nothing", "not in the hub cache")
}

// --model takes a directory: a file in it (config.json, the weights) or a
// path that is not there is an error that says so, naming what it takes
// (it was "open …/config.json/config.json: not a directory").
func TestModelFlagWants(t *testing.T) {
	cache := buildCache(t, true)
	for _, c := range []struct {
		model string
		want  []string
	}{
		{filepath.Join(tinyModel, "config.json"), []string{"config.json is a file", "takes a GPT-2 checkpoint's directory", "perhaps " + tinyModel}},
		{filepath.Join(tinyModel, "model.safetensors"), []string{"model.safetensors is a file", "perhaps " + tinyModel}},
		{filepath.Join(t.TempDir(), "no-model"), []string{"no-model: no such directory", "--model takes"}},
	} {
		code, _, errs := ctxdep(t, "evaluate", "-q", "--cache", cache, "--model", c.model, "--transcoders", tinyTC)
		expectError(t, code, errs, 1, append([]string{"--model " + c.model}, c.want...)...)
	}
}
