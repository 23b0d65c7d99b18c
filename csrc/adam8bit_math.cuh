// adam8bit_math.cuh: the per-element arithmetic of every path, for the CUDA kernels and, compiled
// by a host C++ compiler, for the test that holds it to bit equality with src/cpu/math.rs.
//
// DECISIONS rule 3: each line is one IEEE fp32 operation in the order of src/cpu/math.rs, no FMA
// (nvcc -fmad=false; g++ -ffp-contract=off), correctly rounded '/' and sqrt (nvcc -prec-div=true
// -prec-sqrt=true), no flush-to-zero. Change this file and src/cpu/math.rs together: the host
// test tests/cuda_math.rs fails as soon as the two disagree on any input it tries.
#ifndef ADAM8BIT_MATH_CUH
#define ADAM8BIT_MATH_CUH

#include <stdint.h>

#ifdef __CUDACC__
#define A8_HD __host__ __device__ __forceinline__
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#else
#include <math.h>
#include <string.h>
#define A8_HD inline
#endif

// The layout of src/scalars.rs `StepScalars` (#[repr(C)]); the Rust side asserts the size.
struct a8_scalars {
    float beta1, beta2, one_minus_beta1, one_minus_beta2;
    float step_size, eps_c2, decay;
    float eps, unorm_c1, unorm_c2;
    float gnorm_scale;
    float grad_scale;
    uint32_t apply_decay;
};

// ---- bit casts and the fp16/bf16 conversions (round to nearest even, as the `half` crate) ----

A8_HD uint32_t a8_bits(float x) {
#ifdef __CUDA_ARCH__
    return __float_as_uint(x);
#else
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
#endif
}

A8_HD float a8_float(uint32_t u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float x;
    memcpy(&x, &u, 4);
    return x;
#endif
}

A8_HD bool a8_isfinite(float x) { return (a8_bits(x) & 0x7F800000u) != 0x7F800000u; }
A8_HD bool a8_isnan(float x) { return (a8_bits(x) & 0x7FFFFFFFu) > 0x7F800000u; }

// Integer arithmetic only, so host and device agree on every pattern, NaN payloads included.
// Widening to f32 is exact; a NaN keeps its bits, signalling ones too (`half` would quiet it,
// which no stored bit can tell: a kernel's arithmetic returns a NaN operand quiet, IEEE 754
// 6.2, and a8_f32_to_bf16 and a8_f32_to_f16 quiet every NaN they narrow).
A8_HD float a8_bf16_to_f32(uint16_t h) { return a8_float((uint32_t)h << 16); }

// On the device the narrowing is the hardware's (cvt.rn.bf16.f32, sm_80 and later: one instruction
// for the integer form's five); a NaN, whose payload the hardware does not keep, is narrowed by
// the integer form there too.
A8_HD uint16_t a8_f32_to_bf16(float x) {
    uint32_t u = a8_bits(x);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)((u >> 16) | 0x0040u);
#ifdef __CUDA_ARCH__
    return __bfloat16_as_ushort(__float2bfloat16_rn(x));
#else
    // Round half to even on the 16 dropped bits; a carry into the exponent gives infinity.
    uint32_t lsb = (u >> 16) & 1u;
    return (uint16_t)((u + 0x7FFFu + lsb) >> 16);
#endif
}

// On the device the fp16 conversions are the hardware's (cvt.f32.f16, exact; cvt.rn.f16.f32,
// correctly rounded to nearest even, subnormal halves included: one instruction each where the
// integer form takes about 20); NaN, whose payload the hardware does not keep, is narrowed by
// the integer form there too. The host (and tests/cuda_math.rs) runs the integer form.
A8_HD float a8_f16_to_f32(uint16_t h) {
#ifdef __CUDA_ARCH__
    return __half2float(__ushort_as_half(h));
#else
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t man = h & 0x3FFu;
    if (exp == 0x1Fu) return a8_float(sign | 0x7F800000u | (man ? 0x00400000u | (man << 13) : 0u));
    if (exp != 0) return a8_float(sign | ((exp + 112u) << 23) | (man << 13));
    if (man == 0) return a8_float(sign);
    // Subnormal: shift the leading one into the hidden-bit position.
    uint32_t e = 113u;
    while ((man & 0x400u) == 0) {  // cold path: a subnormal half
        man <<= 1;
        e -= 1;
    }
    return a8_float(sign | (e << 23) | ((man & 0x3FFu) << 13));
#endif
}

