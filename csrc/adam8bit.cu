// adam8bit.cu: the CUDA kernels of every path, thin sweeps over the per-element math of
// adam8bit_math.cuh. src/cuda/mod.rs issues them in order (see its comment for the sequence).
//
// Every kernel takes the launch's a8_batch (about 20 KB) by value as __grid_constant__: kernels
// index into it with run-time tensor indices, and without the qualifier the compiler may copy
// the whole parameter into each thread's local memory.
//
// Geometry (the sweeps): a warp owns one 256-element block at a time; lane l owns two quads of
// it, elements [4l, 4l + 4) and [128 + 4l, 128 + 4l + 4), so every warp-wide access of a quad
// covers 128 consecutive elements (512 bytes of fp32, 256 of fp16/bf16, 128 of codes): all
// loads and stores are coalesced, as 16-, 8- or 4-byte vectors when the tensor is aligned for
// them. Warps of a persistent grid walk the launch's work list (the concatenated blocks of up
// to A8_MAX_TENSORS tensors) with a stride of the total warp count. The only barrier of a
// sweep is the one after the maps are staged in shared memory. Block maxima come from warp
// shuffles, and every f64 sum is taken in one fixed order (lane-sequential over the lane's 8
// elements, a shuffle tree per block, then the finalize kernels' fixed two-level tree over
// blocks and chunks), so results never change from run to run nor with the device's SM count.
#include "adam8bit_abi.cuh"

// ---- work list ----

