package actcache

import (
	"strconv"

	"github.com/ctxdep/ctxdep/internal/safetensors"
)

// shardTensors returns the tensors, in file order, of a shard of n
// sequences with nnz stored activations in the cache m describes: what
// WriteShard writes, and what ReadShard and the writer's checks of
// existing shards expect.
func shardTensors(m *Manifest, n int, nnz int64) []safetensors.TensorInfo {
	t, c, dt := m.ContextLength, m.DModel, StorageDType(m.DType)
	infos := []safetensors.TensorInfo{
		{Name: "tokens", DType: safetensors.I32, Shape: []int{n, t}},
		{Name: "x", DType: dt, Shape: []int{n, t, c}},
	}
	if !m.YRecomputed {
		infos = append(infos, safetensors.TensorInfo{Name: "y", DType: dt, Shape: []int{n, t, c}})
	}
	if m.WithScale {
		infos = append(infos, safetensors.TensorInfo{Name: "scale", DType: safetensors.F32, Shape: []int{n, t}})
	}
	if m.WithActs {
		infos = append(infos,
			safetensors.TensorInfo{Name: "acts_indptr", DType: safetensors.I64, Shape: []int{n*t + 1}},
			safetensors.TensorInfo{Name: "acts_indices", DType: safetensors.I32, Shape: []int{int(nnz)}},
			safetensors.TensorInfo{Name: "acts_values", DType: safetensors.F32, Shape: []int{int(nnz)}})
	}
	return infos
}

// metaEntry is one key of a shard's safetensors metadata: its value and
// what it means, for messages.
type metaEntry struct{ key, value, what string }

// shardMetadata returns the metadata of shard s of the cache m describes,
// the build's settings key aside: what WriteShard writes and the checks of
// a shard compare.
func shardMetadata(m *Manifest, s Shard) []metaEntry {
	md := []metaEntry{
		{metaFormat, Format + "-shard", "format"},
		{"layer", strconv.Itoa(m.Layer), "layer"},
		{"x", m.Hooks.X, "x hook"},
		{"y", m.Hooks.Y, "y hook"},
	}
	if m.YRecomputed {
		md = append(md, metaEntry{"y_stored", "false", "y stored"})
	}
	md = append(md, []metaEntry{
		{metaFirstRow, strconv.Itoa(s.FirstRow), "first row"},
	}...)
	if m.WithActs {
		md = append(md, metaEntry{"nnz", strconv.FormatInt(s.NNZ, 10), "nnz"})
	}
	return md
}
