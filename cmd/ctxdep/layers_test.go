package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/analysis"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/testutil"
)

func TestParseLayerList(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []int
	}{{"8", []int{8}}, {"2,3", []int{2, 3}}, {"3, 2,3", []int{2, 3}}, {"0-3,8", []int{0, 1, 2, 3, 8}}, {"all", []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}}, {"10-11", []int{10, 11}}} {
		got, err := parseLayerList(c.in, 12)
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("parseLayerList(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{"", "12", "-1", "3-2", "a", "1,,2", "0-12"} {
		if _, err := parseLayerList(bad, 12); err == nil {
			t.Errorf("parseLayerList(%q) accepted", bad)
		}
	}
}

// buildSet caches layers 1 and 2 of the tiny model in one pass.
func buildSet(t *testing.T, extra ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "set")
	args := append([]string{"cache", "build", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--layers", "1,2",
		"--tokens", tokensNpy, "--sequences-per-shard", "4", "--batch-size", "4", "--with-acts", "--out", dir}, extra...)
	if code, _, errs := ctxdep(t, args...); code != 0 {
		t.Fatalf("cache build --layers: %d %s", code, errs)
	}
	return dir
}

// The layer set's caches are the one-layer builds' byte for byte; each
// later command runs every layer of the set in turn, and its per-layer
// outputs equal the runs on one layer.
func TestLayerSetCommands(t *testing.T) {
	set := buildSet(t)
	s, err := actcache.ReadLayerSet(set)
	if err != nil || !slices.Equal(s.Layers, []int{1, 2}) || s.Data.SHA256 == "" || s.Model.SHA256 == "" {
		t.Fatalf("layers.json = %+v, %v", s, err)
	}
	tmp := t.TempDir()
	for _, l := range []string{"1", "2"} {
		one := filepath.Join(tmp, "one-"+l)
		if code, _, errs := ctxdep(t, "cache", "build", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--layer", l,
			"--tokens", tokensNpy, "--sequences-per-shard", "4", "--batch-size", "4", "--with-acts", "--out", one); code != 0 {
			t.Fatalf("cache build --layer %s: %d %s", l, code, errs)
		}
		// The same tokens, x, y and acts; the set's shards add the scale.
		a, err := actcache.Open(one)
		if err != nil {
			t.Fatal(err)
		}
		b, err := actcache.Open(filepath.Join(set, "layer-0"+l))
		if err != nil {
			t.Fatal(err)
		}
		if a.Manifest.WithScale || !b.Manifest.WithScale {
			t.Errorf("with_scale: one layer %v, set %v", a.Manifest.WithScale, b.Manifest.WithScale)
		}
		for i := range a.Manifest.Shards {
			da, _ := a.ReadShard(i)
			db, err := b.ReadShard(i)
			if err != nil || !slices.Equal(da.Tokens, db.Tokens) || !slices.Equal(da.X, db.X) || !slices.Equal(da.Y, db.Y) ||
				!slices.Equal(da.Acts.Values, db.Acts.Values) || !slices.Equal(da.Acts.Indices, db.Acts.Indices) || len(db.Scale) != len(db.Tokens) {
				t.Errorf("layer %s shard %d differs from the one-layer build's (%v)", l, i, err)
			}
		}
	}

	// A set without a layer named: a usage error listing its layers.
	code, _, errs := ctxdep(t, fitArgs(set, filepath.Join(tmp, "f"))...)
	expectError(t, code, errs, 2, "layer set of layers 1, 2", "--layers")
	code, _, errs = ctxdep(t, append(fitArgs(set, filepath.Join(tmp, "f")), "--layer", "1", "--layers", "1,2")...)
	expectError(t, code, errs, 2, "not both")
	code, _, errs = ctxdep(t, append(fitArgs(set, filepath.Join(tmp, "f")), "--layers", "0")...)
	expectError(t, code, errs, 2, "holds layers 1, 2, not 0")

	fits := filepath.Join(tmp, "fits")
	if code, out, errs := ctxdep(t, append(fitArgs(set, fits), "--layers", "all")...); code != 0 || !strings.Contains(out, "== layer 2 (2 of 2)") {
		t.Fatalf("fit --layers: %d %s %s", code, out, errs)
	}
	for _, l := range []string{"1", "2"} {
		one := filepath.Join(tmp, "fit-"+l)
		if code, _, errs := ctxdep(t, append(fitArgs(set, one), "--layer", l)...); code != 0 {
			t.Fatalf("fit --layer %s: %d %s", l, code, errs)
		}
		a, _, err := midcoder.Load(filepath.Join(one, midcoder.ResultFile))
		if err != nil {
			t.Fatal(err)
		}
		b, meta, err := midcoder.Load(filepath.Join(fits, "layer-0"+l, midcoder.ResultFile))
		if err != nil {
			t.Fatal(err)
		}
		if meta.Layer != int(l[0]-'0') || !slices.Equal(a.WMid, b.WMid) || !slices.Equal(a.BMid, b.BMid) {
			t.Errorf("layer %s: the --layers fit differs from the one-layer fit", l)
		}
		if _, err := os.Stat(filepath.Join(fits, "layer-0"+l, midcoder.HistoryFile)); err != nil {
			t.Error(err)
		}
	}

	pinvs := filepath.Join(tmp, "pinv")
	if code, _, errs := ctxdep(t, "pinv-baseline", "-q", "--cache", set, "--model", tinyModel, "--transcoders", tinyTC, "--layers", "1,2", "--out", pinvs); code != 0 {
		t.Fatalf("pinv-baseline --layers: %d %s", code, errs)
	}
	code, out, errs := ctxdep(t, "evaluate", "-q", "--cache", set, "--model", tinyModel, "--transcoders", tinyTC, "--layers", "all",
		"--midcoder", fits, "--midcoder", pinvs)
	if code != 0 || !strings.Contains(out, "blocks.1.hook_mlp_out") || !strings.Contains(out, "blocks.2.hook_mlp_out") ||
		!strings.Contains(out, filepath.Join(pinvs, "layer-02.safetensors")) {
		t.Fatalf("evaluate --layers: %d\n%s\n%s", code, out, errs)
	}

	// report --layers: each layer's report is the one-layer report, plus
	// the cross-layer table and plots.
	reports := filepath.Join(tmp, "reports")
	if code, out, errs := ctxdep(t, "report", "-q", "--cache", set, "--model", tinyModel, "--transcoders", tinyTC, "--layers", "all",
		"--midcoder", fits, "--pinv", pinvs, "--evaluate", "--out", reports); code != 0 || !strings.Contains(out, "layers.csv") {
		t.Fatalf("report --layers: %d %s %s", code, out, errs)
	}
	one := filepath.Join(tmp, "report-2")
	if code, _, errs := ctxdep(t, "report", "-q", "--cache", set, "--model", tinyModel, "--transcoders", tinyTC, "--layer", "2",
		"--midcoder", filepath.Join(fits, "layer-02", midcoder.ResultFile), "--pinv", filepath.Join(pinvs, "layer-02.safetensors"), "--out", one); code != 0 {
		t.Fatalf("report --layer 2: %d %s", code, errs)
	}
	a, _ := os.ReadFile(filepath.Join(one, "features.csv"))
	b, err := os.ReadFile(filepath.Join(reports, "layer-02", "features.csv"))
	if err != nil || len(a) == 0 || !bytes.Equal(a, b) {
		t.Errorf("layer 2's features.csv in the set report differs from the one-layer report's (%v)", err)
	}
	table, _ := os.ReadFile(filepath.Join(reports, "layers.csv"))
	lines := strings.Split(strings.TrimSpace(string(table)), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "layer,n_tokens,l0,nmse_transcoder,ce_clean,") || !strings.HasPrefix(lines[1], "1,96,") || !strings.HasPrefix(lines[2], "2,96,") ||
		strings.Contains(lines[2], ",,") {
		t.Errorf("layers.csv (with --evaluate every cell is set):\n%s", table)
	}
	for _, f := range []string{"index.html", "index.md", "layers_consistency_box.png", "layer-01/index.html"} {
		if _, err := os.Stat(filepath.Join(reports, f)); err != nil {
			t.Error(err)
		}
	}

	// verify checks every layer; damage in one is named and fails it.
	if code, out, errs := ctxdep(t, "cache", "verify", "-q", set); code != 0 || strings.Count(out, ": ok") != 2 {
		t.Fatalf("cache verify: %d %s %s", code, out, errs)
	}
	p := filepath.Join(set, "layer-02", actcache.ShardName(1))
	b, _ = os.ReadFile(p)
	b[len(b)-1] ^= 1
	os.WriteFile(p, b, 0o644)
	code, _, errs = ctxdep(t, "cache", "verify", "-q", set)
	if code != 1 || !strings.Contains(errs, "layer-02") {
		t.Errorf("cache verify of a damaged layer: %d %s", code, errs)
	}
}

