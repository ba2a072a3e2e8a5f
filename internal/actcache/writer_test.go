package actcache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/atomicfile"
	"github.com/ctxdep/ctxdep/internal/dirlock"
	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/safetensors"
)

// Small builds written through the Writer with made-up activations: rows
// of 3 tokens, d_model 2, layer 1, two rows per shard.
const wtT, wtC = 3, 2

// wtManifest describes a build of rows rows; data names the input (its
// SHA-256 stands for the token file's).
func wtManifest(rows int, data string) Manifest {
	return Manifest{Layer: 1, DModel: wtC, ContextLength: wtT, NSequences: rows, DType: "float32",
		Hooks: HookNames(1), SequencesPerShard: 2, BatchSize: 2,
		Model: provenance.File{Path: "model.safetensors", SHA256: strings.Repeat("a", 64), Size: 1},
		Data:  Data{Kind: "tokens-npy", File: provenance.File{Path: data, SHA256: strings.Repeat(data[:1], 64), Size: 1}, Rows: rows, RowsTaken: rows}}
}

// wtShard returns the tokens, x and y of input rows [first, first+n):
// token 10·r + p, x = token + 0.25·k, y = −x + scale.
func wtShard(first, n int, scale float32) ([]int32, []float32, []float32) {
	var tok []int32
	var x, y []float32
	for r := first; r < first+n; r++ {
		for p := 0; p < wtT; p++ {
			v := int32(10*r + p)
			tok = append(tok, v)
			for k := 0; k < wtC; k++ {
				x = append(x, float32(v)+0.25*float32(k))
				y = append(y, -(float32(v)+0.25*float32(k))+scale)
			}
		}
	}
	return tok, x, y
}

// wtWrite writes shard i of w.
func wtWrite(t *testing.T, w *Writer, i int) {
	t.Helper()
	first, n := w.ShardRows(i)
	tok, x, y := wtShard(first, n, 0)
	if err := w.WriteShard(i, tok, x, y, nil, nil); err != nil {
		t.Fatal(err)
	}
}

// wtBuild writes every shard of man into dir and finishes.
func wtBuild(t *testing.T, dir string, man Manifest) {
	t.Helper()
	w, err := CreateWith(dir, man, CreateOptions{Notice: func(s string) { t.Logf("notice: %s", s) }})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < w.NumShards(); i++ {
		wtWrite(t, w, i)
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
}

// notices collects a writer's notices.
type notices []string

func (n *notices) add(s string) { *n = append(*n, s) }

func (n notices) has(parts ...string) bool {
	for _, s := range n {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(s, p)
		}
		if ok {
			return true
		}
	}
	return false
}

// mustContain fails unless err's message holds every part.
func mustContain(t *testing.T, what string, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s succeeded; want an error saying %q", what, parts)
		return
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error %q does not say %q", what, err, p)
		}
	}
}

// Row 1 of issue 18: a second build into a directory that a build is
// writing is refused, naming the first; the first's cache is not mixed
// with the second's input; once the first finishes, the lock is gone, and
// the second is refused for its other inputs as before.
func TestSecondBuildIntoOneDirRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	a, err := Create(dir, wtManifest(6, "a"))
	if err != nil {
		t.Fatal(err)
	}
	wtWrite(t, a, 0)
	_, err = Create(dir, wtManifest(6, "b"))
	mustContain(t, "a second Create", err, dir+" is being written by this process (pid", "ctxdep cache build, since", "wait for it to finish, or use another --out")
	// The same inputs do not share a directory either.
	_, err = Create(dir, wtManifest(6, "a"))
	mustContain(t, "a second Create with the same inputs", err, "is being written by")
	if c, err := Verify(context.Background(), dir, nil); err != nil || len(c.Problems) != 1 || !strings.Contains(c.Problems[0].Message, "is being written by this process") {
		t.Errorf("Verify during the build = %+v, %v", c, err)
	}
	wtWrite(t, a, 1)
	wtWrite(t, a, 2)
	if err := a.Finish(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dirlock.Path(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Finish left the lock file: %v", err)
	}
	_, err = Create(dir, wtManifest(6, "b"))
	mustContain(t, "Create after the first finished", err, "other settings or inputs")
	if c, err := Verify(context.Background(), dir, nil); err != nil || !c.OK() {
		t.Errorf("Verify = %+v, %v", c, err)
	}
}

