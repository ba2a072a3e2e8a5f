package actcache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/safetensors"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// Metadata keys of each shard's safetensors header.
const (
	metaFormat   = "format"
	metaSettings = "ctxdep_settings"
	metaFirstRow = "first_row"
)

// Writer builds a cache shard by shard, resuming a build that was
// interrupted with the same settings.
type Writer struct {
	dir      string
	man      Manifest
	key      string
	open     bool             // the rows are not known until the input ends (Data.ToEnd)
	kept     []*Shard         // per shard index: the complete shard on disk, or nil
	recorded map[string]Shard // shards the earlier run's manifest lists, by file name
	repair   []string         // shards on disk that do not match that record: rewritten
}

// settingsKey hashes what determines a cache's content (not paths, not
// progress): two builds with the same key write identical shards.
func settingsKey(m *Manifest) string {
	id := struct {
		Layer, DModel, T, PerShard, DSAE int
		DType                            string
		WithActs                         bool
		Model, Transcoder, Data          string
		Rows, FirstRow, RowsTaken        int
		Format                           string
		DataSettings                     map[string]string
		Worker                           *Worker `json:",omitempty"` // absent: single-machine keys stay as they were
		BatchSize                        int     `json:",omitempty"` // absent in caches from before batch grids
		ToEnd                            bool    `json:",omitempty"`
	}{BatchSize: m.BatchSize, Layer: m.Layer, DModel: m.DModel, T: m.ContextLength, PerShard: m.SequencesPerShard, DSAE: m.DSAE,
		DType: m.DType, WithActs: m.WithActs, Model: m.Model.SHA256, Data: m.Data.SHA256,
		Rows: m.Data.Rows, FirstRow: m.Data.FirstRow, RowsTaken: m.Data.RowsTaken, ToEnd: m.Data.ToEnd, Format: Format + "/" + strconv.Itoa(Version), DataSettings: m.Data.Settings, Worker: m.Worker}
	if m.Transcoder != nil {
		id.Transcoder = m.Transcoder.SHA256
	}
	if m.Data.ToEnd {
		id.Rows, id.RowsTaken = 0, 0 // counted as the build goes
	}
	raw, _ := json.Marshal(id)
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:16])
}

// Create prepares dir for the build that man describes (its Shards and
// Complete fields are ignored). Complete shards from an earlier run with the
// same settings are kept; a directory holding a cache built with other
// settings is an error, and nothing in it is touched. A shard that the
// earlier run's manifest lists but that no longer matches its recorded hash
// (truncated or corrupted on disk) is rewritten.
//
// With man.Worker set, the writer is one worker of a sharded build: it
// caches the worker's range of rows (man's NSequences and the Data row
// fields are set from it), names its files with WorkerShardName and
// WorkerManifestName, and never writes the cache's manifest.json.
func Create(dir string, man Manifest) (*Writer, error) {
	if wk := man.Worker; wk != nil {
		if err := wk.check(); err != nil {
			return nil, fmt.Errorf("actcache: %w", err)
		}
		man.Data.FirstRow, man.Data.RowsTaken = wk.Range()
		man.NSequences = man.Data.RowsTaken
	}
	open := man.Data.ToEnd && man.Worker == nil
	if open {
		man.NSequences, man.Data.Rows, man.Data.RowsTaken = 0, 0, 0
	}
	if man.SequencesPerShard <= 0 || (man.NSequences <= 0 && !open) || man.BatchSize < 0 {
		return nil, fmt.Errorf("actcache: nothing to write (%d sequences, %d per shard, batches of %d)", man.NSequences, man.SequencesPerShard, man.BatchSize)
	}
	man.Format, man.Version, man.Complete, man.Shards, man.Workers = Format, Version, false, nil, 0
	man.NTokens = int64(man.NSequences) * int64(man.ContextLength)
	w := &Writer{dir: dir, man: man, key: settingsKey(&man), open: open}
	w.kept = make([]*Shard, (man.NSequences+man.SequencesPerShard-1)/man.SequencesPerShard)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("actcache: %w", err)
	}
	// The earlier run's manifest: checkLayout has read manifest.json, a
	// single-machine build's own; a worker keeps its own file.
	old, err := w.checkLayout()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, man.fileName())
	if man.Worker != nil {
		if old, err = ReadManifestFile(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err // a manifest we cannot read: do not overwrite it
		}
	}
	if old != nil {
		if settingsKey(old) != w.key {
			return nil, fmt.Errorf("actcache: %s holds a cache built with other settings or inputs than this run's (%s); use the same settings to resume it, another --out, or remove it", path, orUnknown(differences(&w.man, old)))
		}
		w.recorded = map[string]Shard{}
		for _, s := range old.Shards {
			w.recorded[s.File] = s
		}
		if w.open && old.Complete {
			// Read to its end before: the rows are known now.
			w.open = false
			w.man.NSequences, w.man.NTokens, w.man.Data.Rows, w.man.Data.RowsTaken = old.NSequences, old.NTokens, old.Data.Rows, old.Data.RowsTaken
			w.kept = make([]*Shard, len(old.Shards))
		}
	}
	if w.open {
		// The complete shards an earlier run left, in order, up to the
		// first missing one or the short one the input ended with.
		for i := 0; ; i++ {
			s, err := w.existing(i)
			if err != nil {
				return nil, err
			}
			if s == nil {
				break
			}
			w.kept = append(w.kept, s)
			if s.NSequences < man.SequencesPerShard {
				break
			}
		}
		return w, nil
	}
	for i := range w.kept {
		s, err := w.existing(i)
		if err != nil {
			return nil, err
		}
		w.kept[i] = s
	}
	return w, nil
}