__device__ __forceinline__ unsigned long long a8_warp_id() {
    return ((unsigned long long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
}
__device__ __forceinline__ unsigned long long a8_warp_count() {
    return (unsigned long long)gridDim.x * blockDim.x / 32;
}

// The tensor whose range of `field` (blocks or chunks, a prefix over the tensors) holds x.
template <unsigned long long a8_tensor::*Field>
__device__ __forceinline__ uint32_t a8_owner(const a8_batch &b, unsigned long long x) {
    uint32_t lo = 0, hi = b.count;
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (b.t[mid].*Field <= x) lo = mid; else hi = mid;
    }
    return lo;
}

// A warp's walk over its blocks: they only increase, so the owner only moves forward (one
// binary search per warp, not per block).
struct a8_walk {
    const a8_batch &b;
    uint32_t i;
    __device__ a8_walk(const a8_batch &batch, unsigned long long first)
        : b(batch), i(a8_owner<&a8_tensor::first_block>(batch, first)) {}
    __device__ __forceinline__ uint32_t owner(unsigned long long w) {
        while (i + 1 < b.count && b.t[i + 1].first_block <= w) ++i;
        return i;
    }
    // The step scalars of the warp's tensor, computed when the warp moves to a tensor, and the
    // step number they are of.
    __device__ __forceinline__ const a8_scalars &scalars();
    uint32_t scalars_of = 0xFFFFFFFFu;
    a8_scalars k = {};
    unsigned long long t = 0;
};

// Which of a lane's 8 slots (its quads: 4 elements from `first` and from first + 128) lie below
// n, as a bit mask: one 64-bit comparison per quad, not one per element.
__device__ __forceinline__ uint32_t a8_valid(unsigned long long first, unsigned long long n) {
    unsigned long long r0 = n > first ? n - first : 0, r1 = n > first + 128 ? n - first - 128 : 0;
    uint32_t k0 = r0 < 4 ? (uint32_t)r0 : 4u, k1 = r1 < 4 ? (uint32_t)r1 : 4u;
    return ((1u << k0) - 1u) | (((1u << k1) - 1u) << 4);
}

// How many of T's blocks take the Full route, a prefix of them: those whose 256 elements all
// lie below n (all but a partial last one), where the tensor is aligned for vectors; else none.
__device__ __forceinline__ unsigned long long a8_full_blocks(const a8_tensor &T) {
    return (T.flags & A8_VECTOR) ? T.n / A8_BLOCK : 0;
}

// ---- loads and stores of a lane's 8 elements ----

// The raw bits of element i of a lane's 8 as a8_load8 keeps them: a word each for f32, two
// halves to a word for 16-bit dtypes (as they were loaded: 4 registers a lane, not 8).
template <uint32_t dtype>
__device__ __forceinline__ uint32_t a8_raw_at(const uint32_t raw[8], int i) {
    if (dtype == A8_F32) return raw[i];
    return (raw[i >> 1] >> (16 * (i & 1))) & 0xFFFFu;
}

template <uint32_t dtype>
__device__ __forceinline__ float a8_widen(uint32_t h) {
    if (dtype == A8_F32) return a8_float(h);
    return dtype == A8_F16 ? a8_f16_to_f32((uint16_t)h) : a8_bf16_to_f32((uint16_t)h);
}

// The raw bits of a quad's elements below n (0 past it), one at a time.
template <uint32_t dtype>
__device__ __forceinline__ void a8_load_quad_scalar(const void *base, unsigned long long e,
                                                    unsigned long long n, uint32_t *raw) {  // cold path: an unaligned or partial quad
    uint32_t bits[4];
    for (int j = 0; j < 4; ++j)
        bits[j] = e + j >= n ? 0u
                  : dtype == A8_F32 ? static_cast<const uint32_t *>(base)[e + j]
                                    : static_cast<const uint16_t *>(base)[e + j];
    if (dtype == A8_F32) {
        for (int j = 0; j < 4; ++j) raw[j] = bits[j];
    } else {
        raw[0] = bits[0] | (bits[1] << 16);
        raw[1] = bits[2] | (bits[3] << 16);
    }
}

// Elements of `dtype` as f32, with their raw bits (to store back untouched, see a8_raw_at),
// those at or past n as 0. Full: the caller knows that both quads lie below n and that the
// tensor is aligned for vectors.
template <uint32_t dtype, bool Full = false>
__device__ __forceinline__ void a8_load8(const void *base, bool vec, unsigned long long first,
                                         unsigned long long n, float out[8], uint32_t raw[8]) {
    for (int q = 0; q < 2; ++q) {
        unsigned long long e = first + 128ull * q;
        float *o = out + 4 * q;
        if (Full || (vec && e + 4 <= n)) {
            if (dtype == A8_F32) {
                float4 v = *reinterpret_cast<const float4 *>(static_cast<const float *>(base) + e);
                o[0] = v.x; o[1] = v.y; o[2] = v.z; o[3] = v.w;
                for (int j = 0; j < 4; ++j) raw[4 * q + j] = a8_bits(o[j]);
                continue;
            } else {
                uint2 w = *reinterpret_cast<const uint2 *>(static_cast<const uint16_t *>(base) + e);
                raw[2 * q] = w.x;
                raw[2 * q + 1] = w.y;
            }
        } else {
            a8_load_quad_scalar<dtype>(base, e, n, raw + (dtype == A8_F32 ? 4 : 2) * q);
        }
        for (int j = 0; j < 4; ++j) o[j] = a8_widen<dtype>(a8_raw_at<dtype>(raw, 4 * q + j));
    }
}

// How a store rounds to a 16-bit dtype: to nearest (rule 14), or stochastically (rule 19) with
// the draws of a tensor whose element 0 is element `first` of its full tensor, at step t.
// Variant: whether the kernel is the _sr one, in which stochastic may be true.
template <bool Variant>
struct a8_rounding {
    bool stochastic;
    uint32_t k0, k1;
    unsigned long long first, t;
};

__device__ __forceinline__ a8_rounding<false> a8_nearest() { return {false, 0, 0, 0, 0}; }

// Stochastic: the kernel is the variant the host launches when a tensor of the launch rounds
// stochastically; the other variant carries none of its code.
template <bool Stochastic>
__device__ __forceinline__ a8_rounding<Stochastic> a8_rounding_of(const a8_tensor &T, unsigned long long t) {
    return {Stochastic && (T.flags & A8_STOCHASTIC) != 0, T.sr_key[0], T.sr_key[1], T.sr_first, t};
}

template <uint32_t dtype>
__device__ __forceinline__ uint32_t a8_encode(float x, bool stochastic, uint32_t draw) {
    if (dtype == A8_F32) return a8_bits(x);
    if (dtype == A8_F16) return stochastic ? a8_f32_to_f16_stochastic(x, draw) : a8_f32_to_f16(x);
    return stochastic ? a8_f32_to_bf16_stochastic(x, draw) : a8_f32_to_bf16(x);
}

template <uint32_t dtype>
__device__ __forceinline__ uint32_t a8_pack_pair(float lo, float hi) {
    return dtype == A8_F16 ? a8_f32x2_to_f16x2(lo, hi) : a8_f32x2_to_bf16x2(lo, hi);
}

// Element j of quad q of a lane's 8: rounded to the dtype where its bit in `mask` is set, else
// the raw bits it was loaded with.
template <uint32_t dtype>
__device__ __forceinline__ void a8_encode_quad(const float x[4], const uint32_t raw[8], uint32_t mask,
                                               int q, bool stochastic, const uint32_t draw[4],
                                               uint32_t bits[4]) {
    for (int j = 0; j < 4; ++j)
        bits[j] = (mask >> (4 * q + j)) & 1u ? a8_encode<dtype>(x[j], stochastic, draw[j])
                                             : a8_raw_at<dtype>(raw, 4 * q + j);
}

// Stores the elements below n: those whose bit in `mask` is set rounded to the dtype, the
// others as the raw bits they were loaded with (so a whole quad goes out as one vector; the
// scalar path stores only the masked ones). A quad starts at a multiple of 4 of the full
// tensor, so one Philox call gives its four draws. Full: as for a8_load8.
template <uint32_t dtype, bool Full = false, bool Variant>
__device__ __forceinline__ void a8_store8(void *base, bool vec, unsigned long long first,
                                          unsigned long long n, const float in[8],
                                          const uint32_t raw[8], uint32_t mask,
                                          const a8_rounding<Variant> &r) {
    const bool stochastic = dtype != A8_F32 && r.stochastic;
    for (int q = 0; q < 2; ++q) {
        unsigned long long e = first + 128ull * q;
        uint32_t draw[4] = {0, 0, 0, 0};
        if (stochastic) {
            const unsigned long long quad = (r.first + e) >> 2;
            draw[0] = (uint32_t)quad;
            draw[1] = (uint32_t)(quad >> 32);
            draw[2] = (uint32_t)r.t;
            draw[3] = (uint32_t)(r.t >> 32);
            a8_philox(r.k0, r.k1, draw);
        }
        const float *x = in + 4 * q;
        uint32_t bits[4];
        // A 16-bit quad whose four elements are all rounded to nearest and none is NaN converts
        // in pairs; the _sr kernels round every element on its own.
        bool paired = false;
        if (dtype != A8_F32 && !Variant) {
            bool nan = false;
            for (int j = 0; j < 4; ++j) nan |= !(x[j] == x[j]);
            paired = ((mask >> (4 * q)) & 0xFu) == 0xFu && !nan;
        }
        if (paired) {
            const uint32_t w0 = a8_pack_pair<dtype>(x[0], x[1]), w1 = a8_pack_pair<dtype>(x[2], x[3]);
            bits[0] = w0 & 0xFFFFu;
            bits[1] = w0 >> 16;
            bits[2] = w1 & 0xFFFFu;
            bits[3] = w1 >> 16;
        } else if (dtype == A8_F32 || Variant) {
            a8_encode_quad<dtype>(x, raw, mask, q, stochastic, draw, bits);
        } else {  // cold path: a 16-bit quad with an element to keep (a non-finite gradient, past n) or a NaN
            a8_encode_quad<dtype>(x, raw, mask, q, false, draw, bits);
        }
        if (!Full && !(vec && e + 4 <= n)) {  // cold path: an unaligned or partial quad
            for (int j = 0; j < 4; ++j) {
                if (e + j >= n || !((mask >> (4 * q + j)) & 1u)) continue;
                if (dtype == A8_F32) static_cast<uint32_t *>(base)[e + j] = bits[j];
                else static_cast<uint16_t *>(base)[e + j] = (uint16_t)bits[j];
            }
            continue;
        }
        if (dtype == A8_F32) {
            uint4 v = {bits[0], bits[1], bits[2], bits[3]};
            *reinterpret_cast<uint4 *>(static_cast<float *>(base) + e) = v;
        } else {
            uint2 w = {bits[0] | (bits[1] << 16), bits[2] | (bits[3] << 16)};
            *reinterpret_cast<uint2 *>(static_cast<uint16_t *>(base) + e) = w;
        }
    }
}

// Codes: every quad starts at a multiple of 4 bytes of a code array the library allocated. They
// stay packed, a word per quad, until a8_code_at takes one out where it indexes a table.
template <bool Full = false>
__device__ __forceinline__ void a8_load_codes(const void *base, unsigned long long first,
                                              unsigned long long n, uint32_t out[2]) {
    const uint8_t *c = static_cast<const uint8_t *>(base);
    for (int q = 0; q < 2; ++q) {
        unsigned long long e = first + 128ull * q;
        if (!Full && e + 4 > n) {  // cold path: a partial quad
            uint32_t w = 0;
            for (int j = 0; j < 4; ++j) w |= (e + j < n ? (uint32_t)c[e + j] : 0u) << (8 * j);
            out[q] = w;
            continue;
        }
        out[q] = *reinterpret_cast<const uint32_t *>(c + e);
    }
}

// Code j of a lane's 8, by one byte permute (prmt). Taken out as a byte (shift and mask), nvcc
// scales and masks it again before adding the table's address: one instruction more per decode.
__device__ __forceinline__ uint32_t a8_code_at(const uint32_t w[2], int j) {
    return __byte_perm(w[j >> 2], 0, 0x4440u + (uint32_t)(j & 3));
}

template <bool Full = false>
__device__ __forceinline__ void a8_store_codes(void *base, unsigned long long first,
                                               unsigned long long n, const uint8_t in[8]) {
    uint8_t *c = static_cast<uint8_t *>(base);
    for (int q = 0; q < 2; ++q) {
        unsigned long long e = first + 128ull * q;
        const uint8_t *x = in + 4 * q;
        if (!Full && e + 4 > n) {  // cold path: a partial quad
            for (int j = 0; j < 4; ++j)
                if (e + j < n) c[e + j] = x[j];
            continue;
        }
        *reinterpret_cast<uint32_t *>(c + e) =
            x[0] | (x[1] << 8) | (x[2] << 16) | ((uint32_t)x[3] << 24);
    }
}

// ---- warp reductions ----

// The largest x of the warp, where every x lies in [+0.0, +inf] (a maximum of fabsf values
// taken by fmaxf from +0.0, which drops NaN): such floats order as their bits do as unsigned
// integers, so one redux.sync does what five shuffles and maxima did.
__device__ __forceinline__ float a8_warp_max(float x) {
    return __uint_as_float(__reduce_max_sync(0xFFFFFFFFu, __float_as_uint(x)));
}

// Fixed-order warp sum: every lane ends with the same value, computed by the same tree.
template <class T>
__device__ __forceinline__ T a8_warp_sum(T x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xFFFFFFFFu, x, o);
    return x;
}

