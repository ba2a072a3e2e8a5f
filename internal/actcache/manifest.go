package actcache

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ctxdep/ctxdep/internal/atomicfile"
	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/safetensors"
)

// Format and Version identify the manifest; a reader rejects others.
const (
	Format  = "ctxdep-activation-cache"
	Version = 1

	ManifestName = "manifest.json"
)

// Manifest describes a cache (README, "The activation cache").
type Manifest struct {
	Format            string `json:"format"`
	Version           int    `json:"version"`
	Complete          bool   `json:"complete"` // false while a build is running or was interrupted
	Layer             int    `json:"layer"`
	DModel            int    `json:"d_model"`
	ContextLength     int    `json:"context_length"`
	NSequences        int    `json:"n_sequences"`
	NTokens           int64  `json:"n_tokens"`
	DType             string `json:"dtype"` // "float32" or "float16"
	Hooks             Hooks  `json:"hooks"`
	SequencesPerShard int    `json:"sequences_per_shard"`
	// BatchSize is the rows per forward pass of the build, part of the
	// cache's identity: row r is computed in the batch of rows
	// [⌊r/B⌋·B, min(⌊r/B⌋·B+B, R)) of the build's R rows (BatchGrid), on
	// one machine and sharded alike, so that every row comes out bit for
	// bit the same. 0 in a manifest written before ctxdep recorded it.
	BatchSize int     `json:"batch_size,omitempty"`
	Shards    []Shard `json:"shards"`
	WithActs  bool    `json:"with_acts"`
	// YRecomputed marks a cache whose shards hold no y (cache build
	// --store-y=false): a reader computes y = MLP_L(x), the layer's
	// processed MLP applied to the stored x, through Cache.YFromX.
	YRecomputed bool `json:"y_recomputed,omitempty"`
	// WithScale marks a cache whose shards hold blocks.L.ln2.hook_scale,
	// the LayerNorm scale of each token (a layer set's caches do): what
	// ctxdep connections divides by.
	WithScale  bool             `json:"with_scale,omitempty"`
	DSAE       int              `json:"d_sae,omitempty"` // transcoder width when with_acts
	Model      provenance.File  `json:"model"`
	Transcoder *provenance.File `json:"transcoder"` // the transcoder whose acts are stored; null without --with-acts
	Data       Data             `json:"data"`
	CreatedBy  string           `json:"created_by"`
	// Worker is set in the manifest of one worker of a sharded build
	// (WorkerManifestName), absent otherwise.
	Worker *Worker `json:"worker,omitempty"`
	// Workers is set in a merged manifest: how many workers wrote the
	// shards it lists (0 for a single-machine build).
	Workers int `json:"workers,omitempty"`
}

// Worker identifies one of the workers of a sharded build (README,
// "Caching on a cluster"): worker Index of Count caches input rows
// [⌊Index·TotalRows/Count⌋, ⌊(Index+1)·TotalRows/Count⌋). It computes
// them in the build's batches (BatchGrid), whole, as a single-machine
// build does: a batch that straddles two workers' ranges is computed by
// both, each keeping its own rows.
type Worker struct {
	Index     int `json:"index"`
	Count     int `json:"count"`
	TotalRows int `json:"total_rows"` // rows split among all workers: [0, TotalRows) of the input
}

// Range returns the input rows [first, first+n) that worker w caches.
func (w Worker) Range() (first, n int) {
	lo := int(int64(w.Index) * int64(w.TotalRows) / int64(w.Count))
	hi := int(int64(w.Index+1) * int64(w.TotalRows) / int64(w.Count))
	return lo, hi - lo
}

// MaxWorkers is the most workers a sharded build may have: worker numbers
// take five digits in the file names.
const MaxWorkers = 99999

// maxTotalRows bounds the rows of a build far above any real one, so that
// Range's arithmetic cannot overflow.
const maxTotalRows = 1 << 46

