package par

import (
	"context"
	"errors"
	"io"
	"testing"
)

// Items come in order, in the buffers given, each valid until the next
// call; fill's error ends them after the items before it, and stays; at
// most k−1 items are filled beyond the one the caller holds.
func TestAhead(t *testing.T) {
	for _, k := range []int{2, 3} {
		bufs := make([]*int, k)
		for i := range bufs {
			bufs[i] = new(int)
		}
		n, ahead := 0, make(chan int, 100)
		a := NewAhead(context.Background(), bufs, func(b *int) error {
			if n == 5 {
				return io.EOF
			}
			*b = n
			n++
			ahead <- n
			return nil
		})
		for want := range 5 {
			v, err := a.Next()
			if err != nil || *v != want {
				t.Fatalf("k=%d: item %d = %v, %v", k, want, *v, err)
			}
			// The caller holds item want; fill may have run for at most
			// k−1 more.
			for len(ahead) > 0 {
				if got := <-ahead; got > want+k {
					t.Errorf("k=%d: item %d filled while the caller holds item %d", k, got-1, want)
				}
			}
		}
		for range 2 {
			if _, err := a.Next(); err != io.EOF {
				t.Errorf("k=%d: after the last item: %v, want io.EOF", k, err)
			}
		}
		a.Close()
	}
}

// Close stops a goroutine that is ahead, and a cancelled context ends the
// items with its error.
func TestAheadStops(t *testing.T) {
	bufs := []*int{new(int), new(int)}
	a := NewAhead(context.Background(), bufs, func(*int) error { return nil })
	a.Next()
	a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	a = NewAhead(ctx, bufs, func(*int) error { return nil })
	a.Next()
	cancel()
	if _, err := a.Next(); !errors.Is(err, context.Canceled) {
		t.Errorf("Next after cancel = %v", err)
	}
	a.Close()
}
