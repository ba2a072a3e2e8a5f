package actcache

import (
	"context"
	"encoding/binary"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/safetensors"
	"github.com/ctxdep/ctxdep/internal/testutil"
)

// patchFloat32 sets element k of the named F32 tensor of the file at path
// to v, in place.
func patchFloat32(t *testing.T, path, name string, k int, v float32) {
	t.Helper()
	if err := testutil.PatchFloat32(path, name, k, v); err != nil {
		t.Fatal(err)
	}
}

// readErr walks c to its end and returns the first error other than io.EOF
// (nil when every batch was read).
func readErr(t *testing.T, c *Cache) error {
	t.Helper()
	r, err := c.NewReader(context.Background(), ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for {
		_, err := r.Next(1)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// expectDamaged checks that err is the one-line error about a damaged shard
// that names it, says what is wrong (want) and how to repair the cache.
func expectDamaged(t *testing.T, err error, c *Cache, shard string, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("reading a damaged shard succeeded")
	}
	msg := err.Error()
	for _, w := range append([]string{shard, "ctxdep cache verify " + c.Dir, "ctxdep cache build"}, want...) {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not mention %q", msg, w)
		}
	}
	if strings.Contains(msg, "\n") {
		t.Errorf("error %q spans several lines", msg)
	}
}

// One float of y changed in a shard (issue 18, row 2: fit ran on with a y of
// 1e6) stops the reader with an error that names the shard: its bytes no
// longer hash to what the manifest records.
func TestReadRefusesPatchedShard(t *testing.T) {
	c := writeCache(t, 5)
	if err := readErr(t, c); err != nil {
		t.Fatalf("reading the intact cache: %v", err)
	}
	shard := c.Manifest.Shards[1].File
	patchFloat32(t, filepath.Join(c.Dir, shard), "y", 3, 1e6)
	expectDamaged(t, readErr(t, c), c, shard, "sha256", "the manifest records")

	// Every reader refuses it: ReadShard is the one way in.
	if _, err := c.ReadShard(1); err == nil {
		t.Error("ReadShard(1) read the patched shard")
	}
	if _, err := c.ReadShard(0); err != nil {
		t.Errorf("ReadShard(0) of an intact shard: %v", err)
	}
}

// A shard of another size than the manifest records (a byte appended, or
// truncated) is refused before it is parsed.
func TestReadRefusesResizedShard(t *testing.T) {
	c := writeCache(t, 5)
	shard := c.Manifest.Shards[2].File
	path := filepath.Join(c.Dir, shard)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(raw, ' '), 0o644); err != nil {
		t.Fatal(err)
	}
	expectDamaged(t, readErr(t, c), c, shard, "bytes", "the manifest records")
	if err := os.WriteFile(path, raw[:len(raw)-4], 0o644); err != nil {
		t.Fatal(err)
	}
	expectDamaged(t, readErr(t, c), c, shard, "bytes", "the manifest records")
}