// check reports whether w is a worker of a build that gives every one of
// its workers at least one row.
func (w Worker) check() error {
	switch {
	case w.Count < 1 || w.Count > MaxWorkers:
		return fmt.Errorf("worker count %d is not in 1..%d", w.Count, MaxWorkers)
	case w.Index < 0 || w.Index >= w.Count:
		return fmt.Errorf("worker index %d is not in 0..%d", w.Index, w.Count-1)
	case w.TotalRows < 1 || w.TotalRows > maxTotalRows:
		return fmt.Errorf("%d rows cannot be split among workers", w.TotalRows)
	case w.TotalRows < w.Count:
		return fmt.Errorf("%d workers for %d rows would leave workers without rows: use at most %d workers", w.Count, w.TotalRows, w.TotalRows)
	}
	return nil
}

// BatchGrid is how a build of Rows rows cuts them into forward passes:
// batch k holds rows [k·Size, min(k·Size+Size, Rows)). The grid starts at
// the build's row 0 and ignores shards and workers: whoever writes a row
// computes the whole batch that holds it. That is what makes a row's bits
// independent of how the build is split into shards, workers and resumed
// runs: BLAS kernels round a row differently depending on how many rows
// share its GEMM and where it falls among them.
type BatchGrid struct{ Rows, Size int }

// Len returns the number of batches.
func (g BatchGrid) Len() int { return (g.Rows + g.Size - 1) / g.Size }

// Batch returns the rows [first, first+n) of batch k.
func (g BatchGrid) Batch(k int) (first, n int) {
	first = k * g.Size
	return first, min(g.Size, g.Rows-first)
}

// Hooks names the TransformerLens hooks of x and y.
type Hooks struct {
	X string `json:"x"`
	Y string `json:"y"`
}

// Shard describes one shard file.
type Shard struct {
	File       string `json:"file"`
	NSequences int    `json:"n_sequences"`
	FirstRow   int    `json:"first_row"` // index of its first sequence in the input
	Bytes      int64  `json:"bytes"`
	SHA256     string `json:"sha256"`
	NNZ        int64  `json:"nnz,omitempty"` // stored active features, with acts
}

// Data describes where the tokens came from.
type Data struct {
	Kind string `json:"kind"` // "tokens-npy"
	provenance.File
	Rows      int `json:"rows"`       // sequences in the input (for text: the rows asked for)
	FirstRow  int `json:"first_row"`  // first input row cached
	RowsTaken int `json:"rows_taken"` // rows cached (n_sequences)
	// ToEnd marks a build that cached its input to the end, its rows not
	// counted in advance (a text corpus without --n-tokens): Rows and
	// RowsTaken are set when it ends, and are not part of its identity.
	ToEnd bool `json:"to_end,omitempty"`
	// Settings that shape the rows from text: shuffle buffer and seed,
	// row length, tokenizer, format. Part of the cache's identity.
	Settings map[string]string `json:"settings,omitempty"`
	// Counts of what a text build read: documents, empty ones, skipped
	// ones by reason, invalid UTF-8 replaced, tokens dropped.
	Counts map[string]int64 `json:"counts,omitempty"`
}

// StorageDType returns the safetensors dtype that x and y are stored in for
// the manifest dtype s ("float16", else "float32").
func StorageDType(s string) safetensors.DType {
	if s == "float16" {
		return safetensors.F16
	}
	return safetensors.F32
}

// Bytes returns the size of the shards m lists.
func (m *Manifest) Bytes() int64 {
	var n int64
	for _, s := range m.Shards {
		n += s.Bytes
	}
	return n
}

// HookNames returns the TransformerLens names of x and y at layer.
func HookNames(layer int) Hooks {
	return Hooks{X: fmt.Sprintf("blocks.%d.ln2.hook_normalized", layer), Y: fmt.Sprintf("blocks.%d.hook_mlp_out", layer)}
}

// ShardName returns the file name of shard i of a single-machine build.
func ShardName(i int) string { return fmt.Sprintf("shard-%05d.safetensors", i) }

