package main

import (
	"github.com/ctxdep/ctxdep/internal/analysis"
	"github.com/ctxdep/ctxdep/internal/cachebuild"
	"github.com/ctxdep/ctxdep/internal/cuda"
	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// A backend is where a command's heavy work runs: the CPU, or one CUDA
// device. It is chosen once, from --device, when a command starts
// (globalOptions.setup); commands ask it for their passes and fits and
// never look at --device themselves. Commands that only have CPU code
// (inspect-cache, pinv-baseline, connections) call cpuOnly; report runs
// its effect statistics on the backend and the rest on the CPU.
type backend interface {
	// pass returns cache build's forward pass capturing layers (with each
	// layer's encoder where tcs holds a transcoder) for batches of up to
	// maxRows rows of t tokens, and its release.
	pass(m *gpt2.Model, layers []int, tcs []*transcoder.Transcoder, maxRows, t int) (cachebuild.Pass, func(), error)
	// trainer returns the host trainer of a fit: the parameters and AdamW
	// moments the fit starts from, resumes into and ends in.
	trainer(mlp *midcoder.MLP, p *midcoder.Params, opt *midcoder.AdamW, maxRows int) *midcoder.Trainer
	// fit returns the fit's steps on fd, positioned after skip sequences.
	fit(fd fitData, cfg midcoder.Config, host *midcoder.Trainer, skip int64) (midcoder.Backend, error)
	// evalPass returns evaluate's pass at block layer over rows of t
	// tokens, with the midcoders mids.
	evalPass(m *gpt2.Model, layer int, tc *transcoder.Transcoder, mids []analysis.Midcoder, t int) (analysis.EvalPass, error)
	// effect returns the report's effect statistics pass (nil: the CPU's).
	effect() analysis.NewEffect
	// cpu reports whether the work runs on the CPU: buffers for the
	// forward pass are host memory, and a fit uses a cache's stored
	// activations (the GPU encodes x itself from the cache's x).
	cpu() bool
	// describe says what runs the work, for reports and logs.
	describe() string
	// cpuOnly notes that cmd runs on the CPU whatever --device says.
	cpuOnly(cmd string)
	// close releases the device, if one was opened.
	close()
}

// newBackend returns the backend --device names.
func newBackend(g *globalOptions) (backend, error) {
	switch g.device {
	case "cpu":
		return cpuBackend{g}, nil
	case "cuda":
		if err := cuda.Available(); err != nil {
			return nil, err
		}
		return &cudaBackend{opts: cuda.Options{TF32: g.tf32, Deterministic: g.determ}, note: g.notef}, nil
	}
	return nil, usagef("--device %q: want cpu or cuda", g.device)
}

// cpuBackend runs everything on the CPU, with the BLAS blasimpl chose.
type cpuBackend struct{ g *globalOptions }

func (cpuBackend) pass(m *gpt2.Model, layers []int, tcs []*transcoder.Transcoder, maxRows, t int) (cachebuild.Pass, func(), error) {
	return cachebuild.NewCPUPass(m, layers, tcs, maxRows*t), func() {}, nil
}

func (cpuBackend) trainer(mlp *midcoder.MLP, p *midcoder.Params, opt *midcoder.AdamW, maxRows int) *midcoder.Trainer {
	return midcoder.NewTrainer(mlp, p, opt, maxRows)
}

func (cpuBackend) fit(fd fitData, cfg midcoder.Config, host *midcoder.Trainer, skip int64) (midcoder.Backend, error) {
	var src midcoder.Source
	if fd.cache != nil {
		cs, err := midcoder.NewCacheSource(fd.cache, fd.tc, fd.useStored)
		if err != nil {
			return nil, err
		}
		src = cs
	} else {
		src = midcoder.NewStreamSource(fd.model, cfg.Layer, fd.tc, fd.text.Next, cfg.ContextLength, cfg.BatchSize)
	}
	if err := src.Skip(skip); err != nil {
		src.Close()
		return nil, err
	}
	return midcoder.NewCPUBackend(host, src), nil
}

func (cpuBackend) evalPass(m *gpt2.Model, layer int, tc *transcoder.Transcoder, mids []analysis.Midcoder, t int) (analysis.EvalPass, error) {
	return analysis.NewCPUEvalPass(m, layer, tc, mids, t), nil
}

func (cpuBackend) effect() analysis.NewEffect { return nil }

func (cpuBackend) cpu() bool          { return true }
func (b cpuBackend) describe() string { return b.g.blas.Backend }
func (cpuBackend) cpuOnly(string)     {}
func (cpuBackend) close()             {}

// cudaBackend runs cache build's pass and the fit on one GPU, opened at
// first use.
type cudaBackend struct {
	opts cuda.Options
	note func(format string, a ...any) // globalOptions.notef: once, unless --quiet
	dev  *cuda.Device
}

// device opens the GPU once and says which it is.
func (b *cudaBackend) device() (*cuda.Device, error) {
	if b.dev != nil {
		return b.dev, nil
	}
	dev, err := cuda.Open(b.opts)
	if err != nil {
		return nil, err
	}
	b.note("device: %s", dev.Name())
	b.dev = dev
	return dev, nil
}

func (b *cudaBackend) pass(m *gpt2.Model, layers []int, tcs []*transcoder.Transcoder, maxRows, t int) (cachebuild.Pass, func(), error) {
	dev, err := b.device()
	if err != nil {
		return nil, nil, err
	}
	f, err := dev.NewForward(m, layers, tcs, maxRows, t)
	if err != nil {
		return nil, nil, err
	}
	return f, f.Free, nil
}

// trainer is the host copy of the GPU's parameters: no buffers, no steps.
func (b *cudaBackend) trainer(mlp *midcoder.MLP, p *midcoder.Params, opt *midcoder.AdamW, _ int) *midcoder.Trainer {
	return &midcoder.Trainer{Model: &midcoder.Model{MLP: mlp, Params: p}, Opt: opt}
}

// fit runs the whole step on the GPU, from x and y of the cache or from
// the text's token ids, syncing into host.
func (b *cudaBackend) fit(fd fitData, cfg midcoder.Config, host *midcoder.Trainer, skip int64) (midcoder.Backend, error) {
	dev, err := b.device()
	if err != nil {
		return nil, err
	}
	t, n := cfg.ContextLength, cfg.BatchSize
	if fd.cache == nil {
		return dev.NewTokenFit(fd.model, cfg.Layer, fd.tc, host, fd.text.Next, t, n, skip)
	}
	xy := midcoder.NewCacheXYSource(fd.cache)
	if err := xy.Skip(skip); err != nil {
		return nil, err
	}
	fit, err := dev.NewXYFit(fd.tc, host, xy.NextXY, t, n)
	if err != nil {
		xy.Close()
		return nil, err
	}
	return closing{fit, xy.Close}, nil
}

// evalPass runs evaluate's model passes, splices and cross-entropies on
// the GPU.
func (b *cudaBackend) evalPass(m *gpt2.Model, layer int, tc *transcoder.Transcoder, mids []analysis.Midcoder, t int) (analysis.EvalPass, error) {
	dev, err := b.device()
	if err != nil {
		return nil, err
	}
	params, mlps := make([]*midcoder.Params, len(mids)), make([]*midcoder.MLP, len(mids))
	for i, mc := range mids {
		params[i], mlps[i] = mc.Params, mc.MLP
	}
	return dev.NewEvaluator(m, layer, tc, params, mlps, t)
}

// effect accumulates the report's effect statistics on the GPU (their
// GEMMs are most of a report's work); the report's other statistics stay
// on the CPU.
func (b *cudaBackend) effect() analysis.NewEffect {
	return func(mlp *midcoder.MLP, fit, pinv *midcoder.Params, wDec []float32) (analysis.EffectPass, error) {
		dev, err := b.device()
		if err != nil {
			return nil, err
		}
		ea, err := dev.NewEffectAccumulator(mlp, fit, pinv, analysis.ReportRows)
		if err != nil {
			return nil, err
		}
		return deviceEffect{ea, wDec, mlp.C}, nil
	}
}

// deviceEffect is analysis.EffectPass on the GPU.
type deviceEffect struct {
	ea   *cuda.EffectAccumulator
	wDec []float32
	c    int
}

func (e deviceEffect) Add(acts *transcoder.Acts, pre []float32) error { return e.ea.Add(acts, pre) }

func (e deviceEffect) Result() (*analysis.EffectResult, error) {
	count, sum, sumP, normSum, err := e.ea.Sums()
	if err != nil {
		return nil, err
	}
	return analysis.EffectResultOf(count, sum, sumP, normSum, e.wDec, e.c), nil
}

func (e deviceEffect) Close() { e.ea.Close() }

func (b *cudaBackend) cpu() bool { return false }

func (b *cudaBackend) describe() string {
	if dev, err := b.device(); err == nil {
		return "cuda: " + dev.Name()
	}
	return "cuda"
}

func (b *cudaBackend) cpuOnly(cmd string) {
	b.note("note: %s runs on the CPU; --device cuda applies to cache build, cache plan, fit, evaluate\nand report's effect statistics", cmd)
}

func (b *cudaBackend) close() {
	if b.dev != nil {
		b.dev.Close()
		b.dev = nil
	}
}

// closing is a midcoder.Backend that also closes what it was made from.
type closing struct {
	midcoder.Backend
	after func()
}

func (c closing) Close() {
	c.Backend.Close()
	c.after()
}
