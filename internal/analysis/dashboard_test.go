package analysis

import (
	"bufio"
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/cachebuild"
	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/npy"
	"github.com/ctxdep/ctxdep/internal/safetensors"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// fixtureReport builds a cache of the tiny fixtures (testdata/tiny-gpt2,
// the layer-1 transcoder of testdata/tiny-transcoders, the 6 × 16 tokens
// of testdata/tokens/tiny-int64.npy, acts stored, 4 sequences per shard so
// that the pass crosses a shard boundary), runs Report with the pinv
// baseline as the midcoder and writes the report. It returns the cache,
// the result and the report directory.
func fixtureReport(t *testing.T, in ReportInput) (*actcache.Cache, *ReportResult, string) {
	t.Helper()
	m, err := gpt2.Load("../../testdata/tiny-gpt2")
	if err != nil {
		t.Fatal(err)
	}
	tc, err := transcoder.Load(tcFile)
	if err != nil {
		t.Fatal(err)
	}
	tokens, shape, err := npy.ReadInt32("../../testdata/tokens/tiny-int64.npy")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "cache")
	if _, err := cachebuild.Build(context.Background(), cachebuild.Options{Layers: []cachebuild.Layer{{Layer: 1, Out: dir, Transcoder: tc}}, Model: m,
		Rows: cachebuild.Int32Rows{Data: tokens, T: shape[1]}, DataKind: "test", BatchSize: 4, PerShard: 4, DType: "float32"}); err != nil {
		t.Fatal(err)
	}
	c, err := actcache.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	mlp := midcoder.NewMLP(m, 1, midcoder.ReLU)
	wMid, _, err := PinvBaseline(tc.WDec, mlp.WIn, mlp.WOut, tc.DSAE, m.DModel, m.DMLP)
	if err != nil {
		t.Fatal(err)
	}
	in.Cache, in.TC, in.MLP, in.WU, in.Vocab = c, tc, mlp, m.WU, m.DVocab
	in.Fit = &midcoder.Params{F: tc.DSAE, C: m.DModel, WMid: wMid, BMid: make([]float32, m.DModel)}
	if in.TopK == 0 {
		in.TopK = 4
	}
	res, err := Report(context.Background(), in, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "report")
	if _, err := WriteReport(out, RenderInput{Result: res, CacheDir: dir, MidcoderFile: "pinv.safetensors"}); err != nil {
		t.Fatal(err)
	}
	return c, res, out
}

// firing is one (row, pos, act) of a feature in the cache.
type firing struct {
	row, pos int
	act      float32
}

// cacheFirings reads every shard of c and returns, per feature, all its
// firings (act > 0), and the tokens of every row.
func cacheFirings(t *testing.T, c *actcache.Cache) (map[int][]firing, [][]int32) {
	t.Helper()
	fires := map[int][]firing{}
	var rows [][]int32
	tl := c.Manifest.ContextLength
	for i := range c.Manifest.Shards {
		sd, err := c.ReadShard(i)
		if err != nil {
			t.Fatal(err)
		}
		for s := 0; s < sd.NSequences; s++ {
			row := len(rows)
			rows = append(rows, slices.Clone(sd.Tokens[s*tl:(s+1)*tl]))
			for p := 0; p < tl; p++ {
				idx, val := sd.Acts.Row(s*tl + p)
				for j, f := range idx {
					if val[j] > 0 {
						fires[int(f)] = append(fires[int(f)], firing{row, p, val[j]})
					}
				}
			}
		}
	}
	return fires, rows
}