// WorkerShardName returns the file name of shard i of worker w of n: the
// worker index and count in the name keep workers that share a directory
// from colliding, and keep builds with different worker counts apart.
func WorkerShardName(w, n, i int) string {
	return fmt.Sprintf("w%05d-of-%05d-shard-%05d.safetensors", w, n, i)
}

// WorkerManifestName returns the file name of worker w of n's manifest.
func WorkerManifestName(w, n int) string { return fmt.Sprintf("worker-%05d-of-%05d.json", w, n) }

// ParseWorkerShardName returns the worker index and count in a name made by
// WorkerShardName.
func ParseWorkerShardName(name string) (w, n int, ok bool) {
	var i int
	k, err := fmt.Sscanf(name, "w%05d-of-%05d-shard-%05d.safetensors", &w, &n, &i)
	return w, n, err == nil && k == 3 && name == WorkerShardName(w, n, i)
}

// parseWorkerManifestName returns the worker index and count in a name made
// by WorkerManifestName.
func parseWorkerManifestName(name string) (w, n int, ok bool) {
	k, err := fmt.Sscanf(name, "worker-%05d-of-%05d.json", &w, &n)
	return w, n, err == nil && k == 2 && name == WorkerManifestName(w, n) && n > 0 && w < n
}

// shardName returns the file name of shard i of the build m describes.
func (m *Manifest) shardName(i int) string {
	if w := m.Worker; w != nil {
		return WorkerShardName(w.Index, w.Count, i)
	}
	return ShardName(i)
}

// WorkerLockName returns the name of the lock file that worker w of n
// holds while it runs (see internal/dirlock); a single-machine build and
// merge hold the directory's, dirlock.Name.
func WorkerLockName(w, n int) string { return fmt.Sprintf(".ctxdep-worker-%05d-of-%05d.lock", w, n) }

// parseWorkerLockName returns the worker index and count in a name made by
// WorkerLockName.
func parseWorkerLockName(name string) (w, n int, ok bool) {
	k, err := fmt.Sscanf(name, ".ctxdep-worker-%05d-of-%05d.lock", &w, &n)
	return w, n, err == nil && k == 2 && name == WorkerLockName(w, n)
}

// isCacheFile reports whether name is the name of a file that a build or
// merge writes in a cache directory: a manifest (the cache's or a
// worker's) or a shard (of a single-machine build or a worker).
func isCacheFile(name string) bool {
	if name == ManifestName {
		return true
	}
	if _, _, ok := parseWorkerManifestName(name); ok {
		return true
	}
	if _, _, ok := ParseWorkerShardName(name); ok {
		return true
	}
	var i int
	k, err := fmt.Sscanf(name, "shard-%05d.safetensors", &i)
	return err == nil && k == 1 && name == ShardName(i)
}

// IsCacheDir reports whether dir holds an activation cache or part of one
// (a manifest.json of this format, a worker's manifest or a shard), for
// commands that must never write a file there.
func IsCacheDir(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		name := e.Name()
		if name == ManifestName {
			raw, err := os.ReadFile(filepath.Join(dir, name))
			var head struct {
				Format string `json:"format"`
			}
			if err == nil && json.Unmarshal(raw, &head) == nil && head.Format == Format {
				return true
			}
			continue
		}
		if isCacheFile(name) {
			return true
		}
		if _, _, ok := parseWorkerLockName(name); ok {
			return true
		}
	}
	return false
}

// fileName returns the name of the manifest file of the build m describes.
func (m *Manifest) fileName() string {
	if w := m.Worker; w != nil {
		return WorkerManifestName(w.Index, w.Count)
	}
	return ManifestName
}

// safeName reports whether name is a plain file name inside the cache
// directory (no separator, not "." or "..").
func safeName(name string) bool {
	return name != "" && name != "." && name != ".." && !strings.ContainsAny(name, "/\\\x00") && filepath.Base(name) == name
}

