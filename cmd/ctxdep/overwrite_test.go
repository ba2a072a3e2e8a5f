package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ctxdep/ctxdep/internal/actcache"
)

// Row 9 of issue 18: pinv-baseline and tokenize refuse an existing --out
// unless --force, and never write into an activation cache (its
// manifest.json or any other file there), even with --force.
func TestOutNotOverwritten(t *testing.T) {
	cache := buildCache(t, false)
	manifest := filepath.Join(cache, actcache.ManifestName)
	before, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	pinv := func(out string, extra ...string) (int, string) {
		code, _, errs := ctxdep(t, append([]string{"pinv-baseline", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--layer", "1", "--out", out}, extra...)...)
		return code, errs
	}
	out := filepath.Join(t.TempDir(), "pinv.safetensors")
	os.WriteFile(out, []byte("keep me"), 0o644)
	code, errs := pinv(out)
	expectError(t, code, errs, 1, out, "already exists", "--force")
	if b, _ := os.ReadFile(out); string(b) != "keep me" {
		t.Error("pinv-baseline replaced an existing --out without --force")
	}
	if code, errs := pinv(out, "--force"); code != 0 {
		t.Fatalf("pinv-baseline --force: %d %s", code, errs)
	}
	if b, _ := os.ReadFile(out); string(b) == "keep me" {
		t.Error("pinv-baseline --force did not replace --out")
	}
	code, errs = pinv(t.TempDir(), "--force")
	expectError(t, code, errs, 1, "is a directory")
	for _, target := range []string{manifest, filepath.Join(cache, "pinv.safetensors")} {
		code, errs = pinv(target, "--force")
		expectError(t, code, errs, 1, "inside the activation cache "+cache, "even with --force")
	}

	corpus := writeCorpus(t, 200)
	tokenize := func(out string, extra ...string) (int, string) {
		code, _, errs := ctxdep(t, append([]string{"tokenize", "-q", "--data", corpus, "--max-length", "16", "--out", out}, extra...)...)
		return code, errs
	}
	rows := filepath.Join(t.TempDir(), "rows.npy")
	os.WriteFile(rows, []byte("keep me"), 0o644)
	code, errs = tokenize(rows)
	expectError(t, code, errs, 1, rows, "already exists", "--force")
	if b, _ := os.ReadFile(rows); string(b) != "keep me" {
		t.Error("tokenize replaced an existing --out without --force")
	}
	if code, errs := tokenize(rows, "--force"); code != 0 {
		t.Fatalf("tokenize --force: %d %s", code, errs)
	}
	code, errs = tokenize(manifest, "--force")
	expectError(t, code, errs, 1, "inside the activation cache", "even with --force")

	if after, _ := os.ReadFile(manifest); string(after) != string(before) {
		t.Error("the cache's manifest.json was overwritten")
	}
	entries, _ := os.ReadDir(cache)
	for _, e := range entries {
		if e.Name() == "pinv.safetensors" {
			t.Error("pinv-baseline wrote into the cache directory")
		}
	}
}
