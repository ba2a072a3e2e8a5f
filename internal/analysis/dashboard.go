package analysis

import (
	"cmp"
	"math"
	"math/bits"
	"slices"

	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// Per-feature dashboards, gathered in the report's one pass over the cache
// with bounded memory: for each feature, a fixed number of examples (each
// a window of tokens around one firing) and a fixed-size histogram,
// whatever the size of the cache.
//
//	top        the --examples firings of largest activation (a min-heap of
//	           that size; ties to the lower row, then the lower position).
//	quantile   a uniform random sample (reservoir sampling, Algorithm R,
//	           reservoirSize firings, with a deterministic hash of the feature
//	           and the firing's index for the draws, so that a rerun gives
//	           the same sample) from which the firings at the sample's
//	           quantiles quantileLevels are shown: the typical firing, not
//	           only the maximum. While a feature has fired at most
//	           reservoirSize times the reservoir holds every firing and the
//	           quantiles are exact: level q shows the sorted sample's element
//	           round(q·(n−1)) (halves away from zero).
//	neuron_on, neuron_off
//	           for each of the feature's first dashNeurons top neurons, a
//	           uniform sample (reservoir, neuronExamples each) of the firings
//	           on which the neuron is active and of those on which it is not:
//	           the evidence behind P(active | f).
//	histogram  counts of the feature's activations in bins of a quarter
//	           octave (four linear sub-bins of each power of two) from
//	           2^histMinExp to 2^(histMinExp+histOctaves); activations
//	           outside go to the first or last bin.
//
// Memory: about 48 examples of ~130 bytes and 96 counters per feature
// that fires (about 6.5 KB; some 160 MB for 24,576 features); the finished
// dashboards take about as much, each feature's accumulator freed as its
// dashboard is made. --examples 0 turns the dashboards off.
const (
	exBefore       = 10 // tokens shown before the firing token
	exAfter        = 3  // and after it
	exWindow       = exBefore + 1 + exAfter
	reservoirSize  = 20
	dashNeurons    = 3
	neuronExamples = 3
	histMinExp     = -12
	histOctaves    = 24
	histBins       = 4 * histOctaves
	// DefaultExamples is the default --examples (top contexts per feature).
	DefaultExamples = 10
	// DefaultMinCount is the default --min-count of the rankings.
	DefaultMinCount = 20
	// DefaultPages is the default --pages: the most feature pages written.
	DefaultPages = 500
	// outputTokens is how many promoted and suppressed tokens a page lists.
	outputTokens = 10
)

// quantileLevels are the sample quantiles the quantile examples show.
var quantileLevels = []float64{0.1, 0.3, 0.5, 0.7, 0.9}

// Example kinds in examples.jsonl.
const (
	KindTop       = "top"
	KindQuantile  = "quantile"
	KindNeuronOn  = "neuron_on"
	KindNeuronOff = "neuron_off"
)

// example is one firing and its window, as gathered.
type example struct {
	act      float32
	row, pos int32 // the cache's sequence and the position in it
	start    int32 // the window's first position
	n        int32 // tokens in the window
	tokens   [exWindow]int32
	acts     [exWindow]float32 // the feature's activation on each
}

// better orders firings for the top examples: the larger activation, then
// the lower row, then the lower position.
func better(a, b *example) bool { return betterKey(a.act, a.row, a.pos, b) }

// betterKey is better for a firing not yet made into an example.
func betterKey(act float32, row, pos int32, b *example) bool {
	if act != b.act {
		return act > b.act
	}
	if row != b.row {
		return row < b.row
	}
	return pos < b.pos
}

// featureAcc is one feature's dashboard accumulator.
type featureAcc struct {
	top        []example // min-heap under better: top[0] is the worst kept
	res        []example
	neuron     [dashNeurons][2][]example // [j][0]: neuron off, [j][1]: on
	hist       [histBins]uint32
	sumAct     float64
	maxAct     float32
	seen       int64                 // firings so far
	neuronSeen [dashNeurons][2]int64 // firings per neuron state so far
}

// dashAcc gathers the dashboards of all F features.
type dashAcc struct {
	topK  int
	k     int // top neurons per feature in the report
	kn    int // neurons with examples: min(k, dashNeurons)
	feats []*featureAcc
}

func newDashAcc(f, topK, k int) *dashAcc {
	return &dashAcc{topK: topK, k: k, kn: min(k, dashNeurons), feats: make([]*featureAcc, f)}
}

// window is what add needs to cut a firing's window: the batch's tokens
// and acts, its first sequence and the context length.
type window struct {
	tokens []int32
	acts   *transcoder.Acts
	first  int
	t      int
}

// fill sets e's row, position and window for batch row r and feature f.
func (w *window) fill(e *example, r int, f int32, act float32) {
	seq, pos := r/w.t, r%w.t
	lo, hi := max(0, pos-exBefore), min(w.t-1, pos+exAfter)
	e.act, e.row, e.pos, e.start, e.n = act, int32(w.first+seq), int32(pos), int32(lo), int32(hi-lo+1)
	base := seq * w.t
	for i := 0; i <= hi-lo; i++ {
		rr := base + lo + i
		e.tokens[i] = w.tokens[rr]
		e.acts[i] = 0
		idx, val := w.acts.Row(rr)
		if j, ok := slices.BinarySearch(idx, f); ok && j < len(idx) {
			e.acts[i] = val[j]
		} else {
			for j, fi := range idx { // unsorted rows, should a cache hold them
				if fi == f {
					e.acts[i] = val[j]
					break
				}
			}
		}
	}
}

// mix is splitmix64's finaliser: the deterministic "random" draws of the
// reservoirs.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// reservoirSlot returns where the i-th item (0-based) of a stream goes in a
// reservoir of size m: i itself while i < m, else a uniform draw from
// [0, i] that is kept only when < m (-1: not kept).
func reservoirSlot(i int64, m int, salt uint64) int {
	if i < int64(m) {
		return int(i)
	}
	hi, _ := bits.Mul64(mix(salt^mix(uint64(i))), uint64(i)+1)
	if hi < uint64(m) {
		return int(hi)
	}
	return -1
}

// histBin returns v's bin: a quarter octave, linear within each octave.
func histBin(v float32) int {
	b := math.Float32bits(v)
	e := int(b>>23&0xff) - 127
	if e < histMinExp {
		return 0
	}
	if e >= histMinExp+histOctaves {
		return histBins - 1
	}
	return (e-histMinExp)*4 + int(b>>21&3)
}

// histEdge is bin i's lower edge.
func histEdge(i int) float64 {
	return math.Ldexp(1+float64(i%4)/4, histMinExp+i/4)
}

// add takes one batch: the window's acts (M rows) and pre, the midcoder's
// pre-activations (M, N); neurons are the report's top neurons (F, k).
func (d *dashAcc) add(w *window, pre []float32, n int, neurons []int32) {
	acts := w.acts
	for r := 0; r < acts.Rows(); r++ {
		idx, val := acts.Row(r)
		pr := pre[r*n : (r+1)*n]
		for i, fi := range idx {
			v := val[i]
			if !(v > 0) {
				continue
			}
			fa := d.feats[fi]
			if fa == nil {
				fa = &featureAcc{top: make([]example, 0, d.topK)}
				d.feats[fi] = fa
			}
			fa.add(w, r, fi, v, d.topK)
			nb := neurons[int(fi)*d.k : int(fi)*d.k+d.kn]
			for j, nn := range nb {
				s := 0
				if pr[nn] > 0 {
					s = 1
				}
				cnt := &fa.neuronSeen[j][s]
				slot := reservoirSlot(*cnt, neuronExamples, uint64(fi)<<8|uint64(j)<<1|uint64(s)|1<<7)
				*cnt++
				if slot < 0 {
					continue
				}
				ex := &fa.neuron[j][s]
				if slot == len(*ex) {
					*ex = append(*ex, example{})
				}
				w.fill(&(*ex)[slot], r, fi, v)
			}
		}
	}
}

// add takes one firing of feature f (activation v > 0) on batch row r.
func (fa *featureAcc) add(w *window, r int, f int32, v float32, topK int) {
	nth := fa.seen
	fa.seen++
	fa.sumAct += float64(v)
	fa.maxAct = max(fa.maxAct, v)
	fa.hist[histBin(v)]++
	row, pos := int32(w.first+r/w.t), int32(r%w.t)
	// Top: a min-heap of the topK best under better.
	if len(fa.top) < topK {
		fa.top = append(fa.top, example{})
		w.fill(&fa.top[len(fa.top)-1], r, f, v)
		heapUp(fa.top, len(fa.top)-1)
	} else if topK > 0 && betterKey(v, row, pos, &fa.top[0]) {
		w.fill(&fa.top[0], r, f, v)
		heapDown(fa.top, 0)
	}
	// Quantiles: a uniform sample.
	if slot := reservoirSlot(nth, reservoirSize, uint64(f)<<8); slot >= 0 {
		if slot == len(fa.res) {
			fa.res = append(fa.res, example{})
		}
		w.fill(&fa.res[slot], r, f, v)
	}
}

// heapUp and heapDown keep h a min-heap under better (h[0] the worst).
func heapUp(h []example, i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !better(&h[p], &h[i]) {
			return
		}
		h[p], h[i] = h[i], h[p]
		i = p
	}
}

