package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/cachebuild"
	"github.com/ctxdep/ctxdep/internal/dirlock"
)

// listing returns every path under dir, for checks that a refused command
// left it as it was.
func listing(t *testing.T, dir string) []string {
	t.Helper()
	var names []string
	filepath.WalkDir(dir, func(p string, _ os.DirEntry, _ error) error {
		names = append(names, p)
		return nil
	})
	return names
}

// cache build --out FILE (an existing file, FILE/, a path under a file, or
// a symbolic link to nothing) is a usage error (exit 2) found before any
// work: the model named does not
// even exist, and the error is about --out, not about the model; the file
// is left as it was.
func TestCacheBuildOutIsFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(file, []byte("keep me"), 0o644)
	missing := filepath.Join(t.TempDir(), "no-such-model")
	dangling := filepath.Join(t.TempDir(), "link")
	os.Symlink(filepath.Join(t.TempDir(), "gone"), dangling)
	for _, c := range []struct {
		out  string
		want []string
	}{
		{file, []string{"--out " + file + " is a file", "give a new or empty directory"}},
		{file + "/", []string{"--out " + file + "/ is a file"}},
		{filepath.Join(file, "c"), []string{"--out " + filepath.Join(file, "c") + " cannot be made: " + file + " is a file, not a directory"}},
		{dangling, []string{"--out " + dangling + " is a symbolic link to a directory that does not exist"}},
	} {
		for _, layers := range [][]string{{"--layer", "1"}, {"--layers", "1,2"}} {
			args := append([]string{"cache", "build", "-q", "--model", missing, "--tokens", tokensNpy, "--out", c.out}, layers...)
			code, _, errs := ctxdep(t, args...)
			expectError(t, code, errs, 2, c.want...)
		}
	}
	if b, _ := os.ReadFile(file); string(b) != "keep me" {
		t.Errorf("the file --out named was changed: %q", b)
	}
}

// cache build refuses, before any work (the model named does not exist),
// an existing --out that holds files that are not an activation cache's:
// a fit's output directory, say; with --layers, a directory that is not a
// layer set, or a layer set whose layer directory holds such files; and
// without --layers, a layer set; and a cache that holds other files too,
// which are to be moved out. Nothing in them changes. The error is a
// runtime one (exit 1), as every other command's existing --out is.
// (Before, the fit's directory got shards and a manifest beside its
// midcoder.)
func TestCacheBuildOutForeignDir(t *testing.T) {
	fitOut := t.TempDir()
	os.WriteFile(filepath.Join(fitOut, "midcoder.safetensors"), []byte("weights"), 0o644)
	os.WriteFile(filepath.Join(fitOut, "history.json"), []byte("[]"), 0o644)
	set := buildSet(t)
	stray := filepath.Join(actcache.LayerDir(set, 2), "notes.txt")
	spoiled := filepath.Join(t.TempDir(), "set")
	os.CopyFS(spoiled, os.DirFS(set))
	os.WriteFile(filepath.Join(actcache.LayerDir(spoiled, 2), "notes.txt"), []byte("x"), 0o644)
	before := append(listing(t, fitOut), listing(t, set)...)
	before = append(before, listing(t, spoiled)...)

	missing := filepath.Join(t.TempDir(), "no-such-model")
	for _, c := range []struct {
		layers []string
		out    string
		want   []string
	}{
		{[]string{"--layer", "1"}, fitOut, []string{"--out " + fitOut + " exists and holds files that are not an activation cache's (history.json, midcoder.safetensors)", "choose an empty or new directory"}},
		{[]string{"--layers", "1,2"}, fitOut, []string{"--out " + fitOut + " exists and holds files but no layer set (history.json, midcoder.safetensors)", "choose an empty or new directory"}},
		{[]string{"--layers", "1,2"}, spoiled, []string{actcache.LayerDir(spoiled, 2) + ", in the layer set --out " + spoiled + ", is an activation cache, but also holds files that are not a cache's (notes.txt): move them out of it"}},
		{[]string{"--layer", "2"}, actcache.LayerDir(spoiled, 2), []string{"--out " + actcache.LayerDir(spoiled, 2) + " is an activation cache, but also holds files that are not a cache's (notes.txt): move them out of it"}},
		{[]string{"--layer", "1"}, set, []string{"--out " + set + " is a layer set of layers 1, 2: resume it with --layers 1,2"}},
	} {
		args := append([]string{"cache", "build", "-q", "--model", missing, "--tokens", tokensNpy, "--out", c.out}, c.layers...)
		code, _, errs := ctxdep(t, args...)
		expectError(t, code, errs, 1, c.want...)
	}
	// With the model there, the refusal is the same, and no shard is
	// written.
	code, _, errs := ctxdep(t, "cache", "build", "-q", "--model", tinyModel, "--layer", "1", "--tokens", tokensNpy, "--out", fitOut)
	expectError(t, code, errs, 1, "--out "+fitOut+" exists and holds files that are not an activation cache's")
	after := append(listing(t, fitOut), listing(t, set)...)
	if after = append(after, listing(t, spoiled)...); !slices.Equal(before, after) {
		t.Errorf("refused builds changed their --out:\nbefore %v\nafter  %v", before, after)
	}
	if _, err := os.Stat(stray); err == nil {
		t.Errorf("%s appeared", stray)
	}
}

