package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/npy"
)

// `cache build --data` without --n-tokens caches the whole corpus: exactly
// the rows `tokenize` writes for it, counted as they stream; a rerun ends
// with the same cache; a sharded build from text is refused, saying to
// tokenize first.
func TestCacheBuildWholeCorpus(t *testing.T) {
	corpus := writeCorpus(t, 600)
	rows := filepath.Join(t.TempDir(), "rows.npy")
	if code, _, errs := ctxdep(t, "tokenize", "-q", "--data", corpus, "--max-length", "16", "--out", rows); code != 0 {
		t.Fatalf("tokenize: %d %s", code, errs)
	}
	want, shape, err := npy.ReadInt32(rows)
	if err != nil || shape[0] < 5 {
		t.Fatalf("tokenize wrote %v, %v", shape, err)
	}
	dir := filepath.Join(t.TempDir(), "c")
	args := []string{"cache", "build", "-q", "--model", tinyModel, "--layer", "0", "--data", corpus,
		"--max-length", "16", "--sequences-per-shard", "3", "--batch-size", "2", "--out", dir}
	for run := range 2 {
		if code, _, errs := ctxdep(t, args...); code != 0 {
			t.Fatalf("run %d: cache build --data without --n-tokens: %d %s", run, code, errs)
		}
		c, got := cachedTokens(t, dir)
		m := c.Manifest
		if fmt.Sprint(got) != fmt.Sprint(want) || m.NSequences != shape[0] || !m.Data.ToEnd || m.Data.Rows != shape[0] {
			t.Errorf("run %d: cached %d tokens (manifest: %d rows, to_end %v), tokenize wrote %d rows", run, len(got), m.NSequences, m.Data.ToEnd, shape[0])
		}
	}
	code, _, errs := ctxdep(t, "cache", "build", "--model", tinyModel, "--data", corpus, "--shard", "0/2", "--out", filepath.Join(t.TempDir(), "s"))
	expectError(t, code, errs, 2, "ctxdep tokenize")
}

// --n-tokens and --n-rows are caps: asking for more rows than the input
// holds takes all of it, with a note that says so, for a token file and
// a text corpus alike (before, cache build --data failed after the whole
// pass); the cache equals tokenize's rows and a rerun resumes it.
func TestAskingForMoreThanTheInputHolds(t *testing.T) {
	corpus := writeCorpus(t, 600)
	rows := filepath.Join(t.TempDir(), "rows.npy")
	code, _, errs := ctxdep(t, "tokenize", "--data", corpus, "--max-length", "16", "--n-rows", "100000", "--out", rows)
	want, shape, err := npy.ReadInt32(rows)
	if code != 0 || err != nil || shape[0] < 5 || shape[0] >= 100000 {
		t.Fatalf("tokenize: %d %s; wrote %v, %v", code, errs, shape, err)
	}
	if note := fmt.Sprintf("ended after %d rows, fewer than the 100000 --n-rows asks for", shape[0]); !strings.Contains(errs, note) {
		t.Errorf("tokenize stderr %q does not say %q", errs, note)
	}
	big := fmt.Sprint(16 * (shape[0] + 50))
	note := fmt.Sprintf("--n-tokens %s asks for %d rows of 16 tokens; %%s holds %d (%d tokens): caching all of them", big, shape[0]+50, shape[0], 16*shape[0])
	for _, input := range [][]string{{"--data", corpus, "--max-length", "16"}, {"--tokens", rows}} {
		dir := filepath.Join(t.TempDir(), "c")
		args := append([]string{"cache", "build", "--model", tinyModel, "--layer", "0", "--n-tokens", big,
			"--sequences-per-shard", "3", "--batch-size", "2", "--out", dir}, input...)
		for run := range 2 {
			code, _, errs := ctxdep(t, args...)
			if code != 0 || !strings.Contains(errs, fmt.Sprintf(note, input[1])) {
				t.Fatalf("%s, run %d: exit %d, stderr %q lacks the note", input[0], run, code, errs)
			}
			c, got := cachedTokens(t, dir)
			if m := c.Manifest; fmt.Sprint(got) != fmt.Sprint(want) || m.NSequences != shape[0] || m.Data.ToEnd {
				t.Errorf("%s, run %d: cached %d rows (to_end %v), tokenize wrote %d", input[0], run, m.NSequences, m.Data.ToEnd, shape[0])
			}
		}
	}
}