func heapDown(h []example, i int) {
	for {
		l, worst := 2*i+1, i
		if l < len(h) && better(&h[worst], &h[l]) {
			worst = l
		}
		if r := l + 1; r < len(h) && better(&h[worst], &h[r]) {
			worst = r
		}
		if worst == i {
			return
		}
		h[i], h[worst] = h[worst], h[i]
		i = worst
	}
}

// sortBest sorts examples best first (better).
func sortBest(e []example) {
	slices.SortFunc(e, func(a, b example) int {
		switch {
		case better(&a, &b):
			return -1
		case better(&b, &a):
			return 1
		}
		return 0
	})
}

// sortAscending sorts examples by activation, ties by row and position.
func sortAscending(e []example) {
	slices.SortFunc(e, func(a, b example) int {
		return cmp.Or(cmp.Compare(a.act, b.act), cmp.Compare(a.row, b.row), cmp.Compare(a.pos, b.pos))
	})
}

// Example is one firing of a feature shown on its dashboard and written
// to examples.jsonl.
type Example struct {
	Kind string
	Rank int // 0-based within the kind
	Row  int // the cache's sequence
	Pos  int // position in the sequence
	Act  float32
	// Start is the window's first position: Tokens[i] is at Start + i,
	// the firing token at index Pos − Start.
	Start    int
	Tokens   []int32
	Acts     []float32 // the feature's activation on each window token
	Quantile float64   // for KindQuantile: the sample quantile level
	Neuron   int32     // for KindNeuronOn/Off: the neuron (else −1)
}

