package cachebuild

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/kernels"
	"github.com/ctxdep/ctxdep/internal/progress"
	"github.com/ctxdep/ctxdep/internal/provenance"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// Rows is a source of token rows of equal length. npy.RowFile (a token
// file read by offset) is one; the text pipeline (tokenize_and_concatenate)
// plugs in here too.
type Rows interface {
	NumRows() int
	RowLen() int
	// Read copies rows [first, first+n) into dst (n·RowLen).
	Read(dst []int32, first, n int) error
}

// Int32Rows is an in-memory Rows.
type Int32Rows struct {
	Data []int32 // (R, T)
	T    int
}

func (r Int32Rows) NumRows() int { return len(r.Data) / r.T }
func (r Int32Rows) RowLen() int  { return r.T }
func (r Int32Rows) Read(dst []int32, first, n int) error {
	copy(dst, r.Data[first*r.T:(first+n)*r.T])
	return nil
}

// Capture receives one layer's values of a batch: x and y (B·T·C each,
// the caller's slices) and, when Acts is not nil, the layer's transcoder
// activations of x.
type Capture struct {
	X, Y  []float32
	Scale []float32 // (B·T) ln2.hook_scale, when not nil
	Acts  *transcoder.Acts
}

// Pass computes one batch of a build: for tokens (B·T), the values of
// each of its layers (ascending; out[i] for the pass's i-th layer). All
// layers come from one forward pass to the deepest. The CPU pass is
// NewCPUPass; the GPU backend's cuda.Forward is another.
type Pass interface {
	Run(tokens []int32, b, t int, out []Capture) error
}

// HostMemory is implemented by a Pass whose results reach the host faster
// in memory it allocates: a GPU copies into page-locked memory by DMA, on
// a stream of its own while it computes on. A build (and Measure)
// allocates its batches' x and y through it, and frees them when it ends.
type HostMemory interface {
	HostFloats(n int) ([]float32, error)
	FreeHostFloats([]float32)
}

// hostBuffers allocates the float32 buffers of a pass's captures: through
// HostMemory when the pass has it, up to limit bytes (0: no limit), else,
// or when that fails (page-locked memory is limited), in Go's memory, into
// which the pass copies as fast as it can. It counts what went where, for
// note.
type hostBuffers struct {
	hm       HostMemory
	limit    int64
	got      [][]float32
	pinned   int64 // bytes from HostMemory
	pageable int64 // bytes that fell back to Go's memory
	err      error // the first failed allocation's
}

func newHostBuffers(p Pass, limit int64) *hostBuffers {
	hm, _ := p.(HostMemory)
	return &hostBuffers{hm: hm, limit: limit}
}

// xy returns a capture's x and y buffers, n floats each: both page-locked
// or neither (a pass copies synchronously unless both are).
func (h *hostBuffers) xy(n int) (x, y []float32) {
	bytes := 8 * int64(n)
	if h.hm != nil && h.err == nil && (h.limit <= 0 || h.pinned+bytes <= h.limit) {
		if x, h.err = h.hm.HostFloats(n); h.err == nil {
			if y, h.err = h.hm.HostFloats(n); h.err == nil {
				h.got = append(h.got, x, y)
				h.pinned += bytes
				return x, y
			}
			h.hm.FreeHostFloats(x)
		}
		// Later captures go to Go's memory without asking again.
	}
	if h.hm != nil {
		h.pageable += bytes
	}
	return make([]float32, n), make([]float32, n)
}

// note says, when some buffers fell back to Go's memory, how much and
// why: copies into them are synchronous, so the build runs slower.
func (h *hostBuffers) note() string {
	if h.pageable == 0 {
		return ""
	}
	why := fmt.Sprintf("the limit of %s (half the memory this process may use)", mibText(h.limit))
	if h.err != nil {
		why = h.err.Error()
	}
	return fmt.Sprintf("note: %s of the batches' %s of host buffers are ordinary memory, not page-locked (%s): the device's copies into them are synchronous, which slows the build; a smaller --batch-size keeps them all page-locked",
		mibText(h.pageable), mibText(h.pinned+h.pageable), why)
}

