package analysis

import (
	"bytes"
	"cmp"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/atomicdir"
	"github.com/ctxdep/ctxdep/internal/atomicfile"
	"github.com/ctxdep/ctxdep/internal/dtype"
	"github.com/ctxdep/ctxdep/internal/kernels"
	"github.com/ctxdep/ctxdep/internal/par"
	"github.com/ctxdep/ctxdep/internal/safetensors"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// Connections between the transcoders of two layers l < l′ of GPT-2
// (`ctxdep connections`): what the weights say against what the data
// does.
//
// With TransformerLens's processing the residual stream is centred, so
// the direct path from source feature i (layer l) to the pre-activation
// of target feature j (layer l′) at the same token t is
//
//	A_ij(t) = acts_i^l(t) · V_ij / s^{l′}(t),   V_ij = c(W_dec^l[i]) · W_enc^{l′}[:, j]
//
// c(·) subtracts a vector's mean over its C entries (the centring that
// the next LayerNorm applies) and s^{l′}(t) is blocks.l′.ln2.hook_scale.
// V is the input-invariant virtual weight, A the input-dependent
// attribution. Ā_ij is the mean of A_ij(t) over the tokens where j fires
// (acts_j^{l′}(t) > 0):
//
//	Ā_ij = V_ij · M_ij,   M_ij = Σ_{t: j fires} acts_i^l(t)/s^{l′}(t) / count_j
//
// so only M needs a pass over the data. Per target j, Connections
// computes:
//
//   - the top-K sources by |V_ij| and the top-K by |Ā_ij|: larger
//     magnitude first, ties to the lower source index. The Ā list holds
//     only sources with Ā_ij ≠ 0 (sources that never fire together with j
//     have Ā_ij = 0 and are left out); its unused slots have index −1.
//   - spearman: the Spearman rank correlation of V_·j and Ā_·j over the
//     union of the two lists' sources, with average ranks for ties (so
//     the Pearson correlation of the ranks). NaN when the union has fewer
//     than two sources, or either view's ranks are all equal. Since
//     M_ij ≥ 0, Ā_ij always has V_ij's sign (or is 0): the signed
//     correlation counts that agreement, which holds by construction, so
//     it runs higher than a correlation of magnitudes would;
//     share_topk_v is the stricter of the two.
//   - share_topk_v: Σ_{i ∈ top-K by |V|} |Ā_ij| / Σ_i |Ā_ij|, the sum
//     over ALL sources i: the part of j's average input from layer l that
//     the weights alone pick out. NaN when the sum is 0.
//
// A target that never fires has count 0, an empty Ā list, Ā values NaN,
// and spearman and share NaN; its V list is filled all the same.
//
// Cost: V is F_s × F_t (24,576² = 2.4 GB in float32 for GPT-2 small's
// transcoders); it is never held whole. Targets are processed in blocks of
// Block: one pass over the data accumulates M for the block's targets
// (a dense float64 [Block, F_s] array, the memory that Block sets: a
// float32 sum of ~0.1–1 terms rounds each one to a multiple of 0.5 once
// it passes 2²³, so a pair co-firing on 10 M tokens would be off by
// percents), then
// V's rows for the block are computed by GEMM, connSub targets at a time
// (c(W_dec^l) @ W_enc^{l′}[:, sub], F_s·C·2 flops per target), and each
// target's lists and statistics are taken from them. The data is read
// ⌈F_t / Block⌉ times; the per-token work over all passes together is
// one update of M per (active source, active target) pair, ~40 × 40 per
// token with GPT-2 small's transcoders.

// ConnSources is one batch of the data of a layer pair: for the same rows
// (tokens), the source layer's acts, the target layer's acts and the
// target layer's ln2.hook_scale.
type ConnSources struct {
	Src, Tgt *transcoder.Acts
	Scale    []float32
}

// ConnData walks all the tokens of a layer pair once per call, calling
// visit with consecutive batches; it stops at visit's first error.
type ConnData func(ctx context.Context, visit func(b ConnSources) error) error

// ConnOptions are the settings of Connections.
type ConnOptions struct {
	// TopK is the length of each target's two source lists (≥ 1; at most
	// F_s).
	TopK int
	// Block is the number of targets per pass over the data (≥ 1; capped
	// at F_t): M's block takes Block·F_s·8 bytes.
	Block int
	// Progress, when set, is called after each batch of a pass with the
	// pass (0-based), the number of passes and the rows of the batch.
	Progress func(pass, passes, rows int)
}

// connSub is how many targets' rows of V one GEMM computes: connSub·F_s
// float32 (25 MB at F_s = 24,576).
const connSub = 256

// ConnMemory returns the bytes Connections holds for a pair of widths
// fs, ft, model width c and a block of block targets: M's block, V's rows
// for connSub targets, the centred decoder and the encoder transposed, and
// the per-target results.
func ConnMemory(fs, ft, c, block, k int) int64 {
	block = min(block, ft)
	sub := min(connSub, block)
	return 8*int64(block)*int64(fs) + 4*int64(sub)*int64(fs) + 4*int64(c)*int64(fs+ft) +
		int64(ft)*int64(k)*2*12 + int64(ft)*40 + 16*int64(fs)*int64(min(runtime.GOMAXPROCS(0), sub))
}

// BlockForMemory returns the largest block of targets whose M block
// (block·fs·8 bytes) fits in mem bytes: at least 1, at most ft.
func BlockForMemory(mem int64, fs, ft int) int {
	b := mem / (8 * int64(max(fs, 1)))
	return int(max(1, min(b, int64(ft))))
}

// ConnList is one of each target's source lists: row j (K entries) of
// each slice belongs to target j.
type ConnList struct {
	Index []int32   // (F_t·K) source features; −1 in an unused slot
	V     []float32 // (F_t·K) V_ij of those sources; NaN in an unused slot
	Abar  []float32 // (F_t·K) Ā_ij of those sources; NaN in an unused slot or when j never fires
}

// ConnResult is what Connections computes, per target feature j of layer
// l′.
type ConnResult struct {
	Fs, Ft, C, K int
	Tokens       int64 // rows of the data (tokens), read once per pass
	Passes       int   // passes over the data
	Block        int   // targets per pass
	// Count is the number of tokens on which target j fires.
	Count []int64
	// ByV lists the top-K sources by |V_ij|; ByAbar the top-K by |Ā_ij|
	// (only Ā_ij ≠ 0).
	ByV, ByAbar ConnList
	// Spearman is the rank correlation of V_·j and Ā_·j over the union of
	// the two lists' sources.
	Spearman []float64
	// ShareTopV is the share of Σ_i |Ā_ij| that the top-K sources by |V|
	// capture.
	ShareTopV []float64
	// AbsAbarSum is Σ_i |Ā_ij| over all sources.
	AbsAbarSum []float64
}

// Connections computes the connections from the fs features of the
// transcoder whose decoder is wDec (fs, c) to the ft features of the
// transcoder whose encoder is wEnc (c, ft), over the tokens data walks.
func Connections(ctx context.Context, wDec, wEnc []float32, fs, ft, c int, data ConnData, o ConnOptions) (*ConnResult, error) {
	switch {
	case len(wDec) != fs*c || len(wEnc) != c*ft || fs < 1 || ft < 1 || c < 1:
		return nil, fmt.Errorf("connections: W_dec has %d values and W_enc %d, for %d sources, %d targets and width %d", len(wDec), len(wEnc), fs, ft, c)
	case o.TopK < 1 || o.TopK > fs:
		return nil, fmt.Errorf("connections: top-k %d: want 1..%d (the source transcoder's features)", o.TopK, fs)
	case o.Block < 1:
		return nil, fmt.Errorf("connections: a block of %d targets", o.Block)
	}
	k, block := o.TopK, min(o.Block, ft)
	res := &ConnResult{Fs: fs, Ft: ft, C: c, K: k, Block: block, Passes: (ft + block - 1) / block,
		Count: make([]int64, ft), Spearman: make([]float64, ft), ShareTopV: make([]float64, ft), AbsAbarSum: make([]float64, ft)}
	for _, l := range []*ConnList{&res.ByV, &res.ByAbar} {
		*l = ConnList{Index: make([]int32, ft*k), V: make([]float32, ft*k), Abar: make([]float32, ft*k)}
	}
	dec := slices.Clone(wDec)
	kernels.CentreRows(dec, fs, c)         // each decoder row's mean removed
	decT := kernels.Transpose(dec, fs, c)  // (C, F_s)
	encT := kernels.Transpose(wEnc, c, ft) // (F_t, C)
	m := make([]float64, block*fs)         // M's block, rows by target: Σ acts_i/s
	sub := min(connSub, block)
	vRows := make([]float32, sub*fs)
	scratch := make([]connScratch, sub)
	for pass, j0 := 0, 0; j0 < ft; pass, j0 = pass+1, j0+block {
		j1 := min(j0+block, ft)
		if pass > 0 { // a new slice is zero already
			clear(m)
		}
		tokens, err := accumulateM(ctx, data, m, res.Count, fs, ft, j0, j1, func(rows int) {
			if o.Progress != nil {
				o.Progress(pass, res.Passes, rows)
			}
		})
		if err != nil {
			return nil, err
		}
		if pass == 0 {
			res.Tokens = tokens
		} else if tokens != res.Tokens {
			return nil, fmt.Errorf("connections: pass %d read %d tokens, the first %d: the data changed while it was read", pass+1, tokens, res.Tokens)
		}
		for s0 := j0; s0 < j1; s0 += sub {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			s1 := min(s0+sub, j1)
			n := s1 - s0
			kernels.MatMul(vRows[:n*fs], encT[s0*c:s1*c], decT, n, c, fs, false)
			par.Jobs(n, 0, func(w, q int) {
				if scratch[w].abar == nil {
					scratch[w] = newConnScratch(fs, k)
				}
				j := s0 + q
				res.finish(&scratch[w], j, vRows[q*fs:(q+1)*fs], m[(j-j0)*fs:(j-j0+1)*fs])
			})
		}
	}
	return res, nil
}

// accumulateM runs one pass over data, adding acts_i/s to m[j−j0][i] for
// every token where target j ∈ [j0, j1) fires and source i is active, and
// counting each such target's tokens. The block's targets are cut into
// fixed parts updated concurrently, each part's rows by one goroutine in
// token order, so the sums do not depend on the number of cores.
func accumulateM(ctx context.Context, data ConnData, m []float64, count []int64, fs, ft, j0, j1 int, progress func(rows int)) (int64, error) {
	const parts = 16
	nb := j1 - j0
	var tokens int64
	inv := []float64{}
	err := data(ctx, func(b ConnSources) error {
		rows := b.Tgt.Rows()
		if b.Src.Rows() != rows || len(b.Scale) != rows {
			return fmt.Errorf("connections: a batch of %d source rows, %d target rows and %d scales", b.Src.Rows(), rows, len(b.Scale))
		}
		inv = slices.Grow(inv[:0], rows)[:rows]
		for r, s := range b.Scale {
			if !(s > 0) || math.IsInf(float64(s), 0) {
				return fmt.Errorf("connections: token %d has ln2.hook_scale %g: want a positive finite scale", tokens+int64(r), s)
			}
			inv[r] = 1 / float64(s)
		}
		for _, a := range []struct {
			acts *transcoder.Acts
			n    int
			what string
		}{{b.Src, fs, "source"}, {b.Tgt, ft, "target"}} {
			for _, i := range a.acts.Indices {
				if i < 0 || int(i) >= a.n {
					return fmt.Errorf("connections: a %s feature index %d of %d features", a.what, i, a.n)
				}
			}
		}
		par.Jobs(min(parts, nb), 0, func(_, p int) {
			lo, hi := j0+p*nb/min(parts, nb), j0+(p+1)*nb/min(parts, nb)
			for r := 0; r < rows; r++ {
				tgt, _ := b.Tgt.Row(r)
				// Targets ascend within a row: skip to the part's.
				q := sort.Search(len(tgt), func(x int) bool { return int(tgt[x]) >= lo })
				if q == len(tgt) || int(tgt[q]) >= hi {
					continue
				}
				src, val := b.Src.Row(r)
				for ; q < len(tgt) && int(tgt[q]) < hi; q++ {
					j := int(tgt[q])
					count[j]++
					row := m[(j-j0)*fs : (j-j0+1)*fs]
					for x, i := range src {
						row[i] += float64(val[x]) * inv[r]
					}
				}
			}
		})
		tokens += int64(rows)
		progress(rows)
		return nil
	})
	return tokens, err
}

// connScratch is one worker's buffers for finishing a target.
type connScratch struct {
	abar         []float64 // (F_s) Ā_·j
	idxV, idxA   []int32   // (K)
	magV, magA   []float64 // (K)
	union        []int32
	x, y, rx, ry []float64
	order        []int
}

func newConnScratch(fs, k int) connScratch {
	return connScratch{abar: make([]float64, fs), idxV: make([]int32, k), idxA: make([]int32, k),
		magV: make([]float64, k), magA: make([]float64, k)}
}

// finish fills target j's lists and statistics from its row of V (F_s)
// and its row of M's sums (F_s).
func (res *ConnResult) finish(s *connScratch, j int, v []float32, msum []float64) {
	k, cnt := res.K, res.Count[j]
	nv := topAbs(v, nil, s.idxV, s.magV, false)
	na := 0
	total := math.NaN()
	if cnt > 0 {
		total = 0
		for i := range v {
			a := float64(v[i])*msum[i]/float64(cnt) + 0 // −0 → 0
			s.abar[i] = a
			total += math.Abs(a)
		}
		na = topAbs(nil, s.abar, s.idxA, s.magA, true)
	}
	abarOf := func(i int32) float32 {
		if cnt == 0 {
			return float32(math.NaN())
		}
		return float32(s.abar[i])
	}
	fill := func(l *ConnList, idx []int32, n int) {
		row := j * k
		for q := 0; q < k; q++ {
			if q < n {
				i := idx[q]
				l.Index[row+q], l.V[row+q], l.Abar[row+q] = i, v[i], abarOf(i)
			} else {
				l.Index[row+q], l.V[row+q], l.Abar[row+q] = -1, float32(math.NaN()), float32(math.NaN())
			}
		}
	}
	fill(&res.ByV, s.idxV, nv)
	fill(&res.ByAbar, s.idxA, na)
	res.AbsAbarSum[j] = total
	res.ShareTopV[j], res.Spearman[j] = math.NaN(), math.NaN()
	if cnt == 0 {
		return
	}
	if total > 0 {
		var top float64
		for _, i := range s.idxV[:nv] {
			top += math.Abs(s.abar[i])
		}
		res.ShareTopV[j] = top / total
	}
	// The union of the two lists, ascending.
	s.union = append(append(s.union[:0], s.idxV[:nv]...), s.idxA[:na]...)
	slices.Sort(s.union)
	s.union = slices.Compact(s.union)
	s.x, s.y = s.x[:0], s.y[:0]
	for _, i := range s.union {
		s.x, s.y = append(s.x, float64(v[i])), append(s.y, s.abar[i])
	}
	res.Spearman[j] = spearman(s.x, s.y, &s.rx, &s.ry, &s.order)
}

// topAbs fills idx (K) with the indices of the entries of largest
// magnitude of v32 (or v64 when v32 is nil), larger first, ties to the
// lower index, and mag with their magnitudes; with nonzero only entries ≠
// 0 count. It returns how many it filled.
func topAbs(v32 []float32, v64 []float64, idx []int32, mag []float64, nonzero bool) int {
	k := len(idx)
	n := len(v64)
	if v32 != nil {
		n = len(v32)
	}
	filled := 0
	for i := 0; i < n; i++ {
		var a float64
		if v32 != nil {
			a = math.Abs(float64(v32[i]))
		} else {
			a = math.Abs(v64[i])
		}
		if (nonzero && a == 0) || (filled == k && !(a > mag[k-1])) {
			continue
		}
		p := min(filled, k-1)
		for p > 0 && mag[p-1] < a {
			idx[p], mag[p] = idx[p-1], mag[p-1]
			p--
		}
		idx[p], mag[p] = int32(i), a
		if filled < k {
			filled++
		}
	}
	return filled
}

// spearman returns the Spearman correlation of x and y: the Pearson
// correlation of their ranks, tied values sharing their average rank. NaN
// for fewer than two values or ranks that are all equal. rx, ry and order
// are scratch.
func spearman(x, y []float64, rx, ry *[]float64, order *[]int) float64 {
	n := len(x)
	if n < 2 {
		return math.NaN()
	}
	*rx, *ry = averageRanks(x, (*rx)[:0], order), averageRanks(y, (*ry)[:0], order)
	return pearson(*rx, *ry)
}

// averageRanks appends to dst the ranks (1-based) of v's entries, ties
// sharing the mean of the ranks they span.
func averageRanks(v, dst []float64, order *[]int) []float64 {
	n := len(v)
	o := (*order)[:0]
	for i := range n {
		o = append(o, i)
	}
	sort.SliceStable(o, func(a, b int) bool { return v[o[a]] < v[o[b]] })
	*order = o
	dst = slices.Grow(dst, n)[:n]
	for a := 0; a < n; {
		b := a + 1
		for b < n && v[o[b]] == v[o[a]] {
			b++
		}
		r := float64(a+b+1) / 2 // mean of ranks a+1 .. b
		for q := a; q < b; q++ {
			dst[o[q]] = r
		}
		a = b
	}
	return dst
}

// pearson returns the Pearson correlation of x and y, NaN when either is
// constant.
func pearson(x, y []float64) float64 {
	n := float64(len(x))
	var mx, my float64
	for i := range x {
		mx, my = mx+x[i], my+y[i]
	}
	mx, my = mx/n, my/n
	var sxy, sxx, syy float64
	for i := range x {
		dx, dy := x[i]-mx, y[i]-my
		sxy, sxx, syy = sxy+dx*dy, sxx+dx*dx, syy+dy*dy
	}
	if sxx == 0 || syy == 0 {
		return math.NaN()
	}
	return sxy / math.Sqrt(sxx*syy)
}

// ConnBatchSequences is the sequences per batch of CacheConnData.
const ConnBatchSequences = 16

// CacheConnData is the ConnData of two caches of one layer set: src's
// acts (layer l), tgt's acts and scale (layer l′), read with two Readers
// in lockstep. The caches must hold the same rows (a layer set's caches
// do; it is checked batch by batch, by sequence numbers and tokens), and
// tgt must store the scale. encSrc and encTgt, when set, encode x with
// the layer's transcoder instead of the stored acts (caches built
// without --with-acts, or with another transcoder); each pass then
// encodes again.
func CacheConnData(src, tgt *actcache.Cache, encSrc, encTgt *transcoder.Encoder) (ConnData, error) {
	ms, mt := src.Manifest, tgt.Manifest
	switch {
	case ms.NSequences != mt.NSequences || ms.ContextLength != mt.ContextLength || ms.Data.FirstRow != mt.Data.FirstRow:
		return nil, fmt.Errorf("connections: the caches %s (%d sequences of %d tokens) and %s (%d of %d) do not hold the same rows: use two layers of one layer set", src.Dir, ms.NSequences, ms.ContextLength, tgt.Dir, mt.NSequences, mt.ContextLength)
	case !mt.WithScale:
		return nil, fmt.Errorf("connections: the cache %s stores no ln2.hook_scale (it is not a layer of a layer set built by this ctxdep): rebuild it with `ctxdep cache build --layers L,L′ …`", tgt.Dir)
	case encSrc == nil && !ms.WithActs:
		return nil, fmt.Errorf("connections: the cache %s stores no activations and no encoder was given", src.Dir)
	case encTgt == nil && !mt.WithActs:
		return nil, fmt.Errorf("connections: the cache %s stores no activations and no encoder was given", tgt.Dir)
	}
	return func(ctx context.Context, visit func(b ConnSources) error) error {
		rs, err := src.NewReader(ctx, actcache.ReadOptions{Encoder: encSrc})
		if err != nil {
			return err
		}
		defer rs.Close()
		rt, err := tgt.NewReader(ctx, actcache.ReadOptions{Encoder: encTgt})
		if err != nil {
			return err
		}
		defer rt.Close()
		for {
			bs, errS := rs.Next(ConnBatchSequences)
			bt, errT := rt.Next(ConnBatchSequences)
			if errS == io.EOF && errT == io.EOF {
				return nil
			}
			if err := errors.Join(eofNil(errS), eofNil(errT)); err != nil {
				return err
			}
			if errS != nil || errT != nil || bs.First != bt.First || bs.N != bt.N || !slices.Equal(bs.Tokens, bt.Tokens) {
				return fmt.Errorf("connections: the caches %s and %s hold different rows: use two layers of one layer set", src.Dir, tgt.Dir)
			}
			if bt.Scale == nil {
				return fmt.Errorf("connections: the cache %s has a shard without ln2.hook_scale", tgt.Dir)
			}
			if err := visit(ConnSources{Src: bs.Acts, Tgt: bt.Acts, Scale: bt.Scale}); err != nil {
				return err
			}
		}
	}, nil
}

func eofNil(err error) error {
	if err == io.EOF {
		return nil
	}
	return err
}

// Output files of `ctxdep connections`, in its --out directory.
const (
	ConnCSV          = "connections.csv"
	ConnSafetensors  = "connections.safetensors"
	ConnSummaryFile  = "summary.json"
	ConnMarkdown     = "index.md"
	plotConnSpearman = "spearman_hist.png"
	plotConnShare    = "share_topk_v_hist.png"
)

// connFiles are the names a connections directory may hold.
var connFiles = []string{ConnCSV, ConnSafetensors, ConnSummaryFile, ConnMarkdown, plotConnSpearman, plotConnShare}

// connHistBins is the number of bins of the summary's histograms.
const connHistBins = 20

// ConnDist summarises one statistic over the targets where it is defined.
type ConnDist struct {
	N      int       `json:"n"`      // targets with a value
	NaN    int       `json:"nan"`    // targets without (never fire, or undefined)
	Mean   float64   `json:"mean"`   // NaN when N = 0 (null in JSON)
	Median float64   `json:"median"` // NaN when N = 0 (null in JSON)
	Q10    float64   `json:"q10"`    // 10% quantile (linear interpolation between order statistics, as numpy.quantile)
	Q90    float64   `json:"q90"`
	Lo     float64   `json:"lo"` // the histogram's range
	Hi     float64   `json:"hi"`
	Counts []int     `json:"counts"` // connHistBins equal bins over [lo, hi]; the last includes hi
	Edges  []float64 `json:"edges"`  // the bins' connHistBins+1 edges
}

// connDistJSON is ConnDist as JSON: the mean and quantiles are null where
// they are NaN (no target has a value), as JSON has no NaN.
type connDistJSON struct {
	connDistPlain
	Mean   *float64 `json:"mean"`
	Median *float64 `json:"median"`
	Q10    *float64 `json:"q10"`
	Q90    *float64 `json:"q90"`
}

// connDistPlain is ConnDist without its JSON methods.
type connDistPlain ConnDist

// MarshalJSON writes d with null for a NaN mean or quantile.
func (d ConnDist) MarshalJSON() ([]byte, error) {
	num := func(x float64) *float64 {
		if math.IsNaN(x) {
			return nil
		}
		return &x
	}
	return json.Marshal(connDistJSON{connDistPlain(d), num(d.Mean), num(d.Median), num(d.Q10), num(d.Q90)})
}

// UnmarshalJSON reads what MarshalJSON writes: null is NaN.
func (d *ConnDist) UnmarshalJSON(b []byte) error {
	var v connDistJSON
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	val := func(p *float64) float64 {
		if p == nil {
			return math.NaN()
		}
		return *p
	}
	*d = ConnDist(v.connDistPlain)
	d.Mean, d.Median, d.Q10, d.Q90 = val(v.Mean), val(v.Median), val(v.Q10), val(v.Q90)
	return nil
}

// ConnSummary is summary.json, also the safetensors file's "summary"
// metadata.
type ConnSummary struct {
	Format         string      `json:"format"` // "ctxdep-connections"
	SourceLayer    int         `json:"source_layer"`
	TargetLayer    int         `json:"target_layer"`
	Sources        int         `json:"sources"` // F_s
	Targets        int         `json:"targets"` // F_t
	DModel         int         `json:"d_model"`
	TopK           int         `json:"top_k"`
	Block          int         `json:"block"`  // targets per pass
	Passes         int         `json:"passes"` // passes over the cache
	Tokens         int64       `json:"tokens"`
	TargetsFiring  int         `json:"targets_firing"`
	Spearman       ConnDist    `json:"spearman"`
	ShareTopV      ConnDist    `json:"share_topk_v"`
	Cache          string      `json:"cache"`
	Seconds        float64     `json:"seconds,omitempty"`
	Definitions    string      `json:"definitions"`
	Provenance     *Provenance `json:"provenance,omitempty"`
	TieBreaking    string      `json:"tie_breaking"`
	CSVListsFormat string      `json:"csv_lists_format"`
}

const connDefinitions = "A_ij(t) = acts_i^l(t)·V_ij/s^l'(t), V_ij = c(W_dec^l[i])·W_enc^l'[:, j] (c: minus the mean over d_model), " +
	"s^l'(t) = blocks.l'.ln2.hook_scale; Abar_ij = mean of A_ij(t) over the tokens where target j fires. " +
	"spearman: rank correlation (average ranks for ties) of V_.j and Abar_.j over the union of the top-k sources by |V| and by |Abar|; " +
	"share_topk_v: sum over the top-k sources by |V| of |Abar_ij| / sum over all sources of |Abar_ij|."

const connTies = "top-k lists: larger magnitude first, ties to the lower source index; the |Abar| list holds only sources with Abar != 0 (unused slots: index -1, values NaN)"

const connListsFormat = "top_v and top_abar: entries 'i:V:Abar' (source index, V_ij, Abar_ij) joined by ';', in rank order; empty when there is none"

// NewConnSummary summarises res.
func NewConnSummary(res *ConnResult, srcLayer, tgtLayer int, cache string) ConnSummary {
	s := ConnSummary{Format: "ctxdep-connections", SourceLayer: srcLayer, TargetLayer: tgtLayer, Sources: res.Fs, Targets: res.Ft,
		DModel: res.C, TopK: res.K, Block: res.Block, Passes: res.Passes, Tokens: res.Tokens, Cache: cache,
		Definitions: connDefinitions, TieBreaking: connTies, CSVListsFormat: connListsFormat}
	for _, c := range res.Count {
		if c > 0 {
			s.TargetsFiring++
		}
	}
	s.Spearman = connDist(res.Spearman, -1, 1)
	s.ShareTopV = connDist(res.ShareTopV, 0, 1)
	return s
}

func connDist(v []float64, lo, hi float64) ConnDist {
	d := ConnDist{Lo: lo, Hi: hi, Counts: make([]int, connHistBins), Edges: make([]float64, connHistBins+1)}
	for b := range d.Edges {
		d.Edges[b] = lo + (hi-lo)*float64(b)/connHistBins
	}
	var ok []float64
	for _, x := range v {
		if math.IsNaN(x) {
			d.NaN++
			continue
		}
		ok = append(ok, x)
		b := int((x - lo) / (hi - lo) * connHistBins)
		d.Counts[min(max(b, 0), connHistBins-1)]++
	}
	d.N = len(ok)
	d.Mean, d.Median, d.Q10, d.Q90 = math.NaN(), math.NaN(), math.NaN(), math.NaN()
	if d.N > 0 {
		slices.Sort(ok)
		d.Mean = mean(ok)
		// Linear interpolation between order statistics, as the report's
		// quantiles and numpy's default.
		d.Median, d.Q10, d.Q90 = quantile(ok, 0.5), quantile(ok, 0.1), quantile(ok, 0.9)
	}
	return d
}

// connectionsDir is connections' --out: written as a whole
// (internal/atomicdir), replacing only an earlier run's output and only
// with force.
func connectionsDir(force bool) atomicdir.Spec {
	return atomicdir.Spec{What: "connections", Replaceable: func(dir string) error { return connReplaceable(dir, force) }}
}

// CheckConnectionsOut applies the rules of connections' --out DIR before
// any work: never a cache, a layer set or a directory inside a cache; a
// directory that can be written; an existing directory only when it holds
// nothing but an earlier run's files, and only with force.
func CheckConnectionsOut(dir string, force bool) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if err := actcache.CheckOutside("--out "+dir, abs); err != nil {
		return err
	}
	return connectionsDir(force).Check(dir)
}

