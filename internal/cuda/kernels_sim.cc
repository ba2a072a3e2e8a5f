//go:build cudasim

// The cudasim build's kernels: kernels.cu itself, compiled as C++ on the
// emulation in cudasim.h, and the table sim_launch finds them in.

#include "cudasim.h"
#include "kernels.cu"

#include <sys/mman.h>
#include <unistd.h>

// Misused barriers, for TestSimReportsMisuse: not in kernels.cu.
extern "C" __global__ void sim_test_split_barrier(float* out) {
    if (threadIdx.x < 32) __syncthreads();
    else __syncthreads();
    out[threadIdx.x] = 1;
}

extern "C" __global__ void sim_test_partial_shuffle(float* out) {
    float v = threadIdx.x;
    if (threadIdx.x < 16) v = __shfl_down_sync(0xffffffffu, v, 1);
    out[threadIdx.x] = v;
}

// Block 0 writes its shared value; every block stores what it reads.
extern "C" __global__ void sim_test_stale_shared(float* out) {
    __shared__ float v;
    if (blockIdx.x == 0 && threadIdx.x == 0) v = 1;
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.x] = v;
}

namespace {

using Launcher = std::string (*)(int grid, int block, const uint64_t* slots, const char* kinds, int nargs);

template <auto K>
std::string launch_kernel(int grid, int block, const uint64_t* slots, const char* kinds, int nargs) {
    return cudasim::launch(K, grid, block, slots, kinds, nargs);
}

struct Entry {
    const char* name;
    Launcher run;
};

#define KERNEL(k) {#k, launch_kernel<k>}
// Every extern "C" __global__ function of kernels.cu (TestSimHasEveryKernel
// checks the list against the file).
const Entry kernels[] = {
    KERNEL(embed),         KERNEL(layernorm_pre), KERNEL(add_inplace),  KERNEL(bias_act),      KERNEL(causal_softmax),
    KERNEL(split_heads),   KERNEL(merge_heads),   KERNEL(sub_bias),     KERNEL(encode_count),  KERNEL(exclusive_scan),
    KERNEL(encode_fill),   KERNEL(gather_mid),    KERNEL(scatter_grad), KERNEL(mse_grad),      KERNEL(relu_grad),
    KERNEL(gelu_new_grad), KERNEL(adamw),         KERNEL(sum_pairs),    KERNEL(csc_count),     KERNEL(csc_fill),
    KERNEL(csc_grad),      KERNEL(col_sum),       KERNEL(csc_totals),   KERNEL(csc_starts),       KERNEL(add_out),      KERNEL(sq_err),        KERNEL(decode_rows),
    KERNEL(cross_entropy), KERNEL(act_deriv),     KERNEL(masked_drive), KERNEL(effect_sums), KERNEL(gate_sums), KERNEL(gated_drive),
    KERNEL(sim_test_split_barrier), KERNEL(sim_test_partial_shuffle), KERNEL(sim_test_stale_shared),
};

const Entry* find(const char* name) {
    for (const Entry& e : kernels)
        if (std::strcmp(e.name, name) == 0) return &e;
    return nullptr;
}

}  // namespace

extern "C" {

int sim_has(const char* name) { return find(name) != nullptr; }

void sim_set_reverse(int on) { cudasim::reverse_order = on != 0; }

// sim_launch runs kernel name; on failure it writes why into err (errlen
// bytes) and returns nonzero.
int sim_launch(const char* name, int grid, int block, const uint64_t* slots, const char* kinds, int nargs, char* err,
               int errlen) {
    const Entry* e = find(name);
    std::string msg = e ? e->run(grid, block, slots, kinds, nargs) : std::string("no such kernel");
    if (msg.empty()) return 0;
    std::snprintf(err, errlen, "%s", msg.c_str());
    return 1;
}

// sim_alloc returns bytes of "device memory" that end where an inaccessible
// page begins, so that a kernel reading or writing past the end of a
// buffer faults instead of corrupting another, and filled with 0xff bytes
// (NaN as float32, −1 as integers), so that reading memory nobody wrote
// shows. The end is the guard page's first byte whenever the size is a
// multiple of 4. *base and *mapped are what sim_free needs.
void* sim_alloc(int64_t bytes, void** base, int64_t* mapped) {
    const int64_t page = sysconf(_SC_PAGESIZE);
    // Natural alignment only (8 bytes when the size allows, else 4), so
    // that one element past the end of a buffer is on the guard page.
    int64_t align = bytes % 8 == 0 ? 8 : 4;
    int64_t rounded = (bytes + align - 1) / align * align;
    int64_t data = (rounded + page - 1) / page * page;
    int64_t total = data + page;
    void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return nullptr;
    char* guard = static_cast<char*>(p) + data;
    if (mprotect(guard, page, PROT_NONE) != 0) {
        munmap(p, total);
        return nullptr;
    }
    char* start = guard - rounded;
    std::memset(start, 0xff, rounded);
    *base = p;
    *mapped = total;
    return start;
}

void sim_free(void* base, int64_t mapped) { munmap(base, mapped); }

}  // extern "C"
