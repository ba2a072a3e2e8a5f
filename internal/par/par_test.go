package par

import (
	"runtime"
	"sync"
	"testing"
)

// Every iteration runs exactly once, whatever n and the goroutine count;
// For's ranges are contiguous and Chunks's start on chunk boundaries; a
// Jobs worker index is below the workers asked for.
func TestEveryIterationOnce(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, procs := range []int{1, 2, 3, 8} {
		runtime.GOMAXPROCS(procs)
		for _, n := range []int{0, 1, 2, 7, 64, 1000} {
			var mu sync.Mutex
			seen := make([]int, n)
			mark := func(i int) {
				mu.Lock()
				seen[i]++
				mu.Unlock()
			}
			check := func(what string) {
				t.Helper()
				for i, k := range seen {
					if k != 1 {
						t.Fatalf("GOMAXPROCS=%d, n=%d, %s: iteration %d ran %d times", procs, n, what, i, k)
					}
					seen[i] = 0
				}
			}
			For(n, func(lo, hi int) {
				for i := lo; i < hi; i++ {
					mark(i)
				}
			})
			check("For")
			Chunks(n, 5, func(lo, hi int) {
				if lo%5 != 0 {
					t.Errorf("Chunks range starts at %d, not on a chunk of 5", lo)
				}
				for i := lo; i < hi; i++ {
					mark(i)
				}
			})
			check("Chunks")
			for _, workers := range []int{0, 1, 2, 5} {
				Jobs(n, workers, func(w, j int) {
					if w < 0 || (workers > 0 && w >= workers) || (workers <= 0 && w >= procs) {
						t.Errorf("Jobs(%d, %d) ran worker %d with GOMAXPROCS=%d", n, workers, w, procs)
					}
					mark(j)
				})
				check("Jobs")
			}
		}
	}
}
