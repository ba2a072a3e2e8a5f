package analysis

import (
	"bytes"
	"encoding/base64"
	"encoding/csv"
	"encoding/xml"
	"html"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// twoLayerRows are layers 3 and 2 (out of order): layer 2 has everything,
// layer 3 lacks the tokens, the evaluation and the pinv baseline.
func twoLayerRows() []LayerRow {
	r2 := NewLayerRow(2)
	r2.NTokens = 4096
	r2.L0 = 31.25
	r2.NMSETranscoder = 0.125
	r2.CEClean, r2.CETranscoder, r2.CEMidcoder, r2.CEPinv, r2.CEZero = 3, 3.5, 4, 7, 5
	r2.FitLossNorm, r2.PinvLossNorm = 0.2, 0.6
	r2.ConsistencyMedian, r2.FracConsistencyGT09, r2.FracConsistencyLT05 = 0.75, 0.25, 0.1
	r2.CosFitPinvMedian = 0.5
	r2.Consistency = []float64{0.1, 0.5, 0.75, 0.9, 0.95, 1, math.NaN()}
	r2.ReportDir = "layer-02/index.html"
	r3 := NewLayerRow(3)
	r3.L0 = 40
	r3.FitLossNorm = 0.3
	r3.ConsistencyMedian, r3.FracConsistencyGT09, r3.FracConsistencyLT05 = 0.6, 0.2, 0.3
	r3.Consistency = []float64{0.2, 0.6, 0.7}
	r3.ReportDir = "layer-03/index.html"
	return []LayerRow{r3, r2}
}

func readLayersCSV(t *testing.T, dir string) [][]string {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, LayerSetCSV))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestLayerSetCSV proves layers.csv's header (the columns, in
// order, then the three CE-gap columns), that rows come sorted by layer,
// that floats are written as features.csv writes them (shortest
// round-trip 'g'), integers without a fraction, and that every missing
// input (NaN, NTokens 0, a CE gap lacking a CE value) is an empty cell.
func TestLayerSetCSV(t *testing.T) {
	dir := t.TempDir()
	if _, err := WriteLayerSetReport(dir, twoLayerRows(), LayerSetInfo{}); err != nil {
		t.Fatal(err)
	}
	recs := readLayersCSV(t, dir)
	want := [][]string{
		{"layer", "n_tokens", "l0", "nmse_transcoder", "ce_clean", "ce_transcoder", "ce_midcoder", "ce_pinv", "ce_zero",
			"fit_loss_norm", "pinv_loss_norm", "consistency_median", "frac_consistency_gt_0.9", "frac_consistency_lt_0.5",
			"cos_fit_pinv_median", "ce_gap_recovered_transcoder", "ce_gap_recovered_midcoder", "ce_gap_recovered_pinv"},
		// Gap: (5 − 3.5)/(5 − 3) = 0.75; (5 − 4)/2 = 0.5; (5 − 7)/2 = −1.
		{"2", "4096", "31.25", "0.125", "3", "3.5", "4", "7", "5", "0.2", "0.6", "0.75", "0.25", "0.1", "0.5", "0.75", "0.5", "-1"},
		{"3", "", "40", "", "", "", "", "", "", "0.3", "", "0.6", "0.2", "0.3", "", "", "", ""},
	}
	if !slices.EqualFunc(recs, want, slices.Equal) {
		t.Fatalf("layers.csv:\n got %q\nwant %q", recs, want)
	}
	if !slices.Equal(recs[0], LayerSetColumns()) {
		t.Errorf("LayerSetColumns %q differs from the written header", LayerSetColumns())
	}

	// A value that needs 17 digits reads back exactly.
	r := NewLayerRow(0)
	a, b := 0.1, 0.2
	r.L0 = a + b // not constant-folded: 0.30000000000000004
	if _, err := WriteLayerSetReport(dir, []LayerRow{r}, LayerSetInfo{}); err != nil {
		t.Fatal(err)
	}
	if got := readLayersCSV(t, dir)[1][2]; got != "0.30000000000000004" {
		t.Errorf("l0 0.1+0.2 written as %q", got)
	}
}

