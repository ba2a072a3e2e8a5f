// Package par runs a loop's iterations on several goroutines, in one of
// two ways: For and Chunks cut [0, n) into one contiguous range per
// goroutine (for uniform, cheap iterations); Jobs lets a pool of workers
// take jobs 0..n−1 in order from a queue (for uneven or blocking jobs, and
// for workers that own scratch memory). Each uses up to GOMAXPROCS
// goroutines, runs small loops inline and returns when every iteration is
// done. Ahead is the read-ahead: a goroutine filling a fixed set of
// buffers with the next items while the caller works on the last one.
//
// Invariants: every iteration runs exactly once; For's and Chunks's ranges
// cover [0, n) without overlap. For's ranges follow GOMAXPROCS, so a
// caller whose result must not depend on the machine never lets it depend
// on where a range starts or ends (no partial sums per range; sum per
// iteration, or per fixed chunk of Chunks, or per job of Jobs).
package par