// Sharded: each worker builds its rows of every layer; merge joins each
// layer's cache, and the result equals the single-machine set.
func TestLayerSetSharded(t *testing.T) {
	ref := buildSet(t)
	dir := filepath.Join(t.TempDir(), "set")
	for _, w := range []string{"0/2", "1/2"} {
		if code, _, errs := ctxdep(t, "cache", "build", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--layers", "1,2",
			"--tokens", tokensNpy, "--sequences-per-shard", "4", "--batch-size", "4", "--with-acts", "--out", dir, "--shard", w); code != 0 {
			t.Fatalf("worker %s: %d %s", w, code, errs)
		}
	}
	if code, _, errs := ctxdep(t, "cache", "merge", "-q", dir); code != 0 {
		t.Fatalf("merge: %d %s", code, errs)
	}
	for _, l := range []int{1, 2} {
		a, err := actcache.Open(actcache.LayerDir(ref, l))
		if err != nil {
			t.Fatal(err)
		}
		b, err := actcache.Open(actcache.LayerDir(dir, l))
		if err != nil {
			t.Fatal(err)
		}
		if a.Manifest.NTokens != b.Manifest.NTokens || b.Manifest.Workers != 2 {
			t.Errorf("layer %d: merged manifest %+v", l, b.Manifest)
		}
		if x, y := joinShards(t, a), joinShards(t, b); !slices.Equal(x, y) {
			t.Errorf("layer %d: the merged workers' x and y differ from the single build's", l)
		}
	}
}

