//go:build cuda || cudasim

package cuda

import (
	"context"
	"fmt"
	"unsafe"

	"github.com/ctxdep/ctxdep/internal/cachebuild"
	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/kernels"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/par"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// startL0 is the room for active features per row that activation buffers
// start with; they grow when a batch needs more.
const startL0 = 128

// devicePass holds what a pass over a batch uses on the device: the model
// to block L (nil when x comes from a cache), the encoder and its
// activations.
type devicePass struct {
	d    *Device
	m    *Model
	enc  *Encoder
	acts *Acts
	c    int
}

func (p *devicePass) free() {
	if p.m != nil {
		p.m.Free()
	}
	if p.enc != nil {
		p.enc.Free()
	}
	if p.acts != nil {
		p.d.FreeActs(p.acts)
	}
}

// Forward is `cache build`'s pass on the device: GPT-2 to the deepest of
// its layers, and at each layer x, y and, optionally, the layer's
// transcoder's encoder; x, y and the activations come back to the host.
//
// x and y go to the host on a copy stream of their own when the caller's
// slices are page-locked (HostFloats: cachebuild allocates them so), while
// the default stream computes on: the encoder, the next blocks. A layer
// before the deepest is first copied on the device into a staging pair
// (the next block overwrites x and y); the deepest's x and y stay in
// place until the next Run. Run waits for the copies before it returns.
// Into Go's memory, the copies are synchronous, as before.
type Forward struct {
	devicePass // the model to the deepest layer; its enc and acts unused
	layers     []int
	encs       []*Encoder // per layer; nil: no activations
	acts       []*Acts
	resid      []float32 // host copy of the residual stream, for Capture.Scale
	copies     stream    // x and y to page-locked host memory
	ready      event     // x and y of a layer computed, on the default stream
	stage      []buf     // x, y of each layer but the deepest, while they copy; from the first such copy
	staged     allocList
}

// NewForward prepares passes of up to maxRows rows of t tokens that
// capture layers (ascending); tcs, when not nil, holds each layer's
// transcoder (nil entries: no activations for that layer).
func (d *Device) NewForward(m *gpt2.Model, layers []int, tcs []*transcoder.Transcoder, maxRows, t int) (*Forward, error) {
	if len(layers) == 0 {
		return nil, fmt.Errorf("cuda: a forward pass with no layer to capture")
	}
	f := &Forward{devicePass: devicePass{d: d, c: m.DModel}, layers: layers,
		encs: make([]*Encoder, len(layers)), acts: make([]*Acts, len(layers)), staged: allocList{d: d}}
	var err error
	if f.m, err = d.LoadModel(m, layers[len(layers)-1], maxRows*t, t); err != nil {
		return nil, err
	}
	for i, tc := range tcs {
		if tc == nil {
			continue
		}
		if f.encs[i], err = d.LoadEncoder(tc, maxRows*t); err != nil {
			f.Free()
			return nil, err
		}
		if f.acts[i], err = d.NewActs(maxRows*t, startL0); err != nil {
			f.Free()
			return nil, err
		}
	}
	if err := f.newCopies(); err != nil {
		f.Free()
		return nil, err
	}
	return f, nil
}

// newCopies makes the copy stream and its event.
func (f *Forward) newCopies() error {
	defer f.d.enter()()
	var err error
	if f.copies, err = newStream(); err != nil {
		return fmt.Errorf("cuda: creating a stream: %v", err)
	}
	if f.ready, err = newEvent(); err != nil {
		return fmt.Errorf("cuda: creating an event: %v", err)
	}
	return nil
}

// newStage allocates the staging buffers, when a layer before the deepest
// first copies to page-locked memory (a pass into Go's memory, cache
// plan's, never needs them).
func (f *Forward) newStage() error {
	stage := make([]buf, 2*(len(f.layers)-1))
	for i := range stage {
		f.staged.add(&stage[i], fmt.Sprintf("layer %d's %s while it copies", f.layers[i/2], []string{"x", "y"}[i%2]), f.m.maxTokens*f.c, 4)
	}
	if err := f.staged.done(); err != nil {
		return err
	}
	f.stage = stage
	return nil
}

// Run computes, for tokens (B·T), each layer's x and y (B·T·C each) into
// the host slices of out, and, where the layer has an encoder and
// out[i].Acts is not nil, the sparse activations of x.
func (f *Forward) Run(tokens []int32, b, t int, out []cachebuild.Capture) (err error) {
	defer f.d.enter()()
	if len(out) != len(f.layers) {
		return fmt.Errorf("cuda: %d captures for a pass of %d layers", len(out), len(f.layers))
	}
	// The copies finish before Run returns, even after an error: the
	// caller may reuse or free the slices then.
	defer func() {
		if e := syncStream(f.copies); e != nil && err == nil {
			err = fmt.Errorf("cuda: copy from device: %v", e)
		}
	}()
	n := b * t * f.c
	next := 0 // the next layer to capture
	return f.m.runWatching(tokens, b, t, func(l int) error {
		if next >= len(f.layers) || f.layers[next] != l {
			return nil
		}
		i := next
		next++
		if err := f.copyXY(out[i], i, n); err != nil {
			return err
		}
		if out[i].Scale != nil {
			if err := f.scale(out[i], l, b*t); err != nil {
				return err
			}
		}
		if out[i].Acts == nil {
			return nil
		}
		if f.encs[i] == nil {
			return fmt.Errorf("cuda: activations asked of layer %d, which has no transcoder", l)
		}
		if err := f.encs[i].encode(f.acts[i], f.m.X(), b*t); err != nil {
			return err
		}
		return f.d.Download(out[i].Acts, f.acts[i])
	})
}

// copyXY starts the copies of the i-th layer's x and y (n floats each) to
// c.X and c.Y: on the copy stream when both are page-locked, else
// synchronously.
func (f *Forward) copyXY(c cachebuild.Capture, i, n int) error {
	x, y := f.m.X(), f.m.Y()
	if !f.d.pinned(c.X[:n]) || !f.d.pinned(c.Y[:n]) {
		if err := d2h(c.X[:n], x); err != nil {
			return err
		}
		return d2h(c.Y[:n], y)
	}
	if i < len(f.layers)-1 {
		if f.stage == nil {
			if err := f.newStage(); err != nil {
				return err
			}
		}
		sx, sy := f.stage[2*i], f.stage[2*i+1]
		if err := d2d(sx, x, int64(n)*4); err != nil {
			return err
		}
		if err := d2d(sy, y, int64(n)*4); err != nil {
			return err
		}
		x, y = sx, sy
	}
	if err := recordEvent(f.ready); err != nil {
		return fmt.Errorf("cuda: recording an event: %v", err)
	}
	if err := waitEvent(f.copies, f.ready); err != nil {
		return fmt.Errorf("cuda: waiting for an event: %v", err)
	}
	for _, p := range []struct {
		dst []float32
		src buf
	}{{c.X[:n], x}, {c.Y[:n], y}} {
		if err := memcpyDtoHAsync(unsafe.Pointer(&p.dst[0]), p.src.p, int64(n)*4, f.copies); err != nil {
			return fmt.Errorf("cuda: copy from device: %v", err)
		}
	}
	return nil
}

// scale sets c.Scale to ln2.hook_scale of block l, from the residual
// stream: after block l it is resid_mid + y (the deepest block leaves
// resid_mid itself), so resid_mid is recovered by subtracting y on the
// host, to float32 rounding. c.Y must be there then: for a layer before
// the deepest, scale waits for the copies (the deepest's x and y go on
// copying while the encoder runs; Run waits for them before returning).
func (f *Forward) scale(c cachebuild.Capture, l, rows int) error {
	n := rows * f.c
	if len(f.resid) < n {
		f.resid = make([]float32, n)
	}
	r := f.resid[:n]
	if err := d2h(r, f.m.resid); err != nil {
		return err
	}
	if l != f.layers[len(f.layers)-1] {
		if err := syncStream(f.copies); err != nil {
			return fmt.Errorf("cuda: copy from device: %v", err)
		}
		for i := range r {
			r[i] -= c.Y[i]
		}
	}
	kernels.LayerNormScale(c.Scale[:rows], r, rows, f.c, f.m.cfg.Eps)
	return nil
}

// HostFloats and FreeHostFloats are the Device's: cache build allocates
// its batches' x and y with them, which makes Run's copies asynchronous.
func (f *Forward) HostFloats(n int) ([]float32, error) { return f.d.HostFloats(n) }
func (f *Forward) FreeHostFloats(s []float32)          { f.d.FreeHostFloats(s) }

var _ cachebuild.HostMemory = (*Forward)(nil)

// Free releases the device memory.
func (f *Forward) Free() {
	f.free()
	for i, e := range f.encs {
		if e != nil {
			e.Free()
		}
		if f.acts[i] != nil {
			f.d.FreeActs(f.acts[i])
		}
	}
	defer f.d.enter()()
	f.staged.freeAll()
	destroyEvent(&f.ready)
	destroyStream(&f.copies)
}

// Fit is a fit's step on the device: x and y come from its input (token
// ids run through the model to block L, or cached x and y), then the
// encoder and the trainer's step run. Only the losses come back each step;
// Sync copies the parameters to the host.
type Fit struct {
	devicePass
	tr *Trainer
	in input
	t  int // tokens per row
}

// input is where a Fit's x and y come from.
type input interface {
	// next returns the device x and y of the next n sequences.
	next(ctx context.Context, n int) (x, y buf, err error)
	free()
}

// tokenInput runs the model on token rows read ahead on the CPU (par.Ahead,
// three buffers: two batches ahead) while the device works.
type tokenInput struct {
	f     *Fit
	host  *gpt2.Model // for CheckTokens
	t     int
	bufs  [][]int32
	fill  func([]int32) error
	ahead *par.Ahead[[]int32] // from the first step on
}

func (in *tokenInput) next(ctx context.Context, n int) (x, y buf, err error) {
	if in.ahead == nil {
		in.ahead = par.NewAhead(ctx, in.bufs, in.fill)
	}
	tokens, err := in.ahead.Next()
	if err != nil {
		return buf{}, buf{}, err
	}
	if len(tokens) != n*in.t {
		return buf{}, buf{}, fmt.Errorf("cuda: a step of %d sequences, batches of %d tokens", n, len(tokens))
	}
	if err := in.host.CheckTokens(tokens, n, in.t); err != nil {
		return buf{}, buf{}, err
	}
	// run's copy to the device is synchronous: the buffer may be refilled
	// once the next step takes the next batch.
	if err := in.f.m.run(tokens, n, in.t); err != nil {
		return buf{}, buf{}, err
	}
	return in.f.m.X(), in.f.m.Y(), nil
}

func (in *tokenInput) free() {
	if in.ahead != nil {
		in.ahead.Close()
	}
}

// xyInput copies cached x and y, which nextXY returns, to the device.
type xyInput struct {
	d      *Device
	nextXY func(ctx context.Context, n int) (x, y []float32, err error)
	x, y   buf
	xy     allocList
}

func (in *xyInput) next(ctx context.Context, n int) (x, y buf, err error) {
	hx, hy, err := in.nextXY(ctx, n)
	if err != nil {
		return buf{}, buf{}, err
	}
	if err := h2d(in.x, hx); err != nil {
		return buf{}, buf{}, err
	}
	if err := h2d(in.y, hy); err != nil {
		return buf{}, buf{}, err
	}
	return in.x, in.y, nil
}

func (in *xyInput) free() {
	if len(in.xy.bufs) > 0 {
		defer in.d.enter()()
		in.xy.freeAll()
	}
}

// NewTokenFit trains host's parameters (uploaded now) on rows of t tokens
// read by next, b rows per step: rows are read ahead on the CPU while the
// device works.
func (d *Device) NewTokenFit(m *gpt2.Model, layer int, tc *transcoder.Transcoder, host *midcoder.Trainer, next func(dst []int32) error, t, b int, skip int64) (*Fit, error) {
	// A resumed fit first drops the rows it has used, as StreamSource.Skip
	// does, counting them in the end-of-data message.
	var read int64
	row := make([]int32, t)
	for i := int64(0); i < skip; i++ {
		if err := midcoder.ReadRows(row, 1, t, next, &read); err != nil {
			return nil, err
		}
	}
	f, err := d.newFit(tc, host, t, b)
	if err != nil {
		return nil, err
	}
	if f.m, err = d.LoadModel(m, layer, b*t, t); err != nil {
		f.Close()
		return nil, err
	}
	in := &tokenInput{f: f, host: m, t: t, bufs: make([][]int32, 3),
		fill: func(tokens []int32) error { return midcoder.ReadRows(tokens, b, t, next, &read) }}
	for i := range in.bufs {
		in.bufs[i] = make([]int32, b*t)
	}
	f.in = in
	return f, nil
}

// NewXYFit trains host's parameters on cached x and y that next returns.
func (d *Device) NewXYFit(tc *transcoder.Transcoder, host *midcoder.Trainer, next func(ctx context.Context, n int) (x, y []float32, err error), t, b int) (*Fit, error) {
	f, err := d.newFit(tc, host, t, b)
	if err != nil {
		return nil, err
	}
	in := &xyInput{d: d, nextXY: next, xy: allocList{d: d}}
	f.in = in
	defer d.enter()()
	in.xy.add(&in.x, "batch x", b*t*f.c, 4)
	in.xy.add(&in.y, "batch y", b*t*f.c, 4)
	if err := in.xy.done(); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (d *Device) newFit(tc *transcoder.Transcoder, host *midcoder.Trainer, t, b int) (*Fit, error) {
	f := &Fit{devicePass: devicePass{d: d, c: host.MLP.C}, t: t}
	var err error
	if f.enc, err = d.LoadEncoder(tc, b*t); err != nil {
		return nil, err
	}
	if f.acts, err = d.NewActs(b*t, startL0); err != nil {
		f.Close()
		return nil, err
	}
	if f.tr, err = d.NewTrainer(host.MLP, host.Params, host.Opt, b*t); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Step implements midcoder.Backend.
func (f *Fit) Step(ctx context.Context, n int, lr float64) (loss, lossNorm float64, err error) {
	defer f.d.enter()()
	x, y, err := f.in.next(ctx, n)
	if err != nil {
		return 0, 0, err
	}
	if err := f.enc.encode(f.acts, x, n*f.t); err != nil {
		return 0, 0, err
	}
	return f.tr.step(f.acts, y, lr)
}

var _ midcoder.Backend = (*Fit)(nil)

// Sync copies the parameters and moments to the host trainer.
func (f *Fit) Sync() error { return f.tr.Sync() }

// SyncParams copies W_mid and b_mid (not the moments) to the host trainer.
func (f *Fit) SyncParams() error { return f.tr.SyncParams() }

// Close releases the device memory and stops reading ahead.
func (f *Fit) Close() {
	if f.in != nil {
		f.in.free()
	}
	f.free()
	if f.tr != nil {
		f.tr.Free()
	}
}
