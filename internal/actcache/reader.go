package actcache

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ctxdep/ctxdep/internal/dirlock"
	"github.com/ctxdep/ctxdep/internal/dtype"
	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/safetensors"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// Cache is a complete activation cache opened for reading.
type Cache struct {
	Dir      string
	Manifest *Manifest
	// YFromX computes y = MLP_L(x) (rows tokens, x and y (rows, C)) for a
	// cache that stores no y (Manifest.YRecomputed); ReadShard calls it,
	// so that readers get y from every cache alike. Commands set it to
	// the model's processed MLP of the cache's layer.
	YFromX func(x, y []float32, rows int) error
}

// Open opens the cache in dir. An interrupted build is an error that says
// how to finish it.
func Open(dir string) (*Cache, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	if !m.Complete {
		if h, held, err := dirlock.Probe(dirlock.Path(dir)); err == nil && held {
			return nil, fmt.Errorf("actcache: %s is incomplete: it is being written by %s (%s so far); wait for it to finish", dir, h, plural(len(m.Shards), "shard"))
		}
		return nil, fmt.Errorf("actcache: %s is incomplete (%d of its shards were written before the build stopped); re-run the same `ctxdep cache build` to resume it", dir, len(m.Shards))
	}
	if m.NSequences == 0 {
		return nil, fmt.Errorf("actcache: %s holds no sequences", dir)
	}
	return &Cache{Dir: dir, Manifest: m}, nil
}

// ShardData is the decoded content of one shard.
type ShardData struct {
	NSequences int
	Tokens     []int32   // (S_i·T)
	X, Y       []float32 // (S_i·T, C)
	Scale      []float32 // (S_i·T): ln2.hook_scale, when the cache stores it
	Acts       *transcoder.Acts
}

// ReadShard reads shard i and checks it against the manifest before
// returning anything from it: its size; its metadata (format, layer, hooks,
// first row, stored activations) and tensors (names, dtypes, shapes, from
// which the tokens count follows); and the SHA-256 of its bytes, computed
// as they are decoded (one pass over the file: the hash costs no second
// read). x and y are converted to float32. Any mismatch is an error that
// names the shard and says to run `ctxdep cache verify` and rebuild.
func (c *Cache) ReadShard(i int) (*ShardData, error) {
	s := c.Manifest.Shards[i]
	path := filepath.Join(c.Dir, s.File)
	sd, err := c.readShard(path, s)
	if err != nil {
		if strings.HasPrefix(err.Error(), "safetensors: ") {
			// safetensors' errors name the file already.
			return nil, fmt.Errorf("actcache: %w; %s", err, c.rebuild())
		}
		return nil, fmt.Errorf("actcache: shard %s: %w; %s", path, err, c.rebuild())
	}
	// After the shard's checks: a y that cannot be computed (no model, or
	// another model than the build's) is not the shard's fault.
	if c.Manifest.YRecomputed {
		if err := c.recomputeY(sd, s.FirstRow); err != nil {
			return nil, err
		}
	}
	return sd, nil
}

// Bytes returns the size on disk of the shards the manifest lists. A
// shard that is missing or unreadable is an error that names it and ends
// with the advice every damaged shard gets.
func (c *Cache) Bytes() (int64, error) {
	var n int64
	for _, s := range c.Manifest.Shards {
		path := filepath.Join(c.Dir, s.File)
		st, err := os.Stat(path)
		if errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("actcache: shard %s, listed in the manifest, is missing; %s", path, c.rebuild())
		}
		if err != nil {
			return 0, fmt.Errorf("actcache: shard %s: %w; %s", path, err, c.rebuild())
		}
		n += st.Size()
	}
	return n, nil
}

// rebuild is the advice that ends every error about a damaged shard.
func (c *Cache) rebuild() string {
	return fmt.Sprintf("run `ctxdep cache verify %s` (it lists every damaged shard and what to rerun) and rerun the same `ctxdep cache build`, which rewrites damaged shards", c.Dir)
}

// shardTensor is one tensor of a shard as the manifest implies it, and
// where it is decoded to.
type shardTensor struct {
	name  string
	dtype safetensors.DType
	shape []int
	i32   *[]int32
	i64   *[]int64
	f32   *[]float32
}

