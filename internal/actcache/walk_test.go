package actcache

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// writeCache writes a cache of n sequences of 3 tokens (d_model 2, two
// sequences per shard) whose values name their place: token = 10·s + p,
// x = token + 0.25·k, y = −x, and one activation per token, feature
// (s+p) mod 4 with value token + 1.
func writeCache(t *testing.T, n int) *Cache {
	t.Helper()
	const tt, c = 3, 2
	dir := filepath.Join(t.TempDir(), "c")
	w, err := Create(dir, Manifest{Layer: 0, DModel: c, ContextLength: tt, NSequences: n, DType: "float32",
		SequencesPerShard: 2, WithActs: true, DSAE: 4, Data: Data{Rows: n, RowsTaken: n}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < w.NumShards(); i++ {
		first, k := w.ShardRows(i)
		var tok []int32
		var x, y []float32
		a := transcoder.Acts{Indptr: []int64{0}}
		for s := first; s < first+k; s++ {
			for p := 0; p < tt; p++ {
				v := int32(10*s + p)
				tok = append(tok, v)
				for j := 0; j < c; j++ {
					x = append(x, float32(v)+0.25*float32(j))
					y = append(y, -(float32(v) + 0.25*float32(j)))
				}
				a.Indices = append(a.Indices, int32((s+p)%4))
				a.Values = append(a.Values, float32(v)+1)
				a.Indptr = append(a.Indptr, int64(len(a.Indices)))
			}
		}
		if err := w.WriteShard(i, tok, x, y, nil, &a); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Finish(); err != nil {
		t.Fatal(err)
	}
	cache, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return cache
}

// seqs reads every batch of up to n sequences, checks that each holds the
// values of the sequences it says it does (acts zero-based), and returns
// the first sequence and size of each batch; it stops after max batches.
func seqs(t *testing.T, r *Reader, n, max int) [][2]int {
	t.Helper()
	var got [][2]int
	for len(got) < max {
		b, err := r.Next(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, [2]int{b.First, b.N})
		if b.Acts.Indptr[0] != 0 || b.Acts.Rows() != b.N*3 || int(b.Acts.Indptr[b.N*3]) != len(b.Acts.Indices) {
			t.Fatalf("batch at %d: acts are not zero-based CSR of its rows: %+v", b.First, b.Acts)
		}
		for i := 0; i < b.N*3; i++ {
			s, p := b.First+i/3, i%3
			v := int32(10*s + p)
			idx, val := b.Acts.Row(i)
			if b.Tokens[i] != v || b.X[2*i+1] != float32(v)+0.25 || b.Y[2*i] != -float32(v) ||
				len(idx) != 1 || idx[0] != int32((s+p)%4) || val[0] != float32(v)+1 {
				t.Fatalf("batch at %d, token %d: got token %d, x %v, y %v, acts %v %v", b.First, i, b.Tokens[i], b.X[2*i:2*i+2], b.Y[2*i:2*i+2], idx, val)
			}
		}
	}
	return got
}

// A Reader yields the cache's sequences in order, in batches that never
// cross a shard (5 sequences in shards of 2, 2, 1), from any start, once
// or looping.
func TestReader(t *testing.T) {
	c := writeCache(t, 5)
	for _, tc := range []struct {
		name  string
		o     ReadOptions
		n     int
		max   int
		batch [][2]int
	}{
		{"one at a time", ReadOptions{}, 1, 99, [][2]int{{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 1}}},
		{"three at a time", ReadOptions{}, 3, 99, [][2]int{{0, 2}, {2, 2}, {4, 1}}},
		{"from sequence 3", ReadOptions{Start: 3}, 2, 99, [][2]int{{3, 1}, {4, 1}}},
		{"looping from 3", ReadOptions{Start: 3, Loop: true}, 2, 6, [][2]int{{3, 1}, {4, 1}, {0, 2}, {2, 2}, {4, 1}, {0, 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := c.NewReader(context.Background(), tc.o)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if got := seqs(t, r, tc.n, tc.max); !reflect.DeepEqual(got, tc.batch) {
				t.Errorf("batches (first, n) = %v, want %v", got, tc.batch)
			}
		})
	}
	if _, err := c.NewReader(context.Background(), ReadOptions{Start: 5}); err == nil {
		t.Error("NewReader(start past the end) succeeded")
	}
	r, _ := c.NewReader(context.Background(), ReadOptions{})
	defer r.Close()
	if _, err := r.Next(0); err == nil {
		t.Error("Next(0) succeeded: a batch of no sequences never reaches the end")
	}
}

// A Reader closed early, or whose context is cancelled, stops without
// hanging; a shard that cannot be read is an error of Next that names it.
func TestReaderStops(t *testing.T) {
	c := writeCache(t, 5)
	r, _ := c.NewReader(context.Background(), ReadOptions{Loop: true})
	r.Next(1)
	r.Close()
	ctx, cancel := context.WithCancel(context.Background())
	r, _ = c.NewReader(ctx, ReadOptions{})
	r.Next(1)
	cancel()
	if _, err := r.Next(1); !errors.Is(err, context.Canceled) {
		t.Errorf("Next after cancel = %v", err)
	}
	r.Close()
	bad := filepath.Join(c.Dir, c.Manifest.Shards[1].File)
	os.WriteFile(bad, []byte("not a shard"), 0o644)
	r, _ = c.NewReader(context.Background(), ReadOptions{})
	defer r.Close()
	var err error
	for err == nil {
		_, err = r.Next(2)
	}
	if err == io.EOF || !strings.Contains(err.Error(), c.Manifest.Shards[1].File) {
		t.Errorf("Next over a bad shard = %v", err)
	}
}