func readExamples(t *testing.T, path string) []exampleJSON {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []exampleJSON
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e exampleJSON
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("examples.jsonl line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// On the fixtures, examples.jsonl's top rows are a brute-force top-k over
// the cached activations (largest act, ties to the lower row, then the
// lower position) with the right windows, decoded tokens and index;
// features.csv's count is the number of tokens on which each feature
// fires; every kind's ranks run 0, 1, … within the feature.
func TestExamplesTopEqualBruteForce(t *testing.T) {
	const k = 3
	c, res, out := fixtureReport(t, ReportInput{Examples: k, MinCount: 5, Pages: 1000})
	fires, rows := cacheFirings(t, c)
	ex := readExamples(t, filepath.Join(out, ReportExamples))
	byFeature := map[int]map[string][]exampleJSON{}
	for _, e := range ex {
		if byFeature[e.Feature] == nil {
			byFeature[e.Feature] = map[string][]exampleJSON{}
		}
		byFeature[e.Feature][e.Kind] = append(byFeature[e.Feature][e.Kind], e)
	}
	if len(fires) == 0 || len(byFeature) != len(fires) {
		t.Fatalf("examples for %d features; %d features fire on the cache", len(byFeature), len(fires))
	}
	tl := c.Manifest.ContextLength
	for f, fs := range fires {
		want := slices.Clone(fs)
		slices.SortFunc(want, func(a, b firing) int {
			return cmp.Or(cmp.Compare(b.act, a.act), cmp.Compare(a.row, b.row), cmp.Compare(a.pos, b.pos))
		})
		want = want[:min(k, len(want))]
		got := byFeature[f][KindTop]
		if len(got) != len(want) {
			t.Errorf("feature %d: %d top examples, want %d", f, len(got), len(want))
			continue
		}
		for i, w := range want {
			g := got[i]
			if g.Rank != i || g.Row != w.row || g.Pos != w.pos || g.Act != w.act {
				t.Errorf("feature %d top %d: rank %d row %d pos %d act %g, want row %d pos %d act %g", f, i, g.Rank, g.Row, g.Pos, g.Act, w.row, w.pos, w.act)
				continue
			}
			lo, hi := max(0, w.pos-exBefore), min(tl-1, w.pos+exAfter)
			if !slices.Equal(g.IDs, rows[w.row][lo:hi+1]) || g.Index != w.pos-lo || g.Acts[g.Index] != w.act || len(g.Tokens) != len(g.IDs) {
				t.Errorf("feature %d top %d: window %v index %d, want %v index %d", f, i, g.IDs, g.Index, rows[w.row][lo:hi+1], w.pos-lo)
			}
			for j, id := range g.IDs {
				if g.Tokens[j] != tokenText(id) || strings.HasPrefix(g.Tokens[j], "⟨id") {
					t.Errorf("feature %d: token %d decoded as %q", f, id, g.Tokens[j])
				}
			}
		}
		for kind, es := range byFeature[f] {
			for i, e := range es {
				if e.Rank != i {
					t.Errorf("feature %d %s: ranks %v", f, kind, es)
					break
				}
			}
		}
	}
	// count: the CSV's column against the brute force.
	fh, err := os.Open(filepath.Join(out, ReportCSV))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(fh).ReadAll()
	fh.Close()
	if err != nil || !slices.Equal(recs[0], csvHeader) || len(recs) != len(res.Features)+1 {
		t.Fatalf("features.csv header %v, %d rows: %v", recs[0], len(recs), err)
	}
	for _, r := range recs[1:] {
		f, _ := strconv.Atoi(r[0])
		n, _ := strconv.Atoi(r[1])
		if n != len(fires[f]) {
			t.Errorf("feature %d: count %d, %d firing tokens in the cache", f, n, len(fires[f]))
		}
		// The interval holds the consistency.
		cons, lo, hi := parseF(r[3]), parseF(r[4]), parseF(r[5])
		if n > 0 && !(lo <= cons && cons <= hi && lo >= 0 && hi <= 1) {
			t.Errorf("feature %d: consistency %g outside [%g, %g]", f, cons, lo, hi)
		}
	}
}

func parseF(s string) float64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// htmlLinks parses an HTML page (encoding/xml in its HTML mode: an
// unbalanced or malformed page is an error) and returns its href and src
// values and, per table id, the cells of each body row.
func htmlLinks(t *testing.T, path string) ([]string, map[string][][]string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(strings.NewReader(string(b)))
	d.Strict, d.AutoClose, d.Entity = false, xml.HTMLAutoClose, xml.HTMLEntity
	var links []string
	tables := map[string][][]string{}
	table, inCell, depth := "", false, 0
	var row []string
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s does not parse: %v", path, err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			depth++
			for _, a := range e.Attr {
				if a.Name.Local == "href" || a.Name.Local == "src" {
					links = append(links, a.Value)
				}
				if e.Name.Local == "table" && a.Name.Local == "id" {
					table = a.Value
				}
			}
			switch e.Name.Local {
			case "tr":
				row = nil
			case "td":
				inCell = true
				row = append(row, "")
			}
		case xml.CharData:
			if inCell && table != "" {
				row[len(row)-1] += string(e)
			}
		case xml.EndElement:
			depth--
			switch e.Name.Local {
			case "td":
				inCell = false
			case "tr":
				if table != "" && len(row) > 0 {
					tables[table] = append(tables[table], row)
				}
			case "table":
				table = ""
			}
		}
	}
	if depth != 0 {
		t.Errorf("%s: %d elements left open", path, depth)
	}
	return links, tables
}