// TestLayerSetCEGapRecovered proves the CE-gap formula on hand-checked
// values: (ce_zero − ce_X) / (ce_zero − ce_clean), 1 at the clean CE, 0 at
// the zero-ablation CE, negative beyond it, NaN without a gap or with a
// missing input; and that the pages state the formula.
func TestLayerSetCEGapRecovered(t *testing.T) {
	for _, c := range []struct{ clean, x, zero, want float64 }{
		{3, 4, 10, 6.0 / 7}, // (10 − 4) / (10 − 3)
		{3, 3, 10, 1},
		{3, 10, 10, 0},
		{3, 12, 10, -2.0 / 7},
		{3.25, 3.5, 4.25, 0.75},
		{3, 4, 3, math.NaN()},
		{math.NaN(), 4, 10, math.NaN()},
		{3, math.NaN(), 10, math.NaN()},
		{3, 4, math.NaN(), math.NaN()},
	} {
		got := CEGapRecovered(c.clean, c.x, c.zero)
		if !(got == c.want || math.IsNaN(got) && math.IsNaN(c.want)) {
			t.Errorf("CEGapRecovered(%v, %v, %v) = %v, want %v", c.clean, c.x, c.zero, got, c.want)
		}
	}
	dir := t.TempDir()
	if _, err := WriteLayerSetReport(dir, twoLayerRows(), LayerSetInfo{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{LayerSetMarkdown, LayerSetHTML} {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		if !strings.Contains(string(b), "(ce_zero − ce_X) / (ce_zero − ce_clean)") {
			t.Errorf("%s does not state the CE gap recovered", name)
		}
	}
}

func isPNG(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("%s: %v", path, err)
	}
}

// TestLayerSetPlotsOnlyWithData proves that each plot is written (a valid
// PNG, listed in Files, embedded in index.html and named in index.md)
// exactly when some layer has its inputs; that a plot left out is listed
// in Omitted and under "Omitted" on both pages; and that a rerun with
// less data removes the earlier run's plot it no longer draws.
func TestLayerSetPlotsOnlyWithData(t *testing.T) {
	allPlots := []string{plotLayerConsistency, plotLayerFractions, plotLayerCEGap, plotLayerL0CE}
	onlyCons := func() []LayerRow {
		r := NewLayerRow(5)
		r.Consistency = []float64{0.3, 0.8}
		r7 := NewLayerRow(7)
		r7.Consistency = []float64{0.5} // a box of one value
		return []LayerRow{r, NewLayerRow(6), r7}
	}
	for _, c := range []struct {
		name  string
		rows  []LayerRow
		plots []string
	}{
		{"full", twoLayerRows(), allPlots},
		{"consistencies only", onlyCons(), []string{plotLayerConsistency}},
		{"nothing", []LayerRow{NewLayerRow(0), NewLayerRow(1)}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			// An earlier run drew every plot.
			if _, err := WriteLayerSetReport(dir, twoLayerRows(), LayerSetInfo{}); err != nil {
				t.Fatal(err)
			}
			out, err := WriteLayerSetReport(dir, c.rows, LayerSetInfo{})
			if err != nil {
				t.Fatal(err)
			}
			md, _ := os.ReadFile(filepath.Join(dir, LayerSetMarkdown))
			page, _ := os.ReadFile(filepath.Join(dir, LayerSetHTML))
			if n := strings.Count(string(page), `src="data:image/png;base64,`); n != len(c.plots) {
				t.Errorf("index.html embeds %d plots, want %d", n, len(c.plots))
			}
			if len(out.Omitted) != len(allPlots)-len(c.plots) {
				t.Errorf("Omitted = %q, want %d entries", out.Omitted, len(allPlots)-len(c.plots))
			}
			for _, o := range out.Omitted {
				if !strings.Contains(string(md), "- "+o) || !strings.Contains(string(page), html.EscapeString(o)) {
					t.Errorf("omission %q is not on both pages", o)
				}
			}
			if hasOmitted := strings.Contains(string(md), "### Omitted"); hasOmitted != (len(out.Omitted) > 0) {
				t.Errorf("index.md has an Omitted section: %v, omitted %q", hasOmitted, out.Omitted)
			}
			for _, p := range allPlots {
				path := filepath.Join(dir, p)
				_, err := os.Stat(path)
				want := slices.Contains(c.plots, p)
				if want != (err == nil) || want != slices.Contains(out.Files, p) || want != strings.Contains(string(md), "]("+p+")") {
					t.Errorf("plot %s: want written %v; stat err %v, Files %q", p, want, err, out.Files)
				}
				if want {
					isPNG(t, path)
				}
			}
		})
	}
}

