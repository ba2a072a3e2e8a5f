package actcache

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/dirlock"
	"github.com/ctxdep/ctxdep/internal/testutil"
)

// mustNotContain fails when err says any of parts.
func mustNotContain(t *testing.T, what string, err error, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if err != nil && strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %q says %q", what, err, p)
		}
	}
}

// A directory that a live build is writing, before its first shard is
// done (no manifest.json yet), is described as being written by that
// build, named from its lock, not as stopped or as not a cache; so is one
// a worker of a sharded build writes. Once the first shard is listed, Open
// says the cache is being written, with its shards so far, until the
// build stops: then it says the build stopped.
func TestReadManifestWhileBuilding(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	w, err := Create(dir, wtManifest(6, "a"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = ReadManifest(dir)
	mustContain(t, "ReadManifest during a build", err, dir+" is being written by this process (pid "+fmt.Sprint(os.Getpid()), "ctxdep cache build", "no manifest.json until its first shard is done", "wait for the build to finish")
	mustNotContain(t, "ReadManifest during a build", err, "stopped", "not an activation cache")
	_, err = Open(dir)
	mustContain(t, "Open during a build", err, "is being written by this process")

	wtWrite(t, w, 0)
	_, err = Open(dir)
	mustContain(t, "Open during a build, after shard 0", err, dir+" is incomplete: it is being written by this process", "1 shard so far", "wait for it to finish")
	mustNotContain(t, "Open during a build, after shard 0", err, "stopped")
	w.Close()
	_, err = Open(dir)
	mustContain(t, "Open after the build stopped", err, "written before the build stopped", "resume")

	shared := filepath.Join(t.TempDir(), "s")
	man := wtManifest(6, "a")
	man.Worker = &Worker{Index: 1, Count: 2, TotalRows: 6}
	ww, err := Create(shared, man)
	if err != nil {
		t.Fatal(err)
	}
	defer ww.Close()
	_, err = ReadManifest(shared)
	mustContain(t, "ReadManifest while a worker runs", err, shared+" is being written by worker 1 of 2 of a sharded build (this process", "ctxdep cache merge "+shared)
	mustNotContain(t, "ReadManifest while a worker runs", err, "not an activation cache")
}

// A build killed, or out of disk space, after it finished shards but
// before it wrote its first manifest (here: while writing it, which
// leaves a temporary manifest) is not described as stopped before its
// first shard: the message counts the complete shards and names the
// manifest's remains; and what it advises is true: the same build, rerun,
// computes those shards again, compares them, and finishes the cache.
func TestReadManifestShardsWithoutManifest(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	man := wtManifest(6, "a")
	w, err := Create(dir, man)
	if err != nil {
		t.Fatal(err)
	}
	wtWrite(t, w, 0)
	wtWrite(t, w, 1)
	w.Close()
	os.Remove(filepath.Join(dir, ManifestName))
	_, err = ReadManifest(dir)
	mustContain(t, "shards without a manifest", err, "holds 2 complete shards (shard-00000.safetensors, shard-00001.safetensors) but no manifest.json",
		"stopped before it recorded them (it was killed, or ran out of disk space)", "rerun that same `ctxdep cache build` to finish it", "computes them again")
	mustNotContain(t, "shards without a manifest", err, "before its first shard", "being written")

	temp := ".manifest.json.tmp-0123abcd"
	os.WriteFile(filepath.Join(dir, temp), []byte(`{"format": "ctxdep-activation-ca`), 0o644)
	_, err = ReadManifest(dir)
	mustContain(t, "shards and a half-written manifest", err, "holds 2 complete shards", "while writing its manifest, of which "+temp+" remains")
	mustNotContain(t, "shards and a half-written manifest", err, "before its first shard", "shard being written")

	// The advice holds: the same build resumes there, computing the two
	// shards again (no manifest vouches for them) and finishing.
	var said notices
	w, err = CreateWith(dir, man, CreateOptions{Notice: said.add})
	if err != nil {
		t.Fatal(err)
	}
	if w.Has(0) || w.Has(1) || !slices.Equal(w.Unlisted(), []string{ShardName(0), ShardName(1)}) {
		t.Errorf("resume: has %v %v, unlisted %v; want shards 0 and 1 computed again", w.Has(0), w.Has(1), w.Unlisted())
	}
	for i := range w.NumShards() {
		wtWrite(t, w, i)
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	if m, err := ReadManifest(dir); err != nil || !m.Complete || len(m.Shards) != 3 {
		t.Errorf("after the rerun: %v, %v", m, err)
	}
	if _, err := os.Stat(filepath.Join(dir, temp)); err == nil {
		t.Errorf("the rerun left %s", temp)
	}
}

// What a stopped build left before any shard was complete is described by
// what it is: a partly written shard is one; a partly written manifest
// alone is not "a shard being written"; a worker's partly written shard
// names the worker to rerun; complete shards of workers without their
// manifests name those workers.
func TestReadManifestPartialFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ".manifest.json.tmp-0123abcd"), []byte("{"), 0o644)
	_, err := ReadManifest(dir)
	mustContain(t, "a half-written manifest alone", err, "only a partly written manifest (.manifest.json.tmp-0123abcd)", "nothing of a cache remains")
	mustNotContain(t, "a half-written manifest alone", err, "shard being written", "before its first shard")

	dir = t.TempDir()
	os.WriteFile(filepath.Join(dir, "."+WorkerShardName(3, 4, 0)+".tmp-0123abcd"), []byte("partial"), 0o644)
	_, err = ReadManifest(dir)
	mustContain(t, "a worker's half-written shard", err, "no complete shard, only a partly written one", "stopped before its first shard was done", "`ctxdep cache build --shard 3/4`")

	dir = t.TempDir()
	for _, name := range []string{WorkerShardName(0, 4, 0), WorkerShardName(0, 4, 1), WorkerShardName(2, 4, 0)} {
		os.WriteFile(filepath.Join(dir, name), []byte("shard"), 0o644)
	}
	_, err = ReadManifest(dir)
	mustContain(t, "workers' shards without manifests", err, "holds 3 complete shards of worker(s) 0, 2 of 4", "no worker's manifest", "--shard i/4", "ctxdep cache merge "+dir)
}

