// state.h: the emulated device's state behind the driver API: one device with its primary
// context, device memory, streams of queued work, events, modules and the test controls
// (counters, fault injection). Everything is guarded by one lock, held for a whole API call.
#ifndef CUEMU_STATE_H
#define CUEMU_STATE_H

#include <cuda.h>
#include <pthread.h>

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "image.h"
#include "simt.h"

namespace cuemu {

struct Settings {
    int sm_count = 2;
    size_t memory_bytes = size_t(8) << 30;
    bool concurrent_managed = true;
    bool verbose = false;
    unsigned arch = 90;
    SimtSettings simt;
};
Settings &settings();

extern std::mutex g_mu;
extern bool g_initialized;

struct Context;

struct Alloc {
    size_t size;
    enum Kind { Device, Managed, PinnedHost } kind;
    Context *ctx;
};

struct Stream {
    Context *ctx = nullptr;
    unsigned flags = 0;
    bool legacy = false;
    uint64_t last = 0;  // the id of the last operation queued on it (0: none yet)
    bool blocking() const { return !(flags & CU_STREAM_NON_BLOCKING); }
};

struct Event {
    Context *ctx = nullptr;
    unsigned flags = 0;
    uint64_t op = 0;  // the record operation; 0 until recorded
    double when_ms = 0;
};

struct Module;

struct Function {
    Module *module = nullptr;
    const KernelEntry *entry = nullptr;
    ImageKernel meta;
    int max_dynamic_shared = 48 << 10;
};

struct Module {
    Context *ctx = nullptr;
    Image image;
    std::vector<std::unique_ptr<Function>> functions;
};

// Queued work: runs when something orders it (a synchronisation, an event, a blocking copy),
// after every operation it depends on. `run` returns the error that makes the context's error
// sticky, or CUDA_SUCCESS.
struct Op {
    Context *ctx = nullptr;
    std::vector<uint64_t> deps;
    std::function<CUresult()> run;
    std::string what;
};

struct Context {
    CUdevice device = 0;
    unsigned refcount = 0;
    unsigned flags = 0;
    bool active = false;
    CUresult sticky = CUDA_SUCCESS;
    Stream legacy;
    std::set<Stream *> streams;
    std::map<pthread_t, std::unique_ptr<Stream>> per_thread;
    std::set<Event *> events;
    std::set<Module *> modules;
};

// The host build of the kernel `name`, or null (registry.cpp).
const KernelEntry *find_kernel(const char *name);

// ---- contexts ----
Context &primary();
Context *current();
void set_current(Context *c);
std::vector<Context *> &context_stack();
// The current context, checked: CUDA_SUCCESS and *out set, or the error to return.
CUresult need_context(Context *&out);
// Frees everything a context owns and clears its sticky error (its last release, a reset).
void destroy_context(Context &c);

// ---- memory ----
extern std::map<uintptr_t, Alloc> g_allocs;
extern size_t g_used_bytes;
// The allocation holding [p, p+bytes), or null.
const Alloc *find_alloc(const void *p, size_t bytes, uintptr_t *base = nullptr);
// Checks a device range for an API call: CUDA_SUCCESS or CUDA_ERROR_INVALID_VALUE (with a note).
CUresult check_device_range(CUdeviceptr p, size_t bytes, const char *what);
bool is_pinned(const void *p, size_t bytes);
CUresult allocate(size_t bytes, Alloc::Kind kind, void **out);
void release(uintptr_t base);

// ---- streams and queued work ----
extern std::map<uint64_t, Op> g_pending;
// The stream a handle names (NULL and CU_STREAM_LEGACY: the legacy stream), or null if invalid.
Stream *resolve_stream(CUstream s, Context &c);
// Queues `op` on `s` after everything it must follow; returns its id.
uint64_t enqueue(Stream &s, Op op, std::vector<uint64_t> extra_deps = {});
// Runs operation `id` and what it depends on. Returns the context's sticky error if one arises.
CUresult force(uint64_t id);
// Runs everything queued in `c`.
CUresult force_all(Context &c);
// The context is dead from now on: every call on it returns `r`, and queued work is dropped.
// `run` functions note_error() what went wrong before they return their error.
void make_sticky(Context &c, CUresult r);

// ---- observability and fault injection (control.cpp) ----
struct Counters {
    uint64_t launches = 0;           // kernels enqueued
    uint64_t launches_run = 0;       // kernels executed
    uint64_t host_syncs = 0;         // calls that blocked the host until device work finished
    uint64_t prefetches = 0;
    std::map<std::string, uint64_t> calls;          // per entry point
    std::map<std::string, uint64_t> kernel_launches;  // per kernel name
};
extern Counters g_counters;
// Counts the call and applies an injected failure: CUDA_SUCCESS to go on, or the result.
CUresult enter(const char *entry);
// An injected asynchronous failure for the next launch, or CUDA_SUCCESS.
CUresult take_launch_fault();
void note_error(const std::string &message);
const std::string &last_error();
void log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace cuemu

// Every entry point starts with this: the lock, the call count, an injected failure, and
// cuInit having been called.
#define CUEMU_API(name)                                          \
    std::lock_guard<std::mutex> cuemu_lock_(cuemu::g_mu);        \
    if (CUresult r_ = cuemu::enter(name); r_ != CUDA_SUCCESS) return r_; \
    if (!cuemu::g_initialized) return CUDA_ERROR_NOT_INITIALIZED

#endif
