package analysis

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/safetensors"
	"github.com/ctxdep/ctxdep/internal/testutil"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// sliceConnData is the ConnData of acts and scales held in memory, in
// batches of rows rows.
func sliceConnData(src, tgt *transcoder.Acts, scale []float32, rows int) ConnData {
	return func(ctx context.Context, visit func(b ConnSources) error) error {
		for r0 := 0; r0 < len(scale); r0 += rows {
			r1 := min(r0+rows, len(scale))
			if err := visit(ConnSources{Src: actsRows(src, r0, r1), Tgt: actsRows(tgt, r0, r1), Scale: scale[r0:r1]}); err != nil {
				return err
			}
		}
		return nil
	}
}

// actsRows is rows [r0, r1) of a as CSR of their own.
func actsRows(a *transcoder.Acts, r0, r1 int) *transcoder.Acts {
	base := a.Indptr[r0]
	out := &transcoder.Acts{Indices: a.Indices[base:a.Indptr[r1]], Values: a.Values[base:a.Indptr[r1]]}
	for _, p := range a.Indptr[r0 : r1+1] {
		out.Indptr = append(out.Indptr, p-base)
	}
	return out
}

// csrOf builds CSR acts from one map per row.
func csrOf(rows []map[int32]float32) *transcoder.Acts {
	a := &transcoder.Acts{Indptr: []int64{0}}
	for _, r := range rows {
		var idx []int32
		for i := range r {
			idx = append(idx, i)
		}
		slices.Sort(idx)
		for _, i := range idx {
			a.Indices, a.Values = append(a.Indices, i), append(a.Values, r[i])
		}
		a.Indptr = append(a.Indptr, int64(len(a.Indices)))
	}
	return a
}

func connNear(got, want, tol float64) bool {
	if math.IsNaN(want) {
		return math.IsNaN(got)
	}
	return math.Abs(got-want) <= tol*max(1, math.Abs(want))
}

// A case small enough to check by hand: 3 sources, 2 targets, C = 2.
//
//	c(W_dec) rows: [1,3] → [−1, 1]; [5,2] → [1.5, −1.5]; [0,4] → [−2, 2]
//	W_enc columns: j0 = [1, 0], j1 = [0.5, 2]
//	V = [[−1, 1.5], [1.5, −2.25], [−2, 3]]
//	tokens: t0 src {0: 2, 2: 1}, tgt {0}, s 2; t1 src {1: 4}, tgt {0}, s 4;
//	        t2 src {0: 1}, tgt {}, s 1 (target 1 never fires)
//	M_·0 = ([2/2, 4/4, 1/2]) / 2 = [0.5, 0.5, 0.25];  Ā_·0 = [−0.5, 0.75, −0.5]
//	top-2 by |V|: 2, 1;  by |Ā|: 1 (0.75), then 0 (tie with 2 at 0.5: lower index)
//	union {0, 1, 2}: ranks of V [2, 3, 1], of Ā [1.5, 3, 1.5]: ρ = 1.5/√3
//	share = (|Ā_2| + |Ā_1|) / Σ|Ā| = 1.25 / 1.75 = 5/7
func TestConnectionsHandChecked(t *testing.T) {
	wDec := []float32{1, 3, 5, 2, 0, 4}
	wEnc := []float32{1, 0.5, 0, 2}
	src := csrOf([]map[int32]float32{{0: 2, 2: 1}, {1: 4}, {0: 1}})
	tgt := csrOf([]map[int32]float32{{0: 1}, {0: 0.5}, {}})
	scale := []float32{2, 4, 1}
	for _, block := range []int{1, 2, 5} {
		res, err := Connections(context.Background(), wDec, wEnc, 3, 2, 2, sliceConnData(src, tgt, scale, 2), ConnOptions{TopK: 2, Block: block})
		if err != nil {
			t.Fatal(err)
		}
		if res.Tokens != 3 || !slices.Equal(res.Count, []int64{2, 0}) || res.Passes != (2+min(block, 2)-1)/min(block, 2) {
			t.Errorf("block %d: tokens %d, count %v, passes %d", block, res.Tokens, res.Count, res.Passes)
		}
		if !slices.Equal(res.ByV.Index, []int32{2, 1, 2, 1}) || !slices.Equal(res.ByV.V, []float32{-2, 1.5, 3, -2.25}) {
			t.Errorf("block %d: by V %v %v", block, res.ByV.Index, res.ByV.V)
		}
		if !slices.Equal(res.ByAbar.Index, []int32{1, 0, -1, -1}) {
			t.Errorf("block %d: by Ā %v", block, res.ByAbar.Index)
		}
		for q, want := range []float64{0.75, -0.5} {
			if !connNear(float64(res.ByAbar.Abar[q]), want, 1e-6) || !connNear(float64(res.ByAbar.V[q]), []float64{1.5, -1}[q], 0) {
				t.Errorf("block %d: by Ā entry %d: V %g Ā %g", block, q, res.ByAbar.V[q], res.ByAbar.Abar[q])
			}
		}
		if !connNear(float64(res.ByV.Abar[0]), -0.5, 1e-6) || !connNear(float64(res.ByV.Abar[1]), 0.75, 1e-6) || !math.IsNaN(float64(res.ByV.Abar[2])) {
			t.Errorf("block %d: Ā of the V list %v", block, res.ByV.Abar)
		}
		if !connNear(res.Spearman[0], 1.5/math.Sqrt(3), 1e-12) || !connNear(res.ShareTopV[0], 5.0/7, 1e-6) || !connNear(res.AbsAbarSum[0], 1.75, 1e-6) {
			t.Errorf("block %d: spearman %g share %g sum %g", block, res.Spearman[0], res.ShareTopV[0], res.AbsAbarSum[0])
		}
		if !math.IsNaN(res.Spearman[1]) || !math.IsNaN(res.ShareTopV[1]) || !math.IsNaN(res.AbsAbarSum[1]) {
			t.Errorf("block %d: a target that never fires: %g %g %g", block, res.Spearman[1], res.ShareTopV[1], res.AbsAbarSum[1])
		}
	}
}

