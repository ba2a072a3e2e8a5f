//go:build cudasim

package cuda

/*
#cgo CXXFLAGS: -std=c++20 -O2
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int sim_has(const char* name);
void sim_set_reverse(int on);
int sim_launch(const char* name, int grid, int block, const uint64_t* slots, const char* kinds, int nargs, char* err, int errlen);
void* sim_alloc(int64_t bytes, void** base, int64_t* mapped);
void sim_free(void* base, int64_t mapped);

static void* sim_ptr(uintptr_t p) { return (void*)p; }
*/
import "C"

import (
	_ "embed"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
)

// The cudasim build (tag cudasim, tests only): the backend's Go code on a
// simulated device, so that everything above the driver — the kernels of
// kernels.cu (compiled as C++ on cudasim.h's emulation, kernels_sim.cc),
// their launches, buffers, copies and the passes built on them — runs and
// is tested on a machine without a GPU. "Device memory" is host memory
// with a guard page after each buffer; "cuBLAS" is blas32's Sgemm (gonum
// or OpenBLAS, as blasimpl.Use installed). What it cannot test: the real
// driver and cuBLAS calls (driver_cu.go, cublas.go), speed, and the GPU's
// own rounding (fast-math intrinsics, FMA contraction).

// kernelsSource is kernels.cu, which kernels_sim.cc includes: embedding
// it makes the Go build cache rebuild this package when it changes.
//
//go:embed kernels.cu
var kernelsSource string

// Simulated reports whether this build's device is the simulated one
// (build tag cudasim, for tests).
const Simulated = true

// devPtr is a simulated device address: a host address.
type devPtr uintptr

type driver struct{}

// simName is the simulated device's name.
const simName = "cudasim (kernels emulated on the CPU)"

func numDevices() (int, error) { return 1, nil }

func openDriver(ordinal int) (*driver, string, int, error) {
	if ordinal != 0 {
		return nil, "", 0, fmt.Errorf("cuda: device %d does not exist (1 visible)", ordinal)
	}
	for _, k := range kernelNames {
		cs := C.CString(k)
		ok := C.sim_has(cs) != 0
		C.free(unsafe.Pointer(cs))
		if !ok {
			return nil, "", 0, fmt.Errorf("cuda: kernel %s missing from kernels_sim.cc's table", k)
		}
	}
	return &driver{}, simName, 2, nil
}

func (dr *driver) close() {}

// setReverseOrder makes every block run its threads from the last to the
// first (sim_test.go sets it from $CUDASIM_ORDER).
func setReverseOrder(on bool) {
	v := 0
	if on {
		v = 1
	}
	C.sim_set_reverse(C.int(v))
}

func (dr *driver) enter() func() {
	runtime.LockOSThread()
	return runtime.UnlockOSThread
}

func (dr *driver) describe(sms int) (hw, api string) {
	return fmt.Sprintf("%d simulated SMs", sms), "no driver"
}

func (dr *driver) launch(name string, grid, block int, ptrs []unsafe.Pointer, kinds []byte) error {
	defaultWork.Add(1)
	var slots [maxLaunchArgs]C.uint64_t
	var ks [maxLaunchArgs]C.char
	for i, p := range ptrs {
		slots[i], ks[i] = C.uint64_t(*(*uint64)(p)), C.char(kinds[i])
	}
	cs := C.CString(name)
	defer C.free(unsafe.Pointer(cs))
	var msg [256]C.char
	if C.sim_launch(cs, C.int(grid), C.int(block), &slots[0], &ks[0], C.int(len(ptrs)), &msg[0], C.int(len(msg))) != 0 {
		return errors.New(C.GoString(&msg[0]))
	}
	return nil
}

// allocs maps each simulated allocation to its mapping, for memFree.
var allocs = struct {
	sync.Mutex
	m map[devPtr]mapping
}{m: map[devPtr]mapping{}}

type mapping struct {
	base  unsafe.Pointer
	bytes int64
}

// simMemory is the simulated device's memory: allocations fail beyond it,
// as on a GPU.
const simMemory = 16 << 30

var simUsed int64

var errSimOutOfMemory = errors.New("out of memory (simulated device)")

