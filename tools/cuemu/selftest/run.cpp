// run.cpp: the emulated device's self-test. Each case runs in a child process of its own (a
// sticky error ends a context for good), with its own environment (the scheduling order, the
// watchdog), against libcuda.so built from the emulator with the self-test kernels.
//
// Usage: run SELFTEST.FATBIN        exits 0 when every case passed
#include <cuda.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include "cuemu/control.h"

namespace {

std::vector<char> g_image;

[[noreturn]] void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void check(CUresult r, const char *what) {
    if (r != CUDA_SUCCESS) {
        const char *name = "?";
        cuGetErrorName(r, &name);
        fail("%s: %s (%s)", what, name, cuemu_last_error());
    }
}

CUmodule g_module;

void init() {
    check(cuInit(0), "cuInit");
    CUdevice dev;
    CUcontext ctx;
    check(cuDeviceGet(&dev, 0), "cuDeviceGet");
    check(cuDevicePrimaryCtxRetain(&ctx, dev), "retain");
    check(cuCtxSetCurrent(ctx), "set current");
    check(cuModuleLoadData(&g_module, g_image.data()), "cuModuleLoadData");
}

CUfunction kernel(const char *name) {
    CUfunction f;
    check(cuModuleGetFunction(&f, g_module, name), name);
    return f;
}

struct Buf {
    CUdeviceptr p = 0;
    size_t n = 0;
    explicit Buf(size_t bytes) : n(bytes) { check(cuMemAlloc(&p, bytes), "cuMemAlloc"); }
    template <class T>
    std::vector<T> read() {
        std::vector<T> v(n / sizeof(T));
        check(cuMemcpyDtoH(v.data(), p, n), "cuMemcpyDtoH");
        return v;
    }
};

CUresult launch(CUfunction f, unsigned grid, unsigned block, std::vector<void *> args,
                unsigned shared = 0, CUstream s = nullptr) {
    return cuLaunchKernel(f, grid, 1, 1, block, 1, 1, shared, s, args.data(), nullptr);
}

// The error a launch of `name` surfaces at the next synchronisation, with the emulator's
// message, which must mention each of `words`.
void expect_launch_error(CUresult got, CUresult want, std::vector<const char *> words) {
    if (got == CUDA_SUCCESS) got = cuCtxSynchronize();
    const char *gn = "?", *wn = "?";
    cuGetErrorName(got, &gn);
    cuGetErrorName(want, &wn);
    if (got != want) fail("expected %s, got %s (%s)", wn, gn, cuemu_last_error());
    std::string m = cuemu_last_error();
    for (const char *w : words)
        if (m.find(w) == std::string::npos) fail("the message lacks \"%s\": %s", w, m.c_str());
    // Sticky: everything after it fails the same way.
    CUdeviceptr p;
    if (cuMemAlloc(&p, 16) != want) fail("the error %s is not sticky", wn);
}

std::vector<float> ramp(size_t n) {
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = 1.0f / (float)(i + 1) + (float)(i % 7) * 1e-3f;
    return v;
}

// ---- the cases ----

// The block sum with its barriers, printed exactly (the orders must agree).
void sum(bool barriers) {
    const int ctas = 4;
    std::vector<float> in = ramp(256 * ctas);
    Buf din(in.size() * 4), dout(ctas * 4);
    check(cuMemcpyHtoD(din.p, in.data(), in.size() * 4), "HtoD");
    check(launch(kernel(barriers ? "st_sum" : "st_sum_no_barrier"), ctas, 256, {&dout.p, &din.p}),
          "launch");
    for (float x : dout.read<float>()) printf("%a ", x);
}

void warp_ops() {
    Buf out(64 * 16 * 4);
    check(cuMemsetD8(out.p, 0, out.n), "memset");
    check(launch(kernel("st_warp_ops"), 1, 64, {&out.p}), "launch");
    std::vector<unsigned> o = out.read<unsigned>();
    for (unsigned t = 0; t < 64; ++t) {
        unsigned lane = t % 32, base = t - lane;
        auto seg = [&](unsigned w) { return base + (lane & ~(w - 1)); };
        unsigned want[16] = {
            (base + 7) * 3,
            (seg(8) + (lane + 3) % 8) * 3,
            lane >= 3 ? t - 3 : t,
            lane % 16 >= 2 ? t - 2 : t,
            lane + 5 < 32 ? t + 5 : t,
            lane % 8 + 3 < 8 ? t + 3 : t,
            t ^ 9,
            // Within groups of 4 a lane reads earlier groups, never later ones (own value).
            (lane & 4) ? t ^ 4 : t,
            0x49249249u,
            1,
            0,
            496,
            10,
            t ^ 16,
            lane % 2 ? 0u : (lane + 2 < 32 ? t + 2 : t),
            13,
        };
        for (int k = 0; k < 16; ++k)
            if (o[t * 16 + k] != want[k])
                fail("thread %u, warp operation %d: %u, expected %u", t, k, o[t * 16 + k], want[k]);
    }
}

void dynamic_shared() {
    CUfunction f = kernel("st_dynamic");
    int n = 20000;  // 80000 bytes: above the 48 KiB default
    Buf out(n * 4);
    CUresult r = launch(f, 1, 256, {&out.p, &n}, (unsigned)n * 4);
    if (r != CUDA_ERROR_INVALID_VALUE) fail("80000 bytes of dynamic shared memory without opting in");
    check(cuFuncSetAttribute(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, n * 4), "attribute");
    check(launch(f, 2, 256, {&out.p, &n}, (unsigned)n * 4), "launch");
    std::vector<float> v = out.read<float>();
    for (int i = 0; i < n; ++i)
        if (v[i] != (float)(n - 1 - i)) fail("dynamic shared memory: element %d is %g", i, v[i]);
}

void uninitialised_shared() {
    Buf out(32 * 4);
    int never = 0;
    check(launch(kernel("st_uninitialised_shared"), 1, 32, {&out.p, &never}), "launch");
    for (float x : out.read<float>())
        if (x == x) fail("shared memory nobody wrote reads %g, not the NaN poison", x);
}

void cta_order() {
    Buf data(8);
    check(cuMemsetD8(data.p, 0, 8), "memset");
    check(launch(kernel("st_cta_order"), 2, 32, {&data.p}), "launch");
    printf("%d", data.read<int>()[1]);
}

// A kernel on a non-blocking stream that does not wait for an upload queued on the legacy
// stream reads what was there before; with an event wait it reads the upload.
void stream_order(bool wait) {
    const int n = 64;
    std::vector<int> host(n, 7);
    Buf src(n * 4), dst(n * 4);
    check(cuMemsetD8(src.p, 0, n * 4), "memset");
    check(cuCtxSynchronize(), "sync");
    CUstream s;
    CUevent e;
    check(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING), "stream");
    check(cuEventCreate(&e, CU_EVENT_DEFAULT), "event");
    check(cuMemcpyHtoD(src.p, host.data(), n * 4), "HtoD");
    if (wait) {
        check(cuEventRecord(e, nullptr), "record");
        check(cuStreamWaitEvent(s, e, 0), "wait");
    }
    int count = n;
    check(launch(kernel("st_copy"), 1, 64, {&dst.p, &src.p, &count}, 0, s), "launch");
    check(cuStreamSynchronize(s), "stream sync");
    // The result as the non-blocking stream left it (not waiting for the legacy stream).
    std::vector<int> got(n);
    check(cuMemcpyDtoHAsync(got.data(), dst.p, n * 4, s), "DtoH");
    int want = wait ? 7 : 0;
    for (int x : got)
        if (x != want) fail("the kernel read %d, expected %d", x, want);
}

