//go:build cuda && !cudasim

package cuda

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>

typedef int (*create_t)(void**);
typedef int (*destroy_t)(void*);
typedef int (*setmath_t)(void*, int);
typedef int (*getver_t)(void*, int*);
typedef int (*sgemm_t)(void*, int, int, int, int, int, const float*, const float*, int,
                       const float*, int, const float*, float*, int);
typedef int (*dgemm_t)(void*, int, int, int, int, int, const double*, const double*, int,
                       const double*, int, const double*, double*, int);
typedef int (*sgemm_sb_t)(void*, int, int, int, int, int, const float*, const float*, int, long long,
                          const float*, int, long long, const float*, float*, int, long long, int);

static void* ctx_dlopen(const char* name) { return dlopen(name, RTLD_NOW | RTLD_LOCAL); }
static const char* ctx_dlerror(void) { const char* e = dlerror(); return e ? e : "unknown error"; }
static int ctx_create(void* f, void** h) { return ((create_t)f)(h); }
static int ctx_destroy(void* f, void* h) { return ((destroy_t)f)(h); }
static int ctx_setmath(void* f, void* h, int mode) { return ((setmath_t)f)(h, mode); }
static int ctx_getver(void* f, void* h, int* v) { return ((getver_t)f)(h, v); }
static int ctx_sgemm(void* f, void* h, int ta, int tb, int m, int n, int k, float alpha,
                     uintptr_t a, int lda, uintptr_t b, int ldb, float beta, uintptr_t c, int ldc) {
	return ((sgemm_t)f)(h, ta, tb, m, n, k, &alpha, (const float*)a, lda, (const float*)b, ldb, &beta, (float*)c, ldc);
}
static int ctx_dgemm(void* f, void* h, int ta, int tb, int m, int n, int k, double alpha,
                     uintptr_t a, int lda, uintptr_t b, int ldb, double beta, uintptr_t c, int ldc) {
	return ((dgemm_t)f)(h, ta, tb, m, n, k, &alpha, (const double*)a, lda, (const double*)b, ldb, &beta, (double*)c, ldc);
}
static int ctx_sgemm_sb(void* f, void* h, int ta, int tb, int m, int n, int k, float alpha,
                        uintptr_t a, int lda, long long sa, uintptr_t b, int ldb, long long sb,
                        float beta, uintptr_t c, int ldc, long long sc, int count) {
	return ((sgemm_sb_t)f)(h, ta, tb, m, n, k, &alpha, (const float*)a, lda, sa, (const float*)b, ldb, sb,
	                       &beta, (float*)c, ldc, sc, count);
}
*/
import "C"

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"
)

// cuBLAS is loaded at run time, not linked: a binary built against one
// CUDA version's libcublas.so.N would not start where another is
// installed, and cu/blas links the build machine's. Every call passes the
// default stream, which the kernels use too, so all work is ordered.

// cuBLAS constants (cublas_api.h).
const (
	cublasOpN            = 0
	cublasOpT            = 1
	cublasDefaultMath    = 0
	cublasTF32TensorMath = 3
)

// cublasNames are the sonames tried, newest first.
var cublasNames = []string{"libcublas.so.13", "libcublas.so.12", "libcublas.so.11"}

type cublas struct {
	lib                     unsafe.Pointer
	handle                  unsafe.Pointer
	path                    string
	version                 int
	destroy, sgemm, sgemmSB unsafe.Pointer
	dgemm                   unsafe.Pointer
}

// cublasCandidates lists where cuBLAS is looked for, in order: the file
// $CTXDEP_CUBLAS names; each soname through the dynamic loader (which
// searches LD_LIBRARY_PATH and the ld.so cache); then $CUDA_HOME/lib64,
// /usr/local/cuda/lib64, /usr/local/cuda-*/lib64 and the NVIDIA wheels of
// a Python installation (…/site-packages/nvidia/*/lib).
func cublasCandidates() []string {
	var out []string
	if p := os.Getenv("CTXDEP_CUBLAS"); p != "" {
		return []string{p}
	}
	out = append(out, cublasNames...)
	var dirs []string
	if h := os.Getenv("CUDA_HOME"); h != "" {
		dirs = append(dirs, filepath.Join(h, "lib64"), filepath.Join(h, "lib"))
	}
	dirs = append(dirs, "/usr/local/cuda/lib64")
	if m, _ := filepath.Glob("/usr/local/cuda-*/lib64"); m != nil {
		dirs = append(dirs, m...)
	}
	// Python's NVIDIA wheels (PyTorch's cuBLAS): nvidia/cublas/lib (CUDA
	// 11, 12) or nvidia/cu13/lib (CUDA 13), in the usual environments.
	roots := []string{"/usr/local/lib/python3*/dist-packages", "/usr/lib/python3*/dist-packages",
		"/opt/*/.venv/lib/python3*/site-packages", "/opt/conda/lib/python3*/site-packages"}
	if v := os.Getenv("VIRTUAL_ENV"); v != "" {
		roots = append([]string{filepath.Join(v, "lib/python3*/site-packages")}, roots...)
	}
	for _, r := range roots {
		if m, _ := filepath.Glob(filepath.Join(r, "nvidia/*/lib")); m != nil {
			dirs = append(dirs, m...)
		}
	}
	for _, d := range dirs {
		for _, n := range cublasNames {
			out = append(out, filepath.Join(d, n))
		}
	}
	return out
}

