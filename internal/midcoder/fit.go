package midcoder

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/ctxdep/ctxdep/internal/dtype"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// Config holds a fit's settings (`ctxdep fit --help`; the defaults are the notebook's).
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

// MaxTokens bounds the tokens a fit may train on, epochs ×
// steps_per_epoch × B × T, and so each of its factors: 2^53, the largest
// count float64 holds exactly and some 600 times the largest training runs
// there are. A setting beyond it is a mistake, not a fit (Check).
const MaxTokens int64 = 1 << 53

// tokensPerEpoch returns T·B·steps_per_epoch, the tokens one epoch trains
// on, and false when a factor is not positive or the product exceeds
// limit; it never overflows.
func (c Config) tokensPerEpoch(limit int64) (int64, bool) {
	per := int64(1)
	for _, f := range []int{c.ContextLength, c.BatchSize, c.StepsPerEpoch} {
		if f <= 0 || int64(f) > limit/per {
			return 0, false
		}
		per *= int64(f)
	}
	return per, true
}

// Epochs is floor(train_tokens / (T·B·steps_per_epoch)) + 1, the
// notebook's count (2 for its 100,000 tokens at B = 64). It is
// exact for any positive settings, with no overflow (an epoch of more
// tokens than int64 holds exceeds any train_tokens: 1 epoch), never
// panics (1 when a setting is not positive or train_tokens is negative,
// which Check refuses), and is at most math.MaxInt.
func (c Config) Epochs() int {
	per, ok := c.tokensPerEpoch(math.MaxInt64)
	if !ok || c.TrainTokens < 0 {
		return 1
	}
	q := c.TrainTokens / per
	if q >= int64(math.MaxInt) {
		return math.MaxInt
	}
	return int(q) + 1
}

// Check rejects settings that cannot run, and those whose fit would train
// on more than MaxTokens tokens: an epoch of T·B·steps_per_epoch tokens,
// and all epochs together.
func (c Config) Check() error {
	switch {
	case c.BatchSize <= 0 || c.StepsPerEpoch <= 0 || c.ContextLength <= 0:
		return fmt.Errorf("batch size %d, steps per epoch %d and context length %d must be positive", c.BatchSize, c.StepsPerEpoch, c.ContextLength)
	case c.TrainTokens < 0:
		return fmt.Errorf("train tokens %d is negative", c.TrainTokens)
	case c.TrainTokens > MaxTokens:
		return fmt.Errorf("train tokens %d is more than 2^53 = %d, more than any fit can train on: lower --train-tokens", c.TrainTokens, MaxTokens)
	case !(c.LR > 0) || math.IsInf(c.LR, 0):
		return fmt.Errorf("learning rate %g must be positive", c.LR)
	case !(c.WeightDecay >= 0) || math.IsInf(c.WeightDecay, 0):
		return fmt.Errorf("weight decay %g must be non-negative", c.WeightDecay)
	}
	per, ok := c.tokensPerEpoch(MaxTokens)
	if !ok {
		return fmt.Errorf("steps per epoch %d × batch size %d × %d tokens per sequence is more than 2^53 = %d tokens per epoch: lower --steps-per-epoch or --batch-size",
			c.StepsPerEpoch, c.BatchSize, c.ContextLength, MaxTokens)
	}
	// Epochs ≤ TrainTokens/per + 1, so the product is at most 2·MaxTokens.
	if total := int64(c.Epochs()) * per; total > MaxTokens {
		return fmt.Errorf("%d epochs of %d tokens is more than 2^53 = %d tokens: lower --train-tokens", c.Epochs(), per, MaxTokens)
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

// NonFiniteError reports a loss that is NaN or infinite, and whether the
// data or the step caused it when the backend can tell (BatchChecker).
type NonFiniteError struct {
	Epoch, Step int
	Loss        float64
	// Checked is set when the backend checked the step's batch; then Data
	// describes its first NaN or Inf ("y holds NaN at [12, 5]"): the data
	// caused the loss. Checked with Data empty: the batch was finite, so
	// the step did (the parameters grew non-finite or overflowed).
	Checked bool
	Data    string
}

func (e *NonFiniteError) Error() string {
	at := fmt.Sprintf("loss became %g at epoch %d, step %d", e.Loss, e.Epoch, e.Step)
	switch {
	case !e.Checked:
		return at + ": lower --lr, or check the inputs"
	case e.Data != "":
		return at + ": the data caused it, not the step: the batch's " + e.Data + "; rebuild the cache (or check the model and transcoder) it came from"
	}
	return at + ": the step caused it, not the data (the batch is finite; the parameters grew too large): lower --lr"
}

// BatchChecker is implemented by a Backend that can check the batch of its
// last step for NaN and Inf. Fit asks only after a non-finite loss, so that
// its error says whether the data or the step caused it.
type BatchChecker interface {
	// CheckLastBatch describes the first NaN or Inf of the last step's
	// batch (FirstNonFinite), "" when it holds none.
	CheckLastBatch() string
}

// FirstNonFinite describes the first NaN or ±Inf of a batch, its targets y
// (rows, C) and then its activation values, "" when they hold none: what a
// BatchChecker on acts and y returns.
func FirstNonFinite(acts *transcoder.Acts, y []float32) string {
	rows := 0
	if acts != nil {
		rows = acts.Rows()
	}
	if rows > 0 && len(y)%rows == 0 {
		if err := dtype.CheckFinite("y", y, rows, len(y)/rows); err != nil {
			return err.Error()
		}
	} else if err := dtype.CheckFinite("y", y); err != nil {
		return err.Error()
	}
	if acts == nil {
		return ""
	}
	for k, v := range acts.Values {
		if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
			r := sort.Search(rows, func(r int) bool { return acts.Indptr[r+1] > int64(k) })
			return fmt.Sprintf("activations hold %v at row %d, feature %d", v, r, acts.Indices[k])
		}
	}
	return ""
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
				nf := &NonFiniteError{Epoch: e, Step: s, Loss: loss}
				if bc, ok := b.(BatchChecker); ok {
					nf.Checked, nf.Data = true, bc.CheckLastBatch()
				}
				return nf
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
