package midcoder

import (
	"context"
	"fmt"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// CacheSource yields batches from an activation cache in cache order,
// starting again from the first sequence when a run needs more than the
// cache holds. It uses the cache's stored activations when their
// transcoder is the one given, and otherwise encodes each shard's x once
// as it is read.
type CacheSource struct {
	cache *actcache.Cache
	enc   *transcoder.Encoder // nil: use stored activations
	t, c  int
	shard int // index of the loaded shard, −1 for none
	data  *actcache.ShardData
	acts  *transcoder.Acts // the loaded shard's activations, (S_i·T rows)
	own   transcoder.Acts  // encoded activations of the loaded shard
	pos   int              // next sequence within the loaded shard

	xOnly bool // NextXY: no activations are made

	batch transcoder.Acts
	x, y  []float32
}

// NewCacheSource reads c. tc encodes x unless useStored is set (the cache
// holds activations of exactly this transcoder).
func NewCacheSource(c *actcache.Cache, tc *transcoder.Transcoder, useStored bool) (*CacheSource, error) {
	m := c.Manifest
	if useStored && !m.WithActs {
		return nil, fmt.Errorf("midcoder: cache %s stores no activations", c.Dir)
	}
	s := &CacheSource{cache: c, t: m.ContextLength, c: m.DModel, shard: -1}
	if !useStored {
		s.enc = tc.NewEncoder()
	}
	return s, nil
}

func (s *CacheSource) load(i int) error {
	d, err := s.cache.ReadShard(i)
	if err != nil {
		return err
	}
	s.shard, s.data, s.pos = i, d, 0
	if s.xOnly {
		return nil
	}
	if s.enc == nil {
		s.acts = d.Acts
	} else {
		s.enc.Encode(&s.own, d.X, d.NSequences*s.t)
		s.acts = &s.own
	}
	return nil
}

// advance makes the loaded shard hold the next sequence.
func (s *CacheSource) advance() error {
	if s.data != nil && s.pos < s.data.NSequences {
		return nil
	}
	next := s.shard + 1
	if next == len(s.cache.Manifest.Shards) {
		next = 0
	}
	return s.load(next)
}

// sequences calls fn with the first row (in the loaded shard) of each of
// the next n sequences, loading shards as it goes.
func (s *CacheSource) sequences(ctx context.Context, n int, fn func(r0 int)) error {
	for k := 0; k < n; k++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.advance(); err != nil {
			return err
		}
		fn(s.pos * s.t)
		s.pos++
	}
	return nil
}

// Next implements Source.
func (s *CacheSource) Next(ctx context.Context, n int) (*transcoder.Acts, []float32, error) {
	t, c := s.t, s.c
	b := &s.batch
	b.Indptr, b.Indices, b.Values = append(b.Indptr[:0], 0), b.Indices[:0], b.Values[:0]
	s.y = s.y[:0]
	err := s.sequences(ctx, n, func(r0 int) {
		s.y = append(s.y, s.data.Y[r0*c:(r0+t)*c]...)
		base := b.Indptr[len(b.Indptr)-1] - s.acts.Indptr[r0]
		for r := r0; r < r0+t; r++ {
			b.Indptr = append(b.Indptr, s.acts.Indptr[r+1]+base)
		}
		lo, hi := s.acts.Indptr[r0], s.acts.Indptr[r0+t]
		b.Indices = append(b.Indices, s.acts.Indices[lo:hi]...)
		b.Values = append(b.Values, s.acts.Values[lo:hi]...)
	})
	if err != nil {
		return nil, nil, err
	}
	return b, s.y, nil
}

// NewCacheXYSource reads c for NextXY: batches of x and y, in the same
// order as a CacheSource, for a backend that encodes x itself (the GPU).
func NewCacheXYSource(c *actcache.Cache) *CacheSource {
	m := c.Manifest
	return &CacheSource{cache: c, t: m.ContextLength, c: m.DModel, shard: -1, xOnly: true}
}

// NextXY returns the next n sequences' x and y (n·T·C each); valid until
// the next call.
func (s *CacheSource) NextXY(ctx context.Context, n int) (x, y []float32, err error) {
	t, c := s.t, s.c
	s.x, s.y = s.x[:0], s.y[:0]
	err = s.sequences(ctx, n, func(r0 int) {
		s.x = append(s.x, s.data.X[r0*c:(r0+t)*c]...)
		s.y = append(s.y, s.data.Y[r0*c:(r0+t)*c]...)
	})
	if err != nil {
		return nil, nil, err
	}
	return s.x, s.y, nil
}

// Skip implements Source. It moves the position without reading shards it
// passes over.
func (s *CacheSource) Skip(n int64) error {
	m := s.cache.Manifest
	pos := n % int64(m.NSequences)
	for i, sh := range m.Shards {
		if pos < int64(sh.NSequences) {
			if err := s.load(i); err != nil {
				return err
			}
			s.pos = int(pos)
			return nil
		}
		pos -= int64(sh.NSequences)
	}
	return nil
}
