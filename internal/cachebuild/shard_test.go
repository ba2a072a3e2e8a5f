package cachebuild

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/npy"
	"github.com/ctxdep/ctxdep/internal/progress"
	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// buildWorkers runs workers 0..n-1 of a sharded build into out (per shard
// files of perShard rows), each reading the token file by offset.
func buildWorkers(t *testing.T, f fixture, out string, n, perShard int, mod func(i int, o *Options)) {
	t.Helper()
	for i := range n {
		rows, err := npy.OpenRows(tokensFile)
		if err != nil {
			t.Fatal(err)
		}
		o := f.options(out, 1)
		o.Rows, o.PerShard, o.Shard = rows, perShard, &Shard{Index: i, Count: n}
		if mod != nil {
			mod(i, &o)
		}
		man, err := build1(context.Background(), o)
		rows.Close()
		if err != nil {
			t.Fatalf("worker %d of %d: %v", i, n, err)
		}
		first, k := actcache.Worker{Index: i, Count: n, TotalRows: 6}.Range()
		if man.Worker == nil || man.Data.FirstRow != first || man.NSequences != k || !man.Complete {
			t.Fatalf("worker %d of %d manifest %+v", i, n, man)
		}
	}
	if _, err := os.Stat(filepath.Join(out, actcache.ManifestName)); err == nil {
		t.Fatal("a worker wrote manifest.json")
	}
}

func withActs(t *testing.T) func(int, *Options) {
	t.Helper()
	tc, err := transcoder.Load(tcFile)
	if err != nil {
		t.Fatal(err)
	}
	tp, err := provenance.Hash(tcFile)
	if err != nil {
		t.Fatal(err)
	}
	return func(_ int, o *Options) { o.Layers[0].Transcoder, o.Layers[0].TransProv = tc, &tp }
}

// A merged build of 3 or 4 workers holds exactly the tokens, x, y and
// acts of a single-process build, and its manifest reads like one.
func TestShardedMatchesSingle(t *testing.T) {
	f := load(t)
	acts := withActs(t)
	ref := f.options(filepath.Join(t.TempDir(), "single"), 1)
	acts(0, &ref)
	single, err := build1(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	if raw, _ := os.ReadFile(filepath.Join(ref.Layers[0].Out, actcache.ManifestName)); bytes.Contains(raw, []byte(`"worker`)) {
		t.Errorf("a single-machine manifest has worker keys:\n%s", raw)
	}
	wantTok, wantX, wantY, wantActs := readAll(t, ref.Layers[0].Out)
	for _, c := range []struct{ workers, perShard int }{{3, 4}, {4, 1}} {
		t.Run(fmt.Sprintf("%d workers", c.workers), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "sharded")
			buildWorkers(t, f, out, c.workers, c.perShard, acts)
			m, chk, err := actcache.Merge(context.Background(), out, nil)
			if err != nil {
				t.Fatal(err)
			}
			if m.Workers != c.workers || m.NSequences != 6 || m.NTokens != 96 || !m.Complete || m.Worker != nil ||
				m.Data.FirstRow != 0 || m.Data.RowsTaken != 6 || !provenance.Same(m.Data.File, single.Data.File) ||
				m.Layer != 1 || !m.WithActs || chk.Shards != len(m.Shards) {
				t.Fatalf("merged manifest %+v", m)
			}
			tok, x, y, a := readAll(t, out)
			if !reflect.DeepEqual(tok, wantTok) || !reflect.DeepEqual(x, wantX) || !reflect.DeepEqual(y, wantY) {
				t.Error("merged tokens, x or y differ from the single-process build")
			}
			if got, want := joinActs(a), joinActs(wantActs); !reflect.DeepEqual(got, want) {
				t.Error("merged acts differ from the single-process build")
			}
			// Merging again is harmless: the manifest is left as it is.
			before, _ := os.ReadFile(filepath.Join(out, actcache.ManifestName))
			st0, _ := os.Stat(filepath.Join(out, actcache.ManifestName))
			if _, _, err := actcache.Merge(context.Background(), out, nil); err != nil {
				t.Fatalf("second merge: %v", err)
			}
			after, _ := os.ReadFile(filepath.Join(out, actcache.ManifestName))
			st1, _ := os.Stat(filepath.Join(out, actcache.ManifestName))
			if !bytes.Equal(before, after) || !os.SameFile(st0, st1) {
				t.Error("a second merge rewrote manifest.json")
			}
			if chk, err := actcache.Verify(context.Background(), out, nil); err != nil || !chk.OK() || !chk.Merged || chk.Workers != c.workers {
				t.Errorf("Verify(merged) = %+v, %v", chk, err)
			}
		})
	}
}