// The pages parse, every local link and image resolves to a file the
// report wrote (nothing is fetched from elsewhere: no http link but
// Neuronpedia's), the rankings list only features with count ≥
// --min-count, each ranked feature links to its page, and a feature page
// shows its examples.
func TestDashboardPagesAndRankings(t *testing.T) {
	const minCount = 6
	_, res, out := fixtureReport(t, ReportInput{Examples: 4, MinCount: minCount, Pages: 1000})
	if res.Summary.MinCount != minCount || res.Summary.FeaturePages != len(res.Pages) || len(res.Pages) == 0 {
		t.Fatalf("summary %+v, %d pages", res.Summary, len(res.Pages))
	}
	stats := statsByFeature(res)
	pages := []string{filepath.Join(out, ReportHTML)}
	for _, f := range res.Pages {
		pages = append(pages, filepath.Join(out, FeaturePage(f)))
	}
	for _, p := range pages {
		links, tables := htmlLinks(t, p)
		for _, l := range links {
			switch {
			case strings.HasPrefix(l, "data:"), strings.HasPrefix(l, "#"):
			case strings.HasPrefix(l, "http"):
				t.Errorf("%s links %s", p, l)
			default:
				if _, err := os.Stat(filepath.Join(filepath.Dir(p), l)); err != nil {
					t.Errorf("%s: link %s does not resolve: %v", p, l, err)
				}
			}
		}
		if p != pages[0] {
			continue
		}
		ranked := 0
		for _, id := range []string{"low-table", "high-table"} {
			for _, r := range tables[id] {
				f, _ := strconv.Atoi(r[0])
				n, _ := strconv.Atoi(r[1])
				if st := stats[f]; st == nil || st.Count != int64(n) || n < minCount {
					t.Errorf("%s lists feature %d with count %d (--min-count %d)", id, f, n, minCount)
				}
				if !slices.Contains(links, FeaturePage(f)) {
					t.Errorf("%s: feature %d does not link to its page", id, f)
				}
				ranked++
			}
		}
		want := 0
		for _, st := range res.Features {
			if st.Count >= minCount {
				want++
			}
		}
		if want == 0 || want == len(liveFeatures(res.Features)) {
			t.Fatalf("the fixture does not test --min-count: %d of %d live features qualify", want, len(liveFeatures(res.Features)))
		}
		if ranked != 2*min(want, extremeRows) {
			t.Errorf("the rankings hold %d rows; %d features qualify", ranked, want)
		}
	}
	// A feature page shows its top examples: the firing token of each.
	db := res.Dashboards[0]
	page, _ := os.ReadFile(filepath.Join(out, FeaturePage(db.Feature)))
	if n := strings.Count(string(page), `class="tok hit"`); n < len(db.Top) {
		t.Errorf("feature %d's page highlights %d firing tokens, %d top examples", db.Feature, n, len(db.Top))
	}
	for _, s := range []string{"Top activating contexts", "P(active | f)", "neuron on", "<svg", "MLP effect (midcoder): promoted", "W_dec[f] @ W_U: suppressed"} {
		if !strings.Contains(string(page), s) {
			t.Errorf("feature %d's page lacks %q", db.Feature, s)
		}
	}
	if strings.Contains(string(page), "neuronpedia") {
		t.Error("a page of the tiny fixture links Neuronpedia")
	}
}