A8_HD uint16_t a8_f32_to_f16(float x) {
    uint32_t u = a8_bits(x);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t exp = (u >> 23) & 0xFFu;
    uint32_t man = u & 0x7FFFFFu;
    if (exp == 0xFFu) return (uint16_t)(sign | 0x7C00u | (man ? 0x0200u | (man >> 13) : 0u));
#ifdef __CUDA_ARCH__
    return __half_as_ushort(__float2half_rn(x));
#else
    int e = (int)exp - 127 + 15;
    if (e >= 0x1F) return (uint16_t)(sign | 0x7C00u);
    uint32_t shift;  // dropped mantissa bits of the 24-bit significand
    uint32_t base;   // the half's exponent field before rounding
    if (e <= 0) {
        if (e < -10) return sign;  // below half the smallest subnormal: rounds to zero
        man |= 0x800000u;
        shift = (uint32_t)(14 - e);
        base = 0;
    } else {
        shift = 13;
        base = (uint32_t)e << 10;
    }
    uint32_t kept = man >> shift;
    uint32_t rest = man & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    // Ties to even; a carry out of the mantissa correctly bumps the exponent (up to infinity).
    uint32_t up = (rest > half || (rest == half && (kept & 1u))) ? 1u : 0u;
    return (uint16_t)(sign | (base + kept + up));
#endif
}

// Two values that are not NaN, rounded to nearest even and packed with `lo` in the low half: a
// quad's store takes them in pairs, on the device one cvt.rn.{bf16x2,f16x2}.f32 per pair.
A8_HD uint32_t a8_pack_halves(uint16_t lo, uint16_t hi) { return (uint32_t)lo | ((uint32_t)hi << 16); }

A8_HD uint32_t a8_f32x2_to_bf16x2(float lo, float hi) {
#ifdef __CUDA_ARCH__
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    return a8_pack_halves(__bfloat16_as_ushort(h.x), __bfloat16_as_ushort(h.y));
#else
    return a8_pack_halves(a8_f32_to_bf16(lo), a8_f32_to_bf16(hi));
#endif
}

A8_HD uint32_t a8_f32x2_to_f16x2(float lo, float hi) {
#ifdef __CUDA_ARCH__
    const __half2 h = __floats2half2_rn(lo, hi);
    return a8_pack_halves(__half_as_ushort(h.x), __half_as_ushort(h.y));
#else
    return a8_pack_halves(a8_f32_to_f16(lo), a8_f32_to_f16(hi));
#endif
}

// ---- stochastic rounding (DECISIONS rule 19; src/rounding.rs holds the same definition) ----

A8_HD uint32_t a8_mulhi(uint32_t a, uint32_t b) {
#ifdef __CUDA_ARCH__
    return __umulhi(a, b);
#else
    return (uint32_t)(((uint64_t)a * b) >> 32);
#endif
}

// Philox4x32-10: ten rounds of the Philox bijection on the counter c, the key bumped by the
// Weyl constants between rounds; c becomes the four output words.
A8_HD void a8_philox(uint32_t k0, uint32_t k1, uint32_t c[4]) {
    for (int round = 0; round < 10; ++round) {
        if (round > 0) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        const uint32_t lo0 = 0xD2511F53u * c[0], hi0 = a8_mulhi(0xD2511F53u, c[0]);
        const uint32_t lo1 = 0xCD9E8D57u * c[2], hi1 = a8_mulhi(0xCD9E8D57u, c[2]);
        const uint32_t n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0; c[1] = lo1; c[2] = n2; c[3] = lo0;
    }
}

// The truncated magnitude `kept` plus one (away from zero) when draw < rest / 2^shift * 2^32
// (floored; rest < 2^shift); an overflow to infinity takes the round-to-nearest bits instead.
A8_HD uint16_t a8_away_if(uint16_t sign, uint32_t kept, uint32_t rest, uint32_t shift,
                          uint32_t draw, uint32_t inf, uint16_t nearest) {
    uint32_t threshold;
    if (shift <= 32) threshold = (uint32_t)((uint64_t)rest << (32 - shift));
    else threshold = shift - 32 < 64 ? (uint32_t)((uint64_t)rest >> (shift - 32)) : 0u;
    const uint32_t bits = kept + (draw < threshold ? 1u : 0u);
    return bits >= inf ? nearest : (uint16_t)(sign | bits);
}