func memAlloc(bytes int64) (devPtr, error) {
	allocs.Lock()
	defer allocs.Unlock()
	if simUsed+bytes+2*4096 > simMemory { // the buffer rounded up and its guard page
		return 0, errSimOutOfMemory
	}
	var base unsafe.Pointer
	var mapped C.int64_t
	p := C.sim_alloc(C.int64_t(bytes), &base, &mapped)
	if p == nil {
		return 0, errSimOutOfMemory
	}
	d := devPtr(uintptr(p))
	allocs.m[d] = mapping{base, int64(mapped)}
	simUsed += int64(mapped)
	return d, nil
}

func isOutOfMemory(err error) bool { return errors.Is(err, errSimOutOfMemory) }

func memInfo() (free, total int64) {
	allocs.Lock()
	defer allocs.Unlock()
	return simMemory - simUsed, simMemory
}

func memFree(p devPtr) {
	allocs.Lock()
	defer allocs.Unlock()
	m, ok := allocs.m[p]
	if !ok {
		panic(fmt.Sprintf("cudasim: freeing %#x, which is not an allocation", uintptr(p)))
	}
	delete(allocs.m, p)
	simUsed -= m.bytes
	C.sim_free(m.base, C.int64_t(m.bytes))
}

// host returns the host address of simulated device address p.
func host(p devPtr) unsafe.Pointer { return C.sim_ptr(C.uintptr_t(p)) }

func memcpyHtoD(dst devPtr, src unsafe.Pointer, n int64) error {
	defaultWork.Add(1)
	C.memcpy(host(dst), src, C.size_t(n))
	return nil
}

func memcpyDtoH(dst unsafe.Pointer, src devPtr, n int64) error {
	defaultWork.Add(1)
	C.memcpy(dst, host(src), C.size_t(n))
	return nil
}

func memcpyDtoD(dst, src devPtr, n int64) error {
	defaultWork.Add(1)
	C.memmove(host(dst), host(src), C.size_t(n))
	return nil
}

func memsetD8(p devPtr, v byte, n int64) error {
	defaultWork.Add(1)
	C.memset(host(p), C.int(v), C.size_t(n))
	return nil
}

func synchronize() error { return nil }

// timer is a host clock reading: the simulated device is synchronous.
type timer = *time.Time

func newTimer() (timer, error) { return new(time.Time), nil }

func recordTimer(t timer) error {
	*t = time.Now()
	return nil
}

func elapsedMs(a, b timer) (float64, error) { return float64(b.Sub(*a).Nanoseconds()) / 1e6, nil }

func destroyTimer(*timer) {}

// cublas is blas32's Sgemm in the simulated build.
type cublas struct {
	path    string
	version int
}

func loadCublas(tf32 bool) (*cublas, error) {
	if tf32 {
		return nil, errors.New("cuda: the simulated device has no TF32")
	}
	return &cublas{path: "blas32 (simulated cuBLAS)"}, nil
}

func (b *cublas) close() {}

// floats returns the n float32 at simulated device address p.
func floats(p devPtr, n int) []float32 { return unsafe.Slice((*float32)(host(p)), n) }

// span is the number of elements a row-major rows×cols matrix with
// leading dimension ld spans.
func span(rows, cols, ld int) int {
	if rows == 0 {
		return 0
	}
	return max(0, (rows-1)*ld+cols)
}