void launch_bounds() {
    CUfunction f = kernel("st_bounded");
    int max = 0, regs = -1;
    check(cuFuncGetAttribute(&max, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, f), "attribute");
    check(cuFuncGetAttribute(&regs, CU_FUNC_ATTRIBUTE_NUM_REGS, f), "attribute");
    if (max != 64 || regs <= 0) fail("st_bounded: %d threads at most, %d registers", max, regs);
    Buf out(128 * 4);
    if (launch(f, 1, 128, {&out.p}) != CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES)
        fail("128 threads of a __launch_bounds__(64) kernel launched");
    check(launch(f, 1, 64, {&out.p}), "launch");
    int blocks = 0;
    check(cuOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel("st_sum"), 256, 0), "occupancy");
    if (blocks < 1 || blocks > 8) fail("occupancy of st_sum at 256 threads: %d", blocks);
    void *extra[] = {nullptr};
    if (cuLaunchKernel(f, 1, 1, 1, 64, 1, 1, 0, nullptr, nullptr, extra) != CUDA_ERROR_INVALID_VALUE)
        fail("a launch with `extra` was accepted");
}

void host_pointer_parameter() {
    static int host[32];
    int *p = host;
    expect_launch_error(launch(kernel("st_store"), 1, 32, {&p}), CUDA_ERROR_ILLEGAL_ADDRESS,
                        {"st_store", "not device memory"});
}

