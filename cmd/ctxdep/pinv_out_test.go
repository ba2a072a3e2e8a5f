package main

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/ctxdep/ctxdep/internal/dirlock"
	"github.com/ctxdep/ctxdep/internal/testutil"
)

// pinvLayers runs pinv-baseline --layers all on the layer set set, into
// the directory out.
func pinvLayers(t *testing.T, set, out string, extra ...string) (int, string, string) {
	t.Helper()
	return ctxdep(t, append([]string{"pinv-baseline", "--model", tinyModel, "--transcoders", tinyTC, "--cache", set,
		"--layers", "all", "--out", out}, extra...)...)
}

// visible is tree (treeOf) without its hidden files: the layers' files.
func visible(tree map[string]string) map[string]string {
	out := map[string]string{}
	for name, b := range tree {
		if !strings.HasPrefix(filepath.Base(name), ".") {
			out[name] = b
		}
	}
	return out
}

// hidden returns the names in dir that start with prefix.
func hidden(t *testing.T, dir, prefix string) []string {
	t.Helper()
	var out []string
	for _, name := range testutil.ListDir(t, dir) {
		if strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	return out
}

// failRename makes the commit's renames (renameFile) fail with EIO where
// fail says, for the rest of the test.
func failRename(t *testing.T, fail func(from, to string) bool) {
	t.Helper()
	orig := renameFile
	renameFile = func(from, to string) error {
		if fail(from, to) {
			return &os.LinkError{Op: "rename", Old: from, New: to, Err: syscall.EIO}
		}
		return orig(from, to)
	}
	t.Cleanup(func() { renameFile = orig })
}

// pinv-baseline --layers puts its files in place all or none. Here moving
// layer 2's earlier file aside fails for real (it is a bind mount, which
// rename refuses) after layer 1's was moved: layer 1's earlier file is put
// back, the set is as it was, and the new files are kept under their
// temporary names, which the error names and a rerun removes. The old
// commit had renamed layer 1's new file into place before layer 2's
// failed, and removed layer 2's: a mixed set. (Needs root to mount;
// skipped otherwise.)
func TestPinvLayersCommitAllOrNone(t *testing.T) {
	set, out := buildSet(t), t.TempDir()
	if code, _, errs := pinvLayers(t, set, out, "-q"); code != 0 {
		t.Fatalf("pinv-baseline --layers: %d %s", code, errs)
	}
	before := treeOf(t, out)
	l2 := filepath.Join(out, "layer-02.safetensors")
	src := filepath.Join(t.TempDir(), "layer-02.safetensors")
	if err := os.WriteFile(src, []byte(before["layer-02.safetensors"]), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(src, l2, "", syscall.MS_BIND, ""); err != nil {
		t.Skipf("cannot bind-mount a file (%v)", err)
	}
	mounted := true
	t.Cleanup(func() {
		if mounted {
			syscall.Unmount(l2, 0)
		}
	})
	code, _, errs := pinvLayers(t, set, out, "-q", "--act", "gelu_new", "--force")
	expectError(t, code, errs, 1, "device or resource busy", "nothing was replaced",
		"the new files are kept as "+filepath.Join(out, ".layer-01.safetensors.tmp-"), filepath.Join(out, ".layer-02.safetensors.tmp-"))
	if after := visible(treeOf(t, out)); !maps.Equal(before, after) {
		t.Errorf("a commit that failed at layer 2 changed the set: %v", slices.Sorted(maps.Keys(after)))
	}
	if got := hidden(t, out, "."); len(got) != 2 || !strings.HasPrefix(got[0], ".layer-01.safetensors.tmp-") || !strings.HasPrefix(got[1], ".layer-02.safetensors.tmp-") {
		t.Errorf("beside the set: %v, want the two new files under temporary names", got)
	}

	if err := syscall.Unmount(l2, 0); err != nil {
		t.Fatal(err)
	}
	mounted = false
	code, _, errs = pinvLayers(t, set, out, "--act", "gelu_new", "--force")
	if code != 0 {
		t.Fatalf("the rerun: %d %s", code, errs)
	}
	if !strings.Contains(errs, "removed 1 temporary file that a killed run left beside "+l2) {
		t.Errorf("the rerun's stderr %q", errs)
	}
	if got := testutil.ListDir(t, out); !slices.Equal(got, []string{"layer-01.safetensors", "layer-02.safetensors"}) {
		t.Errorf("after the rerun: %v", got)
	}
	if after := treeOf(t, out); after["layer-01.safetensors"] == before["layer-01.safetensors"] || after["layer-02.safetensors"] == before["layer-02.safetensors"] {
		t.Error("the rerun with --force did not replace the set")
	}
}

// A rename that fails after others succeeded (here renaming layer 2's new
// file into place, after layer 1's was) is undone: layer 1's new file goes
// back under its temporary name and both earlier files back in place. When
// undoing fails too (putting layer 1's earlier file back), the error says
// where each layer's earlier and new file is and nothing is removed; the
// next run puts the earlier file back (and, without --force, then refuses
// to replace it). The old commit left layer 1's new file in place.
func TestPinvLayersCommitRollback(t *testing.T) {
	set, out := buildSet(t), t.TempDir()
	if code, _, errs := pinvLayers(t, set, out, "-q"); code != 0 {
		t.Fatalf("pinv-baseline --layers: %d %s", code, errs)
	}
	before := treeOf(t, out)
	l1, l2 := filepath.Join(out, "layer-01.safetensors"), filepath.Join(out, "layer-02.safetensors")
	staged := func(from, base string) bool { return strings.HasPrefix(filepath.Base(from), "."+base+".tmp-") }
	aside := func(from, base string) bool { return strings.HasPrefix(filepath.Base(from), "."+base+".old-") }
	layer2In := func(from, to string) bool { return staged(from, "layer-02.safetensors") && to == l2 }

	failRename(t, layer2In)
	code, _, errs := pinvLayers(t, set, out, "-q", "--act", "gelu_new", "--force")
	expectError(t, code, errs, 1, "input/output error", "nothing was replaced", "the new files are kept as")
	if after := visible(treeOf(t, out)); !maps.Equal(before, after) {
		t.Errorf("a commit that failed at layer 2 changed the set: %v", slices.Sorted(maps.Keys(after)))
	}
	if got := hidden(t, out, "."); len(got) != 2 || !staged(got[0], "layer-01.safetensors") || !staged(got[1], "layer-02.safetensors") {
		t.Errorf("beside the set: %v, want the two new files under temporary names", got)
	}

	// Undoing fails too: layer 1's earlier file cannot be put back.
	failRename(t, func(from, to string) bool {
		return layer2In(from, to) || aside(from, "layer-01.safetensors") && to == l1
	})
	code, _, errs = pinvLayers(t, set, out, "-q", "--act", "gelu_new", "--force")
	expectError(t, code, errs, 1, "undoing it failed too", "nothing was removed",
		l1+": earlier file "+filepath.Join(out, ".layer-01.safetensors.old-"), "new file "+filepath.Join(out, ".layer-01.safetensors.tmp-"),
		l2+": earlier file "+l2+", new file "+filepath.Join(out, ".layer-02.safetensors.tmp-"))
	old1 := hidden(t, out, ".layer-01.safetensors.old-")
	if len(old1) != 1 {
		t.Fatalf("layer 1's earlier file is not beside it: %v", testutil.ListDir(t, out))
	}
	if b, _ := os.ReadFile(filepath.Join(out, old1[0])); string(b) != before["layer-01.safetensors"] {
		t.Error("layer 1's moved-aside file is not its earlier file")
	}
	if b, _ := os.ReadFile(l2); string(b) != before["layer-02.safetensors"] {
		t.Error("layer 2's earlier file is not in place")
	}
	if _, err := os.Stat(l1); err == nil {
		t.Error("layer 1's --out holds a file")
	}
	// This run's two (it removed the first run's as leftovers).
	if n := len(hidden(t, out, ".layer-01.safetensors.tmp-")) + len(hidden(t, out, ".layer-02.safetensors.tmp-")); n != 2 {
		t.Errorf("%d new files kept, want 2: %v", n, testutil.ListDir(t, out))
	}

	renameFile = os.Rename
	code, _, errs = pinvLayers(t, set, out, "--act", "gelu_new")
	expectError(t, code, errs, 1, "layer 1", l1+" already exists", "--force")
	if !strings.Contains(errs, "put back "+l1+", which a killed run had moved aside") {
		t.Errorf("the next run's stderr %q", errs)
	}
	if after := visible(treeOf(t, out)); !maps.Equal(before, after) {
		t.Errorf("after the next run the set is %v", slices.Sorted(maps.Keys(after)))
	}
	if code, _, errs := pinvLayers(t, set, out, "-q", "--force"); code != 0 {
		t.Fatalf("pinv-baseline --layers --force: %d %s", code, errs)
	}
	if got := testutil.ListDir(t, out); !slices.Equal(got, []string{"layer-01.safetensors", "layer-02.safetensors"}) {
		t.Errorf("after a good run: %v", got)
	}
}

// A run killed in its commit leaves an --out missing, its earlier file
// moved aside (.NAME.old-XXXXXXXX, a name no run removes as a leftover):
// the next run puts it back before anything else (and then, without
// --force, refuses to replace it). A moved-aside file whose --out is
// there (the killed run had put its new file in place) is kept and
// named, never removed. The old code knew no such files: layer 1's
// earlier file stayed hidden and its --out missing.
func TestPinvLayersPutsBackMovedAside(t *testing.T) {
	set, out := buildSet(t), t.TempDir()
	if code, _, errs := pinvLayers(t, set, out, "-q"); code != 0 {
		t.Fatalf("pinv-baseline --layers: %d %s", code, errs)
	}
	before := treeOf(t, out)
	l1, l2 := filepath.Join(out, "layer-01.safetensors"), filepath.Join(out, "layer-02.safetensors")
	if err := os.Rename(l1, filepath.Join(out, ".layer-01.safetensors.old-0123abcd")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(out, ".layer-01.safetensors.tmp-89abcdef"), []byte("staged"), 0o644)
	os.WriteFile(filepath.Join(out, ".layer-02.safetensors.old-4567cdef"), []byte("earlier"), 0o644)

	code, _, errs := pinvLayers(t, set, out)
	expectError(t, code, errs, 1, "layer 1", l1+" already exists")
	if !strings.Contains(errs, "put back "+l1+", which a killed run had moved aside (.layer-01.safetensors.old-0123abcd)") {
		t.Errorf("stderr %q", errs)
	}
	if after := visible(treeOf(t, out)); !maps.Equal(before, after) {
		t.Errorf("layer 1's earlier file was not put back: %v", slices.Sorted(maps.Keys(after)))
	}

	code, _, errs = pinvLayers(t, set, out, "--force")
	if code != 0 {
		t.Fatalf("pinv-baseline --layers --force: %d %s", code, errs)
	}
	if !strings.Contains(errs, "kept .layer-02.safetensors.old-4567cdef beside "+l2) {
		t.Errorf("stderr %q", errs)
	}
	if got := testutil.ListDir(t, out); !slices.Equal(got, []string{".layer-02.safetensors.old-4567cdef", "layer-01.safetensors", "layer-02.safetensors"}) {
		t.Errorf("after the run: %v", got)
	}
	if b, _ := os.ReadFile(filepath.Join(out, ".layer-02.safetensors.old-4567cdef")); string(b) != "earlier" {
		t.Error("the moved-aside file was changed")
	}
}

// A commit killed between its renames left layer 1's new file in place
// (its earlier one moved aside) and layer 2 missing (moved aside): a rerun
// that is refused at layer 1 (no --force) still puts layer 2's earlier
// file back, and names layer 1's.
func TestPinvLayersPutsBackEveryLayer(t *testing.T) {
	set, out := buildSet(t), t.TempDir()
	if code, _, errs := pinvLayers(t, set, out, "-q"); code != 0 {
		t.Fatalf("pinv-baseline --layers: %d %s", code, errs)
	}
	l1, l2 := filepath.Join(out, "layer-01.safetensors"), filepath.Join(out, "layer-02.safetensors")
	want, _ := os.ReadFile(l2)
	os.WriteFile(filepath.Join(out, ".layer-01.safetensors.old-0123abcd"), []byte("layer 1's earlier file"), 0o644)
	if err := os.Rename(l2, filepath.Join(out, ".layer-02.safetensors.old-4567cdef")); err != nil {
		t.Fatal(err)
	}
	code, _, errs := pinvLayers(t, set, out)
	expectError(t, code, errs, 1, "layer 1", l1+" already exists")
	if got, err := os.ReadFile(l2); err != nil || !bytes.Equal(got, want) {
		t.Errorf("layer 2's earlier file was not put back: %v", err)
	}
	if !strings.Contains(errs, "kept .layer-01.safetensors.old-0123abcd beside "+l1) {
		t.Errorf("layer 1's moved-aside file is not named: %q", errs)
	}
}

// pinv-baseline --layers takes every layer's lock before any layer's work:
// while another run writes layer 2's file, it is refused at once, naming
// that run, before layer 1 is computed (nothing on stdout; the old code
// computed and printed layer 1 first), and it leaves no lock of its own.
func TestPinvLayersLocksFirst(t *testing.T) {
	set, out := buildSet(t), t.TempDir()
	l, err := dirlock.TryLock(dirlock.Beside(filepath.Join(out, "layer-02.safetensors")), dirlock.Options{What: "ctxdep test"})
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, errs := pinvLayers(t, set, out, "-q")
	expectError(t, code, errs, 1, "layer 2", "is being written by", "ctxdep test")
	if stdout != "" {
		t.Errorf("layers were computed before the refusal: %q", stdout)
	}
	if got := testutil.ListDir(t, out); !slices.Equal(got, []string{".layer-02.safetensors.ctxdep.lock"}) {
		t.Errorf("after the refusal: %v", got)
	}
	l.Release()
	if code, _, errs := pinvLayers(t, set, out, "-q"); code != 0 {
		t.Fatalf("pinv-baseline --layers: %d %s", code, errs)
	}
	if got := testutil.ListDir(t, out); !slices.Equal(got, []string{"layer-01.safetensors", "layer-02.safetensors"}) {
		t.Errorf("after the run: %v", got)
	}
}

// pinv-baseline and tokenize make a missing parent of --out, as fit, cache
// build and report do (they failed on the lock file beside --out: "lock
// …/.y.safetensors.ctxdep.lock: no such file or directory"); a failed run
// removes the directories it made; a parent that is a file is a usage
// error that names it.
func TestOutFileParentMade(t *testing.T) {
	set, tmp := buildSet(t), t.TempDir()
	corpus := writeCorpus(t, 50)
	pinv := func(out string, extra ...string) (int, string) {
		code, _, errs := ctxdep(t, append([]string{"pinv-baseline", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--out", out}, extra...)...)
		return code, errs
	}
	tokenize := func(data, out string) (int, string) {
		code, _, errs := ctxdep(t, "tokenize", "-q", "--data", data, "--max-length", "16", "--out", out)
		return code, errs
	}
	for _, c := range []struct {
		name string
		run  func() (int, string)
		made string
	}{
		{"pinv-baseline", func() (int, string) { return pinv(filepath.Join(tmp, "a", "b", "y.safetensors"), "--layer", "1") },
			filepath.Join(tmp, "a", "b", "y.safetensors")},
		{"pinv-baseline --layers", func() (int, string) { return pinv(filepath.Join(tmp, "c", "d"), "--cache", set, "--layers", "all") },
			filepath.Join(tmp, "c", "d", "layer-02.safetensors")},
		{"tokenize", func() (int, string) { return tokenize(corpus, filepath.Join(tmp, "e", "f", "rows.npy")) },
			filepath.Join(tmp, "e", "f", "rows.npy")},
	} {
		if code, errs := c.run(); code != 0 {
			t.Errorf("%s into a missing directory: %d %s", c.name, code, errs)
		} else if _, err := os.Stat(c.made); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}

	// Too short a corpus for one row: the run fails after making g/h.
	short := filepath.Join(t.TempDir(), "short.jsonl")
	os.WriteFile(short, []byte(`{"text": "hi"}`+"\n"), 0o644)
	code, errs := tokenize(short, filepath.Join(tmp, "g", "h", "rows.npy"))
	expectError(t, code, errs, 1, "no complete row")
	if _, err := os.Stat(filepath.Join(tmp, "g")); err == nil {
		t.Error("a failed tokenize left the directories it made")
	}

	file := filepath.Join(tmp, "file")
	os.WriteFile(file, nil, 0o644)
	code, errs = pinv(filepath.Join(file, "sub", "y.safetensors"), "--layer", "1")
	expectError(t, code, errs, 2, file+" is not a directory")
	code, errs = tokenize(corpus, filepath.Join(file, "rows.npy"))
	expectError(t, code, errs, 2, file+" is not a directory")
	if got := testutil.ListDir(t, tmp); !slices.Equal(got, []string{"a", "c", "e", "file"}) {
		t.Errorf("beside: %v", got)
	}
}

// An --out that cannot be the file (or, with --layers, the directory) it
// names is a bad argument: a usage error, exit status 2 (it was 1): a
// directory, a symbolic link, a file given to --layers, a layer's file
// that is a directory. An existing file without --force stays exit 1
// (TestOutNotOverwritten), as fit's finished --out does.
func TestOutFileNotAFileIsUsage(t *testing.T) {
	set, tmp := buildSet(t), t.TempDir()
	corpus := writeCorpus(t, 50)
	file, link, layers := filepath.Join(tmp, "file"), filepath.Join(tmp, "link"), filepath.Join(tmp, "layers")
	os.WriteFile(file, nil, 0o644)
	os.Symlink(file, link)
	os.MkdirAll(filepath.Join(layers, "layer-02.safetensors"), 0o755)
	pinv := []string{"pinv-baseline", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--layer", "1", "--force", "--out"}
	pinvSet := []string{"pinv-baseline", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--cache", set, "--layers", "all", "--out"}
	tokenize := []string{"tokenize", "-q", "--data", corpus, "--max-length", "16", "--force", "--out"}
	for _, c := range []struct {
		args []string
		want []string
	}{
		{append(pinv, tmp), []string{"--out " + tmp + " is a directory"}},
		{append(tokenize, tmp), []string{"--out " + tmp + " is a directory"}},
		{append(pinv, link), []string{"--out " + link + " exists and is not a regular file"}},
		{append(tokenize, link), []string{"--out " + link + " exists and is not a regular file"}},
		{append(pinvSet, file), []string{"--out " + file + " is not a directory", "with --layers"}},
		{append(pinvSet, layers), []string{"layer 2", filepath.Join(layers, "layer-02.safetensors") + " is a directory"}},
	} {
		code, _, errs := ctxdep(t, c.args...)
		expectError(t, code, errs, 2, c.want...)
	}
	if got := testutil.ListDir(t, layers); !slices.Equal(got, []string{"layer-02.safetensors"}) {
		t.Errorf("the refused --layers run left %v", got)
	}
}