func trans(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

// gemm is cublas.gemm's row-major C = alpha·op(A)·op(B) + beta·C.
func (b *cublas) gemm(ta, tb bool, m, n, k int, alpha float32, a devPtr, lda int, bm devPtr, ldb int, beta float32, c devPtr, ldc int) error {
	defaultWork.Add(1)
	na, nb, nc := spans(ta, tb, m, n, k, lda, ldb, ldc)
	blas32.Implementation().Sgemm(trans(ta), trans(tb), m, n, k, alpha, floats(a, na), lda, floats(bm, nb), ldb, beta, floats(c, nc), ldc)
	return nil
}

// gemm64 is gemm in float64.
func (b *cublas) gemm64(ta, tb bool, m, n, k int, alpha float64, a devPtr, lda int, bm devPtr, ldb int, beta float64, c devPtr, ldc int) error {
	defaultWork.Add(1)
	na, nb, nc := spans(ta, tb, m, n, k, lda, ldb, ldc)
	f64 := func(p devPtr, n int) []float64 { return unsafe.Slice((*float64)(host(p)), n) }
	blas64.Implementation().Dgemm(trans(ta), trans(tb), m, n, k, alpha, f64(a, na), lda, f64(bm, nb), ldb, beta, f64(c, nc), ldc)
	return nil
}

// spans returns how many elements a GEMM's A, B and C span.
func spans(ta, tb bool, m, n, k, lda, ldb, ldc int) (na, nb, nc int) {
	ar, ac := m, k
	if ta {
		ar, ac = k, m
	}
	br, bc := k, n
	if tb {
		br, bc = n, k
	}
	return span(ar, ac, lda), span(br, bc, ldb), span(m, n, ldc)
}

// gemmBatched is gemm over count problems at strides sa, sb, sc elements.
func (b *cublas) gemmBatched(ta, tb bool, m, n, k int, alpha float32, a devPtr, lda, sa int, bm devPtr, ldb, sb int, beta float32, c devPtr, ldc, sc, count int) error {
	for i := 0; i < count; i++ {
		if err := b.gemm(ta, tb, m, n, k, alpha, a+devPtr(4*i*sa), lda, bm+devPtr(4*i*sb), ldb, beta, c+devPtr(4*i*sc), ldc); err != nil {
			return err
		}
	}
	return nil
}

// The simulated device runs the default stream's work when it is issued;
// a copy stream's copies wait until the stream is synchronised, the
// latest a GPU may run them, so that a copy whose source the default
// stream overwrites before then, or host code that reads its destination
// before the synchronisation, gets wrong numbers in the tests. A copy
// issued while the stream has not waited (waitEvent) for all the default
// stream's work before it is an error: on a GPU it could run before
// that work has written its source.

// defaultWork counts the operations issued to the default stream.
var defaultWork atomic.Int64

type simStream struct {
	waited  int64    // the default stream's operations it waits for
	pending []func() // its copies, run by syncStream
}

type stream = *simStream

func newStream() (stream, error) { return new(simStream), nil }

func destroyStream(s *stream) {
	if *s != nil && len((*s).pending) > 0 {
		panic("cudasim: a stream destroyed with copies pending")
	}
	*s = nil
}

type event = *int64 // the default stream's operations before it

func newEvent() (event, error) { return new(int64), nil }

func destroyEvent(e *event) { *e = nil }

func recordEvent(e event) error {
	*e = defaultWork.Load()
	return nil
}

func waitEvent(s stream, e event) error {
	s.waited = max(s.waited, *e)
	return nil
}

func memcpyDtoHAsync(dst unsafe.Pointer, src devPtr, n int64, s stream) error {
	if late := defaultWork.Load() - s.waited; late > 0 {
		return fmt.Errorf("cudasim: a copy on a stream that has not waited for the default stream's last %d operations", late)
	}
	if !isHostAlloc(dst, n) {
		return fmt.Errorf("cudasim: an asynchronous copy to %d bytes at %p, which hostAlloc did not allocate", n, dst)
	}
	s.pending = append(s.pending, func() { C.memcpy(dst, host(src), C.size_t(n)) })
	return nil
}

func syncStream(s stream) error {
	for _, f := range s.pending {
		f()
	}
	s.pending = s.pending[:0]
	return nil
}

// hostAllocs are hostAlloc's allocations ("page-locked" host memory: the
// simulated device's memory, with its guard page and 0xff fill), by
// address, with the bytes asked for.
var hostAllocs = struct {
	sync.Mutex
	m map[unsafe.Pointer]int64
}{m: map[unsafe.Pointer]int64{}}

func hostAlloc(bytes int64) (unsafe.Pointer, error) {
	p, err := memAlloc(bytes)
	if err != nil {
		return nil, err
	}
	hostAllocs.Lock()
	defer hostAllocs.Unlock()
	hostAllocs.m[host(p)] = bytes
	return host(p), nil
}

func hostFree(p unsafe.Pointer) {
	hostAllocs.Lock()
	_, ok := hostAllocs.m[p]
	delete(hostAllocs.m, p)
	hostAllocs.Unlock()
	if !ok {
		panic(fmt.Sprintf("cudasim: freeing host memory at %p, which hostAlloc did not allocate", p))
	}
	memFree(devPtr(uintptr(p))) // the simulated device's addresses are host addresses
}

// isHostAlloc reports whether [p, p+n) lies in one hostAlloc allocation.
func isHostAlloc(p unsafe.Pointer, n int64) bool {
	hostAllocs.Lock()
	defer hostAllocs.Unlock()
	for h, bytes := range hostAllocs.m {
		if uintptr(p) >= uintptr(h) && uintptr(p)+uintptr(n) <= uintptr(h)+uintptr(bytes) {
			return true
		}
	}
	return false
}
