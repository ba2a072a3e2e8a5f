//go:build !cuda && !cudasim

package cuda

import (
	"context"
	"errors"

	"github.com/ctxdep/ctxdep/internal/cachebuild"
	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/midcoder"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// Built reports whether this binary has the CUDA backend.
const Built = false

// Simulated reports whether this build's device is the simulated one.
const Simulated = false

// ErrNotBuilt is returned by everything in builds without the cuda tag.
var ErrNotBuilt = errors.New("this ctxdep was built without CUDA; build it with `make build-cuda` (see the README's GPU section), or use --device cpu")

// Available reports whether the CUDA backend can be used.
func Available() error { return ErrNotBuilt }

// Device is a GPU; in this build there is none.
type Device struct{}

// Open fails: this build has no CUDA backend.
func Open(Options) (*Device, error) { return nil, ErrNotBuilt }

// Close does nothing.
func (d *Device) Close() {}

// Name describes the device.
func (d *Device) Name() string { return "none (built without CUDA)" }

// Forward is cache build's pass on the device.
type Forward struct{}

// NewForward fails: this build has no CUDA backend.
func (d *Device) NewForward(*gpt2.Model, []int, []*transcoder.Transcoder, int, int) (*Forward, error) {
	return nil, ErrNotBuilt
}

// Run fails: this build has no CUDA backend.
func (f *Forward) Run([]int32, int, int, []cachebuild.Capture) error {
	return ErrNotBuilt
}

// Free does nothing.
func (f *Forward) Free() {}

// Fit is a fit's step on the device.
type Fit struct{}

// NewTokenFit fails: this build has no CUDA backend.
func (d *Device) NewTokenFit(*gpt2.Model, int, *transcoder.Transcoder, *midcoder.Trainer, func([]int32) error, int, int, int64) (*Fit, error) {
	return nil, ErrNotBuilt
}

// NewXYFit fails: this build has no CUDA backend.
func (d *Device) NewXYFit(*transcoder.Transcoder, *midcoder.Trainer, func(context.Context, int) ([]float32, []float32, error), int, int) (*Fit, error) {
	return nil, ErrNotBuilt
}

// Step fails: this build has no CUDA backend.
func (f *Fit) Step(context.Context, int, float64) (float64, float64, error) { return 0, 0, ErrNotBuilt }

// Sync fails: this build has no CUDA backend.
func (f *Fit) Sync() error { return ErrNotBuilt }

// SyncParams fails: this build has no CUDA backend.
func (f *Fit) SyncParams() error { return ErrNotBuilt }

// Close does nothing.
func (f *Fit) Close() {}

var _ midcoder.Backend = (*Fit)(nil)

// Evaluator is evaluate's pass on the device.
type Evaluator struct{}

// NewEvaluator fails: this build has no CUDA backend.
func (d *Device) NewEvaluator(*gpt2.Model, int, *transcoder.Transcoder, []*midcoder.Params, []*midcoder.MLP, int) (*Evaluator, error) {
	return nil, ErrNotBuilt
}

// Rows is one.
func (e *Evaluator) Rows() int { return 1 }

// Batch fails: this build has no CUDA backend.
func (e *Evaluator) Batch([]int32, int, int, []float64, []float64, *float64) error {
	return ErrNotBuilt
}

// Close does nothing.
func (e *Evaluator) Close() {}

// EffectAccumulator is the report's effect statistics on the device.
type EffectAccumulator struct{}

// NewEffectAccumulator fails: this build has no CUDA backend.
func (d *Device) NewEffectAccumulator(*midcoder.MLP, *midcoder.Params, *midcoder.Params, int) (*EffectAccumulator, error) {
	return nil, ErrNotBuilt
}

// Add fails: this build has no CUDA backend.
func (ea *EffectAccumulator) Add(*transcoder.Acts, []float32) error { return ErrNotBuilt }

// Sums fails: this build has no CUDA backend.
func (ea *EffectAccumulator) Sums() ([]int64, []float64, []float64, []float64, error) {
	return nil, nil, nil, nil, ErrNotBuilt
}

// Close does nothing.
func (ea *EffectAccumulator) Close() {}
