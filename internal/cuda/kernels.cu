// ctxdep's own CUDA kernels. `make ptx` compiles this file to kernels.ptx
// (PTX for compute_80, which the driver compiles for the GPU at hand:
// Ampere, Hopper and later) and device.go embeds it. GEMMs are not here:
// they go through cuBLAS.
//
// Conventions: row-major float32 matrices; every scalar parameter is 32
// bits (int or float), passed by the Go side in 64-bit slots; row counts
// and lengths are int, so one launch covers fewer than 2^31 elements.
// Each kernel computes what its CPU twin in internal/kernels,
// internal/transcoder or internal/midcoder computes, in the same order
// where the order is visible in the result.

#include <stdint.h>

#define FULL 0xffffffffu

__device__ __forceinline__ double warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(FULL, v, o);
    return v;
}

__device__ __forceinline__ float warp_max_f(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(FULL, v, o));
    return v;
}

// block_reduce returns warp's reduction of v over the block (blockDim.x a
// multiple of 32, at most 1024) to every thread; identity is its neutral
// element, for the lanes beyond the block's warps. part (32) and total are
// the caller's shared memory (declared in the non-template wrappers below,
// where the simulated device can find it: see cudasim.h).
template <typename T, T (*warp)(T)>
__device__ __forceinline__ T block_reduce(T v, T identity, T* part, T* total) {
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    v = warp(v);
    if (lane == 0) part[w] = v;
    __syncthreads();
    if (w == 0) {
        T s = lane < (blockDim.x >> 5) ? part[lane] : identity;
        s = warp(s);
        if (lane == 0) *total = s;
    }
    __syncthreads();
    T r = *total;
    __syncthreads();
    return r;
}

__device__ double block_sum_d(double v) {
    __shared__ double part[32], total;
    return block_reduce<double, warp_sum_d>(v, 0.0, part, &total);
}

__device__ float block_max_f(float v) {
    __shared__ float part[32], total;
    return block_reduce<float, warp_max_f>(v, -INFINITY, part, &total);
}

// embed: resid[r] = W_E[tok[r]] + W_pos[r % T]. Grid: one block per row.
extern "C" __global__ void embed(float* resid, const int* tok, const float* we, const float* wpos, int T, int C) {
    int r = blockIdx.x;
    const float* e = we + (size_t)tok[r] * C;
    const float* p = wpos + (size_t)(r % T) * C;
    float* d = resid + (size_t)r * C;
    for (int j = threadIdx.x; j < C; j += blockDim.x) d[j] = e[j] + p[j];
}

// layernorm_pre: dst[r] = (x − mean) / sqrt(var + eps), biased variance,
// sums in float64 (kernels.LayerNormPre). One block per row; dst may alias src.
extern "C" __global__ void layernorm_pre(float* dst, const float* src, int C, float eps) {
    const float* x = src + (size_t)blockIdx.x * C;
    float* y = dst + (size_t)blockIdx.x * C;
    double s = 0;
    for (int j = threadIdx.x; j < C; j += blockDim.x) s += (double)x[j];
    double mean = block_sum_d(s) / C;
    double ss = 0;
    for (int j = threadIdx.x; j < C; j += blockDim.x) {
        double d = (double)x[j] - mean;
        ss += d * d;
    }
    double inv = 1.0 / sqrt(block_sum_d(ss) / C + (double)eps);
    for (int j = threadIdx.x; j < C; j += blockDim.x) y[j] = (float)(((double)x[j] - mean) * inv);
}

// add_inplace: a[i] += b[i].
extern "C" __global__ void add_inplace(float* a, const float* b, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) a[i] += b[i];
}

__device__ __forceinline__ float gelu_new(float x) {
    // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), as kernels.GeluNew.
    return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
}

// Activations of bias_act.
#define ACT_NONE 0
#define ACT_GELU_NEW 1
#define ACT_RELU 2

// bias_act: pre[r, j] += bias[j] (bias may be null); out[r, j] = act(pre[r, j]).
// out may alias pre. Over M·N elements.
extern "C" __global__ void bias_act(float* out, float* pre, const float* bias, int M, int N, int act) {
    long long n = (long long)M * N;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        float v = pre[i];
        if (bias) {
            v += bias[i % N];
            pre[i] = v;
        }
        if (act == ACT_GELU_NEW) v = gelu_new(v);
        else if (act == ACT_RELU) v = fmaxf(v, 0.0f);
        out[i] = v;
    }
}