// checkLayout refuses to mix a single-machine build and the workers of a
// sharded one, or workers of different counts, in one directory: their
// files would not add up to one cache. It returns the directory's
// manifest.json, nil when there is none; a manifest.json it cannot read is
// an error, so that it is not overwritten.
func (w *Writer) checkLayout() (*Manifest, error) {
	names, err := workerManifests(w.dir)
	if err != nil {
		return nil, fmt.Errorf("actcache: %w", err)
	}
	merged, err := ReadManifestFile(filepath.Join(w.dir, ManifestName))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	wk := w.man.Worker
	if wk == nil {
		if len(names) > 0 {
			return nil, fmt.Errorf("actcache: %s holds the shards of a sharded build (%s…): run its workers with --shard i/N, or use another --out", w.dir, names[0])
		}
		if merged != nil && merged.Workers > 0 {
			return nil, fmt.Errorf("actcache: %s holds a cache merged from %d workers: rerun a worker with --shard i/%d, or use another --out", w.dir, merged.Workers, merged.Workers)
		}
		return merged, nil
	}
	if merged != nil && merged.Workers == 0 {
		return nil, fmt.Errorf("actcache: %s holds a single-machine cache: a sharded build needs another --out", w.dir)
	}
	if merged != nil && merged.Workers != wk.Count {
		return nil, fmt.Errorf("actcache: %s holds a cache merged from %d workers, and this is worker %d of %d: the worker count cannot change between runs; rerun with --shard %d/%d, or use another --out", w.dir, merged.Workers, wk.Index, wk.Count, wk.Index, merged.Workers)
	}
	for _, name := range names {
		if _, n, _ := parseWorkerManifestName(name); n != wk.Count {
			return nil, fmt.Errorf("actcache: %s holds %s, written by a build with %d workers, and this is worker %d of %d: the worker count cannot change between runs; rerun every worker with --shard i/%d, or use another --out (or remove the %d-worker files)", w.dir, name, n, wk.Index, wk.Count, n, n)
		}
	}
	return merged, nil
}