// ReadManifest reads and checks dir's manifest.
func ReadManifest(dir string) (*Manifest, error) {
	path := filepath.Join(dir, ManifestName)
	m, err := ReadManifestFile(path)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		if names, _ := workerManifests(dir); len(names) > 0 {
			return nil, fmt.Errorf("actcache: %s holds the shards of a sharded build but no %s: run `ctxdep cache merge %s` once every worker is done", dir, ManifestName, dir)
		}
		return nil, missingManifest(dir)
	}
	if err == nil && m.Worker != nil {
		return nil, fmt.Errorf("actcache: %s: a worker's manifest stands in for the cache's; run `ctxdep cache merge %s`", path, dir)
	}
	return m, err
}

// ReadManifestFile reads and checks one manifest file (the cache's or a
// worker's). A missing file is an error that wraps os.ErrNotExist.
func ReadManifestFile(path string) (*Manifest, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("actcache: %w", err)
	}
	return parseManifest(path, raw)
}

// damagedError is an error about a manifest file that was truncated or
// edited; its text ends with what writes the file again (damagedAdvice).
type damagedError string

func (e damagedError) Error() string { return string(e) }

// damagedf returns the damagedError about the manifest file at path: what
// is wrong, then how to mend it.
func damagedf(path, format string, a ...any) error {
	return damagedError(fmt.Sprintf("actcache: %s: %s; %s", path, fmt.Sprintf(format, a...), damagedAdvice(path)))
}

// damagedAdvice says what writes the manifest file at path again: a
// worker's rerun for a worker's manifest, a merge for a sharded build's
// manifest.json, else the build's rerun, which computes the shards that
// no manifest lists again and keeps those whose bytes match.
func damagedAdvice(path string) string {
	dir, base := filepath.Split(path)
	dir = filepath.Clean(dir)
	if i, n, ok := parseWorkerManifestName(base); ok {
		return fmt.Sprintf("remove it and rerun worker %d with the same flags and --shard %d/%d, which computes its shards again and keeps those whose bytes match", i, i, n)
	}
	if names, _ := workerManifests(dir); len(names) > 0 {
		return fmt.Sprintf("remove it and run `ctxdep cache merge %s`, which writes it again from the workers' manifests", dir)
	}
	return "restore it, or remove it and rerun the same `ctxdep cache build`, which computes the shards again and keeps those whose bytes match"
}

// parseManifest parses and checks the manifest file at path, whose bytes
// are raw.
func parseManifest(path string, raw []byte) (*Manifest, error) {
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, damagedf(path, "malformed manifest (%v): it was truncated or edited", err)
	}
	// A field that is absent would read as its zero value (a manifest
	// without "layer" as layer 0): every field that ctxdep has always
	// written must be there.
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, damagedf(path, "malformed manifest (%v): it was truncated or edited", err)
	}
	for _, k := range requiredFields {
		if v, ok := fields[k]; !ok || string(v) == "null" {
			what := "has no"
			if ok {
				what = "has a null"
			}
			return nil, damagedf(path, "the manifest %s %q, which every cache manifest has: it was edited or truncated", what, k)
		}
	}
	if m.Format != Format {
		return nil, fmt.Errorf("actcache: %s: format %q is not %q", path, m.Format, Format)
	}
	if m.Version != Version {
		return nil, fmt.Errorf("actcache: %s: version %d is not supported (this ctxdep reads version %d); rebuild the cache with `ctxdep cache build`", path, m.Version, Version)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("actcache: %s: %w", path, err)
	}
	return &m, nil
}

// requiredFields are the manifest's keys that ctxdep has written since the
// format's first version; parseManifest refuses a manifest without one.
var requiredFields = []string{"format", "version", "complete", "layer", "d_model", "context_length", "n_sequences", "n_tokens", "dtype", "shards"}

