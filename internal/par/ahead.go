package par

import (
	"context"
	"io"
)

// Ahead prepares items on a goroutine of its own while the caller works on
// the one it has: reading the next shard of a cache, or the next batch of
// token rows and their forward pass, overlaps with training on the last.
// It cycles through a fixed set of buffers, so it allocates nothing per
// item: Next hands the caller a filled buffer and takes back the one
// handed out before, which becomes free to fill again. With k buffers up
// to k−1 items are prepared ahead.
type Ahead[T any] struct {
	ctx     context.Context
	cancel  context.CancelFunc
	full    chan filled[T]
	free    chan T
	done    chan struct{}
	held    T
	holding bool
	err     error
}

type filled[T any] struct {
	v   T
	err error
}

// NewAhead starts filling bufs (at least two) in order with fill, which
// runs on Ahead's goroutine only. fill's error ends the items: Next returns
// it (io.EOF for a clean end of the input) after the items before it.
func NewAhead[T any](ctx context.Context, bufs []T, fill func(T) error) *Ahead[T] {
	if len(bufs) < 2 {
		panic("par: Ahead needs at least two buffers")
	}
	ctx, cancel := context.WithCancel(ctx)
	a := &Ahead[T]{ctx: ctx, cancel: cancel, full: make(chan filled[T], len(bufs)-1),
		free: make(chan T, len(bufs)), done: make(chan struct{})}
	for _, b := range bufs {
		a.free <- b
	}
	go a.run(fill)
	return a
}

func (a *Ahead[T]) run(fill func(T) error) {
	defer close(a.done)
	defer close(a.full)
	for {
		var v T
		select {
		case v = <-a.free:
		case <-a.ctx.Done():
			return
		}
		err := fill(v)
		select {
		case a.full <- filled[T]{v, err}:
		case <-a.ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// Next returns the next filled item, valid until the following call, and
// takes back the one it returned before. After the last item it returns
// fill's error (io.EOF at a clean end), and the context's error once it
// is cancelled.
func (a *Ahead[T]) Next() (T, error) {
	var zero T
	if a.holding {
		a.free <- a.held
		a.held, a.holding = zero, false
	}
	if a.err != nil {
		return zero, a.err
	}
	if err := a.ctx.Err(); err != nil {
		return zero, err
	}
	var f filled[T]
	ok := false
	select {
	case f, ok = <-a.full:
	case <-a.ctx.Done(): // without waiting for a fill under way
		return zero, a.ctx.Err()
	}
	switch {
	case !ok && a.ctx.Err() != nil:
		return zero, a.ctx.Err()
	case !ok:
		a.err = io.ErrUnexpectedEOF // fill never returns without an item
		return zero, a.err
	case f.err != nil:
		a.err = f.err
		return zero, f.err
	}
	a.held, a.holding = f.v, true
	return f.v, nil
}

// Close stops the goroutine and waits for it; fill is not called after.
func (a *Ahead[T]) Close() {
	a.cancel()
	for range a.full {
	}
	<-a.done
}