// joinShards is every shard's x then y, in row order.
func joinShards(t *testing.T, c *actcache.Cache) []float32 {
	t.Helper()
	var xs, ys []float32
	for i := range c.Manifest.Shards {
		d, err := c.ReadShard(i)
		if err != nil {
			t.Fatal(err)
		}
		xs, ys = append(xs, d.X...), append(ys, d.Y...)
	}
	return append(xs, ys...)
}

// A cache built with --store-y=false holds no y; every reader gets y
// computed from x by the layer's MLP in the build's batches, the stored
// y's bits when shards hold whole batches: a fit on it equals the fit on
// the cache that stores y, and pinv-baseline reports the same loss.
func TestStoreYFalse(t *testing.T) {
	tmp := t.TempDir()
	build := func(name string, extra ...string) string {
		dir := filepath.Join(tmp, name)
		args := append([]string{"cache", "build", "-q", "--model", tinyModel, "--transcoders", tinyTC, "--layers", "1,2",
			"--tokens", tokensNpy, "--sequences-per-shard", "4", "--batch-size", "2", "--with-acts", "--out", dir}, extra...)
		if code, _, errs := ctxdep(t, args...); code != 0 {
			t.Fatalf("cache build %v: %d %s", extra, code, errs)
		}
		return dir
	}
	full, noY := build("full"), build("no-y", "--store-y=false")
	a, _ := actcache.Open(actcache.LayerDir(full, 2))
	b, _ := actcache.Open(actcache.LayerDir(noY, 2))
	if !b.Manifest.YRecomputed || a.Manifest.YRecomputed || a.Manifest.Bytes()-b.Manifest.Bytes() < a.Manifest.NTokens*int64(a.Manifest.DModel)*4 {
		t.Fatalf("manifests: y_recomputed %v / %v, bytes %d / %d", a.Manifest.YRecomputed, b.Manifest.YRecomputed, a.Manifest.Bytes(), b.Manifest.Bytes())
	}
	if _, err := b.ReadShard(0); err == nil || !strings.Contains(err.Error(), "stores no y") {
		t.Errorf("ReadShard without YFromX: %v", err)
	}
	for _, l := range []string{"1", "2"} {
		outs := []string{filepath.Join(tmp, "fit-full-"+l), filepath.Join(tmp, "fit-noy-"+l)}
		for i, c := range []string{full, noY} {
			if code, _, errs := ctxdep(t, append(fitArgs(c, outs[i]), "--layer", l)...); code != 0 {
				t.Fatalf("fit: %d %s", code, errs)
			}
		}
		p, _, err := midcoder.Load(filepath.Join(outs[0], midcoder.ResultFile))
		if err != nil {
			t.Fatal(err)
		}
		q, _, err := midcoder.Load(filepath.Join(outs[1], midcoder.ResultFile))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(p.WMid, q.WMid) {
			t.Errorf("layer %s: the fit on the cache without y differs from the fit on the full cache", l)
		}
		h0, _ := os.ReadFile(filepath.Join(outs[0], midcoder.HistoryFile))
		h1, _ := os.ReadFile(filepath.Join(outs[1], midcoder.HistoryFile))
		if !bytes.Equal(h0, h1) {
			t.Errorf("layer %s: histories differ:\n%s\n%s", l, h0, h1)
		}
	}
}