// rewriteShard rewrites shard i of c with its own tensors and the metadata
// edit makes, and records the new file's size and hash in the manifest (on
// disk and in c), so that only the metadata can tell.
func rewriteShard(t *testing.T, c *Cache, i int, edit func(md map[string]string)) string {
	t.Helper()
	s := &c.Manifest.Shards[i]
	path := filepath.Join(c.Dir, s.File)
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	md := f.Metadata()
	edit(md)
	infos := f.Tensors()
	var raws [][]byte
	for _, info := range infos {
		raw, err := f.Raw(info.Name)
		if err != nil {
			t.Fatal(err)
		}
		raws = append(raws, append([]byte(nil), raw...))
	}
	f.Close()
	w, err := safetensors.Create(path, infos, md)
	if err != nil {
		t.Fatal(err)
	}
	for k, info := range infos {
		var err error
		switch info.DType {
		case safetensors.F32:
			v := make([]float32, len(raws[k])/4)
			for j := range v {
				v[j] = math.Float32frombits(binary.LittleEndian.Uint32(raws[k][4*j:]))
			}
			err = w.WriteFloat32(v)
		case safetensors.I32:
			v := make([]int32, len(raws[k])/4)
			for j := range v {
				v[j] = int32(binary.LittleEndian.Uint32(raws[k][4*j:]))
			}
			err = w.WriteInt32(v)
		case safetensors.I64:
			v := make([]int64, len(raws[k])/8)
			for j := range v {
				v[j] = int64(binary.LittleEndian.Uint64(raws[k][8*j:]))
			}
			err = w.WriteInt64(v)
		default:
			t.Fatalf("tensor %q: dtype %s", info.Name, info.DType)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	p, err := provenance.Hash(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Bytes, s.SHA256 = p.Size, p.SHA256
	if err := writeManifest(c.Dir, c.Manifest); err != nil {
		t.Fatal(err)
	}
	return s.File
}

// A shard whose metadata disagrees with the manifest is refused even when
// its bytes hash to what the manifest records: its layer edited, its first
// row, its hooks; and a manifest whose layer was edited (issue 18, row 7)
// no longer matches its shards.
func TestReadChecksShardMetadata(t *testing.T) {
	for _, tc := range []struct {
		name, key, value string
	}{
		{"layer", "layer", "7"},
		{"first row", "first_row", "99"},
		{"hook", "y", "blocks.0.hook_resid_post"},
		{"format", "format", "something-else"},
		{"nnz", "nnz", "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := writeCache(t, 5)
			shard := rewriteShard(t, c, 1, func(md map[string]string) { md[tc.key] = tc.value })
			// The hash matches the manifest: only the metadata check can tell.
			expectDamaged(t, readErr(t, c), c, shard, "metadata says "+tc.key+` "`+tc.value+`"`)
		})
	}
	t.Run("no layer", func(t *testing.T) {
		c := writeCache(t, 5)
		shard := rewriteShard(t, c, 0, func(md map[string]string) { delete(md, "layer") })
		expectDamaged(t, readErr(t, c), c, shard, `no "layer"`)
	})
	t.Run("manifest layer edited", func(t *testing.T) {
		c := writeCache(t, 5)
		c.Manifest.Layer = 1
		if err := writeManifest(c.Dir, c.Manifest); err != nil {
			t.Fatal(err)
		}
		c, err := Open(c.Dir)
		if err != nil {
			t.Fatal(err)
		}
		expectDamaged(t, readErr(t, c), c, c.Manifest.Shards[0].File, `metadata says layer "0", the manifest "1"`)
	})
}

// A manifest that records another shape for a shard (here its tensors' dtype
// through the cache's dtype) is refused naming the tensor.
func TestReadChecksShardTensors(t *testing.T) {
	c := writeCache(t, 5)
	c.Manifest.DType = "float16"
	expectDamaged(t, readErr(t, c), c, c.Manifest.Shards[0].File, `tensor "x" is F32`, "F16")
}

// A float16 cache is read through the same verified path: values widen
// exactly and the hash matches.
func TestReadFloat16Verified(t *testing.T) {
	const tt, c = 3, 2
	dir := filepath.Join(t.TempDir(), "c")
	w, err := Create(dir, Manifest{Layer: 2, DModel: c, ContextLength: tt, NSequences: 3, DType: "float16",
		SequencesPerShard: 2, Hooks: HookNames(2), Data: Data{Rows: 3, RowsTaken: 3}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < w.NumShards(); i++ {
		_, k := w.ShardRows(i)
		tok := make([]int32, k*tt)
		x := make([]float32, k*tt*c)
		y := make([]float32, k*tt*c)
		for j := range x {
			x[j], y[j] = float32(j)+0.5, -float32(j)*0.25
		}
		if err := w.WriteShard(i, tok, x, y, nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	cache, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	sd, err := cache.ReadShard(1)
	if err != nil {
		t.Fatal(err)
	}
	for j := range sd.X {
		if sd.X[j] != float32(j)+0.5 || sd.Y[j] != -float32(j)*0.25 {
			t.Fatalf("value %d: x %g, y %g", j, sd.X[j], sd.Y[j])
		}
	}
	if sd.Acts != nil {
		t.Error("a cache without acts returned acts")
	}
	path := filepath.Join(dir, cache.Manifest.Shards[1].File)
	off, err := testutil.TensorOffset(path, "x", 1)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	raw[off] ^= 1
	os.WriteFile(path, raw, 0o644)
	expectDamaged(t, readErr(t, cache), cache, cache.Manifest.Shards[1].File, "sha256")
}

// A shard the manifest lists but that is gone is an error that names it
// once, with the same advice (a rerun of the build writes it again).
func TestReadMissingShard(t *testing.T) {
	c := writeCache(t, 5)
	shard := c.Manifest.Shards[1].File
	path := filepath.Join(c.Dir, shard)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	err := readErr(t, c)
	expectDamaged(t, err, c, shard, "no such file")
	if strings.Count(err.Error(), path) != 1 {
		t.Errorf("error %q names the shard more than once", err)
	}
}

// A shard whose header no longer parses (same size) is refused with the
// parser's error, naming the shard once, and the same advice.
func TestReadUnparsableShard(t *testing.T) {
	c := writeCache(t, 5)
	shard := c.Manifest.Shards[0].File
	path := filepath.Join(c.Dir, shard)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	raw[8] = 'X' // the header's opening brace
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	err = readErr(t, c)
	expectDamaged(t, err, c, shard, "header")
	if strings.Count(err.Error(), path) != 1 {
		t.Errorf("error %q names the shard more than once", err)
	}
}
