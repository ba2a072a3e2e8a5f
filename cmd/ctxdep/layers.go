package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/provenance"
)

// parseLayerList parses a --layers value against a model of nLayers
// blocks: "all", or comma-separated layers and ranges ("2,3", "0-11",
// "0-3,8"). The result is ascending and without repeats.
func parseLayerList(s string, nLayers int) ([]int, error) {
	bad := func(why string) error {
		return usagef("--layers %q: %s (want e.g. 8, 2,3, 0-11 or all; the model has layers 0..%d)", s, why, nLayers-1)
	}
	s = strings.TrimSpace(s)
	if s == "all" {
		out := make([]int, nLayers)
		for i := range out {
			out[i] = i
		}
		return out, nil
	}
	if s == "" {
		return nil, bad("empty")
	}
	var out []int
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(strings.TrimSpace(lo))
		if err != nil {
			return nil, bad(fmt.Sprintf("%q is not a layer", part))
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(strings.TrimSpace(hi)); err != nil || b < a {
				return nil, bad(fmt.Sprintf("%q is not a range", part))
			}
		}
		if a < 0 || b >= nLayers {
			return nil, bad(fmt.Sprintf("%s is outside the model's layers", part))
		}
		for l := a; l <= b; l++ {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// eachCache calls fn with root when root is a cache (or a sharded build),
// or with each layer's cache in turn when root is a layer set, stopping at
// the first error. label is "" for a lone cache and " layer-LL" for a
// layer of a set, for progress lines. With --json a set's run prints one
// document (layerDocs), also after an error.
func (g *globalOptions) eachCache(root string, fn func(dir, label string) error) error {
	if !actcache.IsLayerSet(root) {
		return fn(root, "")
	}
	s, err := actcache.ReadLayerSet(root)
	if err != nil {
		return err
	}
	d := &layerDocs{}
	for _, l := range s.Layers {
		if err = g.runLayer(d, l, func() error { return fn(actcache.LayerDir(root, l), " "+actcache.LayerDirName(l)) }); err != nil {
			break
		}
	}
	return g.printLayerDocs(d, nil, err)
}

// layerDocs gathers, with --json, the JSON document each layer of a
// multi-layer run prints, so that the run prints one document, as --json
// promises: {"layers": [L, ...], "results": [layer L's document, ...]}.
type layerDocs struct {
	layers []int
	docs   []json.RawMessage
}

// runLayer runs fn, layer l's work; with --json, what it prints on
// g.stdout is kept in d as layer l's document instead.
func (g *globalOptions) runLayer(d *layerDocs, l int, fn func() error) error {
	if !g.json {
		return fn()
	}
	var buf bytes.Buffer
	stdout := g.stdout
	g.stdout = &buf
	err := fn()
	g.stdout = stdout
	if err != nil {
		return err // what it printed before failing is not its result
	}
	if doc := bytes.TrimSpace(buf.Bytes()); len(doc) > 0 {
		if !json.Valid(doc) { // two documents, or text
			return fmt.Errorf("internal error: layer %d printed %d bytes that are not one JSON document", l, len(doc))
		}
		d.layers, d.docs = append(d.layers, l), append(d.docs, doc)
	}
	return nil
}

// printLayerDocs prints d as one document, with extra's keys added, when
// --json is given and the run succeeded (runErr nil) or some layers
// finished before it failed (their results are not lost); it returns
// runErr, else the printing's error.
func (g *globalOptions) printLayerDocs(d *layerDocs, extra map[string]any, runErr error) error {
	if !g.json || (runErr != nil && len(d.docs) == 0) {
		return runErr
	}
	doc := map[string]any{"layers": d.layers, "results": d.docs}
	if d.layers == nil {
		doc["layers"], doc["results"] = []int{}, []json.RawMessage{}
	}
	maps.Copy(doc, extra)
	if err := json.NewEncoder(g.stdout).Encode(doc); runErr == nil {
		return err
	}
	return runErr
}

// layerList resolves a command's --layers: "all" is every layer of the
// layer set --cache names (or of the model, without a set); a list is
// checked against the model's layers (and the set's, when the layers'
// caches are opened).
func (g *globalOptions) layerList(spec, cache string) ([]int, error) {
	if cache != "" && actcache.IsLayerSet(cache) {
		s, err := actcache.ReadLayerSet(cache)
		if err != nil {
			return nil, err
		}
		if strings.TrimSpace(spec) == "all" {
			return s.Layers, nil
		}
		layers, err := parseLayerList(spec, s.Layers[len(s.Layers)-1]+1)
		if err != nil {
			return nil, err
		}
		for _, l := range layers {
			if !slices.Contains(s.Layers, l) {
				return nil, usagef("--layers %s: the layer set %s holds layers %s, not %d", spec, cache, actcache.LayersText(s.Layers), l)
			}
		}
		return layers, nil
	}
	if cache != "" {
		if m, err := actcache.ReadManifestFile(filepath.Join(cache, actcache.ManifestName)); err == nil {
			// A one-layer cache is a set of its own layer; the layers are
			// checked against the model it was built with, as its run
			// resolves it.
			if g.recorded == nil {
				g.recorded = &recordedInputs{dir: cache, layer: m.Layer, model: m.Model, transcoder: m.Transcoder}
			}
			if strings.TrimSpace(spec) == "all" {
				return []int{m.Layer}, nil
			}
			mc, err := g.modelConfig()
			if err != nil {
				return nil, err
			}
			layers, err := parseLayerList(spec, mc.NLayer)
			if err != nil {
				return nil, err
			}
			for _, l := range layers {
				if l != m.Layer {
					return nil, usagef("--layers %s: the cache %s holds layer %d only (a layer set from cache build --layers holds several)", spec, cache, m.Layer)
				}
			}
			return layers, nil
		}
	}
	mc, err := g.modelConfig()
	if err != nil {
		return nil, err
	}
	return parseLayerList(spec, mc.NLayer)
}

// eachLayer runs fn for each of layers in turn with g.layer set to it, so
// that --cache SET opens SET/layer-LL and the transcoder is the layer's;
// the model is loaded once (loadModel keeps it). A heading line starts
// each layer's output; with --json, the layers' documents are gathered in
// the layerDocs returned, for the caller's printLayerDocs.
func (g *globalOptions) eachLayer(layers []int, fn func(layer int) error) (*layerDocs, error) {
	d := &layerDocs{}
	for i, l := range layers {
		g.layer = l
		if !g.json {
			fmt.Fprintf(g.stdout, "== layer %d (%d of %d)\n", l, i+1, len(layers))
		}
		if err := g.runLayer(d, l, func() error { return fn(l) }); err != nil {
			return d, fmt.Errorf("layer %d: %w", l, err)
		}
	}
	return d, nil
}

// layerFile is the file of layer inside path, an output of a command run
// with --layers: a fit's PATH/layer-LL/midcoder.safetensors, or
// pinv-baseline's PATH/layer-LL.safetensors. A path that is a file is
// returned as it is (one file for one layer).
func layerFile(path string, layer int) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return path, nil
	}
	for _, cand := range []string{
		filepath.Join(path, actcache.LayerDirName(layer), midcoder.ResultFile),
		filepath.Join(path, actcache.LayerDirName(layer)+".safetensors"),
	} {
		if _, err := os.Stat(cand); err == nil {
			return cand, nil
		}
	}
	return "", fmt.Errorf("%s holds no midcoder for layer %d (neither %s/%s nor %s.safetensors)", path, layer, actcache.LayerDirName(layer), midcoder.ResultFile, actcache.LayerDirName(layer))
}