// The former seed flags still work, as hidden aliases that say what to
// use instead: fit --seed is --init-seed, tokenize --seed is
// --shuffle-seed; the results are the same bytes.
func TestDeprecatedSeedFlags(t *testing.T) {
	cache := buildCache(t, true)
	tmp := t.TempDir()
	var files [][]byte
	for i, seed := range []string{"--seed", "--init-seed"} {
		out := filepath.Join(tmp, seed)
		code, _, errs := ctxdep(t, append(fitArgs(cache, out), seed, "7")...)
		if code != 0 {
			t.Fatalf("fit %s: %d %s", seed, code, errs)
		}
		if deprecated := strings.Contains(errs, "--seed has been deprecated, use --init-seed"); deprecated != (i == 0) {
			t.Errorf("fit %s: stderr %q", seed, errs)
		}
		b, _ := os.ReadFile(filepath.Join(out, midcoder.HistoryFile))
		files = append(files, b)
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Error("fit --seed 7 and --init-seed 7 differ")
	}
	corpus := writeCorpus(t, 20)
	files = nil
	for _, seed := range []string{"--seed", "--shuffle-seed"} {
		out := filepath.Join(tmp, seed+".npy")
		if code, _, errs := ctxdep(t, "tokenize", "-q", "--data", corpus, "--max-length", "8", "--shuffle-buffer", "5", seed, "3", "--out", out); code != 0 {
			t.Fatalf("tokenize %s: %d %s", seed, code, errs)
		}
		b, _ := os.ReadFile(out)
		files = append(files, b)
	}
	if !bytes.Equal(files[0], files[1]) {
		t.Error("tokenize --seed 3 and --shuffle-seed 3 differ")
	}
}

// report --connections lists, on each feature page, the feature's
// strongest inputs as ctxdep connections computed them; connections into
// another layer are refused.
func TestReportConnections(t *testing.T) {
	set := buildSet(t)
	tmp := t.TempDir()
	conns := filepath.Join(tmp, "conns")
	if code, _, errs := ctxdep(t, "connections", "-q", "--cache", set, "--model", tinyModel, "--transcoders", tinyTC, "--layers", "1,2", "--top-k", "4", "--out", conns); code != 0 {
		t.Fatalf("connections: %d %s", code, errs)
	}
	tab, err := analysis.ReadConnections(conns)
	if err != nil {
		t.Fatal(err)
	}
	fit := filepath.Join(tmp, "fit")
	if code, _, errs := ctxdep(t, append(fitArgs(set, fit), "--layer", "2")...); code != 0 {
		t.Fatalf("fit: %d %s", code, errs)
	}
	out := filepath.Join(tmp, "report")
	if code, _, errs := ctxdep(t, "report", "-q", "--cache", set, "--layer", "2", "--model", tinyModel, "--transcoders", tinyTC,
		"--midcoder", filepath.Join(fit, midcoder.ResultFile), "--connections", conns, "--out", out); code != 0 {
		t.Fatalf("report --connections: %d %s", code, errs)
	}
	pages, _ := filepath.Glob(filepath.Join(out, "features", "*.html"))
	if len(pages) == 0 {
		t.Fatal("no feature pages")
	}
	for _, p := range pages[:min(3, len(pages))] {
		var j int
		fmt.Sscanf(filepath.Base(p), "%05d.html", &j)
		page, _ := os.ReadFile(p)
		byV, byAbar := tab.Inputs(j)
		if !strings.Contains(string(page), "Inputs from layer 1") || len(byV) == 0 {
			t.Fatalf("%s: no inputs section", p)
		}
		for _, in := range append(byV, byAbar...) {
			if !strings.Contains(string(page), fmt.Sprintf(`<td class="num">%d</td><td class="num">%.4g</td>`, in.Source, in.V)) {
				t.Errorf("%s lacks source %d (V %.4g)", p, in.Source, in.V)
			}
		}
	}
	code, _, errs := ctxdep(t, "report", "-q", "--cache", set, "--layer", "1", "--model", tinyModel, "--transcoders", tinyTC,
		"--midcoder", filepath.Join(fit, midcoder.ResultFile), "--connections", conns, "--out", filepath.Join(tmp, "r1"))
	expectError(t, code, errs, 1, "go into layer 2")
}