// ---- the call: loss scaling and its skip, read on the device (rule 18) ----

struct a8_call {
    bool skip;  // found_inf, or a grad_scale no gradient can be divided by
    bool scaled;
    float scale, rscale;
    bool power_of_two, by_reciprocal;
};

__device__ __forceinline__ a8_call a8_call_of(const a8_batch &b) {
    a8_call c = {false, false, 1.0f, 1.0f, false, false};
    if (b.found_inf && *b.found_inf != 0.0f) c.skip = true;
    if (b.grad_scale) {
        c.scaled = true;
        c.scale = *b.grad_scale;
        if (!(c.scale > 0.0f) || !a8_isfinite(c.scale)) c.skip = true;
        c.rscale = a8_div(1.0f, c.scale);
        c.power_of_two = a8_is_power_of_two(c.scale);
        c.by_reciprocal = a8_divides_by_reciprocal(c.scale);
    }
    return c;
}

// Every gradient element divided by the loss scale before anything reads it.
__device__ __forceinline__ void a8_unscale(const a8_call &c, float g[8]) {
    if (!c.scaled) return;
    if (!c.power_of_two) {  // cold path: a loss scale that is not a power of two
        for (int j = 0; j < 8; ++j)
            g[j] = c.by_reciprocal ? a8_div_by(g[j], c.scale, c.rscale) : a8_div(g[j], c.scale);
        return;
    }
    for (int j = 0; j < 8; ++j) g[j] = g[j] * c.rscale;
}

// ---- the step number and rule 2's scalars, on the device ----

__device__ __forceinline__ uint32_t a8_slot(const a8_tensor &T) { return (uint32_t)(T.call & 1u); }

// The step this call takes: one more than the previous call left.
__device__ __forceinline__ unsigned long long a8_t(const a8_tensor &T) {
    return T.aux->step[a8_slot(T) ^ 1u] + 1;
}

// Rule 2's scalars of this call's step as src/scalars.rs computes them: from the host's powers of
// the betas (pow is the one operation not correctly rounded on both sides), the same f64
// operations in the same order, each result rounded to f32 once; the host's constants for the
// rest, and the device-computed percentile scale.
__device__ __forceinline__ a8_scalars a8_step_scalars(const a8_tensor &T, unsigned long long t) {
    a8_scalars k = T.k;
    // Past the table's end both 1 - beta^t round to 1, as at its last entry.
    const unsigned long long at = t < T.powers_last ? t : T.powers_last;
    const double bc1 = 1.0 - T.powers[2 * at], bc2 = 1.0 - T.powers[2 * at + 1];
    const double c2 = sqrt(bc2);
    k.step_size = (float)(-T.lr * c2 / bc1);
    k.eps_c2 = (float)(T.eps * c2);
    k.unorm_c1 = (float)(1.0 / bc1);
    k.unorm_c2 = (float)(1.0 / bc2);
    if (T.flags & A8_CLIP) k.gnorm_scale = T.aux->gnorm_scale;
    return k;
}

__device__ __forceinline__ const a8_scalars &a8_walk::scalars() {
    if (scalars_of != i) {  // cold path: once per warp and tensor, not per element
        t = a8_t(b.t[i]);
        k = a8_step_scalars(b.t[i], t);
        scalars_of = i;
    }
    return k;
}

__device__ __forceinline__ void a8_clear_next(a8_aux *a, uint32_t slot) {
    a->nonfinite[slot ^ 1u] = 0;
    a->new_max1[slot ^ 1u] = 0;
    a->new_max2[slot ^ 1u] = 0;
}

// A warp's count of non-finite gradients into this call's slot, by one lane.
template <class Count>
__device__ __forceinline__ void a8_add_nonfinite(a8_aux *a, uint32_t slot, Count bad) {
    if (bad) atomicAdd(&a->nonfinite[slot], (unsigned long long)bad);
}

// By the warp that owns a tensor's first block, once: this call's step; the other slot cleared.
__device__ __forceinline__ void a8_record_step(a8_aux *a, uint32_t slot) {
    a->step[slot] = a->step[slot ^ 1u] + 1;
    a8_clear_next(a, slot);
}

// The end of a 32-bit update block: its non-finite count, and the step where it is the first.
__device__ __forceinline__ void a8_count(const a8_tensor &T, unsigned long long blk, uint32_t lane,
                                         uint32_t bad) {
    bad = __reduce_add_sync(0xFFFFFFFFu, bad);  // at most 256
    if (lane != 0) return;
    a8_add_nonfinite(T.aux, a8_slot(T), bad);
    if (blk == 0) a8_record_step(T.aux, a8_slot(T));
}

// A skipped call leaves the step and the count as the previous call did.
__device__ __forceinline__ void a8_skip(const a8_tensor &T, unsigned long long blk, uint32_t lane) {
    if (lane != 0 || blk != 0) return;
    a8_aux *a = T.aux;
    const uint32_t slot = a8_slot(T);
    a->step[slot] = a->step[slot ^ 1u];
    a->nonfinite[slot] = a->nonfinite[slot ^ 1u];
    a8_clear_next(a, slot);
}

// ---- shared maps ----

__device__ __forceinline__ void a8_stage_maps(a8_maps &s, const a8_maps *maps) {
    const uint4 *src = reinterpret_cast<const uint4 *>(maps);
    uint4 *dst = reinterpret_cast<uint4 *>(&s);
    for (unsigned i = threadIdx.x; i < sizeof(a8_maps) / 16; i += blockDim.x) dst[i] = src[i];
    __syncthreads();
}

// ---- percentile clipping (rule 11): sum of squares of the finite raw gradient ----

