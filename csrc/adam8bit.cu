// adam8bit.cu: the CUDA kernels of every path, thin sweeps over the per-element math of
// adam8bit_math.cuh. src/cuda/mod.rs issues them in order (see its comment for the sequence).
//
// Every kernel takes the launch's a8_batch (about 19 KB) by value as __grid_constant__: kernels
// index into it with run-time tensor indices, and without the qualifier the compiler may copy
// the whole parameter into each thread's local memory (`-Xptxas -v`: 0-byte stack frames; the
// 400 bytes of a8_finalize_clip are its sorted history).
//
// Geometry (all kernels): a warp owns one 256-element block at a time, 8 consecutive elements per
// lane; warps of a persistent grid walk the launch's work list (the concatenated blocks of up to
// A8_MAX_TENSORS tensors) with a stride of the total warp count. The only barrier is the one after
// the maps are staged in shared memory. Block maxima come from warp shuffles, and every f64 sum is
// taken in one fixed order (lane-sequential, then a shuffle tree per block, then a fixed tree over
// blocks in a finalize kernel), so results never change from run to run.
#include "adam8bit_abi.cuh"

struct a8_shared_maps {
    float q1[256], q2[256], m1[256], m2[256];
};

__device__ __forceinline__ void a8_stage_maps(a8_shared_maps &s, const float *maps) {
    for (int i = threadIdx.x; i < 256; i += blockDim.x) {
        s.q1[i] = maps[i];
        s.q2[i] = maps[256 + i];
    }
    __syncthreads();
    for (int i = threadIdx.x; i < 255; i += blockDim.x) {
        s.m1[i] = a8_midpoint(s.q1[i], s.q1[i + 1]);
        s.m2[i] = a8_midpoint(s.q2[i], s.q2[i + 1]);
    }
    __syncthreads();
}

// The tensor that owns global block b (binary search over the prefix of blocks).
__device__ __forceinline__ uint32_t a8_owner(const a8_batch &b, unsigned long long blk) {
    uint32_t lo = 0, hi = b.count;
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (b.t[mid].first_block <= blk) lo = mid; else hi = mid;
    }
    return lo;
}

__device__ __forceinline__ unsigned long long a8_warp_id() {
    return ((unsigned long long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
}
__device__ __forceinline__ unsigned long long a8_warp_count() {
    return (unsigned long long)gridDim.x * blockDim.x / 32;
}

// Loads 8 elements [i, i+8) (those below n) as f32; 16-byte vector loads when the tensor's base
// is 16-byte aligned and the group is whole.
__device__ __forceinline__ void a8_load8(const void *base, uint32_t dtype, bool vec,
                                         unsigned long long i, unsigned long long n, float out[8]) {
    if (vec && i + 8 <= n) {
        if (dtype == A8_F32) {
            const float4 *q = reinterpret_cast<const float4 *>(static_cast<const float *>(base) + i);
            float4 a = q[0], b = q[1];
            out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w;
            out[4] = b.x; out[5] = b.y; out[6] = b.z; out[7] = b.w;
        } else {
            uint4 w = *reinterpret_cast<const uint4 *>(static_cast<const uint16_t *>(base) + i);
            uint32_t words[4] = {w.x, w.y, w.z, w.w};
            for (int j = 0; j < 8; ++j) {
                uint16_t h = (uint16_t)(words[j / 2] >> (16 * (j % 2)));
                out[j] = dtype == A8_F16 ? a8_f16_to_f32(h) : a8_bf16_to_f32(h);
            }
        }
        return;
    }
    for (int j = 0; j < 8; ++j) {
        unsigned long long e = i + j;
        if (e >= n) { out[j] = 0.0f; continue; }
        if (dtype == A8_F32) out[j] = static_cast<const float *>(base)[e];
        else {
            uint16_t h = static_cast<const uint16_t *>(base)[e];
            out[j] = dtype == A8_F16 ? a8_f16_to_f32(h) : a8_bf16_to_f32(h);
        }
    }
}

// Stores the elements of [i, i+8) below n whose bit in `mask` is set, rounded to the dtype.
__device__ __forceinline__ void a8_store8(void *base, uint32_t dtype, unsigned long long i,
                                          unsigned long long n, const float in[8], uint32_t mask) {
    for (int j = 0; j < 8; ++j) {
        unsigned long long e = i + j;
        if (e >= n || !((mask >> j) & 1u)) continue;
        if (dtype == A8_F32) static_cast<float *>(base)[e] = in[j];
        else if (dtype == A8_F16) static_cast<uint16_t *>(base)[e] = a8_f32_to_f16(in[j]);
        else static_cast<uint16_t *>(base)[e] = a8_f32_to_bf16(in[j]);
    }
}

__device__ __forceinline__ void a8_load_codes(const void *base, unsigned long long i,
                                              unsigned long long n, uint8_t out[8]) {
    if (i + 8 <= n) {  // codes are 8-byte aligned: every group starts at a multiple of 8
        uint2 w = *reinterpret_cast<const uint2 *>(static_cast<const uint8_t *>(base) + i);
        for (int j = 0; j < 8; ++j) out[j] = (uint8_t)((j < 4 ? w.x : w.y) >> (8 * (j % 4)));
        return;
    }
    for (int j = 0; j < 8; ++j) out[j] = i + j < n ? static_cast<const uint8_t *>(base)[i + j] : 0;
}

__device__ __forceinline__ void a8_store_codes(void *base, unsigned long long i,
                                               unsigned long long n, const uint8_t in[8]) {
    if (i + 8 <= n) {
        uint2 w;
        w.x = in[0] | (in[1] << 8) | (in[2] << 16) | ((uint32_t)in[3] << 24);
        w.y = in[4] | (in[5] << 8) | (in[6] << 16) | ((uint32_t)in[7] << 24);
        *reinterpret_cast<uint2 *>(static_cast<uint8_t *>(base) + i) = w;
        return;
    }
    for (int j = 0; j < 8; ++j)
        if (i + j < n) static_cast<uint8_t *>(base)[i + j] = in[j];
}

__device__ __forceinline__ float a8_warp_max(float x) {
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xFFFFFFFFu, x, o));
    return x;
}

