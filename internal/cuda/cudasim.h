// cudasim.h runs CUDA kernels on the CPU, for the cudasim build's tests
// (driver_sim.go): kernels.cu compiled as C++ after this header.
//
// Each block runs on its own, its threads as fibers on one OS thread:
// a thread runs until it reaches __syncthreads or a warp operation
// (shuffle, ballot), then the next one runs. A block barrier releases
// when every live thread of the block waits at it; a warp operation
// completes when every live lane of the warp has reached it, and each
// lane then reads the values the others brought. So the emulation keeps
// CUDA's semantics for everything kernels.cu relies on, and turns the
// misuses that a GPU forgives by luck into errors: a barrier or warp
// operation that some threads never reach (divergence) is a deadlock, and
// threads released from different __syncthreads calls are an error, each
// reported by launch_kernel's caller. What it cannot see: data races
// between threads that should have been separated by a barrier (threads
// run in order, which hides many of them; CUDASIM_ORDER=reverse runs
// blocks and threads in the opposite order, which shows others). Shared memory is a static variable, shared by the
// block's threads and filled with 0xff bytes before each block (on ELF
// targets; see __shared__ below). Atomics are plain operations (one OS thread). Fast-math
// intrinsics (__expf) are the exact functions, so results match the GPU to
// its rounding, not bit for bit.
#pragma once