void freed_pointer_parameter() {
    CUdeviceptr p;
    check(cuMemAlloc(&p, 128), "alloc");
    check(cuMemFree(p), "free");
    expect_launch_error(launch(kernel("st_store"), 1, 32, {&p}), CUDA_ERROR_ILLEGAL_ADDRESS,
                        {"st_store", "not device memory"});
}

void null_store() {
    CUdeviceptr p = 0;
    expect_launch_error(launch(kernel("st_store"), 1, 32, {&p}), CUDA_ERROR_ILLEGAL_ADDRESS,
                        {"st_store", "illegal memory access", "block (0,0,0)"});
}

void recovery_after_sticky_error() {
    CUdeviceptr p = 0;
    expect_launch_error(launch(kernel("st_store"), 1, 32, {&p}), CUDA_ERROR_ILLEGAL_ADDRESS, {});
    CUdevice dev;
    check(cuDeviceGet(&dev, 0), "get");
    check(cuDevicePrimaryCtxRelease(dev), "release");
    if (cuemu_counter("live_allocations") != 0) fail("memory outlived its context");
    init();
    Buf b(64);
    check(cuMemsetD8(b.p, 1, 64), "memset after the reset");
    check(cuCtxSynchronize(), "sync after the reset");
}

void injected_faults() {
    if (cuemu_fail_call("cuMemAlloc_v2", 2, CUDA_ERROR_OUT_OF_MEMORY) != 0) fail("fail_call");
    if (cuemu_fail_call("cuNoSuchCall", 1, 1) != -1) fail("an unknown entry point was accepted");
    CUdeviceptr a, b;
    check(cuMemAlloc(&a, 16), "first alloc");
    if (cuMemAlloc(&b, 16) != CUDA_ERROR_OUT_OF_MEMORY) fail("the injected failure did not fire");
    check(cuMemAlloc(&b, 16), "third alloc");
    cuemu_fail_launch(1, CUDA_ERROR_LAUNCH_FAILED);
    Buf out(64 * 4);
    expect_launch_error(launch(kernel("st_bounded"), 1, 64, {&out.p}), CUDA_ERROR_LAUNCH_FAILED,
                        {"injected"});
}

struct Case {
    const char *name;
    std::function<void()> run;
    const char *env = nullptr;  // NAME=VALUE for the child
};

// Runs `c` in a child with `order`; returns its exit status and what it printed.
std::pair<int, std::string> run_child(const Case &c, const char *order) {
    int fds[2];
    if (pipe(fds) != 0) fail("pipe");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        setenv("CUEMU_ORDER", order, 1);
        if (c.env) putenv((char *)c.env);
        init();
        c.run();
        fflush(stdout);
        _exit(0);
    }
    close(fds[1]);
    std::string out;
    char buf[4096];
    ssize_t k;
    while ((k = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, (size_t)k);
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out};
}

}  // namespace