// connReplaceable returns nil when the directory dir is empty, or holds
// only an earlier run's files and force is set.
func connReplaceable(dir string, force bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		return nil
	}
	for _, e := range entries {
		name := e.Name()
		if base, ok := atomicfile.ParseTempName(name); ok {
			name = base
		}
		if !e.Type().IsRegular() || !slices.Contains(connFiles, name) {
			return fmt.Errorf("--out %s holds %s, which is not an output of ctxdep connections: choose a new directory", dir, e.Name())
		}
	}
	if !force {
		return fmt.Errorf("--out %s holds an earlier run's output: pass --force to replace it, or choose a new directory", dir)
	}
	return nil
}

// WriteConnections writes res into dir as a whole (internal/atomicdir: a
// failure leaves an earlier run's output as it was; one is replaced only
// with force): connections.csv, connections.safetensors, summary.json,
// the two histograms and index.md. It returns the files' names.
func WriteConnections(dir string, force bool, res *ConnResult, sum ConnSummary) ([]string, error) {
	var written []string
	err := connectionsDir(force).Write(dir, func(tmp string) (err error) {
		written, err = writeConnFiles(tmp, res, sum)
		return err
	})
	if err != nil {
		return nil, err
	}
	return written, nil
}

// writeConnFiles writes WriteConnections' files into dir, which exists.
func writeConnFiles(dir string, res *ConnResult, sum ConnSummary) ([]string, error) {
	var written []string
	write := func(name string, data []byte) error {
		if err := atomicfile.WriteFile(filepath.Join(dir, name), data); err != nil {
			return err
		}
		written = append(written, name)
		return nil
	}
	if err := write(ConnCSV, connCSV(res)); err != nil {
		return nil, err
	}
	sj, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeConnSafetensors(filepath.Join(dir, ConnSafetensors), res, sum); err != nil {
		return nil, err
	}
	written = append(written, ConnSafetensors)
	if err := write(ConnSummaryFile, append(sj, '\n')); err != nil {
		return nil, err
	}
	ok := finite(res.Spearman)
	png, tallest := histogram(ok, -1, 1, connHistBins, fmt.Sprintf("Spearman(V, Ā) per target feature, layer %d → %d", sum.SourceLayer, sum.TargetLayer), "Spearman correlation over the union of the top-k sources")
	spCaption := fmt.Sprintf("%d targets; tallest bin %s", len(ok), tallest)
	if err := write(plotConnSpearman, png); err != nil {
		return nil, err
	}
	ok = finite(res.ShareTopV)
	png, tallest = histogram(ok, 0, 1, connHistBins, fmt.Sprintf("Share of Σ|Ā| captured by the top-%d sources by |V|", sum.TopK), "share_topk_v")
	shCaption := fmt.Sprintf("%d targets; tallest bin %s", len(ok), tallest)
	if err := write(plotConnShare, png); err != nil {
		return nil, err
	}
	if err := write(ConnMarkdown, connMarkdown(res, sum, spCaption, shCaption)); err != nil {
		return nil, err
	}
	return written, nil
}