// --batch-size is part of a cache's identity: rerunning a build with
// another one is refused (exit 1) and names it; `cache plan` states the
// rule and counts the whole batches a worker computes.
func TestCacheBuildBatchSize(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	args := []string{"cache", "build", "-q", "--model", tinyModel, "--layer", "1", "--tokens", tokensNpy, "--out", dir}
	if code, _, errs := ctxdep(t, append(args, "--batch-size", "4")...); code != 0 {
		t.Fatalf("cache build: %d %s", code, errs)
	}
	code, _, errs := ctxdep(t, append(args, "--batch-size", "2")...)
	expectError(t, code, errs, 1, "batch size 4, not 2")
	code, out, errs := ctxdep(t, "cache", "plan", "--model", tinyModel, "--layer", "1", "--n-tokens", "96", "--max-length", "16",
		"--batch-size", "4", "--workers", "4", "--sample-rows", "1")
	if code != 0 {
		t.Fatalf("cache plan: %d %s", code, errs)
	}
	// 6 rows in batches of 4, 4 workers: each of the first three computes
	// batch [0, 4) for its 1 or 2 rows.
	for _, want := range []string{"at most 2 rows", "the busiest worker computes 4 rows", "same --batch-size"} {
		if !strings.Contains(out, want) {
			t.Errorf("cache plan output does not say %q:\n%s", want, out)
		}
	}
}