// joinActs concatenates per-shard CSR activations into one.
func joinActs(parts []*transcoder.Acts) transcoder.Acts {
	all := transcoder.Acts{Indptr: []int64{0}}
	for _, p := range parts {
		all.AppendRows(p, 0, p.Rows())
	}
	return all
}

// copyDir copies the regular files of src into a new directory.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	os.MkdirAll(dst, 0o755)
	entries, _ := os.ReadDir(src)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644)
	}
	return dst
}

// Merge refuses sets of workers that do not make one cache, with an error
// that names the file and the worker to rerun, and writes nothing.
func TestMergeErrors(t *testing.T) {
	f := load(t)
	good := filepath.Join(t.TempDir(), "good")
	buildWorkers(t, f, good, 3, 1, nil)
	otherData := f.dataProv
	otherData.SHA256 = strings.Repeat("0", 64)
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  []string
	}{
		{"missing worker", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, actcache.WorkerManifestName(1, 3)))
		}, []string{"worker 1 of 3 has not run", "--shard 1/3", "workers to rerun: 1"}},
		{"incomplete worker", func(t *testing.T, dir string) {
			rewriteManifest(t, dir, 2, func(m map[string]any) { m["complete"] = false })
		}, []string{"worker 2 of 3 stopped", "--shard 2/3"}},
		{"truncated shard", func(t *testing.T, dir string) {
			p := filepath.Join(dir, actcache.WorkerShardName(2, 3, 1))
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)-100], 0o644)
		}, []string{"w00002-of-00003-shard-00001.safetensors", "worker 2 of 3", "truncated", "--shard 2/3"}},
		{"flipped byte", func(t *testing.T, dir string) {
			p := filepath.Join(dir, actcache.WorkerShardName(0, 3, 0))
			b, _ := os.ReadFile(p)
			b[len(b)-3] ^= 0x40
			os.WriteFile(p, b, 0o644)
		}, []string{"w00000-of-00003-shard-00000.safetensors", "corrupt", "--shard 0/3"}},
		{"missing shard", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, actcache.WorkerShardName(1, 3, 0)))
		}, []string{"w00001-of-00003-shard-00000.safetensors", "missing", "--shard 1/3"}},
		{"other worker count", func(t *testing.T, dir string) {
			// cache build refuses this; copying files in does not.
			two := filepath.Join(t.TempDir(), "two")
			buildWorkers(t, f, two, 2, 1, nil)
			for name, b := range snapshot(t, two) {
				os.WriteFile(filepath.Join(dir, name), []byte(b), 0o644)
			}
		}, []string{"3 workers", "2 workers", "worker count changed"}},
		{"other layer", func(t *testing.T, dir string) {
			redo(t, f, dir, 1, 3, func(o *Options) { o.Layers[0].Layer = 2 })
		}, []string{"worker 1 of 3", "layer 2, not 1", "remove worker 1's files"}},
		{"other token file", func(t *testing.T, dir string) {
			redo(t, f, dir, 2, 3, func(o *Options) { o.DataProv = otherData })
		}, []string{"worker 2 of 3", "token file sha256 000000000000…"}},
		{"other model", func(t *testing.T, dir string) {
			redo(t, f, dir, 0, 3, func(o *Options) { o.ModelProv.SHA256 = strings.Repeat("f", 64) })
		}, []string{"worker 0 of 3", "model sha256 ffffffffffff…", "than worker 1"}},
		{"other batch size", func(t *testing.T, dir string) {
			redo(t, f, dir, 1, 3, func(o *Options) { o.BatchSize = 2 })
		}, []string{"worker 1 of 3", "batch size 2, not 4", "--batch-size"}},
		{"other row count", func(t *testing.T, dir string) {
			redo(t, f, dir, 2, 3, func(o *Options) { o.NRows = 5 })
		}, []string{"worker 2 of 3", "rows split among the workers 5, not 6"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyDir(t, good)
			c.setup(t, dir)
			before := snapshot(t, dir)
			_, _, err := actcache.Merge(context.Background(), dir, nil)
			if err == nil {
				t.Fatal("Merge succeeded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Merge error %q does not mention %q", err, w)
				}
			}
			if after := snapshot(t, dir); !reflect.DeepEqual(before, after) {
				t.Error("a failed merge changed the directory")
			}
			chk, err := actcache.Verify(context.Background(), dir, nil)
			if err != nil || chk.OK() {
				t.Errorf("Verify = %+v, %v; want problems", chk, err)
			}
		})
	}
	// A manifest.json of another cache is never replaced.
	dir := copyDir(t, good)
	other := f.options(filepath.Join(t.TempDir(), "single"), 1)
	if _, err := build1(context.Background(), other); err != nil {
		t.Fatal(err)
	}
	single, _ := os.ReadFile(filepath.Join(other.Layers[0].Out, actcache.ManifestName))
	os.WriteFile(filepath.Join(dir, actcache.ManifestName), single, 0o644)
	if _, _, err := actcache.Merge(context.Background(), dir, nil); err == nil || !strings.Contains(err.Error(), "another cache") {
		t.Errorf("Merge over a single-machine manifest: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, actcache.ManifestName)); !bytes.Equal(b, single) {
		t.Error("Merge replaced another cache's manifest.json")
	}
	if _, _, err := actcache.Merge(context.Background(), other.Layers[0].Out, nil); err == nil || !strings.Contains(err.Error(), "single-machine cache") {
		t.Errorf("Merge(single-machine cache) = %v", err)
	}
}

