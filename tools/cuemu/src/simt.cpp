// simt.cpp: CUDA threads as fibers with real barrier, warp-operation and fault semantics.
//
// A CTA's threads are fibers on the OS thread that runs the launch. The scheduler runs every
// runnable fiber, in the configured order, until it blocks at a barrier or a warp operation or
// exits; then it completes each barrier and warp operation whose participants have all
// arrived at the same call. Nothing completes on a partial arrival, so a missing barrier shows
// up as an order-dependent result, and lanes that wait at different calls, or for a lane that
// has exited, are a launch error naming the kernel, block and lanes. A watchdog timer and
// handlers for memory faults turn a hung or crashing kernel into a launch error as well.
//
// Context switches are a small assembly routine (callee-saved registers, stack pointer, MXCSR
// and the x87 control word): no system call per switch, unlike swapcontext.
#include "simt.h"

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define CUEMU_ASAN 1
#endif
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define CUEMU_VALGRIND 1
#endif

#if !defined(__x86_64__)
#error "the emulated device's fiber switch is written for x86-64"
#endif

// ---- the one region of thread-local storage: the kernels' shared memory ----
//
// Nothing else of the emulator may be thread_local: the scheduler poisons this library's whole
// TLS block before every CTA, which is then exactly the static `__shared__` variables of the
// kernel objects and this buffer (which every `extern __shared__` array is renamed to).
extern "C" {
alignas(16) thread_local unsigned char cuemu_dynamic_smem[cuemu::kMaxDynamicShared];

struct cuemu_lane_view *cuemu_cur_lane;
struct cuemu_dim cuemu_block_idx, cuemu_block_dim, cuemu_grid_dim;

// void cuemu_switch(void **save_sp, void *load_sp): saves the callee-saved state on the current
// stack, stores the stack pointer in *save_sp, and resumes the context saved at load_sp.
void cuemu_switch(void **save_sp, void *load_sp);
void cuemu_fiber_trampoline();
}

asm(R"(
    .text
    .p2align 4
    .globl cuemu_switch
    .hidden cuemu_switch
    .type cuemu_switch, @function
cuemu_switch:
    .cfi_startproc
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .cfi_endproc
    .size cuemu_switch, .-cuemu_switch

    .p2align 4
    .globl cuemu_fiber_trampoline
    .hidden cuemu_fiber_trampoline
    .type cuemu_fiber_trampoline, @function
cuemu_fiber_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    movq %r12, %rdi
    callq *%r13
    ud2
    .cfi_endproc
    .size cuemu_fiber_trampoline, .-cuemu_fiber_trampoline
)");