// Ties in the top examples go to the lower row, then the lower position,
// whatever the shard layout; the quantile examples of a feature that fired
// at most reservoirSize times are exact: element round(q·(n−1)) of the sorted firings.
func TestExamplesTiesAndQuantiles(t *testing.T) {
	// F = 3 features on handCache's layout (2 sequences × 2 tokens): feature
	// 0 fires with act 1 on all four tokens.
	dir := filepath.Join(t.TempDir(), "cache")
	man := actcache.Manifest{Layer: 0, DModel: 2, ContextLength: 2, NSequences: 2, DType: "float32",
		Hooks: actcache.HookNames(0), SequencesPerShard: 1, Data: actcache.Data{Kind: "test"}, WithActs: true, DSAE: 3}
	w, err := actcache.Create(dir, man)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		a := &transcoder.Acts{Indptr: []int64{0, 2, 3}, Indices: []int32{0, 1, 0}, Values: []float32{1, float32(1 + i), 1}}
		if err := w.WriteShard(i, []int32{int32(10 + i), 20}, handX[i*4:(i+1)*4], make([]float32, 4), nil, a); err != nil {
			t.Fatal(err)
		}
	}
	c := finishCache(t, w, dir)
	res, err := Report(context.Background(), ReportInput{Cache: c, MLP: handMLP(), Fit: handFit, TopK: 2, Examples: 3, MinCount: 1, Pages: 10}, nil)
	if err != nil {
		t.Fatal(err)
	}
	db := res.Dashboards[0]
	var got [][2]int
	for _, e := range db.Top {
		got = append(got, [2]int{e.Row, e.Pos})
	}
	if !slices.Equal(got, [][2]int{{0, 0}, {0, 1}, {1, 0}}) {
		t.Errorf("feature 0's top examples (all act 1) at %v, want rows and positions ascending", got)
	}
	if e := db.Top[1]; !slices.Equal(e.Tokens, []int32{10, 20}) || e.Index() != 1 || !slices.Equal(e.Acts, []float32{1, 1}) {
		t.Errorf("window %+v", e)
	}
	// Feature 1 fires twice, act 1 (row 0) and 2 (row 1): quantiles 0.1 and
	// 0.3 are the smaller (round(0.3) = 0), 0.7 and 0.9 the larger.
	db1 := res.Dashboards[1]
	var qs []float32
	for _, e := range db1.Quantiles {
		qs = append(qs, e.Act)
	}
	if !slices.Equal(qs, []float32{1, 2}) || db1.Count != 2 || db1.MeanAct != 1.5 || db1.MaxAct != 2 {
		t.Errorf("feature 1: quantile acts %v, dashboard %+v", qs, db1)
	}
	// Its neuron examples split its firings by the neuron's state.
	for _, ne := range db1.Neurons {
		if int64(len(ne.On)) != ne.NOn || int64(len(ne.Off)) != ne.NOff || ne.NOn+ne.NOff != 2 {
			t.Errorf("neuron %d: %d on / %d off examples, counts %d / %d", ne.Neuron, len(ne.On), len(ne.Off), ne.NOn, ne.NOff)
		}
	}
}

// A reservoir keeps each item of a long stream with the same chance: over
// 20,000 items and 20 slots, each tenth of the stream holds about a tenth
// of the sample (checked over many salts), and the draws are
// deterministic.
func TestReservoirUniform(t *testing.T) {
	const n, m, salts = 20000, 20, 200
	var bins [10]int
	for s := 0; s < salts; s++ {
		res := make([]int64, 0, m)
		for i := int64(0); i < n; i++ {
			if slot := reservoirSlot(i, m, uint64(s)); slot == len(res) {
				res = append(res, i)
			} else if slot >= 0 {
				res[slot] = i
			}
		}
		for _, v := range res {
			bins[v*10/n]++
		}
	}
	for i, b := range bins {
		if exp := salts * m / 10; math.Abs(float64(b-exp)) > 0.15*float64(exp) {
			t.Errorf("tenth %d of the stream holds %d sampled items, expected about %d", i, b, exp)
		}
	}
	if reservoirSlot(12345, m, 7) != reservoirSlot(12345, m, 7) {
		t.Error("reservoir draws are not deterministic")
	}
}

