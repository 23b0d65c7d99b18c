// simt.h: runs one grid of a host-compiled kernel, every CUDA thread a fiber.
#ifndef CUEMU_SIMT_H
#define CUEMU_SIMT_H

#include <stddef.h>
#include <stdint.h>

#include <string>

#include "cuemu/registry.h"
#include "cuemu/runtime_abi.h"

namespace cuemu {

// The order in which the runnable lanes of a CTA, and the CTAs of a grid, are run. Code that
// relies on lockstep, on CTA order or on a missing barrier computes different results in
// different orders.
enum class Order { Forward, Reverse, Random };

struct SimtSettings {
    Order order = Order::Forward;
    uint64_t seed = 1;
    double watchdog_seconds = 120;
    size_t stack_bytes = 256 << 10;
};

// How a grid ended. Every value but None is a fault that makes the context's error sticky.
enum class Fault {
    None,
    LaunchFailed,       // barrier or warp-operation misuse, a deadlock, an integer trap
    Timeout,            // ran past the watchdog
    IllegalAddress,     // a memory fault in kernel code, or a parameter outside device memory
    MisalignedAddress,  // a general-protection fault (x86 reports misaligned vector accesses so)
    StackOverflow,      // a fiber ran into its guard page
    IllegalInstruction, // SIGILL in kernel code
    Trap,               // __trap()
};

struct GridResult {
    Fault fault = Fault::None;
    std::string message;
};

struct Grid {
    const KernelEntry *kernel;
    cuemu_dim grid, block;
    unsigned dynamic_shared;  // bytes of `extern __shared__` memory for this launch
    void *const *args;        // one pointer per parameter, to the launch's own copies
    uint64_t serial;          // the launch's number: seeds the random order
};

GridResult run_grid(const Grid &g, const SimtSettings &s);

// Capacity of the dynamic shared buffer: the most an sm_90 CTA can opt in to.
constexpr size_t kMaxDynamicShared = 232448;

const char *fault_name(Fault f);

}  // namespace cuemu

#endif
