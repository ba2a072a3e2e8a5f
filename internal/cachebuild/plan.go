package cachebuild

import (
	"errors"
	"fmt"
	"math"

	"github.com/ctxdep/ctxdep/internal/actcache"
)

// PlanInput describes a cache to size before it is built (`ctxdep cache
// plan`): its tokens, and how a build would cut them.
type PlanInput struct {
	NTokens   int64 // tokens to cache, rounded up to whole rows
	RowLen    int   // tokens per row, T
	Workers   int   // workers of the sharded build, N (1: one machine)
	BatchSize int   // rows per forward pass, B
	PerShard  int   // rows per shard file
	DModel    int   // the model's d_model, C
	NoY       bool  // the cache stores no y (cache build --store-y=false)
	Scale     bool  // the cache stores ln2.hook_scale, as a layer set's do
}

// Plan is the size of a cache and its split among workers. Estimate adds
// disk bytes and time for one layer's cache in one dtype.
type Plan struct {
	PlanInput
	Rows          int   // ⌈NTokens / T⌉
	Tokens        int64 // Rows·T
	RowsPerWorker int   // rows the largest worker caches, ⌈Rows / N⌉
	ComputedRows  int   // rows the busiest worker computes, in whole batches (WorkerLoad)
	Shards        int   // shard files of all workers together
}

// ErrPlan is wrapped by every error of NewPlan: inputs no build can have,
// the caller's usage error. The errors' own text names the flag of
// `ctxdep cache plan` to change.
var ErrPlan = errors.New("cachebuild: impossible plan")

// planError is an error of NewPlan: its message, wrapping ErrPlan without
// adding to the text.
type planError string

func (e planError) Error() string { return string(e) }
func (e planError) Unwrap() error { return ErrPlan }

// NewPlan returns the plan for in. Its errors wrap ErrPlan: inputs that
// are not positive or more workers than actcache.MaxWorkers, more rows
// than a token file can hold (math.MaxInt32), or more workers than rows.
func NewPlan(in PlanInput) (*Plan, error) {
	if in.NTokens <= 0 || in.RowLen <= 0 || in.Workers < 1 || in.Workers > actcache.MaxWorkers || in.BatchSize <= 0 || in.PerShard <= 0 {
		return nil, planError(fmt.Sprintf("cannot plan %d tokens in rows of %d for %d workers (1..%d), batches of %d rows and shards of %d rows",
			in.NTokens, in.RowLen, in.Workers, actcache.MaxWorkers, in.BatchSize, in.PerShard))
	}
	t := int64(in.RowLen)
	rows64 := (in.NTokens-1)/t + 1 // ⌈NTokens/T⌉, without overflowing near math.MaxInt64
	if rows64 > math.MaxInt32 {
		return nil, planError(fmt.Sprintf("--n-tokens %d is more rows than a token file can hold", in.NTokens))
	}
	rows := int(rows64)
	if in.Workers > rows {
		return nil, planError(fmt.Sprintf("--workers %d for %d rows would leave workers without rows: use at most %d", in.Workers, rows, rows))
	}
	p := &Plan{PlanInput: in, Rows: rows, Tokens: rows64 * t}
	for i := range in.Workers {
		n, computed := WorkerLoad(actcache.Worker{Index: i, Count: in.Workers, TotalRows: rows}, in.BatchSize)
		p.Shards += (n + in.PerShard - 1) / in.PerShard
		p.RowsPerWorker, p.ComputedRows = max(p.RowsPerWorker, n), max(p.ComputedRows, computed)
	}
	return p, nil
}

// Estimate is a plan's disk size and time for one layer's cache in one
// dtype.
type Estimate struct {
	BytesPerToken    int64   // BytesPerToken(C, dtype, !NoY), plus 4 with Scale
	Bytes            int64   // Tokens·BytesPerToken, without acts and shard headers
	SecondsTotal     float64 // all tokens on one worker, without the model load
	SecondsPerWorker float64 // the busiest worker's ComputedRows, model load included
}

// Estimate returns the disk size of p's cache stored in dtype ("float32"
// or "float16") and the time its workers take at tokensPerSecond, the
// forward speed to its layer (Measure), after loadSeconds loading the
// model.
func (p *Plan) Estimate(dtype string, tokensPerSecond, loadSeconds float64) Estimate {
	bpt := BytesPerToken(p.DModel, dtype, !p.NoY)
	if p.Scale {
		bpt += 4 // float32 ln2.hook_scale
	}
	return Estimate{
		BytesPerToken:    bpt,
		Bytes:            p.Tokens * bpt,
		SecondsTotal:     float64(p.Tokens) / tokensPerSecond,
		SecondsPerWorker: loadSeconds + float64(p.ComputedRows*p.RowLen)/tokensPerSecond,
	}
}

// BytesPerToken returns the bytes a cache stores per token without acts:
// x and, when storeY, y of c values each in dtype ("float32": 4 bytes,
// "float16": 2) plus the int32 token, 2·c·size + 4 (c·size + 4 without y).
// Safetensors headers and the manifest add well under a kilobyte per shard.
func BytesPerToken(c int, dtype string, storeY bool) int64 {
	vectors := int64(2)
	if !storeY {
		vectors = 1
	}
	return vectors*int64(c)*int64(actcache.StorageDType(dtype).Size()) + 4
}

// WorkerLoad returns the rows worker w of a build in batches of batch rows
// caches, and the rows it computes: the whole batches that hold its rows
// (see actcache.BatchGrid), at most two of them shared with a neighbour.
func WorkerLoad(w actcache.Worker, batch int) (cached, computed int) {
	first, n := w.Range()
	lo := first / batch * batch
	hi := min((first+n+batch-1)/batch*batch, w.TotalRows)
	return n, hi - lo
}
