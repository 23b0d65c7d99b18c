// device.h: what CUDA kernel source needs to compile as host C++ for the emulated device.
//
// Force-included (g++ -include cuemu/device.h) before a .cu file that is compiled unchanged.
// It defines __CUDACC__ and __CUDA_ARCH__ so that headers take their device branches, the
// execution-space qualifiers, the built-in indices, vector types, barriers, warp shuffles and
// votes, atomics and the intrinsics with a host meaning. Barriers and warp operations are calls
// into the runtime (runtime_abi.h), which switches fibers there.
//
// Shared memory: `__shared__` is `thread_local`, the one storage class that means "static
// storage" at block scope and also composes with `extern`. All CUDA threads of a CTA are fibers
// of the one OS thread that runs the launch, so they share these variables, and the runtime
// poisons the library's whole TLS block before every CTA (nothing else of the emulator lives
// there). The build renames every undefined TLS symbol of a kernel object (an `extern __shared__`
// array) to the runtime's dynamic shared buffer, so all of them alias its start, as on a GPU.
#ifndef CUEMU_DEVICE_H
#define CUEMU_DEVICE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <atomic>
#include <type_traits>

#include "cuemu/runtime_abi.h"

#define __CUDACC__ 1
#ifndef __CUDA_ARCH__
#define __CUDA_ARCH__ 900
#endif

#define __host__
#define __device__
#define __global__
#define __forceinline__ inline __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __grid_constant__
#define __restrict__ __restrict
#define __shared__ thread_local
#define __constant__

// ---- vector types (CUDA's alignments) ----

#define CUEMU_VEC2(name, T, align) \
    struct alignas(align) name { T x, y; }; \
    __forceinline__ name make_##name(T x, T y) { return name{x, y}; }
#define CUEMU_VEC3(name, T) \
    struct name { T x, y, z; }; \
    __forceinline__ name make_##name(T x, T y, T z) { return name{x, y, z}; }
#define CUEMU_VEC4(name, T, align) \
    struct alignas(align) name { T x, y, z, w; }; \
    __forceinline__ name make_##name(T x, T y, T z, T w) { return name{x, y, z, w}; }

CUEMU_VEC2(char2, signed char, 2)
CUEMU_VEC4(char4, signed char, 4)
CUEMU_VEC2(uchar2, unsigned char, 2)
CUEMU_VEC4(uchar4, unsigned char, 4)
CUEMU_VEC2(short2, short, 4)
CUEMU_VEC4(short4, short, 8)
CUEMU_VEC2(ushort2, unsigned short, 4)
CUEMU_VEC4(ushort4, unsigned short, 8)
CUEMU_VEC2(int2, int, 8)
CUEMU_VEC3(int3, int)
CUEMU_VEC4(int4, int, 16)
CUEMU_VEC2(uint2, unsigned, 8)
CUEMU_VEC4(uint4, unsigned, 16)
CUEMU_VEC2(longlong2, long long, 16)
CUEMU_VEC2(ulonglong2, unsigned long long, 16)
CUEMU_VEC2(float2, float, 8)
CUEMU_VEC3(float3, float)
CUEMU_VEC4(float4, float, 16)
CUEMU_VEC2(double2, double, 16)

#undef CUEMU_VEC2
#undef CUEMU_VEC3
#undef CUEMU_VEC4

typedef cuemu_dim uint3;
__forceinline__ uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return uint3{x, y, z}; }

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
    constexpr operator uint3() const { return uint3{x, y, z}; }
};

// ---- built-in indices ----

#define threadIdx (static_cast<const uint3 &>(cuemu_cur_lane->thread_idx))
#define blockIdx (static_cast<const uint3 &>(cuemu_block_idx))
#define blockDim (static_cast<const uint3 &>(cuemu_block_dim))
#define gridDim (static_cast<const uint3 &>(cuemu_grid_dim))
#define warpSize 32

// ---- barriers, warp operations ----

#define __syncthreads() ((void)cuemu_block_barrier(0, 1, __FILE__, __LINE__))
#define __syncthreads_count(p) cuemu_block_barrier(1, (p) != 0, __FILE__, __LINE__)
#define __syncthreads_and(p) cuemu_block_barrier(2, (p) != 0, __FILE__, __LINE__)
#define __syncthreads_or(p) cuemu_block_barrier(3, (p) != 0, __FILE__, __LINE__)

