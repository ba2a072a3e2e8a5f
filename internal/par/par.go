package par

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// For calls fn on contiguous sub-ranges [lo, hi) that cover [0, n), using
// up to GOMAXPROCS goroutines. Small n runs inline.
func For(n int, fn func(lo, hi int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		if n > 0 {
			fn(0, n)
		}
		return
	}
	var wg sync.WaitGroup
	chunk := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, hi)
		}()
	}
	wg.Wait()
}

// Chunks calls fn on contiguous element ranges [lo, hi) that cover [0, n),
// each a whole number of chunks of chunk elements (the last range may end
// short): For over the chunks, for elementwise loops too cheap per element
// to split finer, or to run inline when n is small.
func Chunks(n, chunk int, fn func(lo, hi int)) {
	For((n+chunk-1)/chunk, func(lo, hi int) {
		fn(lo*chunk, min(hi*chunk, n))
	})
}

// Jobs runs fn(worker, job) for every job in 0..n−1 on a pool of up to
// workers goroutines (at most n; workers ≤ 0 means GOMAXPROCS, the
// choice for computing; jobs that wait on I/O may ask for more), each
// taking the next job from the queue as it finishes one. worker is the
// goroutine's index in [0, workers), for scratch it owns; a single worker
// runs inline.
func Jobs(n, workers int, fn func(worker, job int)) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, n)
	if workers <= 1 {
		for j := range n {
			fn(0, j)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j := int(next.Add(1) - 1)
				if j >= n {
					return
				}
				fn(w, j)
			}
		}()
	}
	wg.Wait()
}