A8_HD uint16_t a8_f32_to_bf16_stochastic(float x, uint32_t draw) {
    const uint16_t nearest = a8_f32_to_bf16(x);
    if (!a8_isfinite(x)) return nearest;
    const uint32_t u = a8_bits(x), mag = u & 0x7FFFFFFFu;
    return a8_away_if((uint16_t)((u >> 16) & 0x8000u), mag >> 16, mag & 0xFFFFu, 16, draw,
                      0x7F80u, nearest);
}

A8_HD uint16_t a8_f32_to_f16_stochastic(float x, uint32_t draw) {
    const uint16_t nearest = a8_f32_to_f16(x);
    if (!a8_isfinite(x)) return nearest;
    const uint32_t u = a8_bits(x);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const uint32_t exp = (u >> 23) & 0xFFu, man = u & 0x7FFFFFu;
    if (exp >= 113) {  // |x| >= 2^-14: 13 dropped bits; from 2^16 on, nearest overflows too
        if (exp >= 143) return nearest;
        return a8_away_if(sign, ((exp - 112) << 10) | (man >> 13), man & 0x1FFFu, 13, draw,
                          0x7C00u, nearest);
    }
    // Below the normal halves the grid is 2^-24: the significand shifted right by 126 - e.
    const uint32_t sig = exp == 0 ? man : (man | 0x800000u), e = exp == 0 ? 1u : exp;
    const uint32_t shift = 126 - e;
    const uint32_t kept = shift >= 32 ? 0u : sig >> shift;
    const uint32_t rest = shift >= 32 ? sig : sig & ((1u << shift) - 1u);
    return a8_away_if(sign, kept, rest, shift, draw, 0x7C00u, nearest);
}

// ---- quantization (DECISIONS rule 1) ----

// The exact nearest code by bucket, as src/qmap does it: a bucket is keyed by the top 16 bits
// of |x| (8 exponent and 7 mantissa bits), magnitudes below 2^-25 share the first and those of
// 2.0 and more the last, and no bucket holds more than one midpoint. A bucket's packed entry
// (src/qmap's packed_buckets) holds a code (bits 0-7), a "never" bit (bit 8) and a threshold
// (bits 16-31): a magnitude with low 16 bits lo has the code plus one where lo >= threshold
// and the bit is clear, which one unsigned compare of (lo << 16) | 0xFF against the entry
// decides (ties to even included). One table lookup and one compare per quantization; the
// first and last buckets hold no midpoint, so clamping never meets a compare.
#define A8_KEY_LO 0x3300u
#define A8_KEY_HI 0x3FFFu
#define A8_BUCKETS (A8_KEY_HI - A8_KEY_LO + 1)

// The code of the magnitude whose bits are u and whose bucket key is key (u >> 16, without the
// sign bit where u may be negative; the key of a negative u, NaN and infinity land in the last
// bucket). Bounded: the caller guarantees a key below that of 2.0 (|q| < 2, not NaN), which
// leaves the clamp from above out.
template <bool Bounded>
A8_HD uint32_t a8_code_of_magnitude(const uint32_t *buckets, uint32_t key, uint32_t u) {
    int b = (int)key - (int)A8_KEY_LO;
    b = b < 0 ? 0 : (!Bounded && b > (int)(A8_BUCKETS - 1)) ? (int)(A8_BUCKETS - 1) : b;
    const uint32_t e = buckets[b];
    return (e & 0xFFu) + (((u << 16) | 0xFFu) >= e ? 1u : 0u);
}

