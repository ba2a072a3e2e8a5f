package midcoder

import (
	"context"
	"fmt"
	"io"

	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/par"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// StreamSource computes batches on the fly from token rows: the model's
// forward pass to block L gives x and y, the transcoder encodes x. The
// next batch is prepared on another goroutine (par.Ahead, two buffers)
// while the trainer works on the current one.
type StreamSource struct {
	model *gpt2.Model
	layer int
	tc    *transcoder.Transcoder
	next  func(dst []int32) error // one row of T tokens; io.EOF at the end
	t, b  int
	rows  int64 // rows taken from next

	ahead *par.Ahead[*streamBatch] // from the first batch on
}

type streamBatch struct {
	tokens []int32 // (B·T)
	acts   transcoder.Acts
	y      []float32 // (B·T, C)
}

// NewStreamSource makes batches of b rows of t tokens from next.
func NewStreamSource(m *gpt2.Model, layer int, tc *transcoder.Transcoder, next func([]int32) error, t, b int) *StreamSource {
	return &StreamSource{model: m, layer: layer, tc: tc, next: next, t: t, b: b}
}

// Skip implements Source: it reads and drops n rows (tokenization only).
func (s *StreamSource) Skip(n int64) error {
	if s.ahead != nil {
		panic("midcoder: StreamSource.Skip after Next")
	}
	row := make([]int32, s.t)
	for i := int64(0); i < n; i++ {
		if err := ReadRows(row, 1, s.t, s.next, &s.rows); err != nil {
			return err
		}
	}
	return nil
}

// DataEndedError is ReadRows' error when the data ends before the fit
// has read all the sequences it needs.
type DataEndedError struct {
	Rows  int64 // sequences read before the end
	Batch int   // sequences the read asked for
}

func (e *DataEndedError) Error() string {
	return fmt.Sprintf("the data ended after %d sequences, in a read of %d; give more data, or lower --train-tokens or --batch-size", e.Rows, e.Batch)
}

// ReadRows fills dst with n rows of t tokens from next, counting each row
// read in *rows. The end of the data (io.EOF) becomes a *DataEndedError,
// which says how many sequences there were and what to do.
func ReadRows(dst []int32, n, t int, next func([]int32) error, rows *int64) error {
	for r := 0; r < n; r++ {
		err := next(dst[r*t : (r+1)*t])
		if err == io.EOF {
			return &DataEndedError{Rows: *rows, Batch: n}
		}
		if err != nil {
			return err
		}
		*rows++
	}
	return nil
}

// Next implements Source; n must be the batch size it was made with.
func (s *StreamSource) Next(ctx context.Context, n int) (*transcoder.Acts, []float32, error) {
	if n != s.b {
		panic(fmt.Sprintf("midcoder: StreamSource makes batches of %d, asked for %d", s.b, n))
	}
	if s.ahead == nil {
		c := s.model.DModel
		bufs := make([]*streamBatch, 2)
		for i := range bufs {
			bufs[i] = &streamBatch{tokens: make([]int32, s.b*s.t), y: make([]float32, s.b*s.t*c)}
		}
		ws, enc := s.model.NewWorkspace(s.b*s.t), s.tc.NewEncoder() // the producer's
		s.ahead = par.NewAhead(ctx, bufs, func(bt *streamBatch) error { return s.fill(ws, enc, bt) })
	}
	bt, err := s.ahead.Next()
	if err != nil {
		return nil, nil, err
	}
	return &bt.acts, bt.y, nil
}

func (s *StreamSource) fill(ws *gpt2.Workspace, enc *transcoder.Encoder, bt *streamBatch) error {
	if err := ReadRows(bt.tokens, s.b, s.t, s.next, &s.rows); err != nil {
		return err
	}
	x, y, err := s.model.RunToBlock(ws, bt.tokens, s.b, s.t, s.layer, nil)
	if err != nil {
		return err
	}
	copy(bt.y, y)
	enc.Encode(&bt.acts, x, s.b*s.t)
	return nil
}

// Close stops the producer.
func (s *StreamSource) Close() {
	if s.ahead != nil {
		s.ahead.Close()
	}
}