// cachedTokens opens the cache in dir and returns it with every token it
// holds, in order.
func cachedTokens(t *testing.T, dir string) (*actcache.Cache, []int32) {
	t.Helper()
	c, err := actcache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.NewReader(context.Background(), actcache.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var tok []int32
	for {
		b, err := r.Next(c.Manifest.SequencesPerShard)
		if err == io.EOF {
			return c, tok
		}
		if err != nil {
			t.Fatal(err)
		}
		tok = append(tok, b.Tokens...)
	}
}

// With --n-tokens (tokenize: --n-rows), what the manifest and tokenize --json count is what the
// rows used were read from — the documents of the tokenizer's batches of
// 1,000 up to the last row's — not how far its goroutine read ahead, which
// varies with timing: one row of a 5,000-document corpus counts 1,000.
func TestTextCountsDeterministic(t *testing.T) {
	corpus := writeCorpus(t, 5000)
	dir := filepath.Join(t.TempDir(), "c")
	if code, _, errs := ctxdep(t, "cache", "build", "-q", "--model", tinyModel, "--layer", "0", "--data", corpus,
		"--max-length", "16", "--n-tokens", "16", "--out", dir); code != 0 {
		t.Fatalf("cache build: %d %s", code, errs)
	}
	c, err := actcache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Manifest.Data.Counts; got["documents"] != 1000 || got["rows"] != 1 {
		t.Errorf("manifest counts %v, want 1000 documents and 1 row", got)
	}
	code, out, errs := ctxdep(t, "tokenize", "-q", "--data", corpus, "--max-length", "16", "--n-rows", "1", "--json",
		"--out", filepath.Join(t.TempDir(), "rows.npy"))
	if code != 0 || !strings.Contains(out, `"documents":1000,`) {
		t.Errorf("tokenize --json: %d %s %s, want 1000 documents", code, out, errs)
	}
}

// Rows that do not start with BOS are cached as they are, with a note:
// the notebook's rows (tokenize_and_concatenate) all start with it.
func TestCacheBuildNotesMissingBOS(t *testing.T) {
	rows := filepath.Join(t.TempDir(), "rows.npy")
	tokens := make([]int32, 2*16)
	for i := range tokens {
		tokens[i] = int32(i + 5)
	}
	if err := npy.WriteInt32(rows, tokens, []int{2, 16}); err != nil {
		t.Fatal(err)
	}
	code, _, errs := ctxdep(t, "cache", "build", "--model", tinyModel, "--transcoders", tinyTC, "--layer", "1", "--tokens", rows,
		"--out", filepath.Join(t.TempDir(), "cache"))
	if code != 0 || !strings.Contains(errs, "starts with token 5, not BOS (50256)") {
		t.Errorf("exit %d, stderr %s", code, errs)
	}
}

// A truncated manifest says what writes it again (a rebuild for a
// single-machine cache, a merge for a sharded one, the worker's rerun for
// a worker's manifest), and following that advice works; a missing shard
// is named with the advice every damaged shard gets.
func TestDamagedCacheAdvice(t *testing.T) {
	truncate := func(path string) {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(path, b[:len(b)/2], 0o644)
	}
	dir := buildCache(t, true)
	manifest := filepath.Join(dir, actcache.ManifestName)
	truncate(manifest)
	code, _, errs := ctxdep(t, "inspect-cache", "-q", dir)
	expectError(t, code, errs, 1, "manifest.json: malformed manifest", "truncated or edited", "remove it and rerun the same `ctxdep cache build`")
	os.Remove(manifest)
	if code, _, errs := ctxdep(t, "cache", "build", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--layer", "1",
		"--tokens", tokensNpy, "--sequences-per-shard", "4", "--out", dir, "--with-acts"); code != 0 {
		t.Fatalf("the advised rebuild: %d %s", code, errs)
	}
	os.Remove(filepath.Join(dir, actcache.ShardName(1)))
	code, _, errs = ctxdep(t, "inspect-cache", "-q", dir)
	expectError(t, code, errs, 1, "shard-00001.safetensors, listed in the manifest, is missing", "ctxdep cache verify")

	clearShardEnv(t)
	sharded := filepath.Join(t.TempDir(), "s")
	for _, s := range []string{"0/2", "1/2"} {
		if code, _, errs := ctxdep(t, workerArgs(sharded, s)...); code != 0 {
			t.Fatalf("worker %s: %s", s, errs)
		}
	}
	if code, _, errs := ctxdep(t, "cache", "merge", "-q", sharded); code != 0 {
		t.Fatalf("merge: %s", errs)
	}
	manifest = filepath.Join(sharded, actcache.ManifestName)
	truncate(manifest)
	code, _, errs = ctxdep(t, "inspect-cache", "-q", sharded)
	expectError(t, code, errs, 1, "truncated or edited", "remove it and run `ctxdep cache merge "+sharded+"`")
	code, _, errs = ctxdep(t, "cache", "merge", "-q", sharded)
	expectError(t, code, errs, 1, "remove it and run `ctxdep cache merge", "left as it is")
	os.Remove(manifest)
	if code, _, errs := ctxdep(t, "cache", "merge", "-q", sharded); code != 0 {
		t.Fatalf("the advised merge: %s", errs)
	}
	truncate(filepath.Join(sharded, actcache.WorkerManifestName(1, 2)))
	code, _, errs = ctxdep(t, "cache", "verify", "-q", "--json", sharded)
	if code != 1 {
		t.Fatalf("verify: %d %s", code, errs)
	}
	chk, err := actcache.Verify(context.Background(), sharded, nil)
	if err != nil || len(chk.Problems) == 0 {
		t.Fatalf("Verify: %+v, %v", chk, err)
	}
	if msg := chk.Problems[0].Message; chk.Problems[0].Kind != actcache.ProblemBadManifest ||
		strings.Count(msg, "--shard 1/2") != 1 || !strings.Contains(msg, "remove it and rerun worker 1") {
		t.Errorf("the damaged worker manifest's problem: %+v", chk.Problems[0])
	}
}

// --tokenizer takes a directory: one that is not there, or a file, is
// named as such, with what the flag takes (before, both read as a
// directory without tokenizer.json).
func TestTokenizerFlagErrors(t *testing.T) {
	corpus := writeCorpus(t, 10)
	tmp := t.TempDir()
	file := filepath.Join(tmp, "tokenizer.json")
	os.WriteFile(file, []byte("{}"), 0o644)
	for _, c := range []struct {
		dir  string
		want []string
	}{
		{filepath.Join(tmp, "missing"), []string{"missing: no such directory", "takes a directory holding"}},
		{file, []string{"tokenizer.json is a file", "(here " + tmp + ")"}},
		{t.TempDir(), []string{"has neither tokenizer.json nor vocab.json"}},
	} {
		code, _, errs := ctxdep(t, "tokenize", "--data", corpus, "--tokenizer", c.dir, "--out", filepath.Join(tmp, "rows.npy"))
		expectError(t, code, errs, 1, c.want...)
	}
}
