package cachebuild

import (
	"context"
	"fmt"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/gpt2"
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

// Pass computes one batch of a build: x and y (B·T·C each, into the
// caller's slices) of tokens (B·T), and, when acts is not nil, the
// transcoder's sparse activations of x. The CPU pass is NewCPUPass; the
// GPU backend's cuda.Forward is another.
type Pass interface {
	Run(tokens []int32, b, t int, x, y []float32, acts *transcoder.Acts) error
}

// cpuPass is Pass on the CPU: gpt2.Model.RunToBlock and
// transcoder.Encoder.Encode.
type cpuPass struct {
	m     *gpt2.Model
	layer int
	ws    *gpt2.Workspace
	enc   *transcoder.Encoder
}

// NewCPUPass returns the CPU's Pass for batches of up to maxTokens tokens;
// tc may be nil when no activations are asked for.
func NewCPUPass(m *gpt2.Model, layer int, tc *transcoder.Transcoder, maxTokens int) Pass {
	p := &cpuPass{m: m, layer: layer, ws: m.NewWorkspace(maxTokens)}
	if tc != nil {
		p.enc = tc.NewEncoder()
	}
	return p
}

func (p *cpuPass) Run(tokens []int32, b, t int, x, y []float32, acts *transcoder.Acts) error {
	xb, yb, err := p.m.RunToBlock(p.ws, tokens, b, t, p.layer, nil)
	if err != nil {
		return err
	}
	copy(x, xb)
	copy(y, yb)
	if acts != nil {
		if p.enc == nil {
			return fmt.Errorf("cachebuild: activations asked of a pass without a transcoder")
		}
		p.enc.Encode(acts, xb, b*t)
	}
	return nil
}

// Options configures a build.
type Options struct {
	Out        string
	Model      *gpt2.Model
	ModelProv  provenance.File
	Layer      int
	Rows       Rows
	DataKind   string
	DataProv   provenance.File
	DataSet    map[string]string       // settings that shape the rows (text input)
	DataCounts func() map[string]int64 // what was read, asked once the rows are done
	NRows      int                     // rows to cache, from row 0; 0 means all
	BatchSize  int                     // rows per forward pass
	PerShard   int                     // rows per shard
	DType      string
	Transcoder *transcoder.Transcoder // non-nil: store sparse acts (--with-acts)
	TransProv  *provenance.File
	Progress   *progress.Bar // may be nil
	Version    string
	// Shard, when set, makes this build one worker of a sharded build: it
	// caches its range of the NRows rows (actcache.Worker.Range) under
	// worker file names, for `ctxdep cache merge` to join.
	Shard *Shard
	Pass  Pass // computes each batch; nil: the CPU (NewCPUPass)
}

// Shard is worker Index of Count.
type Shard struct {
	Index, Count int
}

// Build writes or resumes the cache (or a worker's part of it) and returns
// its manifest (the worker's, for a sharded build).
func Build(ctx context.Context, o Options) (*actcache.Manifest, error) {
	m := o.Model
	if err := m.CheckLayer(o.Layer); err != nil {
		return nil, err
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
		return nil, fmt.Errorf("the input holds no rows")
	}
	if n < 0 && o.Shard != nil {
		return nil, fmt.Errorf("a sharded build needs to know its rows in advance: tokenize the input into a token file first")
	}
	tc := o.Transcoder
	if tc != nil && tc.DIn != m.DModel {
		return nil, fmt.Errorf("transcoder %s has d_in %d, the model's d_model is %d", tc.Path, tc.DIn, m.DModel)
	}
	man := actcache.Manifest{
		Layer: o.Layer, DModel: m.DModel, ContextLength: t, NSequences: n, DType: o.DType,
		Hooks: actcache.HookNames(o.Layer), SequencesPerShard: o.PerShard, BatchSize: o.BatchSize,
		Model: o.ModelProv, Data: actcache.Data{Kind: o.DataKind, File: o.DataProv, Rows: o.Rows.NumRows(), RowsTaken: n, ToEnd: n < 0, Settings: o.DataSet},
		CreatedBy: o.Version,
	}
	if tc != nil {
		man.WithActs, man.DSAE, man.Transcoder = true, tc.DSAE, o.TransProv
	}
	if o.BatchSize <= 0 || o.PerShard <= 0 {
		return nil, fmt.Errorf("batch size %d and rows per shard %d must be positive", o.BatchSize, o.PerShard)
	}
	if s := o.Shard; s != nil {
		man.Worker = &actcache.Worker{Index: s.Index, Count: s.Count, TotalRows: n}
	}
	var notice func(string) // nil: the writer tells stderr
	if o.Progress != nil {
		notice = func(msg string) { o.Progress.Logf("%s", msg) }
	}
	w, err := actcache.CreateWith(o.Out, man, actcache.CreateOptions{Notice: notice})
	if err != nil {
		return nil, err
	}
	defer w.Close() // releases the directory's lock on every return; a no-op after Finish
	pass := o.Pass
	if pass == nil {
		pass = NewCPUPass(m, o.Layer, tc, o.BatchSize*t)
	}
	if kept := w.NumKept(); kept > 0 && o.Progress != nil {
		if all := w.NumShards(); all >= 0 {
			o.Progress.Logf("resuming: keeping %d of %d shards from an earlier run", kept, all)
		} else {
			o.Progress.Logf("resuming: keeping %d shards from an earlier run (the input is read again from its start)", kept)
		}
	}
	if bad := w.Repaired(); len(bad) > 0 && o.Progress != nil {
		o.Progress.Logf("rewriting %d shard(s) that no longer match their recorded hash: %v", len(bad), bad)
	}
	readAll, err := run(ctx, o, w, pass, actcache.BatchGrid{Rows: w.BuildRows(), Size: o.BatchSize}, t, m.DModel)
	if err != nil {
		return nil, err
	}
	if o.DataCounts != nil && readAll {
		w.SetDataCounts(o.DataCounts()) // else the earlier run's counts stay
	}
	if err := w.Finish(); err != nil {
		return nil, err
	}
	final, err := actcache.ReadManifestFile(w.ManifestPath())
	if err != nil {
		return nil, err
	}
	return final, nil
}

// run computes the batches of grid that hold rows of w's shards still to
// be written, and writes those shards. Each batch is computed whole, as on
// one machine, and its rows are copied into the shards they belong to, so
// shard and worker boundaries and resumed runs never change a batch: a
// shard or a worker's range that starts or ends inside a batch takes its
// rows from the whole batch. A build that reads its input to the end
// (grid.Rows < 0) reads each batch with ReadUpTo; the input's end cuts the
// last batch and the last shard short. readAll reports whether the input
// was read through its last row (what it read can then be counted).
func run(ctx context.Context, o Options, w *actcache.Writer, pass Pass, grid actcache.BatchGrid, t, c int) (readAll bool, err error) {
	first, rows := w.Rows()
	known := rows >= 0
	stream, _ := o.Rows.(upTo)
	if !known && stream == nil {
		return false, fmt.Errorf("cachebuild: rows of unknown number from a source that cannot read to its end")
	}
	per := o.PerShard
	// One batch, and the shard being filled.
	bTok := make([]int32, grid.Size*t)
	bx, by := make([]float32, grid.Size*t*c), make([]float32, grid.Size*t*c)
	sTok := make([]int32, per*t)
	sx, sy := make([]float32, per*t*c), make([]float32, per*t*c)
	var bActs, sActs transcoder.Acts
	var actsOut *transcoder.Acts
	if o.Transcoder != nil {
		actsOut = &bActs
	}
	pending, filled := -1, 0 // a shard begun but not written, and its rows so far
	write := func(s, n int) error {
		var a *transcoder.Acts
		if actsOut != nil {
			a = &sActs
		}
		pending = -1
		return w.WriteShard(s, sTok[:n*t], sx[:n*t*c], sy[:n*t*c], a)
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
	for k := first / grid.Size; ; k++ {
		lo, nb := k*grid.Size, grid.Size
		if known {
			if lo >= first+rows {
				break
			}
			lo, nb = grid.Batch(k)
		}
		s0, s1 := shards(lo, nb)
		todo := false
		for s := s0; s <= s1; s++ {
			todo = todo || !w.Has(s)
		}
		if !todo {
			if o.Progress != nil {
				o.Progress.Add(int64(own(lo, nb)*t), "")
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return false, err
		}
		tok := bTok[:nb*t]
		if known {
			if err := o.Rows.Read(tok, lo, nb); err != nil {
				return false, err
			}
		} else {
			got, err := stream.ReadUpTo(tok, lo, nb)
			if err != nil {
				return false, err
			}
			if got == 0 {
				readAll = true
				break // the input ended
			}
			readAll = got < nb
			nb, tok = got, tok[:got*t]
			s0, s1 = shards(lo, nb)
		}
		if err := o.Model.CheckTokens(tok, nb, t); err != nil {
			return false, fmt.Errorf("rows %d..%d: %w", lo, lo+nb-1, err)
		}
		if err := pass.Run(tok, nb, t, bx[:nb*t*c], by[:nb*t*c], actsOut); err != nil {
			return false, err
		}
		for s := s0; s <= s1; s++ {
			if w.Has(s) {
				continue
			}
			sf, sn := w.ShardRows(s)
			r0, r1 := max(lo, sf), min(lo+nb, sf+sn) // rows of shard s in this batch
			if r0 == sf {
				sActs.Indptr, sActs.Indices, sActs.Values = append(sActs.Indptr[:0], 0), sActs.Indices[:0], sActs.Values[:0]
			}
			// Token rows: at (r − sf) in the shard, (r − lo) in the batch.
			copy(sTok[(r0-sf)*t:(r1-sf)*t], tok[(r0-lo)*t:])
			copy(sx[(r0-sf)*t*c:(r1-sf)*t*c], bx[(r0-lo)*t*c:])
			copy(sy[(r0-sf)*t*c:(r1-sf)*t*c], by[(r0-lo)*t*c:])
			if actsOut != nil {
				appendActRows(&sActs, actsOut, (r0-lo)*t, (r1-lo)*t)
			}
			if r1 < sf+sn {
				pending, filled = s, r1-sf // the shard goes on in the next batch
				continue
			}
			if err := write(s, sn); err != nil {
				return false, err
			}
		}
		if o.Progress != nil {
			o.Progress.Add(int64(own(lo, nb)*t), "")
		}
		if known && lo+nb >= first+rows {
			readAll = lo+nb >= grid.Rows // the input's last row was read
		}
	}
	if pending >= 0 {
		if known {
			return false, fmt.Errorf("cachebuild: shard %d was left unfinished", pending)
		}
		return readAll, write(pending, filled) // the input ended inside it
	}
	return readAll, nil
}

// upTo is a source of rows read to its end (StreamRows without a count).
type upTo interface {
	ReadUpTo(dst []int32, first, n int) (int, error)
}

// appendActRows appends rows [lo, hi) of src to dst.
func appendActRows(dst, src *transcoder.Acts, lo, hi int) {
	base, off := dst.Indptr[len(dst.Indptr)-1], src.Indptr[lo]
	for _, p := range src.Indptr[lo+1 : hi+1] {
		dst.Indptr = append(dst.Indptr, base+p-off)
	}
	dst.Indices = append(dst.Indices, src.Indices[off:src.Indptr[hi]]...)
	dst.Values = append(dst.Values, src.Values[off:src.Indptr[hi]]...)
}

// appendActs appends all rows of src to dst.
func appendActs(dst, src *transcoder.Acts) { appendActRows(dst, src, 0, src.Rows()) }