// Index is the firing token's place in Tokens.
func (e *Example) Index() int { return e.Pos - e.Start }

// NeuronEvidence is one top neuron of a feature: P(active | f) with its
// interval, and examples of f firing with the neuron on and off.
type NeuronEvidence struct {
	Neuron    int32
	Drive     float32
	PActive   float64
	Lo, Hi    float64 // 95% Wilson score interval of PActive
	NOn, NOff int64   // firings of f with the neuron on, off
	On, Off   []Example
}

// Dashboard is one feature's dashboard.
type Dashboard struct {
	Feature   int
	Count     int64
	MeanAct   float64
	MaxAct    float32
	Top       []Example
	Quantiles []Example
	Neurons   []NeuronEvidence
	// Hist counts activations in quarter-octave bins: Hist[i] counts
	// [HistEdges[i], HistEdges[i+1]); bins below the lowest nonzero one and
	// above the highest are cut, HistEdges has len(Hist)+1 entries.
	Hist      []uint32
	HistEdges []float64
	// Output is the output-side view; nil for features without a page.
	Output *OutputView
}

// All returns the dashboard's examples in examples.jsonl's order: top,
// quantile, then for each neuron its on and off examples.
func (d *Dashboard) All() []Example {
	all := append(slices.Clone(d.Top), d.Quantiles...)
	var on, off []Example
	for _, ne := range d.Neurons {
		on = append(on, ne.On...)
		off = append(off, ne.Off...)
	}
	return append(append(all, on...), off...)
}

func toExample(e *example, kind string, rank int) Example {
	return Example{Kind: kind, Rank: rank, Row: int(e.row), Pos: int(e.pos), Act: e.act, Start: int(e.start),
		Tokens: slices.Clone(e.tokens[:e.n]), Acts: slices.Clone(e.acts[:e.n]), Neuron: -1}
}