// report --layers takes one --connections per layer: each table's pages
// go into the layer it targets (0→1 into layer 1, 1→2 into layer 2, none
// into layer 0); two tables into one layer, or one into a layer not
// reported, are usage errors.
func TestReportLayersConnections(t *testing.T) {
	set := buildSet(t, "--layers", "0,1,2")
	tmp := t.TempDir()
	conns := map[string]string{}
	for _, pair := range []string{"0,1", "1,2"} {
		conns[pair] = filepath.Join(tmp, "conns-"+pair)
		if code, _, errs := ctxdep(t, "connections", "-q", "--cache", set, "--model", tinyModel, "--transcoders", tinyTC, "--layers", pair, "--top-k", "4", "--out", conns[pair]); code != 0 {
			t.Fatalf("connections %s: %d %s", pair, code, errs)
		}
	}
	fit := filepath.Join(tmp, "fit")
	if code, _, errs := ctxdep(t, append(fitArgs(set, fit), "--layers", "all")...); code != 0 {
		t.Fatalf("fit --layers: %d %s", code, errs)
	}
	report := func(out, layers string, tables ...string) (int, string) {
		args := []string{"report", "-q", "--cache", set, "--layers", layers, "--model", tinyModel, "--transcoders", tinyTC,
			"--midcoder", fit, "--out", out}
		for _, c := range tables {
			args = append(args, "--connections", c)
		}
		code, _, errs := ctxdep(t, args...)
		return code, errs
	}
	out := filepath.Join(tmp, "report")
	if code, errs := report(out, "all", conns["1,2"], conns["0,1"]); code != 0 {
		t.Fatalf("report --layers --connections ×2: %d %s", code, errs)
	}
	for l, want := range []string{"", "Inputs from layer 0", "Inputs from layer 1"} {
		pages, _ := filepath.Glob(filepath.Join(out, fmt.Sprintf("layer-%02d", l), "features", "*.html"))
		if len(pages) == 0 {
			t.Fatalf("layer %d: no feature pages", l)
		}
		page, _ := os.ReadFile(pages[0])
		if got := strings.Contains(string(page), "Inputs from layer"); got != (want != "") || want != "" && !strings.Contains(string(page), want) {
			t.Errorf("layer %d's page %s: inputs section %v, want %q", l, pages[0], got, want)
		}
	}
	// Each layer's summary.json records the table it used, as given.
	for l, want := range []string{"", conns["0,1"], conns["1,2"]} {
		var sum struct {
			Provenance struct{ Flags map[string]string } `json:"provenance"`
		}
		b, err := os.ReadFile(filepath.Join(out, fmt.Sprintf("layer-%02d", l), "summary.json"))
		if err == nil {
			err = json.Unmarshal(b, &sum)
		}
		if got, ok := sum.Provenance.Flags["connections"]; err != nil || got != want || ok != (want != "") {
			t.Errorf("layer %d's summary.json records connections %q (%v), want %q", l, got, err, want)
		}
	}
	// An empty --connections (an unset shell variable) is none.
	if code, errs := report(filepath.Join(tmp, "empty"), "0", ""); code != 0 {
		t.Errorf("report --connections '': %d %s", code, errs)
	}
	code, errs := report(filepath.Join(tmp, "twice"), "all", conns["1,2"], conns["1,2"])
	expectError(t, code, errs, 2, "both go into layer 2")
	code, errs = report(filepath.Join(tmp, "missing"), "0,1", conns["1,2"])
	expectError(t, code, errs, 2, "not among the layers reported")
}

