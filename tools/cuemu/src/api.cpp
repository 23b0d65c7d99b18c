// api.cpp: the CUDA driver API entry points of the emulated device, under their exported names
// (cuda.h's macros map cuMemAlloc to cuMemAlloc_v2 and so on, and its prototypes check every
// signature here). One device: an sm_90 GPU with CUEMU_SM_COUNT multiprocessors.
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <fstream>
#include <iterator>

#include "state.h"

using namespace cuemu;

namespace {

// ---- errors ----

struct ErrorText {
    CUresult code;
    const char *name, *text;
};

const ErrorText kErrors[] = {
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {CUDA_ERROR_DEINITIALIZED, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
    {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {CUDA_ERROR_INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {CUDA_ERROR_NO_BINARY_FOR_GPU, "CUDA_ERROR_NO_BINARY_FOR_GPU",
     "no kernel image is available for execution on the device"},
    {CUDA_ERROR_FILE_NOT_FOUND, "CUDA_ERROR_FILE_NOT_FOUND", "file not found"},
    {CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_NOT_READY, "CUDA_ERROR_NOT_READY", "device not ready"},
    {CUDA_ERROR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS",
     "an illegal memory access was encountered"},
    {CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
     "too many resources requested for launch"},
    {CUDA_ERROR_LAUNCH_TIMEOUT, "CUDA_ERROR_LAUNCH_TIMEOUT",
     "the launch timed out and was terminated"},
    {CUDA_ERROR_CONTEXT_IS_DESTROYED, "CUDA_ERROR_CONTEXT_IS_DESTROYED", "context is destroyed"},
    {CUDA_ERROR_HARDWARE_STACK_ERROR, "CUDA_ERROR_HARDWARE_STACK_ERROR",
     "an illegal memory access was encountered (stack)"},
    {CUDA_ERROR_ILLEGAL_INSTRUCTION, "CUDA_ERROR_ILLEGAL_INSTRUCTION",
     "an illegal instruction was encountered"},
    {CUDA_ERROR_MISALIGNED_ADDRESS, "CUDA_ERROR_MISALIGNED_ADDRESS", "misaligned address"},
    {CUDA_ERROR_LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

const ErrorText *error_text(CUresult r) {
    for (const ErrorText &e : kErrors)
        if (e.code == r) return &e;
    return nullptr;
}

CUresult fault_result(Fault f) {
    switch (f) {
    case Fault::None: return CUDA_SUCCESS;
    case Fault::LaunchFailed: return CUDA_ERROR_LAUNCH_FAILED;
    case Fault::Timeout: return CUDA_ERROR_LAUNCH_TIMEOUT;
    case Fault::IllegalAddress: return CUDA_ERROR_ILLEGAL_ADDRESS;
    case Fault::MisalignedAddress: return CUDA_ERROR_MISALIGNED_ADDRESS;
    case Fault::StackOverflow: return CUDA_ERROR_HARDWARE_STACK_ERROR;
    case Fault::IllegalInstruction: return CUDA_ERROR_ILLEGAL_INSTRUCTION;
    case Fault::Trap: return CUDA_ERROR_LAUNCH_FAILED;
    }
    return CUDA_ERROR_UNKNOWN;
}

double now_ms() {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

// ---- the device model (an H200-like sm_90 part) ----

constexpr int kMaxThreadsPerBlock = 1024;
constexpr int kMaxThreadsPerSm = 2048;
constexpr int kMaxBlocksPerSm = 32;
constexpr int kRegistersPerSm = 65536;
constexpr int kSharedPerSm = 233472;
constexpr int kSharedPerBlockOptin = 232448;
constexpr int kSharedPerBlock = 49152;
constexpr int kReservedSharedPerBlock = 1024;
constexpr int kMaxParamBytes = 32764;

bool attribute(CUdevice_attribute a, int &v) {
    const Settings &s = settings();
    switch (a) {
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: v = kMaxThreadsPerBlock; return true;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X:
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y: v = 1024; return true;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z: v = 64; return true;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X: v = 2147483647; return true;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y:
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z: v = 65535; return true;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: v = kSharedPerBlock; return true;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: v = kSharedPerBlockOptin; return true;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR: v = kSharedPerSm; return true;
    case CU_DEVICE_ATTRIBUTE_RESERVED_SHARED_MEMORY_PER_BLOCK: v = kReservedSharedPerBlock; return true;
    case CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY: v = 65536; return true;
    case CU_DEVICE_ATTRIBUTE_WARP_SIZE: v = 32; return true;
    case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK:
    case CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR: v = kRegistersPerSm; return true;
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR: v = kMaxThreadsPerSm; return true;
    case CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR: v = kMaxBlocksPerSm; return true;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: v = s.sm_count; return true;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: v = (int)s.arch / 10; return true;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: v = (int)s.arch % 10; return true;
    case CU_DEVICE_ATTRIBUTE_CLOCK_RATE: v = 1980000; return true;
    case CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE: v = 2619000; return true;
    case CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH: v = 6144; return true;
    case CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE: v = 50 << 20; return true;
    case CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY:
    case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING:
    case CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY:
    case CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS:
    case CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH:
    case CU_DEVICE_ATTRIBUTE_ECC_ENABLED: v = 1; return true;
    case CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS: v = s.concurrent_managed; return true;
    case CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS:
    case CU_DEVICE_ATTRIBUTE_INTEGRATED:
    case CU_DEVICE_ATTRIBUTE_KERNEL_EXEC_TIMEOUT:
    case CU_DEVICE_ATTRIBUTE_COMPUTE_MODE:
    case CU_DEVICE_ATTRIBUTE_TCC_DRIVER:
    case CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID:
    case CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID: v = 0; return true;
    case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID: v = 1; return true;
    case CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT: v = 2; return true;
    default: return false;
    }
}

int round_up(int x, int to) { return (x + to - 1) / to * to; }

// Resident CTAs per SM for `threads` and `dynamic_shared`, from sm_90's per-SM limits and the
// cubin's registers and static shared memory.
int occupancy(const Function &f, int threads, size_t dynamic_shared) {
    if (threads <= 0) return 0;
    int warps = (threads + 31) / 32;
    int by_threads = kMaxThreadsPerSm / (warps * 32);
    int regs_per_warp = round_up(std::max(1u, f.meta.registers) * 32, 256);
    int by_regs = kRegistersPerSm / (regs_per_warp * warps);
    size_t smem = f.meta.static_shared + dynamic_shared + kReservedSharedPerBlock;
    int by_smem = (int)(kSharedPerSm / smem);
    return std::max(0, std::min({kMaxBlocksPerSm, by_threads, by_regs, by_smem}));
}

int max_threads(const Function &f) {
    int limit = kMaxThreadsPerBlock;
    if (f.meta.max_threads) limit = std::min(limit, (int)f.meta.max_threads);
    if (f.meta.registers) {
        int regs_per_warp = round_up((int)f.meta.registers * 32, 256);
        limit = std::min(limit, kRegistersPerSm / regs_per_warp * 32);
    }
    return limit;
}

bool valid_function(Function *f) {
    Context &c = primary();
    for (Module *m : c.modules)
        for (auto &fn : m->functions)
            if (fn.get() == f) return true;
    return false;
}

bool valid_event(Event *e) { return primary().events.count(e) != 0; }

// ---- kernel launches ----

// Checks, when a launch runs, the device memory its parameters claim against the live
// allocations (a host pointer passed as a device pointer, or a freed buffer, is an error).
class LiveFootprint : public Footprint {
public:
    explicit LiveFootprint(const char *kernel) : kernel_(kernel) {}
    void device_range(const void *p, size_t bytes, const char *what, long index) override {
        if (!message.empty()) return;
        const Alloc *a = find_alloc(p, bytes);
        if (a) return;
        const Alloc *start = find_alloc(p, 1);
        char buf[512];
        snprintf(buf, sizeof buf,
                 "kernel %s: parameter %s [%ld]: %p (%zu bytes) is %s", kernel_, what, index, p,
                 bytes,
                 start ? "partly outside the device allocation it starts in"
                       : "not device memory (a host pointer, or memory already freed)");
        message = buf;
    }
    void invalid(const char *what, long index) override {
        if (!message.empty()) return;
        message = std::string("kernel ") + kernel_ + ": parameter " + what + " [" +
                  std::to_string(index) + "] is invalid";
    }
    std::string message;

private:
    const char *kernel_;
};

struct Launch {
    Function *f;
    cuemu_dim grid, block;
    unsigned shared;
    std::vector<unsigned char> bytes;  // the parameters, each at its alignment
    std::vector<void *> args;
    uint64_t serial;
    CUresult injected;
};

CUresult run_launch(const Launch &l) {
    const KernelEntry *k = l.f->entry;
    if (l.injected != CUDA_SUCCESS) {
        note_error(std::string("kernel ") + k->name + ": injected launch failure");
        return l.injected;
    }
    LiveFootprint fp(k->name);
    k->footprint(l.args.data(), fp);
    if (!fp.message.empty()) {
        note_error(fp.message);
        return CUDA_ERROR_ILLEGAL_ADDRESS;
    }
    g_counters.launches_run += 1;
    Grid g{k, l.grid, l.block, l.shared, l.args.data(), l.serial};
    GridResult r = run_grid(g, settings().simt);
    if (r.fault == Fault::None) return CUDA_SUCCESS;
    note_error(r.message);
    return fault_result(r.fault);
}

// A copy's source is read when it runs from pinned memory, at the call from pageable memory
// (which CUDA stages before the call returns).
std::shared_ptr<std::vector<unsigned char>> stage(const void *src, size_t n) {
    auto v = std::make_shared<std::vector<unsigned char>>(n);
    memcpy(v->data(), src, n);
    return v;
}

CUresult copy_to_device(CUdeviceptr dst, const void *src, size_t n, Stream &s, const char *what) {
    Op op;
    op.what = std::string(what) + " " + std::to_string(n) + " bytes";
    if (is_pinned(src, n)) {
        op.run = [=] {
            memcpy((void *)dst, src, n);
            return CUDA_SUCCESS;
        };
    } else {
        auto staged = stage(src, n);
        op.run = [=] {
            memcpy((void *)dst, staged->data(), n);
            return CUDA_SUCCESS;
        };
    }
    enqueue(s, std::move(op));
    return CUDA_SUCCESS;
}

CUresult copy_to_host(void *dst, CUdeviceptr src, size_t n, Stream &s, bool wait, const char *what) {
    Op op;
    op.what = std::string(what) + " " + std::to_string(n) + " bytes";
    op.run = [=] {
        memcpy(dst, (const void *)src, n);
        return CUDA_SUCCESS;
    };
    uint64_t id = enqueue(s, std::move(op));
    if (!wait) return CUDA_SUCCESS;
    g_counters.host_syncs += 1;
    return force(id);
}

CUresult memset_op(CUdeviceptr dst, unsigned value, size_t width, size_t count, Stream &s) {
    if (CUresult r = check_device_range(dst, width * count, "memset"); r != CUDA_SUCCESS) return r;
    if (width > 1 && dst % width) return CUDA_ERROR_INVALID_VALUE;
    Op op;
    op.what = "memset " + std::to_string(width * count) + " bytes";
    op.run = [=] {
        unsigned char *p = (unsigned char *)dst;
        if (width == 1) {
            memset(p, (int)(value & 0xFF), count);
        } else {
            for (size_t i = 0; i < count; ++i) memcpy(p + i * width, &value, width);
        }
        return CUDA_SUCCESS;
    };
    enqueue(s, std::move(op));
    return CUDA_SUCCESS;
}

// The context and stream of a stream-ordered call, checked.
CUresult need_stream(CUstream h, Context *&c, Stream *&s) {
    if (CUresult r = need_context(c); r != CUDA_SUCCESS) return r;
    s = resolve_stream(h, *c);
    return s ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

#define CHECK(expr)                                  \
    do {                                             \
        if (CUresult r_ = (expr); r_ != CUDA_SUCCESS) return r_; \
    } while (0)

}  // namespace

extern "C" {

// ---- initialisation, device ----

CUresult CUDAAPI cuInit(unsigned int flags) {
    std::lock_guard<std::mutex> lock(g_mu);
    if (CUresult r = enter("cuInit"); r != CUDA_SUCCESS) return r;
    if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
    g_initialized = true;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDriverGetVersion(int *version) {
    std::lock_guard<std::mutex> lock(g_mu);
    if (CUresult r = enter("cuDriverGetVersion"); r != CUDA_SUCCESS) return r;
    if (!version) return CUDA_ERROR_INVALID_VALUE;
    *version = CUDA_VERSION;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGetCount(int *count) {
    CUEMU_API("cuDeviceGetCount");
    if (!count) return CUDA_ERROR_INVALID_VALUE;
    *count = 1;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGet(CUdevice *device, int ordinal) {
    CUEMU_API("cuDeviceGet");
    if (!device) return CUDA_ERROR_INVALID_VALUE;
    if (ordinal != 0) return CUDA_ERROR_INVALID_DEVICE;
    *device = 0;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGetName(char *name, int len, CUdevice dev) {
    CUEMU_API("cuDeviceGetName");
    if (!name || len <= 0) return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    snprintf(name, (size_t)len, "cuemu emulated sm_%u (%d SMs)", settings().arch,
             settings().sm_count);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceTotalMem(size_t *bytes, CUdevice dev) {
    CUEMU_API("cuDeviceTotalMem_v2");
    if (!bytes) return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    *bytes = settings().memory_bytes;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceGetAttribute(int *pi, CUdevice_attribute attrib, CUdevice dev) {
    CUEMU_API("cuDeviceGetAttribute");
    if (!pi) return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    if (!attribute(attrib, *pi)) {
        note_error("cuDeviceGetAttribute: attribute " + std::to_string((int)attrib) +
                   " is not modelled by the emulator");
        return CUDA_ERROR_INVALID_VALUE;
    }
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDeviceComputeCapability(int *major, int *minor, CUdevice dev) {
    CUEMU_API("cuDeviceComputeCapability");
    if (!major || !minor) return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    *major = (int)settings().arch / 10;
    *minor = (int)settings().arch % 10;
    return CUDA_SUCCESS;
}

// ---- the primary context ----

CUresult CUDAAPI cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev) {
    CUEMU_API("cuDevicePrimaryCtxRetain");
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    Context &c = primary();
    if (c.refcount++ == 0) {
        c.active = true;
        c.legacy.ctx = &c;
        c.legacy.legacy = true;
    }
    *pctx = (CUcontext)&c;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDevicePrimaryCtxRelease(CUdevice dev) {
    CUEMU_API("cuDevicePrimaryCtxRelease_v2");
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    Context &c = primary();
    if (c.refcount == 0) return CUDA_ERROR_INVALID_CONTEXT;
    // The last release destroys the context: queued work is dropped, memory freed, and a
    // sticky error is gone with it.
    if (--c.refcount == 0) destroy_context(c);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDevicePrimaryCtxReset(CUdevice dev) {
    CUEMU_API("cuDevicePrimaryCtxReset_v2");
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    Context &c = primary();
    unsigned refs = c.refcount;
    destroy_context(c);
    if (refs) {
        c.active = true;
        c.legacy.ctx = &c;
        c.legacy.legacy = true;
    }
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDevicePrimaryCtxGetState(CUdevice dev, unsigned int *flags, int *active) {
    CUEMU_API("cuDevicePrimaryCtxGetState");
    if (!flags || !active) return CUDA_ERROR_INVALID_VALUE;
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    *flags = primary().flags;
    *active = primary().active;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuDevicePrimaryCtxSetFlags(CUdevice dev, unsigned int flags) {
    CUEMU_API("cuDevicePrimaryCtxSetFlags_v2");
    if (dev != 0) return CUDA_ERROR_INVALID_DEVICE;
    primary().flags = flags;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuCtxGetCurrent(CUcontext *pctx) {
    CUEMU_API("cuCtxGetCurrent");
    if (!pctx) return CUDA_ERROR_INVALID_VALUE;
    *pctx = (CUcontext)current();
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuCtxSetCurrent(CUcontext ctx) {
    CUEMU_API("cuCtxSetCurrent");
    if (ctx && ctx != (CUcontext)&primary()) return CUDA_ERROR_INVALID_CONTEXT;
    set_current((Context *)ctx);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuCtxPushCurrent(CUcontext ctx) {
    CUEMU_API("cuCtxPushCurrent_v2");
    if (!ctx || ctx != (CUcontext)&primary()) return CUDA_ERROR_INVALID_CONTEXT;
    context_stack().push_back(current());
    set_current((Context *)ctx);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuCtxPopCurrent(CUcontext *pctx) {
    CUEMU_API("cuCtxPopCurrent_v2");
    Context *c = current();
    if (!c) return CUDA_ERROR_INVALID_CONTEXT;
    if (pctx) *pctx = (CUcontext)c;
    auto &stack = context_stack();
    set_current(stack.empty() ? nullptr : stack.back());
    if (!stack.empty()) stack.pop_back();
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuCtxGetDevice(CUdevice *device) {
    CUEMU_API("cuCtxGetDevice");
    if (!device) return CUDA_ERROR_INVALID_VALUE;
    if (!current()) return CUDA_ERROR_INVALID_CONTEXT;
    *device = 0;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuCtxSynchronize(void) {
    CUEMU_API("cuCtxSynchronize");
    Context *c;
    CHECK(need_context(c));
    g_counters.host_syncs += 1;
    return force_all(*c);
}

// ---- modules and functions ----

CUresult CUDAAPI cuModuleLoadData(CUmodule *module, const void *image) {
    CUEMU_API("cuModuleLoadData");
    if (!module || !image) return CUDA_ERROR_INVALID_VALUE;
    Context *c;
    CHECK(need_context(c));
    auto m = std::make_unique<Module>();
    m->ctx = c;
    std::string error;
    if (!parse_image(image, settings().arch, m->image, error)) {
        note_error("cuModuleLoadData: " + error);
        return error.find("no cubin") != std::string::npos ? CUDA_ERROR_NO_BINARY_FOR_GPU
                                                           : CUDA_ERROR_INVALID_IMAGE;
    }
    if (m->image.kernels.empty()) {
        note_error("cuModuleLoadData: the image has no kernels");
        return CUDA_ERROR_INVALID_IMAGE;
    }
    for (const ImageKernel &k : m->image.kernels) {
        const KernelEntry *e = find_kernel(k.name.c_str());
        if (!e) {
            note_error("cuModuleLoadData: kernel " + k.name +
                       " of the image has no host build in this emulator (was it built from "
                       "other sources?)");
            return CUDA_ERROR_INVALID_IMAGE;
        }
        size_t host_bytes = 0;
        for (size_t i = 0; i < e->param_count; ++i)
            host_bytes = (host_bytes + e->params[i].align - 1) / e->params[i].align *
                             e->params[i].align + e->params[i].size;
        if (host_bytes != k.param_bytes || k.param_bytes > (unsigned)kMaxParamBytes) {
            note_error("cuModuleLoadData: kernel " + k.name + " takes " +
                       std::to_string(k.param_bytes) + " bytes of parameters in the image and " +
                       std::to_string(host_bytes) + " in its host build (limit " +
                       std::to_string(kMaxParamBytes) + ")");
            return CUDA_ERROR_INVALID_IMAGE;
        }
        auto f = std::make_unique<Function>();
        f->module = m.get();
        f->entry = e;
        f->meta = k;
        f->max_dynamic_shared = std::max(0, kSharedPerBlock - (int)k.static_shared);
        m->functions.push_back(std::move(f));
    }
    log("module loaded: %zu kernels, sm_%u", m->functions.size(), m->image.arch);
    *module = (CUmodule)m.get();
    c->modules.insert(m.release());
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuModuleLoadDataEx(CUmodule *module, const void *image, unsigned int, CUjit_option *,
                                    void **) {
    // The JIT options do not apply: the emulator runs the cubin's host build.
    return cuModuleLoadData(module, image);
}

CUresult CUDAAPI cuModuleLoad(CUmodule *module, const char *fname) {
    if (!fname) return CUDA_ERROR_INVALID_VALUE;
    std::ifstream in(fname, std::ios::binary);
    if (!in) return CUDA_ERROR_FILE_NOT_FOUND;
    std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    bytes.resize(bytes.size() + 8, 0);
    return cuModuleLoadData(module, bytes.data());
}

CUresult CUDAAPI cuModuleUnload(CUmodule hmod) {
    CUEMU_API("cuModuleUnload");
    Context *c;
    CHECK(need_context(c));
    Module *m = (Module *)hmod;
    if (!c->modules.count(m)) return CUDA_ERROR_INVALID_HANDLE;
    // Queued launches of its kernels must not outlive it.
    CHECK(force_all(*c));
    c->modules.erase(m);
    delete m;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuModuleGetFunction(CUfunction *hfunc, CUmodule hmod, const char *name) {
    CUEMU_API("cuModuleGetFunction");
    if (!hfunc || !name) return CUDA_ERROR_INVALID_VALUE;
    Context *c;
    CHECK(need_context(c));
    Module *m = (Module *)hmod;
    if (!c->modules.count(m)) return CUDA_ERROR_INVALID_HANDLE;
    for (auto &f : m->functions)
        if (f->meta.name == name) {
            *hfunc = (CUfunction)f.get();
            return CUDA_SUCCESS;
        }
    note_error(std::string("cuModuleGetFunction: no kernel ") + name + " in the module");
    return CUDA_ERROR_NOT_FOUND;
}

CUresult CUDAAPI cuFuncGetAttribute(int *pi, CUfunction_attribute attrib, CUfunction hfunc) {
    CUEMU_API("cuFuncGetAttribute");
    Function *f = (Function *)hfunc;
    if (!pi) return CUDA_ERROR_INVALID_VALUE;
    if (!valid_function(f)) return CUDA_ERROR_INVALID_HANDLE;
    switch (attrib) {
    case CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *pi = max_threads(*f); return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES: *pi = (int)f->meta.static_shared; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_CONST_SIZE_BYTES: *pi = 0; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES: *pi = (int)f->meta.local_bytes; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_NUM_REGS: *pi = (int)f->meta.registers; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_PTX_VERSION:
    case CU_FUNC_ATTRIBUTE_BINARY_VERSION: *pi = (int)f->module->image.arch; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES: *pi = f->max_dynamic_shared; return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT: *pi = -1; return CUDA_SUCCESS;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

CUresult CUDAAPI cuFuncSetAttribute(CUfunction hfunc, CUfunction_attribute attrib, int value) {
    CUEMU_API("cuFuncSetAttribute");
    Function *f = (Function *)hfunc;
    if (!valid_function(f)) return CUDA_ERROR_INVALID_HANDLE;
    switch (attrib) {
    case CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES:
        if (value < 0 || value + (int)f->meta.static_shared > kSharedPerBlockOptin)
            return CUDA_ERROR_INVALID_VALUE;
        f->max_dynamic_shared = value;
        return CUDA_SUCCESS;
    case CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT:
        return value >= -1 && value <= 100 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    default: return CUDA_ERROR_INVALID_VALUE;
    }
}

CUresult CUDAAPI cuFuncSetCacheConfig(CUfunction hfunc, CUfunc_cache) {
    CUEMU_API("cuFuncSetCacheConfig");
    return valid_function((Function *)hfunc) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE;
}

CUresult CUDAAPI cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(int *num_blocks, CUfunction func,
                                                                      int block_size,
                                                                      size_t dynamic_smem,
                                                                      unsigned int) {
    CUEMU_API("cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags");
    Function *f = (Function *)func;
    if (!num_blocks || block_size <= 0) return CUDA_ERROR_INVALID_VALUE;
    if (!valid_function(f)) return CUDA_ERROR_INVALID_HANDLE;
    *num_blocks = block_size > max_threads(*f) ? 0 : occupancy(*f, block_size, dynamic_smem);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuOccupancyMaxActiveBlocksPerMultiprocessor(int *num_blocks, CUfunction func,
                                                             int block_size, size_t dynamic_smem) {
    {
        std::lock_guard<std::mutex> lock(g_mu);
        if (CUresult r = enter("cuOccupancyMaxActiveBlocksPerMultiprocessor"); r != CUDA_SUCCESS)
            return r;
    }
    return cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags(num_blocks, func, block_size,
                                                                dynamic_smem, 0);
}

CUresult CUDAAPI cuLaunchKernel(CUfunction func, unsigned int gx, unsigned int gy, unsigned int gz,
                                unsigned int bx, unsigned int by, unsigned int bz,
                                unsigned int shared, CUstream hstream, void **params, void **extra) {
    CUEMU_API("cuLaunchKernel");
    Context *c;
    Stream *s;
    CHECK(need_stream(hstream, c, s));
    Function *f = (Function *)func;
    if (!valid_function(f)) return CUDA_ERROR_INVALID_HANDLE;
    const KernelEntry *k = f->entry;
    std::string name = k->name;
    if (extra) {
        note_error("cuLaunchKernel " + name + ": `extra` is not supported; pass kernelParams");
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (!gx || !gy || !gz || !bx || !by || !bz || gy > 65535 || gz > 65535 || bx > 1024 ||
        by > 1024 || bz > 64 || (uint64_t)bx * by * bz > kMaxThreadsPerBlock) {
        note_error("cuLaunchKernel " + name + ": invalid grid or block dimensions");
        return CUDA_ERROR_INVALID_VALUE;
    }
    if ((int)(bx * by * bz) > max_threads(*f)) {
        note_error("cuLaunchKernel " + name + ": " + std::to_string(bx * by * bz) +
                   " threads per block exceed the kernel's limit of " +
                   std::to_string(max_threads(*f)) + " (__launch_bounds__ or registers)");
        return CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES;
    }
    if ((int)shared > f->max_dynamic_shared) {
        note_error("cuLaunchKernel " + name + ": " + std::to_string(shared) +
                   " bytes of dynamic shared memory exceed the kernel's " +
                   std::to_string(f->max_dynamic_shared) +
                   " (raise CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES)");
        return CUDA_ERROR_INVALID_VALUE;
    }
    if (k->param_count && !params) {
        note_error("cuLaunchKernel " + name + ": kernelParams is NULL");
        return CUDA_ERROR_INVALID_VALUE;
    }
    auto l = std::make_shared<Launch>();
    l->f = f;
    l->grid = cuemu_dim{gx, gy, gz};
    l->block = cuemu_dim{bx, by, bz};
    l->shared = shared;
    // The driver copies the parameters now: the caller's buffers may go away after the call.
    std::vector<size_t> offsets;
    size_t total = 0;
    for (size_t i = 0; i < k->param_count; ++i) {
        const ParamSpec &p = k->params[i];
        total = (total + p.align - 1) / p.align * p.align;
        offsets.push_back(total);
        total += p.size;
    }
    l->bytes.assign(total + 16, 0);
    unsigned char *base = l->bytes.data();
    base += (16 - (uintptr_t)base % 16) % 16;
    for (size_t i = 0; i < k->param_count; ++i) {
        if (!params[i]) {
            note_error("cuLaunchKernel " + name + ": kernelParams[" + std::to_string(i) + "] is NULL");
            return CUDA_ERROR_INVALID_VALUE;
        }
        memcpy(base + offsets[i], params[i], k->params[i].size);
        l->args.push_back(base + offsets[i]);
    }
    g_counters.launches += 1;
    g_counters.kernel_launches[name] += 1;
    l->serial = g_counters.calls["cuLaunchKernel"];
    l->injected = take_launch_fault();
    Op op;
    op.what = "launch " + name + " <<<(" + std::to_string(gx) + "," + std::to_string(gy) + "," +
              std::to_string(gz) + "), (" + std::to_string(bx) + "," + std::to_string(by) + "," +
              std::to_string(bz) + ")>>>";
    op.run = [l] { return run_launch(*l); };
    enqueue(*s, std::move(op));
    return CUDA_SUCCESS;
}

// ---- memory ----

CUresult CUDAAPI cuMemGetInfo(size_t *free_bytes, size_t *total) {
    CUEMU_API("cuMemGetInfo_v2");
    Context *c;
    CHECK(need_context(c));
    if (!free_bytes || !total) return CUDA_ERROR_INVALID_VALUE;
    *total = settings().memory_bytes;
    *free_bytes = settings().memory_bytes - g_used_bytes;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemAlloc(CUdeviceptr *dptr, size_t bytes) {
    CUEMU_API("cuMemAlloc_v2");
    Context *c;
    CHECK(need_context(c));
    if (!dptr) return CUDA_ERROR_INVALID_VALUE;
    void *p;
    CHECK(allocate(bytes, Alloc::Device, &p));
    *dptr = (CUdeviceptr)p;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemAllocManaged(CUdeviceptr *dptr, size_t bytes, unsigned int flags) {
    CUEMU_API("cuMemAllocManaged");
    Context *c;
    CHECK(need_context(c));
    if (!dptr || (flags != CU_MEM_ATTACH_GLOBAL && flags != CU_MEM_ATTACH_HOST))
        return CUDA_ERROR_INVALID_VALUE;
    void *p;
    CHECK(allocate(bytes, Alloc::Managed, &p));
    *dptr = (CUdeviceptr)p;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemHostAlloc(void **pp, size_t bytes, unsigned int) {
    CUEMU_API("cuMemHostAlloc");
    Context *c;
    CHECK(need_context(c));
    if (!pp) return CUDA_ERROR_INVALID_VALUE;
    return allocate(bytes, Alloc::PinnedHost, pp);
}

CUresult CUDAAPI cuMemAllocHost(void **pp, size_t bytes) {
    CUEMU_API("cuMemAllocHost_v2");
    Context *c;
    CHECK(need_context(c));
    if (!pp) return CUDA_ERROR_INVALID_VALUE;
    return allocate(bytes, Alloc::PinnedHost, pp);
}

CUresult CUDAAPI cuMemFreeHost(void *p) {
    CUEMU_API("cuMemFreeHost");
    Context *c;
    CHECK(need_context(c));
    auto it = g_allocs.find((uintptr_t)p);
    if (it == g_allocs.end() || it->second.kind != Alloc::PinnedHost) return CUDA_ERROR_INVALID_VALUE;
    g_counters.host_syncs += 1;
    CHECK(force_all(*c));
    release((uintptr_t)p);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemFree(CUdeviceptr dptr) {
    CUEMU_API("cuMemFree_v2");
    Context *c;
    CHECK(need_context(c));
    auto it = g_allocs.find((uintptr_t)dptr);
    if (it == g_allocs.end() || it->second.kind == Alloc::PinnedHost) {
        note_error("cuMemFree: " + std::to_string(dptr) + " is not the start of a device allocation");
        return CUDA_ERROR_INVALID_VALUE;
    }
    // Freeing waits for the device, so that no queued work touches freed memory.
    g_counters.host_syncs += 1;
    CHECK(force_all(*c));
    release((uintptr_t)dptr);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemsetD8(CUdeviceptr dst, unsigned char uc, size_t n) {
    CUEMU_API("cuMemsetD8_v2");
    Context *c;
    Stream *s;
    CHECK(need_stream(nullptr, c, s));
    return memset_op(dst, uc, 1, n, *s);
}

CUresult CUDAAPI cuMemsetD16(CUdeviceptr dst, unsigned short us, size_t n) {
    CUEMU_API("cuMemsetD16_v2");
    Context *c;
    Stream *s;
    CHECK(need_stream(nullptr, c, s));
    return memset_op(dst, us, 2, n, *s);
}

CUresult CUDAAPI cuMemsetD32(CUdeviceptr dst, unsigned int ui, size_t n) {
    CUEMU_API("cuMemsetD32_v2");
    Context *c;
    Stream *s;
    CHECK(need_stream(nullptr, c, s));
    return memset_op(dst, ui, 4, n, *s);
}

CUresult CUDAAPI cuMemsetD8Async(CUdeviceptr dst, unsigned char uc, size_t n, CUstream hs) {
    CUEMU_API("cuMemsetD8Async");
    Context *c;
    Stream *s;
    CHECK(need_stream(hs, c, s));
    return memset_op(dst, uc, 1, n, *s);
}

CUresult CUDAAPI cuMemsetD16Async(CUdeviceptr dst, unsigned short us, size_t n, CUstream hs) {
    CUEMU_API("cuMemsetD16Async");
    Context *c;
    Stream *s;
    CHECK(need_stream(hs, c, s));
    return memset_op(dst, us, 2, n, *s);
}

CUresult CUDAAPI cuMemsetD32Async(CUdeviceptr dst, unsigned int ui, size_t n, CUstream hs) {
    CUEMU_API("cuMemsetD32Async");
    Context *c;
    Stream *s;
    CHECK(need_stream(hs, c, s));
    return memset_op(dst, ui, 4, n, *s);
}

CUresult CUDAAPI cuMemcpyHtoD(CUdeviceptr dst, const void *src, size_t n) {
    CUEMU_API("cuMemcpyHtoD_v2");
    Context *c;
    Stream *s;
    CHECK(need_stream(nullptr, c, s));
    if (n == 0) return CUDA_SUCCESS;
    if (!src) return CUDA_ERROR_INVALID_VALUE;
    CHECK(check_device_range(dst, n, "cuMemcpyHtoD destination"));
    // From pageable memory CUDA synchronises the stream, stages the data and returns, "but the
    // DMA to final destination may not have completed": the copy itself stays queued.
    g_counters.host_syncs += 1;
    CHECK(s->last ? force(s->last) : CUDA_SUCCESS);
    return copy_to_device(dst, src, n, *s, "HtoD");
}

CUresult CUDAAPI cuMemcpyDtoH(void *dst, CUdeviceptr src, size_t n) {
    CUEMU_API("cuMemcpyDtoH_v2");
    Context *c;
    Stream *s;
    CHECK(need_stream(nullptr, c, s));
    if (n == 0) return CUDA_SUCCESS;
    if (!dst) return CUDA_ERROR_INVALID_VALUE;
    CHECK(check_device_range(src, n, "cuMemcpyDtoH source"));
    return copy_to_host(dst, src, n, *s, true, "DtoH");
}

CUresult CUDAAPI cuMemcpyDtoD(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    CUEMU_API("cuMemcpyDtoD_v2");
    Context *c;
    Stream *s;
    CHECK(need_stream(nullptr, c, s));
    if (n == 0) return CUDA_SUCCESS;
    CHECK(check_device_range(dst, n, "cuMemcpyDtoD destination"));
    CHECK(check_device_range(src, n, "cuMemcpyDtoD source"));
    Op op;
    op.what = "DtoD " + std::to_string(n) + " bytes";
    op.run = [=] {
        memmove((void *)dst, (const void *)src, n);
        return CUDA_SUCCESS;
    };
    enqueue(*s, std::move(op));
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemcpyHtoDAsync(CUdeviceptr dst, const void *src, size_t n, CUstream hs) {
    CUEMU_API("cuMemcpyHtoDAsync_v2");
    Context *c;
    Stream *s;
    CHECK(need_stream(hs, c, s));
    if (n == 0) return CUDA_SUCCESS;
    if (!src) return CUDA_ERROR_INVALID_VALUE;
    CHECK(check_device_range(dst, n, "cuMemcpyHtoDAsync destination"));
    return copy_to_device(dst, src, n, *s, "HtoDAsync");
}

CUresult CUDAAPI cuMemcpyDtoHAsync(void *dst, CUdeviceptr src, size_t n, CUstream hs) {
    CUEMU_API("cuMemcpyDtoHAsync_v2");
    Context *c;
    Stream *s;
    CHECK(need_stream(hs, c, s));
    if (n == 0) return CUDA_SUCCESS;
    if (!dst) return CUDA_ERROR_INVALID_VALUE;
    CHECK(check_device_range(src, n, "cuMemcpyDtoHAsync source"));
    // Into pageable memory the call returns only once the copy is done.
    return copy_to_host(dst, src, n, *s, !is_pinned(dst, n), "DtoHAsync");
}

CUresult CUDAAPI cuMemcpyDtoDAsync(CUdeviceptr dst, CUdeviceptr src, size_t n, CUstream hs) {
    CUEMU_API("cuMemcpyDtoDAsync_v2");
    Context *c;
    Stream *s;
    CHECK(need_stream(hs, c, s));
    if (n == 0) return CUDA_SUCCESS;
    CHECK(check_device_range(dst, n, "cuMemcpyDtoDAsync destination"));
    CHECK(check_device_range(src, n, "cuMemcpyDtoDAsync source"));
    Op op;
    op.what = "DtoDAsync " + std::to_string(n) + " bytes";
    op.run = [=] {
        memmove((void *)dst, (const void *)src, n);
        return CUDA_SUCCESS;
    };
    enqueue(*s, std::move(op));
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemPrefetchAsync(CUdeviceptr ptr, size_t n, CUmemLocation location,
                                    unsigned int flags, CUstream hs) {
    CUEMU_API("cuMemPrefetchAsync_v2");
    Context *c;
    Stream *s;
    CHECK(need_stream(hs, c, s));
    if (!settings().concurrent_managed) return CUDA_ERROR_INVALID_DEVICE;
    const Alloc *a = find_alloc((const void *)ptr, n);
    if (!a || a->kind != Alloc::Managed || flags != 0) {
        note_error("cuMemPrefetchAsync: the range is not inside one managed allocation");
        return CUDA_ERROR_INVALID_VALUE;
    }
    bool to_device = location.type == CU_MEM_LOCATION_TYPE_DEVICE && location.id == 0;
    if (!to_device && location.type != CU_MEM_LOCATION_TYPE_HOST) return CUDA_ERROR_INVALID_DEVICE;
    Op op;
    op.what = "prefetch " + std::to_string(n) + " bytes";
    op.run = [] {
        g_counters.prefetches += 1;
        return CUDA_SUCCESS;
    };
    enqueue(*s, std::move(op));
    return CUDA_SUCCESS;
}

// ---- streams ----

CUresult CUDAAPI cuStreamCreate(CUstream *ph, unsigned int flags) {
    CUEMU_API("cuStreamCreate");
    Context *c;
    CHECK(need_context(c));
    if (!ph || (flags & ~(unsigned)CU_STREAM_NON_BLOCKING)) return CUDA_ERROR_INVALID_VALUE;
    Stream *s = new Stream;
    s->ctx = c;
    s->flags = flags;
    c->streams.insert(s);
    *ph = (CUstream)s;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuStreamCreateWithPriority(CUstream *ph, unsigned int flags, int) {
    return cuStreamCreate(ph, flags);
}

CUresult CUDAAPI cuStreamDestroy(CUstream hs) {
    CUEMU_API("cuStreamDestroy_v2");
    Context *c;
    CHECK(need_context(c));
    Stream *s = (Stream *)hs;
    if (!c->streams.count(s)) return CUDA_ERROR_INVALID_HANDLE;
    // Work already queued still runs; nothing new is queued behind it. Operations keep their
    // dependencies as ids, so the stream object can go now.
    c->streams.erase(s);
    delete s;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuStreamSynchronize(CUstream hs) {
    CUEMU_API("cuStreamSynchronize");
    Context *c;
    Stream *s;
    CHECK(need_stream(hs, c, s));
    g_counters.host_syncs += 1;
    return s->last ? force(s->last) : CUDA_SUCCESS;
}

CUresult CUDAAPI cuStreamQuery(CUstream hs) {
    CUEMU_API("cuStreamQuery");
    Context *c;
    Stream *s;
    CHECK(need_stream(hs, c, s));
    // A device makes progress on its own; so a polling loop ends, a query finishes the work.
    return s->last ? force(s->last) : CUDA_SUCCESS;
}

CUresult CUDAAPI cuStreamWaitEvent(CUstream hs, CUevent he, unsigned int flags) {
    CUEMU_API("cuStreamWaitEvent");
    Context *c;
    Stream *s;
    CHECK(need_stream(hs, c, s));
    Event *e = (Event *)he;
    if (!valid_event(e)) return CUDA_ERROR_INVALID_HANDLE;
    if (flags != 0) return CUDA_ERROR_INVALID_VALUE;
    Op op;
    op.what = "wait for event";
    std::vector<uint64_t> deps;
    if (e->op) deps.push_back(e->op);
    enqueue(*s, std::move(op), deps);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuStreamGetFlags(CUstream hs, unsigned int *flags) {
    CUEMU_API("cuStreamGetFlags");
    Context *c;
    Stream *s;
    CHECK(need_stream(hs, c, s));
    if (!flags) return CUDA_ERROR_INVALID_VALUE;
    *flags = s->flags;
    return CUDA_SUCCESS;
}

// ---- events ----

CUresult CUDAAPI cuEventCreate(CUevent *ph, unsigned int flags) {
    CUEMU_API("cuEventCreate");
    Context *c;
    CHECK(need_context(c));
    if (!ph) return CUDA_ERROR_INVALID_VALUE;
    Event *e = new Event;
    e->ctx = c;
    e->flags = flags;
    c->events.insert(e);
    *ph = (CUevent)e;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuEventDestroy(CUevent he) {
    CUEMU_API("cuEventDestroy_v2");
    Event *e = (Event *)he;
    if (!valid_event(e)) return CUDA_ERROR_INVALID_HANDLE;
    // A queued record still writes the event: finish it first.
    if (e->op) force(e->op);
    primary().events.erase(e);
    delete e;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuEventRecord(CUevent he, CUstream hs) {
    CUEMU_API("cuEventRecord");
    Context *c;
    Stream *s;
    CHECK(need_stream(hs, c, s));
    Event *e = (Event *)he;
    if (!valid_event(e)) return CUDA_ERROR_INVALID_HANDLE;
    Op op;
    op.what = "record event";
    op.run = [e] {
        e->when_ms = now_ms();
        return CUDA_SUCCESS;
    };
    e->op = enqueue(*s, std::move(op));
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuEventSynchronize(CUevent he) {
    CUEMU_API("cuEventSynchronize");
    Event *e = (Event *)he;
    if (!valid_event(e)) return CUDA_ERROR_INVALID_HANDLE;
    g_counters.host_syncs += 1;
    return e->op ? force(e->op) : CUDA_SUCCESS;
}

CUresult CUDAAPI cuEventQuery(CUevent he) {
    CUEMU_API("cuEventQuery");
    Event *e = (Event *)he;
    if (!valid_event(e)) return CUDA_ERROR_INVALID_HANDLE;
    return e->op ? force(e->op) : CUDA_SUCCESS;
}

CUresult CUDAAPI cuEventElapsedTime(float *ms, CUevent hstart, CUevent hend) {
    CUEMU_API("cuEventElapsedTime_v2");
    Event *a = (Event *)hstart, *b = (Event *)hend;
    if (!ms) return CUDA_ERROR_INVALID_VALUE;
    if (!valid_event(a) || !valid_event(b) || !a->op || !b->op ||
        (a->flags & CU_EVENT_DISABLE_TIMING) || (b->flags & CU_EVENT_DISABLE_TIMING))
        return CUDA_ERROR_INVALID_HANDLE;
    if (g_pending.count(a->op) || g_pending.count(b->op)) return CUDA_ERROR_NOT_READY;
    // Host time between the two records: the emulator's, meaningless as a GPU timing.
    *ms = (float)(b->when_ms - a->when_ms);
    return CUDA_SUCCESS;
}

// ---- errors ----

CUresult CUDAAPI cuGetErrorString(CUresult error, const char **str) {
    if (!str) return CUDA_ERROR_INVALID_VALUE;
    const ErrorText *e = error_text(error);
    *str = e ? e->text : nullptr;
    return e ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

CUresult CUDAAPI cuGetErrorName(CUresult error, const char **str) {
    if (!str) return CUDA_ERROR_INVALID_VALUE;
    const ErrorText *e = error_text(error);
    *str = e ? e->name : nullptr;
    return e ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

}  // extern "C"