// Fixed-order warp sum: every lane ends with the same value, computed by the same tree.
__device__ __forceinline__ double a8_warp_sum(double x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xFFFFFFFFu, x, o);
    return x;
}

__device__ __forceinline__ unsigned long long a8_warp_count_sum(unsigned long long x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xFFFFFFFFu, x, o);
    return x;
}

// The gradient scale of this step: the device-computed percentile scale or the host's 1.
__device__ __forceinline__ a8_scalars a8_step_scalars(const a8_tensor &T) {
    a8_scalars k = T.k;
    if (T.flags & A8_CLIP) k.gnorm_scale = T.aux->gnorm_scale;
    return k;
}

// ---- zeroing of the per-step accumulators (one launch per step, before everything else) ----

extern "C" __global__ void a8_prepare(const __grid_constant__ a8_batch b) {
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < b.count; i += gridDim.x * blockDim.x) {
        a8_aux *a = b.t[i].aux;
        a->nonfinite = 0;
        a->new_max1 = 0;
        a->new_max2 = 0;
        a->gnorm_scale = 1.0f;
        a->update_scale = 1.0f;
    }
}

// ---- percentile clipping (rule 11): sum of squares of the finite raw gradient ----

extern "C" __global__ void __launch_bounds__(256) a8_grad_norm(const __grid_constant__ a8_batch b) {
    const uint32_t lane = threadIdx.x % 32;
    for (unsigned long long w = a8_warp_id(); w < b.total_blocks; w += a8_warp_count()) {
        const a8_tensor &T = b.t[a8_owner(b, w)];
        unsigned long long blk = w - T.first_block;
        unsigned long long i = blk * A8_BLOCK + lane * 8;
        float g[8];
        a8_load8(T.g, T.dtype, T.flags & A8_ALIGNED16, i, T.n, g);
        double s = 0.0;
        for (int j = 0; j < 8; ++j)
            if (i + j < T.n && a8_isfinite(g[j])) s += (double)g[j] * (double)g[j];
        s = a8_warp_sum(s);
        if (lane == 0) T.partial[blk] = s;
    }
}

// One CUDA block per tensor: the fixed-order sum of its block partials (thread-sequential over a
// stride of 256, then a shared-memory tree). Returns the sum in thread 0.
__device__ double a8_block_sum(const double *partial, unsigned long long count, unsigned long long stride) {
    __shared__ double acc[256];
    double s = 0.0;
    for (unsigned long long i = threadIdx.x; i < count; i += 256) s += partial[i * stride];
    acc[threadIdx.x] = s;
    __syncthreads();
    for (int o = 128; o > 0; o >>= 1) {
        if (threadIdx.x < o) acc[threadIdx.x] += acc[threadIdx.x + o];
        __syncthreads();
    }
    double r = acc[0];
    __syncthreads();
    return r;
}

