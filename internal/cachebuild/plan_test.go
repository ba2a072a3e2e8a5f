package cachebuild

import (
	"errors"
	"math"
	"testing"
)

// Hand-checked plans. 90 tokens in rows of 16 round up to 6 rows, 96
// tokens. Four workers cache rows [0, 1), [1, 3), [3, 4), [4, 6): at most
// 2 each; in batches of 4 ([0, 4) and [4, 6)) the first three compute
// batch [0, 4), 4 rows, the last [4, 6). With 2 rows per shard each
// worker writes one shard: 4 in all. x and y of C = 16 values: 2·16·4 + 4
// = 132 bytes per token in float32, 2·16·2 + 4 = 68 in float16.
func TestNewPlan(t *testing.T) {
	for _, c := range []struct {
		name                           string
		in                             PlanInput
		rows                           int
		tokens                         int64
		perWorker, computed, shards    int
		bytes32, bytes16               int64
		secondsTotal, secondsPerWorker float64 // at 32 tokens/s after a 0.5 s load
	}{
		{"4 workers", PlanInput{NTokens: 90, RowLen: 16, Workers: 4, BatchSize: 4, PerShard: 2, DModel: 16},
			6, 96, 2, 4, 4, 96 * 132, 96 * 68, 96.0 / 32, 0.5 + 4*16.0/32},
		// One shard per row: the workers' 1 + 2 + 1 + 2 shards.
		{"a shard per row", PlanInput{NTokens: 96, RowLen: 16, Workers: 4, BatchSize: 4, PerShard: 1, DModel: 16},
			6, 96, 2, 4, 6, 96 * 132, 96 * 68, 96.0 / 32, 0.5 + 4*16.0/32},
		// One machine computes every row; shards of 4 rows: [0, 4), [4, 6).
		{"one machine", PlanInput{NTokens: 96, RowLen: 16, Workers: 1, BatchSize: 4, PerShard: 4, DModel: 16},
			6, 96, 6, 6, 2, 96 * 132, 96 * 68, 96.0 / 32, 0.5 + 6*16.0/32},
		// A batch of 32 rows holds all 6: each of 3 workers computes all.
		{"batch beyond the rows", PlanInput{NTokens: 96, RowLen: 16, Workers: 3, BatchSize: 32, PerShard: 128, DModel: 16},
			6, 96, 2, 6, 3, 96 * 132, 96 * 68, 96.0 / 32, 0.5 + 6*16.0/32},
		// cmd's TestCachePlan: 1000 tokens in rows of 32 are 32 rows, 1024
		// tokens; 3 workers cache 10, 11, 11 rows ([0, 10), [10, 21),
		// [21, 32)); in batches of 32 each computes all 32.
		{"tiny model", PlanInput{NTokens: 1000, RowLen: 32, Workers: 3, BatchSize: 32, PerShard: 128, DModel: 16},
			32, 1024, 11, 32, 3, 1024 * 132, 1024 * 68, 1024.0 / 32, 0.5 + 32*32.0/32},
		// A layer set's cache also stores the float32 ln2.hook_scale: 4
		// more bytes per token in either dtype.
		{"layer set", PlanInput{NTokens: 96, RowLen: 16, Workers: 1, BatchSize: 4, PerShard: 4, DModel: 16, Scale: true},
			6, 96, 6, 6, 2, 96 * 136, 96 * 72, 96.0 / 32, 0.5 + 6*16.0/32},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := NewPlan(c.in)
			if err != nil {
				t.Fatalf("NewPlan: %v", err)
			}
			if p.PlanInput != c.in || p.Rows != c.rows || p.Tokens != c.tokens || p.RowsPerWorker != c.perWorker ||
				p.ComputedRows != c.computed || p.Shards != c.shards {
				t.Errorf("NewPlan = %+v, want %d rows, %d tokens, %d rows per worker, %d computed, %d shards",
					*p, c.rows, c.tokens, c.perWorker, c.computed, c.shards)
			}
			scale := int64(0) // the float32 scale's bytes per token
			if c.in.Scale {
				scale = 4
			}
			for _, d := range []struct {
				dtype string
				bpt   int64
				bytes int64
			}{{"float32", 132 + scale, c.bytes32}, {"float16", 68 + scale, c.bytes16}} {
				want := Estimate{BytesPerToken: d.bpt, Bytes: d.bytes, SecondsTotal: c.secondsTotal, SecondsPerWorker: c.secondsPerWorker}
				if got := p.Estimate(d.dtype, 32, 0.5); got != want {
					t.Errorf("Estimate(%s) = %+v, want %+v", d.dtype, got, want)
				}
				// Without y: x, the token and the scale, (bpt − 4 − scale)/2 + 4 + scale bytes.
				noY := *p
				noY.NoY = true
				want.BytesPerToken = (d.bpt-4-scale)/2 + 4 + scale
				want.Bytes = want.BytesPerToken * p.Tokens
				if got := noY.Estimate(d.dtype, 32, 0.5); got != want {
					t.Errorf("Estimate(%s, no y) = %+v, want %+v", d.dtype, got, want)
				}
			}
		})
	}
}

