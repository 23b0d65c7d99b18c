/* runtime_abi.h: what kernel code compiled for the emulated device calls in the emulator's
 * runtime. The device header (device.h) wraps these in the CUDA names; the runtime
 * (src/simt.cpp) defines them. Plain C types only, so both sides agree without sharing CUDA's
 * own headers. */
#ifndef CUEMU_RUNTIME_ABI_H
#define CUEMU_RUNTIME_ABI_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct cuemu_dim {
    unsigned x, y, z;
};

/* The CUDA thread now running (one fiber at a time runs, under the device lock). */
struct cuemu_lane_view {
    struct cuemu_dim thread_idx;
};
extern struct cuemu_lane_view *cuemu_cur_lane;
extern struct cuemu_dim cuemu_block_idx, cuemu_block_dim, cuemu_grid_dim;

/* Warp-wide operations: every lane named in `mask` must reach the same call (file:line). */
enum cuemu_warp_kind {
    CUEMU_SHFL_IDX,
    CUEMU_SHFL_UP,
    CUEMU_SHFL_DOWN,
    CUEMU_SHFL_XOR,
    CUEMU_BALLOT,
    CUEMU_ANY,
    CUEMU_ALL,
    CUEMU_SYNCWARP,
    CUEMU_REDUCE_ADD,
    CUEMU_REDUCE_MIN,
    CUEMU_REDUCE_MAX,
    CUEMU_REDUCE_MIN_SIGNED,
    CUEMU_REDUCE_MAX_SIGNED,
    CUEMU_REDUCE_AND,
    CUEMU_REDUCE_OR,
    CUEMU_REDUCE_XOR,
};
uint64_t cuemu_warp_op(int kind, unsigned mask, uint64_t value, int arg, int width, int bytes,
                       const char *file, int line);

/* Block-wide barrier; `kind` 0 plain, 1 count, 2 and, 3 or (the __syncthreads_* family). */
int cuemu_block_barrier(int kind, int predicate, const char *file, int line);

/* Lanes of the caller's warp that have not exited. */
unsigned cuemu_activemask(void);

/* Ends the launch with an error (__trap, a failed device assert). */
void cuemu_trap(const char *what, const char *file, int line);

/* clock64(): a per-launch counter that only moves forward. */
long long cuemu_clock64(void);

#ifdef __cplusplus
}
#endif

#endif