// existing checks shard i on disk: absent → nil; written by this build's
// settings → its description; listed by the earlier manifest but no longer
// matching its hash → nil (it is rewritten); anything else → an error.
func (w *Writer) existing(i int) (*Shard, error) {
	name := w.man.shardName(i)
	path := filepath.Join(w.dir, name)
	first, n := w.ShardRows(i)
	if rec, ok := w.recorded[name]; ok {
		p, err := provenance.Hash(path)
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("actcache: %w", err)
		}
		if p.SHA256 == rec.SHA256 && p.Size == rec.Bytes && rec.FirstRow == first && (rec.NSequences == n || w.open && rec.NSequences > 0 && rec.NSequences < n) {
			s := rec
			return &s, nil
		}
		w.repair = append(w.repair, name)
		return nil, nil
	}
	f, err := safetensors.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("actcache: existing shard is unreadable (remove it to rebuild it): %w", err)
	}
	md := f.Metadata()
	if tok, ok := f.Tensor("tokens"); ok && w.open && len(tok.Shape) == 2 && tok.Shape[0] > 0 && tok.Shape[0] < n {
		n = tok.Shape[0] // the short shard the input ended with
	}
	f.Close()
	if md[metaSettings] != w.key || md[metaFirstRow] != strconv.Itoa(first) {
		return nil, fmt.Errorf("actcache: %s was written by a build with other settings; use another --out or remove it", path)
	}
	p, err := provenance.Hash(path)
	if err != nil {
		return nil, fmt.Errorf("actcache: %w", err)
	}
	nnz, _ := strconv.ParseInt(md["nnz"], 10, 64)
	return &Shard{File: name, NSequences: n, FirstRow: first, Bytes: p.Size, SHA256: p.SHA256, NNZ: nnz}, nil
}

// Repaired returns the shards that an earlier run left but that no longer
// match the hash its manifest recorded; this run rewrites them.
func (w *Writer) Repaired() []string { return w.repair }

// ManifestPath returns the path of the manifest the writer keeps: the
// cache's, or the worker's.
func (w *Writer) ManifestPath() string { return filepath.Join(w.dir, w.man.fileName()) }

// Rows returns the input rows [first, first+n) that the writer's shards
// hold: the whole cache's, or the worker's. n is -1 while a build that
// reads its input to the end (Data.ToEnd) has not ended.
func (w *Writer) Rows() (first, n int) {
	if w.open {
		return w.man.Data.FirstRow, -1
	}
	return w.man.Data.FirstRow, w.man.NSequences
}

// NumShards returns how many shards the cache will have; -1 while that is
// not known (see Rows).
func (w *Writer) NumShards() int {
	if w.open {
		return -1
	}
	return len(w.kept)
}

// ShardRows returns the range [first, first+n) of input rows that shard i
// holds; while the rows are not known (see Rows), n is the most it may
// hold.
func (w *Writer) ShardRows(i int) (first, n int) {
	off := i * w.man.SequencesPerShard
	if w.open {
		return w.man.Data.FirstRow + off, w.man.SequencesPerShard
	}
	return w.man.Data.FirstRow + off, min(w.man.SequencesPerShard, w.man.NSequences-off)
}

// NumKept returns how many shards an earlier run left complete.
func (w *Writer) NumKept() int {
	n := 0
	for _, s := range w.kept {
		if s != nil {
			n++
		}
	}
	return n
}

// Has reports whether shard i is already complete on disk.
func (w *Writer) Has(i int) bool { return i < len(w.kept) && w.kept[i] != nil }

