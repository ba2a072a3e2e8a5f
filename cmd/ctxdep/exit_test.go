package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Bad arguments exit 2 (usage), as the root's --help promises: a --layer
// that the layer set --cache names does not hold, and a report --out that
// is a file.
func TestBadArgumentsExitUsage(t *testing.T) {
	set := buildSet(t)
	tmp := t.TempDir()
	code, _, errs := ctxdep(t, fitArgs(set, filepath.Join(tmp, "fit"), "--layer", "0")...)
	expectError(t, code, errs, 2, "--layer 0", "holds layers 1, 2")

	cache := buildCache(t, true)
	fit := filepath.Join(tmp, "fit1")
	if code, _, errs := ctxdep(t, fitArgs(cache, fit)...); code != 0 {
		t.Fatalf("fit: %d %s", code, errs)
	}
	file := filepath.Join(tmp, "a-file")
	os.WriteFile(file, []byte("mine"), 0o644)
	code, _, errs = ctxdep(t, "report", "-q", "--cache", cache, "--model", tinyModel, "--transcoders", tinyTC,
		"--midcoder", filepath.Join(fit, "midcoder.safetensors"), "--out", file)
	expectError(t, code, errs, 2, "--out "+file, "exists and is not a directory")
	if b, _ := os.ReadFile(file); string(b) != "mine" {
		t.Errorf("the refused report changed %s", file)
	}
}

// A --top-k beyond the MLP's width is used as the whole width, and report
// says so (the tiny model's MLP has 64 neurons).
func TestReportTopKBeyondWidth(t *testing.T) {
	cache := buildCache(t, true)
	tmp := t.TempDir()
	fit := filepath.Join(tmp, "fit")
	if code, _, errs := ctxdep(t, fitArgs(cache, fit)...); code != 0 {
		t.Fatalf("fit: %d %s", code, errs)
	}
	code, _, errs := ctxdep(t, "report", "--cache", cache, "--model", tinyModel, "--transcoders", tinyTC,
		"--midcoder", filepath.Join(fit, "midcoder.safetensors"), "--out", filepath.Join(tmp, "r"), "--top-k", "1000")
	if code != 0 || !strings.Contains(errs, "--top-k 1000 is more than the MLP's 64 neurons") {
		t.Errorf("report --top-k 1000: %d %q", code, errs)
	}
}

// fit's --out is a directory it makes: a file there, or where a parent
// would be, is refused before any work (the model named here does not
// exist, so a check after loading it would fail on --model instead).
func TestFitOutIsFile(t *testing.T) {
	cache := buildCache(t, true)
	file := filepath.Join(t.TempDir(), "a-file")
	os.WriteFile(file, []byte("mine"), 0o644)
	noModel := filepath.Join(t.TempDir(), "no-model")
	for _, c := range []struct{ out, want string }{
		{file, "--out " + file + " is a file: fit writes a directory"},
		{filepath.Join(file, "fit"), "--out " + filepath.Join(file, "fit") + " cannot be made: " + file + " is a file"},
	} {
		code, _, errs := ctxdep(t, "fit", "-q", "--cache", cache, "--model", noModel, "--transcoders", tinyTC, "--batch-size", "2", "--out", c.out)
		expectError(t, code, errs, 2, c.want)
	}
	if b, _ := os.ReadFile(file); string(b) != "mine" {
		t.Errorf("a refused fit changed %s", file)
	}
}

// A --cache that does not exist is said to be missing, not to be a
// directory that holds no cache.
func TestCacheMissing(t *testing.T) {
	none := filepath.Join(t.TempDir(), "no-cache")
	code, _, errs := ctxdep(t, "evaluate", "--cache", none, "--model", tinyModel, "--transcoders", tinyTC)
	expectError(t, code, errs, 1, none+": no such directory")
}

// A report --out below a file exits 2, as fit's, pinv-baseline's and
// cache build's do.
func TestReportOutBelowFile(t *testing.T) {
	cache := buildCache(t, true)
	tmp := t.TempDir()
	fit := filepath.Join(tmp, "fit")
	if code, _, errs := ctxdep(t, fitArgs(cache, fit)...); code != 0 {
		t.Fatalf("fit: %d %s", code, errs)
	}
	file := filepath.Join(tmp, "a-file")
	os.WriteFile(file, []byte("mine"), 0o644)
	code, _, errs := ctxdep(t, "report", "-q", "--cache", cache, "--model", tinyModel, "--transcoders", tinyTC,
		"--midcoder", filepath.Join(fit, "midcoder.safetensors"), "--out", filepath.Join(file, "r"))
	expectError(t, code, errs, 2, file+" is not a directory")
}

// tokenize never writes over its own corpus, even with --force (the
// corpus file itself, or a file inside a corpus directory), and an
// unknown --format is a usage error (it exited 1).
func TestTokenizeOutIsInput(t *testing.T) {
	corpus := writeCorpus(t, 50)
	before, _ := os.ReadFile(corpus)
	dir := filepath.Dir(corpus)
	for _, c := range []struct{ data, out string }{
		{corpus, corpus},
		{corpus, filepath.Join(dir, ".", filepath.Base(corpus))},
		{dir, filepath.Join(dir, "rows.npy")},
	} {
		code, _, errs := ctxdep(t, "tokenize", "-q", "--data", c.data, "--out", c.out, "--force", "--max-length", "16")
		expectError(t, code, errs, 2, "is the corpus --data "+c.data+" reads")
	}
	if after, _ := os.ReadFile(corpus); !bytes.Equal(before, after) {
		t.Error("tokenize changed its corpus")
	}
	code, _, errs := ctxdep(t, "tokenize", "-q", "--data", corpus, "--out", filepath.Join(t.TempDir(), "r.npy"), "--format", "csv")
	expectError(t, code, errs, 2, `--format "csv"`, "jsonl")
}