// connBrute is the float64 reference: the full V and Ā, each target's
// lists by sorting, the statistics by their definitions.
type connBrute struct {
	count              []int64
	byV, byA           [][]int32
	v, abar            [][]float64 // [j][i]
	spearman, share, s []float64
}

func bruteConnections(wDec, wEnc []float32, fs, ft, c int, src, tgt *transcoder.Acts, scale []float32, k int) *connBrute {
	b := &connBrute{count: make([]int64, ft), spearman: make([]float64, ft), share: make([]float64, ft), s: make([]float64, ft)}
	dec := make([][]float64, fs)
	for i := range dec {
		var mean float64
		for q := 0; q < c; q++ {
			mean += float64(wDec[i*c+q])
		}
		mean /= float64(c)
		dec[i] = make([]float64, c)
		for q := 0; q < c; q++ {
			dec[i][q] = float64(wDec[i*c+q]) - mean
		}
	}
	msum := make([][]float64, ft)
	for j := range msum {
		msum[j] = make([]float64, fs)
	}
	for r := range scale {
		ti, _ := tgt.Row(r)
		si, sv := src.Row(r)
		for _, j := range ti {
			b.count[j]++
			for x, i := range si {
				msum[j][i] += float64(sv[x]) / float64(scale[r])
			}
		}
	}
	for j := 0; j < ft; j++ {
		v, a := make([]float64, fs), make([]float64, fs)
		for i := 0; i < fs; i++ {
			for q := 0; q < c; q++ {
				v[i] += dec[i][q] * float64(wEnc[q*ft+j])
			}
			a[i] = math.NaN()
			if b.count[j] > 0 {
				a[i] = v[i] * msum[j][i] / float64(b.count[j])
			}
		}
		b.v, b.abar = append(b.v, v), append(b.abar, a)
		top := func(x []float64, nonzero bool) []int32 {
			var idx []int32
			for i := range x {
				if !nonzero || x[i] != 0 {
					idx = append(idx, int32(i))
				}
			}
			sort.SliceStable(idx, func(p, q int) bool { return math.Abs(x[idx[p]]) > math.Abs(x[idx[q]]) })
			return idx[:min(k, len(idx))]
		}
		b.byV = append(b.byV, top(v, false))
		b.spearman[j], b.share[j], b.s[j] = math.NaN(), math.NaN(), math.NaN()
		if b.count[j] == 0 {
			b.byA = append(b.byA, nil)
			continue
		}
		b.byA = append(b.byA, top(a, true))
		var tot, part float64
		for i := range a {
			tot += math.Abs(a[i])
		}
		for _, i := range b.byV[j] {
			part += math.Abs(a[i])
		}
		b.s[j] = tot
		if tot > 0 {
			b.share[j] = part / tot
		}
		u := map[int32]bool{}
		for _, i := range append(slices.Clone(b.byV[j]), b.byA[j]...) {
			u[i] = true
		}
		var xs, ys []float64
		for i := range u {
			xs, ys = append(xs, v[i]), append(ys, a[i])
		}
		b.spearman[j] = bruteSpearman(xs, ys)
	}
	return b
}