namespace cuemu {

template <class T>
__forceinline__ T warp_value(int kind, const char *file, int line, unsigned mask, T var, int arg,
                             int width) {
    static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8,
                  "warp operations move values of at most 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &var, sizeof(T));
    bits = cuemu_warp_op(kind, mask, bits, arg, width, (int)sizeof(T), file, line);
    T out;
    memcpy(&out, &bits, sizeof(T));
    return out;
}

template <int Kind, class T>
__forceinline__ T shfl(const char *file, int line, unsigned mask, T var, int arg, int width = 32) {
    return warp_value(Kind, file, line, mask, var, arg, width);
}

__forceinline__ void syncwarp(const char *file, int line, unsigned mask = 0xFFFFFFFFu) {
    cuemu_warp_op(CUEMU_SYNCWARP, mask, 0, 0, 32, 0, file, line);
}

__forceinline__ unsigned vote(int kind, const char *file, int line, unsigned mask, int pred) {
    return (unsigned)cuemu_warp_op(kind, mask, pred != 0, 0, 32, 4, file, line);
}

template <int Unsigned, int Signed>
struct reduce {
    static __forceinline__ unsigned run(const char *file, int line, unsigned mask, unsigned v) {
        return warp_value(Unsigned, file, line, mask, v, 0, 32);
    }
    static __forceinline__ int run(const char *file, int line, unsigned mask, int v) {
        return warp_value(Signed, file, line, mask, v, 0, 32);
    }
};

}  // namespace cuemu

#define __shfl_sync(...) cuemu::shfl<CUEMU_SHFL_IDX>(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) cuemu::shfl<CUEMU_SHFL_UP>(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) cuemu::shfl<CUEMU_SHFL_DOWN>(__FILE__, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) cuemu::shfl<CUEMU_SHFL_XOR>(__FILE__, __LINE__, __VA_ARGS__)
#define __syncwarp(...) cuemu::syncwarp(__FILE__, __LINE__ __VA_OPT__(, ) __VA_ARGS__)
#define __ballot_sync(mask, p) cuemu::vote(CUEMU_BALLOT, __FILE__, __LINE__, mask, p)
#define __any_sync(mask, p) ((int)cuemu::vote(CUEMU_ANY, __FILE__, __LINE__, mask, p))
#define __all_sync(mask, p) ((int)cuemu::vote(CUEMU_ALL, __FILE__, __LINE__, mask, p))
#define __activemask() cuemu_activemask()
#define __reduce_add_sync(mask, v) \
    cuemu::reduce<CUEMU_REDUCE_ADD, CUEMU_REDUCE_ADD>::run(__FILE__, __LINE__, mask, v)
#define __reduce_min_sync(mask, v) \
    cuemu::reduce<CUEMU_REDUCE_MIN, CUEMU_REDUCE_MIN_SIGNED>::run(__FILE__, __LINE__, mask, v)
#define __reduce_max_sync(mask, v) \
    cuemu::reduce<CUEMU_REDUCE_MAX, CUEMU_REDUCE_MAX_SIGNED>::run(__FILE__, __LINE__, mask, v)
#define __reduce_and_sync(mask, v) \
    cuemu::reduce<CUEMU_REDUCE_AND, CUEMU_REDUCE_AND>::run(__FILE__, __LINE__, mask, (unsigned)(v))
#define __reduce_or_sync(mask, v) \
    cuemu::reduce<CUEMU_REDUCE_OR, CUEMU_REDUCE_OR>::run(__FILE__, __LINE__, mask, (unsigned)(v))
#define __reduce_xor_sync(mask, v) \
    cuemu::reduce<CUEMU_REDUCE_XOR, CUEMU_REDUCE_XOR>::run(__FILE__, __LINE__, mask, (unsigned)(v))

#define __trap() cuemu_trap("__trap()", __FILE__, __LINE__)
#define __threadfence() std::atomic_signal_fence(std::memory_order_seq_cst)
#define __threadfence_block() std::atomic_signal_fence(std::memory_order_seq_cst)
#define __threadfence_system() std::atomic_signal_fence(std::memory_order_seq_cst)
#define __nanosleep(ns) ((void)(ns))

__forceinline__ long long clock64() { return cuemu_clock64(); }

// ---- atomics: fibers switch only at barriers and warp operations, so a read-modify-write is
// never interleaved with another lane's ----

#define CUEMU_ATOMIC(name, expr)                            \
    template <class T, class U>                             \
    __forceinline__ T name(T *address, U value_) {          \
        T val = (T)value_;                                  \
        T old = *address;                                   \
        *address = (expr);                                  \
        return old;                                         \
    }                                                       \
    template <class T, class U>                             \
    __forceinline__ T name##_block(T *address, U value_) {  \
        return name(address, value_);                       \
    }                                                       \
    template <class T, class U>                             \
    __forceinline__ T name##_system(T *address, U value_) { \
        return name(address, value_);                       \
    }
CUEMU_ATOMIC(atomicAdd, old + val)
CUEMU_ATOMIC(atomicSub, old - val)
CUEMU_ATOMIC(atomicExch, val)
CUEMU_ATOMIC(atomicMin, val < old ? val : old)
CUEMU_ATOMIC(atomicMax, val > old ? val : old)
CUEMU_ATOMIC(atomicAnd, old & val)
CUEMU_ATOMIC(atomicOr, old | val)
CUEMU_ATOMIC(atomicXor, old ^ val)
CUEMU_ATOMIC(atomicInc, old >= val ? 0 : old + 1)
CUEMU_ATOMIC(atomicDec, (old == 0 || old > val) ? val : old - 1)
#undef CUEMU_ATOMIC

