package main

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/dirlock"
	"github.com/ctxdep/ctxdep/internal/testutil"
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
	expectError(t, code, errs, 2, "is a directory") // a bad argument: a usage error
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

// fit, pinv-baseline, tokenize and report refuse an --out that is an
// activation cache or a layer set, or lies anywhere inside one, before any
// work: the cache's and the set's listings are unchanged afterwards.
func TestOutNeverInsideCache(t *testing.T) {
	cache, set := buildCache(t, false), buildSet(t)
	listing := func(dir string) []string {
		var names []string
		filepath.WalkDir(dir, func(p string, _ os.DirEntry, _ error) error {
			names = append(names, p)
			return nil
		})
		return names
	}
	before := append(listing(cache), listing(set)...)
	fit := filepath.Join(t.TempDir(), "fit")
	if code, _, errs := ctxdep(t, fitArgs(cache, fit)...); code != 0 {
		t.Fatalf("fit: %d %s", code, errs)
	}
	model := []string{"--model", tinyModel, "--transcoders", tinyTC}
	for _, c := range []struct {
		args []string
		want string
	}{
		{fitArgs(cache, cache), "--out " + cache + " is an activation cache"},
		{fitArgs(cache, filepath.Join(cache, "sub")), "inside the activation cache " + cache},
		{append([]string{"fit", "-q", "--cache", set, "--layers", "all", "--batch-size", "2", "--steps-per-epoch", "3", "--train-tokens", "200", "--out", set}, model...),
			"--out " + set + " is an activation cache"},
		{append([]string{"pinv-baseline", "-q", "--layer", "1", "--out", filepath.Join(cache, "sub", "p.safetensors")}, model...), "inside the activation cache " + cache},
		{append([]string{"pinv-baseline", "-q", "--cache", set, "--layers", "all", "--out", set}, model...), "--out " + set + " is an activation cache"},
		{[]string{"tokenize", "-q", "--data", writeCorpus(t, 20), "--max-length", "16", "--out", filepath.Join(set, "rows.npy")}, "inside the activation cache " + set},
		{append([]string{"report", "-q", "--cache", cache, "--midcoder", filepath.Join(fit, "midcoder.safetensors"), "--out", filepath.Join(cache, "report")}, model...),
			"inside the activation cache " + cache},
		{append([]string{"report", "-q", "--cache", set, "--layer", "1", "--midcoder", filepath.Join(fit, "midcoder.safetensors"), "--out", filepath.Join(set, "layer-01", "report")}, model...),
			"inside the activation cache " + filepath.Join(set, "layer-01")},
	} {
		code, _, errs := ctxdep(t, c.args...)
		expectError(t, code, errs, 1, c.want)
	}
	if after := append(listing(cache), listing(set)...); !slices.Equal(after, before) {
		t.Errorf("the cache and the set changed:\nbefore %v\nafter  %v", before, after)
	}
}

