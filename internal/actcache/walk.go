package actcache

import (
	"context"
	"fmt"
	"io"

	"github.com/ctxdep/ctxdep/internal/par"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// ReadOptions say how a Reader walks a cache.
type ReadOptions struct {
	// Start is the first sequence to read, 0 ≤ Start < n_sequences.
	Start int
	// Loop starts again from the first sequence after the last (a fit's
	// epochs); without it Next returns io.EOF after the last.
	Loop bool
	// Encoder, when set, makes Batch.Acts its encoding of x (computed with
	// the read-ahead) instead of the activations the cache stores: for a
	// cache that stores none, or another transcoder's.
	Encoder *transcoder.Encoder
}

// Batch is sequences [First, First+N) of a cache, all from one shard:
// their tokens (N·T), x and y (N·T·C), and acts (N·T rows, zero-based;
// nil when the cache stores none and no Encoder was given).
type Batch struct {
	First, N int
	Tokens   []int32
	X, Y     []float32
	Scale    []float32 // (N·T) ln2.hook_scale; nil when the cache stores none
	Acts     *transcoder.Acts
}

// Reader walks a cache's sequences in order, shard by shard, reading (and
// encoding) the next shard on another goroutine (par.Ahead) while the
// caller works on the current one. It is the one way commands read a
// cache, and reads every shard through ReadShard, which verifies it against
// the manifest (size, SHA-256, metadata) before any of it is used: a
// damaged shard is an error of Next that names it.
type Reader struct {
	ctx    context.Context
	c      *Cache
	t      int
	ahead  *par.Ahead[*loaded]
	cur    *loaded
	pos    int // next sequence of cur
	indptr []int64
	acts   transcoder.Acts
	batch  Batch
}

// loaded is one shard in memory, with its activations.
type loaded struct {
	first, skip int // its first sequence in the cache; sequences to skip (Start)
	data        *ShardData
	own         transcoder.Acts // Encoder's activations
	acts        *transcoder.Acts
}

// NewReader starts reading c as o says; Close stops it.
func (c *Cache) NewReader(ctx context.Context, o ReadOptions) (*Reader, error) {
	m := c.Manifest
	if o.Start < 0 || o.Start >= m.NSequences {
		return nil, fmt.Errorf("actcache: start at sequence %d of a cache of %d", o.Start, m.NSequences)
	}
	shard, skip := 0, o.Start
	for skip >= m.Shards[shard].NSequences {
		skip -= m.Shards[shard].NSequences
		shard++
	}
	t := m.ContextLength
	// read fills l with shard, then moves on (skip applies to the first).
	read := func(l *loaded) error {
		if shard == len(m.Shards) {
			if !o.Loop {
				return io.EOF
			}
			shard = 0
		}
		data, err := c.ReadShard(shard)
		if err != nil {
			return err
		}
		l.first, l.skip, l.data, l.acts = m.Shards[shard].FirstRow-m.Data.FirstRow, skip, data, data.Acts
		if o.Encoder != nil {
			o.Encoder.Encode(&l.own, data.X, data.NSequences*t)
			l.acts = &l.own
		}
		shard, skip = shard+1, 0
		return nil
	}
	return &Reader{ctx: ctx, c: c, t: t, ahead: par.NewAhead(ctx, []*loaded{{}, {}}, read)}, nil
}

// Next returns the next batch of up to n sequences (fewer where a shard
// ends), valid until the following call; io.EOF after the last sequence
// of a cache read without Loop.
func (r *Reader) Next(n int) (*Batch, error) {
	if n < 1 {
		return nil, fmt.Errorf("actcache: a batch of %d sequences", n)
	}
	if err := r.ctx.Err(); err != nil {
		return nil, err
	}
	for r.cur == nil || r.pos == r.cur.data.NSequences {
		l, err := r.ahead.Next()
		if err != nil {
			r.cur = nil
			return nil, err
		}
		r.cur, r.pos = l, l.skip
	}
	l, t, c := r.cur, r.t, r.c.Manifest.DModel
	k := min(n, l.data.NSequences-r.pos)
	lo, hi := r.pos*t, (r.pos+k)*t
	b := &r.batch
	*b = Batch{First: l.first + r.pos, N: k, Tokens: l.data.Tokens[lo:hi], X: l.data.X[lo*c : hi*c], Y: l.data.Y[lo*c : hi*c]}
	if l.data.Scale != nil {
		b.Scale = l.data.Scale[lo:hi]
	}
	if a := l.acts; a != nil {
		// Rows [lo, hi) as CSR of their own: Indptr from 0.
		base := a.Indptr[lo]
		r.indptr = r.indptr[:0]
		for _, p := range a.Indptr[lo : hi+1] {
			r.indptr = append(r.indptr, p-base)
		}
		r.acts = transcoder.Acts{Indptr: r.indptr, Indices: a.Indices[base:a.Indptr[hi]], Values: a.Values[base:a.Indptr[hi]]}
		b.Acts = &r.acts
	}
	r.pos += k
	return b, nil
}

// Close stops the read-ahead and waits for it.
func (r *Reader) Close() { r.ahead.Close() }