func (c *Cache) readShard(path string, s Shard) (*ShardData, error) {
	m := c.Manifest
	header, err := readHeader(path, s.Bytes)
	if err != nil {
		return nil, err
	}
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := checkMetadata(f.Metadata(), m, s); err != nil {
		return nil, err
	}
	n, t := s.NSequences, m.ContextLength
	sd := &ShardData{NSequences: n}
	if m.WithActs {
		sd.Acts = &transcoder.Acts{}
	}
	var want []shardTensor
	for _, info := range shardTensors(m, n, s.NNZ) {
		w := shardTensor{name: info.Name, dtype: info.DType, shape: info.Shape}
		switch info.Name {
		case "tokens":
			w.i32 = &sd.Tokens
		case "x":
			w.f32 = &sd.X
		case "y":
			w.f32 = &sd.Y
		case "scale":
			w.f32 = &sd.Scale
		case "acts_indptr":
			w.i64 = &sd.Acts.Indptr
		case "acts_indices":
			w.i32 = &sd.Acts.Indices
		case "acts_values":
			w.f32 = &sd.Acts.Values
		}
		want = append(want, w)
	}
	byName := map[string]*shardTensor{}
	for k := range want {
		w := &want[k]
		info, ok := f.Tensor(w.name)
		if !ok {
			return nil, fmt.Errorf("no tensor %q", w.name)
		}
		if info.DType != w.dtype || !slices.Equal(info.Shape, w.shape) {
			return nil, fmt.Errorf("tensor %q is %s %v, the manifest implies %s %v", w.name, info.DType, info.Shape, w.dtype, w.shape)
		}
		byName[w.name] = w
	}
	// The tensors tile the data section in offset order (safetensors
	// checks it), so the header and then each tensor's bytes, in that
	// order, are the whole file.
	h := sha256.New()
	h.Write(header)
	for _, info := range f.Tensors() {
		raw, err := f.Raw(info.Name)
		if err != nil {
			return nil, err
		}
		decodeHashing(h, raw, byName[info.Name])
	}
	if got := hex.EncodeToString(h.Sum(nil)); !strings.EqualFold(got, s.SHA256) {
		return nil, fmt.Errorf("its sha256 is %.12s…, the manifest records %.12s… (the file changed after the build wrote it)", got, s.SHA256)
	}
	if m.WithActs {
		if err := checkActs(sd.Acts, n*t, m.DSAE); err != nil {
			return nil, err
		}
	}
	return sd, nil
}

// recomputeY fills sd.Y from sd.X through YFromX, in the build's batches
// (rows [k·B, k·B+B) of the whole cache, cut at the shard's ends): GEMMs of
// the shapes the build's forward pass ran, so that y comes out as the
// build computed it, bit for bit, when shards hold whole batches (BLAS
// kernels may round a row by how many rows share its product).
func (c *Cache) recomputeY(sd *ShardData, first int) error {
	m := c.Manifest
	if c.YFromX == nil {
		return fmt.Errorf("actcache: the cache %s stores no y (built with --store-y=false) and nothing was given to compute it from x", c.Dir)
	}
	t, dm := m.ContextLength, m.DModel
	sd.Y = make([]float32, len(sd.X))
	b := max(m.BatchSize, 1)
	for r := 0; r < sd.NSequences; {
		end := min(sd.NSequences, (first+r)/b*b+b-first)
		if err := c.YFromX(sd.X[r*t*dm:end*t*dm], sd.Y[r*t*dm:end*t*dm], (end-r)*t); err != nil {
			return err
		}
		r = end
	}
	return nil
}

