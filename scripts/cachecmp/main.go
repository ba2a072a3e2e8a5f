// Command cachecmp checks that two activation caches hold the same data:
// the same sequences in the same order with bit-identical tokens, x and y
// (and the transcoder activations when both store them), whatever their
// shard layout. scripts/slurm-test.sh and deploy's test use it to check that
// a sharded build (`cache build --shard i/N` + `cache merge`) equals a
// single-process build of the same rows.
//
// Usage:
//
//	go run ./scripts/cachecmp A B
//
// Exit status: 0 identical (one summary line on stdout), 1 different or
// unreadable (the first difference on stderr), 2 usage error.
package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"

	"github.com/ctxdep/ctxdep/internal/actcache"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: cachecmp CACHE_A CACHE_B")
		os.Exit(2)
	}
	sum, err := compare(os.Args[1], os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "cachecmp: "+err.Error())
		os.Exit(1)
	}
	fmt.Println(sum)
}

// compare returns a summary when the caches at a and b hold the same rows.
func compare(a, b string) (string, error) {
	ca, err := actcache.Open(a)
	if err != nil {
		return "", err
	}
	cb, err := actcache.Open(b)
	if err != nil {
		return "", err
	}
	ma, mb := ca.Manifest, cb.Manifest
	for _, f := range []struct {
		name string
		a, b any
	}{
		{"layer", ma.Layer, mb.Layer},
		{"d_model", ma.DModel, mb.DModel},
		{"context_length", ma.ContextLength, mb.ContextLength},
		{"n_sequences", ma.NSequences, mb.NSequences},
		{"n_tokens", ma.NTokens, mb.NTokens},
		{"dtype", ma.DType, mb.DType},
		{"hooks", ma.Hooks, mb.Hooks},
		{"model sha256", ma.Model.SHA256, mb.Model.SHA256},
	} {
		if f.a != f.b {
			return "", fmt.Errorf("manifest %s: %s has %v, %s has %v", f.name, a, f.a, b, f.b)
		}
	}
	acts := ma.WithActs && mb.WithActs
	ctx := context.Background()
	ra, err := ca.NewReader(ctx, actcache.ReadOptions{})
	if err != nil {
		return "", err
	}
	defer ra.Close()
	rb, err := cb.NewReader(ctx, actcache.ReadOptions{})
	if err != nil {
		return "", err
	}
	defer rb.Close()
	t, d := ma.ContextLength, ma.DModel
	for seq := 0; seq < ma.NSequences; seq++ {
		sa, err := ra.Next(1)
		if err != nil {
			return "", err
		}
		sb, err := rb.Next(1)
		if err != nil {
			return "", err
		}
		if i, ok := firstDiff(sa.Tokens, sb.Tokens, func(x, y int32) bool { return x == y }); !ok {
			return "", fmt.Errorf("sequence %d: tokens differ at position %d", seq, i)
		}
		for _, v := range []struct {
			name string
			a, b []float32 // (T, C)
		}{{"x", sa.X, sb.X}, {"y", sa.Y, sb.Y}} {
			if i, ok := firstDiff(v.a, v.b, sameBits); !ok {
				return "", fmt.Errorf("sequence %d: %s[%d, %d] is %v in %s, %v in %s", seq, v.name, i/d, i%d, v.a[i], a, v.b[i], b)
			}
		}
		if acts {
			for p := range t {
				xi, xv := sa.Acts.Row(p)
				yi, yv := sb.Acts.Row(p)
				if !slices.Equal(xi, yi) || !slices.EqualFunc(xv, yv, sameBits) {
					return "", fmt.Errorf("sequence %d position %d: transcoder activations differ", seq, p)
				}
			}
		}
	}
	what := "tokens, x, y"
	if acts {
		what += ", acts"
	}
	return fmt.Sprintf("identical: %d sequences, %d tokens (%s) in %s (%d shards) and %s (%d shards)",
		ma.NSequences, ma.NTokens, what, a, len(ma.Shards), b, len(mb.Shards)), nil
}

func sameBits(a, b float32) bool { return math.Float32bits(a) == math.Float32bits(b) }

// firstDiff returns the first index where a and b differ, and false; or
// true when they are equal (same length assumed).
func firstDiff[T any](a, b []T, eq func(T, T) bool) (int, bool) {
	for i := range a {
		if !eq(a[i], b[i]) {
			return i, false
		}
	}
	return 0, true
}