// A fit sweep cut short continues with --resume: the layers it finished
// are skipped (their files untouched), the others are fitted, and the
// result equals an uninterrupted sweep. Other settings are not skipped.
func TestFitSweepResume(t *testing.T) {
	set := buildSet(t)
	tmp := t.TempDir()
	ref, cut := filepath.Join(tmp, "ref"), filepath.Join(tmp, "cut")
	if code, _, errs := ctxdep(t, append(fitArgs(set, ref), "--layers", "all")...); code != 0 {
		t.Fatalf("fit --layers: %d %s", code, errs)
	}
	// The sweep stopped after layer 1: only layer-01 exists.
	if code, _, errs := ctxdep(t, append(fitArgs(set, cut), "--layers", "1")...); code != 0 {
		t.Fatalf("fit --layers 1: %d %s", code, errs)
	}
	st0, _ := os.Stat(filepath.Join(cut, "layer-01", midcoder.ResultFile))
	// Rerun without --resume: refused at the finished layer, saying how
	// to continue the sweep.
	code, _, errs := ctxdep(t, append(fitArgs(set, cut), "--layers", "all")...)
	expectError(t, code, errs, 1, "layer 1", "already holds a finished fit", "to continue an interrupted sweep, pass --resume")
	code, resumed, errs := ctxdep(t, append(fitArgs(set, cut), "--layers", "all", "--resume", "--json")...)
	if code != 0 {
		t.Fatalf("fit --layers all --resume: %d %s", code, errs)
	}
	// Its --json holds every layer, the skipped one's history too: the
	// uninterrupted sweep's document.
	_, whole, _ := ctxdep(t, append(fitArgs(set, filepath.Join(tmp, "ref2")), "--layers", "all", "--json")...)
	if resumed != whole {
		t.Errorf("fit --layers all --resume --json printed %s, the uninterrupted sweep %s", resumed, whole)
	}
	st1, _ := os.Stat(filepath.Join(cut, "layer-01", midcoder.ResultFile))
	if !os.SameFile(st0, st1) || !st0.ModTime().Equal(st1.ModTime()) {
		t.Error("the finished layer was fitted again")
	}
	for _, l := range []string{"layer-01", "layer-02"} {
		a, _ := os.ReadFile(filepath.Join(ref, l, midcoder.HistoryFile))
		b, err := os.ReadFile(filepath.Join(cut, l, midcoder.HistoryFile))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s: the resumed sweep's history differs from the uninterrupted one's (%v)", l, err)
		}
	}
	code, _, errs = ctxdep(t, append(fitArgs(set, cut), "--layers", "all", "--resume", "--lr", "0.01")...)
	expectError(t, code, errs, 1, "already complete")
}

// --layers without --out is a usage error before any layer runs: nothing
// is written into the working directory, and pinv-baseline makes no
// directory for flags it then refuses.
func TestLayersNeedOut(t *testing.T) {
	set := buildSet(t)
	tmp := t.TempDir()
	wd, _ := os.Getwd()
	t.Chdir(tmp)
	code, out, errs := ctxdep(t, "fit", "-q", "--cache", set, "--model", filepath.Join(wd, tinyModel), "--transcoders", filepath.Join(wd, tinyTC), "--layers", "all")
	expectError(t, code, errs, 2, "needs --out")
	code, _, errs = ctxdep(t, "pinv-baseline", "-q", "--cache", set, "--layers", "all")
	expectError(t, code, errs, 2, "needs --out DIR")
	code, _, errs = ctxdep(t, "pinv-baseline", "-q", "--cache", set, "--model", filepath.Join(wd, tinyModel), "--transcoders", filepath.Join(wd, tinyTC),
		"--layers", "all", "--act", "bogus", "--out", "pv")
	expectError(t, code, errs, 2, "--act")
	if entries, _ := os.ReadDir(tmp); len(entries) != 0 || out != "" {
		t.Errorf("refused commands left %v in the working directory (stdout %q)", entries, out)
	}
}

