/* control.h: what a test asks the emulated CUDA driver (libcuda.so built by
 * scripts/build-cuemu.sh) beyond the driver API: counters and fault injection. Find the
 * functions with dlsym on the loaded libcuda.so; a real driver does not have them.
 *
 * Configuration is read from the environment when the library loads:
 *   CUEMU_SM_COUNT=N            multiprocessors reported (default 2)
 *   CUEMU_ORDER=forward|reverse|random[:SEED]
 *                               the order lanes, warps and CTAs run in (default forward)
 *   CUEMU_MEMORY_MB=N           device memory (default 8192)
 *   CUEMU_CONCURRENT_MANAGED=0  report no concurrent managed access (prefetch then fails)
 *   CUEMU_WATCHDOG_S=N          a launch running longer fails (default 120)
 *   CUEMU_STACK_KB=N            stack per CUDA thread (default 256, 1024 under ASan)
 *   CUEMU_VERBOSE=1             log every queued and executed operation to stderr
 */
#ifndef CUEMU_CONTROL_H
#define CUEMU_CONTROL_H

#ifdef __cplusplus
extern "C" {
#endif

/* Nonzero: this libcuda.so is the emulator. */
int cuemu_is_emulator(void);

/* A counter by name: "launches" (kernels enqueued), "launches_run" (executed),
 * "host_syncs" (calls that blocked the host until device work finished: context, stream and
 * event synchronisation, blocking copies, cuMemFree), "prefetches", "live_allocations",
 * "live_bytes", "pending" (queued operations not yet run), "calls:<entry point>" (e.g.
 * "calls:cuMemAlloc_v2"), "launches:<kernel>". Unknown names count 0. */
unsigned long long cuemu_counter(const char *name);

/* Zeroes the call, launch, sync and prefetch counters. */
void cuemu_reset_counters(void);

/* The `nth` next call (1 = the next one) of `entry` (its exported name, e.g. "cuMemAlloc_v2")
 * returns `result` and does nothing else. Returns 0, or -1 for an unknown entry point. */
int cuemu_fail_call(const char *entry, unsigned long long nth, int result);

/* The `nth` next kernel launch is queued as usual (cuLaunchKernel succeeds) but fails with
 * `result` when it runs, which makes the context's error sticky, as an illegal address does. */
void cuemu_fail_launch(unsigned long long nth, int result);

/* Drops every pending injected failure. */
void cuemu_clear_faults(void);

/* The last error the emulator noted (a launch failure's kernel, block and lane; a rejected
 * argument), or "". Valid until the next call into the library. */
const char *cuemu_last_error(void);

#ifdef __cplusplus
}
#endif

#endif