template <uint32_t D>
__device__ __forceinline__ void a8_grad_norm_sweep(const a8_batch &b) {
    const a8_call call = a8_call_of(b);
    if (call.skip) return;
    const uint32_t lane = threadIdx.x % 32;
    a8_walk walk(b, a8_warp_id());
    for (unsigned long long w = a8_warp_id(); w < b.total_blocks; w += a8_warp_count()) {
        const a8_tensor &T = b.t[walk.owner(w)];
        unsigned long long blk = w - T.first_block;
        unsigned long long first = blk * A8_BLOCK + lane * 4;
        const uint32_t valid = a8_valid(first, T.n);
        float g[8];
        uint32_t raw[8];
        a8_load8<D>(T.g, T.flags & A8_VECTOR, first, T.n, g, raw);
        a8_unscale(call, g);
        double s = 0.0;
        for (int j = 0; j < 8; ++j)
            if (((valid >> j) & 1u) && a8_isfinite(g[j])) s += (double)g[j] * (double)g[j];
        s = a8_warp_sum(s);
        if (lane == 0) T.partial[blk] = s;
    }
}

// The fixed-order sum of `count` values `stride` apart, in one 256-thread CTA: thread-sequential
// over a stride of 256, then a shared-memory tree. Every thread returns the sum.
__device__ double a8_block_sum(const double *v, unsigned long long count, unsigned long long stride) {
    __shared__ double acc[256];
    double s = 0.0;
    for (unsigned long long i = threadIdx.x; i < count; i += 256) s += v[i * stride];
    acc[threadIdx.x] = s;
    __syncthreads();
    for (unsigned o = 128; o > 0; o >>= 1) {
        if (threadIdx.x < o) acc[threadIdx.x] += acc[threadIdx.x + o];
        __syncthreads();
    }
    double r = acc[0];
    __syncthreads();
    return r;
}

// The finalize kernels run one 256-thread CTA per chunk of A8_CHUNK blocks of every tensor
// (grid = the batch's total chunks). A CTA sums its chunk's block sums into the chunk's slot
// (after the block sums: `sums` f64 per block, then `sums` per chunk) and takes a ticket; the
// CTA with the last ticket sums the chunk sums, in chunk order, and finishes the tensor. The
// order of every sum is fixed by the tensor's size alone, whichever CTA comes last.
struct a8_chunk {
    const a8_tensor &T;
    unsigned long long chunk, chunks, blocks;
    __device__ a8_chunk(const a8_batch &b)
        : T(b.t[a8_owner<&a8_tensor::first_chunk>(b, blockIdx.x)]),
          chunk(blockIdx.x - T.first_chunk),
          chunks((T.n + (unsigned long long)A8_BLOCK * A8_CHUNK - 1) / ((unsigned long long)A8_BLOCK * A8_CHUNK)),
          blocks((T.n + A8_BLOCK - 1) / A8_BLOCK) {}

    // Sums this chunk's share of sum k (of `sums` per block); true in the CTA that is last, where
    // `total[k]` then holds the tensor's sums.
    __device__ bool sum(int sums, double total[2]) {
        __shared__ bool last;
        unsigned long long lo = chunk * A8_CHUNK;
        unsigned long long count = (blocks - lo < A8_CHUNK ? blocks - lo : A8_CHUNK);
        double *chunk_sums = T.partial + (unsigned long long)sums * blocks;
        for (int k = 0; k < sums; ++k) {
            double s = a8_block_sum(T.partial + lo * sums + k, count, (unsigned long long)sums);
            if (threadIdx.x == 0) chunk_sums[chunk * sums + k] = s;
        }
        if (threadIdx.x == 0) {
            // The chunk sums must be visible before the ticket that lets another CTA read them.
            __threadfence();
            last = atomicAdd(&T.aux->ticket, 1u) == chunks - 1;
        }
        __syncthreads();
        if (!last) return false;
        __threadfence();
        for (int k = 0; k < sums; ++k) total[k] = a8_block_sum(chunk_sums + k, chunks, (unsigned long long)sums);
        if (threadIdx.x == 0) T.aux->ticket = 0;
        return true;
    }
};

extern "C" __global__ void __launch_bounds__(256) a8_finalize_clip(const __grid_constant__ a8_batch b) {
    if (a8_call_of(b).skip) return;
    a8_chunk c(b);
    double total[2];
    if (!c.sum(1, total)) return;
    __shared__ float clip_sq;
    __shared__ uint32_t slot;
    a8_aux *a = c.T.aux;
    if (threadIdx.x == 0) slot = a8_history_record(a->history, (float)total[0], a8_t(c.T));
    __syncthreads();
    // A parallel rank: the entry of rank `percentile` is the percentile-th smallest.
    if (threadIdx.x < A8_HISTORY && a8_history_rank(a->history, threadIdx.x) == (uint32_t)c.T.percentile)
        clip_sq = a->history[threadIdx.x];
    __syncthreads();
    if (threadIdx.x == 0) a->gnorm_scale = a8_clip_scale(a->history[slot], clip_sq);
}

// The update scale of max_unorm (rules 9, 10) and, for the non-blockwise path, the swap of old
// and new scales.
extern "C" __global__ void __launch_bounds__(256) a8_finalize_update(const __grid_constant__ a8_batch b) {
    if (a8_call_of(b).skip) return;
    a8_chunk c(b);
    const a8_tensor &T = c.T;
    const bool unorm = T.flags & A8_UNORM;
    double total[2] = {0.0, 0.0};
    if (unorm ? !c.sum(2, total) : c.chunk != 0) return;
    if (threadIdx.x != 0) return;
    a8_aux *a = T.aux;
    if (T.flags & A8_DYNAMIC) {
        // The update decodes with the old scales and requantizes with the new ones; after the
        // step the new ones are what the stored codes decode with.
        const uint32_t slot = a8_slot(T);
        a->dec1 = a->max1;
        a->dec2 = a->max2;
        a->max1 = __uint_as_float(a->new_max1[slot]);
        a->max2 = __uint_as_float(a->new_max2[slot]);
    }
    if (unorm) {
        float unorm_f = (float)total[0];
        float param_norm = (float)sqrt(total[1]);
        float limit = T.max_unorm * param_norm;
        float root = a8_sqrt(unorm_f);
        a->update_scale = root > limit ? a8_div(limit, root) : 1.0f;
        a->unorm_vec = unorm_f;
    }
}

// ---- the moments of the 8-bit paths ----

// Whether all 8 gradients are finite: one integer maximum of their exponent fields.
__device__ __forceinline__ bool a8_all_finite(const float g[8]) {
    uint32_t e = 0;
    for (int j = 0; j < 8; ++j) e = max(e, a8_bits(g[j]) & 0x7F800000u);
    return e != 0x7F800000u;
}

