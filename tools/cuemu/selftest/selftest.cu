// selftest.cu: kernels that check the emulated device itself. Compiled by nvcc (the fatbin the
// runner loads) and, unchanged, for the host by scripts/build-cuemu.sh --selftest. Some of
// them are wrong on purpose: the emulator must report them, the runner (run.cpp) checks it.
#include <stdint.h>

#define FULL 0xFFFFFFFFu

// A shared-memory tree sum over one CTA of 256 threads: correct.
extern "C" __global__ void st_sum(float *out, const float *in) {
    __shared__ float s[256];
    s[threadIdx.x] = in[blockIdx.x * 256 + threadIdx.x];
    __syncthreads();
    for (int o = 128; o > 0; o >>= 1) {
        if (threadIdx.x < o) s[threadIdx.x] += s[threadIdx.x + o];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = s[0];
}

// The same without its barriers: its result depends on the order threads run in.
extern "C" __global__ void st_sum_no_barrier(float *out, const float *in) {
    __shared__ float s[256];
    s[threadIdx.x] = in[blockIdx.x * 256 + threadIdx.x];
    for (int o = 128; o > 0; o >>= 1)
        if (threadIdx.x < o) s[threadIdx.x] += s[threadIdx.x + o];
    if (threadIdx.x == 0) out[blockIdx.x] = s[0];
}

// Threads of one CTA wait at two different barriers.
extern "C" __global__ void st_divergent_barrier(int *out) {
    if (threadIdx.x < 32) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1;
}

// Half the threads exit before the barrier: the others still pass it (exited threads count
// as arrived).
extern "C" __global__ void st_exit_before_barrier(int *out) {
    if (threadIdx.x % 2) return;
    __syncthreads();
    out[threadIdx.x] = 1;
}

// Lane 5 exits; the rest of the warp shuffles with a mask that names it.
extern "C" __global__ void st_shuffle_names_exited_lane(int *out) {
    if (threadIdx.x == 5) return;
    out[threadIdx.x] = __shfl_xor_sync(FULL, (int)threadIdx.x, 1);
}

// A lane calls a warp operation with a mask that does not name it.
extern "C" __global__ void st_mask_without_caller(int *out) {
    out[threadIdx.x] = __shfl_sync(threadIdx.x == 0 ? 0x2u : FULL, (int)threadIdx.x, 0);
}

// Half a warp waits at a shuffle, the other half at __syncwarp: neither can complete.
extern "C" __global__ void st_warp_deadlock(int *out) {
    if (threadIdx.x < 16)
        out[threadIdx.x] = __shfl_sync(FULL, 1, 0);
    else
        __syncwarp();
}

// Every warp operation, with results the runner recomputes: one warp, 64 threads (two warps).
extern "C" __global__ void st_warp_ops(unsigned *out) {
    const unsigned lane = threadIdx.x % 32, t = threadIdx.x;
    unsigned *o = out + t * 16;
    o[0] = __shfl_sync(FULL, t * 3, 7);
    o[1] = __shfl_sync(FULL, t * 3, lane + 3, 8);
    o[2] = __shfl_up_sync(FULL, t, 3);
    o[3] = __shfl_up_sync(FULL, t, 2, 16);
    o[4] = __shfl_down_sync(FULL, t, 5);
    o[5] = __shfl_down_sync(FULL, t, 3, 8);
    o[6] = __shfl_xor_sync(FULL, t, 9);
    o[7] = __shfl_xor_sync(FULL, t, 4, 4);
    o[8] = __ballot_sync(FULL, lane % 3 == 0);
    o[9] = __any_sync(FULL, lane == 17);
    o[10] = __all_sync(FULL, lane < 31);
    o[11] = __reduce_add_sync(FULL, lane);
    o[12] = __reduce_max_sync(FULL, lane * 7 % 11);
    double d = __shfl_xor_sync(FULL, (double)t * 0.5, 16);
    o[13] = (unsigned)(d * 2.0);
    // Only the even lanes take part: odd lanes are not waited for.
    if (lane % 2 == 0) o[14] = __shfl_down_sync(0x55555555u, t, 2);
    __syncwarp();
    o[15] = __syncthreads_count(t % 5 == 0);
}

// Lane 0 spins on a flag that lane 1 only sets after a barrier lane 0 never reaches.
extern "C" __global__ void st_spin(volatile int *flag) {
    if (threadIdx.x == 0)
        while (*flag == 0) {
        }
    __syncthreads();
    if (threadIdx.x == 1) *flag = 1;
}

// Writes through the pointer it is given (NULL: an illegal address).
extern "C" __global__ void st_store(int *p) { p[threadIdx.x] = (int)threadIdx.x; }

// At most 64 threads per block.
extern "C" __global__ void __launch_bounds__(64) st_bounded(int *out) { out[threadIdx.x] = 1; }

// Dynamic shared memory: each thread writes its slot, then reads its mirror's.
extern "C" __global__ void st_dynamic(float *out, int n) {
    extern __shared__ float buf[];
    for (int i = threadIdx.x; i < n; i += blockDim.x) buf[i] = (float)i;
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = buf[n - 1 - i];
}

// Reads shared memory no thread wrote: garbage on a GPU, a NaN pattern on the emulator. (A
// store that never happens keeps the host compiler from folding the reads of a variable it
// would otherwise see never written, and so zero.)
extern "C" __global__ void st_uninitialised_shared(float *out, int never) {
    __shared__ float s[32];
    if (never) s[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = s[threadIdx.x];
}

// CTA 1 reads what CTA 0 writes, with nothing ordering them.
extern "C" __global__ void st_cta_order(int *data) {
    if (threadIdx.x != 0) return;
    if (blockIdx.x == 0) data[0] = 42;
    if (blockIdx.x == 1) data[1] = data[0];
}

// Copies n ints (to check what a stream sees).
extern "C" __global__ void st_copy(int *dst, const int *src, int n) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
}

__device__ __noinline__ int st_deep(int depth, int *sink) {
    volatile int frame[8192];
    frame[depth % 8192] = depth;
    if (depth == 0) return frame[0];
    return st_deep(depth - 1, sink) + frame[(depth * 7) % 8192];
}

// Recursion deep enough to run out of any fiber stack.
extern "C" __global__ void st_stack_overflow(int *out) { out[0] = st_deep(1 << 20, out); }

// __trap().
extern "C" __global__ void st_trap(int *out) {
    if (threadIdx.x == 3) __trap();
    out[threadIdx.x] = 1;
}