// bruteSpearman ranks by counting: rank(x_i) = #{x < x_i} + (#{x = x_i} + 1)/2.
func bruteSpearman(x, y []float64) float64 {
	rank := func(v []float64) []float64 {
		r := make([]float64, len(v))
		for i := range v {
			less, eq := 0, 0
			for _, w := range v {
				if w < v[i] {
					less++
				} else if w == v[i] {
					eq++
				}
			}
			r[i] = float64(less) + float64(eq+1)/2
		}
		return r
	}
	if len(x) < 2 {
		return math.NaN()
	}
	rx, ry := rank(x), rank(y)
	var mx, my float64
	for i := range rx {
		mx, my = mx+rx[i], my+ry[i]
	}
	n := float64(len(rx))
	mx, my = mx/n, my/n
	var sxy, sxx, syy float64
	for i := range rx {
		sxy += (rx[i] - mx) * (ry[i] - my)
		sxx += (rx[i] - mx) * (rx[i] - mx)
		syy += (ry[i] - my) * (ry[i] - my)
	}
	if sxx == 0 || syy == 0 {
		return math.NaN()
	}
	return sxy / math.Sqrt(sxx*syy)
}

// randomActs draws rows of about active features of f each, values in
// (0, 2]; some rows are empty.
func randomActs(r *rand.Rand, rows, f, active int) *transcoder.Acts {
	m := make([]map[int32]float32, rows)
	for t := range m {
		m[t] = map[int32]float32{}
		if r.IntN(10) == 0 {
			continue
		}
		for range active {
			m[t][int32(r.IntN(f))] = float32(2 * (1 - r.Float64()))
		}
	}
	return csrOf(m)
}

// checkAgainstBrute compares res with the brute-force reference: the
// lists' indices exactly, values and statistics to tol.
func checkAgainstBrute(t *testing.T, res *ConnResult, b *connBrute, tol float64) {
	t.Helper()
	k := res.K
	bad := 0
	for j := 0; j < res.Ft && bad < 10; j++ {
		if res.Count[j] != b.count[j] {
			t.Errorf("target %d: count %d, want %d", j, res.Count[j], b.count[j])
			bad++
		}
		for _, l := range []struct {
			name string
			got  *ConnList
			want []int32
		}{{"V", &res.ByV, b.byV[j]}, {"Ā", &res.ByAbar, b.byA[j]}} {
			for q := 0; q < k; q++ {
				gi := l.got.Index[j*k+q]
				if q >= len(l.want) {
					if gi != -1 || !math.IsNaN(float64(l.got.V[j*k+q])) {
						t.Errorf("target %d: list by %s slot %d: %d, want unused", j, l.name, q, gi)
						bad++
					}
					continue
				}
				wi := l.want[q]
				if gi != wi || !connNear(float64(l.got.V[j*k+q]), b.v[j][wi], tol) || !connNear(float64(l.got.Abar[j*k+q]), b.abar[j][wi], tol) {
					t.Errorf("target %d: list by %s slot %d: %d (V %g, Ā %g), want %d (V %g, Ā %g)", j, l.name, q,
						gi, l.got.V[j*k+q], l.got.Abar[j*k+q], wi, b.v[j][wi], b.abar[j][wi])
					bad++
				}
			}
		}
		if !connNear(res.Spearman[j], b.spearman[j], tol) || !connNear(res.ShareTopV[j], b.share[j], tol) || !connNear(res.AbsAbarSum[j], b.s[j], tol) {
			t.Errorf("target %d: spearman %g share %g sum %g, want %g %g %g", j, res.Spearman[j], res.ShareTopV[j], res.AbsAbarSum[j], b.spearman[j], b.share[j], b.s[j])
			bad++
		}
	}
}