// TestLayerSetHTML proves that index.html parses (strictly, as XML: every
// element closed, every attribute quoted, every entity known), that it is
// self-contained (no external src or stylesheet), that each layer with a
// ReportDir is linked from both tables and a layer without one is not,
// that a hostile link is neutralised by html/template and text is escaped,
// that the embedded plots decode as PNGs, and that the provenance footer
// lists the inputs; and that index.md links the same layers.
func TestLayerSetHTML(t *testing.T) {
	rows := twoLayerRows()
	r7 := NewLayerRow(7)
	r7.L0 = 12
	r9 := NewLayerRow(9)
	r9.ReportDir = "javascript:alert(1)"
	rows = append(rows, r7, r9)
	info := LayerSetInfo{Version: "v1.2.3", CacheDir: "/data/cache <set>",
		Provenance: map[string]string{"transcoders": "/hf/tc (sha256 abc)", "midcoders": "fits/ (sha256 def)"},
		Notes:      []string{"note with <b>markup</b> & ampersand"}}
	dir := t.TempDir()
	if _, err := WriteLayerSetReport(dir, rows, info); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(dir, LayerSetHTML))
	if err != nil {
		t.Fatal(err)
	}
	hrefs := map[string]int{}
	var imgs int
	d := xml.NewDecoder(bytes.NewReader(page))
	d.Strict = true
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("index.html does not parse: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		for _, a := range se.Attr {
			switch {
			case se.Name.Local == "a" && a.Name.Local == "href":
				hrefs[a.Value]++
			case a.Name.Local == "src":
				imgs++
				data, ok := strings.CutPrefix(a.Value, "data:image/png;base64,")
				if !ok {
					t.Errorf("src %.40q is not an embedded PNG", a.Value)
					continue
				}
				b, err := base64.StdEncoding.DecodeString(data)
				if err == nil {
					_, err = png.Decode(bytes.NewReader(b))
				}
				if err != nil {
					t.Errorf("embedded plot: %v", err)
				}
			case se.Name.Local == "link":
				t.Errorf("index.html links %s: it should be self-contained", a.Value)
			}
		}
	}
	if imgs != 4 {
		t.Errorf("%d embedded plots, want 4", imgs)
	}
	for _, l := range []string{"layer-02/index.html", "layer-03/index.html"} {
		if hrefs[l] != 2 {
			t.Errorf("index.html links %s %d times, want 2 (one per table); links %v", l, hrefs[l], hrefs)
		}
	}
	if len(hrefs) != 3 || hrefs["#ZgotmplZ"] != 2 {
		t.Errorf("links %v: want only the two layers' reports and the neutralised javascript: link", hrefs)
	}
	s := string(page)
	for _, want := range []string{"v1.2.3", "/data/cache &lt;set&gt;", "/hf/tc (sha256 abc)", "fits/ (sha256 def)", "note with &lt;b&gt;markup&lt;/b&gt; &amp; ampersand"} {
		if !strings.Contains(s, want) {
			t.Errorf("index.html lacks %q", want)
		}
	}
	if strings.Index(s, ">midcoders<") > strings.Index(s, ">transcoders<") {
		t.Error("provenance is not sorted by input")
	}
	md, _ := os.ReadFile(filepath.Join(dir, LayerSetMarkdown))
	checkMarkdownTables(t, LayerSetMarkdown, string(md))
	for _, want := range []string{"| [2](layer-02/index.html) |", "| [3](layer-03/index.html) |", "| 7 |", "`/hf/tc (sha256 abc)`", "- transcoders:"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("index.md lacks %q", want)
		}
	}
	for _, def := range LayerSetDefinitions() {
		if !strings.Contains(string(md), "- **"+def.Name+"**: ") {
			t.Errorf("index.md does not define %s", def.Name)
		}
	}
}

// TestLayerSetKeepsCallerFiles proves that WriteLayerSetReport never
// deletes or changes the caller's per-layer report directories or any other
// file of dir, across two runs (the second drawing fewer plots, so that it
// removes its own stale plots), and that it refuses bad input (no rows, a
// duplicate layer, a negative layer, a missing dir) before writing.
func TestLayerSetKeepsCallerFiles(t *testing.T) {
	dir := t.TempDir()
	mine := map[string]string{
		"layer-02/index.html":      "<p>layer 2</p>",
		"layer-02/features.csv":    "feature\n",
		"layer-03/index.html":      "<p>layer 3</p>",
		"layer-03/sub/plot.png":    "not a png",
		"notes.txt":                "the caller's",
		"layers_ce_gap_old.png":    "similar name, not ours",
		"layer-04/layers.csv":      "a layers.csv one level down",
		"layers_consistency_box.d": "x",
	}
	for name, data := range mine {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "layer-05"), 0o755); err != nil { // an empty layer dir
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		for name, data := range mine {
			b, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil || string(b) != data {
				t.Errorf("%s: %q, %v; want %q untouched", name, b, err, data)
			}
		}
		if fi, err := os.Stat(filepath.Join(dir, "layer-05")); err != nil || !fi.IsDir() {
			t.Errorf("the empty layer-05/ is gone: %v", err)
		}
	}
	if _, err := WriteLayerSetReport(dir, twoLayerRows(), LayerSetInfo{}); err != nil {
		t.Fatal(err)
	}
	check()
	if _, err := WriteLayerSetReport(dir, []LayerRow{NewLayerRow(2)}, LayerSetInfo{}); err != nil {
		t.Fatal(err)
	}
	check()

	fresh := t.TempDir()
	for _, c := range []struct {
		name string
		dir  string
		rows []LayerRow
	}{
		{"no rows", fresh, nil},
		{"duplicate layer", fresh, []LayerRow{NewLayerRow(2), NewLayerRow(1), NewLayerRow(2)}},
		{"negative layer", fresh, []LayerRow{NewLayerRow(-1)}},
		{"missing dir", filepath.Join(fresh, "absent"), []LayerRow{NewLayerRow(0)}},
		{"dir is a file", filepath.Join(dir, "notes.txt"), []LayerRow{NewLayerRow(0)}},
	} {
		if _, err := WriteLayerSetReport(c.dir, c.rows, LayerSetInfo{}); err == nil {
			t.Errorf("%s: no error", c.name)
		}
	}
	if entries, _ := os.ReadDir(fresh); len(entries) != 0 {
		t.Errorf("a refused call wrote %v", entries)
	}
	check()
}