// causal_softmax: rows of T scores, row r holding query position p = r % T:
// s ← softmax(scale·s[0..p]) with s[p+1..] = 0 (kernels.CausalAttention).
// One block per row.
extern "C" __global__ void causal_softmax(float* s, int T, float scale) {
    float* row = s + (size_t)blockIdx.x * T;
    int p = blockIdx.x % T;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j <= p; j += blockDim.x) mx = fmaxf(mx, row[j] * scale);
    mx = block_max_f(mx);
    double sum = 0;
    for (int j = threadIdx.x; j <= p; j += blockDim.x) {
        float e = __expf(row[j] * scale - mx);
        row[j] = e;
        sum += (double)e;
    }
    float inv = (float)(1.0 / block_sum_d(sum));
    for (int j = threadIdx.x; j < T; j += blockDim.x) row[j] = j <= p ? row[j] * inv : 0.0f;
}

// split_heads: qkv (B·T, 3C) with head i of Q, K, V at columns X·C + i·D
// → heads (3, B, H, T, D), so that one strided-batched GEMM covers all
// (row, head) pairs. One block per token.
extern "C" __global__ void split_heads(float* heads, const float* qkv, int B, int T, int H, int D) {
    int r = blockIdx.x, b = r / T, p = r % T, C = H * D;
    size_t part = (size_t)B * T * C;
    const float* src = qkv + (size_t)r * 3 * C;
    for (int j = threadIdx.x; j < 3 * C; j += blockDim.x) {
        int x = j / C, i = (j % C) / D, e = j % D;
        heads[x * part + (((size_t)b * H + i) * T + p) * D + e] = src[j];
    }
}

// merge_heads: zh (B, H, T, D) → z (B·T, C), head i at columns i·D.
extern "C" __global__ void merge_heads(float* z, const float* zh, int B, int T, int H, int D) {
    int r = blockIdx.x, b = r / T, p = r % T, C = H * D;
    for (int j = threadIdx.x; j < C; j += blockDim.x) {
        int i = j / D, e = j % D;
        z[(size_t)r * C + j] = zh[(((size_t)b * H + i) * T + p) * D + e];
    }
}

// sub_bias: dst[r, j] = x[r, j] − b[j] (the transcoder's x − b_dec).
extern "C" __global__ void sub_bias(float* dst, const float* x, const float* b, int M, int C) {
    long long n = (long long)M * C;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        dst[i] = x[i] - b[i % C];
}

// encode_count: counts[r] = #{j : h[r, j] + b_enc[j] > 0}, h = (x − b_dec) @ W_enc.
// One block per row. h is left as it is: encode_fill adds b_enc again, which
// costs less than writing the biased values back.
extern "C" __global__ void encode_count(const float* h, const float* benc, long long* counts, int F) {
    const float* row = h + (size_t)blockIdx.x * F;
    double n = 0;
    for (int j = threadIdx.x; j < F; j += blockDim.x) n += row[j] + benc[j] > 0.0f ? 1.0 : 0.0;
    n = block_sum_d(n);
    if (threadIdx.x == 0) counts[blockIdx.x] = (long long)n;
}

// exclusive_scan: indptr[0] = 0, indptr[r+1] = indptr[r] + counts[r], for
// M rows, by one block of 1024 threads in chunks.
extern "C" __global__ void exclusive_scan(long long* indptr, const long long* counts, int M) {
    __shared__ long long buf[1024];
    __shared__ long long carry;
    if (threadIdx.x == 0) {
        carry = 0;
        indptr[0] = 0;
    }
    __syncthreads();
    for (int base = 0; base < M; base += 1024) {
        int i = base + threadIdx.x;
        buf[threadIdx.x] = i < M ? counts[i] : 0;
        __syncthreads();
        for (int o = 1; o < 1024; o <<= 1) { // Hillis–Steele inclusive scan
            long long v = threadIdx.x >= o ? buf[threadIdx.x - o] : 0;
            __syncthreads();
            buf[threadIdx.x] += v;
            __syncthreads();
        }
        if (i < M) indptr[i + 1] = carry + buf[threadIdx.x];
        __syncthreads();
        if (threadIdx.x == 1023) carry += buf[1023];
        __syncthreads();
    }
}