// A build refuses a directory that holds another tool's files (a fit's
// output, a manifest.json of another format) before writing anything, and
// releases its lock; an empty directory, a killed build's leftovers (a
// stale lock, a temporary shard, complete shards without a manifest) and
// an existing cache are built into or resumed as before; a cache that
// also holds another file is refused, saying to move it out.
func TestCreateRefusesForeignDir(t *testing.T) {
	for _, c := range []struct {
		name  string
		files map[string]string
	}{
		{"fit output", map[string]string{"midcoder.safetensors": "weights", "history.json": "[]"}},
		{"another manifest", map[string]string{ManifestName: `{"format": "something-else"}`}},
		{"a subdirectory", map[string]string{"sub/x": "x"}},
	} {
		dir := t.TempDir()
		for name, data := range c.files {
			os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
			os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644)
		}
		before := testutil.ListDir(t, dir)
		_, err := Create(dir, wtManifest(6, "a"))
		mustContain(t, c.name, err, dir+" holds files that are not an activation cache's", "choose an empty or new directory")
		if after := testutil.ListDir(t, dir); !slices.Equal(before, after) {
			t.Errorf("%s: the directory changed: %v, then %v", c.name, before, after)
		}
		if _, held, _ := dirlock.Probe(dirlock.Path(dir)); held {
			t.Errorf("%s: the refused build kept its lock", c.name)
		}
	}

	// A fresh file system's root holds only lost+found: taken.
	fresh := t.TempDir()
	os.Mkdir(filepath.Join(fresh, "lost+found"), 0o700)
	wtBuild(t, fresh, wtManifest(6, "a"))

	leftovers := t.TempDir()
	os.WriteFile(filepath.Join(leftovers, dirlock.Name), []byte(`{"pid": 999999999, "host": "gone"}`), 0o644)
	os.WriteFile(filepath.Join(leftovers, ".shard-00000.safetensors.tmp-0123abcd"), []byte("partial"), 0o644)
	wtBuild(t, leftovers, wtManifest(6, "a"))

	cache := filepath.Join(t.TempDir(), "c")
	wtBuild(t, cache, wtManifest(6, "a"))
	wtBuild(t, cache, wtManifest(6, "a")) // resumed: every shard kept
	os.Remove(filepath.Join(cache, ManifestName))
	wtBuild(t, cache, wtManifest(6, "a")) // shards without a manifest
	if f, err := ForeignFiles(cache); err != nil || len(f) > 0 {
		t.Errorf("ForeignFiles(a cache) = %v, %v", f, err)
	}
	// A cache with another file in it: to be moved out to resume.
	os.WriteFile(filepath.Join(cache, "notes.txt"), []byte("x"), 0o644)
	_, err := Create(cache, wtManifest(6, "a"))
	mustContain(t, "a cache with a stray file", err, cache+" is an activation cache, but also holds files that are not a cache's (notes.txt): move them out of it")
	if f, err := ForeignFiles(filepath.Join(cache, "missing")); err != nil || len(f) > 0 {
		t.Errorf("ForeignFiles(a missing directory) = %v, %v", f, err)
	}
}
