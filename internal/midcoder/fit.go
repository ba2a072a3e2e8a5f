package midcoder

import (
	"context"
	"fmt"
	"math"

	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// Config holds a fit's settings (CLI.md `fit`, SPEC §4.2 defaults).
type Config struct {
	Layer         int     `json:"layer"`
	ContextLength int     `json:"context_length"`
	BatchSize     int     `json:"batch_size"`      // sequences per step
	StepsPerEpoch int     `json:"steps_per_epoch"` // optimizer steps per epoch
	TrainTokens   int64   `json:"train_tokens"`
	LR            float64 `json:"lr"`
	WeightDecay   float64 `json:"weight_decay"`
	Seed          uint64  `json:"seed"`
	Init          string  `json:"init"` // kaiming, zeros or pinv
	Act           string  `json:"act"`  // relu or gelu_new
}

// Epochs is floor(train_tokens / (T·B·steps_per_epoch)) + 1, the
// notebook's count (SPEC §4.2: 2 for its 100,000 tokens at B = 64).
func (c Config) Epochs() int {
	return int(c.TrainTokens/int64(c.ContextLength*c.BatchSize*c.StepsPerEpoch)) + 1
}

// Check rejects settings that cannot run.
func (c Config) Check() error {
	switch {
	case c.BatchSize <= 0 || c.StepsPerEpoch <= 0 || c.ContextLength <= 0:
		return fmt.Errorf("batch size %d, steps per epoch %d and context length %d must be positive", c.BatchSize, c.StepsPerEpoch, c.ContextLength)
	case c.TrainTokens < 0:
		return fmt.Errorf("train tokens %d is negative", c.TrainTokens)
	case !(c.LR > 0) || math.IsInf(c.LR, 0):
		return fmt.Errorf("learning rate %g must be positive", c.LR)
	case !(c.WeightDecay >= 0) || math.IsInf(c.WeightDecay, 0):
		return fmt.Errorf("weight decay %g must be non-negative", c.WeightDecay)
	}
	return nil
}

// Record is one epoch of the history: means over its steps of loss and
// loss_norm, and the learning rate as logged after the scheduler step.
type Record struct {
	Epoch    int     `json:"epoch"`
	Loss     float64 `json:"loss"`
	LossNorm float64 `json:"loss_norm"`
	LR       float64 `json:"lr"`
}

// State is everything a fit needs to continue: with the same data source it
// resumes to a result identical to an uninterrupted run.
type State struct {
	Epoch   int      // completed epochs
	LR      float64  // the scheduler's current learning rate
	Rows    int64    // sequences consumed from the source
	History []Record // one per completed epoch
}

// Source yields training batches in a fixed order.
type Source interface {
	// Next returns the next n sequences' activations (n·T rows) and
	// targets y (n·T·C); valid until the next call.
	Next(ctx context.Context, n int) (*transcoder.Acts, []float32, error)
	// Skip moves past n sequences, to resume; before the first Next.
	Skip(n int64) error
	// Close stops what the source runs in the background.
	Close()
}

// Stepper takes one training step on a batch at learning rate lr and
// returns the batch's loss and loss_norm: *Trainer.
type Stepper interface {
	Step(acts *transcoder.Acts, y []float32, lr float64) (loss, lossNorm float64)
}

// Hooks observe a fit; all are optional.
type Hooks struct {
	// AfterStep is called after each step with its loss and loss_norm.
	AfterStep func(epoch, step int, loss, lossNorm, lr float64)
	// AfterEpoch is called after each epoch's scheduler step, with the state
	// to checkpoint.
	AfterEpoch func(st *State) error
}

// NonFiniteError reports a loss that is NaN or infinite.
type NonFiniteError struct {
	Epoch, Step int
	Loss        float64
}

func (e *NonFiniteError) Error() string {
	return fmt.Sprintf("loss became %g at epoch %d, step %d: lower --lr, or check the inputs", e.Loss, e.Epoch, e.Step)
}

// Fit steps b from state st (a fresh State{LR: cfg.LR} to start) to the
// end of the last epoch, following the notebook: per step, loss → record →
// backward → AdamW step; per epoch, CosineAnnealingLR(T_max = epochs,
// eta_min = 0).step() and a history record of the epoch's means. It is the
// one training loop, whatever the backend.
func Fit(ctx context.Context, cfg Config, b Backend, st *State, hooks Hooks) error {
	epochs := cfg.Epochs()
	for e := st.Epoch; e < epochs; e++ {
		var sumLoss, sumNorm float64
		for s := 0; s < cfg.StepsPerEpoch; s++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			loss, norm, err := b.Step(ctx, cfg.BatchSize, st.LR)
			if err != nil {
				return err
			}
			if math.IsNaN(loss) || math.IsInf(loss, 0) {
				return &NonFiniteError{Epoch: e, Step: s, Loss: loss}
			}
			st.Rows += int64(cfg.BatchSize)
			sumLoss += loss
			sumNorm += norm
			if hooks.AfterStep != nil {
				hooks.AfterStep(e, s, loss, norm, st.LR)
			}
		}
		st.LR = CosineNext(cfg.LR, st.LR, e+1, epochs)
		st.Epoch = e + 1
		st.History = append(st.History, Record{Epoch: e, Loss: sumLoss / float64(cfg.StepsPerEpoch), LossNorm: sumNorm / float64(cfg.StepsPerEpoch), LR: st.LR})
		if hooks.AfterEpoch != nil {
			if err := hooks.AfterEpoch(st); err != nil {
				return err
			}
		}
	}
	return nil
}

// CosineNext returns the learning rate after the scheduler's step to epoch
// t, from the previous rate lr, with torch's recursive CosineAnnealingLR
// formula (eta_min = 0), so that logged values match torch's to the last
// bit:
//
//	t = 0:                      base
//	(t − 1 − T) mod 2T = 0:     lr + base·(1 − cos(π/T))/2
//	otherwise:                  (1 + cos(πt/T)) / (1 + cos(π(t−1)/T)) · lr
func CosineNext(base, lr float64, t, tMax int) float64 {
	switch {
	case t == 0:
		return base
	case (t-1-tMax)%(2*tMax) == 0:
		return lr + base*(1-math.Cos(math.Pi/float64(tMax)))/2
	}
	return (1 + math.Cos(math.Pi*float64(t)/float64(tMax))) / (1 + math.Cos(math.Pi*float64(t-1)/float64(tMax))) * lr
}
