package midcoder

import (
	"context"
	"fmt"

	"github.com/ctxdep/ctxdep/internal/actcache"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// CacheSource yields batches from an activation cache in cache order,
// starting again from the first sequence when a run needs more than the
// cache holds. It reads through an actcache.Reader (the next shard read,
// and encoded when needed, while the trainer works), using the cache's
// stored activations when their transcoder is the one given and otherwise
// encoding each shard's x once as it is read. Close stops the read-ahead.
type CacheSource struct {
	cache *actcache.Cache
	ro    actcache.ReadOptions
	rd    *actcache.Reader // from the first batch on
	t, c  int

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
	s := &CacheSource{cache: c, t: m.ContextLength, c: m.DModel, ro: actcache.ReadOptions{Loop: true}}
	if !useStored {
		s.ro.Encoder = tc.NewEncoder()
	}
	return s, nil
}

// NewCacheXYSource reads c for NextXY: batches of x and y, in the same
// order as a CacheSource, for a backend that encodes x itself (the GPU).
func NewCacheXYSource(c *actcache.Cache) *CacheSource {
	m := c.Manifest
	return &CacheSource{cache: c, t: m.ContextLength, c: m.DModel, ro: actcache.ReadOptions{Loop: true}}
}

// sequences calls fn with each batch of the next n sequences, in order,
// starting the reader at the first call.
func (s *CacheSource) sequences(ctx context.Context, n int, fn func(b *actcache.Batch)) error {
	if s.rd == nil {
		rd, err := s.cache.NewReader(ctx, s.ro)
		if err != nil {
			return err
		}
		s.rd = rd
	}
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := s.rd.Next(n)
		if err != nil {
			return err
		}
		fn(b)
		n -= b.N
	}
	return nil
}

// Next implements Source.
func (s *CacheSource) Next(ctx context.Context, n int) (*transcoder.Acts, []float32, error) {
	b := &s.batch
	b.Indptr, b.Indices, b.Values = append(b.Indptr[:0], 0), b.Indices[:0], b.Values[:0]
	s.y = s.y[:0]
	err := s.sequences(ctx, n, func(r *actcache.Batch) {
		s.y = append(s.y, r.Y...)
		b.AppendRows(r.Acts, 0, r.Acts.Rows())
	})
	if err != nil {
		return nil, nil, err
	}
	return b, s.y, nil
}

// NextXY returns the next n sequences' x and y (n·T·C each); valid until
// the next call.
func (s *CacheSource) NextXY(ctx context.Context, n int) (x, y []float32, err error) {
	s.x, s.y = s.x[:0], s.y[:0]
	err = s.sequences(ctx, n, func(r *actcache.Batch) {
		s.x = append(s.x, r.X...)
		s.y = append(s.y, r.Y...)
	})
	if err != nil {
		return nil, nil, err
	}
	return s.x, s.y, nil
}

// Skip implements Source: the first batch starts n sequences further on
// (modulo the cache's length), without reading the shards passed over. It
// must come before the first batch.
func (s *CacheSource) Skip(n int64) error {
	if s.rd != nil {
		panic("midcoder: CacheSource.Skip after Next")
	}
	total := int64(s.cache.Manifest.NSequences)
	s.ro.Start = int((int64(s.ro.Start) + n%total) % total)
	return nil
}

// Close stops the read-ahead.
func (s *CacheSource) Close() {
	if s.rd != nil {
		s.rd.Close()
		s.rd = nil
	}
}