// pinv-baseline --layers refuses an existing layer's file before computing
// any layer: layer 2's file exists, so layer 1's is never written.
func TestPinvLayersChecksEveryOutFirst(t *testing.T) {
	set, out := buildSet(t), t.TempDir()
	existing := filepath.Join(out, actcache.LayerDirName(2)+".safetensors")
	os.WriteFile(existing, []byte("keep me"), 0o644)
	code, _, errs := ctxdep(t, "pinv-baseline", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--cache", set, "--layers", "all", "--out", out)
	expectError(t, code, errs, 1, "layer 2", existing, "already exists")
	if _, err := os.Stat(filepath.Join(out, actcache.LayerDirName(1)+".safetensors")); err == nil {
		t.Error("layer 1 was written before layer 2's existing file was refused")
	}
	if b, _ := os.ReadFile(existing); string(b) != "keep me" {
		t.Error("layer 2's file was replaced")
	}
}

// pinv-baseline --layers --force writes its files once every layer is
// done: a run that fails at layer 2 (its transcoder is damaged) leaves the
// earlier set's files as they were, layer 1's too, and no temporary file.
func TestPinvLayersWholeSet(t *testing.T) {
	set, out := buildSet(t), t.TempDir()
	run := func(tcs string, extra ...string) (int, string) {
		code, _, errs := ctxdep(t, append([]string{"pinv-baseline", "-q", "--model", tinyModel, "--transcoders", tcs, "--cache", set,
			"--layers", "all", "--out", out}, extra...)...)
		return code, errs
	}
	if code, errs := run(tinyTC); code != 0 {
		t.Fatalf("pinv-baseline --layers: %d %s", code, errs)
	}
	before := treeOf(t, out)
	bad := t.TempDir()
	for _, l := range []string{"1", "2"} {
		name := "final_sparse_autoencoder_gpt2-small_blocks." + l + ".ln2.hook_normalized_64.pt"
		b, err := os.ReadFile(filepath.Join(tinyTC, name))
		if err != nil {
			t.Fatal(err)
		}
		if l == "2" {
			b = b[:len(b)/2]
		}
		os.WriteFile(filepath.Join(bad, name), b, 0o644)
	}
	code, errs := run(bad, "--act", "gelu_new", "--force")
	expectError(t, code, errs, 1, "layer 2")
	if after := treeOf(t, out); !maps.Equal(before, after) {
		t.Errorf("a pinv-baseline --layers that failed at layer 2 changed the set: %v", slices.Sorted(maps.Keys(after)))
	}
	if code, errs := run(tinyTC, "--act", "gelu_new", "--force"); code != 0 {
		t.Fatalf("pinv-baseline --layers --force: %d %s", code, errs)
	}
	if after := treeOf(t, out); len(after) != len(before) || maps.Equal(before, after) {
		t.Errorf("the rerun with --force: %v", slices.Sorted(maps.Keys(after)))
	}
}

// tokenize and pinv-baseline write their --out file under a lock beside it:
// they remove the temporary file a killed run left (.NAME.tmp-XXXXXXXX; a
// full tokenize's is gigabytes) and say so, leave other files' alone, and
// a second run while the lock is held is refused, naming the first.
func TestOutFileLeftovers(t *testing.T) {
	corpus := writeCorpus(t, 50)
	cache := buildCache(t, true)
	for _, c := range []struct {
		name string
		args func(out string) []string
	}{
		{"rows.npy", func(out string) []string {
			return []string{"tokenize", "--data", corpus, "--max-length", "16", "--out", out}
		}},
		{"pinv.safetensors", func(out string) []string {
			return []string{"pinv-baseline", "--model", tinyModel, "--transcoders", tinyTC, "--cache", cache, "--out", out}
		}},
	} {
		dir := t.TempDir()
		out := filepath.Join(dir, c.name)
		left, other := "."+c.name+".tmp-0123abcd", ".other.npy.tmp-0123abcd"
		for _, n := range []string{left, other} {
			os.WriteFile(filepath.Join(dir, n), []byte("partial"), 0o644)
		}
		code, _, errs := ctxdep(t, c.args(out)...)
		if code != 0 {
			t.Fatalf("%s: %d %s", c.name, code, errs)
		}
		if !strings.Contains(errs, "removed 1 temporary file that a killed run left beside "+out) {
			t.Errorf("%s: stderr %q", c.name, errs)
		}
		if got := testutil.ListDir(t, dir); !slices.Equal(got, []string{other, c.name}) {
			t.Errorf("%s: the directory holds %v", c.name, got)
		}

		l, err := dirlock.TryLock(dirlock.Beside(out), dirlock.Options{What: "ctxdep test"})
		if err != nil {
			t.Fatal(err)
		}
		code, _, errs = ctxdep(t, append(c.args(out), "--force")...)
		l.Release()
		expectError(t, code, errs, 1, out+" is being written by", "ctxdep test")
	}
}

// smallDisk mounts a tmpfs of size bytes on a new directory for the test,
// or skips the test where that is not allowed (not root, or a container
// without CAP_SYS_ADMIN).
func smallDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (%v)", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, 0) })
	return dir
}

// On a full disk, cache build and fit say what they kept and how to go
// on: the build's shards and a rerun that resumes; the fit's last
// checkpoint and --resume.
func TestDiskFullHints(t *testing.T) {
	disk := smallDisk(t, "20k")
	code, _, errs := ctxdep(t, "cache", "build", "--model", tinyModel, "--transcoders", tinyTC, "--layer", "1", "--tokens", tokensNpy,
		"--batch-size", "2", "--sequences-per-shard", "2", "--with-acts", "--out", filepath.Join(disk, "c"))
	expectError(t, code, errs, 1, "no space left on device")
	if !strings.Contains(errs, "the shards written so far are kept: once there is room, rerun the same command and it resumes") {
		t.Errorf("cache build on a full disk: stderr %q", errs)
	}

	cache := buildCache(t, true)
	disk = smallDisk(t, "24k") // room for a checkpoint, not for two at once
	out := filepath.Join(disk, "f")
	code, _, errs = ctxdep(t, fitArgs(cache, out, "--train-tokens", "400")...)
	if code == 0 {
		t.Skip("the small disk held the whole fit (another page size?)")
	}
	expectError(t, code, errs, 1, "no space left on device")
	if !strings.Contains(errs, out+"/checkpoint.safetensors holds the fit's last checkpoint") || !strings.Contains(errs, "continue with --resume") {
		t.Errorf("fit on a full disk: stderr %q", errs)
	}
}
