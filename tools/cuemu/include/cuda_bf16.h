// cuda_bf16.h for the emulated device: the bf16 conversions csrc/ uses, by the host FPU
// (scale to an 8-bit significand, rintf's round half to even, scale back; every step but the
// rounding exact), an implementation independent of csrc/adam8bit_math.cuh's integer form. On a
// GPU it is one cvt instruction; the emulator shows the code around it, not the hardware's rounding.
#ifndef CUEMU_CUDA_BF16_H
#define CUEMU_CUDA_BF16_H

#include <math.h>
#include <string.h>

struct __nv_bfloat16 {
    unsigned short x;
};

inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.x; }

// Finite or infinite x only (the caller narrows NaN itself).
inline __nv_bfloat16 __float2bfloat16_rn(float x) {
    float r = x;
    if (isfinite(x) && x != 0.0f) {
        int e;
        frexpf(x, &e);  // |x| in [2^(e-1), 2^e)
        const int q = e < -125 ? -125 : e;  // the quantum is 2^(q-8), subnormals included
        r = ldexpf(rintf(ldexpf(x, 8 - q)), q - 8);
    }
    unsigned int u;
    memcpy(&u, &r, 4);
    return __nv_bfloat16{(unsigned short)(u >> 16)};
}

struct __nv_bfloat162 {
    __nv_bfloat16 x, y;
};

inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
    return __nv_bfloat162{__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)};
}

#endif