// dashboard finishes feature f's dashboard; st is its table row.
func (d *dashAcc) dashboard(st *FeatureStat, on []int64) *Dashboard {
	fa := d.feats[st.Feature]
	db := &Dashboard{Feature: st.Feature, Count: st.Count}
	if fa == nil {
		return db
	}
	db.MeanAct, db.MaxAct = fa.sumAct/float64(fa.seen), fa.maxAct
	top := slices.Clone(fa.top)
	sortBest(top)
	for i := range top {
		db.Top = append(db.Top, toExample(&top[i], KindTop, i))
	}
	res := slices.Clone(fa.res)
	sortAscending(res)
	last := -1
	for _, q := range quantileLevels {
		i := int(math.Round(q * float64(len(res)-1)))
		if i == last {
			continue // few firings: two levels on one
		}
		last = i
		e := toExample(&res[i], KindQuantile, len(db.Quantiles))
		e.Quantile = q
		db.Quantiles = append(db.Quantiles, e)
	}
	// The neuron examples are ranked within kind across the neurons.
	var nOn, nOff int
	for j := 0; j < d.kn; j++ {
		ne := NeuronEvidence{Neuron: st.Neurons[j], Drive: st.Drive[j], PActive: st.PActive[j],
			NOn: on[st.Feature*d.k+j]}
		ne.NOff = st.Count - ne.NOn
		ne.Lo, ne.Hi = wilson(ne.NOn, st.Count)
		for s, dst := range []*[]Example{&ne.Off, &ne.On} {
			ex := slices.Clone(fa.neuron[j][s])
			sortBest(ex)
			for i := range ex {
				kind, rank := KindNeuronOff, &nOff
				if s == 1 {
					kind, rank = KindNeuronOn, &nOn
				}
				e := toExample(&ex[i], kind, *rank)
				e.Neuron = ne.Neuron
				*rank++
				*dst = append(*dst, e)
			}
		}
		db.Neurons = append(db.Neurons, ne)
	}
	lo, hi := -1, -1
	for i, c := range fa.hist {
		if c > 0 {
			if lo < 0 {
				lo = i
			}
			hi = i
		}
	}
	if lo >= 0 {
		db.Hist = slices.Clone(fa.hist[lo : hi+1])
		for i := lo; i <= hi+1; i++ {
			db.HistEdges = append(db.HistEdges, histEdge(i))
		}
	}
	return db
}

// wilsonZ is the normal quantile of the 95% intervals.
const wilsonZ = 1.959963984540054

// wilson returns the 95% Wilson score interval of the proportion x/n
// (NaN, NaN for n = 0).
func wilson(x, n int64) (lo, hi float64) {
	if n <= 0 {
		return math.NaN(), math.NaN()
	}
	nf, p, z2 := float64(n), float64(x)/float64(n), wilsonZ*wilsonZ
	c := (p + z2/(2*nf)) / (1 + z2/nf)
	h := wilsonZ / (1 + z2/nf) * math.Sqrt(p*(1-p)/nf+z2/(4*nf*nf))
	lo, hi = max(0, c-h), min(1, c+h)
	if x == 0 {
		lo = 0 // exactly, not c − h's rounding
	}
	if x == n {
		hi = 1
	}
	return lo, hi
}

// gatingBounds returns the range of |2p − 1| for p in [lo, hi].
func gatingBounds(lo, hi float64) (float64, float64) {
	a, b := math.Abs(2*lo-1), math.Abs(2*hi-1)
	if lo <= 0.5 && hi >= 0.5 {
		return 0, max(a, b)
	}
	return min(a, b), max(a, b)
}

// consistencyInterval is the interval of consistency_f: the mean over f's
// top-k neurons of the bounds of |2P − 1| as P ranges over its 95% Wilson
// interval. It holds consistency_f whenever every neuron's P lies in its
// own interval.
func consistencyInterval(on []int64, count int64) (float64, float64) {
	if count <= 0 {
		return math.NaN(), math.NaN()
	}
	var slo, shi float64
	for _, x := range on {
		l, h := wilson(x, count)
		a, b := gatingBounds(l, h)
		slo, shi = slo+a, shi+b
	}
	return slo / float64(len(on)), shi / float64(len(on))
}