// Grid = one 256-thread block per tensor of the launch.
extern "C" __global__ void __launch_bounds__(256) a8_finalize_clip(const __grid_constant__ a8_batch b) {
    const a8_tensor &T = b.t[blockIdx.x];
    unsigned long long blocks = (T.n + A8_BLOCK - 1) / A8_BLOCK;
    double sum = a8_block_sum(T.partial, blocks, 1);
    if (threadIdx.x != 0) return;
    a8_aux *a = T.aux;
    a->gnorm_scale = a8_percentile_scale(a->history, (float)sum, T.t, T.percentile);
}

// The end of both 8-bit update passes: the updated parameters (where `finite`), both code
// arrays, and the warp's non-finite count added to the tensor's.
__device__ __forceinline__ void a8_finish8(const a8_tensor &T, unsigned long long i, uint32_t lane,
                                           const float p[8], uint32_t finite, const uint8_t c1[8],
                                           const uint8_t c2[8], unsigned long long bad) {
    a8_store8(T.p, T.dtype, i, T.n, p, finite);
    a8_store_codes(T.s1, i, T.n, c1);
    a8_store_codes(T.s2, i, T.n, c2);
    bad = a8_warp_count_sum(bad);
    if (lane == 0 && bad) atomicAdd(&T.aux->nonfinite, bad);
}

// ---- blockwise 8-bit (rules 1-6) ----

extern "C" __global__ void __launch_bounds__(256) a8_blockwise(const __grid_constant__ a8_batch b) {
    __shared__ a8_shared_maps s;
    a8_stage_maps(s, b.maps);
    const uint32_t lane = threadIdx.x % 32;
    for (unsigned long long w = a8_warp_id(); w < b.total_blocks; w += a8_warp_count()) {
        const a8_tensor &T = b.t[a8_owner(b, w)];
        const a8_scalars k = a8_step_scalars(T);
        unsigned long long blk = w - T.first_block;
        unsigned long long i = blk * A8_BLOCK + lane * 8;
        const bool vec = T.flags & A8_ALIGNED16;
        float g[8], p[8], m[8], v[8];
        uint8_t c1[8], c2[8];
        a8_load8(T.g, T.dtype, vec, i, T.n, g);
        a8_load8(T.p, T.dtype, vec, i, T.n, p);
        a8_load_codes(T.s1, i, T.n, c1);
        a8_load_codes(T.s2, i, T.n, c2);
        const float old1 = T.a1[blk], old2 = T.a2[blk];
        float mx1 = 0.0f, mx2 = 0.0f;
        uint32_t finite = 0;
        unsigned long long bad = 0;
        for (int j = 0; j < 8; ++j) {
            if (i + j >= T.n) { m[j] = 0.0f; v[j] = 0.0f; continue; }  // padding: not in absmax
            bool f = a8_moments8(s.q1[c1[j]], s.q2[c2[j]], old1, old2, g[j], k, m[j], v[j]);
            mx1 = fmaxf(mx1, fabsf(m[j]));
            mx2 = fmaxf(mx2, fabsf(v[j]));
            if (f) { finite |= 1u << j; p[j] = a8_updated_param(p[j], m[j], v[j], k.step_size, k); }
            else bad += 1;
        }
        mx1 = a8_warp_max(mx1);
        mx2 = a8_warp_max(mx2);
        // Every lane read the old absmax above; __syncwarp orders those reads before the store.
        __syncwarp();
        if (lane == 0) { T.a1[blk] = mx1; T.a2[blk] = mx2; }
        for (int j = 0; j < 8; ++j) {
            c1[j] = a8_signed_code(a8_quantize(s.m1, a8_div(m[j], mx1)), m[j]);
            c2[j] = a8_quantize(s.m2, a8_div(v[j], mx2));
        }
        a8_finish8(T, i, lane, p, finite, c1, c2, bad);
    }
}

// ---- non-blockwise 8-bit (rule 10): reduction pass, finalize, update pass ----