// On random data, with blocks of targets that divide F_t, that do not,
// of one target and of more than F_t, and batches of several sizes: the
// float64 brute force.
func TestConnectionsBruteForce(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	const fs, ft, c, rows, k = 53, 300, 12, 120, 6
	wDec, wEnc := testutil.RandNormal(r, fs*c, 0.5), testutil.RandNormal(r, c*ft, 0.5)
	src, tgt := randomActs(r, rows, fs, 7), randomActs(r, rows, ft, 9)
	scale := make([]float32, rows)
	for i := range scale {
		scale[i] = float32(0.5 + 2*r.Float64())
	}
	want := bruteConnections(wDec, wEnc, fs, ft, c, src, tgt, scale, k)
	var firing, never int
	for _, n := range want.count {
		if n > 0 {
			firing++
		} else {
			never++
		}
	}
	if firing == 0 || never == 0 {
		t.Fatalf("the data should have targets that fire (%d) and that do not (%d)", firing, never)
	}
	var first *ConnResult
	for _, cs := range []struct{ block, batch int }{{ft, 7}, {1, 120}, {37, 1}, {300, 50}, {1000, 13}, {257, 16}, {256, 16}} {
		res, err := Connections(context.Background(), wDec, wEnc, fs, ft, c, sliceConnData(src, tgt, scale, cs.batch), ConnOptions{TopK: k, Block: cs.block})
		if err != nil {
			t.Fatal(err)
		}
		if res.Passes != (ft+min(cs.block, ft)-1)/min(cs.block, ft) {
			t.Errorf("block %d: %d passes", cs.block, res.Passes)
		}
		checkAgainstBrute(t, res, want, 1e-5)
		if first == nil {
			first = res
		} else if !slices.Equal(first.Count, res.Count) || !slices.Equal(first.ByV.Index, res.ByV.Index) || !slices.Equal(first.ByAbar.Index, res.ByAbar.Index) {
			t.Errorf("block %d, batch %d: the lists differ from the first run's", cs.block, cs.batch)
		}
	}
}

// topAbs keeps the larger magnitudes, ties to the lower index, and with
// nonzero skips zeros; averageRanks shares tied ranks.
func TestConnectionsTopAndRanks(t *testing.T) {
	idx, mag := make([]int32, 3), make([]float64, 3)
	n := topAbs([]float32{1, -3, 3, 0, -1, 2}, nil, idx, mag, false)
	if n != 3 || !slices.Equal(idx, []int32{1, 2, 5}) {
		t.Errorf("topAbs = %d %v", n, idx)
	}
	n = topAbs(nil, []float64{0, 0.5, 0, -0.5}, idx, mag, true)
	if n != 2 || !slices.Equal(idx[:2], []int32{1, 3}) {
		t.Errorf("topAbs nonzero = %d %v", n, idx[:n])
	}
	n = topAbs([]float32{1, 1, 1, 1}, nil, idx, mag, false)
	if n != 3 || !slices.Equal(idx, []int32{0, 1, 2}) {
		t.Errorf("topAbs ties = %d %v", n, idx)
	}
	var order []int
	if got := averageRanks([]float64{3, 1, 3, 2, 3}, nil, &order); !slices.Equal(got, []float64{4, 1, 4, 2, 4}) {
		t.Errorf("averageRanks = %v", got)
	}
	var rx, ry []float64
	if got := spearman([]float64{1, 2, 3}, []float64{30, 20, 10}, &rx, &ry, &order); !connNear(got, -1, 1e-15) {
		t.Errorf("spearman of a reversal = %g", got)
	}
	if got := spearman([]float64{1, 2, 3}, []float64{5, 5, 5}, &rx, &ry, &order); !math.IsNaN(got) {
		t.Errorf("spearman of a constant = %g", got)
	}
	if got := spearman([]float64{1}, []float64{5}, &rx, &ry, &order); !math.IsNaN(got) {
		t.Errorf("spearman of one value = %g", got)
	}
}

