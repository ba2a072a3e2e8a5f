package actcache

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ctxdep/ctxdep/internal/atomicfile"
	"github.com/ctxdep/ctxdep/internal/provenance"
)

// Format and Version identify the manifest; a reader rejects others.
const (
	Format  = "ctxdep-activation-cache"
	Version = 1

	ManifestName = "manifest.json"
)

// Manifest describes a cache (CLI.md, `cache build`).
type Manifest struct {
	Format            string           `json:"format"`
	Version           int              `json:"version"`
	Complete          bool             `json:"complete"` // false while a build is running or was interrupted
	Layer             int              `json:"layer"`
	DModel            int              `json:"d_model"`
	ContextLength     int              `json:"context_length"`
	NSequences        int              `json:"n_sequences"`
	NTokens           int64            `json:"n_tokens"`
	DType             string           `json:"dtype"` // "float32" or "float16"
	Hooks             Hooks            `json:"hooks"`
	SequencesPerShard int              `json:"sequences_per_shard"`
	Shards            []Shard          `json:"shards"`
	WithActs          bool             `json:"with_acts"`
	DSAE              int              `json:"d_sae,omitempty"` // transcoder width when with_acts
	Model             provenance.File  `json:"model"`
	Transcoder        *provenance.File `json:"transcoder"` // the transcoder whose acts are stored; null without --with-acts
	Data              Data             `json:"data"`
	CreatedBy         string           `json:"created_by"`
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
	// Settings that shape the rows from text: shuffle buffer and seed,
	// row length, tokenizer, format. Part of the cache's identity.
	Settings map[string]string `json:"settings,omitempty"`
	// Counts of what a text build read: documents, empty ones, skipped
	// ones by reason, invalid UTF-8 replaced, tokens dropped.
	Counts map[string]int64 `json:"counts,omitempty"`
}

// HookNames returns the TransformerLens names of x and y at layer.
func HookNames(layer int) Hooks {
	return Hooks{X: fmt.Sprintf("blocks.%d.ln2.hook_normalized", layer), Y: fmt.Sprintf("blocks.%d.hook_mlp_out", layer)}
}

// ShardName returns the file name of shard i.
func ShardName(i int) string { return fmt.Sprintf("shard-%05d.safetensors", i) }

// ReadManifest reads and checks dir's manifest.
func ReadManifest(dir string) (*Manifest, error) {
	path := filepath.Join(dir, ManifestName)
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("actcache: %s is not an activation cache (no %s); build one with `ctxdep cache build`", dir, ManifestName)
	}
	if err != nil {
		return nil, fmt.Errorf("actcache: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("actcache: %s: malformed manifest: %w", path, err)
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

func (m *Manifest) check() error {
	if m.DModel <= 0 || m.ContextLength <= 0 || m.Layer < 0 {
		return fmt.Errorf("bad shape: d_model %d, context_length %d, layer %d", m.DModel, m.ContextLength, m.Layer)
	}
	if m.DType != "float32" && m.DType != "float16" {
		return fmt.Errorf("dtype %q is neither float32 nor float16", m.DType)
	}
	n := 0
	for i, s := range m.Shards {
		if s.File != ShardName(i) || s.NSequences <= 0 || s.FirstRow != n {
			return fmt.Errorf("shard list is inconsistent at entry %d (%+v)", i, s)
		}
		n += s.NSequences
	}
	if m.Complete && (n != m.NSequences || m.NTokens != int64(n)*int64(m.ContextLength)) {
		return fmt.Errorf("shards hold %d sequences, manifest says %d sequences and %d tokens", n, m.NSequences, m.NTokens)
	}
	return nil
}

// writeManifest writes m to dir atomically.
func writeManifest(dir string, m *Manifest) error {
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, ManifestName), append(raw, '\n'))
}