extern "C" __global__ void __launch_bounds__(256) a8_dynamic_reduce(const __grid_constant__ a8_batch b) {
    __shared__ a8_shared_maps s;
    a8_stage_maps(s, b.maps);
    const uint32_t lane = threadIdx.x % 32;
    for (unsigned long long w = a8_warp_id(); w < b.total_blocks; w += a8_warp_count()) {
        const a8_tensor &T = b.t[a8_owner(b, w)];
        const a8_scalars k = a8_step_scalars(T);
        unsigned long long blk = w - T.first_block;
        unsigned long long i = blk * A8_BLOCK + lane * 8;
        const bool vec = T.flags & A8_ALIGNED16;
        float g[8], p[8];
        uint8_t c1[8], c2[8];
        a8_load8(T.g, T.dtype, vec, i, T.n, g);
        a8_load_codes(T.s1, i, T.n, c1);
        a8_load_codes(T.s2, i, T.n, c2);
        const bool unorm = T.flags & A8_UNORM;
        if (unorm) a8_load8(T.p, T.dtype, vec, i, T.n, p);
        float mx1 = 0.0f, mx2 = 0.0f;
        double us = 0.0, ps = 0.0;
        for (int j = 0; j < 8; ++j) {
            if (i + j >= T.n) continue;
            float m, v;
            bool f = a8_moments8(s.q1[c1[j]], s.q2[c2[j]], T.aux->max1, T.aux->max2, g[j], k, m, v);
            mx1 = fmaxf(mx1, fabsf(m));
            mx2 = fmaxf(mx2, fabsf(v));
            if (unorm) {
                if (f) us += a8_unorm_term(m, v, k);
                ps += (double)p[j] * (double)p[j];
            }
        }
        mx1 = a8_warp_max(mx1);
        mx2 = a8_warp_max(mx2);
        if (unorm) {
            us = a8_warp_sum(us);
            ps = a8_warp_sum(ps);
        }
        if (lane == 0) {
            // Non-negative floats order like their bit patterns, so an integer max is exact.
            atomicMax(&T.aux->new_max1, __float_as_uint(mx1));
            atomicMax(&T.aux->new_max2, __float_as_uint(mx2));
            if (unorm) { T.partial[2 * blk] = us; T.partial[2 * blk + 1] = ps; }
        }
    }
}

// Grid = one 256-thread block per tensor. The update scale of max_unorm (rules 9, 10) and, for
// the non-blockwise path, the swap of old and new scales.
extern "C" __global__ void __launch_bounds__(256) a8_finalize_update(const __grid_constant__ a8_batch b) {
    const a8_tensor &T = b.t[blockIdx.x];
    a8_aux *a = T.aux;
    const bool unorm = T.flags & A8_UNORM;
    unsigned long long blocks = (T.n + A8_BLOCK - 1) / A8_BLOCK;
    double us = 0.0, ps = 0.0;
    if (unorm) {
        us = a8_block_sum(T.partial, blocks, 2);
        ps = a8_block_sum(T.partial + 1, blocks, 2);
    }
    if (threadIdx.x != 0) return;
    if (T.flags & A8_DYNAMIC) {
        // The update decodes with the old scales and requantizes with the new ones; after the
        // step the new ones are what the stored codes decode with.
        a->dec1 = a->max1;
        a->dec2 = a->max2;
        a->max1 = __uint_as_float(a->new_max1);
        a->max2 = __uint_as_float(a->new_max2);
    }
    if (unorm) {
        float unorm_f = (float)us;
        float param_norm = (float)sqrt(ps);
        float limit = T.max_unorm * param_norm;
        float root = a8_sqrt(unorm_f);
        a->update_scale = root > limit ? a8_div(limit, root) : 1.0f;
        a->unorm_vec = unorm_f;
    }
}