// No fused multiply-adds where the source has none (g++ fuses by default
// where the target has FMA: arm64, or x86 with -march flags), as nvcc
// keeps __fmul_rn/__fadd_rn apart.
#pragma GCC optimize("fp-contract=off")

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace cudasim {

struct dim3 {  // blockDim, gridDim
    unsigned x = 1, y = 1, z = 1;
};

struct uint3 {  // threadIdx, blockIdx: 0 in the dimensions a 1-D launch does not use
    unsigned x = 0, y = 0, z = 0;
};

enum State { READY, AT_SYNC, AT_WARP, DONE };
enum WarpOp { SHFL_DOWN, SHFL_XOR, SHFL_IDX, BALLOT, SYNCWARP };

struct Thread {
#if defined(__x86_64__)
    void* sp = nullptr;  // saved stack pointer
#else
    ucontext_t ctx;
#endif
    uint3 tid;
    State state = DONE;
    WarpOp op = SYNCWARP;
    uint64_t val = 0, res = 0;
    int arg = 0;
    unsigned mask = 0;  // the lanes the warp operation names
    int line = 0;  // the source line of the __syncthreads it waits at
};

// The current launch: one at a time (launch holds a mutex).
inline uint3 block_idx;
inline dim3 block_dim, grid_dim;
inline Thread* self = nullptr;
inline void (*body)(void*) = nullptr;
inline void* body_arg = nullptr;

#if defined(__x86_64__)
// switch_to saves the callee-saved registers on the current stack, stores
// its pointer in *save and continues on the stack to (System V ABI).
extern "C" void cudasim_switch(void** save, void* to);
asm(R"(
.text
.globl cudasim_switch
.hidden cudasim_switch
.type cudasim_switch,@function
cudasim_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
.size cudasim_switch,.-cudasim_switch
.section .note.GNU-stack,"",@progbits
.text
)");
inline void* sched_sp = nullptr;
#else
inline ucontext_t sched_ctx;
#endif

constexpr size_t kStack = 64 << 10;
inline std::vector<Thread> threads;
inline std::vector<char*> stacks;

// to_scheduler saves the running thread's registers and resumes the
// scheduler.
inline void to_scheduler() {
#if defined(__x86_64__)
    cudasim_switch(&self->sp, sched_sp);
#else
    swapcontext(&self->ctx, &sched_ctx);
#endif
}

[[noreturn]] inline void fiber_main() {
    body(body_arg);
    self->state = DONE;
    to_scheduler();
    std::abort();  // a finished thread is never resumed
}

// yield returns to the scheduler, to be resumed when this thread's wait ends.
inline void yield(State s) {
    self->state = s;
    to_scheduler();
}

inline void start(Thread& t, char* stack) {
#if defined(__x86_64__)
    // The new stack: six zero registers for cudasim_switch to pop, then
    // fiber_main as the return address, entered with rsp ≡ 8 (mod 16) as
    // after a call.
    uintptr_t top = (reinterpret_cast<uintptr_t>(stack) + kStack) & ~uintptr_t(15);
    void** sp = reinterpret_cast<void**>(top - 16);
    sp[0] = reinterpret_cast<void*>(&fiber_main);
    sp[1] = nullptr;
    sp -= 6;
    for (int i = 0; i < 6; i++) sp[i] = nullptr;
    t.sp = sp;
#else
    getcontext(&t.ctx);
    t.ctx.uc_stack.ss_sp = stack;
    t.ctx.uc_stack.ss_size = kStack;
    t.ctx.uc_link = &sched_ctx;
    makecontext(&t.ctx, (void (*)())fiber_main, 0);
#endif
    t.state = READY;
}

inline void resume(Thread& t) {
    self = &t;
#if defined(__x86_64__)
    cudasim_switch(&sched_sp, t.sp);
#else
    swapcontext(&sched_ctx, &t.ctx);
#endif
}

// complete_warp finishes the warp operation that every live lane of the
// warp at w has reached; false when they reached different ones.
inline bool complete_warp(int w, int n) {  // and every lane its mask names
    Thread* lanes = &threads[w];
    int count = std::min(32, n - w);
    WarpOp op = SYNCWARP;
    bool first = true;
    uint32_t ballot = 0;
    for (int l = 0; l < count; l++) {
        if (lanes[l].state == DONE) continue;
        if (first) op = lanes[l].op;
        first = false;
        if (lanes[l].op != op) return false;
        for (int o = 0; o < count; o++)
            if ((lanes[l].mask >> o & 1) && lanes[o].state == DONE) return false;
        if (lanes[l].val) ballot |= 1u << l;
    }
    for (int l = 0; l < count; l++) {
        Thread& t = lanes[l];
        if (t.state == DONE) continue;
        int src = l;
        switch (op) {
        case SHFL_DOWN: src = l + t.arg; break;
        case SHFL_XOR: src = l ^ t.arg; break;
        case SHFL_IDX: src = t.arg & 31; break;
        default: break;
        }
        if (op == BALLOT) t.res = ballot;
        else if (src >= 0 && src < count && lanes[src].state != DONE) t.res = lanes[src].val;
        else t.res = t.val;  // a lane outside the warp: the caller's own value, as CUDA
        t.state = READY;
    }
    return true;
}

// reverse_order runs the blocks, and each block's threads, from the last
// to the first (CUDASIM_ORDER=reverse in the tests: sim_test.go): a race
// that one order hides, the other shows.
inline bool reverse_order = false;

#if defined(__ELF__)
// The linker's bounds of the section __shared__ variables live in (see
// the __shared__ definition below); weak, for a kernel file without any.
extern "C" char __start_cudasim_shared[] __attribute__((weak));
extern "C" char __stop_cudasim_shared[] __attribute__((weak));

// poison_shared fills the __shared__ variables with 0xff bytes.
inline void poison_shared() {
    if (__start_cudasim_shared != nullptr && __stop_cudasim_shared > __start_cudasim_shared)
        std::memset(__start_cudasim_shared, 0xff, __stop_cudasim_shared - __start_cudasim_shared);
}
#else
inline void poison_shared() {}  // no named sections: shared memory keeps what the last block left
#endif

// run_block runs one block of n threads to completion; an error names the
// deadlock.
inline std::string run_block(int n) {
    if ((int)threads.size() < n) threads.resize(n);
    while ((int)stacks.size() < n) stacks.push_back(static_cast<char*>(std::malloc(kStack)));
    for (int i = 0; i < n; i++) {
        threads[i] = Thread{};
        threads[i].tid.x = i;
        start(threads[i], stacks[i]);
    }
    for (;;) {
        for (int k = 0; k < n; k++) {
            int i = reverse_order ? n - 1 - k : k;
            if (threads[i].state == READY) resume(threads[i]);
        }
        int live = 0, sync = 0, warp = 0;
        for (int i = 0; i < n; i++) {
            live += threads[i].state != DONE;
            sync += threads[i].state == AT_SYNC;
            warp += threads[i].state == AT_WARP;
        }
        if (live == 0) return "";
        bool progress = false;
        for (int w = 0; w < n && warp > 0; w += 32) {
            bool waiting = false, all = true;
            for (int l = w; l < std::min(w + 32, n); l++) {
                waiting |= threads[l].state == AT_WARP;
                all &= threads[l].state == AT_WARP || threads[l].state == DONE;
            }
            if (waiting && all) {
                if (!complete_warp(w, n))
                    return "the lanes of a warp reached different warp operations, or lanes its mask names have exited";
                progress = true;
            }
        }
        if (progress) continue;
        if (sync == live) {
            int line = -1;
            for (int i = 0; i < n; i++) {
                if (threads[i].state != AT_SYNC) continue;
                if (line >= 0 && threads[i].line != line)
                    return "threads wait at different __syncthreads (source lines " + std::to_string(line) + " and " +
                           std::to_string(threads[i].line) + ")";
                line = threads[i].line;
                threads[i].state = READY;
            }
            continue;
        }
        if (warp > 0) return "a warp operation that some live lanes of the warp never reach (divergence)";
        return "__syncthreads that some live threads of the block never reach";
    }
}

inline std::mutex mu;

template <typename T>
T from_slot(uint64_t s) {
    if constexpr (std::is_pointer_v<T>) {
        return reinterpret_cast<T>(static_cast<uintptr_t>(s));
    } else if constexpr (std::is_same_v<T, float>) {
        uint32_t u = static_cast<uint32_t>(s);
        float f;
        std::memcpy(&f, &u, 4);
        return f;
    } else if constexpr (std::is_same_v<T, double>) {
        double d;
        std::memcpy(&d, &s, 8);
        return d;
    } else if constexpr (sizeof(T) == 4) {
        return static_cast<T>(static_cast<uint32_t>(s));
    } else {
        static_assert(sizeof(T) == 8, "kernel parameters are 4 or 8 bytes");
        return static_cast<T>(s);
    }
}

// kind_of is the Go side's kind of argument ('p' pointer, 'i' 32-bit int,
// 'l' 64-bit int, 'f' float, 'd' double) a parameter of type T takes.
template <typename T>
constexpr char kind_of() {
    if constexpr (std::is_pointer_v<T>) return 'p';
    else if constexpr (std::is_floating_point_v<T>) return sizeof(T) == 4 ? 'f' : 'd';
    else return sizeof(T) == 4 ? 'i' : 'l';
}

// launch runs kernel k on grid blocks of block threads with the arguments
// in slots (one 64-bit slot each, as the Go side passes them to the
// driver), after checking their kinds against k's parameter types.
template <typename... A>
std::string launch(void (*k)(A...), int grid, int block, const uint64_t* slots, const char* kinds, int nargs) {
    if (nargs != (int)sizeof...(A))
        return "the kernel takes " + std::to_string(sizeof...(A)) + " arguments, " + std::to_string(nargs) + " given";
    constexpr char want[] = {kind_of<A>()..., 0};
    for (int i = 0; i < nargs; i++)
        if (kinds[i] != want[i])
            return "argument " + std::to_string(i) + " is of kind '" + std::string(1, kinds[i]) + "', the parameter of kind '" +
                   std::string(1, want[i]) + "' (p pointer, i int, l long long, f float)";
    if (block < 1 || block > 1024) return "a block of " + std::to_string(block) + " threads (1 to 1024)";
    if (grid < 1) return "a grid of " + std::to_string(grid) + " blocks";
    auto args = [&]<size_t... I>(std::index_sequence<I...>) {
        return std::tuple<A...>(from_slot<A>(slots[I])...);
    }(std::index_sequence_for<A...>{});
    struct Call {
        void (*k)(A...);
        std::tuple<A...>* args;
    } call{k, &args};
    std::lock_guard<std::mutex> lock(mu);
    body = [](void* p) {
        auto* c = static_cast<Call*>(p);
        std::apply(c->k, *c->args);
    };
    body_arg = &call;
    grid_dim = dim3{};
    grid_dim.x = grid;
    block_dim = dim3{};
    block_dim.x = block;
    for (int k = 0; k < grid; k++) {
        int b = reverse_order ? grid - 1 - k : k;
        block_idx = uint3{};
        block_idx.x = b;
        poison_shared();
        std::string err = run_block(block);
        if (!err.empty()) return "block " + std::to_string(b) + ": " + err;
    }
    return "";
}

template <typename T>
T warp_op(WarpOp op, unsigned mask, T v, int arg) {
    static_assert(sizeof(T) <= 8, "warp values are at most 8 bytes");
    self->op = op;
    self->mask = mask;
    self->val = 0;
    std::memcpy(&self->val, &v, sizeof(T));
    self->arg = arg;
    yield(AT_WARP);
    T r;
    std::memcpy(&r, &self->res, sizeof(T));
    return r;
}

}  // namespace cudasim