// encode_fill: writes the positive entries of each row of h + b_enc, in
// ascending column order, to idx/val from indptr[r]. One block of 256 threads per
// row; nothing is written past cap entries (the caller grows its buffers
// and runs again when indptr[M] > cap).
extern "C" __global__ void encode_fill(const float* h, const float* benc, const long long* indptr, int* idx, float* val, int F, long long cap) {
    __shared__ int warpCount[8];
    __shared__ long long base;
    const float* row = h + (size_t)blockIdx.x * F;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (threadIdx.x == 0) base = indptr[blockIdx.x];
    __syncthreads();
    for (int j0 = 0; j0 < F; j0 += 256) {
        int j = j0 + threadIdx.x;
        float v = j < F ? row[j] + benc[j] : 0.0f;
        bool on = v > 0.0f;
        unsigned mask = __ballot_sync(FULL, on);
        if (lane == 0) warpCount[warp] = __popc(mask);
        __syncthreads();
        long long off = base;
        for (int w = 0; w < warp; w++) off += warpCount[w];
        off += __popc(mask & ((1u << lane) - 1));
        if (on && off < cap) {
            idx[off] = j;
            val[off] = v;
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            long long s = 0;
            for (int w = 0; w < 8; w++) s += warpCount[w];
            base += s;
        }
        __syncthreads();
    }
}