func loadCublas(tf32 bool) (*cublas, error) {
	var lib unsafe.Pointer
	var tried []string
	var path string
	for _, name := range cublasCandidates() {
		cs := C.CString(name)
		lib = C.ctx_dlopen(cs)
		C.free(unsafe.Pointer(cs))
		if lib != nil {
			path = name
			break
		}
		tried = append(tried, name)
	}
	if lib == nil {
		return nil, fmt.Errorf("cuda: cuBLAS not found (tried %s); install CUDA's cuBLAS 11, 12 or 13, or set CTXDEP_CUBLAS to the libcublas.so.N file", strings.Join(tried, ", "))
	}
	sym := func(name string) (unsafe.Pointer, error) {
		cs := C.CString(name)
		defer C.free(unsafe.Pointer(cs))
		p := C.dlsym(lib, cs)
		if p == nil {
			return nil, fmt.Errorf("cuda: %s has no %s: %s", path, name, C.GoString(C.ctx_dlerror()))
		}
		return p, nil
	}
	b := &cublas{lib: lib, path: path}
	var create, setMath, getVer unsafe.Pointer
	var err error
	for _, s := range []struct {
		dst  *unsafe.Pointer
		name string
	}{{&create, "cublasCreate_v2"}, {&b.destroy, "cublasDestroy_v2"}, {&setMath, "cublasSetMathMode"},
		{&getVer, "cublasGetVersion_v2"}, {&b.sgemm, "cublasSgemm_v2"}, {&b.sgemmSB, "cublasSgemmStridedBatched"},
		{&b.dgemm, "cublasDgemm_v2"}} {
		if *s.dst, err = sym(s.name); err != nil {
			return nil, err
		}
	}
	if st := C.ctx_create(create, &b.handle); st != 0 {
		return nil, fmt.Errorf("cuda: cublasCreate failed with status %d (%s)", int(st), path)
	}
	var v C.int
	C.ctx_getver(getVer, b.handle, &v)
	b.version = int(v)
	mode := C.int(cublasDefaultMath)
	if tf32 {
		mode = cublasTF32TensorMath
	}
	if st := C.ctx_setmath(setMath, b.handle, mode); st != 0 {
		return nil, fmt.Errorf("cuda: cublasSetMathMode failed with status %d", int(st))
	}
	return b, nil
}

func (b *cublas) close() {
	if b.handle != nil {
		C.ctx_destroy(b.destroy, b.handle)
		b.handle = nil
	}
}

func op(t bool) C.int {
	if t {
		return cublasOpT
	}
	return cublasOpN
}

// gemm sets the row-major C (M×N, leading dimension ldc) to
// alpha·op(A)·op(B) + beta·C, op(A) M×K. cuBLAS is column-major, where a
// row-major matrix is its transpose: it computes Cᵀ = op(B)ᵀ·op(A)ᵀ.
func (b *cublas) gemm(ta, tb bool, m, n, k int, alpha float32, a devPtr, lda int, bm devPtr, ldb int, beta float32, c devPtr, ldc int) error {
	st := C.ctx_sgemm(b.sgemm, b.handle, op(tb), op(ta), C.int(n), C.int(m), C.int(k), C.float(alpha),
		C.uintptr_t(bm), C.int(ldb), C.uintptr_t(a), C.int(lda), C.float(beta), C.uintptr_t(c), C.int(ldc))
	if st != 0 {
		return fmt.Errorf("cuda: cublasSgemm (%d×%d×%d) failed with status %d", m, n, k, int(st))
	}
	return nil
}

// gemm64 is gemm in float64 (cublasDgemm; the math mode's TF32 does not
// touch it).
func (b *cublas) gemm64(ta, tb bool, m, n, k int, alpha float64, a devPtr, lda int, bm devPtr, ldb int, beta float64, c devPtr, ldc int) error {
	st := C.ctx_dgemm(b.dgemm, b.handle, op(tb), op(ta), C.int(n), C.int(m), C.int(k), C.double(alpha),
		C.uintptr_t(bm), C.int(ldb), C.uintptr_t(a), C.int(lda), C.double(beta), C.uintptr_t(c), C.int(ldc))
	if st != 0 {
		return fmt.Errorf("cuda: cublasDgemm (%d×%d×%d) failed with status %d", m, n, k, int(st))
	}
	return nil
}

// gemmBatched is gemm over count problems, the i-th at a + i·sa, b + i·sb,
// c + i·sc (strides in elements).
func (b *cublas) gemmBatched(ta, tb bool, m, n, k int, alpha float32, a devPtr, lda, sa int, bm devPtr, ldb, sb int, beta float32, c devPtr, ldc, sc, count int) error {
	st := C.ctx_sgemm_sb(b.sgemmSB, b.handle, op(tb), op(ta), C.int(n), C.int(m), C.int(k), C.float(alpha),
		C.uintptr_t(bm), C.int(ldb), C.longlong(sb), C.uintptr_t(a), C.int(lda), C.longlong(sa),
		C.float(beta), C.uintptr_t(c), C.int(ldc), C.longlong(sc), C.int(count))
	if st != 0 {
		return fmt.Errorf("cuda: cublasSgemmStridedBatched (%d × %d×%d×%d) failed with status %d", count, m, n, k, int(st))
	}
	return nil
}