// The CUDA built-ins kernels.cu uses.
#define __global__ __attribute__((visibility("hidden")))
#define __device__
#define __forceinline__ inline
// __shared__ variables are statics in their own section, which launch
// fills with 0xff bytes before each block (NaN, −1): a block that reads
// shared memory it has not written sees garbage, as on a GPU, not what
// the block before it left. g++ ignores the section of a static local of
// a function template (it goes to a COMDAT .bss of its own, unpoisoned):
// kernels.cu declares shared memory in kernels and plain functions only.
#if defined(__ELF__)
#define __shared__ static __attribute__((section("cudasim_shared")))
#else
#define __shared__ static
#endif
#define threadIdx (cudasim::self->tid)
#define blockIdx (cudasim::block_idx)
#define blockDim (cudasim::block_dim)
#define gridDim (cudasim::grid_dim)

inline void cudasim_syncthreads(int line) {
    cudasim::self->line = line;
    cudasim::yield(cudasim::AT_SYNC);
}
#define __syncthreads() cudasim_syncthreads(__LINE__)
inline void __syncwarp(unsigned mask = 0xffffffffu) { cudasim::warp_op<int>(cudasim::SYNCWARP, mask, 0, 0); }
template <typename T>
T __shfl_down_sync(unsigned mask, T v, int delta) { return cudasim::warp_op(cudasim::SHFL_DOWN, mask, v, delta); }
template <typename T>
T __shfl_xor_sync(unsigned mask, T v, int lanes) { return cudasim::warp_op(cudasim::SHFL_XOR, mask, v, lanes); }
template <typename T>
T __shfl_sync(unsigned mask, T v, int lane) { return cudasim::warp_op(cudasim::SHFL_IDX, mask, v, lane); }
inline unsigned __ballot_sync(unsigned mask, int pred) {
    return cudasim::warp_op<uint64_t>(cudasim::BALLOT, mask, pred ? 1 : 0, 0);
}
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline int __popcll(unsigned long long v) { return __builtin_popcountll(v); }
template <typename T>
T atomicAdd(T* p, T v) {
    T old = *p;
    *p = old + v;
    return old;
}
template <typename T>
T atomicMax(T* p, T v) {
    T old = *p;
    if (v > old) *p = v;
    return old;
}
using std::max;
using std::min;
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
