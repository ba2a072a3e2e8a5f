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
// what it means, for messages. An optional key is written by this ctxdep
// and checked when present, but shards written before it existed lack it.
type metaEntry struct {
	key, value, what string
	optional         bool
}

// shardMetadata returns the metadata of shard s of the cache m describes,
// the build's settings key aside: what WriteShard writes and the checks of
// a shard compare.
func shardMetadata(m *Manifest, s Shard) []metaEntry {
	md := []metaEntry{
		{key: metaFormat, value: Format + "-shard", what: "format"},
		{key: "layer", value: strconv.Itoa(m.Layer), what: "layer"},
		{key: "x", value: m.Hooks.X, what: "x hook"},
		{key: "y", value: m.Hooks.Y, what: "y hook"},
	}
	if m.YRecomputed {
		md = append(md, metaEntry{key: "y_stored", value: "false", what: "y stored"})
	}
	md = append(md, []metaEntry{
		{key: metaFirstRow, value: strconv.Itoa(s.FirstRow), what: "first row"},
	}...)
	if m.WithActs {
		md = append(md, metaEntry{key: "nnz", value: strconv.FormatInt(s.NNZ, 10), what: "nnz"},
			// The transcoder's width, for readers of a shard alone (the CSR
			// indices are below it).
			metaEntry{key: "d_sae", value: strconv.Itoa(m.DSAE), what: "d_sae", optional: true})
	}
	return md
}
