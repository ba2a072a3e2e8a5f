package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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

// repoIDRe matches a hub repository id with an optional revision:
// OWNER/NAME or OWNER/NAME@REV.
var repoIDRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+(@[A-Za-z0-9_./-]+)?$`)

// localOrRepo resolves the value of a path flag (or its environment
// variable): a path that exists is used as it is; one that does not and
// reads as OWNER/NAME[@REV] is looked up in the hub cache, without the
// network (`ctxdep download` or huggingface_hub fetch it there).
func localOrRepo(flag, v string) (string, error) {
	if _, err := os.Stat(v); err == nil || !repoIDRe.MatchString(v) {
		return v, nil
	}
	repo, rev, _ := strings.Cut(v, "@")
	d, err := hub.Snapshot(repo, rev)
	if err != nil {
		what, fetch := repo, "huggingface-cli download "+repo
		switch repo {
		case modelRepo:
			fetch = "ctxdep download model"
		case transcodersRepo:
			fetch = "ctxdep download transcoders"
		}
		if rev != "" {
			what += " at revision " + rev
			fetch += " --revision " + rev
		}
		where := "the working directory"
		if wd, err := os.Getwd(); err == nil {
			where = wd
		}
		return "", fmt.Errorf("%s %s: no such file or directory (relative paths start at %s); read as a hub repository id, %s is not in the hub cache %s either (fetch it with `%s`)", flag, v, where, what, hub.CacheDir(), fetch)
	}
	return d, nil
}

// modelDir resolves --model: the flag, $CTXDEP_MODEL, the cache's record,
// or the hub cache. The flag and the variable may name a hub repository,
// OWNER/NAME[@REV], found in the hub cache.
func (g *globalOptions) modelDir() (string, error) {
	if g.model != "" {
		return modelDirFrom("--model", g.model)
	}
	if d := os.Getenv("CTXDEP_MODEL"); d != "" {
		return modelDirFrom("$CTXDEP_MODEL", d)
	}
	if r := g.recorded; r != nil && r.model.Path != "" {
		if r.modelDir != "" {
			return r.modelDir, nil
		}
		ok, err := g.checkRecorded(r.model, "model", "--model DIR")
		if err != nil {
			return "", err
		}
		if ok {
			r.modelDir = filepath.Dir(r.model.Path)
			g.notef("model: %s, as recorded in the cache %s", displayPath(r.model.Path), displayPath(r.dir))
			return r.modelDir, nil
		}
		// Gone: the default lookup below, which CheckModel holds to the
		// recorded hash.
		if d, err := hubModel(); err == nil {
			return d, nil
		}
		return "", fmt.Errorf("the cache %s was built from the model %s, which is no longer there: pass --model DIR (or set $CTXDEP_MODEL) with the same weights (sha256 %.12s…)", displayPath(r.dir), r.model.Path, r.model.SHA256)
	}
	if d, err := hubModel(); err == nil {
		return d, nil
	}
	return "", fmt.Errorf("no GPT-2 checkpoint found: pass --model DIR or set $CTXDEP_MODEL (a directory with config.json and model.safetensors), or download %s into the Hugging Face cache (%s)", modelRepo, hub.CacheDir())
}

// modelDirFrom resolves the model directory flag (or variable) names as v:
// a local directory, or a hub repository. A file, or a path that is not
// there, is an error that says what --model takes.
func modelDirFrom(flag, v string) (string, error) {
	d, err := localOrRepo(flag, v)
	if err != nil {
		return "", err
	}
	const takes = "a GPT-2 checkpoint's directory: config.json plus model.safetensors or pytorch_model.bin"
	fi, err := os.Stat(d)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("%s %s: no such directory (%s takes %s)", flag, v, flag, takes)
	case err != nil:
		return "", fmt.Errorf("%s %s: %w", flag, v, err)
	case !fi.IsDir():
		return "", fmt.Errorf("%s %s is a file: %s takes %s (here perhaps %s)", flag, v, flag, takes, filepath.Dir(v))
	}
	return d, nil
}

// hubModel returns the snapshot of GPT-2 in the hub cache.
func hubModel() (string, error) {
	var err error
	for _, repo := range []string{modelRepo, "gpt2"} {
		var d string
		if d, err = hub.Snapshot(repo, ""); err == nil {
			return d, nil
		}
	}
	return "", err
}

// recordedInputs is what a cache's manifest records about the model and
// transcoder it was built from.
type recordedInputs struct {
	dir        string // the cache
	layer      int
	model      provenance.File
	transcoder *provenance.File // nil unless the cache stores acts
	modelDir   string           // the recorded model's directory, once checked
}

// hashMemo is a file's provenance as hashed at a size and modification
// time.
type hashMemo struct {
	prov  provenance.File
	size  int64
	mtime time.Time
}

// hash returns the provenance of path, hashing it only once per command
// (the cache's recorded inputs are checked before they are loaded) and,
// through the hash cache, only once while it is unchanged.
func (g *globalOptions) hash(path string) (provenance.File, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	st, err := os.Stat(abs)
	if err != nil {
		return provenance.File{}, err
	}
	if m, ok := g.hashes[abs]; ok && m.size == st.Size() && m.mtime.Equal(st.ModTime()) {
		return m.prov, nil
	}
	p, err := provenance.NewHashCache(hashCachePath()).Hash(abs)
	if err != nil {
		return provenance.File{}, err
	}
	if g.hashes == nil {
		g.hashes = map[string]hashMemo{}
	}
	g.hashes[abs] = hashMemo{prov: p, size: st.Size(), mtime: st.ModTime()}
	return p, nil
}

// hashCachePath is the file that remembers the SHA-256 of unchanged
// inputs across runs: $CTXDEP_HASH_CACHE, "" (no cache) when that is off,
// by default hashes.json in the user's cache directory.
func hashCachePath() string {
	switch v := os.Getenv("CTXDEP_HASH_CACHE"); strings.ToLower(v) {
	case "":
		return provenance.DefaultHashCachePath()
	case "off", "0", "false", "no":
		return ""
	default:
		return v
	}
}

// checkRecorded checks an input file the cache recorded: true when it is
// still there with the recorded content, false when it is gone, and an
// error naming flag when it is there with other content.
func (g *globalOptions) checkRecorded(rec provenance.File, what, flag string) (bool, error) {
	if _, err := os.Stat(rec.Path); err != nil {
		return false, nil
	}
	p, err := g.hash(rec.Path)
	if err != nil {
		return false, fmt.Errorf("%s recorded in the cache %s: %w", what, displayPath(g.recorded.dir), err)
	}
	if !provenance.Same(p, rec) {
		return false, fmt.Errorf("the %s %s changed since the cache %s was built (sha256 %.12s…, recorded %.12s…): pass %s with the cache's %s", what, rec.Path, displayPath(g.recorded.dir), p.SHA256, rec.SHA256, flag, what)
	}
	return true, nil
}

// loadModel loads and processes the whole model and hashes its weights
// file.
func (g *globalOptions) loadModel() (*gpt2.Model, provenance.File, error) {
	return g.loadModelFor(gpt2.All())
}

// loadModelFor loads and processes the parts of the model a command needs
// (gpt2.Through(L) for a forward pass to block L, gpt2.MLP(L) for block
// L's MLP alone) and hashes its weights file. A model loaded before that
// holds them is reused; one that holds less is not.
func (g *globalOptions) loadModelFor(need gpt2.Parts) (*gpt2.Model, provenance.File, error) {
	dir, err := g.modelDir()
	if err != nil {
		return nil, provenance.File{}, err
	}
	for _, l := range g.models {
		if l.dir == dir && l.m.Has(need) {
			return l.m, l.prov, nil
		}
	}
	start := time.Now()
	m, err := gpt2.LoadParts(dir, need)
	if err != nil {
		return nil, provenance.File{}, err
	}
	loaded := time.Since(start)
	path, _ := gpt2.WeightsPath(dir)
	p, err := g.hash(path)
	if err != nil {
		return nil, provenance.File{}, fmt.Errorf("gpt2: %w", err)
	}
	what := "the whole model"
	if !m.Whole() {
		what = m.Loaded.String()
	}
	g.logf("model %s: %d layers, d_model %d, vocab %d (%s loaded and processed in %v, hashed in %v)", path, m.NLayer, m.DModel, m.DVocab,
		what, loaded.Round(time.Millisecond), (time.Since(start) - loaded).Round(time.Millisecond))
	if g.models == nil {
		g.models = map[string]loadedModel{}
	}
	g.models[dir+"\x00"+what] = loadedModel{m, p, dir}
	return m, p, nil
}

// loadModelThrough loads what a forward pass through the deepest of
// layers needs: the embeddings and blocks 0..max(layers).
func (g *globalOptions) loadModelThrough(layers ...int) (*gpt2.Model, provenance.File, error) {
	if len(layers) == 0 {
		return g.loadModel()
	}
	return g.loadModelFor(gpt2.Through(slices.Max(layers)))
}

// loadMLP loads block layer's MLP alone, and W_U when unembed is set.
func (g *globalOptions) loadMLP(layer int, unembed bool) (*gpt2.Model, provenance.File, error) {
	need := gpt2.MLP(layer)
	need.Unembed = unembed
	return g.loadModelFor(need)
}

// loadedModel is a model loadModelFor has loaded, its provenance and
// directory. g.models holds them by directory and parts loaded.
type loadedModel struct {
	m    *gpt2.Model
	prov provenance.File
	dir  string
}

// errNoTranscoder means no transcoder was named or found; callers for whom
// the transcoder is optional check for it.
var errNoTranscoder = errors.New("no transcoder")

// transcoderFiles resolves the transcoder for layer: --transcoder FILE, or
// the file for the layer in --transcoders, $CTXDEP_TRANSCODERS or the hub
// cache. sparsity is "" when no sparsity file sits next to it.
func (g *globalOptions) transcoderFiles(layer int) (model, sparsity string, err error) {
	if g.transcoder != "" {
		path := g.transcoder
		if transcoder.IsSAELensDir(path) {
			path = filepath.Join(path, transcoder.SAELensWeights)
		}
		return path, sparsityNextTo(path), nil
	}
	dir := g.transcoders
	if dir == "" {
		dir = os.Getenv("CTXDEP_TRANSCODERS")
	}
	if r := g.recorded; dir == "" && r != nil && r.transcoder != nil && r.layer == layer {
		ok, err := g.checkRecorded(*r.transcoder, "transcoder", "--transcoder FILE or --transcoders DIR")
		if err != nil {
			return "", "", err
		}
		if ok {
			g.notef("transcoder: %s, as recorded in the cache %s", displayPath(r.transcoder.Path), displayPath(r.dir))
			return r.transcoder.Path, sparsityNextTo(r.transcoder.Path), nil
		}
		if d, err := hub.Snapshot(transcodersRepo, ""); err == nil {
			return transcoder.Find(d, layer)
		}
		return "", "", fmt.Errorf("%w: the cache %s stores the acts of the transcoder %s, which is no longer there: pass --transcoder FILE or --transcoders DIR (or set $CTXDEP_TRANSCODERS)", errNoTranscoder, displayPath(r.dir), r.transcoder.Path)
	}
	if dir != "" {
		flag := "--transcoders"
		if g.transcoders == "" {
			flag = "$CTXDEP_TRANSCODERS"
		}
		if dir, err = localOrRepo(flag, dir); err != nil {
			return "", "", err
		}
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

// sparsityNextTo returns the sparsity file next to the transcoder file
// path, "" when there is none.
func sparsityNextTo(path string) string {
	if transcoder.IsSAELens(path) {
		return transcoder.SAELensSparsityNextTo(path)
	}
	sparsity := strings.TrimSuffix(path, ".pt") + "_log_feature_sparsity.pt"
	if _, err := os.Stat(sparsity); err != nil {
		return ""
	}
	return sparsity
}

// loadTranscoder loads the transcoder for layer and checks it against the
// model width dModel (0 skips the check).
func (g *globalOptions) loadTranscoder(layer, dModel int) (*transcoder.Transcoder, provenance.File, string, error) {
	path, sparsity, err := g.transcoderFiles(layer)
	if err != nil {
		return nil, provenance.File{}, "", err
	}
	// A command that runs layer after layer (report --layers --evaluate)
	// may ask for a layer's transcoder twice in a row; only the last one is
	// kept, so that a sweep over 12 layers does not hold all 12.
	if l := g.lastTC; l.tc != nil && l.path == path && l.layer == layer && (dModel <= 0 || l.tc.DIn == dModel) {
		return l.tc, l.prov, sparsity, nil
	}
	tc, err := transcoder.Load(path)
	if err != nil {
		return nil, provenance.File{}, "", err
	}
	if tc.Layer >= 0 && tc.Layer != layer {
		return nil, provenance.File{}, "", fmt.Errorf("transcoder %s was trained on layer %d (%s), not layer %d", filepath.Base(path), tc.Layer, tc.HookPoint, layer)
	}
	if tc.Threshold != nil && g.backend != nil && !g.backend.cpu() {
		return nil, provenance.File{}, "", usagef("transcoder %s is a JumpReLU transcoder, which runs on --device cpu only", displayPath(path))
	}
	if dModel > 0 && tc.DIn != dModel {
		return nil, provenance.File{}, "", fmt.Errorf("transcoder %s has d_in %d, but the model's d_model is %d", path, tc.DIn, dModel)
	}
	p, err := g.hash(path)
	if err != nil {
		return nil, provenance.File{}, "", fmt.Errorf("transcoder: %w", err)
	}
	g.logf("transcoder %s: %d features, d_in %d", path, tc.DSAE, tc.DIn)
	g.lastTC = loadedTranscoder{tc, p, path, layer}
	return tc, p, sparsity, nil
}

// loadedTranscoder is a transcoder loadTranscoder has loaded for a layer.
type loadedTranscoder struct {
	tc    *transcoder.Transcoder
	prov  provenance.File
	path  string
	layer int
}

// openCacheAt opens the cache in dir and checks an explicit --layer
// against the layer it holds: a usage error (exit 2) in every command. It
// remembers the model and transcoder the manifest records: modelDir and
// transcoderFiles use them when no flag or environment variable names
// others, if they are still there with the recorded content.
func (g *globalOptions) openCacheAt(dir string, layerSet bool) (*actcache.Cache, error) {
	layer := -1 // a layer set needs --layer; a lone cache is its own layer
	if layerSet {
		layer = g.layer
		if actcache.IsLayerSet(dir) {
			if s, err := actcache.ReadLayerSet(dir); err == nil && !slices.Contains(s.Layers, layer) {
				return nil, usagef("--layer %d: the layer set %s holds layers %s", layer, dir, actcache.LayersText(s.Layers))
			}
		}
	}
	c, err := actcache.OpenLayer(dir, layer)
	if errors.Is(err, actcache.ErrLayerSet) {
		return nil, usageError{err}
	}
	if err != nil {
		return nil, err
	}
	if layerSet && g.layer != c.Manifest.Layer {
		return nil, usagef("--layer %d, but the cache %s holds layer %d", g.layer, dir, c.Manifest.Layer)
	}
	if c.Manifest.YRecomputed {
		c.YFromX = g.yFromX(c)
	}
	m := c.Manifest
	g.recorded = &recordedInputs{dir: dir, layer: m.Layer, model: m.Model, transcoder: m.Transcoder}
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
