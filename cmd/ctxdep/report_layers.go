package main

import (
	"context"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/analysis"
)

// runReportLayers is report --layers: each layer's report into
// R/layer-LL/ (the one-layer report, unchanged), then the cross-layer
// R/index.html, index.md, layers.csv and plots from their summaries (and,
// with --evaluate, evaluate's CE and NMSE per layer). One model load. R
// is written as a whole once every layer is done (analysis.WriteLayerSet):
// a failure at any layer leaves an earlier R as it was.
func runReportLayers(ctx context.Context, g *globalOptions, o *reportOptions) error {
	switch {
	case o.cache == "" || !actcache.IsLayerSet(o.cache):
		return usagef("report --layers reports on a layer set: give --cache SET (cache build --layers)")
	case o.midcoder == "":
		return usagef("report needs --midcoder DIR (fit --layers' --out)")
	case o.out == "":
		return usagef("report needs --out DIR")
	}
	if err := checkReportFlags(o); err != nil {
		return err
	}
	layers, err := g.layerList(o.layers, o.cache)
	if err != nil {
		return err
	}
	// Every layer's inputs before any work.
	files := map[int][2]string{}
	for _, l := range layers {
		var f [2]string
		if f[0], err = layerFile(o.midcoder, l); err != nil {
			return fmt.Errorf("--midcoder: %w", err)
		}
		if o.pinv != "" {
			if f[1], err = layerFile(o.pinv, l); err != nil {
				return fmt.Errorf("--pinv: %w", err)
			}
		}
		// Each file's metadata against its layer's cache: a wrong file at
		// the last layer is found before the first layer's pass.
		if err := g.checkLayerMidcoder(o.cache, l, f[0], analysis.MidcoderWant{Flag: "--midcoder"}, true); err != nil {
			return fmt.Errorf("layer %d: %w", l, err)
		}
		if f[1] != "" {
			if err := g.checkLayerMidcoder(o.cache, l, f[1], analysis.MidcoderWant{Flag: "--pinv", Method: "pinv"}, true); err != nil {
				return fmt.Errorf("layer %d: %w", l, err)
			}
		}
		files[l] = f
	}
	// Each --connections table goes into one layer of the set, one table
	// per layer.
	into, err := readConnTables(o.connections)
	if err != nil {
		return err
	}
	for _, l := range slices.Sorted(maps.Keys(into)) {
		if !slices.Contains(layers, l) {
			return usagef("--connections %s go into layer %d, which is not among the layers reported %v", into[l].Dir, l, layers)
		}
	}
	if err := analysis.CheckLayerSetOut(o.out, layers); err != nil {
		return outUsage(err) // before any layer's work
	}
	var docs *layerDocs
	var r *analysis.Rendered
	err = analysis.WriteLayerSet(o.out, layers, func(stage string) (err error) {
		docs, r, err = reportLayers(ctx, g, o, layers, files, into, stage)
		return err
	})
	if err != nil {
		return err // nothing was written: no documents of layers that are not there
	}
	if g.json {
		return g.printLayerDocs(docs, map[string]any{"out": o.out, "files": r.Files, "omitted": append([]string{}, r.Omitted...)}, nil)
	}
	fmt.Fprintf(g.stdout, "== layers %s: wrote %s (%s, %s; open %s)\n", actcache.LayersText(layers), o.out, analysis.LayerSetCSV, analysis.LayerSetMarkdown,
		filepath.Join(o.out, analysis.LayerSetHTML))
	for _, om := range r.Omitted {
		fmt.Fprintf(g.stdout, "left out: %s\n", om)
	}
	return nil
}