// connCSVHeader is connections.csv's header.
var connCSVHeader = []string{"target", "count", "spearman", "share_topk_v", "abs_abar_sum", "top_v", "top_abar"}

func connCSV(res *ConnResult) []byte {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write(connCSVHeader)
	for j := 0; j < res.Ft; j++ {
		w.Write([]string{strconv.Itoa(j), strconv.FormatInt(res.Count[j], 10), fmtF(res.Spearman[j]), fmtF(res.ShareTopV[j]),
			fmtF(res.AbsAbarSum[j]), connListText(&res.ByV, j, res.K), connListText(&res.ByAbar, j, res.K)})
	}
	w.Flush()
	return b.Bytes()
}

// connListText is target j's list as "i:V:Abar;…".
func connListText(l *ConnList, j, k int) string {
	var parts []string
	for q := j * k; q < (j+1)*k; q++ {
		if l.Index[q] < 0 {
			break
		}
		parts = append(parts, fmt.Sprintf("%d:%s:%s", l.Index[q], connF32(l.V[q]), connF32(l.Abar[q])))
	}
	return strings.Join(parts, ";")
}

func connF32(v float32) string {
	if math.IsNaN(float64(v)) {
		return "NaN"
	}
	return strconv.FormatFloat(float64(v), 'g', -1, 32)
}