int main(int argc, char **argv) {
    if (argc != 2) fail("usage: %s SELFTEST.FATBIN", argv[0]);
    std::ifstream in(argv[1], std::ios::binary);
    if (!in) fail("cannot read %s", argv[1]);
    g_image.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    g_image.resize(g_image.size() + 16);
    auto errors = [](const char *k, CUresult want, std::vector<const char *> words,
                     unsigned block = 64) {
        return [=] {
            Buf out(1024 * 4);
            expect_launch_error(launch(kernel(k), 1, block, {&out.p}), want, words);
        };
    };
    std::vector<Case> cases = {
        {"warp operations compute what CUDA defines", warp_ops},
        {"exited threads count as arrived at a barrier",
         [] {
             Buf out(64 * 4);
             check(launch(kernel("st_exit_before_barrier"), 1, 64, {&out.p}), "launch");
             check(cuCtxSynchronize(), "sync");
         }},
        {"threads at different barriers are a launch failure",
         errors("st_divergent_barrier", CUDA_ERROR_LAUNCH_FAILED,
                {"st_divergent_barrier", "different barriers", "selftest.cu"})},
        {"a shuffle naming an exited lane is a launch failure",
         errors("st_shuffle_names_exited_lane", CUDA_ERROR_LAUNCH_FAILED,
                {"has exited", "thread (5,0,0)"}, 32)},
        {"a mask without the calling lane is a launch failure",
         errors("st_mask_without_caller", CUDA_ERROR_LAUNCH_FAILED, {"does not include"}, 32)},
        {"lanes waiting at different warp operations deadlock",
         errors("st_warp_deadlock", CUDA_ERROR_LAUNCH_FAILED, {"deadlock", "__syncwarp"}, 32)},
        {"a spinning lane is stopped by the watchdog",
         [] {
             Buf flag(4);
             check(cuMemsetD8(flag.p, 0, 4), "memset");
             expect_launch_error(launch(kernel("st_spin"), 1, 32, {&flag.p}),
                                 CUDA_ERROR_LAUNCH_TIMEOUT, {"watchdog", "st_spin"});
         },
         "CUEMU_WATCHDOG_S=1"},
        {"a store through NULL is an illegal address", null_store},
        {"a host pointer as a kernel parameter is an illegal address", host_pointer_parameter},
        {"freed memory as a kernel parameter is an illegal address", freed_pointer_parameter},
        {"a fiber's stack overflow is a launch error",
         errors("st_stack_overflow", CUDA_ERROR_HARDWARE_STACK_ERROR, {"stack overflow"}, 1)},
        {"__trap() ends the launch", errors("st_trap", CUDA_ERROR_LAUNCH_FAILED, {"__trap"}, 32)},
        {"launch bounds, attributes, occupancy and `extra`", launch_bounds},
        {"dynamic shared memory and its opt-in", dynamic_shared},
        {"shared memory starts as a NaN poison", uninitialised_shared},
        {"a non-blocking stream does not wait for the legacy stream",
         [] { stream_order(false); }},
        {"an event wait orders the streams", [] { stream_order(true); }},
        {"a sticky error ends with its context", recovery_after_sticky_error},
        {"injected failures", injected_faults},
    };
    int failed = 0;
    for (const Case &c : cases) {
        auto [status, out] = run_child(c, "random:5");
        printf("%s  %s\n", status == 0 ? "ok  " : "FAIL", c.name);
        failed += status != 0;
    }
    // Order dependence: a correct kernel computes the same in every order; a kernel that lacks
    // its barriers, or relies on CTA order, does not.
    const char *orders[] = {"forward", "reverse", "random:1", "random:2"};
    struct Compare {
        const char *name;
        std::function<void()> run;
        bool same;
    } compares[] = {
        {"with its barriers a block sum is the same in every order", [] { sum(true); }, true},
        {"without its barriers a block sum depends on the order", [] { sum(false); }, false},
        {"CTAs reading each other's results depend on the CTA order", cta_order, false},
    };
    for (const Compare &c : compares) {
        std::vector<std::string> outs;
        bool ok = true;
        for (const char *o : orders) {
            auto [status, out] = run_child(Case{c.name, c.run}, o);
            ok &= status == 0;
            outs.push_back(out);
        }
        bool same = true;
        for (const std::string &o : outs) same &= o == outs[0];
        ok &= same == c.same;
        printf("%s  %s\n", ok ? "ok  " : "FAIL", c.name);
        failed += !ok;
    }
    printf("%d of %zu self-test cases failed\n", failed, cases.size() + 3);
    return failed ? 1 : 0;
}