template <class T>
__forceinline__ T atomicCAS(T *address, T compare, T val) {
    T old = *address;
    if (old == compare) *address = val;
    return old;
}

// ---- intrinsics with a host meaning ----

template <class To, class From>
__forceinline__ To cuemu_bit_cast(From x) {
    static_assert(sizeof(To) == sizeof(From), "bit casts keep the size");
    To out;
    memcpy(&out, &x, sizeof(To));
    return out;
}

__forceinline__ unsigned __float_as_uint(float x) { return cuemu_bit_cast<unsigned>(x); }
__forceinline__ float __uint_as_float(unsigned x) { return cuemu_bit_cast<float>(x); }
__forceinline__ int __float_as_int(float x) { return cuemu_bit_cast<int>(x); }
__forceinline__ float __int_as_float(int x) { return cuemu_bit_cast<float>(x); }
__forceinline__ long long __double_as_longlong(double x) { return cuemu_bit_cast<long long>(x); }
__forceinline__ double __longlong_as_double(long long x) { return cuemu_bit_cast<double>(x); }

// Correctly rounded on the host too (SSE arithmetic; the build sets -ffp-contract=off).
__forceinline__ float __fsqrt_rn(float x) { return sqrtf(x); }
__forceinline__ float __fdiv_rn(float a, float b) { return a / b; }
__forceinline__ float __fadd_rn(float a, float b) { return a + b; }
__forceinline__ float __fsub_rn(float a, float b) { return a - b; }
__forceinline__ float __fmul_rn(float a, float b) { return a * b; }
__forceinline__ float __frcp_rn(float a) { return 1.0f / a; }
__forceinline__ float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
__forceinline__ double __dsqrt_rn(double x) { return sqrt(x); }
__forceinline__ double __ddiv_rn(double a, double b) { return a / b; }
__forceinline__ double __dadd_rn(double a, double b) { return a + b; }
__forceinline__ double __dmul_rn(double a, double b) { return a * b; }
__forceinline__ double __fma_rn(double a, double b, double c) { return fma(a, b, c); }

__forceinline__ int __popc(unsigned x) { return __builtin_popcount(x); }
__forceinline__ int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
__forceinline__ int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
__forceinline__ int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
__forceinline__ int __ffs(int x) { return __builtin_ffs(x); }
__forceinline__ int __ffsll(long long x) { return __builtin_ffsll(x); }
__forceinline__ unsigned __brev(unsigned x) {
    unsigned r = 0;
    for (int i = 0; i < 32; ++i) r |= ((x >> i) & 1u) << (31 - i);
    return r;
}
__forceinline__ unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    uint64_t v = ((uint64_t)y << 32) | x;
    unsigned r = 0;
    for (int i = 0; i < 4; ++i) {
        unsigned sel = (s >> (4 * i)) & 0x7u;
        r |= (unsigned)((v >> (8 * sel)) & 0xFFu) << (8 * i);
    }
    return r;
}
__forceinline__ unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned shift) {
    uint64_t v = ((uint64_t)hi << 32) | lo;
    return (unsigned)((v << (shift & 31u)) >> 32);
}
__forceinline__ unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned shift) {
    uint64_t v = ((uint64_t)hi << 32) | lo;
    return (unsigned)(v >> (shift & 31u));
}
__forceinline__ unsigned __umulhi(unsigned a, unsigned b) { return (unsigned)(((uint64_t)a * b) >> 32); }
__forceinline__ unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
    return (unsigned long long)(((unsigned __int128)a * b) >> 64);
}

// Cache-hinted loads and stores are plain accesses here.
template <class T> __forceinline__ T __ldg(const T *p) { return *p; }
template <class T> __forceinline__ T __ldca(const T *p) { return *p; }
template <class T> __forceinline__ T __ldcg(const T *p) { return *p; }
template <class T> __forceinline__ T __ldcs(const T *p) { return *p; }
template <class T> __forceinline__ T __ldlu(const T *p) { return *p; }
template <class T> __forceinline__ T __ldcv(const T *p) { return *p; }
template <class T> __forceinline__ void __stwb(T *p, T v) { *p = v; }
template <class T> __forceinline__ void __stcg(T *p, T v) { *p = v; }
template <class T> __forceinline__ void __stcs(T *p, T v) { *p = v; }
template <class T> __forceinline__ void __stwt(T *p, T v) { *p = v; }

#define CUEMU_MINMAX(T)                                       \
    __forceinline__ T min(T a, T b) { return b < a ? b : a; } \
    __forceinline__ T max(T a, T b) { return a < b ? b : a; }
CUEMU_MINMAX(int)
CUEMU_MINMAX(unsigned)
CUEMU_MINMAX(long long)
CUEMU_MINMAX(unsigned long long)
#undef CUEMU_MINMAX
__forceinline__ float min(float a, float b) { return fminf(a, b); }
__forceinline__ float max(float a, float b) { return fmaxf(a, b); }
__forceinline__ double min(double a, double b) { return fmin(a, b); }
__forceinline__ double max(double a, double b) { return fmax(a, b); }

#endif