func writeConnSafetensors(path string, res *ConnResult, sum ConnSummary) error {
	ft, k := res.Ft, res.K
	i32 := func(v []int32) []byte { return safetensors.IntBytes(nil, v) }
	i64 := safetensors.IntBytes(nil, res.Count)
	f := func(v []float32) []byte { return safetensors.Float32Bytes(nil, v) }
	tensors := []safetensors.Tensor{
		{Name: "count", DType: safetensors.I64, Shape: []int{ft}, Data: i64},
		{Name: "spearman", DType: safetensors.F32, Shape: []int{ft}, Data: f(dtype.Float32s(res.Spearman))},
		{Name: "share_topk_v", DType: safetensors.F32, Shape: []int{ft}, Data: f(dtype.Float32s(res.ShareTopV))},
		{Name: "abs_abar_sum", DType: safetensors.F32, Shape: []int{ft}, Data: f(dtype.Float32s(res.AbsAbarSum))},
		{Name: "top_v.index", DType: safetensors.I32, Shape: []int{ft, k}, Data: i32(res.ByV.Index)},
		{Name: "top_v.v", DType: safetensors.F32, Shape: []int{ft, k}, Data: f(res.ByV.V)},
		{Name: "top_v.abar", DType: safetensors.F32, Shape: []int{ft, k}, Data: f(res.ByV.Abar)},
		{Name: "top_abar.index", DType: safetensors.I32, Shape: []int{ft, k}, Data: i32(res.ByAbar.Index)},
		{Name: "top_abar.v", DType: safetensors.F32, Shape: []int{ft, k}, Data: f(res.ByAbar.V)},
		{Name: "top_abar.abar", DType: safetensors.F32, Shape: []int{ft, k}, Data: f(res.ByAbar.Abar)},
	}
	sj, err := json.Marshal(sum)
	if err != nil {
		return err
	}
	md := map[string]string{"format": "ctxdep-connections", "summary": string(sj)}
	if p := sum.Provenance; p != nil {
		md["ctxdep_version"] = p.CtxdepVersion
	}
	return safetensors.WriteFile(path, tensors, md)
}

