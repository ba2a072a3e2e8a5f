package actcache

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/safetensors"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// Cache is a complete activation cache opened for reading.
type Cache struct {
	Dir      string
	Manifest *Manifest
}

// Open opens the cache in dir. An interrupted build is an error that says
// how to finish it.
func Open(dir string) (*Cache, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	if !m.Complete {
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
	Acts       *transcoder.Acts
}

// ReadShard reads and checks shard i; x and y are converted to float32.
func (c *Cache) ReadShard(i int) (*ShardData, error) {
	m := c.Manifest
	s := m.Shards[i]
	path := filepath.Join(c.Dir, s.File)
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("actcache: %w", err)
	}
	defer f.Close()
	n, t, d := s.NSequences, m.ContextLength, m.DModel
	dt := StorageDType(m.DType)
	want := map[string]struct {
		dtype safetensors.DType
		shape []int
	}{
		"tokens": {safetensors.I32, []int{n, t}},
		"x":      {dt, []int{n, t, d}},
		"y":      {dt, []int{n, t, d}},
	}
	if m.WithActs {
		want["acts_indptr"] = struct {
			dtype safetensors.DType
			shape []int
		}{safetensors.I64, []int{n*t + 1}}
	}
	for name, w := range want {
		info, ok := f.Tensor(name)
		if !ok {
			return nil, fmt.Errorf("actcache: %s: no tensor %q", path, name)
		}
		if info.DType != w.dtype || !slices.Equal(info.Shape, w.shape) {
			return nil, fmt.Errorf("actcache: %s: tensor %q is %s %v, the manifest implies %s %v", path, name, info.DType, info.Shape, w.dtype, w.shape)
		}
	}
	sd := &ShardData{NSequences: n}
	if sd.Tokens, err = f.Int32("tokens"); err != nil {
		return nil, fmt.Errorf("actcache: %w", err)
	}
	if sd.X, err = f.Float32("x"); err != nil {
		return nil, fmt.Errorf("actcache: %w", err)
	}
	if sd.Y, err = f.Float32("y"); err != nil {
		return nil, fmt.Errorf("actcache: %w", err)
	}
	if m.WithActs {
		if sd.Acts, err = readActs(f, n*t, m.DSAE); err != nil {
			return nil, fmt.Errorf("actcache: %s: %w", path, err)
		}
	}
	return sd, nil
}

func readActs(f *safetensors.File, rows, dsae int) (*transcoder.Acts, error) {
	a := &transcoder.Acts{}
	var err error
	if a.Indptr, err = f.Int64("acts_indptr"); err != nil {
		return nil, err
	}
	if a.Indices, err = f.Int32("acts_indices"); err != nil {
		return nil, err
	}
	if a.Values, err = f.Float32("acts_values"); err != nil {
		return nil, err
	}
	if len(a.Values) != len(a.Indices) || a.Indptr[0] != 0 || a.Indptr[rows] != int64(len(a.Indices)) {
		return nil, fmt.Errorf("sparse activations are inconsistent (indptr ends at %d, %d indices, %d values)", a.Indptr[rows], len(a.Indices), len(a.Values))
	}
	for r := 0; r < rows; r++ {
		if a.Indptr[r+1] < a.Indptr[r] {
			return nil, fmt.Errorf("acts_indptr decreases at row %d", r)
		}
	}
	for _, idx := range a.Indices {
		if idx < 0 || int(idx) >= dsae {
			return nil, fmt.Errorf("acts_indices holds feature %d outside [0, %d)", idx, dsae)
		}
	}
	return a, nil
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
