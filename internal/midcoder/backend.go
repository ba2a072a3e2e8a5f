package midcoder

import (
	"context"
)

// Backend is where a fit's steps run: on the CPU (NewCPUBackend, a
// Trainer stepping on a Source's batches) or on a device that holds the
// data and parameters itself (cuda.Fit). What surrounds the steps (epochs,
// the cosine schedule, checkpoints, resuming, the output files) is Fit's
// and Job's, the same for every backend.
type Backend interface {
	// Step takes one training step on the next n sequences at learning
	// rate lr and returns the batch's loss and loss_norm.
	Step(ctx context.Context, n int, lr float64) (loss, lossNorm float64, err error)
	// Sync makes the host Trainer's parameters and AdamW moments current,
	// for a checkpoint (the CPU's are always current).
	Sync() error
	// SyncParams makes the host's W_mid and b_mid current, for the result.
	SyncParams() error
	// Close releases what the backend holds: read-ahead, device memory.
	Close()
}

// cpuBackend is Backend on the CPU: tr steps on src's batches, in place.
type cpuBackend struct {
	tr  Stepper
	src Source
}

var _ Backend = cpuBackend{}

// NewCPUBackend returns the CPU's Backend: tr (a *Trainer, whose
// parameters are the host's) stepping on src's batches. Close closes src.
func NewCPUBackend(tr Stepper, src Source) Backend { return cpuBackend{tr, src} }

func (b cpuBackend) Step(ctx context.Context, n int, lr float64) (float64, float64, error) {
	acts, y, err := b.src.Next(ctx, n)
	if err != nil {
		return 0, 0, err
	}
	loss, norm := b.tr.Step(acts, y, lr)
	return loss, norm, nil
}

func (cpuBackend) Sync() error       { return nil }
func (cpuBackend) SyncParams() error { return nil }
func (b cpuBackend) Close()          { b.src.Close() }