// Plans no build can have are errors that wrap ErrPlan (the CLI's usage
// error), in the words `ctxdep cache plan` has always printed.
func TestNewPlanErrors(t *testing.T) {
	ok := PlanInput{NTokens: 96, RowLen: 16, Workers: 4, BatchSize: 4, PerShard: 2, DModel: 16}
	with := func(f func(*PlanInput)) PlanInput { in := ok; f(&in); return in }
	for _, c := range []struct {
		name string
		in   PlanInput
		want string
	}{
		{"more workers than rows", with(func(in *PlanInput) { in.Workers = 7 }),
			"--workers 7 for 6 rows would leave workers without rows: use at most 6"},
		{"more rows than a token file holds", with(func(in *PlanInput) { in.NTokens = (math.MaxInt32 + 1) * 16 }),
			"--n-tokens 34359738368 is more rows than a token file can hold"},
		// ⌈n/16⌉ computed without n+15 overflowing to a negative row count.
		{"the most tokens", with(func(in *PlanInput) { in.NTokens = math.MaxInt64 }),
			"--n-tokens 9223372036854775807 is more rows than a token file can hold"},
		{"no tokens", with(func(in *PlanInput) { in.NTokens = 0 }),
			"cannot plan 0 tokens in rows of 16 for 4 workers (1..99999), batches of 4 rows and shards of 2 rows"},
		{"no workers", with(func(in *PlanInput) { in.Workers = 0 }),
			"cannot plan 96 tokens in rows of 16 for 0 workers (1..99999), batches of 4 rows and shards of 2 rows"},
		{"too many workers", with(func(in *PlanInput) { in.Workers = 100000 }),
			"cannot plan 96 tokens in rows of 16 for 100000 workers (1..99999), batches of 4 rows and shards of 2 rows"},
		{"empty batches", with(func(in *PlanInput) { in.BatchSize = 0 }),
			"cannot plan 96 tokens in rows of 16 for 4 workers (1..99999), batches of 0 rows and shards of 2 rows"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := NewPlan(c.in)
			if err == nil {
				t.Fatalf("NewPlan = %+v, want the error %q", *p, c.want)
			}
			if !errors.Is(err, ErrPlan) || err.Error() != c.want {
				t.Errorf("error %q (wraps ErrPlan: %v), want %q", err, errors.Is(err, ErrPlan), c.want)
			}
		})
	}
	// The most rows a token file holds are a plan.
	if p, err := NewPlan(with(func(in *PlanInput) { in.NTokens = math.MaxInt32 * 16 })); err != nil || p.Rows != math.MaxInt32 {
		t.Errorf("NewPlan(%d rows) = %v, %v", math.MaxInt32, p, err)
	}
}