func mibText(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// free releases what HostMemory gave.
func (h *hostBuffers) free() {
	for _, s := range h.got {
		h.hm.FreeHostFloats(s)
	}
	h.got = nil
}

// cpuPass is Pass on the CPU: gpt2.Model.RunToBlock to the deepest layer,
// watching the others' hooks, and transcoder.Encoder.Encode.
type cpuPass struct {
	m      *gpt2.Model
	layers []int
	ws     *gpt2.Workspace
	enc    []*transcoder.Encoder // per layer; nil: no transcoder
}

// NewCPUPass returns the CPU's Pass for batches of up to maxTokens tokens
// at layers (ascending, distinct); tcs, when not nil, holds each layer's
// transcoder (an entry may be nil when no activations are asked for).
func NewCPUPass(m *gpt2.Model, layers []int, tcs []*transcoder.Transcoder, maxTokens int) Pass {
	p := &cpuPass{m: m, layers: layers, ws: m.NewWorkspace(maxTokens), enc: make([]*transcoder.Encoder, len(layers))}
	for i, tc := range tcs {
		if tc != nil {
			p.enc[i] = tc.NewEncoder()
		}
	}
	return p
}

func (p *cpuPass) Run(tokens []int32, b, t int, out []Capture) error {
	if len(out) != len(p.layers) {
		return fmt.Errorf("cachebuild: %d captures for a pass of %d layers", len(out), len(p.layers))
	}
	n := b * t * p.m.DModel
	// Block l's x and y are the same numbers whether the pass stops there
	// or goes on: the blocks before it run the same GEMMs either way.
	hooks := &gpt2.Hooks{Observe: func(hook string, l int, v []float32) {
		i := slices.Index(p.layers, l)
		switch {
		case i < 0:
		case hook == "hook_resid_mid" && out[i].Scale != nil:
			kernels.LayerNormScale(out[i].Scale[:b*t], v, b*t, p.m.DModel, p.m.Eps)
		case hook == "ln2.hook_normalized":
			copy(out[i].X[:n], v)
		case hook == "hook_mlp_out":
			copy(out[i].Y[:n], v)
		}
	}}
	if _, _, err := p.m.RunToBlock(p.ws, tokens, b, t, p.layers[len(p.layers)-1], hooks); err != nil {
		return err
	}
	for i, c := range out {
		if c.Acts == nil {
			continue
		}
		if p.enc[i] == nil {
			return fmt.Errorf("cachebuild: activations asked of layer %d, which has no transcoder", p.layers[i])
		}
		p.enc[i].Encode(c.Acts, c.X[:n], b*t)
	}
	return nil
}

// Layer is one layer a build caches, into its own cache directory.
type Layer struct {
	Layer      int
	Out        string                 // the layer's cache directory
	Transcoder *transcoder.Transcoder // non-nil: store sparse acts (--with-acts)
	TransProv  *provenance.File
}

// dataName names the input in errors: its file, as the provenance has it.
func (o *Options) dataName() string {
	if o.DataProv.Path != "" {
		return o.DataProv.Path
	}
	return "the input"
}

// Options configures a build.
type Options struct {
	// Layers are cached from one forward pass per batch, each into its
	// own cache (ascending, distinct layers).
	Layers     []Layer
	Model      *gpt2.Model
	ModelProv  provenance.File
	Rows       Rows
	DataKind   string
	DataProv   provenance.File
	DataSet    map[string]string       // settings that shape the rows (text input)
	DataCounts func() map[string]int64 // what was read, asked once the rows are done
	NRows      int                     // rows to cache, from row 0; 0 means all
	BatchSize  int                     // rows per forward pass
	PerShard   int                     // rows per shard
	DType      string
	// NoY stores x (and acts) without y: readers compute y = MLP_L(x)
	// (actcache.Manifest.YRecomputed), halving the disk.
	NoY bool
	// WithScale stores each layer's ln2.hook_scale (actcache.Manifest.WithScale).
	WithScale bool
	Progress  *progress.Bar // may be nil
	Version   string
	// Shard, when set, makes this build one worker of a sharded build: it
	// caches its range of the NRows rows (actcache.Worker.Range) under
	// worker file names, for `ctxdep cache merge` to join.
	Shard *Shard
	Pass  Pass // computes each batch; nil: the CPU (NewCPUPass)
	// PinnedLimit caps the bytes of batch buffers a Pass with HostMemory
	// allocates (page-locked memory cannot be swapped out or reclaimed);
	// past it the buffers are Go's memory. 0: no limit.
	PinnedLimit int64
}

// LayerNumbers returns the layers of ls.
func LayerNumbers(ls []Layer) []int {
	out := make([]int, len(ls))
	for i, l := range ls {
		out[i] = l.Layer
	}
	return out
}

// Shard is worker Index of Count.
type Shard struct {
	Index, Count int
}

// Build writes or resumes the caches of o.Layers (or a worker's part of
// them) and returns their manifests (the worker's, for a sharded build),
// in o.Layers' order.
func Build(ctx context.Context, o Options) ([]*actcache.Manifest, error) {
	m := o.Model
	if len(o.Layers) == 0 {
		return nil, fmt.Errorf("cachebuild: no layer to cache")
	}
	for i, l := range o.Layers {
		if err := m.CheckLayer(l.Layer); err != nil {
			return nil, err
		}
		if i > 0 && l.Layer <= o.Layers[i-1].Layer {
			return nil, fmt.Errorf("cachebuild: layers %v: want distinct layers, ascending", LayerNumbers(o.Layers))
		}
		if tc := l.Transcoder; tc != nil && tc.DIn != m.DModel {
			return nil, fmt.Errorf("transcoder %s has d_in %d, the model's d_model is %d", tc.Path, tc.DIn, m.DModel)
		}
	}
	t := o.Rows.RowLen()
	if t > m.NCtx {
		return nil, fmt.Errorf("rows of %d tokens are longer than the model's context of %d", t, m.NCtx)
	}
	n := o.Rows.NumRows() // -1: not known until the input ends
	if o.NRows > 0 {
		if n >= 0 && o.NRows > n {
			return nil, fmt.Errorf("%d rows were asked for, the input has %d", o.NRows, n)
		}
		n = o.NRows
	}
	if n == 0 {
		return nil, fmt.Errorf("%s holds no rows", o.dataName())
	}
	if n < 0 && o.Shard != nil {
		return nil, fmt.Errorf("a sharded build needs to know its rows in advance: tokenize the input into a token file first")
	}
	if o.BatchSize <= 0 || o.PerShard <= 0 {
		return nil, fmt.Errorf("batch size %d and rows per shard %d must be positive", o.BatchSize, o.PerShard)
	}
	var notice func(string) // nil: the writer tells stderr
	if o.Progress != nil {
		notice = func(msg string) { o.Progress.Logf("%s", msg) }
	}
	sinks := make([]*sink, len(o.Layers))
	defer func() {
		for _, k := range sinks {
			if k != nil {
				k.w.Close() // releases the directory's lock on every return; a no-op after Finish
			}
		}
	}()
	for i, l := range o.Layers {
		man := actcache.Manifest{
			Layer: l.Layer, DModel: m.DModel, ContextLength: t, NSequences: n, DType: o.DType,
			Hooks: actcache.HookNames(l.Layer), SequencesPerShard: o.PerShard, BatchSize: o.BatchSize,
			Model: o.ModelProv, Data: actcache.Data{Kind: o.DataKind, File: o.DataProv, Rows: o.Rows.NumRows(), RowsTaken: n, ToEnd: n < 0, Settings: o.DataSet},
			CreatedBy: o.Version, YRecomputed: o.NoY, WithScale: o.WithScale,
		}
		if tc := l.Transcoder; tc != nil {
			man.WithActs, man.DSAE, man.Transcoder = true, tc.DSAE, l.TransProv
		}
		if s := o.Shard; s != nil {
			man.Worker = &actcache.Worker{Index: s.Index, Count: s.Count, TotalRows: n}
		}
		w, err := actcache.CreateWith(l.Out, man, actcache.CreateOptions{Notice: notice})
		if err != nil {
			return nil, err
		}
		sinks[i] = &sink{w: w, layer: l.Layer, acts: l.Transcoder != nil, pending: -1}
	}
	// Every layer's cache has the same rows and shards; those kept from an
	// earlier run may differ.
	w0 := sinks[0].w
	for _, k := range sinks[1:] {
		f0, n0 := w0.Rows()
		f, nn := k.w.Rows()
		if f != f0 || nn != n0 || k.w.BuildRows() != w0.BuildRows() {
			return nil, fmt.Errorf("the caches of layers %d and %d disagree on their rows (an earlier run was cut short between them): remove %s and run again", sinks[0].layer, k.layer, o.Layers[len(o.Layers)-1].Out)
		}
	}
	pass := o.Pass
	if pass == nil {
		tcs := make([]*transcoder.Transcoder, len(o.Layers))
		for i, l := range o.Layers {
			tcs[i] = l.Transcoder
		}
		pass = NewCPUPass(m, LayerNumbers(o.Layers), tcs, o.BatchSize*t)
	}
	if o.Progress != nil {
		for _, k := range sinks {
			what := ""
			if len(sinks) > 1 {
				what = fmt.Sprintf("layer %d: ", k.layer)
			}
			if kept := k.w.NumKept(); kept > 0 {
				if all := k.w.NumShards(); all >= 0 {
					o.Progress.Logf("%sresuming: keeping %d of %d shards from an earlier run", what, kept, all)
				} else {
					o.Progress.Logf("%sresuming: keeping %d shards from an earlier run (the input is read again from its start)", what, kept)
				}
			}
			if bad := k.w.Repaired(); len(bad) > 0 {
				o.Progress.Logf("%srewriting %d shard(s) that no longer match their recorded hash: %v", what, len(bad), bad)
			}
		}
	}
	readAll, err := run(ctx, o, sinks, pass, actcache.BatchGrid{Rows: w0.BuildRows(), Size: o.BatchSize}, t, m.DModel)
	if err != nil {
		return nil, err
	}
	out := make([]*actcache.Manifest, len(sinks))
	for i, k := range sinks {
		if o.DataCounts != nil && readAll {
			k.w.SetDataCounts(o.DataCounts()) // else the earlier run's counts stay
		}
		if err := k.w.Finish(); errors.Is(err, actcache.ErrNoRows) {
			return nil, fmt.Errorf("%s holds no rows", o.dataName())
		} else if err != nil {
			return nil, err
		}
		if out[i], err = actcache.ReadManifestFile(k.w.ManifestPath()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// sink is one layer's cache being written: its writer and the shard being
// filled.
type sink struct {
	w       *actcache.Writer
	layer   int
	acts    bool            // the cache stores activations
	x, y    []float32       // the shard's rows so far
	scale   []float32       // (with scale)
	sActs   transcoder.Acts // the shard's activations so far
	pending int             // a shard begun but not written (-1: none)
	filled  int             // its rows so far
}

// run computes the batches of grid that hold rows of shards still to be
// written, in any layer's cache, and writes those shards. Each batch is
// computed whole, as on one machine, and its rows are copied into the
// shards they belong to, so shard and worker boundaries and resumed runs
// never change a batch: a shard or a worker's range that starts or ends
// inside a batch takes its rows from the whole batch. A build that reads
// its input to the end (grid.Rows < 0) reads each batch with ReadUpTo; the
// input's end cuts the last batch and the last shard short. readAll
// reports whether the input was read through its last row (what it read
// can then be counted).
func run(ctx context.Context, o Options, sinks []*sink, pass Pass, grid actcache.BatchGrid, t, c int) (readAll bool, err error) {
	w0 := sinks[0].w // the layers' caches share rows and shards
	first, rows := w0.Rows()
	known := rows >= 0
	stream, _ := o.Rows.(upTo)
	if !known && stream == nil {
		return false, fmt.Errorf("cachebuild: rows of unknown number from a source that cannot read to its end")
	}
	per := o.PerShard
	// Two batches' buffers (tokens and each layer's values): while a
	// writer goroutine copies one batch's rows into the shards being
	// filled and writes them, the pass computes the next batch into the
	// other (a GPU's pass leaves the host idle while it runs; a CPU's
	// overlaps the writes' hashing). The shard being filled, per layer.
	hb := newHostBuffers(pass, o.PinnedLimit)
	defer hb.free() // after the writer has stopped (deferred below)
	slots := make([]*batchSlot, 2)
	for j := range slots {
		sl := &batchSlot{tok: make([]int32, grid.Size*t), caps: make([]Capture, len(sinks))}
		for i, k := range sinks {
			sl.caps[i].X, sl.caps[i].Y = hb.xy(grid.Size * t * c)
			if k.acts {
				sl.caps[i].Acts = new(transcoder.Acts)
			}
			if o.WithScale {
				sl.caps[i].Scale = make([]float32, grid.Size*t)
			}
		}
		slots[j] = sl
	}
	if msg := hb.note(); msg != "" && o.Progress != nil {
		o.Progress.Logf("%s", msg)
	}
	sTok := make([]int32, per*t)
	for _, k := range sinks {
		k.x = make([]float32, per*t*c)
		if !o.NoY {
			k.y = make([]float32, per*t*c) // without y the writer stores none
		}
		if o.WithScale {
			k.scale = make([]float32, per*t)
		}
	}
	write := func(k *sink, s, n int) error {
		var a *transcoder.Acts
		if k.acts {
			a = &k.sActs
		}
		k.pending = -1
		var y, sc []float32
		if k.y != nil {
			y = k.y[:n*t*c]
		}
		if k.scale != nil {
			sc = k.scale[:n*t]
		}
		return k.w.WriteShard(s, sTok[:n*t], k.x[:n*t*c], y, sc, a)
	}
	// shards returns the shards s0..s1 that batch rows [lo, lo+nb) hold
	// rows of. A worker's first and last batches may hold rows of its
	// neighbours too: they are computed, as in a single build, and dropped.
	shards := func(lo, nb int) (s0, s1 int) {
		end := lo + nb
		if known {
			end = min(end, first+rows)
		}
		return (max(lo, first) - first) / per, (end - 1 - first) / per
	}
	// own counts the rows of batch [lo, lo+nb) that the writer keeps, for
	// the progress bar (a worker's total is its own rows).
	own := func(lo, nb int) int {
		if !known {
			return nb
		}
		return min(lo+nb, first+rows) - max(lo, first)
	}
	// The writer: batches in order; from here until stop() returns, the
	// sinks, their Writers and the progress bar are its alone. The loop
	// below looks up which shards exist in kept, a snapshot taken now,
	// which is enough: a shard this run writes holds no row of a later
	// batch.
	kept := make([][]bool, len(sinks))
	for i, k := range sinks {
		kept[i] = k.w.Kept()
	}
	jobs := make(chan batchJob, len(slots))
	free := make(chan *batchSlot, len(slots))
	for _, sl := range slots {
		free <- sl
	}
	var werr error // the writer's first error; read once failed is closed or the writer is done
	failed := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for j := range jobs {
			if werr == nil && j.slot != nil {
				s0, s1 := shards(j.lo, j.nb)
				if err := writeBatch(sinks, j, s0, s1, sTok, t, c, w0, write); err != nil {
					werr = err
					close(failed)
				}
			}
			if werr == nil && o.Progress != nil {
				o.Progress.Add(int64(own(j.lo, j.nb)*t), "")
			}
			if j.slot != nil {
				free <- j.slot
			}
		}
	}()
	var stopOnce sync.Once
	stop := func() {
		stopOnce.Do(func() {
			close(jobs)
			<-done
		})
	}
	defer stop() // also when the pass panics
	// fail ends the loop with err, or with the writer's error, which came
	// first.
	fail := func(err error) (bool, error) {
		stop()
		if werr != nil {
			return false, werr
		}
		return false, err
	}
	for kb := first / grid.Size; ; kb++ {
		lo, nb := kb*grid.Size, grid.Size
		if known {
			if lo >= first+rows {
				break
			}
			lo, nb = grid.Batch(kb)
		}
		s0, s1 := shards(lo, nb)
		todo := false
		for s := s0; s <= s1; s++ {
			for i := range sinks {
				todo = todo || s >= len(kept[i]) || !kept[i][s]
			}
		}
		if !todo {
			jobs <- batchJob{lo: lo, nb: nb}
			continue
		}
		var sl *batchSlot
		select {
		case <-failed: // before taking a free buffer, which is also ready
			return fail(nil)
		case <-ctx.Done():
			return fail(ctx.Err())
		default:
		}
		select {
		case sl = <-free:
		case <-failed:
			return fail(nil)
		case <-ctx.Done():
			return fail(ctx.Err())
		}
		tok := sl.tok[:nb*t]
		if known {
			if err := o.Rows.Read(tok, lo, nb); err != nil {
				return fail(err)
			}
		} else {
			got, err := stream.ReadUpTo(tok, lo, nb)
			if err != nil {
				return fail(err)
			}
			if got == 0 {
				readAll = true
				break // the input ended
			}
			readAll = got < nb
			nb, tok = got, tok[:got*t]
		}
		if err := o.Model.CheckTokens(tok, nb, t); err != nil {
			return fail(fmt.Errorf("rows %d..%d of %s: %w", lo, lo+nb-1, o.dataName(), err))
		}
		if err := pass.Run(tok, nb, t, sl.caps); err != nil {
			return fail(err)
		}
		jobs <- batchJob{slot: sl, lo: lo, nb: nb}
		if known && lo+nb >= first+rows {
			readAll = lo+nb >= grid.Rows // the input's last row was read
		}
	}
	stop() // the writer has written every batch, or failed
	if werr != nil {
		return false, werr
	}
	for _, k := range sinks {
		if k.pending < 0 {
			continue
		}
		if known {
			return false, fmt.Errorf("cachebuild: shard %d of layer %d was left unfinished", k.pending, k.layer)
		}
		if err := write(k, k.pending, k.filled); err != nil { // the input ended inside it
			return false, err
		}
	}
	return readAll, nil
}

// batchSlot is one batch's buffers: its tokens and each layer's values.
type batchSlot struct {
	tok  []int32
	caps []Capture
}

// batchJob is a batch for the writer: rows [lo, lo+nb), computed in slot;
// or, without a slot, a batch whose shards all exist, only counted.
type batchJob struct {
	slot   *batchSlot
	lo, nb int
}

// writeBatch copies the rows of batch j into its shards s0..s1, in every
// layer's cache that lacks the shard, writing each shard once its rows are
// all there (write). sTok holds the shard's tokens being filled.
func writeBatch(sinks []*sink, j batchJob, s0, s1 int, sTok []int32, t, c int, w0 *actcache.Writer, write func(*sink, int, int) error) error {
	lo, nb, tok := j.lo, j.nb, j.slot.tok
	for s := s0; s <= s1; s++ {
		sf, sn := w0.ShardRows(s)
		r0, r1 := max(lo, sf), min(lo+nb, sf+sn) // rows of shard s in this batch
		// Token rows: at (r − sf) in the shard, (r − lo) in the batch.
		copy(sTok[(r0-sf)*t:(r1-sf)*t], tok[(r0-lo)*t:])
		for i, k := range sinks {
			if k.w.Has(s) {
				continue
			}
			cp := j.slot.caps[i]
			if r0 == sf {
				k.sActs.Indptr, k.sActs.Indices, k.sActs.Values = append(k.sActs.Indptr[:0], 0), k.sActs.Indices[:0], k.sActs.Values[:0]
			}
			copy(k.x[(r0-sf)*t*c:(r1-sf)*t*c], cp.X[(r0-lo)*t*c:])
			if k.y != nil {
				copy(k.y[(r0-sf)*t*c:(r1-sf)*t*c], cp.Y[(r0-lo)*t*c:])
			}
			if k.scale != nil {
				copy(k.scale[(r0-sf)*t:(r1-sf)*t], cp.Scale[(r0-lo)*t:])
			}
			if k.acts {
				k.sActs.AppendRows(cp.Acts, (r0-lo)*t, (r1-lo)*t)
			}
			if r1 < sf+sn {
				k.pending, k.filled = s, r1-sf // the shard goes on in the next batch
				continue
			}
			if err := write(k, s, sn); err != nil {
				return err
			}
		}
	}
	return nil
}

// upTo is a source of rows read to its end (StreamRows without a count).
type upTo interface {
	ReadUpTo(dst []int32, first, n int) (int, error)
}
