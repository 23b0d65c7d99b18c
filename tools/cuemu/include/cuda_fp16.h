// cuda_fp16.h for the emulated device: the fp16 conversions csrc/ uses, by GCC's _Float16
// (libgcc's soft-float conversions, correctly rounded to nearest even, subnormals included),
// an implementation independent of csrc/adam8bit_math.cuh's integer form. On a GPU they are
// single cvt instructions; the emulator shows the code around them, not the hardware's rounding.
#ifndef CUEMU_CUDA_FP16_H
#define CUEMU_CUDA_FP16_H

#include <string.h>

struct __half {
    unsigned short x;
};

inline __half __ushort_as_half(unsigned short bits) { return __half{bits}; }
inline unsigned short __half_as_ushort(__half h) { return h.x; }

inline float __half2float(__half h) {
    _Float16 f;
    memcpy(&f, &h.x, 2);
    return (float)f;
}

inline __half __float2half_rn(float x) {
    const _Float16 f = (_Float16)x;
    __half h;
    memcpy(&h.x, &f, 2);
    return h;
}

struct __half2 {
    __half x, y;
};

inline __half2 __floats2half2_rn(float lo, float hi) {
    return __half2{__float2half_rn(lo), __float2half_rn(hi)};
}

#endif