namespace cuemu {
namespace {

// ---- fiber stacks ----

constexpr size_t kGuard = 64 << 10;

struct Stack {
    char *map = nullptr;  // guard pages, then the usable stack
    size_t size = 0;      // usable bytes
    unsigned valgrind_id = 0;
    char *bottom() const { return map + kGuard; }
    char *top() const { return map + kGuard + size; }
    bool in_guard(const void *p) const {
        return (const char *)p >= map && (const char *)p < map + kGuard;
    }
};

std::vector<Stack> g_stacks;

bool ensure_stacks(size_t count, size_t bytes) {
    if (!g_stacks.empty() && g_stacks[0].size != bytes) {
        for (Stack &s : g_stacks) {
#ifdef CUEMU_VALGRIND
            VALGRIND_STACK_DEREGISTER(s.valgrind_id);
#endif
            munmap(s.map, kGuard + s.size);
        }
        g_stacks.clear();
    }
    while (g_stacks.size() < count) {
        Stack s;
        s.size = bytes;
        void *m = mmap(nullptr, kGuard + bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) return false;
        s.map = (char *)m;
        mprotect(s.map, kGuard, PROT_NONE);
#ifdef CUEMU_VALGRIND
        s.valgrind_id = VALGRIND_STACK_REGISTER(s.bottom(), s.top());
#endif
        g_stacks.push_back(s);
    }
    return true;
}

// ---- lanes ----

enum class State { Runnable, AtBarrier, AtWarp, Exited };

struct Wait {
    int kind = 0;
    unsigned mask = 0;
    uint64_t value = 0;
    int arg = 0;
    int width = 32;
    int bytes = 0;
    const char *file = "";
    int line = 0;
};

struct Lane {
    cuemu_lane_view view;
    unsigned linear = 0, warp = 0, lane = 0;
    void *sp = nullptr;
    State state = State::Exited;
    Wait wait;
    uint64_t result = 0;
    Stack *stack = nullptr;
    void *asan_fake = nullptr;
};

// The grid being run (one at a time: the driver holds its device lock).
struct Run {
    const Grid *grid = nullptr;
    SimtSettings settings;
    std::vector<Lane> lanes;
    std::vector<unsigned> order;
    Lane *cur = nullptr;
    void *sched_sp = nullptr;
    const void *sched_bottom = nullptr;
    size_t sched_size = 0;
    void *sched_fake = nullptr;
    bool failed = false;
    GridResult result;
    uint64_t rng = 1;
    long long clock = 0;
    sigjmp_buf abort_jmp;
};
Run R;

// Set while a fiber runs; read by the signal handlers (which must not touch anything else).
volatile sig_atomic_t g_in_fiber = 0;
volatile sig_atomic_t g_signal = 0;
volatile sig_atomic_t g_signal_code = 0;
void *volatile g_signal_addr = nullptr;
volatile sig_atomic_t g_timed_out = 0;

uint64_t next_random() {
    // splitmix64
    uint64_t z = (R.rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void fill_order(std::vector<unsigned> &v, size_t n, Order o) {
    v.resize(n);
    for (size_t i = 0; i < n; ++i) v[i] = (unsigned)(o == Order::Reverse ? n - 1 - i : i);
    if (o == Order::Random)
        for (size_t i = n; i > 1; --i) std::swap(v[i - 1], v[next_random() % i]);
}

std::string format(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char *fmt, ...) {
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return buf;
}

std::string where() {
    const Grid &g = *R.grid;
    return format("kernel %s, block (%u,%u,%u)", g.kernel->name, cuemu_block_idx.x,
                  cuemu_block_idx.y, cuemu_block_idx.z);
}

std::string who(const Lane &l) {
    return format("thread (%u,%u,%u) (warp %u lane %u)", l.view.thread_idx.x, l.view.thread_idx.y,
                  l.view.thread_idx.z, l.warp, l.lane);
}

const char *op_name(int kind) {
    switch (kind) {
    case CUEMU_SHFL_IDX: return "__shfl_sync";
    case CUEMU_SHFL_UP: return "__shfl_up_sync";
    case CUEMU_SHFL_DOWN: return "__shfl_down_sync";
    case CUEMU_SHFL_XOR: return "__shfl_xor_sync";
    case CUEMU_BALLOT: return "__ballot_sync";
    case CUEMU_ANY: return "__any_sync";
    case CUEMU_ALL: return "__all_sync";
    case CUEMU_SYNCWARP: return "__syncwarp";
    case CUEMU_REDUCE_ADD: return "__reduce_add_sync";
    case CUEMU_REDUCE_MIN:
    case CUEMU_REDUCE_MIN_SIGNED: return "__reduce_min_sync";
    case CUEMU_REDUCE_MAX:
    case CUEMU_REDUCE_MAX_SIGNED: return "__reduce_max_sync";
    case CUEMU_REDUCE_AND: return "__reduce_and_sync";
    case CUEMU_REDUCE_OR: return "__reduce_or_sync";
    case CUEMU_REDUCE_XOR: return "__reduce_xor_sync";
    }
    return "a warp operation";
}

const char *barrier_name(int kind) {
    static const char *names[] = {"__syncthreads", "__syncthreads_count", "__syncthreads_and",
                                  "__syncthreads_or"};
    return kind >= 0 && kind < 4 ? names[kind] : "a barrier";
}

std::string waiting_at(const Lane &l) {
    switch (l.state) {
    case State::AtBarrier:
        return format("%s at %s:%d", barrier_name(l.wait.kind), l.wait.file, l.wait.line);
    case State::AtWarp:
        return format("%s at %s:%d (mask %08x)", op_name(l.wait.kind), l.wait.file, l.wait.line,
                      l.wait.mask);
    case State::Exited: return "has exited";
    case State::Runnable: return "is running";
    }
    return "?";
}

bool same_call(const Wait &a, const Wait &b) {
    return a.kind == b.kind && a.mask == b.mask && a.width == b.width && a.bytes == b.bytes &&
           a.line == b.line && (a.file == b.file || strcmp(a.file, b.file) == 0);
}

// ---- switching ----

void asan_start(void **fake, const void *bottom, size_t size) {
#ifdef CUEMU_ASAN
    __sanitizer_start_switch_fiber(fake, bottom, size);
#else
    (void)fake, (void)bottom, (void)size;
#endif
}

void asan_finish(void *fake, const void **bottom_old, size_t *size_old) {
#ifdef CUEMU_ASAN
    __sanitizer_finish_switch_fiber(fake, bottom_old, size_old);
#else
    (void)fake, (void)bottom_old, (void)size_old;
#endif
}

// From a fiber back to the scheduler; returns when the scheduler resumes this lane.
void yield(Lane &l) {
    bool exiting = l.state == State::Exited;
    asan_start(exiting ? nullptr : &l.asan_fake, R.sched_bottom, R.sched_size);
    cuemu_switch(&l.sp, R.sched_sp);
    asan_finish(l.asan_fake, &R.sched_bottom, &R.sched_size);
}

[[noreturn]] void fail_in_fiber(Fault f, const std::string &message) {
    R.failed = true;
    R.result.fault = f;
    R.result.message = message;
    Lane &l = *R.cur;
    l.state = State::Exited;
    yield(l);
    __builtin_unreachable();
}

extern "C" void cuemu_fiber_main(Lane *l) {
    asan_finish(nullptr, &R.sched_bottom, &R.sched_size);
    R.grid->kernel->invoke(R.grid->args);
    l->state = State::Exited;
    yield(*l);
    __builtin_unreachable();
}

void start_lane(Lane &l, Stack &s) {
    l.stack = &s;
    l.state = State::Runnable;
    l.asan_fake = nullptr;
    void **sp = (void **)s.top();
    *--sp = (void *)cuemu_fiber_trampoline;  // where cuemu_switch's ret goes
    *--sp = nullptr;                           // rbp
    *--sp = nullptr;                           // rbx
    *--sp = (void *)&l;                        // r12: the trampoline's argument
    *--sp = (void *)cuemu_fiber_main;          // r13: what it calls
    *--sp = nullptr;                           // r14
    *--sp = nullptr;                           // r15
    *--sp = (void *)(uintptr_t)(0x1F80u | (0x037Full << 32));  // MXCSR, x87 control word
    l.sp = sp;
}

void resume(Lane &l) {
    R.cur = &l;
    cuemu_cur_lane = &l.view;
    g_in_fiber = 1;
    asan_start(&R.sched_fake, l.stack->bottom(), l.stack->size);
    cuemu_switch(&R.sched_sp, l.sp);
    asan_finish(R.sched_fake, nullptr, nullptr);
    g_in_fiber = 0;
}

// ---- completing barriers and warp operations ----

uint64_t poison_bits(int bytes) {
    // A quiet NaN with a recognisable payload, in every width.
    return bytes == 8 ? 0x7FF8DEAD7FF8DEADull : bytes == 4 ? 0x7FC0DEADull : 0x7E00ull;
}

uint64_t truncate(uint64_t v, int bytes) {
    return bytes >= 8 ? v : v & ((1ull << (8 * bytes)) - 1);
}

// Sets every lane of the group's result and makes them runnable.
void complete_warp_op(unsigned warp, unsigned mask) {
    Lane *w = &R.lanes[warp * 32];
    const Wait &op = w[__builtin_ctz(mask)].wait;
    uint64_t reduced = 0;
    switch (op.kind) {
    case CUEMU_BALLOT:
    case CUEMU_ANY:
    case CUEMU_ALL:
        for (unsigned b = 0; b < 32; ++b)
            if ((mask >> b & 1) && w[b].wait.value) reduced |= 1ull << b;
        if (op.kind == CUEMU_ANY) reduced = reduced != 0;
        if (op.kind == CUEMU_ALL) reduced = reduced == mask;
        break;
    case CUEMU_REDUCE_ADD:
    case CUEMU_REDUCE_MIN:
    case CUEMU_REDUCE_MAX:
    case CUEMU_REDUCE_MIN_SIGNED:
    case CUEMU_REDUCE_MAX_SIGNED:
    case CUEMU_REDUCE_AND:
    case CUEMU_REDUCE_OR:
    case CUEMU_REDUCE_XOR: {
        bool first = true;
        uint32_t acc = 0;
        for (unsigned b = 0; b < 32; ++b) {
            if (!(mask >> b & 1)) continue;
            uint32_t v = (uint32_t)w[b].wait.value;
            if (first) {
                acc = v;
                first = false;
                continue;
            }
            switch (op.kind) {
            case CUEMU_REDUCE_ADD: acc += v; break;
            case CUEMU_REDUCE_MIN: acc = std::min(acc, v); break;
            case CUEMU_REDUCE_MAX: acc = std::max(acc, v); break;
            case CUEMU_REDUCE_MIN_SIGNED: acc = (uint32_t)std::min((int32_t)acc, (int32_t)v); break;
            case CUEMU_REDUCE_MAX_SIGNED: acc = (uint32_t)std::max((int32_t)acc, (int32_t)v); break;
            case CUEMU_REDUCE_AND: acc &= v; break;
            case CUEMU_REDUCE_OR: acc |= v; break;
            case CUEMU_REDUCE_XOR: acc ^= v; break;
            }
        }
        reduced = acc;
        break;
    }
    default: break;
    }
    for (unsigned b = 0; b < 32; ++b) {
        if (!(mask >> b & 1)) continue;
        Lane &l = w[b];
        const Wait &a = l.wait;
        uint64_t r = reduced;
        if (a.kind <= CUEMU_SHFL_XOR) {
            unsigned width = (unsigned)a.width, base = b & ~(width - 1), src = b;
            unsigned offset = b - base;
            switch (a.kind) {
            case CUEMU_SHFL_IDX: src = base + (unsigned)(((a.arg % a.width) + a.width) % a.width); break;
            case CUEMU_SHFL_UP: src = a.arg >= 0 && offset >= (unsigned)a.arg ? b - a.arg : b; break;
            case CUEMU_SHFL_DOWN:
                src = a.arg >= 0 && offset + (unsigned)a.arg < width ? b + a.arg : b;
                break;
            case CUEMU_SHFL_XOR:
                src = b ^ (unsigned)a.arg;
                if (src >= 32 || (src & ~(width - 1)) > base) src = b;
                break;
            }
            // Reading a lane outside the mask is undefined on a GPU: a poison value here.
            r = src == b ? a.value : (mask >> src & 1) ? w[src].wait.value : poison_bits(a.bytes);
        }
        l.result = truncate(r, a.bytes ? a.bytes : 8);
        l.state = State::Runnable;
    }
}

void fail_sched(Fault f, const std::string &message) {
    R.failed = true;
    R.result.fault = f;
    R.result.message = message;
}

// Completes what can complete; false when nothing could (then R.failed may say why).
bool resolve() {
    const size_t n = R.lanes.size();
    bool progress = false;
    for (size_t i = 0; i < n; ++i) {
        Lane &l = R.lanes[i];
        if (l.state != State::AtWarp) continue;
        unsigned mask = l.wait.mask;
        bool ready = true;
        for (unsigned b = 0; b < 32 && ready; ++b) {
            if (!(mask >> b & 1)) continue;
            size_t k = (size_t)l.warp * 32 + b;
            if (k >= n) {
                fail_sched(Fault::LaunchFailed,
                           format("%s: %s calls %s at %s:%d with mask %08x, naming lane %u, which "
                                  "does not exist (the block has %zu threads)",
                                  where().c_str(), who(l).c_str(), op_name(l.wait.kind),
                                  l.wait.file, l.wait.line, mask, b, n));
                return false;
            }
            const Lane &o = R.lanes[k];
            if (o.state == State::Exited) {
                fail_sched(Fault::LaunchFailed,
                           format("%s: %s calls %s at %s:%d with mask %08x, but %s, named in the "
                                  "mask, has exited",
                                  where().c_str(), who(l).c_str(), op_name(l.wait.kind),
                                  l.wait.file, l.wait.line, mask, who(o).c_str()));
                return false;
            }
            ready = o.state == State::AtWarp && same_call(o.wait, l.wait);
        }
        if (ready) {
            complete_warp_op(l.warp, mask);
            progress = true;
        }
    }
    if (progress) return true;
    size_t at_barrier = 0, exited = 0;
    const Lane *first = nullptr;
    for (const Lane &l : R.lanes) {
        if (l.state == State::Exited) ++exited;
        if (l.state != State::AtBarrier) continue;
        if (!first) first = &l;
        ++at_barrier;
        if (!same_call(l.wait, first->wait)) {
            fail_sched(Fault::LaunchFailed,
                       format("%s: threads wait at different barriers: %s at %s, %s at %s",
                              where().c_str(), who(*first).c_str(), waiting_at(*first).c_str(),
                              who(l).c_str(), waiting_at(l).c_str()));
            return false;
        }
    }
    if (at_barrier == 0 || at_barrier + exited != n) return false;
    int count = 0, all = 1, any = 0;
    for (const Lane &l : R.lanes)
        if (l.state == State::AtBarrier) {
            count += l.wait.value != 0;
            all &= l.wait.value != 0;
            any |= l.wait.value != 0;
        }
    for (Lane &l : R.lanes) {
        if (l.state != State::AtBarrier) continue;
        l.result = l.wait.kind == 1 ? count : l.wait.kind == 2 ? all : l.wait.kind == 3 ? any : 0;
        l.state = State::Runnable;
    }
    return true;
}

// Nothing can move: say who waits for whom.
std::string deadlock() {
    const size_t n = R.lanes.size();
    for (const Lane &l : R.lanes) {
        if (l.state != State::AtWarp) continue;
        for (unsigned b = 0; b < 32; ++b) {
            if (!(l.wait.mask >> b & 1)) continue;
            const Lane &o = R.lanes[(size_t)l.warp * 32 + b];
            if (o.state != State::AtWarp || !same_call(o.wait, l.wait))
                return format("%s: deadlock: %s waits at %s for %s, which waits at %s",
                              where().c_str(), who(l).c_str(), waiting_at(l).c_str(),
                              who(o).c_str(), waiting_at(o).c_str());
        }
    }
    for (size_t i = 0; i < n; ++i)
        if (R.lanes[i].state == State::AtBarrier)
            for (const Lane &o : R.lanes)
                if (o.state != State::AtBarrier && o.state != State::Exited)
                    return format("%s: deadlock: %s waits at %s while %s waits at %s",
                                  where().c_str(), who(R.lanes[i]).c_str(),
                                  waiting_at(R.lanes[i]).c_str(), who(o).c_str(),
                                  waiting_at(o).c_str());
    return where() + ": deadlock";
}

// ---- per OS thread: the signal stack, the watchdog timer, the TLS block ----

struct ThreadState {
    void *altstack = nullptr;
    size_t altstack_size = 0;
    timer_t timer{};
    bool has_timer = false;
    unsigned char *tls_block = nullptr;
    size_t tls_size = 0;
};

pthread_key_t g_thread_key;
pthread_once_t g_thread_once = PTHREAD_ONCE_INIT;

void destroy_thread_state(void *p) {
    ThreadState *ts = (ThreadState *)p;
    if (ts->has_timer) timer_delete(ts->timer);
    // The signal stack may still be installed; a thread that exits does not need it.
    delete ts;
}

int watchdog_signal() { return SIGRTMIN + 6; }

void install_watchdog_handler();

void make_key() {
    pthread_key_create(&g_thread_key, destroy_thread_state);
    install_watchdog_handler();
}

struct TlsSearch {
    uintptr_t base;
    void *data;
    size_t size;
};

int find_tls(dl_phdr_info *info, size_t, void *arg) {
    TlsSearch *s = (TlsSearch *)arg;
    if (info->dlpi_addr != s->base) return 0;
    for (int i = 0; i < info->dlpi_phnum; ++i)
        if (info->dlpi_phdr[i].p_type == PT_TLS) {
            s->data = info->dlpi_tls_data;
            s->size = info->dlpi_phdr[i].p_memsz;
        }
    return 1;
}

__attribute__((noinline)) ThreadState &thread_state() {
    pthread_once(&g_thread_once, make_key);
    ThreadState *ts = (ThreadState *)pthread_getspecific(g_thread_key);
    if (ts) return *ts;
    ts = new ThreadState;
    pthread_setspecific(g_thread_key, ts);
    sigevent sev{};
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = watchdog_signal();
    sev._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    ts->has_timer = timer_create(CLOCK_MONOTONIC, &sev, &ts->timer) == 0;
    // This thread's instance of the TLS block (touching the buffer allocates it).
    volatile unsigned char touch = cuemu_dynamic_smem[0];
    (void)touch;
    Dl_info self;
    TlsSearch s{0, nullptr, 0};
    if (dladdr((void *)&run_grid, &self)) s.base = (uintptr_t)self.dli_fbase;
    dl_iterate_phdr(find_tls, &s);
    ts->tls_block = (unsigned char *)s.data;
    ts->tls_size = s.size;
    return *ts;
}

// Shared memory starts every CTA as a recognisable NaN pattern, never as what the previous CTA
// left: a kernel that reads shared memory it did not write sees garbage, as on a GPU.
void poison_shared(const ThreadState &ts, unsigned dynamic_bytes) {
    unsigned char *dyn = cuemu_dynamic_smem;
    if (!ts.tls_block || dyn < ts.tls_block || dyn + kMaxDynamicShared > ts.tls_block + ts.tls_size) {
        memset(dyn, 0xFF, dynamic_bytes);
        return;
    }
    memset(ts.tls_block, 0xFF, (size_t)(dyn - ts.tls_block) + dynamic_bytes);
    unsigned char *after = dyn + kMaxDynamicShared, *end = ts.tls_block + ts.tls_size;
    memset(after, 0xFF, (size_t)(end - after));
}

// ---- signals during a launch ----

struct sigaction g_old[4];
const int g_fault_signals[4] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};

void on_fault(int sig, siginfo_t *info, void *) {
    if (g_in_fiber) {
        g_signal = sig;
        g_signal_code = info->si_code;
        g_signal_addr = info->si_addr;
        siglongjmp(R.abort_jmp, 1);
    }
    // Not kernel code: give the fault to whoever handled it before the launch.
    for (int i = 0; i < 4; ++i)
        if (g_fault_signals[i] == sig) sigaction(sig, &g_old[i], nullptr);
}

void on_watchdog(int, siginfo_t *, void *) {
    g_timed_out = 1;
    if (g_in_fiber) {
        g_signal = watchdog_signal();
        siglongjmp(R.abort_jmp, 1);
    }
}

void install_handlers(ThreadState &ts) {
    stack_t current;
    if (sigaltstack(nullptr, &current) == 0 && (current.ss_flags & SS_DISABLE)) {
        if (!ts.altstack) {
            ts.altstack_size = 64 << 10;
            ts.altstack = mmap(nullptr, ts.altstack_size, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        }
        stack_t ss{};
        ss.ss_sp = ts.altstack;
        ss.ss_size = ts.altstack_size;
        sigaltstack(&ss, nullptr);
    }
    struct sigaction sa{};
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < 4; ++i) sigaction(g_fault_signals[i], &sa, &g_old[i]);
}

void remove_handlers() {
    for (int i = 0; i < 4; ++i) sigaction(g_fault_signals[i], &g_old[i], nullptr);
}

// The watchdog's signal is the emulator's own and stays handled: a timer that fired just as a
// launch ended must not find the default action (which ends the process).
void install_watchdog_handler() {
    struct sigaction sa{};
    sa.sa_sigaction = on_watchdog;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(watchdog_signal(), &sa, nullptr);
}

void arm(ThreadState &ts, double seconds) {
    if (!ts.has_timer) return;
    itimerspec its{};
    its.it_value.tv_sec = (time_t)seconds;
    its.it_value.tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
    timer_settime(ts.timer, 0, &its, nullptr);
}

void disarm(ThreadState &ts) {
    if (!ts.has_timer) return;
    itimerspec its{};
    timer_settime(ts.timer, 0, &its, nullptr);
}

std::string signal_message(Fault &f) {
    int sig = g_signal;
    const Lane *l = R.cur;
    std::string at = where() + (l ? ", " + who(*l) : std::string());
    if (sig == watchdog_signal()) {
        f = Fault::Timeout;
        return format("%s: the launch ran longer than the watchdog's %.0f s (an endless loop, or "
                      "a lane spinning on memory another lane never writes)",
                      at.c_str(), R.settings.watchdog_seconds);
    }
    void *addr = g_signal_addr;
    if (sig == SIGSEGV && l && l->stack && l->stack->in_guard(addr)) {
        f = Fault::StackOverflow;
        return format("%s: stack overflow (the fiber stack is %zu KiB; set CUEMU_STACK_KB)",
                      at.c_str(), R.settings.stack_bytes >> 10);
    }
    if (sig == SIGSEGV && g_signal_code == SI_KERNEL) {
        // x86 reports a misaligned aligned-vector access as a general protection fault.
        f = Fault::MisalignedAddress;
        return at + ": a general-protection fault: a misaligned vector access (or an access "
                    "through a non-canonical address)";
    }
    if (sig == SIGSEGV || sig == SIGBUS) {
        f = Fault::IllegalAddress;
        return format("%s: illegal memory access at %p", at.c_str(), addr);
    }
    if (sig == SIGILL) {
        f = Fault::IllegalInstruction;
        return at + ": illegal instruction";
    }
    f = Fault::LaunchFailed;
    return at + ": arithmetic trap (an integer division by zero: a GPU gives an undefined "
                "value, the emulator stops)";
}

uint64_t linear_count(cuemu_dim d) { return (uint64_t)d.x * d.y * d.z; }

cuemu_dim unflatten(uint64_t i, cuemu_dim d) {
    return cuemu_dim{(unsigned)(i % d.x), (unsigned)(i / d.x % d.y), (unsigned)(i / d.x / d.y)};
}

// One CTA to the end; false when it failed (R.result says why).
bool run_cta(const ThreadState &ts) {
    const Grid &g = *R.grid;
    poison_shared(ts, g.dynamic_shared);
    const size_t n = R.lanes.size();
    for (size_t i = 0; i < n; ++i) start_lane(R.lanes[i], g_stacks[i]);
    size_t exited = 0;
    while (exited < n) {
        fill_order(R.order, n, R.settings.order);
        for (unsigned i : R.order) {
            if (R.lanes[i].state != State::Runnable) continue;
            resume(R.lanes[i]);
            if (R.failed) return false;
        }
        if (g_timed_out) {
            fail_sched(Fault::Timeout,
                       format("%s: the launch ran longer than the watchdog's %.0f s",
                              where().c_str(), R.settings.watchdog_seconds));
            return false;
        }
        exited = 0;
        for (const Lane &l : R.lanes) exited += l.state == State::Exited;
        if (exited == n) break;
        if (!resolve()) {
            if (!R.failed) fail_sched(Fault::LaunchFailed, deadlock());
            return false;
        }
    }
    return true;
}

// Every CTA of the grid in the configured order; false when a signal (a memory fault in
// kernel code, the watchdog) ended the grid. Kept apart from anything that lives across the
// siglongjmp back to its sigsetjmp.
__attribute__((noinline)) bool run_ctas(const ThreadState &ts, Order order, uint64_t ctas) {
    static std::vector<unsigned> cta_order;
    if (order == Order::Random) fill_order(cta_order, (size_t)ctas, Order::Random);
    if (sigsetjmp(R.abort_jmp, 1) != 0) return false;
    for (uint64_t k = 0; k < ctas && !R.failed; ++k) {
        uint64_t c = order == Order::Forward   ? k
                     : order == Order::Reverse ? ctas - 1 - k
                                               : cta_order[k];
        cuemu_block_idx = unflatten(c, R.grid->grid);
        run_cta(ts);
    }
    return true;
}

}  // namespace

const char *fault_name(Fault f) {
    switch (f) {
    case Fault::None: return "none";
    case Fault::LaunchFailed: return "launch failed";
    case Fault::Timeout: return "launch timeout";
    case Fault::IllegalAddress: return "illegal address";
    case Fault::MisalignedAddress: return "misaligned address";
    case Fault::StackOverflow: return "stack overflow";
    case Fault::IllegalInstruction: return "illegal instruction";
    case Fault::Trap: return "trap";
    }
    return "?";
}

GridResult run_grid(const Grid &g, const SimtSettings &s) {
    R.grid = &g;
    R.settings = s;
    R.failed = false;
    R.result = GridResult{};
    R.cur = nullptr;
    R.rng = s.seed ^ (g.serial * 0xD1B54A32D192ED03ull);
    cuemu_block_dim = g.block;
    cuemu_grid_dim = g.grid;
    const size_t n = (size_t)linear_count(g.block);
    if (!ensure_stacks(n, s.stack_bytes)) {
        return GridResult{Fault::LaunchFailed,
                          format("kernel %s: cannot map %zu fiber stacks", g.kernel->name, n)};
    }
    R.lanes.assign(n, Lane{});
    for (size_t i = 0; i < n; ++i) {
        Lane &l = R.lanes[i];
        l.linear = (unsigned)i;
        l.warp = (unsigned)(i / 32);
        l.lane = (unsigned)(i % 32);
        l.view.thread_idx = unflatten(i, g.block);
    }
    ThreadState *ts = &thread_state();
    g_timed_out = 0;
    g_signal = 0;
    install_handlers(*ts);
    arm(*ts, s.watchdog_seconds);
    if (!run_ctas(*ts, s.order, linear_count(g.grid))) {
        g_in_fiber = 0;
        R.failed = true;
        Fault f = Fault::LaunchFailed;
        R.result.message = signal_message(f);
        R.result.fault = f;
    }
    disarm(*ts);
    remove_handlers();
    cuemu_cur_lane = nullptr;
    R.grid = nullptr;
    return R.result;
}

}  // namespace cuemu

// ---- what kernel code calls ----

using namespace cuemu;

extern "C" uint64_t cuemu_warp_op(int kind, unsigned mask, uint64_t value, int arg, int width,
                                  int bytes, const char *file, int line) {
    Lane &l = *R.cur;
    if (!(mask >> l.lane & 1))
        fail_in_fiber(Fault::LaunchFailed,
                      format("%s: %s calls %s at %s:%d with mask %08x, which does not include "
                             "the calling lane",
                             where().c_str(), who(l).c_str(), op_name(kind), file, line, mask));
    if (width < 1 || width > 32 || (width & (width - 1)))
        fail_in_fiber(Fault::LaunchFailed,
                      format("%s: %s calls %s at %s:%d with width %d (a power of two up to 32)",
                             where().c_str(), who(l).c_str(), op_name(kind), file, line, width));
    l.wait = Wait{kind, mask, value, arg, width, bytes, file, line};
    l.state = State::AtWarp;
    yield(l);
    return l.result;
}

extern "C" int cuemu_block_barrier(int kind, int predicate, const char *file, int line) {
    Lane &l = *R.cur;
    l.wait = Wait{kind, 0, (uint64_t)(predicate != 0), 0, 32, 4, file, line};
    l.state = State::AtBarrier;
    yield(l);
    return (int)l.result;
}

extern "C" unsigned cuemu_activemask(void) {
    const Lane &me = *R.cur;
    unsigned mask = 0;
    for (unsigned b = 0; b < 32; ++b) {
        size_t k = (size_t)me.warp * 32 + b;
        if (k < R.lanes.size() && R.lanes[k].state != State::Exited) mask |= 1u << b;
    }
    return mask;
}

extern "C" void cuemu_trap(const char *what, const char *file, int line) {
    fail_in_fiber(Fault::Trap, format("%s, %s: %s at %s:%d", where().c_str(),
                                      who(*R.cur).c_str(), what, file, line));
}

extern "C" long long cuemu_clock64(void) { return ++R.clock; }
