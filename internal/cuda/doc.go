// Package cuda is the GPU backend (build tag cuda): GPT-2 to block L, the
// transcoder's encoder and the midcoder's training step on one NVIDIA GPU,
// computing what internal/gpt2, internal/transcoder and internal/midcoder
// compute on the CPU, to float32 rounding.
//
// The driver API (context, memory, module, launches) goes through
// gorgonia.org/cu in driver_cu.go, the only importer of it in ctxdep;
// cuBLAS is loaded at run time (cublas.go), so the binary is not tied to
// one CUDA version; the other kernels are ctxdep's own (kernels.cu,
// embedded as PTX for compute_80, `make ptx`). In a build without the tag,
// stub.go exports the same API and every call reports that this binary
// has no CUDA, so that `--device cuda` fails clearly instead of running on
// the CPU.
//
// The build tag cudasim (tests only, `make test-sim`) replaces those two
// files with driver_sim.go: a simulated device whose memory is host memory
// and whose kernels are kernels.cu itself compiled as C++ on cudasim.h's
// emulation of CUDA's threads, barriers and warp operations. Everything
// else in the package, and every test, is the same code on either.
//
// Shape key: B rows of T tokens, M = B·T, C = d_model, N = d_mlp, H heads
// of D, F transcoder features. Matrices are row-major float32, as on the
// CPU; cuBLAS (column-major) computes their transposes.
//
// Invariants: every method makes the Device's context current on its OS
// thread for its duration; kernels, GEMMs and copies go to the default
// stream, so they run in call order and a copy to the host waits for
// them. The one exception: Forward.Run copies x and y into page-locked
// host memory on a non-blocking stream that waits for an event recorded
// after their block, and synchronises it before it returns. Activations on the device are CSR with ascending features per row,
// as transcoder.Acts. The W_mid gradient is summed with float atomics, so
// its last bits (not its value to float32 tolerance) vary run to run.
package cuda