__device__ __forceinline__ float fma_acc(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double fma_acc(double a, double b, double c) { return fma(a, b, c); }

// gather_rows: out[r] = bias + Σ_k val[k]·w[idx[k]] over row r's active
// features in order, accumulated in Acc: float with fused multiply-adds,
// or double (exact products: the CPU's float64 sums, rounded once). One
// block per row.
template <typename Acc>
__device__ void gather_rows(float* out, const long long* indptr, const int* idx, const float* val, const float* w,
                            const float* bias, int C) {
    int r = blockIdx.x;
    long long lo = indptr[r], hi = indptr[r + 1];
    for (int j = threadIdx.x; j < C; j += blockDim.x) {
        Acc acc = bias[j];
        for (long long k = lo; k < hi; k++) acc = fma_acc((Acc)val[k], (Acc)w[(size_t)idx[k] * C + j], acc);
        out[(size_t)r * C + j] = (float)acc;
    }
}

// gather_mid: mid[r] = b_mid + Σ_k val[k]·W_mid[idx[k]]
// (midcoder.Trainer.PreActivations, to float32 rounding).
extern "C" __global__ void gather_mid(float* mid, const long long* indptr, const int* idx, const float* val,
                                      const float* wmid, const float* bmid, int C) {
    gather_rows<float>(mid, indptr, idx, val, wmid, bmid, C);
}

// scatter_grad: gw[idx[k]] += val[k]·dmid[r] for every active (r, k), and
// gb += Σ_r dmid[r]; gw and gb must be zero before. One block per row;
// float atomics, so the order of the sums (and their last bits) varies.
extern "C" __global__ void scatter_grad(float* gw, float* gb, const long long* indptr, const int* idx, const float* val,
                                        const float* dmid, int C) {
    int r = blockIdx.x;
    long long lo = indptr[r], hi = indptr[r + 1];
    for (int j = threadIdx.x; j < C; j += blockDim.x) {
        float d = dmid[(size_t)r * C + j];
        atomicAdd(&gb[j], d);
        for (long long k = lo; k < hi; k++) atomicAdd(&gw[(size_t)idx[k] * C + j], val[k] * d);
    }
}

// The W_mid gradient in a fixed order (--deterministic): the active
// entries regrouped by feature (CSC), rows ascending within each feature,
// and each feature's gradient row summed over them in that order, every
// product and sum rounded to float32, unfused: what midcoder.Trainer
// computes on the CPU, bit for bit, from the same dmid. Rows are cut into
// G chunks of R:
//   csc_count      counts[f·G + g] = entries of feature f in chunk g;
//   csc_totals     totals[f] = Σ_g counts[f·G + g];
//   exclusive_scan colptr = the totals' exclusive prefix sums (F + 1);
//   csc_starts     starts[f·G + g] = colptr[f] + Σ_{g' < g} counts[f·G + g'],
//                  the exclusive prefix sums of all F·G counts (and
//                  starts[F·G] their total), so that feature f's entries
//                  begin at starts[f·G];
//   csc_fill       moves each chunk's entries, row by row in order, to
//                  their feature's place, advancing starts[f·G + g]: then
//                  starts[f·G + g] is where (f, g + 1) began, and feature
//                  f's entries are [starts[f·G − 1] (0 for f = 0),
//                  starts[f·G + G − 1]);
//   csc_grad       gw[f] = Σ val·dmid[row] over them; col_sum gb.

// csc_count: one block per chunk of R rows. counts must be zero before.
extern "C" __global__ void csc_count(const long long* indptr, const int* idx, long long* counts, int M, int G, int R) {
    int g = blockIdx.x;
    long long lo = indptr[min(g * R, M)], hi = indptr[min((g + 1) * R, M)];
    for (long long k = lo + threadIdx.x; k < hi; k += blockDim.x)
        atomicAdd((unsigned long long*)&counts[(size_t)idx[k] * G + g], 1ull);
}

// csc_totals: one thread per feature.
extern "C" __global__ void csc_totals(long long* totals, const long long* counts, int F, int G) {
    for (int f = blockIdx.x * blockDim.x + threadIdx.x; f < F; f += gridDim.x * blockDim.x) {
        long long s = 0;
        for (int g = 0; g < G; g++) s += counts[(size_t)f * G + g];
        totals[f] = s;
    }
}

// csc_starts: one thread per feature.
extern "C" __global__ void csc_starts(long long* starts, const long long* colptr, const long long* counts, int F, int G) {
    for (int f = blockIdx.x * blockDim.x + threadIdx.x; f < F; f += gridDim.x * blockDim.x) {
        long long s = colptr[f];
        for (int g = 0; g < G; g++) {
            starts[(size_t)f * G + g] = s;
            s += counts[(size_t)f * G + g];
        }
    }
    if (blockIdx.x == 0 && threadIdx.x == 0) starts[(size_t)F * G] = colptr[F];
}

// csc_fill: one block per chunk; a row's features are distinct, so its
// entries move in parallel, and rows in order.
extern "C" __global__ void csc_fill(const long long* indptr, const int* idx, const float* val, long long* starts,
                                    int* rowT, float* valT, int M, int G, int R) {
    int g = blockIdx.x, r1 = min((g + 1) * R, M);
    for (int r = g * R; r < r1; r++) {
        long long hi = indptr[r + 1];
        for (long long k = indptr[r] + threadIdx.x; k < hi; k += blockDim.x) {
            long long* s = &starts[(size_t)idx[k] * G + g];
            long long p = *s;
            rowT[p] = r;
            valT[p] = val[k];
            *s = p + 1;
        }
        __syncthreads();
    }
}

// csc_grad: one block per feature; every row of gw is written (zero for
// a feature active nowhere). Each thread keeps CSC_COLS columns' sums in
// registers and walks the feature's entries once per CSC_COLS·blockDim
// columns: each column's sum is added in entry order, as the CPU adds it.
#define CSC_COLS 4
extern "C" __global__ void csc_grad(float* gw, const long long* starts, const int* rowT, const float* valT,
                                    const float* dmid, int G, int C) {
    size_t f = blockIdx.x;
    long long lo = f == 0 ? 0 : starts[f * G - 1], hi = starts[f * G + G - 1];
    for (int j0 = 0; j0 < C; j0 += CSC_COLS * blockDim.x) {
        float s[CSC_COLS];
        for (int q = 0; q < CSC_COLS; q++) s[q] = 0.0f;
        for (long long p = lo; p < hi; p++) {
            const float v = valT[p];
            const float* d = dmid + (size_t)rowT[p] * C;
            for (int q = 0; q < CSC_COLS; q++) {
                int j = j0 + q * blockDim.x + threadIdx.x;
                if (j < C) s[q] = __fadd_rn(s[q], __fmul_rn(v, d[j]));
            }
        }
        for (int q = 0; q < CSC_COLS; q++) {
            int j = j0 + q * blockDim.x + threadIdx.x;
            if (j < C) gw[f * C + j] = s[q];
        }
    }
}

// col_sum: gb[j] = Σ_r dmid[r, j] over the M rows in order, in float64,
// rounded once (midcoder.Trainer's b_mid gradient, bit for bit).
extern "C" __global__ void col_sum(float* gb, const float* dmid, int M, int C) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= C) return;
    double s = 0;
    for (int r = 0; r < M; r++) s += (double)dmid[(size_t)r * C + j];
    gb[j] = (float)s;
}

// write_pair: partials[2b] and partials[2b+1] = the sums of a and of b
// over block b's threads.
__device__ void write_pair(double* partials, double a, double b) {
    a = block_sum_d(a);
    b = block_sum_d(b);
    if (threadIdx.x == 0) {
        partials[2 * blockIdx.x] = a;
        partials[2 * blockIdx.x + 1] = b;
    }
}

