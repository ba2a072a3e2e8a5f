package kernels

import (
	"runtime"
	"sync"
)

// ParallelFor calls fn on contiguous sub-ranges [lo, hi) that cover [0, n),
// using up to GOMAXPROCS goroutines. Small n runs inline.
func ParallelFor(n int, fn func(lo, hi int)) {
	workers := runtime.GOMAXPROCS(0)
	if workers > n {
		workers = n
	}
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

// ParallelChunks calls fn on contiguous element ranges [lo, hi) that cover
// [0, n), each a whole number of chunks of chunk elements (the last range
// may end short): ParallelFor over the chunks, for elementwise loops too
// cheap per element to split finer, or to run inline when n is small.
func ParallelChunks(n, chunk int, fn func(lo, hi int)) {
	ParallelFor((n+chunk-1)/chunk, func(lo, hi int) {
		fn(lo*chunk, min(hi*chunk, n))
	})
}