// The Wilson interval matches a textbook value and contains the estimate;
// the consistency interval of a single firing spans about [0, 1].
func TestWilsonAndConsistencyInterval(t *testing.T) {
	lo, hi := wilson(8, 10) // R: prop.test(8, 10, correct = FALSE)$conf.int
	if math.Abs(lo-0.4901625) > 1e-6 || math.Abs(hi-0.9433178) > 1e-6 {
		t.Errorf("wilson(8, 10) = [%.7f, %.7f], want [0.4901625, 0.9433178]", lo, hi)
	}
	lo, hi = consistencyInterval([]int64{1, 0}, 1)
	if lo != 0 || hi < 0.99 {
		t.Errorf("one firing: consistency interval [%g, %g], want [0, ~1]", lo, hi)
	}
	lo, hi = consistencyInterval([]int64{1000, 0}, 1000)
	if lo < 0.99 || hi != 1 {
		t.Errorf("1000 firings, always the same gating: [%g, %g]", lo, hi)
	}
}

// Only the released GPT-2 small transcoders get a Neuronpedia link, and
// only for their own layer and shape.
func TestNeuronpediaBase(t *testing.T) {
	name := "/hub/final_sparse_autoencoder_gpt2-small_blocks.8.ln2.hook_normalized_24576.pt"
	if got := NeuronpediaBase(name, 8, 768, 24576); got != "https://www.neuronpedia.org/gpt2-small/8-tres-dc/" {
		t.Errorf("released layer 8: %q", got)
	}
	for _, c := range []struct {
		path          string
		layer, dm, ds int
	}{{name, 7, 768, 24576}, {name, 8, 16, 24576}, {"../../testdata/tiny-transcoders/final_sparse_autoencoder_gpt2-small_blocks.1.ln2.hook_normalized_64.pt", 1, 16, 64}, {"mine.pt", 8, 768, 24576}} {
		if got := NeuronpediaBase(c.path, c.layer, c.dm, c.ds); got != "" {
			t.Errorf("%+v: %q", c, got)
		}
	}
}

// features.safetensors stores the feature index as I32, the counts as I64,
// and the provenance in its metadata.
func TestFeaturesSafetensorsTypesAndProvenance(t *testing.T) {
	res, err := Report(context.Background(), ReportInput{Cache: handCache(t, true), MLP: handMLP(), Fit: handFit, TopK: 2, Examples: 2, MinCount: 1, Pages: 5}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Summary.Provenance = &Provenance{CtxdepVersion: "v-test", Flags: map[string]string{"min-count": "1"}}
	out := filepath.Join(t.TempDir(), "r")
	if _, err := WriteReport(out, RenderInput{Result: res, CacheDir: "cache", MidcoderFile: "fit.safetensors"}); err != nil {
		t.Fatal(err)
	}
	st, err := safetensors.Open(filepath.Join(out, ReportSafetensors))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	types := map[string]safetensors.DType{}
	for _, ti := range st.Tensors() {
		types[ti.Name] = ti.DType
	}
	if types["feature"] != safetensors.I32 || types["count"] != safetensors.I64 || types["consistency_lo"] != safetensors.F32 {
		t.Errorf("dtypes %v", types)
	}
	if md := st.Metadata(); !strings.Contains(md["provenance"], `"ctxdep_version":"v-test"`) || md["ctxdep_version"] != "v-test" {
		t.Errorf("metadata %v", md)
	}
	sum, _ := os.ReadFile(filepath.Join(out, ReportSummary))
	page, _ := os.ReadFile(filepath.Join(out, ReportHTML))
	if !strings.Contains(string(sum), `"ctxdep_version": "v-test"`) || !strings.Contains(string(page), "ctxdep v-test") || !strings.Contains(string(page), "--min-count=1") {
		t.Errorf("the provenance is missing from summary.json or the footer:\n%s", sum)
	}
	// A rerun over a report with feature pages replaces it (the pages'
	// directory is the report's own), and a stray file there is refused.
	if _, err := WriteReport(out, RenderInput{Result: res, CacheDir: "cache", MidcoderFile: "fit.safetensors"}); err != nil {
		t.Errorf("rerun over a report with pages: %v", err)
	}
	os.WriteFile(filepath.Join(out, FeaturesDir, "notes.txt"), []byte("mine"), 0o644)
	if err := CheckReportOut(out); err == nil {
		t.Error("a features/ directory holding other files was taken for a report's")
	}
}