// reportLayers writes each layer's report and the cross-layer files into
// stage, the set being written (files holds each layer's midcoder and pinv
// files, into its --connections tables).
func reportLayers(ctx context.Context, g *globalOptions, o *reportOptions, layers []int, files map[int][2]string, into map[int]*analysis.ConnTable, stage string) (*layerDocs, *analysis.Rendered, error) {
	var rows []analysis.LayerRow
	docs, err := g.eachLayer(layers, func(l int) error {
		if o.evaluate {
			// evaluate needs the whole model: load it (once, the model the
			// cache records when no flag names one) before the report, which
			// then reuses it instead of loading its own part.
			if _, err := g.openCacheAt(o.cache, true); err != nil {
				return err
			}
			if _, _, err := g.loadModel(); err != nil {
				return err
			}
		}
		lo := *o
		lo.out = filepath.Join(o.out, actcache.LayerDirName(l))
		lo.midcoder, lo.pinv = files[l][0], files[l][1]
		lo.flags = maps.Clone(o.flags)
		delete(lo.flags, "connections")
		var own map[int]*analysis.ConnTable // the layer's own --connections table, and its record
		if t := into[l]; t != nil {
			own = map[int]*analysis.ConnTable{l: t}
			lo.flags["connections"] = t.Dir
		}
		res, in, err := reportLayer(ctx, g, &lo, true, own)
		if err != nil {
			return err
		}
		dir := filepath.Join(stage, actcache.LayerDirName(l))
		if err := os.Mkdir(dir, 0o755); err != nil {
			return err
		}
		r, err := analysis.WriteReportFiles(dir, in)
		if err != nil {
			return err
		}
		if err := printReport(g, &lo, res, r, true); err != nil {
			return err
		}
		row := layerRow(l, res, o.features == 0)
		row.ReportDir = actcache.LayerDirName(l) + "/" + analysis.ReportHTML
		if o.evaluate {
			c, err := g.openCacheAt(o.cache, true)
			if err != nil {
				return err
			}
			mids := []string{lo.midcoder}
			if lo.pinv != "" {
				mids = append(mids, lo.pinv)
			}
			ev, err := evaluateOpened(ctx, g, c, mids)
			if err != nil {
				return err
			}
			row.CEClean, row.CETranscoder, row.CEZero, row.NMSETranscoder = ev.CEClean, ev.CETranscoder, ev.CEZeroAblation, ev.NMSETranscoder
			row.CEMidcoder, row.FitLossNorm = ev.Midcoders[0].CE, ev.Midcoders[0].NMSE
			if lo.pinv != "" {
				row.CEPinv, row.PinvLossNorm = ev.Midcoders[1].CE, ev.Midcoders[1].NMSE
			}
		}
		rows = append(rows, row)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	info := analysis.LayerSetInfo{Version: "ctxdep " + version, CacheDir: o.cache, Provenance: map[string]string{}}
	if s, err := actcache.ReadLayerSet(o.cache); err == nil {
		info.Provenance["model"] = fmt.Sprintf("%s (sha256 %s)", s.Model.Path, s.Model.SHA256)
		info.Provenance["tokens"] = fmt.Sprintf("%s %s (sha256 %s)", s.Data.Kind, s.Data.Path, s.Data.SHA256)
	}
	info.Provenance["midcoders"] = o.midcoder
	if o.pinv != "" {
		info.Provenance["pinv"] = o.pinv
	}
	if !o.evaluate {
		info.Notes = append(info.Notes, "CE, NMSE and loss_norm columns are empty: run report --layers with --evaluate to fill them (a forward pass of the whole model per layer).")
	}
	if o.features != 0 {
		info.Notes = append(info.Notes, fmt.Sprintf("l0 is empty: --features %d keeps only some features in each layer's table.", o.features))
	}
	r, err := analysis.WriteLayerSetReport(stage, rows, info)
	if err != nil {
		return nil, nil, err
	}
	return docs, r, nil
}

// layerRow is layer's row of layers.csv from its report: consistency and
// cosine from the summary, l0 (the mean count of firing features per
// token) when the table holds every feature.
func layerRow(layer int, res *analysis.ReportResult, allFeatures bool) analysis.LayerRow {
	s := res.Summary
	row := analysis.NewLayerRow(layer)
	row.NTokens = s.Tokens
	var cons []float64
	var fired int64
	for _, st := range res.Features {
		fired += st.Count
		if st.Reliable() && !math.IsNaN(st.Consistency) {
			cons = append(cons, st.Consistency)
		}
	}
	if allFeatures && s.Tokens > 0 {
		row.L0 = float64(fired) / float64(s.Tokens)
	}
	if len(cons) > 0 {
		row.Consistency = cons
		row.ConsistencyMedian, row.FracConsistencyGT09, row.FracConsistencyLT05 = s.ConsistencyMedian, s.FracConsistencyAbove09, s.FracConsistencyBelow05
	}
	if s.HasPinv && slices.ContainsFunc(res.Features, func(st analysis.FeatureStat) bool { return st.Reliable() && !math.IsNaN(st.CosFitPinv) }) {
		row.CosFitPinvMedian = s.CosMedian
	}
	return row
}
