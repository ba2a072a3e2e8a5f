//go:build cuda

package cuda

import (
	"context"
	"fmt"

	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/midcoder"
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

// Forward is `cache build`'s pass on the device: GPT-2 to block L and,
// optionally, the transcoder's encoder; x, y and the activations come back
// to the host.
type Forward struct{ devicePass }

// NewForward prepares passes of up to maxRows rows of t tokens; tc may be
// nil (no activations).
func (d *Device) NewForward(m *gpt2.Model, layer int, tc *transcoder.Transcoder, maxRows, t int) (*Forward, error) {
	f := &Forward{devicePass{d: d, c: m.DModel}}
	var err error
	if f.m, err = d.LoadModel(m, layer, maxRows*t, t); err != nil {
		return nil, err
	}
	if tc != nil {
		if f.enc, err = d.LoadEncoder(tc, maxRows*t); err != nil {
			f.Free()
			return nil, err
		}
		if f.acts, err = d.NewActs(maxRows*t, startL0); err != nil {
			f.Free()
			return nil, err
		}
	}
	return f, nil
}

// Run computes x and y (B·T·C each) of tokens (B·T) into the host slices,
// and, when the Forward has an encoder and acts is not nil, the sparse
// activations of x.
func (f *Forward) Run(tokens []int32, b, t int, x, y []float32, acts *transcoder.Acts) error {
	defer f.d.enter()()
	if err := f.m.run(tokens, b, t); err != nil {
		return err
	}
	n := b * t * f.c
	if err := d2h(x[:n], f.m.X()); err != nil {
		return err
	}
	if err := d2h(y[:n], f.m.Y()); err != nil {
		return err
	}
	if f.enc == nil || acts == nil {
		return nil
	}
	if err := f.enc.encode(f.acts, f.m.X(), b*t); err != nil {
		return err
	}
	return f.d.Download(acts, f.acts)
}

// Free releases the device memory.
func (f *Forward) Free() { f.free() }

// Fit is a fit's step on the device: from token ids (forward to block L,
// encode, train) or from cached x and y (encode, train). Only the losses
// come back each step; Sync copies the parameters to the host.
type Fit struct {
	devicePass
	tr     *Trainer
	x, y   buf       // device x and y of x, y input
	xy     allocList // x and y
	t      int
	rows   chan tokenBatch
	spare  chan []int32 // token buffers for rows to refill
	cancel context.CancelFunc
	nextXY func(ctx context.Context, n int) (x, y []float32, err error)
	m2     *gpt2.Model
}

type tokenBatch struct {
	tokens []int32
	err    error
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
	f.m2 = m
	if f.m, err = d.LoadModel(m, layer, b*t, t); err != nil {
		f.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.rows = make(chan tokenBatch, 2)
	// Two batches queued and one being read: Step hands each buffer back
	// once run has copied its tokens to the device, so sends to spare never
	// block.
	f.spare = make(chan []int32, 3)
	for range cap(f.spare) {
		f.spare <- make([]int32, b*t)
	}
	go func() {
		defer close(f.rows)
		for {
			var tb tokenBatch
			select {
			case tb.tokens = <-f.spare:
			case <-ctx.Done():
				return
			}
			tb.err = midcoder.ReadRows(tb.tokens, b, t, next, &read)
			select {
			case f.rows <- tb:
			case <-ctx.Done():
				return
			}
			if tb.err != nil {
				return
			}
		}
	}()
	return f, nil
}

// NewXYFit trains host's parameters on cached x and y that next returns.
func (d *Device) NewXYFit(tc *transcoder.Transcoder, host *midcoder.Trainer, next func(ctx context.Context, n int) (x, y []float32, err error), t, b int) (*Fit, error) {
	f, err := d.newFit(tc, host, t, b)
	if err != nil {
		return nil, err
	}
	f.nextXY = next
	f.xy = allocList{d: d}
	defer d.enter()()
	f.xy.add(&f.x, "batch x", b*t*f.c, 4)
	f.xy.add(&f.y, "batch y", b*t*f.c, 4)
	if err := f.xy.done(); err != nil {
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
	rows := n * f.t
	var x, y buf
	if f.m != nil {
		var tb tokenBatch
		select {
		case tb = <-f.rows:
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		}
		if tb.err != nil {
			return 0, 0, tb.err
		}
		if err := f.runTokens(tb.tokens, n); err != nil {
			return 0, 0, err
		}
		x, y = f.m.X(), f.m.Y()
	} else {
		hx, hy, err := f.nextXY(ctx, n)
		if err != nil {
			return 0, 0, err
		}
		if err := h2d(f.x, hx); err != nil {
			return 0, 0, err
		}
		if err := h2d(f.y, hy); err != nil {
			return 0, 0, err
		}
		x, y = f.x, f.y
	}
	if err := f.enc.encode(f.acts, x, rows); err != nil {
		return 0, 0, err
	}
	return f.tr.step(f.acts, y, lr)
}

// runTokens runs the model on a batch of n rows read ahead, then hands its
// buffer back for reuse: run's copy to the device is synchronous.
func (f *Fit) runTokens(tokens []int32, n int) error {
	defer func() { f.spare <- tokens }()
	if len(tokens) != n*f.t {
		return fmt.Errorf("cuda: a step of %d sequences, batches of %d tokens", n, len(tokens))
	}
	if err := f.m2.CheckTokens(tokens, n, f.t); err != nil {
		return err
	}
	return f.m.run(tokens, n, f.t)
}

var _ midcoder.Backend = (*Fit)(nil)

// Sync copies the parameters and moments to the host trainer.
func (f *Fit) Sync() error { return f.tr.Sync() }

// SyncParams copies W_mid and b_mid (not the moments) to the host trainer.
func (f *Fit) SyncParams() error { return f.tr.SyncParams() }

// Close releases the device memory and stops reading ahead.
func (f *Fit) Close() {
	if f.cancel != nil {
		f.cancel()
	}
	f.free()
	if f.tr != nil {
		f.tr.Free()
	}
	if len(f.xy.bufs) > 0 {
		defer f.d.enter()()
		f.xy.freeAll()
	}
}