// The new moments of a lane's 8 elements from their packed codes, and the mask of those whose
// gradient is finite. A lane whose gradients are all finite takes them without the selects that
// zero the moments of a non-finite one, and without building the mask element by element.
__device__ __forceinline__ uint32_t a8_lane_moments(const a8_maps &s, const uint32_t w1[2],
                                                    const uint32_t w2[2], float scale1,
                                                    float scale2, const float g[8],
                                                    const a8_scalars &k, float m[8], float v[8]) {
    uint32_t finite = 0xFFu;
    if (a8_all_finite(g)) {
        for (int j = 0; j < 8; ++j)
            a8_moments8<true>(s.q1[a8_code_at(w1, j)], s.q2[a8_code_at(w2, j)], scale1, scale2,
                              g[j], k, m[j], v[j]);
    } else {  // cold path: a lane with a non-finite gradient
        finite = 0;
        for (int j = 0; j < 8; ++j)
            finite |= (uint32_t)a8_moments8(s.q1[a8_code_at(w1, j)], s.q2[a8_code_at(w2, j)],
                                            scale1, scale2, g[j], k, m[j], v[j])
                      << j;
    }
    return finite;
}

// ---- blockwise 8-bit (rules 1-6) ----

// The codes of new moments m, v from their quotients q1, q2 by the maxima; Bounded where
// |q1| < 2, +0.0 <= q2 < 2 and neither is NaN.
template <bool Bounded>
__device__ __forceinline__ void a8_codes(const a8_maps &s, const float q1[8], const float q2[8],
                                         const float m[8], uint8_t c1[8], uint8_t c2[8]) {
    for (int j = 0; j < 8; ++j) {
        c1[j] = a8_momentum_code<Bounded>(s.b1, q1[j], m[j]);
        c2[j] = a8_variance_code<Bounded>(s.b2, q2[j]);
    }
}

// The codes of a block's new moments, normalised by its maxima. Fast, where a8_bounds_codes
// holds: by reciprocal (Markstein's three operations, exact where a8_divides_by_reciprocal says
// so) and Bounded codes; elsewhere by division and codes for any quotient.
template <bool Fast>
__device__ __forceinline__ void a8_block_codes(const a8_maps &s, const float m[8], const float v[8],
                                               float mx1, float mx2, uint8_t c1[8], uint8_t c2[8]) {
    const float y1 = a8_div(1.0f, mx1), y2 = a8_div(1.0f, mx2);
    float q1[8], q2[8];
    for (int j = 0; j < 8; ++j) {
        q1[j] = Fast ? a8_quotient(m[j], mx1, y1) : a8_div(m[j], mx1);
        q2[j] = Fast ? a8_quotient(v[j], mx2, y2) : a8_div(v[j], mx2);
    }
    a8_codes<Fast>(s, q1, q2, m, c1, c2);
}

// Whether a block's quotients are in a8_block_codes' fast route: both maxima divide by
// reciprocal, so they are finite and positive. Then no new moment is NaN (which fmaxf leaves out
// of a maximum), and |m| <= mx1, 0 <= v <= mx2 as the Bounded codes need: m = q1 old1 beta1 +
// (1 - beta1) g' and v = q2 old2 beta2 + (1 - beta2) g'^2 with q1 in [-1, 1] and q2 in [0, 1]
// (the maps are fixed), old maxima in [+0, +inf] or NaN (write_state refuses negative ones), a
// finite g' (gnorm_scale is in [0, 1]; a non-finite gradient makes m = v = +0). A NaN or
// infinite old maximum makes every other moment of the block NaN or infinite, so the new
// maximum is 0 or infinite; with a finite one every moment is a number, an infinite one giving
// an infinite maximum.
__device__ __forceinline__ bool a8_bounds_codes(float mx1, float mx2) {
    return a8_divides_by_reciprocal(mx1) && a8_divides_by_reciprocal(mx2);
}

// One block of a warp: Full when all 256 elements lie below n and the tensor is aligned for
// vectors, so that nothing in it branches per element (selects instead: a non-finite gradient's
// parameter is computed and not stored).
template <uint32_t D, bool Full, bool Variant>
__device__ __forceinline__ uint32_t a8_blockwise_block(const a8_maps &s, const a8_call &call,
                                                   const a8_tensor &T, const a8_scalars &k,
                                                   const a8_rounding<Variant> &r, unsigned long long blk,
                                                   unsigned long long first, uint32_t lane,
                                                   uint32_t valid) {
    const bool vec = T.flags & A8_VECTOR;
    float g[8], p[8], m[8], v[8];
    uint32_t graw[8], praw[8];
    uint32_t w1[2], w2[2];
    uint8_t c1[8], c2[8];
    a8_load8<D, Full>(T.g, vec, first, T.n, g, graw);
    a8_unscale(call, g);
    a8_load8<D, Full>(T.p, vec, first, T.n, p, praw);
    a8_load_codes<Full>(T.s1, first, T.n, w1);
    a8_load_codes<Full>(T.s2, first, T.n, w2);
    const float old1 = T.a1[blk], old2 = T.a2[blk];
    float mx1 = 0.0f, mx2 = 0.0f;
    uint32_t finite = a8_lane_moments(s, w1, w2, old1, old2, g, k, m, v);
    for (int j = 0; j < 8; ++j) {
        if (!Full && !((valid >> j) & 1u)) m[j] = v[j] = 0.0f;  // padding: not in absmax
        mx1 = fmaxf(mx1, fabsf(m[j]));
        mx2 = fmaxf(mx2, fabsf(v[j]));
        p[j] = a8_updated_param(p[j], m[j], v[j], k.step_size, k);
    }
    finite &= valid;
    mx1 = a8_warp_max(mx1);
    mx2 = a8_warp_max(mx2);
    // Every lane read the old absmax above; __syncwarp orders those reads before the store.
    __syncwarp();
    if (lane == 0) { T.a1[blk] = mx1; T.a2[blk] = mx2; }
    if (a8_bounds_codes(mx1, mx2))
        a8_block_codes<true>(s, m, v, mx1, mx2, c1, c2);
    else
        a8_block_codes<false>(s, m, v, mx1, mx2, c1, c2);  // cold path: a block maximum out of the reciprocal's range (0 in an all-zero block)
    a8_store8<D, Full>(T.p, vec, first, T.n, p, praw, finite, r);
    a8_store_codes<Full>(T.s1, first, T.n, c1);
    a8_store_codes<Full>(T.s2, first, T.n, c2);
    return __popc(valid & ~finite);
}

// ---- non-blockwise 8-bit (rule 10): reduction pass, finalize, update pass ----

// What the reduction sweep takes from a tensor, once: the maxima its codes decode with (this
// call's old ones) and whether max_unorm wants the block's sums.
struct a8_dynamic_decode {
    float max1, max2;
    bool unorm;
};

// A lane's maxima of |m| and |v| over the warp's blocks of a tensor: fmaxf from +0.0 leaves NaN
// out, in any order, so one warp maximum per tensor gives what one per block did.
struct a8_maxima {
    float mx1, mx2;
};