extern "C" __global__ void __launch_bounds__(256) a8_dynamic_update(const __grid_constant__ a8_batch b) {
    __shared__ a8_shared_maps s;
    a8_stage_maps(s, b.maps);
    const uint32_t lane = threadIdx.x % 32;
    for (unsigned long long w = a8_warp_id(); w < b.total_blocks; w += a8_warp_count()) {
        const a8_tensor &T = b.t[a8_owner(b, w)];
        const a8_scalars k = a8_step_scalars(T);
        const a8_aux *a = T.aux;
        const float step_size = a->update_scale * k.step_size;
        const float recip1 = a8_div(1.0f, a->max1), recip2 = a8_div(1.0f, a->max2);
        unsigned long long blk = w - T.first_block;
        unsigned long long i = blk * A8_BLOCK + lane * 8;
        const bool vec = T.flags & A8_ALIGNED16;
        float g[8], p[8];
        uint8_t c1[8], c2[8];
        a8_load8(T.g, T.dtype, vec, i, T.n, g);
        a8_load8(T.p, T.dtype, vec, i, T.n, p);
        a8_load_codes(T.s1, i, T.n, c1);
        a8_load_codes(T.s2, i, T.n, c2);
        uint32_t finite = 0;
        unsigned long long bad = 0;
        for (int j = 0; j < 8; ++j) {
            if (i + j >= T.n) continue;
            float m, v;
            if (a8_moments8(s.q1[c1[j]], s.q2[c2[j]], a->dec1, a->dec2, g[j], k, m, v)) {
                finite |= 1u << j;
                p[j] = a8_updated_param(p[j], m, v, step_size, k);
            } else {
                bad += 1;
            }
            c1[j] = a8_signed_code(a8_quantize(s.m1, m * recip1), m);
            c2[j] = a8_quantize(s.m2, v * recip2);
        }
        a8_finish8(T, i, lane, p, finite, c1, c2, bad);
    }
}

// ---- 32-bit (rule 9): optional reduction for max_unorm, then the update ----

extern "C" __global__ void __launch_bounds__(256) a8_fp32_reduce(const __grid_constant__ a8_batch b) {
    const uint32_t lane = threadIdx.x % 32;
    for (unsigned long long w = a8_warp_id(); w < b.total_blocks; w += a8_warp_count()) {
        const a8_tensor &T = b.t[a8_owner(b, w)];
        const a8_scalars k = a8_step_scalars(T);
        unsigned long long blk = w - T.first_block;
        unsigned long long i = blk * A8_BLOCK + lane * 8;
        const bool vec = T.flags & A8_ALIGNED16;
        float g[8], p[8], m[8], v[8];
        a8_load8(T.g, T.dtype, vec, i, T.n, g);
        a8_load8(T.p, T.dtype, vec, i, T.n, p);
        a8_load8(T.s1, A8_F32, vec, i, T.n, m);
        a8_load8(T.s2, A8_F32, vec, i, T.n, v);
        double us = 0.0, ps = 0.0;
        for (int j = 0; j < 8; ++j) {
            if (i + j >= T.n) continue;
            if (a8_moments32(m[j], v[j], g[j], T.flags & A8_SKIP_ZEROS, k)) us += a8_unorm_term(m[j], v[j], k);
            ps += (double)p[j] * (double)p[j];
        }
        us = a8_warp_sum(us);
        ps = a8_warp_sum(ps);
        if (lane == 0) { T.partial[2 * blk] = us; T.partial[2 * blk + 1] = ps; }
    }
}

extern "C" __global__ void __launch_bounds__(256) a8_fp32_update(const __grid_constant__ a8_batch b) {
    const uint32_t lane = threadIdx.x % 32;
    for (unsigned long long w = a8_warp_id(); w < b.total_blocks; w += a8_warp_count()) {
        const a8_tensor &T = b.t[a8_owner(b, w)];
        const a8_scalars k = a8_step_scalars(T);
        const float step_size = T.aux->update_scale * k.step_size;
        unsigned long long blk = w - T.first_block;
        unsigned long long i = blk * A8_BLOCK + lane * 8;
        const bool vec = T.flags & A8_ALIGNED16;
        float g[8], p[8], m[8], v[8];
        a8_load8(T.g, T.dtype, vec, i, T.n, g);
        a8_load8(T.p, T.dtype, vec, i, T.n, p);
        a8_load8(T.s1, A8_F32, vec, i, T.n, m);
        a8_load8(T.s2, A8_F32, vec, i, T.n, v);
        uint32_t active = 0;
        unsigned long long bad = 0;
        for (int j = 0; j < 8; ++j) {
            if (i + j >= T.n) continue;
            bad += !a8_isfinite(g[j]);
            if (a8_moments32(m[j], v[j], g[j], T.flags & A8_SKIP_ZEROS, k)) {
                active |= 1u << j;
                p[j] = a8_updated_param(p[j], m[j], v[j], step_size, k);
            }
        }
        a8_store8(T.p, T.dtype, i, T.n, p, active);
        a8_store8(T.s1, A8_F32, i, T.n, m, 0xFFu);
        a8_store8(T.s2, A8_F32, i, T.n, v, 0xFFu);
        bad = a8_warp_count_sum(bad);
        if (lane == 0 && bad) atomicAdd(&T.aux->nonfinite, bad);
    }
}