// addLayersFlag adds --layers to cmd; set names the argument that gives
// the layer set ("--cache", "DIR"), what says what each layer's run
// writes.
func addLayersFlag(cmd *cobra.Command, p *string, set, what string) {
	cmd.Flags().StringVar(p, "layers", "", "run for each of these layers in turn (e.g. 2,3, 0-11 or all: every layer of the\nlayer set "+set+" names), loading the model once; "+what)
}

// layerFlags refuses --layer and --layers together (a usage error).
func layerFlags(cmd *cobra.Command, spec string) error {
	if spec != "" && cmd.Flags().Changed("layer") {
		return usagef("give --layer L (one layer) or --layers LIST (several), not both")
	}
	return nil
}

// withLayers runs run once, as the command's --layer says (layerSet: the
// flag was given), or, with --layers spec, once per layer (layerSet true,
// g.layer the layer). --layer and --layers together are a usage error.
func (g *globalOptions) withLayers(cmd *cobra.Command, spec, cache string, run func(layerSet bool, layer int) error) error {
	return g.withLayersChecked(cmd, spec, cache, nil, run, nil)
}

// withLayersChecked is withLayers that, with --layers, first calls check
// (when not nil) on every layer, so that a layer's output that cannot be
// written is refused before any layer's work, and once every layer ran,
// finish (when not nil), before the layers' documents are printed.
func (g *globalOptions) withLayersChecked(cmd *cobra.Command, spec, cache string, check func(layer int) error, run func(layerSet bool, layer int) error, finish func() error) error {
	if spec == "" {
		return run(cmd.Flags().Changed("layer"), g.layer)
	}
	if err := layerFlags(cmd, spec); err != nil {
		return err
	}
	layers, err := g.layerList(spec, cache)
	if err != nil {
		return err
	}
	if check != nil {
		for _, l := range layers {
			if err := check(l); err != nil {
				return fmt.Errorf("layer %d: %w", l, err)
			}
		}
	}
	d, err := g.eachLayer(layers, func(l int) error { return run(true, l) })
	if err == nil && finish != nil {
		if err = finish(); err != nil {
			return err // the layers' documents describe what finish did not do
		}
	}
	return g.printLayerDocs(d, nil, err)
}