// State1's code of q = m / d or m * r with d, r >= +0 (so q has m's sign bit, or is NaN): the
// nearest code of the signed map, then the sign rule, in one. The signed map is symmetric about
// code 127 (0.0): code 254 - k mirrors k, and a magnitude above every negative midpoint is code
// 0; NaN is code 0. The sign rule moves a code whose value has another sign bit than m one step
// toward m's side (uint8 wrap), so negative or -0.0 momentum never becomes code 127 (+0.0).
// With q's sign that of m, the rule only turns a mirrored 127 into 126; the magnitude's code c
// is at least 127 (127 midpoints lie below +0.0), so a negative q's code is 254 - c clamped to
// [0, 126], and a NaN q (c = 255) gives 0 for a negative m and 255 otherwise, except 1 for a
// positive m (+inf / inf), where the rule steps up from code 0. Bounded (|q| < 2 and q not NaN,
// as in a block whose maximum bounds every m): no NaN to meet, so the last step is left out.
template <bool Bounded = false>
A8_HD uint8_t a8_momentum_code(const uint32_t *buckets, float q, float m) {
    const uint32_t u = a8_bits(q);
    const uint32_t c = a8_code_of_magnitude<Bounded>(buckets, (u >> 16) & 0x7FFFu, u);
    const int mirrored = 254 - (int)c;
    const int negative = mirrored < 0 ? 0 : mirrored > 126 ? 126 : mirrored;
    const uint32_t code = (a8_bits(m) >> 31) ? (uint32_t)negative : c;
    if (Bounded) return (uint8_t)code;
    // A positive m has a q >= +0.0 unless q is NaN.
    return (uint8_t)(m > 0.0f && !(q >= 0.0f) ? 1u : code);
}

// State2's code: the nearest code of the unsigned map, in which no midpoint lies below +0.0, so a
// negative x (or -0.0) is code 0, as NaN is. Bounded: the caller guarantees +0.0 <= x < 2.
template <bool Bounded = false>
A8_HD uint8_t a8_variance_code(const uint32_t *buckets, float x) {
    const uint32_t u = a8_bits(x);
    const uint32_t c = a8_code_of_magnitude<Bounded>(buckets, u >> 16, u);
    if (Bounded) return (uint8_t)c;
    return (uint8_t)(u <= 0x7F800000u ? c : 0u);  // +0.0 to +inf
}

// ---- the per-element math of src/cpu/math.rs ----

// New (m, v) of an 8-bit element from its decoded codes; non-finite g gives (+0, +0). Finite:
// the caller knows g is finite, so the test and the selects are left out.
template <bool Finite = false>
A8_HD bool a8_moments8(float q1, float q2, float scale1, float scale2, float g,
                       const a8_scalars &k, float &m_out, float &v_out) {
    bool finite = Finite || a8_isfinite(g);
    float gam = g * k.gnorm_scale;
    float v = ((q2 * scale2) * k.beta2) + ((k.one_minus_beta2 * gam) * gam);
    float m = ((q1 * scale1) * k.beta1) + (k.one_minus_beta1 * gam);
    m_out = finite ? m : 0.0f;
    v_out = finite ? v : 0.0f;
    return finite;
}

// New (m, v) of an fp32-state element; returns whether the element is updated.
A8_HD bool a8_moments32(float &m, float &v, float g, bool skip_zeros, const a8_scalars &k) {
    float gam = g * k.gnorm_scale;
    if (!a8_isfinite(g)) {
        m = 0.0f;
        v = 0.0f;
        return false;
    }
    if (skip_zeros && gam == 0.0f) return false;
    m = (m * k.beta1) + (k.one_minus_beta1 * gam);
    v = (v * k.beta2) + (k.one_minus_beta2 * (gam * gam));
    return true;
}

A8_HD float a8_sqrt(float x) {
#ifdef __CUDA_ARCH__
    return __fsqrt_rn(x);
#else
    return sqrtf(x);
#endif
}

A8_HD float a8_div(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}

A8_HD float a8_fma(float a, float b, float c) {
#ifdef __CUDA_ARCH__
    return __fmaf_rn(a, b, c);
#else
    return fmaf(a, b, c);
#endif
}

// The quantizers divide a block's values by its absmax b. With y = RN(1/b), once per block,
// RN(a / b) takes three operations (Markstein: q = RN(a y) is within an ulp of a / b, the
// residual a - b q is exact by FMA, and RN(q + r y) is the correctly rounded quotient) when
// b, 1/b and the residual are normal: 2^-75 <= b <= 2^126 and |a| >= 2^-100. A smaller |a|
// has a quotient below 2^-25 of the same sign, which the bucket quantizers map to the code
// they map the exact quotient to. Checked against the division on 4e8 pairs (all-ones
// significands and powers of two among the divisors) and in tests/cuda_math.rs.
A8_HD bool a8_divides_by_reciprocal(float b) { return b >= 0x1p-75f && b <= 0x1p126f; }