func (m *Manifest) check() error {
	switch {
	case m.DModel <= 0:
		return fmt.Errorf("d_model is %d; it must be positive", m.DModel)
	case m.ContextLength <= 0:
		return fmt.Errorf("context_length is %d; it must be positive", m.ContextLength)
	case m.Layer < 0:
		return fmt.Errorf("layer is %d; it must be 0 or more", m.Layer)
	case m.NSequences < 0:
		return fmt.Errorf("n_sequences is %d; it must be 0 or more", m.NSequences)
	}
	if m.DType != "float32" && m.DType != "float16" {
		return fmt.Errorf("dtype %q is neither float32 nor float16", m.DType)
	}
	if m.BatchSize < 0 {
		return fmt.Errorf("batch_size %d is negative", m.BatchSize)
	}
	if w := m.Worker; w != nil {
		if err := w.check(); err != nil {
			return fmt.Errorf("worker: %w", err)
		}
		if m.Workers != 0 {
			return fmt.Errorf("a worker's manifest says it merged %d workers", m.Workers)
		}
		if first, n := w.Range(); m.Data.FirstRow != first || m.Data.RowsTaken != n || m.NSequences != n {
			return fmt.Errorf("worker %d of %d caches rows [%d, %d) of %d, but the manifest says data.first_row %d, data.rows_taken %d, n_sequences %d",
				w.Index, w.Count, first, first+n, w.TotalRows, m.Data.FirstRow, m.Data.RowsTaken, m.NSequences)
		}
	}
	if m.Workers < 0 {
		return fmt.Errorf("workers %d is negative", m.Workers)
	}
	// Shards hold consecutive input rows from the first cached one. A
	// merged manifest lists the workers' files, so only their names'
	// safety and uniqueness are checked there.
	n := m.Data.FirstRow
	seen := map[string]bool{}
	for i, s := range m.Shards {
		entry := fmt.Sprintf("shard entry %d (%q)", i, s.File)
		switch {
		case m.Workers == 0 && s.File != m.shardName(i):
			return fmt.Errorf("%s: file must be %q, the name of shard %d", entry, m.shardName(i), i)
		case m.Workers > 0 && (!safeName(s.File) || !strings.HasSuffix(s.File, ".safetensors")):
			return fmt.Errorf("%s: file must be a .safetensors file directly in the cache directory", entry)
		case seen[s.File]:
			return fmt.Errorf("%s: file is listed twice", entry)
		case s.NSequences <= 0:
			return fmt.Errorf("%s: n_sequences is %d; it must be positive", entry, s.NSequences)
		case s.NSequences > maxTotalRows:
			return fmt.Errorf("%s: n_sequences is %d, more than any cache holds", entry, s.NSequences)
		case s.FirstRow != n:
			return fmt.Errorf("%s: first_row is %d, but the shards before it end at row %d", entry, s.FirstRow, n)
		case s.Bytes < 0:
			return fmt.Errorf("%s: bytes is %d; it must not be negative", entry, s.Bytes)
		}
		seen[s.File] = true
		n += s.NSequences
	}
	n -= m.Data.FirstRow
	if m.Complete && (n != m.NSequences || m.NTokens != int64(n)*int64(m.ContextLength)) {
		return fmt.Errorf("shards hold %d sequences, manifest says %d sequences and %d tokens", n, m.NSequences, m.NTokens)
	}
	return nil
}

// encodeManifest returns the bytes of m's manifest file.
func encodeManifest(m *Manifest) ([]byte, error) {
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(raw, '\n'), nil
}

// writeManifest writes m to dir atomically, under the cache's or the
// worker's manifest name.
func writeManifest(dir string, m *Manifest) error {
	raw, err := encodeManifest(m)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, m.fileName()), raw)
}

// workerManifests returns the names of the worker manifests in dir, sorted.
func workerManifests(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if _, _, ok := parseWorkerManifestName(e.Name()); ok && e.Type().IsRegular() {
			names = append(names, e.Name())
		}
	}
	return names, nil
}
