package midcoder

import (
	"context"

	"github.com/ctxdep/ctxdep/internal/transcoder"
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
	tr   Stepper
	src  Source
	last *lastBatch // the batch of the last step, for CheckLastBatch
}

// lastBatch is the batch of a backend's last step: the source's buffers,
// valid until its next Next.
type lastBatch struct {
	acts *transcoder.Acts
	y    []float32
}

var (
	_ Backend      = cpuBackend{}
	_ BatchChecker = cpuBackend{}
)

// NewCPUBackend returns the CPU's Backend: tr (a *Trainer, whose
// parameters are the host's) stepping on src's batches. Close closes src.
func NewCPUBackend(tr Stepper, src Source) Backend { return cpuBackend{tr, src, &lastBatch{}} }

func (b cpuBackend) Step(ctx context.Context, n int, lr float64) (float64, float64, error) {
	acts, y, err := b.src.Next(ctx, n)
	if err != nil {
		return 0, 0, err
	}
	b.last.acts, b.last.y = acts, y
	loss, norm := b.tr.Step(acts, y, lr)
	return loss, norm, nil
}

// CheckLastBatch implements BatchChecker: the last step's batch is still
// the source's.
func (b cpuBackend) CheckLastBatch() string { return FirstNonFinite(b.last.acts, b.last.y) }

func (cpuBackend) Sync() error       { return nil }
func (cpuBackend) SyncParams() error { return nil }
func (b cpuBackend) Close()          { b.src.Close() }