// One block of the reduction sweep: its new moments into the lane's maxima and, for max_unorm,
// the block's sums of squared updates (of finite gradients) and parameters, in element order.
template <uint32_t D, bool Full, bool Variant>
__device__ __forceinline__ void a8_dynamic_reduce_block(const a8_dynamic_decode &c, a8_maxima &acc,
                                                        const a8_maps &s, const a8_call &call,
                                                        const a8_tensor &T, const a8_scalars &k,
                                                        const a8_rounding<Variant> &,
                                                        unsigned long long blk,
                                                        unsigned long long first, uint32_t lane,
                                                        uint32_t valid) {
    const bool vec = T.flags & A8_VECTOR;
    float g[8], p[8], m[8], v[8];
    uint32_t raw[8], w1[2], w2[2];
    a8_load8<D, Full>(T.g, vec, first, T.n, g, raw);
    a8_unscale(call, g);
    a8_load_codes<Full>(T.s1, first, T.n, w1);
    a8_load_codes<Full>(T.s2, first, T.n, w2);
    const uint32_t finite = a8_lane_moments(s, w1, w2, c.max1, c.max2, g, k, m, v);
    for (int j = 0; j < 8; ++j) {
        if (!Full && !((valid >> j) & 1u)) continue;  // padding: not in the maxima
        acc.mx1 = fmaxf(acc.mx1, fabsf(m[j]));
        acc.mx2 = fmaxf(acc.mx2, fabsf(v[j]));
    }
    if (!c.unorm) return;
    a8_load8<D, Full>(T.p, vec, first, T.n, p, raw);
    double us = 0.0, ps = 0.0;
    for (int j = 0; j < 8; ++j) {
        if (!((valid >> j) & 1u)) continue;
        if ((finite >> j) & 1u) us += a8_unorm_term(m[j], v[j], k);
        ps += (double)p[j] * (double)p[j];
    }
    us = a8_warp_sum(us);
    ps = a8_warp_sum(ps);
    if (lane == 0) { T.partial[2 * blk] = us; T.partial[2 * blk + 1] = ps; }
}

// What the non-blockwise update takes from a tensor's scalars, once per tensor: the decoding and
// the new maxima's reciprocals (rule 10), the step size times max_unorm's scale, and whether
// the quotients meet the Bounded codes' needs. They do as a8_bounds_codes argues for a block,
// with the tensor's maxima max1, max2 (of the same moments of its valid elements, by the
// reduction sweep) as the block maxima: finite maxima from 2^-126 on have finite reciprocals,
// and |m| <= max1 keeps |m RN(1 / max1)| below 2.
struct a8_dynamic_scales {
    float dec1, dec2, recip1, recip2, step_size;
    bool bounded;
};

__device__ __forceinline__ a8_dynamic_scales a8_dynamic_scales_of(const a8_tensor &T,
                                                                  const a8_scalars &k) {
    const a8_aux &a = *T.aux;
    return {a.dec1,
            a.dec2,
            a8_div(1.0f, a.max1),
            a8_div(1.0f, a.max2),
            a.update_scale * k.step_size,
            a.max1 >= 0x1p-126f && a8_isfinite(a.max1) && a.max2 >= 0x1p-126f && a8_isfinite(a.max2)};
}

// One block of the update sweep; Full as for a8_blockwise_block.
template <uint32_t D, bool Full, bool Variant>
__device__ __forceinline__ uint32_t a8_dynamic_update_block(const a8_dynamic_scales &c,
                                                            const a8_maps &s, const a8_call &call,
                                                            const a8_tensor &T, const a8_scalars &k,
                                                            const a8_rounding<Variant> &r,
                                                            unsigned long long /* blk */,
                                                            unsigned long long first,
                                                            uint32_t /* lane */, uint32_t valid) {
    const bool vec = T.flags & A8_VECTOR;
    float g[8], p[8];
    uint32_t graw[8], praw[8];
    uint32_t w1[2], w2[2];
    uint8_t c1[8], c2[8];
    a8_load8<D, Full>(T.g, vec, first, T.n, g, graw);
    a8_unscale(call, g);
    a8_load8<D, Full>(T.p, vec, first, T.n, p, praw);
    a8_load_codes<Full>(T.s1, first, T.n, w1);
    a8_load_codes<Full>(T.s2, first, T.n, w2);
    float m[8], v[8], q1[8], q2[8];
    uint32_t finite = a8_lane_moments(s, w1, w2, c.dec1, c.dec2, g, k, m, v);
    for (int j = 0; j < 8; ++j) {
        p[j] = a8_updated_param(p[j], m[j], v[j], c.step_size, k);
        // Codes of padding are not stored; its moments, which the maxima do not bound, become 0.
        if (!Full && !((valid >> j) & 1u)) m[j] = v[j] = 0.0f;
        q1[j] = m[j] * c.recip1;
        q2[j] = v[j] * c.recip2;
    }
    if (c.bounded)
        a8_codes<true>(s, q1, q2, m, c1, c2);
    else
        a8_codes<false>(s, q1, q2, m, c1, c2);  // cold path: a tensor maximum that is 0, subnormal or not finite
    finite &= valid;
    a8_store8<D, Full>(T.p, vec, first, T.n, p, praw, finite, r);
    a8_store_codes<Full>(T.s1, first, T.n, c1);
    a8_store_codes<Full>(T.s2, first, T.n, c2);
    return __popc(valid & ~finite);
}

// ---- the 8-bit sweeps (the updates and the non-blockwise reduction): their blocks in two passes ----

// What a pass does with a tensor's blocks: what it computes once per tensor (`of`), the block
// (a8_blockwise_block, a8_dynamic_update_block, a8_dynamic_reduce_block), what a lane gathers
// over the warp's blocks of the tensor (`acc`), and what the warp does with that after its last
// one (`finish`; first_block: the warp did the tensor's block 0).
struct a8_update_route {
    using acc = unsigned long long;  // the lane's non-finite gradients
    static __device__ __forceinline__ void finish(const a8_tensor &T, acc bad, uint32_t lane,
                                                  bool first_block) {
        bad = a8_warp_sum(bad);
        if (lane != 0) return;
        a8_add_nonfinite(T.aux, a8_slot(T), bad);
        if (first_block) a8_record_step(T.aux, a8_slot(T));
    }
};
struct a8_blockwise_route : a8_update_route {
    struct per_tensor {};
    static __device__ __forceinline__ per_tensor of(const a8_tensor &, const a8_scalars &) {
        return {};
    }
    template <uint32_t D, bool Full, class... Args>
    static __device__ __forceinline__ void block(const per_tensor &, acc &bad, const Args &...args) {
        bad += a8_blockwise_block<D, Full>(args...);
    }
};
struct a8_dynamic_update_route : a8_update_route {
    using per_tensor = a8_dynamic_scales;
    static __device__ __forceinline__ per_tensor of(const a8_tensor &T, const a8_scalars &k) {
        return a8_dynamic_scales_of(T, k);
    }
    template <uint32_t D, bool Full, class... Args>
    static __device__ __forceinline__ void block(const per_tensor &c, acc &bad, const Args &...args) {
        bad += a8_dynamic_update_block<D, Full>(c, args...);
    }
};
struct a8_dynamic_reduce_route {
    using per_tensor = a8_dynamic_decode;
    using acc = a8_maxima;
    static __device__ __forceinline__ per_tensor of(const a8_tensor &T, const a8_scalars &) {
        return {T.aux->max1, T.aux->max2, (T.flags & A8_UNORM) != 0};
    }
    template <uint32_t D, bool Full, class... Args>
    static __device__ __forceinline__ void block(const per_tensor &c, acc &a, const Args &...args) {
        a8_dynamic_reduce_block<D, Full>(c, a, args...);
    }
    // Non-negative floats order like their bit patterns, so an integer max is exact.
    static __device__ __forceinline__ void finish(const a8_tensor &T, const acc &a, uint32_t lane,
                                                  bool) {
        const float mx1 = a8_warp_max(a.mx1), mx2 = a8_warp_max(a.mx2);
        if (lane != 0) return;
        atomicMax(&T.aux->new_max1[a8_slot(T)], __float_as_uint(mx1));
        atomicMax(&T.aux->new_max2[a8_slot(T)], __float_as_uint(mx2));
    }
};

