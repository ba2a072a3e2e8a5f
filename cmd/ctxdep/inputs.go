package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/hub"
	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// Hub repositories of the default inputs.
const (
	modelRepo       = "openai-community/gpt2"
	transcodersRepo = "pchlenski/gpt2-transcoders"
)

// modelDir resolves --model: the flag, $CTXDEP_MODEL, or the hub cache.
func (g *globalOptions) modelDir() (string, error) {
	if g.model != "" {
		return g.model, nil
	}
	if d := os.Getenv("CTXDEP_MODEL"); d != "" {
		return d, nil
	}
	for _, repo := range []string{modelRepo, "gpt2"} {
		if d, err := hub.Snapshot(repo, ""); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("no GPT-2 checkpoint found: pass --model DIR or set $CTXDEP_MODEL (a directory with config.json and model.safetensors), or download %s into the Hugging Face cache (%s)", modelRepo, hub.CacheDir())
}

// loadModel loads and processes the model and hashes its weights file.
func (g *globalOptions) loadModel() (*gpt2.Model, provenance.File, error) {
	dir, err := g.modelDir()
	if err != nil {
		return nil, provenance.File{}, err
	}
	start := time.Now()
	m, err := gpt2.Load(dir)
	if err != nil {
		return nil, provenance.File{}, err
	}
	path, _ := gpt2.WeightsPath(dir)
	p, err := provenance.Hash(path)
	if err != nil {
		return nil, provenance.File{}, fmt.Errorf("gpt2: %w", err)
	}
	g.logf("model %s: %d layers, d_model %d, vocab %d (loaded and processed in %v)", path, m.NLayer, m.DModel, m.DVocab, time.Since(start).Round(time.Millisecond))
	return m, p, nil
}

// errNoTranscoder means no transcoder was named or found; callers for whom
// the transcoder is optional check for it.
var errNoTranscoder = errors.New("no transcoder")

// transcoderFiles resolves the transcoder for layer: --transcoder FILE, or
// the file for the layer in --transcoders, $CTXDEP_TRANSCODERS or the hub
// cache. sparsity is "" when no sparsity file sits next to it.
func (g *globalOptions) transcoderFiles(layer int) (model, sparsity string, err error) {
	if g.transcoder != "" {
		sparsity = strings.TrimSuffix(g.transcoder, ".pt") + "_log_feature_sparsity.pt"
		if _, err := os.Stat(sparsity); err != nil {
			sparsity = ""
		}
		return g.transcoder, sparsity, nil
	}
	dir := g.transcoders
	if dir == "" {
		dir = os.Getenv("CTXDEP_TRANSCODERS")
	}
	if dir == "" {
		d, err := hub.Snapshot(transcodersRepo, "")
		if err != nil {
			return "", "", fmt.Errorf("%w: pass --transcoder FILE or --transcoders DIR, or set $CTXDEP_TRANSCODERS (%s is not in %s)", errNoTranscoder, transcodersRepo, hub.CacheDir())
		}
		dir = d
	}
	return transcoder.Find(dir, layer)
}

// loadTranscoder loads the transcoder for layer and checks it against the
// model width dModel (0 skips the check).
func (g *globalOptions) loadTranscoder(layer, dModel int) (*transcoder.Transcoder, provenance.File, string, error) {
	path, sparsity, err := g.transcoderFiles(layer)
	if err != nil {
		return nil, provenance.File{}, "", err
	}
	tc, err := transcoder.Load(path)
	if err != nil {
		return nil, provenance.File{}, "", err
	}
	if tc.Layer >= 0 && tc.Layer != layer {
		return nil, provenance.File{}, "", fmt.Errorf("transcoder %s was trained on layer %d (%s), not layer %d", filepath.Base(path), tc.Layer, tc.HookPoint, layer)
	}
	if dModel > 0 && tc.DIn != dModel {
		return nil, provenance.File{}, "", fmt.Errorf("transcoder %s has d_in %d, but the model's d_model is %d", path, tc.DIn, dModel)
	}
	p, err := provenance.Hash(path)
	if err != nil {
		return nil, provenance.File{}, "", fmt.Errorf("transcoder: %w", err)
	}
	g.logf("transcoder %s: %d features, d_in %d", path, tc.DSAE, tc.DIn)
	return tc, p, sparsity, nil
}

// openCacheAt opens the cache in dir and checks an explicit --layer
// against the layer it holds: a usage error (exit 2) in every command.
func (g *globalOptions) openCacheAt(dir string, layerSet bool) (*actcache.Cache, error) {
	c, err := actcache.Open(dir)
	if err != nil {
		return nil, err
	}
	if layerSet && g.layer != c.Manifest.Layer {
		return nil, usagef("--layer %d, but the cache %s holds layer %d", g.layer, dir, c.Manifest.Layer)
	}
	return c, nil
}

// modelConfig reads the shapes of the model --model names from its
// config.json, without its weights: what commands check their flags
// against before loading the model. Its errors are loadModel's.
func (g *globalOptions) modelConfig() (gpt2.Config, error) {
	dir, err := g.modelDir()
	if err != nil {
		return gpt2.Config{}, err
	}
	return gpt2.ReadConfig(filepath.Join(dir, "config.json"))
}

// checkLayer checks a --layer against the model: a usage error (exit 2)
// that names the model's layers.
func checkLayer(m *gpt2.Model, layer int) error {
	if err := m.CheckLayer(layer); err != nil {
		return usagef("--%v", err)
	}
	return nil
}
