package midcoder

import (
	"context"
	"fmt"
	"io"

	"github.com/ctxdep/ctxdep/internal/gpt2"
	"github.com/ctxdep/ctxdep/internal/transcoder"
)

// StreamSource computes batches on the fly from token rows: the model's
// forward pass to block L gives x and y, the transcoder encodes x. A
// producer goroutine prepares the next batch while the trainer works on
// the current one (two buffers, reused).
type StreamSource struct {
	model *gpt2.Model
	layer int
	tc    *transcoder.Transcoder
	next  func(dst []int32) error // one row of T tokens; io.EOF at the end
	t, b  int
	rows  int64 // rows taken from next

	started bool
	cancel  context.CancelFunc
	full    chan *streamBatch
	free    chan *streamBatch
}

type streamBatch struct {
	tokens []int32 // (B·T)
	acts   transcoder.Acts
	y      []float32 // (B·T, C)
	err    error
}

// NewStreamSource makes batches of b rows of t tokens from next.
func NewStreamSource(m *gpt2.Model, layer int, tc *transcoder.Transcoder, next func([]int32) error, t, b int) *StreamSource {
	return &StreamSource{model: m, layer: layer, tc: tc, next: next, t: t, b: b}
}

// Skip implements Source: it reads and drops n rows (tokenization only).
func (s *StreamSource) Skip(n int64) error {
	if s.started {
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

// ReadRows fills dst with n rows of t tokens from next, counting each row
// read in *rows. The end of the data (io.EOF) becomes an error that says
// how many sequences there were and what to do.
func ReadRows(dst []int32, n, t int, next func([]int32) error, rows *int64) error {
	for r := 0; r < n; r++ {
		err := next(dst[r*t : (r+1)*t])
		if err == io.EOF {
			return fmt.Errorf("the data ended after %d sequences; give more data or lower --train-tokens", *rows)
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
	if !s.started {
		s.start()
	}
	select {
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case bt := <-s.full:
		if bt.err != nil {
			return nil, nil, bt.err
		}
		return &bt.acts, bt.y, nil
	}
}

func (s *StreamSource) start() {
	s.started = true
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	// full is unbuffered: the producer's send of batch k+1 completes only
	// when the caller asks for it, that is when it is done with batch k,
	// which the producer then recycles. So two buffers suffice: one
	// trained on, one being made.
	s.full = make(chan *streamBatch)
	s.free = make(chan *streamBatch, 2)
	c := s.model.DModel
	newBatch := func() *streamBatch {
		return &streamBatch{tokens: make([]int32, s.b*s.t), y: make([]float32, s.b*s.t*c)}
	}
	s.free <- newBatch()
	go s.produce(ctx, newBatch())
}

// produce fills batches until cancelled or the data fails; once a batch is
// taken, the one handed out before it is recycled.
func (s *StreamSource) produce(ctx context.Context, first *streamBatch) {
	ws := s.model.NewWorkspace(s.b * s.t)
	enc := s.tc.NewEncoder()
	var handedOut *streamBatch
	bt := first
	for {
		bt.err = s.fill(ws, enc, bt)
		select {
		case <-ctx.Done():
			return
		case s.full <- bt:
		}
		if bt.err != nil {
			return
		}
		if handedOut != nil {
			s.free <- handedOut
		}
		handedOut = bt
		select {
		case <-ctx.Done():
			return
		case bt = <-s.free:
		}
	}
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
	if s.cancel != nil {
		s.cancel()
	}
}