// redo replaces worker i of n's files in dir with those of a build of
// that worker with mod, made in another directory (cache build refuses to
// build a worker unlike its siblings; copying files in does not).
func redo(t *testing.T, f fixture, dir string, i, n int, mod func(*Options)) {
	t.Helper()
	names, _ := filepath.Glob(filepath.Join(dir, fmt.Sprintf("w%05d-of-%05d-*", i, n)))
	for _, p := range append(names, filepath.Join(dir, actcache.WorkerManifestName(i, n))) {
		os.Remove(p)
	}
	other := filepath.Join(t.TempDir(), "other")
	o := f.options(other, 1)
	o.PerShard, o.Shard = 1, &Shard{Index: i, Count: n}
	mod(&o)
	if _, err := build1(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	for name, b := range snapshot(t, other) {
		if _, _, ok := actcache.ParseWorkerShardName(name); ok || name == actcache.WorkerManifestName(i, n) {
			os.WriteFile(filepath.Join(dir, name), []byte(b), 0o644)
		}
	}
}

// A worker run with other settings than its siblings' files is refused
// before any work, naming the setting and both ways out; when some
// siblings agree with it, the odd sibling is named in a notice instead.
func TestWorkerSettingsCheckedAgainstSiblings(t *testing.T) {
	f := load(t)
	good := filepath.Join(t.TempDir(), "good")
	buildWorkers(t, f, good, 3, 1, nil)
	dir := copyDir(t, good)
	redone := func(i int, mod func(*Options)) (Options, error) {
		for _, p := range []string{actcache.WorkerManifestName(i, 3), actcache.WorkerShardName(i, 3, 0), actcache.WorkerShardName(i, 3, 1)} {
			os.Remove(filepath.Join(dir, p))
		}
		o := f.options(dir, 1)
		o.PerShard, o.Shard = 1, &Shard{Index: i, Count: 3}
		mod(&o)
		before := snapshot(t, dir)
		_, err := build1(context.Background(), o)
		if err != nil && !reflect.DeepEqual(before, snapshot(t, dir)) {
			t.Error("a refused worker changed the directory")
		}
		return o, err
	}
	for _, c := range []struct {
		name string
		mod  func(*Options)
		want string
	}{
		{"batch size", func(o *Options) { o.BatchSize = 2 }, "this run's batch size 2, not 4"},
		{"rows per shard", func(o *Options) { o.PerShard = 2 }, "this run's sequences per shard 2, not 1"},
		{"row count", func(o *Options) { o.NRows = 5 }, "this run's rows split among the workers 5, not 6"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := redone(1, c.mod)
			if err == nil {
				t.Fatal("a worker unlike its siblings was built")
			}
			for _, w := range []string{"worker 1 of 3", "than worker 0", "(and 1 other worker(s)", c.want, "rerun with worker 0's flags", "w00000-of-00003-shard-*.safetensors"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	// Worker 2's files are the odd ones: rebuilding worker 1 like worker 0
	// succeeds, with a notice naming worker 2.
	redo(t, f, dir, 2, 3, func(o *Options) { o.BatchSize = 2 })
	var notes bytes.Buffer
	if _, err := redone(1, func(o *Options) { o.Progress = progress.New(&notes, "cache build", 0, "tokens", false) }); err != nil {
		t.Fatal(err)
	}
	if got := notes.String(); !strings.Contains(got, "worker 2 of 3") || !strings.Contains(got, "worker(s) 0") || !strings.Contains(got, "batch size 4, not 2") {
		t.Errorf("notices %q do not name worker 2 and its batch size", got)
	}
}

// rewriteManifest edits worker i of 3's manifest as JSON.
func rewriteManifest(t *testing.T, dir string, i int, edit func(map[string]any)) {
	t.Helper()
	p := filepath.Join(dir, actcache.WorkerManifestName(i, 3))
	raw, _ := os.ReadFile(p)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	raw, _ = json.Marshal(m)
	os.WriteFile(p, raw, 0o644)
}

// snapshot maps each file name in dir to its content.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		out[e.Name()] = string(b)
	}
	return out
}

// An interrupted worker resumes: complete shards are kept, a shard that no
// longer matches its recorded hash is rewritten, and a changed worker count
// is refused with the old count named.
func TestWorkerResume(t *testing.T) {
	f := load(t)
	dir := filepath.Join(t.TempDir(), "c")
	ref := filepath.Join(t.TempDir(), "ref")
	oneRow := func(_ int, o *Options) { o.BatchSize = 1 }
	buildWorkers(t, f, ref, 2, 1, oneRow)
	o := f.options(dir, 1)
	o.PerShard, o.Shard, o.BatchSize = 1, &Shard{Index: 1, Count: 2}, 1
	o.Rows = failingRows{f.rows, 5} // worker 1 has rows 3..5, a batch each: rows 3 and 4 succeed, row 5 fails
	if _, err := build1(context.Background(), o); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Build error = %v", err)
	}
	m, err := actcache.ReadManifestFile(filepath.Join(dir, actcache.WorkerManifestName(1, 2)))
	if err != nil || m.Complete || len(m.Shards) != 2 {
		t.Fatalf("interrupted worker manifest %+v, %v", m, err)
	}
	// Worker 1 of 2 is incomplete and worker 0 missing: verify names both.
	chk, err := actcache.Verify(context.Background(), dir, nil)
	if err != nil || fmt.Sprint(chk.Rerun) != "[0 1]" {
		t.Errorf("Verify = %+v, %v; want workers 0 and 1 to rerun", chk, err)
	}
	kept := filepath.Join(dir, actcache.WorkerShardName(1, 2, 0))
	st0, _ := os.Stat(kept)
	damaged := filepath.Join(dir, actcache.WorkerShardName(1, 2, 1))
	b, _ := os.ReadFile(damaged)
	os.WriteFile(damaged, b[:len(b)/2], 0o644)
	o.Rows = f.rows
	if _, err := build1(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if st1, _ := os.Stat(kept); !os.SameFile(st0, st1) || !st0.ModTime().Equal(st1.ModTime()) {
		t.Error("the complete shard was rewritten instead of kept")
	}
	for k := range 3 {
		a, _ := os.ReadFile(filepath.Join(ref, actcache.WorkerShardName(1, 2, k)))
		b, _ := os.ReadFile(filepath.Join(dir, actcache.WorkerShardName(1, 2, k)))
		if !bytes.Equal(a, b) {
			t.Errorf("shard %d differs from the uninterrupted worker's", k)
		}
	}
	// The same rows split 3 ways cannot resume in this directory.
	o.Shard = &Shard{Index: 1, Count: 3}
	_, err = build1(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "2 workers") || !strings.Contains(err.Error(), "--shard i/2") {
		t.Errorf("Build(changed worker count) error = %v", err)
	}
	// Nor can a single-machine build share the directory.
	o.Shard = nil
	if _, err := build1(context.Background(), o); err == nil || !strings.Contains(err.Error(), "sharded build") {
		t.Errorf("Build(single into sharded dir) error = %v", err)
	}
	if _, err := actcache.Open(dir); err == nil || !strings.Contains(err.Error(), "cache merge") {
		t.Errorf("Open(unmerged) error = %v", err)
	}
	o.Shard = &Shard{Index: 0, Count: 7}
	if _, err := build1(context.Background(), o); err == nil || !strings.Contains(err.Error(), "at most 6 workers") {
		t.Errorf("Build(7 workers, 6 rows) error = %v", err)
	}
}

// Verify re-hashes a single-machine cache too.
func TestVerifySingle(t *testing.T) {
	f := load(t)
	o := f.options(filepath.Join(t.TempDir(), "c"), 1)
	if _, err := build1(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	chk, err := actcache.Verify(context.Background(), o.Layers[0].Out, nil)
	if err != nil || !chk.OK() || chk.Sharded || chk.Shards != 2 || chk.Rows != 6 {
		t.Fatalf("Verify = %+v, %v", chk, err)
	}
	p := filepath.Join(o.Layers[0].Out, actcache.ShardName(1))
	b, _ := os.ReadFile(p)
	b[200] ^= 1
	os.WriteFile(p, b, 0o644)
	chk, err = actcache.Verify(context.Background(), o.Layers[0].Out, nil)
	if err != nil || chk.OK() || chk.Problems[0].File != actcache.ShardName(1) || chk.Problems[0].Worker != -1 {
		t.Fatalf("Verify(flipped byte) = %+v, %v", chk, err)
	}
	// Re-running the build rewrites the damaged shard.
	if _, err := build1(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if chk, err := actcache.Verify(context.Background(), o.Layers[0].Out, nil); err != nil || !chk.OK() {
		t.Errorf("Verify after the rebuild = %+v, %v", chk, err)
	}
}

// Every row is computed in its batch of the build's one batch grid, whole,
// however the build is cut: the tokens, x, y and acts of builds sharded
// 2 to 6 ways (workers whose ranges start and end inside batches, each
// worker at its own thread count), cut into shards of 1 to 5 rows, or
// interrupted and resumed inside a batch, equal a single build's bit for
// bit. A cut that changed a batch would show up under BLAS kernels that
// round a row by how many rows share its GEMM (OpenBLAS's Haswell sgemm,
// which make test runs these tests under too).
func TestBatchGridMakesBuildsIdentical(t *testing.T) {
	f := load(t)
	acts := withActs(t)
	ref := f.options(filepath.Join(t.TempDir(), "single"), 1)
	ref.BatchSize, ref.PerShard = 4, 6
	acts(0, &ref)
	if _, err := build1(context.Background(), ref); err != nil {
		t.Fatal(err)
	}
	want := readJoined(t, ref.Layers[0].Out)
	check := func(t *testing.T, dir string) {
		t.Helper()
		if got := readJoined(t, dir); !reflect.DeepEqual(got, want) {
			t.Errorf("tokens, x, y or acts differ from the single build's (%s)", got.differs(want))
		}
	}
	for per := 1; per <= 5; per++ {
		t.Run(fmt.Sprintf("%d rows per shard", per), func(t *testing.T) {
			o := ref
			o.Layers[0].Out, o.PerShard = filepath.Join(t.TempDir(), "c"), per
			if _, err := build1(context.Background(), o); err != nil {
				t.Fatal(err)
			}
			check(t, o.Layers[0].Out)
		})
	}
	for n := 2; n <= 6; n++ {
		t.Run(fmt.Sprintf("%d workers", n), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "sharded")
			buildWorkers(t, f, out, n, 2, func(i int, o *Options) {
				acts(i, o)
				o.BatchSize = 4
				runtime.GOMAXPROCS(1 + i%3)
			})
			runtime.GOMAXPROCS(procs)
			if _, _, err := actcache.Merge(context.Background(), out, nil); err != nil {
				t.Fatal(err)
			}
			check(t, out)
		})
	}
	// Interrupted at row 5: batch [0, 4) wrote shard 0 (rows 0..2) and
	// began shard 1 with row 3; batch [4, 6) failed. The rerun keeps shard
	// 0 and computes batch [0, 4) again, whole, for row 3.
	t.Run("resumed inside a batch", func(t *testing.T) {
		o := ref
		o.Layers[0].Out, o.PerShard = filepath.Join(t.TempDir(), "c"), 3
		o.Rows = failingRows{f.rows, 5}
		if _, err := build1(context.Background(), o); err == nil || !strings.Contains(err.Error(), "disk on fire") {
			t.Fatalf("Build error = %v", err)
		}
		o.Rows = f.rows
		if _, err := build1(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		check(t, o.Layers[0].Out)
	})
}

// procs is GOMAXPROCS as the tests started.
var procs = runtime.GOMAXPROCS(0)

// joined is a whole cache read into memory: every shard's tokens, x, y
// and acts, concatenated.
type joined struct {
	Tok  []int32
	X, Y []float32
	Acts transcoder.Acts
}

func readJoined(t *testing.T, dir string) joined {
	t.Helper()
	tok, x, y, a := readAll(t, dir)
	return joined{tok, x, y, joinActs(a)}
}

// differs names the parts of j that differ from w.
func (j joined) differs(w joined) string {
	var d []string
	for _, c := range []struct {
		name string
		a, b any
	}{{"tokens", j.Tok, w.Tok}, {"x", j.X, w.X}, {"y", j.Y, w.Y}, {"acts", j.Acts, w.Acts}} {
		if !reflect.DeepEqual(c.a, c.b) {
			d = append(d, c.name)
		}
	}
	return strings.Join(d, ", ")
}