// The first of a warp's block indices w, w + stride, ... that is at least x. Most steps are of
// one stride (past a partial last block, or a tensor smaller than the grid), without a division.
__device__ __forceinline__ unsigned long long a8_first_from(unsigned long long w, unsigned long long x,
                                                            unsigned long long stride) {
    if (w >= x) return w;
    const unsigned long long d = x - w;
    return w + (d <= stride ? stride : (d + stride - 1) / stride * stride);
}

// One pass of a warp over its blocks, doing those that take the Full route or those that do not.
// Two passes instead of one branch per block keep the compiler from merging the routes' code.
// A tensor's Full blocks are a prefix of its blocks (a8_full_blocks), so a pass goes tensor by
// tensor over its part of each and steps over the rest at once: per block, no search of the work
// list and no route test.
template <class Route, uint32_t D, bool Stochastic, bool Full>
__device__ __forceinline__ void a8_block_pass(const a8_batch &b, const a8_maps &s,
                                               const a8_call &call) {
    const uint32_t lane = threadIdx.x % 32;
    const unsigned long long stride = a8_warp_count();
    a8_walk walk(b, a8_warp_id());
    for (unsigned long long w = a8_warp_id(); w < b.total_blocks;) {
        const a8_tensor &T = b.t[walk.owner(w)];
        const unsigned long long blocks = (T.n + A8_BLOCK - 1) / A8_BLOCK;
        const unsigned long long full = a8_full_blocks(T);
        const unsigned long long end = T.first_block + (Full ? full : blocks);
        const a8_scalars &k = walk.scalars();
        w = a8_first_from(w, T.first_block + (Full ? 0 : full), stride);
        if (w >= end) {
            w = a8_first_from(w, T.first_block + blocks, stride);
            continue;
        }
        if (call.skip) {  // cold path: a skipped call (found_inf) updates nothing
            if (w == T.first_block) a8_skip(T, 0, lane);
            w = a8_first_from(w, T.first_block + blocks, stride);
            continue;
        }
        const bool first_block = w == T.first_block;
        const typename Route::per_tensor c = Route::of(T, k);
        const auto r = a8_rounding_of<Stochastic>(T, walk.t);
        typename Route::acc acc = {};
        for (; w < end; w += stride) {
            const unsigned long long blk = w - T.first_block;
            const unsigned long long first = blk * A8_BLOCK + lane * 4;
            Route::template block<D, Full>(c, acc, s, call, T, k, r, blk, first, lane,
                                           Full ? 0xFFu : a8_valid(first, T.n));
        }
        Route::finish(T, acc, lane, first_block);
        w = a8_first_from(w, T.first_block + blocks, stride);
    }
}

template <class Route, uint32_t D, bool Stochastic>
__device__ __forceinline__ void a8_block_sweep(const a8_batch &b) {
    const a8_call call = a8_call_of(b);
    __shared__ a8_maps s;
    a8_stage_maps(s, b.maps);
    a8_block_pass<Route, D, Stochastic, true>(b, s, call);
    a8_block_pass<Route, D, Stochastic, false>(b, s, call);  // cold path: partial last blocks, tensors not aligned for vectors
}

// The non-blockwise reduction sweep: a skipped call has nothing to reduce.
template <uint32_t D>
__device__ __forceinline__ void a8_dynamic_reduce_sweep(const a8_batch &b) {
    if (a8_call_of(b).skip) return;
    a8_block_sweep<a8_dynamic_reduce_route, D, false>(b);
}

// ---- 32-bit (rule 9): optional reduction for max_unorm, then the update ----

template <uint32_t D>
__device__ __forceinline__ void a8_fp32_reduce_sweep(const a8_batch &b) {
    const a8_call call = a8_call_of(b);
    if (call.skip) return;
    const uint32_t lane = threadIdx.x % 32;
    a8_walk walk(b, a8_warp_id());
    for (unsigned long long w = a8_warp_id(); w < b.total_blocks; w += a8_warp_count()) {
        const a8_tensor &T = b.t[walk.owner(w)];
        const a8_scalars &k = walk.scalars();
        unsigned long long blk = w - T.first_block;
        unsigned long long first = blk * A8_BLOCK + lane * 4;
        const uint32_t valid = a8_valid(first, T.n);
        const bool vec = T.flags & A8_VECTOR;
        float g[8], p[8], m[8], v[8];
        uint32_t graw[8], praw[8], mraw[8], vraw[8];
        a8_load8<D>(T.g, vec, first, T.n, g, graw);
        a8_unscale(call, g);
        a8_load8<D>(T.p, vec, first, T.n, p, praw);
        a8_load8<A8_F32>(T.s1, true, first, T.n, m, mraw);
        a8_load8<A8_F32>(T.s2, true, first, T.n, v, vraw);
        double us = 0.0, ps = 0.0;
        for (int j = 0; j < 8; ++j) {
            if (!((valid >> j) & 1u)) continue;
            if (a8_moments32(m[j], v[j], g[j], T.flags & A8_SKIP_ZEROS, k)) us += a8_unorm_term(m[j], v[j], k);
            ps += (double)p[j] * (double)p[j];
        }
        us = a8_warp_sum(us);
        ps = a8_warp_sum(ps);
        if (lane == 0) { T.partial[2 * blk] = us; T.partial[2 * blk + 1] = ps; }
    }
}