// report --layers --evaluate with no --model or --transcoders uses the
// inputs the layer set recorded (the whole model is loaded once, after
// the cache that records it is opened).
func TestReportLayersRecordedInputs(t *testing.T) {
	set := buildSet(t)
	tmp := t.TempDir()
	fits := filepath.Join(tmp, "fits")
	if code, _, errs := ctxdep(t, "fit", "-q", "--cache", set, "--layers", "all", "--batch-size", "2", "--steps-per-epoch", "3",
		"--train-tokens", "200", "--out", fits); code != 0 {
		t.Fatalf("fit --layers: %d %s", code, errs)
	}
	if code, _, errs := ctxdep(t, "report", "-q", "--cache", set, "--layers", "all", "--midcoder", fits, "--evaluate",
		"--out", filepath.Join(tmp, "r")); code != 0 {
		t.Fatalf("report --layers --evaluate: %d %s", code, errs)
	}
}

// --json promises one document on stdout: with --layers, and on a layer
// set, the layers' documents are gathered into {"layers", "results"}.
func TestLayersJSONIsOneDocument(t *testing.T) {
	set := buildSet(t)
	fit := filepath.Join(t.TempDir(), "fit")
	for _, args := range [][]string{
		{"fit", "-q", "--cache", set, "--layers", "all", "--batch-size", "2", "--steps-per-epoch", "3", "--train-tokens", "200", "--out", fit},
		{"inspect-cache", "-q", set, "--layers", "all"},
		{"evaluate", "-q", "--cache", set, "--layers", "all", "--midcoder", fit},
		{"report", "-q", "--cache", set, "--layers", "all", "--midcoder", fit, "--out", filepath.Join(t.TempDir(), "report")},
		{"cache", "verify", "-q", set},
	} {
		code, out, errs := ctxdep(t, append(args, "--json")...)
		if code != 0 {
			t.Fatalf("%v: %d %s", args, code, errs)
		}
		var doc struct {
			Layers  []int
			Results []json.RawMessage
		}
		dec := json.NewDecoder(strings.NewReader(out))
		if err := dec.Decode(&doc); err != nil || dec.More() {
			t.Errorf("%v: stdout is not one JSON document (%v):\n%s", args, err, out)
			continue
		}
		if !slices.Equal(doc.Layers, []int{1, 2}) || len(doc.Results) != 2 || len(doc.Results[0]) < 2 {
			t.Errorf("%v: layers %v, %d results", args, doc.Layers, len(doc.Results))
		}
	}
}