// readHeader checks that the file at path is size bytes and returns its
// first bytes up to the end of the safetensors header (the 8-byte length and
// the JSON), which the hash covers before the tensors.
func readHeader(path string, size int64) ([]byte, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, pathless(err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return nil, pathless(err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file")
	}
	if fi.Size() != size {
		return nil, fmt.Errorf("it is %d bytes, the manifest records %d (truncated or rewritten after the build)", fi.Size(), size)
	}
	var lenb [8]byte
	if _, err := io.ReadFull(fh, lenb[:]); err != nil {
		return nil, fmt.Errorf("reading its header length: %w", err)
	}
	hl := binary.LittleEndian.Uint64(lenb[:])
	if hl > safetensors.MaxHeaderSize || hl > uint64(size-8) {
		return nil, fmt.Errorf("header length %d does not fit the %d-byte file", hl, size)
	}
	header := make([]byte, 8+hl)
	copy(header, lenb[:])
	if _, err := io.ReadFull(fh, header[8:]); err != nil {
		return nil, fmt.Errorf("reading its header: %w", err)
	}
	return header, nil
}

// pathless drops the path from an os error: the caller names the shard.
func pathless(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// checkMetadata compares what a shard's safetensors metadata says about it
// with the manifest's description of the cache and of the shard.
func checkMetadata(md map[string]string, m *Manifest, s Shard) error {
	for _, c := range shardMetadata(m, s) {
		got, ok := md[c.key]
		if !ok && c.optional {
			continue
		}
		if !ok {
			return fmt.Errorf("its metadata has no %q (the manifest implies %q)", c.key, c.value)
		}
		if got != c.value {
			return fmt.Errorf("its metadata says %s %q, the manifest %q", c.key, got, c.value)
		}
	}
	return nil
}

// hashChunk is how many bytes decodeHashing hashes before decoding them,
// so that they are decoded while still in the CPU's cache.
const hashChunk = 256 << 10

// decodeHashing writes raw to h and, when w is set, decodes it into w's
// destination, chunk by chunk: each chunk is hashed and then decoded while
// it is still in the CPU's cache. w's dtype is the tensor's.
func decodeHashing(h hash.Hash, raw []byte, w *shardTensor) {
	if w == nil {
		h.Write(raw)
		return
	}
	size := w.dtype.Size()
	n := len(raw) / size
	var decode func(lo, hi int) // elements [lo, hi)
	switch {
	case w.i32 != nil:
		dst := make([]int32, n)
		*w.i32 = dst
		decode = func(lo, hi int) {
			if dtype.LittleEndianHost() {
				copy(dtype.Bytes(dst[lo:hi]), raw[4*lo:4*hi])
				return
			}
			for i := lo; i < hi; i++ {
				dst[i] = int32(binary.LittleEndian.Uint32(raw[4*i:]))
			}
		}
	case w.i64 != nil:
		dst := make([]int64, n)
		*w.i64 = dst
		decode = func(lo, hi int) {
			if dtype.LittleEndianHost() {
				copy(dtype.Bytes(dst[lo:hi]), raw[8*lo:8*hi])
				return
			}
			for i := lo; i < hi; i++ {
				dst[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
			}
		}
	case w.dtype == safetensors.F16:
		dst := make([]float32, n)
		*w.f32 = dst
		decode = func(lo, hi int) {
			for i := lo; i < hi; i++ {
				dst[i] = dtype.Float16ToFloat32(binary.LittleEndian.Uint16(raw[2*i:]))
			}
		}
	default: // F32
		dst := make([]float32, n)
		*w.f32 = dst
		decode = func(lo, hi int) {
			if dtype.LittleEndianHost() {
				copy(dtype.Bytes(dst[lo:hi]), raw[4*lo:4*hi])
				return
			}
			for i := lo; i < hi; i++ {
				dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
			}
		}
	}
	step := max(1, hashChunk/size)
	for lo := 0; lo < n; lo += step {
		hi := min(n, lo+step)
		h.Write(raw[lo*size : hi*size])
		decode(lo, hi)
	}
}

// checkActs checks that a shard's sparse activations of rows rows are a
// well-formed CSR of features in [0, dsae).
func checkActs(a *transcoder.Acts, rows, dsae int) error {
	if len(a.Values) != len(a.Indices) || a.Indptr[0] != 0 || a.Indptr[rows] != int64(len(a.Indices)) {
		return fmt.Errorf("sparse activations are inconsistent (indptr ends at %d, %d indices, %d values)", a.Indptr[rows], len(a.Indices), len(a.Values))
	}
	for r := 0; r < rows; r++ {
		if a.Indptr[r+1] < a.Indptr[r] {
			return fmt.Errorf("acts_indptr decreases at row %d", r)
		}
	}
	for _, idx := range a.Indices {
		if idx < 0 || int(idx) >= dsae {
			return fmt.Errorf("acts_indices holds feature %d outside [0, %d)", idx, dsae)
		}
	}
	return nil
}

// StoresActsOf reports whether the cache stores the sparse activations of
// the transcoder with provenance p (so they can be used instead of
// encoding x).
func (m *Manifest) StoresActsOf(p provenance.File) bool {
	return m.WithActs && m.Transcoder != nil && provenance.Same(*m.Transcoder, p)
}

// CheckModel returns an error when the cache was built from another model
// than the one with provenance p.
func (c *Cache) CheckModel(p provenance.File) error {
	if m := c.Manifest.Model; !provenance.Same(m, p) {
		return fmt.Errorf("the cache %s was built from model %s (sha256 %.12s…), not %s (sha256 %.12s…)", c.Dir, m.Path, m.SHA256, p.Path, p.SHA256)
	}
	return nil
}