template <uint32_t D, bool Stochastic>
__device__ __forceinline__ void a8_fp32_update_sweep(const a8_batch &b) {
    const a8_call call = a8_call_of(b);
    const uint32_t lane = threadIdx.x % 32;
    a8_walk walk(b, a8_warp_id());
    for (unsigned long long w = a8_warp_id(); w < b.total_blocks; w += a8_warp_count()) {
        const a8_tensor &T = b.t[walk.owner(w)];
        const a8_scalars &k = walk.scalars();
        const float step_size = T.aux->update_scale * k.step_size;
        unsigned long long blk = w - T.first_block;
        unsigned long long first = blk * A8_BLOCK + lane * 4;
        const uint32_t valid = a8_valid(first, T.n);
        if (call.skip) {  // cold path: a skipped call (found_inf) updates nothing
            a8_skip(T, blk, lane);
            continue;
        }
        const bool vec = T.flags & A8_VECTOR;
        float g[8], p[8], m[8], v[8];
        uint32_t graw[8], praw[8], mraw[8], vraw[8];
        a8_load8<D>(T.g, vec, first, T.n, g, graw);
        a8_unscale(call, g);
        a8_load8<D>(T.p, vec, first, T.n, p, praw);
        a8_load8<A8_F32>(T.s1, true, first, T.n, m, mraw);
        a8_load8<A8_F32>(T.s2, true, first, T.n, v, vraw);
        uint32_t active = 0, bad = 0;
        for (int j = 0; j < 8; ++j) {
            if (!((valid >> j) & 1u)) continue;
            bad += !a8_isfinite(g[j]);
            if (a8_moments32(m[j], v[j], g[j], T.flags & A8_SKIP_ZEROS, k)) {
                active |= 1u << j;
                p[j] = a8_updated_param(p[j], m[j], v[j], step_size, k);
            }
        }
        a8_store8<D>(T.p, vec, first, T.n, p, praw, active, a8_rounding_of<Stochastic>(T, walk.t));
        a8_store8<A8_F32>(T.s1, true, first, T.n, m, mraw, 0xFFu, a8_nearest());
        a8_store8<A8_F32>(T.s2, true, first, T.n, v, vraw, 0xFFu, a8_nearest());
        a8_count(T, blk, lane, bad);
    }
}

// ---- the sweeps, one kernel per dtype (the host launches each tensor's): no dtype branch in
// their loops; the 16-bit updates also as _sr, with rule 19's stochastic rounding, which the
// host launches when a tensor of the launch asks for it ----

extern "C" __global__ void __launch_bounds__(256) a8_grad_norm_f32(const __grid_constant__ a8_batch b) { a8_grad_norm_sweep<A8_F32>(b); }
extern "C" __global__ void __launch_bounds__(256) a8_grad_norm_f16(const __grid_constant__ a8_batch b) { a8_grad_norm_sweep<A8_F16>(b); }
extern "C" __global__ void __launch_bounds__(256) a8_grad_norm_bf16(const __grid_constant__ a8_batch b) { a8_grad_norm_sweep<A8_BF16>(b); }
extern "C" __global__ void __launch_bounds__(256) a8_blockwise_f32(const __grid_constant__ a8_batch b) { a8_block_sweep<a8_blockwise_route, A8_F32, false>(b); }
extern "C" __global__ void __launch_bounds__(256) a8_blockwise_f16(const __grid_constant__ a8_batch b) { a8_block_sweep<a8_blockwise_route, A8_F16, false>(b); }
extern "C" __global__ void __launch_bounds__(256) a8_blockwise_f16_sr(const __grid_constant__ a8_batch b) { a8_block_sweep<a8_blockwise_route, A8_F16, true>(b); }
// Without a minimum of 2 CTAs, ptxas gives this one 80 registers and an 8-byte spill (nvcc 13.0).
extern "C" __global__ void __launch_bounds__(256, 2) a8_blockwise_bf16(const __grid_constant__ a8_batch b) { a8_block_sweep<a8_blockwise_route, A8_BF16, false>(b); }
extern "C" __global__ void __launch_bounds__(256) a8_blockwise_bf16_sr(const __grid_constant__ a8_batch b) { a8_block_sweep<a8_blockwise_route, A8_BF16, true>(b); }
extern "C" __global__ void __launch_bounds__(256) a8_dynamic_reduce_f32(const __grid_constant__ a8_batch b) { a8_dynamic_reduce_sweep<A8_F32>(b); }
extern "C" __global__ void __launch_bounds__(256) a8_dynamic_reduce_f16(const __grid_constant__ a8_batch b) { a8_dynamic_reduce_sweep<A8_F16>(b); }
extern "C" __global__ void __launch_bounds__(256) a8_dynamic_reduce_bf16(const __grid_constant__ a8_batch b) { a8_dynamic_reduce_sweep<A8_BF16>(b); }
extern "C" __global__ void __launch_bounds__(256) a8_dynamic_update_f32(const __grid_constant__ a8_batch b) { a8_block_sweep<a8_dynamic_update_route, A8_F32, false>(b); }
extern "C" __global__ void __launch_bounds__(256) a8_dynamic_update_f16(const __grid_constant__ a8_batch b) { a8_block_sweep<a8_dynamic_update_route, A8_F16, false>(b); }
extern "C" __global__ void __launch_bounds__(256) a8_dynamic_update_f16_sr(const __grid_constant__ a8_batch b) { a8_block_sweep<a8_dynamic_update_route, A8_F16, true>(b); }
extern "C" __global__ void __launch_bounds__(256) a8_dynamic_update_bf16(const __grid_constant__ a8_batch b) { a8_block_sweep<a8_dynamic_update_route, A8_BF16, false>(b); }
extern "C" __global__ void __launch_bounds__(256) a8_dynamic_update_bf16_sr(const __grid_constant__ a8_batch b) { a8_block_sweep<a8_dynamic_update_route, A8_BF16, true>(b); }
extern "C" __global__ void __launch_bounds__(256) a8_fp32_reduce_f32(const __grid_constant__ a8_batch b) { a8_fp32_reduce_sweep<A8_F32>(b); }
extern "C" __global__ void __launch_bounds__(256) a8_fp32_reduce_f16(const __grid_constant__ a8_batch b) { a8_fp32_reduce_sweep<A8_F16>(b); }
// Without a minimum of 3 CTAs, ptxas gives this one 64 registers and a 4-byte spill (nvcc 13.0).
extern "C" __global__ void __launch_bounds__(256, 3) a8_fp32_reduce_bf16(const __grid_constant__ a8_batch b) { a8_fp32_reduce_sweep<A8_BF16>(b); }
extern "C" __global__ void __launch_bounds__(256) a8_fp32_update_f32(const __grid_constant__ a8_batch b) { a8_fp32_update_sweep<A8_F32, false>(b); }
extern "C" __global__ void __launch_bounds__(256) a8_fp32_update_f16(const __grid_constant__ a8_batch b) { a8_fp32_update_sweep<A8_F16, false>(b); }
extern "C" __global__ void __launch_bounds__(256) a8_fp32_update_f16_sr(const __grid_constant__ a8_batch b) { a8_fp32_update_sweep<A8_F16, true>(b); }
extern "C" __global__ void __launch_bounds__(256) a8_fp32_update_bf16(const __grid_constant__ a8_batch b) { a8_fp32_update_sweep<A8_BF16, false>(b); }
extern "C" __global__ void __launch_bounds__(256) a8_fp32_update_bf16_sr(const __grid_constant__ a8_batch b) { a8_fp32_update_sweep<A8_BF16, true>(b); }