// RN(a / b) from y = RN(1/b), for b with a8_divides_by_reciprocal(b).
A8_HD float a8_quotient(float a, float b, float y) {
    float q = a * y;
    float r = a8_fma(-q, b, a);
    return a8_fma(r, y, q);
}

// A loss scale 2^k whose reciprocal 2^-k is a float too (normal scales: GradScaler's, which only
// halves and doubles): RN(a / 2^k) = RN(a * 2^-k), one multiplication.
A8_HD bool a8_is_power_of_two(float b) {
    const uint32_t u = a8_bits(b);
    return (u & 0x007FFFFFu) == 0 && u >= 0x00800000u && u < 0x7F800000u;
}

// RN(a / b) for a divisor used many times (a loss scale), from y = RN(1/b): Markstein's
// correction wherever it is exact (2^-75 <= b <= 2^126, |a| and |a y| in the normal range with
// room for the residual), the division elsewhere. Checked against the division on 4e8 pairs.
A8_HD float a8_div_by(float a, float b, float y) {
    float q = a * y;
    float qa = q < 0.0f ? -q : q, aa = a < 0.0f ? -a : a;
    if (!(qa >= 0x1p-100f && qa <= 0x1p126f && aa >= 0x1p-100f)) return a8_div(a, b);  // cold path: out of range
    return a8_quotient(a, b, y);
}

// Percentile clipping keeps the squared gradient norms of the last 100 steps (rule 11).
#define A8_HISTORY 100

// A key whose unsigned order is IEEE 754 total order (Rust's f32::total_cmp): -NaN < -Inf <
// ... < -0 < +0 < ... < +Inf < +NaN.
A8_HD uint32_t a8_total_order_key(float x) {
    uint32_t u = a8_bits(x);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

// src/clipping.rs `percentile_scale`, in three steps a CTA can share: record this step's squared
// gradient norm (every slot at t = 1, slot t % 100 later; returns the slot), the rank of entry
// i in IEEE total order (ties by index, so exactly one entry has each rank), and the scale from
// the current and the percentile-th smallest squared norm, clip / current when the current
// norm exceeds the clip, else 1. Total order, as on the CPU, so that a history written through
// write_state or a checkpoint that holds NaN or -0.0 gives the same scale on both backends.
A8_HD uint32_t a8_history_record(float *history, float norm_sq, uint64_t t) {
    uint32_t slot = (uint32_t)(t % A8_HISTORY);
    if (t == 1) {
        for (int i = 0; i < A8_HISTORY; ++i) history[i] = norm_sq;
    } else {
        history[slot] = norm_sq;
    }
    return slot;
}

A8_HD uint32_t a8_history_rank(const float *history, uint32_t i) {
    uint32_t key = a8_total_order_key(history[i]), rank = 0;
    for (uint32_t j = 0; j < A8_HISTORY; ++j) {
        uint32_t kj = a8_total_order_key(history[j]);
        rank += (kj < key) | ((kj == key) & (j < i));
    }
    return rank;
}

A8_HD float a8_clip_scale(float current_sq, float clip_sq) {
    float current = a8_sqrt(current_sq);
    float clip = a8_sqrt(clip_sq);
    return current > clip ? a8_div(clip, current) : 1.0f;
}

// p + step_size * (m / (sqrt(v) + eps*C2)), then times the decay when weight decay is on.
A8_HD float a8_updated_param(float p, float m, float v, float step_size, const a8_scalars &k) {
    float q = a8_div(m, a8_sqrt(v) + k.eps_c2);
    p = p + (step_size * q);
    return k.apply_decay ? p * k.decay : p;
}

// One element's term of the max_unorm norm: the squared bias-corrected update, in f64.
A8_HD double a8_unorm_term(float m, float v, const a8_scalars &k) {
    float u = a8_div(m * k.unorm_c1, a8_sqrt(v * k.unorm_c2) + k.eps);
    double d = (double)u;
    return d * d;
}

#endif