// Bad inputs are errors: settings, a scale that is not positive, an index
// beyond the features, batches of unequal rows.
func TestConnectionsErrors(t *testing.T) {
	wDec, wEnc := make([]float32, 6), make([]float32, 4)
	src := csrOf([]map[int32]float32{{0: 1}})
	tgt := csrOf([]map[int32]float32{{1: 1}})
	ok := sliceConnData(src, tgt, []float32{1}, 1)
	for _, c := range []struct {
		o    ConnOptions
		data ConnData
		want string
	}{
		{ConnOptions{TopK: 0, Block: 1}, ok, "top-k 0"},
		{ConnOptions{TopK: 4, Block: 1}, ok, "top-k 4"},
		{ConnOptions{TopK: 1, Block: 0}, ok, "block of 0"},
		{ConnOptions{TopK: 1, Block: 1}, sliceConnData(src, tgt, []float32{0}, 1), "hook_scale 0"},
		{ConnOptions{TopK: 1, Block: 1}, sliceConnData(src, csrOf([]map[int32]float32{{2: 1}}), []float32{1}, 1), "target feature index 2"},
		{ConnOptions{TopK: 1, Block: 1}, sliceConnData(csrOf([]map[int32]float32{{3: 1}}), tgt, []float32{1}, 1), "source feature index 3"},
		{ConnOptions{TopK: 1, Block: 1}, func(ctx context.Context, visit func(ConnSources) error) error {
			return visit(ConnSources{Src: src, Tgt: csrOf([]map[int32]float32{{}, {}}), Scale: []float32{1, 1}})
		}, "1 source rows, 2 target rows"},
	} {
		_, err := Connections(context.Background(), wDec, wEnc, 3, 2, 2, c.data, c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error with %q", c.o, err, c.want)
		}
	}
	if b := BlockForMemory(1<<30, 24576, 24576); b != 5461 {
		t.Errorf("BlockForMemory(1 GiB) = %d", b)
	}
	if b := BlockForMemory(1, 10, 20); b != 1 {
		t.Errorf("BlockForMemory(1 B) = %d", b)
	}
	if b := BlockForMemory(1<<30, 10, 20); b != 20 {
		t.Errorf("BlockForMemory(ample) = %d", b)
	}
}