// mse_grad: partials[2b] = Σ (out − y)², partials[2b+1] = Σ y² over the
// elements block b visits (float64), and out ← scale·(out − y) with
// scale = 2 / n (midcoder.lossAndGrad). sum_pairs then adds the partials
// in a fixed order, so that the loss repeats bit for bit.
extern "C" __global__ void mse_grad(float* out, const float* y, int n, float scale, double* partials) {
    double se = 0, sy = 0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        double d = (double)out[i] - (double)y[i];
        se += d * d;
        sy += (double)y[i] * (double)y[i];
        out[i] = scale * (out[i] - y[i]);
    }
    write_pair(partials, se, sy);
}

// sum_pairs: sums[0] = Σ_b p[2b], sums[1] = Σ_b p[2b+1] over n pairs, by
// one block, in an order fixed by n and the block size.
extern "C" __global__ void sum_pairs(double* sums, const double* p, int n) {
    double a = 0, b = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        a += p[2 * i];
        b += p[2 * i + 1];
    }
    a = block_sum_d(a);
    b = block_sum_d(b);
    if (threadIdx.x == 0) {
        sums[0] = a;
        sums[1] = b;
    }
}

// relu_grad: dh[i] = 0 where pre[i] ≤ 0.
extern "C" __global__ void relu_grad(float* dh, const float* pre, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        if (pre[i] <= 0.0f) dh[i] = 0.0f;
}

// gelu_new_grad: dh[i] ·= gelu_new'(pre[i]) (midcoder.geluNewBackward, in float64).
extern "C" __global__ void gelu_new_grad(float* dh, const float* pre, long long n) {
    const double k = 0.7978845608028654, a = 0.044715;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        double x = pre[i];
        double t = tanh(k * (x + a * x * x * x));
        double d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * a * x * x);
        dh[i] = (float)((double)dh[i] * d);
    }
}

// adamw: one AdamW step over n parameters in torch's operation order
// (kernels.AdamWStep.updateGo; __fmul_rn/__fadd_rn keep the compiler from
// fusing, as the Go code does). g may be null (zero gradient).
extern "C" __global__ void adamw(float* theta, float* m, float* v, const float* g, int n,
                                 float decay, float b1, float b1c, float b2, float b2c,
                                 float bc2sqrt, float stepsize, float eps) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        float gi = g ? g[i] : 0.0f;
        float th = __fmul_rn(theta[i], decay);
        float mi = __fadd_rn(__fmul_rn(m[i], b1), __fmul_rn(gi, b1c));
        float vi = __fadd_rn(__fmul_rn(v[i], b2), __fmul_rn(__fmul_rn(b2c, gi), gi));
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2sqrt), eps);
        theta[i] = __fsub_rn(th, __fdiv_rn(__fmul_rn(stepsize, mi), denom));
        m[i] = mi;
        v[i] = vi;
    }
}

// Evaluation (analysis.Evaluate on the device).

// add_out: dst[i] = a[i] + b[i] (a variant's resid_post = resid_mid + its y).
extern "C" __global__ void add_out(float* dst, const float* a, const float* b, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) dst[i] = a[i] + b[i];
}

// sq_err: partials[2b] = Σ (a − y)², partials[2b+1] = Σ y² over the
// elements block b visits (float64); sum_pairs adds them.
extern "C" __global__ void sq_err(const float* a, const float* y, int n, double* partials) {
    double se = 0, sy = 0;
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        double d = (double)a[i] - (double)y[i];
        se += d * d;
        sy += (double)y[i] * (double)y[i];
    }
    write_pair(partials, se, sy);
}

// decode_rows: out[r] = b_dec_out + Σ_k val[k]·W_dec[idx[k]]
// (transcoder.Transcoder.Decode, bit for bit).
extern "C" __global__ void decode_rows(float* out, const long long* indptr, const int* idx, const float* val,
                                       const float* wdec, const float* bdec, int C) {
    gather_rows<double>(out, indptr, idx, val, wdec, bdec, C);
}

