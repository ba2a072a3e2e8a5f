package actcache

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ctxdep/ctxdep/internal/atomicfile"
	"github.com/ctxdep/ctxdep/internal/provenance"
)

// A layer set is the caches of several layers made from one token source
// in one forward pass: a directory with LayerSetName and, for each layer
// L, a subdirectory LayerDirName(L) that is a complete cache of its own
// (manifest, shards), readable by every command and by Python as any
// cache is.
const (
	LayerSetFormat  = "ctxdep-layer-set"
	LayerSetVersion = 1
	LayerSetName    = "layers.json"
)

// LayerSet is layers.json.
type LayerSet struct {
	Format  string `json:"format"`
	Version int    `json:"version"`
	Layers  []int  `json:"layers"` // ascending, distinct
	// Data is the token source every layer's cache shares (its kind,
	// path and SHA-256), as each layer's manifest records it.
	Data      LayerSetData    `json:"data"`
	Model     provenance.File `json:"model"`
	CreatedBy string          `json:"created_by"`
}

// LayerSetData is the token source of a layer set.
type LayerSetData struct {
	Kind string `json:"kind"`
	provenance.File
}

// LayerDirName is the subdirectory of a layer set that holds layer's
// cache: layer-LL, two digits.
func LayerDirName(layer int) string { return fmt.Sprintf("layer-%02d", layer) }

// LayerDir is the directory of layer's cache in the layer set at root.
func LayerDir(root string, layer int) string { return filepath.Join(root, LayerDirName(layer)) }

// IsLayerSet reports whether dir holds a layers.json.
func IsLayerSet(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, LayerSetName))
	return err == nil
}

// ReadLayerSet reads and checks dir's layers.json.
func ReadLayerSet(dir string) (*LayerSet, error) {
	path := filepath.Join(dir, LayerSetName)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("actcache: %w", err)
	}
	var s LayerSet
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("actcache: %s: %w", path, err)
	}
	if s.Format != LayerSetFormat || s.Version != LayerSetVersion {
		return nil, fmt.Errorf("actcache: %s is format %q version %d; this ctxdep reads %q version %d", path, s.Format, s.Version, LayerSetFormat, LayerSetVersion)
	}
	if len(s.Layers) == 0 || !slices.IsSorted(s.Layers) || len(slices.Compact(slices.Clone(s.Layers))) != len(s.Layers) || s.Layers[0] < 0 {
		return nil, fmt.Errorf("actcache: %s lists layers %v: want distinct layers, ascending", path, s.Layers)
	}
	return &s, nil
}

// LayersText writes layers (or any indices: workers, say) as "1, 2, 5".
func LayersText(layers []int) string {
	s := make([]string, len(layers))
	for i, l := range layers {
		s[i] = fmt.Sprint(l)
	}
	return strings.Join(s, ", ")
}

// CreateLayerSet writes dir's layers.json for s, or checks that the one
// there (an earlier run into dir, or another worker's) describes the same
// set: the same layers, token source and model. A set is never changed
// in place: other layers go into another directory.
func CreateLayerSet(dir string, s LayerSet) error {
	s.Format, s.Version = LayerSetFormat, LayerSetVersion
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("actcache: %w", err)
	}
	if IsLayerSet(dir) {
		old, err := ReadLayerSet(dir)
		if err != nil {
			return err
		}
		switch {
		case !slices.Equal(old.Layers, s.Layers):
			return fmt.Errorf("actcache: %s is a layer set of layers %s, not %s: build the other layers into another directory", dir, LayersText(old.Layers), LayersText(s.Layers))
		case old.Data.Kind != s.Data.Kind || !provenance.Same(old.Data.File, s.Data.File):
			return fmt.Errorf("actcache: the layer set %s was built from %s (sha256 %.12s…), not %s (sha256 %.12s…): use another directory", dir, old.Data.Path, old.Data.SHA256, s.Data.Path, s.Data.SHA256)
		case !provenance.Same(old.Model, s.Model):
			return fmt.Errorf("actcache: the layer set %s was built with the model %s (sha256 %.12s…), not %s (sha256 %.12s…): use another directory", dir, old.Model.Path, old.Model.SHA256, s.Model.Path, s.Model.SHA256)
		}
		return nil
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") { // temporary and lock files aside
				return fmt.Errorf("actcache: %s is not empty and holds no layer set (%s): refusing to build a layer set into it", dir, e.Name())
			}
		}
	}
	raw, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, LayerSetName), append(raw, '\n'))
}

// ErrLayerSet is wrapped by OpenLayer's error for a layer set opened
// without a layer, so that commands can turn it into a usage error.
var ErrLayerSet = errors.New("a layer set")

// OpenLayer opens the cache a command's --cache DIR and --layer name: DIR
// itself when it is a cache (its layer must be layer, when layer ≥ 0), or
// DIR/layer-LL when DIR is a layer set (layer < 0 is then an error
// wrapping ErrLayerSet that lists the set's layers).
func OpenLayer(dir string, layer int) (*Cache, error) {
	if !IsLayerSet(dir) {
		return Open(dir)
	}
	s, err := ReadLayerSet(dir)
	if err != nil {
		return nil, err
	}
	if layer < 0 {
		return nil, fmt.Errorf("%s is %w of layers %s: choose one with --layer L, or all with --layers", dir, ErrLayerSet, LayersText(s.Layers))
	}
	if !slices.Contains(s.Layers, layer) {
		return nil, fmt.Errorf("the layer set %s holds layers %s, not layer %d", dir, LayersText(s.Layers), layer)
	}
	return Open(LayerDir(dir, layer))
}

// Containing returns the activation cache or layer set that path is or
// lies inside, looking at path and each of its parents, and whether there
// is one. Commands ask it before writing an output: ctxdep never writes a
// file into a cache (a stray file there would be taken for part of it, or
// lost when the cache is rebuilt).
func Containing(path string) (string, bool) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", false
	}
	for p := abs; ; p = filepath.Dir(p) {
		if IsCacheDir(p) || holdsLayerSet(p) {
			return p, true
		}
		if filepath.Dir(p) == p {
			return "", false
		}
	}
}

// holdsLayerSet reports whether dir's layers.json is a layer set's (its
// format says so): IsLayerSet, without taking another tool's file of that
// name, in some parent directory, for one.
func holdsLayerSet(dir string) bool {
	raw, err := os.ReadFile(filepath.Join(dir, LayerSetName))
	if err != nil {
		return false
	}
	var head struct {
		Format string `json:"format"`
	}
	return json.Unmarshal(raw, &head) == nil && head.Format == LayerSetFormat
}

// CheckOutside returns an error when path is an activation cache or a
// layer set or lies inside one (Containing); what names the path in the
// message ("--out fit-l8"). An empty path (no --out given) passes: the
// command's own usage error says what is missing.
func CheckOutside(what, path string) error {
	if path == "" {
		return nil
	}
	c, ok := Containing(path)
	if !ok {
		return nil
	}
	if abs, err := filepath.Abs(path); err == nil && abs == c {
		return fmt.Errorf("%s is an activation cache: ctxdep never writes into a cache, even with --force; choose a new path", what)
	}
	return fmt.Errorf("%s is inside the activation cache %s: ctxdep never writes into a cache, even with --force; choose a path outside it", what, c)
}