// WriteShard writes shard i: tokens (S_i·T), x and y (S_i·T·C), and acts
// (S_i·T rows) when the cache stores them. The file appears only when
// complete; the manifest then lists it. While the rows are not known (see
// Rows), shards are written in order and only the last may be short.
func (w *Writer) WriteShard(i int, tokens []int32, x, y []float32, acts *transcoder.Acts) error {
	first, n := w.ShardRows(i)
	t, c := w.man.ContextLength, w.man.DModel
	if w.open {
		if i != len(w.kept) || len(tokens) == 0 || len(tokens) > n*t {
			panic(fmt.Sprintf("actcache: shard %d of %d tokens written after %d shards", i, len(tokens), len(w.kept)))
		}
		if k := len(w.kept); k > 0 && w.kept[k-1].NSequences < n {
			panic(fmt.Sprintf("actcache: shard %d written after the short shard %d", i, k-1))
		}
		n = len(tokens) / t
	}
	if len(tokens) != n*t || len(x) != n*t*c || len(y) != n*t*c {
		panic(fmt.Sprintf("actcache: shard %d: got %d tokens, %d x, %d y for %d sequences", i, len(tokens), len(x), len(y), n))
	}
	if (acts != nil) != w.man.WithActs || (acts != nil && acts.Rows() != n*t) {
		panic(fmt.Sprintf("actcache: shard %d: acts do not match the manifest", i))
	}
	dt := StorageDType(w.man.DType)
	infos := []safetensors.TensorInfo{
		{Name: "tokens", DType: safetensors.I32, Shape: []int{n, t}},
		{Name: "x", DType: dt, Shape: []int{n, t, c}},
		{Name: "y", DType: dt, Shape: []int{n, t, c}},
	}
	md := map[string]string{
		metaFormat: Format + "-shard", metaSettings: w.key, metaFirstRow: strconv.Itoa(first),
		"layer": strconv.Itoa(w.man.Layer), "x": w.man.Hooks.X, "y": w.man.Hooks.Y,
	}
	var nnz int64
	if acts != nil {
		nnz = int64(len(acts.Indices))
		md["nnz"] = strconv.FormatInt(nnz, 10)
		infos = append(infos,
			safetensors.TensorInfo{Name: "acts_indptr", DType: safetensors.I64, Shape: []int{n*t + 1}},
			safetensors.TensorInfo{Name: "acts_indices", DType: safetensors.I32, Shape: []int{int(nnz)}},
			safetensors.TensorInfo{Name: "acts_values", DType: safetensors.F32, Shape: []int{int(nnz)}})
	}
	name := w.man.shardName(i)
	path := filepath.Join(w.dir, name)
	sw, err := safetensors.Create(path, infos, md)
	if err != nil {
		return fmt.Errorf("actcache: %w", err)
	}
	err = sw.WriteInt32(tokens)
	if err == nil {
		err = sw.WriteFloat32(x)
	}
	if err == nil {
		err = sw.WriteFloat32(y)
	}
	if err == nil && acts != nil {
		if err = sw.WriteInt64(acts.Indptr); err == nil {
			if err = sw.WriteInt32(acts.Indices); err == nil {
				err = sw.WriteFloat32(acts.Values)
			}
		}
	}
	if err != nil {
		sw.Abort()
		return fmt.Errorf("actcache: %w", err)
	}
	if err := sw.Close(); err != nil {
		return fmt.Errorf("actcache: %w", err)
	}
	// The writer hashed the bytes as it wrote them: no second read of the shard.
	size, sum := sw.Sum()
	if i == len(w.kept) {
		w.kept = append(w.kept, nil) // a build that reads its input to the end
	}
	w.kept[i] = &Shard{File: name, NSequences: n, FirstRow: first, Bytes: size, SHA256: sum, NNZ: nnz}
	return w.writeManifest(false)
}

// writeManifest lists the complete prefix of shards.
func (w *Writer) writeManifest(complete bool) error {
	m := w.man
	m.Complete = complete
	m.Shards = nil
	for _, s := range w.kept {
		if s == nil {
			break
		}
		m.Shards = append(m.Shards, *s)
	}
	if err := writeManifest(w.dir, &m); err != nil {
		return fmt.Errorf("actcache: %s: %w", w.ManifestPath(), err)
	}
	return nil
}

// SetDataCounts records what the build read from its input, for the
// manifest that Finish writes.
func (w *Writer) SetDataCounts(c map[string]int64) { w.man.Data.Counts = c }

// Finish marks the cache complete. Every shard must have been written or
// kept; a build that read its input to the end records the rows it holds.
func (w *Writer) Finish() error {
	if w.open {
		n := 0
		for _, s := range w.kept {
			n += s.NSequences
		}
		if n == 0 {
			return fmt.Errorf("actcache: the input holds no rows")
		}
		w.man.NSequences, w.man.Data.Rows, w.man.Data.RowsTaken = n, n, n
		w.man.NTokens = int64(n) * int64(w.man.ContextLength)
		w.open = false
	}
	for i, s := range w.kept {
		if s == nil {
			return fmt.Errorf("actcache: shard %d was never written", i)
		}
	}
	return w.writeManifest(true)
}