// A single-machine build and the workers of a sharded one cannot write one
// directory at once; workers share it; one worker cannot run twice.
func TestWorkerLocks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	worker := func(i int) Manifest {
		m := wtManifest(6, "a")
		m.Worker = &Worker{Index: i, Count: 2, TotalRows: 6}
		return m
	}
	w0, err := Create(dir, worker(0))
	if err != nil {
		t.Fatal(err)
	}
	w1, err := Create(dir, worker(1))
	if err != nil {
		t.Fatalf("a second worker in the directory: %v", err)
	}
	_, err = Create(dir, worker(1))
	mustContain(t, "worker 1 twice", err, "(worker 1 of 2) is being written by this process", "--shard 1/2", "another run of this worker")
	_, err = Create(dir, wtManifest(6, "a"))
	mustContain(t, "a single-machine build beside running workers", err, "is being written by worker 0 of 2 of a sharded build", "another --out")
	wtWrite(t, w0, 0)
	w0.Close()
	w1.Close()
	s, err := Create(dir, wtManifest(6, "a"))
	if err == nil {
		s.Close()
		t.Fatal("a single-machine build into a directory with workers' files was accepted")
	}
	// While a merge (or a single-machine build) holds the directory, no
	// worker starts.
	other := filepath.Join(t.TempDir(), "d")
	s, err = Create(other, wtManifest(6, "a"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Create(other, func() Manifest { m := worker(0); return m }())
	mustContain(t, "a worker while a single-machine build runs", err, other+" is being written by this process", "a worker cannot write there meanwhile")
	s.Close()
}

// "merge" while a worker still runs says so, naming it, instead of calling
// it stopped; once the worker is gone, it stopped.
func TestMergeWhileWorkerRuns(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	m0 := wtManifest(8, "a")
	m0.Worker = &Worker{Index: 0, Count: 2, TotalRows: 8}
	wtBuild(t, dir, m0)
	m1 := m0
	m1.Worker = &Worker{Index: 1, Count: 2, TotalRows: 8}
	w1, err := Create(dir, m1)
	if err != nil {
		t.Fatal(err)
	}
	wtWrite(t, w1, 0)
	_, _, err = Merge(context.Background(), dir, nil)
	mustContain(t, "Merge with a worker running", err, "worker 1 of 2 is still running (this process (pid", "1 of its shards written so far", "wait for it to finish")
	if err != nil && strings.Contains(err.Error(), "stopped") {
		t.Errorf("Merge calls a running worker stopped: %v", err)
	}
	c, err := Verify(context.Background(), dir, nil)
	if err != nil || len(c.Problems) != 1 || c.Problems[0].Kind != ProblemRunningWorker || len(c.Rerun) != 0 {
		t.Errorf("Verify with a worker running = %+v, %v", c, err)
	}
	w1.Close()
	_, _, err = Merge(context.Background(), dir, nil)
	mustContain(t, "Merge after the worker stopped", err, "worker 1 of 2 stopped after 1 of its shards")
	// A worker that has not written its first shard yet is running too.
	fresh := filepath.Join(t.TempDir(), "fresh")
	wtBuild(t, fresh, m0)
	w1, err = Create(fresh, m1)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = Merge(context.Background(), fresh, nil)
	mustContain(t, "Merge with a worker that has written nothing yet", err, "worker 1 of 2 is still running (this process", "has written no shard yet")
	w1.Close()
	_, _, err = Merge(context.Background(), fresh, nil)
	mustContain(t, "Merge after that worker stopped", err, "worker 1 of 2 has not run")
	// A merge holds the directory's lock; a merge during another is refused.
	l, err := dirlock.TryLock(dirlock.Path(dir), dirlock.Options{What: "ctxdep cache merge"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = Merge(context.Background(), dir, nil)
	mustContain(t, "Merge during a merge", err, dir+" is being written by this process", "ctxdep cache merge", "then merge")
	l.Release()
}

// The writer's lock is released by Finish, by Close and by a failed
// write; a closed writer writes nothing more.
func TestWriterReleases(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	w, err := Create(dir, wtManifest(4, "a"))
	if err != nil {
		t.Fatal(err)
	}
	wtWrite(t, w, 0)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	tok, x, y := wtShard(2, 2, 0)
	mustContain(t, "WriteShard after Close", w.WriteShard(1, tok, x, y, nil, nil), "is closed")
	mustContain(t, "Finish after Close", w.Finish(), "is closed")
	if _, err := os.Stat(dirlock.Path(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left the lock file: %v", err)
	}
	// A failed write (here: a full directory, made read-only) releases it.
	w, err = Create(dir, wtManifest(4, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if !w.Has(0) || w.Has(1) {
		t.Fatal("the resumed writer does not keep shard 0")
	}
	os.Chmod(dir, 0o555)
	defer os.Chmod(dir, 0o755)
	if err := w.WriteShard(1, tok, x, y, nil, nil); err == nil {
		if os.Geteuid() == 0 {
			t.Skip("root writes into a read-only directory")
		}
		t.Fatal("WriteShard into a read-only directory succeeded")
	}
	os.Chmod(dir, 0o755)
	if w2, err := Create(dir, wtManifest(4, "a")); err != nil {
		t.Errorf("Create after a failed write: %v", err)
	} else {
		w2.Close()
	}
}

// Row 5 of issue 18, float16: a value beyond float16's range is refused
// with the tensor, the shard, the value and what to do, instead of being
// stored as Inf; ±65504 itself fits.
func TestFloat16Overflow(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	man := wtManifest(4, "a")
	man.DType = "float16"
	w, err := Create(dir, man)
	if err != nil {
		t.Fatal(err)
	}
	tok, x, y := wtShard(0, 2, 0)
	x[0], y[1] = 65504, -65504
	if err := w.WriteShard(0, tok, x, y, nil, nil); err != nil {
		t.Fatalf("±65504: %v", err)
	}
	tok, x, y = wtShard(2, 2, 0)
	y[1*wtT*wtC+2*wtC+1] = 70000 // row 3, position 2, channel 1
	err = w.WriteShard(1, tok, x, y, nil, nil)
	mustContain(t, "WriteShard(y = 70000)", err, filepath.Join(dir, "shard-00001.safetensors"), "y (blocks.1.hook_mlp_out) is 70000 at input row 3, position 2, channel 1",
		"beyond float16's range (±65504)", "--dtype float32")
	if _, err := os.Stat(filepath.Join(dir, "shard-00001.safetensors")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused shard was written: %v", err)
	}
	w, err = Create(dir, man)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	tok, x, y = wtShard(2, 2, 0)
	x[0] = -1e30
	mustContain(t, "WriteShard(x = -1e30)", w.WriteShard(1, tok, x, y, nil, nil), "x (blocks.1.ln2.hook_normalized) is -1e+30 at input row 2, position 0, channel 0")
}

// Row 7 of issue 18: a manifest whose layer was edited keeps its shards'
// hashes; the build of the edited layer no longer adopts them, and verify
// reports them.
func TestEditedManifestLayer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	wtBuild(t, dir, wtManifest(4, "a"))
	path := filepath.Join(dir, ManifestName)
	editJSON(t, path, func(m map[string]any) { m["layer"] = 2 })
	man := wtManifest(4, "a")
	man.Layer, man.Hooks = 2, HookNames(2)
	_, err := Create(dir, man)
	mustContain(t, "Create(layer 2) over shards of layer 1", err, "shard-00000.safetensors is listed in", "its header says layer 1, the manifest 2", "edited")
	c, err := Verify(context.Background(), dir, nil)
	if err != nil || c.OK() || c.Problems[0].Kind != ProblemShardHeader || !strings.Contains(c.Problems[0].Message, "layer 1, the manifest 2") {
		t.Errorf("Verify(edited layer) = %+v, %v", c, err)
	}
}

// editJSON edits the JSON file at path.
func editJSON(t *testing.T, path string, edit func(map[string]any)) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	raw, _ = json.Marshal(m)
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

// orphanDir leaves what a run that stopped between writing shard 2 and
// recording it leaves (disk full, or SIGKILL): shards 0..2 on disk, the
// manifest listing 0 and 1. It returns the directory and shard 2's path.
func orphanDir(t *testing.T) (string, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "c")
	w, err := Create(dir, wtManifest(8, "a"))
	if err != nil {
		t.Fatal(err)
	}
	wtWrite(t, w, 0)
	wtWrite(t, w, 1)
	listed, _ := os.ReadFile(filepath.Join(dir, ManifestName))
	wtWrite(t, w, 2)
	w.Close()
	if err := os.WriteFile(filepath.Join(dir, ManifestName), listed, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, filepath.Join(dir, ShardName(2))
}

// Row 7 of issue 18: a shard that no manifest lists is never adopted as it
// is: the build computes it again; a corrupt one is replaced (before, its
// corrupt bytes were hashed into the manifest), an intact one found
// identical.
func TestOrphanShardComputedAgain(t *testing.T) {
	ref := filepath.Join(t.TempDir(), "ref")
	wtBuild(t, ref, wtManifest(8, "a"))
	want, _ := os.ReadFile(filepath.Join(ref, ShardName(2)))

	for _, corrupt := range []bool{true, false} {
		dir, orphan := orphanDir(t)
		if corrupt {
			b, _ := os.ReadFile(orphan)
			b[len(b)-5] ^= 0x40 // a y value, the header intact
			os.WriteFile(orphan, b, 0o644)
		}
		var got notices
		w, err := CreateWith(dir, wtManifest(8, "a"), CreateOptions{Notice: got.add})
		if err != nil {
			t.Fatal(err)
		}
		if !w.Has(0) || !w.Has(1) || w.Has(2) || strings.Join(w.Unlisted(), ",") != ShardName(2) {
			t.Fatalf("corrupt %v: kept %v %v %v, unlisted %v; want shards 0 and 1 kept, 2 computed again", corrupt, w.Has(0), w.Has(1), w.Has(2), w.Unlisted())
		}
		if !got.has("1 shard(s) in "+dir+" are not listed in manifest.json", ShardName(2), "computed again and compared") {
			t.Errorf("notices %q", got)
		}
		for i := 2; i < w.NumShards(); i++ {
			wtWrite(t, w, i)
		}
		if err := w.Finish(); err != nil {
			t.Fatal(err)
		}
		if corrupt && !got.has(orphan, "differed from the shard computed again", "replaced") {
			t.Errorf("corrupt orphan: notices %q", got)
		}
		if !corrupt && got.has("differed") {
			t.Errorf("intact orphan: notices %q", got)
		}
		if b, _ := os.ReadFile(orphan); !bytes.Equal(b, want) {
			t.Errorf("corrupt %v: shard 2 is not what an uninterrupted build writes", corrupt)
		}
		if c, err := Verify(context.Background(), dir, nil); err != nil || !c.OK() {
			t.Errorf("Verify = %+v, %v", c, err)
		}
	}

	// An orphan of this build's settings whose tensors are not what the
	// build writes is rewritten too; one that is not a safetensors file
	// at all is refused and left alone.
	dir, orphan := orphanDir(t)
	f, err := safetensors.Open(orphan)
	if err != nil {
		t.Fatal(err)
	}
	md := f.Metadata()
	f.Close()
	tok, x, y := wtShard(4, 1, 0)
	if err := safetensors.WriteFile(orphan, []safetensors.Tensor{
		{Name: "tokens", DType: safetensors.I32, Shape: []int{1, wtT}, Data: dtypeBytes(tok)},
		{Name: "x", DType: safetensors.F32, Shape: []int{1, wtT, wtC}, Data: safetensors.Float32Bytes(nil, x)},
		{Name: "y", DType: safetensors.F32, Shape: []int{1, wtT, wtC}, Data: safetensors.Float32Bytes(nil, y)},
	}, md); err != nil {
		t.Fatal(err)
	}
	var got notices
	w, err := CreateWith(dir, wtManifest(8, "a"), CreateOptions{Notice: got.add})
	if err != nil {
		t.Fatalf("Create with a misshapen orphan: %v", err)
	}
	w.Close()
	if !got.has(orphan, `its tensor "tokens" has shape [1 3], a shard of 2 rows [2 3]`, "written again") || w.Has(2) {
		t.Errorf("misshapen orphan: notices %q", got)
	}
	b, _ := os.ReadFile(orphan)
	os.WriteFile(orphan, b[:len(b)-8], 0o644)
	_, err = Create(dir, wtManifest(8, "a"))
	mustContain(t, "Create with a truncated orphan", err, orphan, "unreadable (remove it to rebuild it)")

	// An orphan of another layer (another build) is left alone, and the
	// build refused.
	dir, orphan = orphanDir(t)
	other := filepath.Join(t.TempDir(), "other")
	man := wtManifest(8, "a")
	man.Layer, man.Hooks = 2, HookNames(2)
	wtBuild(t, other, man)
	b, _ = os.ReadFile(filepath.Join(other, ShardName(2)))
	os.WriteFile(orphan, b, 0o644)
	_, err = Create(dir, wtManifest(8, "a"))
	mustContain(t, "Create with another build's orphan", err, orphan, "other settings (layer \"2\", this build's is 1)")
}

// Row 11 of issue 18: the temporary files of a killed run are listed by
// Verify (not those of a live writer, nor other programs') and removed by
// the next run in the directory, under its lock.
func TestLeftoverTempFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	w, err := Create(dir, wtManifest(6, "a"))
	if err != nil {
		t.Fatal(err)
	}
	wtWrite(t, w, 0)
	w.Close()
	shardTmp := filepath.Base(atomicfile.TempName(filepath.Join(dir, ShardName(1))))
	manTmp := filepath.Base(atomicfile.TempName(filepath.Join(dir, ManifestName)))
	foreign := filepath.Base(atomicfile.TempName(filepath.Join(dir, "notes.txt")))
	for _, name := range []string{shardTmp, manTmp, foreign} {
		os.WriteFile(filepath.Join(dir, name), []byte("partial"), 0o644)
	}
	c, err := Verify(context.Background(), dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	var temps []string
	for _, p := range c.Problems {
		if p.Kind == ProblemTempFile {
			temps = append(temps, p.File)
			if !strings.Contains(p.Message, "killed run") || !strings.Contains(p.Message, "rerun the same `ctxdep cache build`") {
				t.Errorf("temp-file message %q", p.Message)
			}
		}
	}
	if len(temps) != 2 || !strings.Contains(strings.Join(temps, " "), shardTmp) || !strings.Contains(strings.Join(temps, " "), manTmp) {
		t.Errorf("Verify lists temporary files %v; want %s and %s", temps, shardTmp, manTmp)
	}
	var got notices
	w, err = CreateWith(dir, wtManifest(6, "a"), CreateOptions{Notice: got.add})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{shardTmp, manTmp} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived the next run: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, foreign)); err != nil {
		t.Errorf("another program's temporary file was removed: %v", err)
	}
	if !got.has("removed 2 temporary file(s)", shardTmp) {
		t.Errorf("notices %q", got)
	}
	// A live writer's temporary file is not a leftover.
	live := filepath.Join(dir, filepath.Base(atomicfile.TempName(filepath.Join(dir, ShardName(1)))))
	os.WriteFile(live, []byte("being written"), 0o644)
	if c, err := Verify(context.Background(), dir, nil); err != nil || hasKind(c, ProblemTempFile) {
		t.Errorf("Verify during a build lists its temporary file: %+v, %v", c, err)
	}
	w.Close()
	if c, _ := Verify(context.Background(), dir, nil); !hasKind(c, ProblemTempFile) {
		t.Errorf("Verify after the build stopped does not list its temporary file: %+v", c)
	}
}

// Workers remove only their own leftovers; merge removes those of the
// workers that are not running.
func TestWorkerLeftovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c")
	worker := func(i int) Manifest {
		m := wtManifest(8, "a")
		m.Worker = &Worker{Index: i, Count: 2, TotalRows: 8}
		return m
	}
	wtBuild(t, dir, worker(0))
	tmp0 := filepath.Join(dir, filepath.Base(atomicfile.TempName(filepath.Join(dir, WorkerShardName(0, 2, 1)))))
	tmp1 := filepath.Join(dir, filepath.Base(atomicfile.TempName(filepath.Join(dir, WorkerShardName(1, 2, 0)))))
	os.WriteFile(tmp0, []byte("x"), 0o644)
	os.WriteFile(tmp1, []byte("x"), 0o644)
	c, err := Verify(context.Background(), dir, nil)
	if err != nil || !hasKind(c, ProblemTempFile) || c.Rerun[0] != 0 {
		t.Errorf("Verify = %+v, %v", c, err)
	}
	w1, err := CreateWith(dir, worker(1), CreateOptions{Notice: func(string) {}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp0); err != nil {
		t.Errorf("worker 1 removed worker 0's temporary file: %v", err)
	}
	if _, err := os.Stat(tmp1); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("worker 1 left its own temporary file: %v", err)
	}
	for i := 0; i < w1.NumShards(); i++ {
		wtWrite(t, w1, i)
	}
	if err := w1.Finish(); err != nil {
		t.Fatal(err)
	}
	var got notices
	if _, _, err := MergeWith(context.Background(), dir, nil, got.add); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(tmp0); !errors.Is(err, os.ErrNotExist) || !got.has("removed 1 temporary file(s)") {
		t.Errorf("merge left %s (%v), notices %q", tmp0, err, got)
	}
	if c, err := Verify(context.Background(), dir, nil); err != nil || !c.OK() {
		t.Errorf("Verify after merge = %+v, %v", c, err)
	}
}

// dtypeBytes returns v's little-endian bytes.
func dtypeBytes(v []int32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = append(b, byte(x), byte(x>>8), byte(x>>16), byte(x>>24))
	}
	return b
}

func hasKind(c *Check, kind string) bool {
	if c == nil {
		return false
	}
	for _, p := range c.Problems {
		if p.Kind == kind {
			return true
		}
	}
	return false
}
