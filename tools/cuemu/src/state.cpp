// state.cpp: contexts, device memory and the stream model of the emulated device.
//
// Stream model: work runs only when the host needs it to have run (a synchronisation, an event
// wait, a blocking copy), and then only what that requires, so a missing wait between streams
// gives a wrong result instead of passing because the work happened at once. An operation
// depends on the previous one of its stream; on the legacy stream also on the last one of
// every blocking stream of the context, and on a blocking stream on the legacy stream's last
// (CUDA's implicit legacy-stream synchronisation; streams created CU_STREAM_NON_BLOCKING take
// no part in it); and on what it explicitly waits for (cuStreamWaitEvent).
#include "state.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

namespace cuemu {

std::mutex g_mu;
bool g_initialized = false;

namespace {

long env_long(const char *name, long fallback) {
    const char *v = getenv(name);
    return v && *v ? strtol(v, nullptr, 10) : fallback;
}

Settings load_settings() {
    Settings s;
    s.sm_count = (int)env_long("CUEMU_SM_COUNT", s.sm_count);
    if (s.sm_count < 1) s.sm_count = 1;
    s.memory_bytes = (size_t)env_long("CUEMU_MEMORY_MB", (long)(s.memory_bytes >> 20)) << 20;
    s.concurrent_managed = env_long("CUEMU_CONCURRENT_MANAGED", 1) != 0;
    s.verbose = env_long("CUEMU_VERBOSE", 0) != 0;
    s.simt.watchdog_seconds = (double)env_long("CUEMU_WATCHDOG_S", 120);
#if defined(__SANITIZE_ADDRESS__)
    const long stack_kb = 1024;
#else
    const long stack_kb = 256;
#endif
    s.simt.stack_bytes = (size_t)env_long("CUEMU_STACK_KB", stack_kb) << 10;
    if (const char *o = getenv("CUEMU_ORDER")) {
        if (!strcmp(o, "forward")) {
            s.simt.order = Order::Forward;
        } else if (!strcmp(o, "reverse")) {
            s.simt.order = Order::Reverse;
        } else if (!strncmp(o, "random", 6)) {
            s.simt.order = Order::Random;
            s.simt.seed = o[6] == ':' ? strtoull(o + 7, nullptr, 0) : 1;
        } else {
            fprintf(stderr, "cuemu: CUEMU_ORDER=%s is not forward, reverse or random[:SEED]; "
                            "using forward\n", o);
        }
    }
    return s;
}

pthread_key_t g_current_key, g_stack_key;
pthread_once_t g_keys_once = PTHREAD_ONCE_INIT;

void delete_stack(void *p) { delete (std::vector<Context *> *)p; }

void make_keys() {
    pthread_key_create(&g_current_key, nullptr);
    pthread_key_create(&g_stack_key, delete_stack);
}

}  // namespace

Settings &settings() {
    static Settings s = load_settings();
    return s;
}

void log(const char *fmt, ...) {
    if (!settings().verbose) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("cuemu: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

// ---- contexts ----

Context &primary() {
    static Context c;
    return c;
}

// The current context lives in a pthread key, not thread_local: this library's TLS block is
// the kernels' shared memory, which the scheduler poisons.
Context *current() {
    pthread_once(&g_keys_once, make_keys);
    return (Context *)pthread_getspecific(g_current_key);
}

void set_current(Context *c) {
    pthread_once(&g_keys_once, make_keys);
    pthread_setspecific(g_current_key, c);
}

std::vector<Context *> &context_stack() {
    pthread_once(&g_keys_once, make_keys);
    auto *v = (std::vector<Context *> *)pthread_getspecific(g_stack_key);
    if (!v) {
        v = new std::vector<Context *>;
        pthread_setspecific(g_stack_key, v);
    }
    return *v;
}

CUresult need_context(Context *&out) {
    Context *c = current();
    if (!c) return CUDA_ERROR_INVALID_CONTEXT;
    if (!c->active) return CUDA_ERROR_CONTEXT_IS_DESTROYED;
    if (c->sticky != CUDA_SUCCESS) return c->sticky;
    out = c;
    return CUDA_SUCCESS;
}

void destroy_context(Context &c) {
    for (auto it = g_pending.begin(); it != g_pending.end();)
        it = it->second.ctx == &c ? g_pending.erase(it) : std::next(it);
    for (auto it = g_allocs.begin(); it != g_allocs.end();) {
        if (it->second.ctx != &c) {
            ++it;
            continue;
        }
        uintptr_t base = it->first;
        ++it;
        release(base);
    }
    for (Stream *s : c.streams) delete s;
    for (Event *e : c.events) delete e;
    for (Module *m : c.modules) delete m;
    c.streams.clear();
    c.per_thread.clear();
    c.events.clear();
    c.modules.clear();
    c.legacy = Stream{};
    c.sticky = CUDA_SUCCESS;
    c.active = false;
}

// ---- memory ----

std::map<uintptr_t, Alloc> g_allocs;
size_t g_used_bytes = 0;

const Alloc *find_alloc(const void *p, size_t bytes, uintptr_t *base) {
    uintptr_t a = (uintptr_t)p;
    auto it = g_allocs.upper_bound(a);
    if (it == g_allocs.begin()) return nullptr;
    --it;
    if (a < it->first || a - it->first > it->second.size || it->second.size - (a - it->first) < bytes)
        return nullptr;
    if (base) *base = it->first;
    return &it->second;
}

CUresult check_device_range(CUdeviceptr p, size_t bytes, const char *what) {
    const Alloc *a = find_alloc((const void *)p, bytes);
    if (a && a->kind != Alloc::PinnedHost) return CUDA_SUCCESS;
    note_error(std::string(what) + ": [" + std::to_string(p) + ", +" + std::to_string(bytes) +
               ") is not inside one live device allocation");
    return CUDA_ERROR_INVALID_VALUE;
}

bool is_pinned(const void *p, size_t bytes) {
    const Alloc *a = find_alloc(p, bytes);
    return a && a->kind == Alloc::PinnedHost;
}

CUresult allocate(size_t bytes, Alloc::Kind kind, void **out) {
    if (bytes == 0) return CUDA_ERROR_INVALID_VALUE;
    if (kind != Alloc::PinnedHost &&
        (bytes > settings().memory_bytes || g_used_bytes > settings().memory_bytes - bytes))
        return CUDA_ERROR_OUT_OF_MEMORY;
    void *p = nullptr;
    // Exactly `bytes`, 256-aligned like cuMemAlloc: an AddressSanitizer build of the emulator
    // then reports a kernel's first byte out of bounds.
    if (posix_memalign(&p, 256, bytes) != 0) return CUDA_ERROR_OUT_OF_MEMORY;
    // Fresh device memory holds garbage on a GPU: a NaN pattern here, never zeros.
    memset(p, 0xFF, bytes);
    g_allocs[(uintptr_t)p] = Alloc{bytes, kind, current()};
    if (kind != Alloc::PinnedHost) g_used_bytes += bytes;
    *out = p;
    return CUDA_SUCCESS;
}

void release(uintptr_t base) {
    auto it = g_allocs.find(base);
    if (it == g_allocs.end()) return;
    if (it->second.kind != Alloc::PinnedHost) g_used_bytes -= it->second.size;
    memset((void *)base, 0xDD, it->second.size);
    free((void *)base);
    g_allocs.erase(it);
}

// ---- streams ----

std::map<uint64_t, Op> g_pending;
namespace {
uint64_t g_next_op = 1;
}

Stream *resolve_stream(CUstream s, Context &c) {
    if (s == nullptr || s == CU_STREAM_LEGACY) {
        c.legacy.ctx = &c;
        c.legacy.legacy = true;
        return &c.legacy;
    }
    if (s == CU_STREAM_PER_THREAD) {
        auto &slot = c.per_thread[pthread_self()];
        if (!slot) {
            slot = std::make_unique<Stream>();
            slot->ctx = &c;
        }
        return slot.get();
    }
    Stream *st = (Stream *)s;
    return c.streams.count(st) ? st : nullptr;
}

uint64_t enqueue(Stream &s, Op op, std::vector<uint64_t> extra) {
    Context &c = *s.ctx;
    uint64_t id = g_next_op++;
    op.ctx = &c;
    op.deps = std::move(extra);
    if (s.last) op.deps.push_back(s.last);
    auto blocking = [&](Stream &o) {
        if (&o != &s && o.last && o.blocking()) op.deps.push_back(o.last);
    };
    if (s.legacy) {
        for (Stream *o : c.streams) blocking(*o);
        for (auto &kv : c.per_thread) blocking(*kv.second);
    } else if (s.blocking() && c.legacy.last) {
        op.deps.push_back(c.legacy.last);
    }
    s.last = id;
    log("queue #%llu %s", (unsigned long long)id, op.what.c_str());
    g_pending.emplace(id, std::move(op));
    return id;
}

void make_sticky(Context &c, CUresult r) {
    c.sticky = r;
    fprintf(stderr, "cuemu: sticky error %d: %s\n", (int)r, last_error().c_str());
    // Work queued behind a fault never runs on a GPU either: the context is dead.
    for (auto it = g_pending.begin(); it != g_pending.end();)
        it = it->second.ctx == &c ? g_pending.erase(it) : std::next(it);
}

CUresult force(uint64_t id) {
    std::vector<uint64_t> todo{id};
    while (!todo.empty()) {
        auto it = g_pending.find(todo.back());
        if (it == g_pending.end()) {
            todo.pop_back();
            continue;
        }
        bool waits = false;
        for (uint64_t d : it->second.deps)
            if (g_pending.count(d)) {
                todo.push_back(d);
                waits = true;
                break;
            }
        if (waits) continue;
        const uint64_t run_id = it->first;
        Op op = std::move(it->second);
        g_pending.erase(it);
        todo.pop_back();
        log("run #%llu %s", (unsigned long long)run_id, op.what.c_str());
        if (op.ctx->sticky != CUDA_SUCCESS) return op.ctx->sticky;
        CUresult r = op.run ? op.run() : CUDA_SUCCESS;
        if (r != CUDA_SUCCESS) {
            make_sticky(*op.ctx, r);
            return r;
        }
    }
    return CUDA_SUCCESS;
}

// Newest first: work that does not depend on an older operation runs before it, so a missing
// wait (a kernel on a non-blocking stream reading an upload queued on the legacy stream) reads
// stale data even when the host waits for everything at once.
CUresult force_all(Context &c) {
    while (true) {
        auto it = g_pending.rbegin();
        while (it != g_pending.rend() && it->second.ctx != &c) ++it;
        if (it == g_pending.rend()) return c.sticky;
        CUresult r = force(it->first);
        if (r != CUDA_SUCCESS) return r;
    }
}

}  // namespace cuemu