// The output files: the CSV parses back to the result, the safetensors
// file holds its tensors, summary.json its summary; --out rules.
func TestConnectionsWrite(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	const fs, ft, c, rows, k = 20, 30, 6, 60, 4
	src, tgt := randomActs(r, rows, fs, 5), randomActs(r, rows, ft, 6)
	scale := make([]float32, rows)
	for i := range scale {
		scale[i] = 1
	}
	res, err := Connections(context.Background(), testutil.RandNormal(r, fs*c, 1), testutil.RandNormal(r, c*ft, 1), fs, ft, c, sliceConnData(src, tgt, scale, 8), ConnOptions{TopK: k, Block: 7})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "conn")
	if err := CheckConnectionsOut(dir, false); err != nil {
		t.Fatal(err)
	}
	sum := NewConnSummary(res, 1, 2, "set")
	files, err := WriteConnections(dir, false, res, sum)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(connFiles) {
		t.Errorf("wrote %v", files)
	}
	for _, f := range connFiles {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	md, _ := os.ReadFile(filepath.Join(dir, ConnMarkdown))
	checkMarkdownTables(t, ConnMarkdown, string(md))
	raw, _ := os.ReadFile(filepath.Join(dir, ConnCSV))
	recs, err := csv.NewReader(strings.NewReader(string(raw))).ReadAll()
	if err != nil || len(recs) != ft+1 || !slices.Equal(recs[0], connCSVHeader) {
		t.Fatalf("csv: %d records, %v", len(recs), err)
	}
	for j := 0; j < ft; j++ {
		if got, want := recs[j+1][5], connListText(&res.ByV, j, k); got != want || strings.Count(got, ";") != k-1 {
			t.Errorf("target %d: top_v %q", j, got)
		}
		if res.Count[j] == 0 && (recs[j+1][2] != "NaN" || recs[j+1][6] != "") {
			t.Errorf("target %d never fires: %v", j, recs[j+1])
		}
	}
	f, err := safetensors.Open(filepath.Join(dir, ConnSafetensors))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	idx, err := f.Int32("top_abar.index")
	if err != nil || !slices.Equal(idx, res.ByAbar.Index) {
		t.Errorf("top_abar.index: %v", err)
	}
	cnt, err := f.Int64("count")
	if err != nil || !slices.Equal(cnt, res.Count) {
		t.Errorf("count: %v", err)
	}
	var back ConnSummary
	raw, _ = os.ReadFile(filepath.Join(dir, ConnSummaryFile))
	if err := json.Unmarshal(raw, &back); err != nil || back.Targets != ft || back.Passes != 5 || back.Spearman.N+back.Spearman.NaN != ft {
		t.Errorf("summary: %+v %v", back, err)
	}
	var hist int
	for _, n := range back.ShareTopV.Counts {
		hist += n
	}
	if hist != back.ShareTopV.N || f.Metadata()["format"] != "ctxdep-connections" {
		t.Errorf("share histogram holds %d of %d; metadata %v", hist, back.ShareTopV.N, f.Metadata()["format"])
	}

	// An earlier run's directory only with force; never a cache; never a
	// directory that holds other files.
	if err := CheckConnectionsOut(dir, false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("existing output without force: %v", err)
	}
	if err := CheckConnectionsOut(dir, true); err != nil {
		t.Errorf("existing output with force: %v", err)
	}
	// A rerun that fails after writing its first file (here a summary
	// that JSON cannot hold; a full disk or a kill fail the same way)
	// leaves the earlier output as it was, not a mix of the two runs'
	// files.
	before := snapshotDir(t, dir)
	bad := sum
	bad.Seconds = math.NaN()
	if _, err := WriteConnections(dir, true, res, bad); err == nil {
		t.Fatal("WriteConnections of a malformed result succeeded")
	}
	if after := snapshotDir(t, dir); !mapsEqual(before, after) {
		t.Error("a failed rerun changed the earlier output")
	}
	if got := testutil.ListDir(t, filepath.Dir(dir)); !slices.Equal(got, []string{"conn"}) {
		t.Errorf("beside the output after a failed rerun: %v", got)
	}
	if _, err := WriteConnections(dir, false, res, sum); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("WriteConnections over an earlier run without force: %v", err)
	}
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "notes.txt"), []byte("x"), 0o644)
	if err := CheckConnectionsOut(other, true); err == nil || !strings.Contains(err.Error(), "notes.txt") {
		t.Errorf("a directory with other files: %v", err)
	}
	set := t.TempDir()
	os.WriteFile(filepath.Join(set, "layers.json"), []byte(`{"format": "ctxdep-layer-set", "version": 1}`), 0o644)
	if err := CheckConnectionsOut(set, true); err == nil || !strings.Contains(err.Error(), "activation cache") {
		t.Errorf("a layer set: %v", err)
	}
	if err := CheckConnectionsOut(filepath.Join(set, "out"), true); err == nil || !strings.Contains(err.Error(), "inside") {
		t.Errorf("inside a layer set: %v", err)
	}
}