// What cache build still builds into or resumes: an empty directory; one
// holding only a killed build's leftovers (its complete shards without a
// manifest, a half-written manifest, a stale lock); an existing cache; and
// an existing layer set with --layers.
func TestCacheBuildOutAccepted(t *testing.T) {
	build := func(out string, extra ...string) {
		t.Helper()
		args := append([]string{"cache", "build", "-q", "--model", tinyModel, "--layer", "1", "--tokens", tokensNpy,
			"--sequences-per-shard", "4", "--out", out}, extra...)
		if code, _, errs := ctxdep(t, args...); code != 0 {
			t.Fatalf("cache build --out %s: %d %s", out, code, errs)
		}
		if _, err := actcache.Open(out); err != nil {
			t.Fatal(err)
		}
	}
	build(t.TempDir())
	killed := buildCache(t, false)
	os.Remove(filepath.Join(killed, actcache.ManifestName))
	os.WriteFile(filepath.Join(killed, ".manifest.json.tmp-0123abcd"), []byte(`{"format"`), 0o644)
	os.WriteFile(filepath.Join(killed, dirlock.Name), []byte(`{"pid": 999999999, "host": "gone"}`), 0o644)
	build(killed, "--transcoders", tinyTC)
	build(killed, "--transcoders", tinyTC) // resumed: every shard kept
	set := buildSet(t)
	if code, _, errs := ctxdep(t, "cache", "build", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--layers", "1,2",
		"--tokens", tokensNpy, "--sequences-per-shard", "4", "--batch-size", "4", "--with-acts", "--out", set); code != 0 {
		t.Fatalf("cache build --layers into its set again: %d %s", code, errs)
	}
}

// After an interrupt, the note before "ctxdep: interrupted" counts the
// shards each cache keeps and says the same command resumes from them:
// for one cache, a worker's, and a layer set's (here from builds that
// ran to their end, which the note reads as an interrupted one would be
// read); with no shard complete there is no note.
func TestResumeNote(t *testing.T) {
	cache := buildCache(t, false) // 4 rows a shard
	m, err := actcache.ReadManifest(cache)
	if err != nil {
		t.Fatal(err)
	}
	n := len(m.Shards)
	got := resumeNote([]cachebuild.Layer{{Layer: 1, Out: cache}}, nil)
	if want := fmt.Sprintf("%s keeps the %d of %d %s completed before the interrupt: rerun the same command and it resumes from them", cache, n, n, pluralWord(n, "shard")); got != want {
		t.Errorf("one cache: %q, want %q", got, want)
	}

	shared := filepath.Join(t.TempDir(), "shared")
	if code, _, errs := ctxdep(t, "cache", "build", "-q", "--model", tinyModel, "--layer", "1", "--tokens", tokensNpy,
		"--sequences-per-shard", "1", "--shard", "1/2", "--out", shared); code != 0 {
		t.Fatalf("worker: %d %s", code, errs)
	}
	got = resumeNote([]cachebuild.Layer{{Layer: 1, Out: shared}}, &actcache.WorkerSpec{Index: 1, Count: 2})
	if !strings.HasPrefix(got, shared+" (worker 1 of 2) keeps the ") || !strings.Contains(got, "resumes from them") {
		t.Errorf("a worker: %q", got)
	}

	set := buildSet(t)
	got = resumeNote([]cachebuild.Layer{{Layer: 1, Out: actcache.LayerDir(set, 1)}, {Layer: 2, Out: actcache.LayerDir(set, 2)}}, nil)
	if !strings.HasPrefix(got, "each of the 2 layers' caches in "+set+" keeps the ") || !strings.Contains(got, "resumes from them") {
		t.Errorf("a layer set: %q", got)
	}

	if got := resumeNote([]cachebuild.Layer{{Layer: 1, Out: t.TempDir()}}, nil); got != "" {
		t.Errorf("no shard: %q, want no note", got)
	}
}