// cross_entropy: loss[r] = logsumexp(logits[r]) − logits[r, tokens[r+1]],
// the next-token cross-entropy of row r (nats), with the max in float32
// and the sum of exponentials in float64 (kernels.CrossEntropyRows); rows
// at the last position of a sequence of T tokens have no target: 0. One
// block per row of V logits.
extern "C" __global__ void cross_entropy(float* loss, const float* logits, const int* tokens, int T, int V) {
    int r = blockIdx.x;
    if (r % T == T - 1) {
        if (threadIdx.x == 0) loss[r] = 0.0f;
        return;
    }
    const float* row = logits + (size_t)r * V;
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, row[j]);
    mx = block_max_f(mx);
    double sum = 0;
    for (int j = threadIdx.x; j < V; j += blockDim.x) sum += (double)expf(row[j] - mx);
    sum = block_sum_d(sum);
    if (threadIdx.x == 0) loss[r] = (float)((double)mx + log(sum) - (double)row[tokens[r + 1]]);
}

// Effect statistics (analysis.EffectAccumulator on the device).

// act_deriv: dphi[i] = φ'(pre[i]): ReLU's 1 where pre > 0, else 0;
// gelu_new's derivative of the formula in float64 (analysis.actDeriv).
extern "C" __global__ void act_deriv(float* dphi, const float* pre, long long n, int act) {
    const double k = 0.7978845608028654, a = 0.044715;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        double x = pre[i];
        if (act == ACT_RELU) {
            dphi[i] = x > 0 ? 1.0f : 0.0f;
        } else {
            double t = tanh(k * (x + a * x * x * x));
            dphi[i] = (float)(0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * a * x * x));
        }
    }
}

// masked_drive: a[i] = dphi[rows[i]] ⊙ drive[feats[i]] (N each) for the p
// pairs (token row, feature) of a group. One block per pair.
extern "C" __global__ void masked_drive(float* a, const float* dphi, const float* drive, const int* rows, const int* feats, int N) {
    size_t i = blockIdx.x;
    const float* g = dphi + (size_t)rows[i] * N;
    const float* d = drive + (size_t)feats[i] * N;
    for (int j = threadIdx.x; j < N; j += blockDim.x) a[i * N + j] = g[j] * d[j];
}

// gate_sums: for each segment s of pairs [seg[s], seg[s+1]) with one
// feature f = feats[seg[s]], in pair order: gate[f] += dphi[rows[i]]
// (N each, float64), the order analysis.EffectAccumulator adds the gates
// Γ_f in. One block per segment: no two blocks touch one feature.
extern "C" __global__ void gate_sums(double* gate, const float* dphi, const int* rows, const int* feats, const int* seg, int N) {
    int lo = seg[blockIdx.x], hi = seg[blockIdx.x + 1];
    size_t f = feats[lo];
    for (int j = threadIdx.x; j < N; j += blockDim.x) {
        double acc = gate[f * N + j];
        for (int i = lo; i < hi; i++) acc += (double)dphi[(size_t)rows[i] * N + j];
        gate[f * N + j] = acc;
    }
}

// gated_drive: v[i] = drive[i] · gate[i] in float64, the rows d_f ⊙ Γ_f
// whose product with W_out is f's summed pinv effect.
extern "C" __global__ void gated_drive(double* v, const float* drive, const double* gate, long long n) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
        v[i] = (double)drive[i] * gate[i];
}

// effect_sums: for each segment s of pairs [seg[s], seg[s+1]) with one
// feature f = feats[seg[s]], in pair order: sum[f] += e[i] (float64) and
// normSum[f] += ‖e[i]‖ (float64), the order
// analysis.EffectAccumulator adds them in (pairs sorted by feature, rows
// ascending). One block per segment: no two blocks touch one feature.
// Each column's sum is loaded once, added to over the segment, stored once.
extern "C" __global__ void effect_sums(double* sum, double* normSum, const float* e, const int* feats, const int* seg, int C) {
    int lo = seg[blockIdx.x], hi = seg[blockIdx.x + 1];
    size_t f = feats[lo];
    for (int j = threadIdx.x; j < C; j += blockDim.x) {
        double acc = sum[f * C + j];
        for (int i = lo; i < hi; i++) acc += (double)e[(size_t)i * C + j];
        sum[f * C + j] = acc;
    }
    double ns = normSum[f];  // plus each pair's norm, in pair order (thread 0's is stored)
    for (int i = lo; i < hi; i++) {
        double ss = 0;
        for (int j = threadIdx.x; j < C; j += blockDim.x) {
            double v = e[(size_t)i * C + j];
            ss += v * v;
        }
        ss = block_sum_d(ss);
        ns += sqrt(ss);
    }
    if (threadIdx.x == 0) normSum[f] = ns;
}