// Ā stays exact for a pair that co-fires on more tokens than float32 can
// count past: one source and one target firing together on 2²⁴ + 2²² tokens,
// each adding acts/s = 0.75, so Ā = V · 0.75 exactly (V = 2 here). A float32
// M rounds every addition past 2²³ up to a whole 1 and gives Ā = 1.6 (+6.7%);
// the float64 sums are exact (0.75 and the partial sums are dyadic).
func TestConnectionsLongSums(t *testing.T) {
	const rows, batches = 1 << 16, 320 // 320 · 2¹⁶ = 2²⁴ + 2²²
	src := &transcoder.Acts{Indptr: make([]int64, rows+1), Indices: make([]int32, rows), Values: make([]float32, rows)}
	for r := range rows {
		src.Indptr[r+1] = int64(r + 1)
		src.Values[r] = 1.5
	}
	scale := make([]float32, rows)
	for r := range scale {
		scale[r] = 2
	}
	data := func(ctx context.Context, visit func(ConnSources) error) error {
		for range batches {
			if err := visit(ConnSources{Src: src, Tgt: src, Scale: scale}); err != nil {
				return err
			}
		}
		return nil
	}
	// W_dec's one row (1, −1) is centred already; W_enc's column (1, −1)
	// gives V = 2.
	res, err := Connections(context.Background(), []float32{1, -1}, []float32{1, -1}, 1, 1, 2, data, ConnOptions{TopK: 1, Block: 1})
	if err != nil {
		t.Fatal(err)
	}
	if res.Count[0] != rows*batches || res.ByAbar.V[0] != 2 {
		t.Fatalf("count %d, V %g: want %d and 2", res.Count[0], res.ByAbar.V[0], rows*batches)
	}
	if got := res.ByAbar.Abar[0]; got != 1.5 {
		t.Errorf("Ā = %.9g over %d co-firings, want 1.5 exactly (V · mean acts/s = 2 · 0.75)", got, res.Count[0])
	}
}

// connDist's quantiles interpolate linearly between order statistics, as
// the report's and numpy.quantile's default: for 0, 1, …, 9 (shuffled, with
// a NaN) the median is 4.5, q10 0.9 and q90 8.1 (worked by hand:
// position q·(n−1)).
func TestConnDistQuantiles(t *testing.T) {
	d := connDist([]float64{3, 9, math.NaN(), 0, 5, 1, 8, 2, 7, 4, 6}, 0, 10)
	if d.N != 10 || d.NaN != 1 || d.Mean != 4.5 {
		t.Fatalf("n %d, nan %d, mean %v", d.N, d.NaN, d.Mean)
	}
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"median", d.Median, 4.5}, {"q10", d.Q10, 0.9}, {"q90", d.Q90, 8.1}} {
		if math.Abs(c.got-c.want) > 1e-12 {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

// A statistic no target has a value of (every target NaN: none fires)
// has a NaN mean and quantiles: summary.json writes them as null (JSON
// has no NaN; writing failed after the whole pass) and reads null back as
// NaN; defined values round-trip exactly.
func TestConnDistJSONWithoutValues(t *testing.T) {
	for _, v := range [][]float64{{math.NaN(), math.NaN()}, {0.25, -0.5, 1}} {
		d := connDist(v, -1, 1)
		b, err := json.Marshal(ConnSummary{Spearman: d, ShareTopV: d})
		if err != nil {
			t.Fatalf("%v: %v", v, err)
		}
		if empty := d.N == 0; empty != strings.Contains(string(b), `"median":null`) {
			t.Errorf("%v: %s", v, b)
		}
		var back ConnSummary
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		same := func(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }
		g := back.Spearman
		if !same(g.Mean, d.Mean) || !same(g.Median, d.Median) || !same(g.Q10, d.Q10) || !same(g.Q90, d.Q90) || g.N != d.N || g.NaN != d.NaN || !slices.Equal(g.Counts, d.Counts) {
			t.Errorf("%v: round trip %+v, want %+v", v, g, d)
		}
	}
}