// connRankRows is how many targets index.md's two rankings list.
const connRankRows = 15

func connMarkdown(res *ConnResult, s ConnSummary, spCaption, shCaption string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Connections: layer %d → layer %d\n\n", s.SourceLayer, s.TargetLayer)
	fmt.Fprintf(&b, "Cache `%s`: %d tokens; %d source features (layer %d), %d target features (layer %d), of which %d fire; top-k %d; %d pass(es) over the cache, %d targets per pass.\n\n",
		s.Cache, s.Tokens, s.Sources, s.SourceLayer, s.Targets, s.TargetLayer, s.TargetsFiring, s.TopK, s.Passes, s.Block)
	b.WriteString("## What the numbers mean\n\n")
	b.WriteString("For source feature i of layer l and target feature j of layer l′, V_ij = c(W_dec^l[i]) · W_enc^l′[:, j] is the **virtual weight**: " +
		"how much one unit of i adds to j's pre-activation through the residual stream, from the weights alone (c subtracts the mean over d_model, " +
		"the centring of the next LayerNorm; the LayerNorm's scale is left out). Ā_ij is the **average attribution**: the mean over the tokens where j fires " +
		"of acts_i(t) · V_ij / s(t), with s(t) the LayerNorm scale blocks.l′.ln2.hook_scale — what i actually contributed, weighted by how often and how strongly it was active.\n\n")
	b.WriteString("- `spearman`: the rank correlation of V and Ā over the union of j's top-k sources by |V| and by |Ā|. Near 1: the sources the weights rank highest are those that drive j in the data.\n")
	b.WriteString("- `share_topk_v`: the share of Σ_i |Ā_ij| (over all sources) that the top-k sources by |V| carry. Near 1: j's input from layer l is concentrated on the connections its weights predict.\n\n")
	b.WriteString("High values of both mean j's inputs are predictable from the weights alone: context-independent connections. Low values mean the sources that matter are picked by the data " +
		"(which features co-occur, and how strongly) rather than by the size of the weights. Both are NaN for a target that never fires. " +
		"Ā_ij always has the sign of V_ij (it is V_ij times a mean of positive activations over scales), so the signed spearman credits sign agreement that holds by construction " +
		"and runs higher than share_topk_v suggests; read share_topk_v as the stricter measure.\n\n")
	b.WriteString("## Summary\n\n" + mdHeader("statistic", "targets", "NaN", "mean", "median", "10%", "90%"))
	for _, r := range []struct {
		name string
		d    ConnDist
	}{{"spearman", s.Spearman}, {"share_topk_v", s.ShareTopV}} {
		b.WriteString(mdRow(r.name, strconv.Itoa(r.d.N), strconv.Itoa(r.d.NaN), connMD(r.d.Mean), connMD(r.d.Median), connMD(r.d.Q10), connMD(r.d.Q90)))
	}
	fmt.Fprintf(&b, "\n![Spearman histogram](%s)\n\n%s.\n\n![share histogram](%s)\n\n%s.\n\n", plotConnSpearman, spCaption, plotConnShare, shCaption)
	var firing []int
	for j, c := range res.Count {
		if c > 0 && !math.IsNaN(res.ShareTopV[j]) {
			firing = append(firing, j)
		}
	}
	slices.SortStableFunc(firing, func(a, c int) int { return cmp.Compare(res.ShareTopV[c], res.ShareTopV[a]) })
	table := func(title string, js []int) {
		fmt.Fprintf(&b, "## %s\n\n%s", title, mdHeader("target", "count", "share_topk_v", "spearman", "strongest sources by |V|", "strongest sources by |Ā|"))
		for _, j := range js {
			b.WriteString(mdRow(strconv.Itoa(j), strconv.FormatInt(res.Count[j], 10), connMD(res.ShareTopV[j]), connMD(res.Spearman[j]),
				connFirst(&res.ByV, j, res.K), connFirst(&res.ByAbar, j, res.K)))
		}
		b.WriteString("\n")
	}
	n := min(connRankRows, len(firing))
	table("Targets most predictable from the weights (highest share_topk_v)", firing[:n])
	low := slices.Clone(firing[len(firing)-n:])
	slices.Reverse(low)
	table("Targets least predictable from the weights (lowest share_topk_v)", low)
	fmt.Fprintf(&b, "Files: `%s` (one row per target; %s), `%s` (count, spearman, share_topk_v, abs_abar_sum [F_t]; top_v.{index,v,abar} and top_abar.{index,v,abar} [F_t, k]), `%s`.\n",
		ConnCSV, connListsFormat, ConnSafetensors, ConnSummaryFile)
	return b.Bytes()
}

// connFirst lists the first three sources of target j's list.
func connFirst(l *ConnList, j, k int) string {
	var parts []string
	for q := j * k; q < j*k+min(k, 3); q++ {
		if l.Index[q] < 0 {
			break
		}
		parts = append(parts, fmt.Sprintf("%d (V %.3g, Ā %.3g)", l.Index[q], l.V[q], l.Abar[q]))
	}
	if parts == nil {
		return "—"
	}
	return strings.Join(parts, ", ")
}

func connMD(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}