// yFromX is the Cache.YFromX of c, a cache that stores no y: the model's
// processed MLP of c's layer. The model is loaded on first use (commands
// have loaded it by then; loadModel keeps it) and checked against the
// model c was built with.
func (g *globalOptions) yFromX(c *actcache.Cache) func(x, y []float32, rows int) error {
	var (
		once   sync.Once
		model  *gpt2.Model
		err    error
		mu     sync.Mutex // the hidden activations' buffer, reused across calls
		hidden []float32
	)
	return func(x, y []float32, rows int) error {
		once.Do(func() {
			var prov provenance.File
			if model, prov, err = g.loadMLP(c.Manifest.Layer, false); err != nil {
				err = fmt.Errorf("the cache %s stores no y, which is computed from x by the model's MLP: %w", c.Dir, err)
				return
			}
			if err = c.CheckModel(prov); err == nil && model.DModel != c.Manifest.DModel {
				err = fmt.Errorf("the cache %s has d_model %d, the model %d", c.Dir, c.Manifest.DModel, model.DModel)
			}
		})
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		if len(hidden) < rows*model.DMLP {
			hidden = make([]float32, rows*model.DMLP)
		}
		return model.MLPOut(c.Manifest.Layer, x, y, hidden, rows)
	}
}

// deprecatedAlias defines old, a former name of the flag now called
// current, with def (which binds it to current's variable): hidden from
// --help, and using it prints a one-line notice on stderr. Scripts that
// use the old spelling keep working.
func deprecatedAlias(f *pflag.FlagSet, old, current string, def func(name string)) {
	def(old)
	f.MarkDeprecated(old, fmt.Sprintf("use --%s (same meaning)", current))
}

// flagNoticesTo sends pflag's own notices (a deprecated flag's) of every
// command to w, the command's stderr.
func flagNoticesTo(c *cobra.Command, w io.Writer) {
	c.Flags().SetOutput(w)
	c.PersistentFlags().SetOutput(w)
	for _, sub := range c.Commands() {
		flagNoticesTo(sub, w)
	}
}

// exists reports whether path names an existing file or directory.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