// A run that fails after some layers still prints their results, as one
// document; one that fails before any prints nothing.
func TestPrintLayerDocs(t *testing.T) {
	var out bytes.Buffer
	g := &globalOptions{stdout: &out, json: true}
	failed := errors.New("layer 2 failed")
	d := &layerDocs{}
	if err := g.runLayer(d, 1, func() error { fmt.Fprintln(g.stdout, `{"a": 1}`); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := g.runLayer(d, 2, func() error { return failed }); err != failed {
		t.Fatalf("runLayer returned %v", err)
	}
	if err := g.printLayerDocs(d, map[string]any{"out": "x"}, failed); err != failed {
		t.Errorf("printLayerDocs returned %v, want the run's error", err)
	}
	if got := strings.TrimSpace(out.String()); got != `{"layers":[1],"out":"x","results":[{"a":1}]}` {
		t.Errorf("printed %s", got)
	}
	out.Reset()
	if err := g.printLayerDocs(&layerDocs{}, nil, failed); err != failed || out.Len() != 0 {
		t.Errorf("no layer finished: %v, printed %q", err, out.String())
	}
	if err := g.runLayer(d, 3, func() error { fmt.Fprintln(g.stdout, "{}\n{}"); return nil }); err == nil {
		t.Error("two documents from one layer were accepted")
	}
}

// treeOf returns every file under dir, by its path inside dir, with its
// content.
func treeOf(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		m[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// report --layers writes its set as a whole: a run that fails at its last
// layer leaves the earlier set as it was (not layer 1 of the new run and
// layer 2 of the old) and nothing beside it; a run that would drop
// another layer's report, or replace a directory with other files, is
// refused before any work.
func TestReportLayersWholeSet(t *testing.T) {
	set := buildSet(t)
	tmp := t.TempDir()
	fit := filepath.Join(tmp, "fit")
	if code, _, errs := ctxdep(t, append(fitArgs(set, fit), "--layers", "all")...); code != 0 {
		t.Fatalf("fit --layers: %d %s", code, errs)
	}
	parent := filepath.Join(tmp, "reports")
	out := filepath.Join(parent, "r")
	report := func(fit, layers string, extra ...string) (int, string) {
		args := append([]string{"report", "-q", "--cache", set, "--layers", layers, "--model", tinyModel, "--transcoders", tinyTC,
			"--midcoder", fit, "--out", out}, extra...)
		code, _, errs := ctxdep(t, args...)
		return code, errs
	}
	if code, errs := report(fit, "all"); code != 0 {
		t.Fatalf("report --layers: %d %s", code, errs)
	}
	before := treeOf(t, out)
	if _, ok := before["layer-02/features.csv"]; !ok {
		t.Fatalf("the set holds %d files, no layer-02/features.csv", len(before))
	}

	// Layer 2's midcoder's tensors are damaged (its metadata, which is
	// checked before any work, is whole): the run fails after layer 1's
	// report, when layer 2's file is loaded and hashed.
	bad := filepath.Join(tmp, "bad")
	for _, l := range []string{"layer-01", "layer-02"} {
		os.MkdirAll(filepath.Join(bad, l), 0o755)
		b, err := os.ReadFile(filepath.Join(fit, l, "midcoder.safetensors"))
		if err != nil {
			t.Fatal(err)
		}
		if l == "layer-02" {
			b[len(b)-1] ^= 0xff // b_mid's last value
		}
		os.WriteFile(filepath.Join(bad, l, "midcoder.safetensors"), b, 0o644)
	}
	code, errs := report(bad, "all", "--top-k", "3")
	expectError(t, code, errs, 1, "layer 2", "is corrupt")
	if after := treeOf(t, out); !maps.Equal(before, after) {
		t.Errorf("a report --layers that failed at layer 2 changed the earlier set")
	}
	if got := testutil.ListDir(t, parent); !slices.Equal(got, []string{"r"}) {
		t.Errorf("beside the set after the failure: %v", got)
	}

	// Layers 1 alone would drop layer 2's report: refused.
	code, errs = report(fit, "1")
	expectError(t, code, errs, 1, "holds the reports of layers 2", "report those layers too")
	// A file of the user's in the set: refused.
	os.WriteFile(filepath.Join(out, "notes.txt"), []byte("mine"), 0o644)
	code, errs = report(fit, "all")
	expectError(t, code, errs, 1, "holds notes.txt")
	os.Remove(filepath.Join(out, "notes.txt"))
	if after := treeOf(t, out); !maps.Equal(before, after) {
		t.Errorf("a refused report --layers changed the set")
	}
	// A rerun over the set replaces it.
	if code, errs := report(fit, "all", "--top-k", "3"); code != 0 {
		t.Fatalf("report --layers over the earlier set: %d %s", code, errs)
	}
	if after := treeOf(t, out); maps.Equal(before, after) || len(after) == 0 {
		t.Errorf("the rerun left the set as it was")
	}
}

// A one-layer cache is a layer set of its own layer: --layers resolves the
// model the cache records (as the run without --layers does), "all" is
// the cache's layer, and a layer it does not hold is a usage error before
// any layer's work.
func TestLayersOnOneLayerCache(t *testing.T) {
	cache := buildCache(t, true)
	for _, spec := range []string{"1", "all"} {
		code, out, errs := ctxdep(t, "inspect-cache", "-q", cache, "--layers", spec, "--json")
		if code != 0 || !strings.Contains(out, `"layers":[1]`) {
			t.Errorf("inspect-cache --layers %s (no --model): %d %s %s", spec, code, out, errs)
		}
	}
	code, out, errs := ctxdep(t, "inspect-cache", "-q", cache, "--layers", "1,2")
	expectError(t, code, errs, 2, "--layers 1,2", "holds layer 1 only")
	if strings.Contains(out, "== layer 1") {
		t.Error("layer 1 ran before the refusal")
	}
}
