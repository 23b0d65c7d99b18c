// control.cpp: counters, fault injection and error notes, and the cuemu_* functions tests
// call through dlsym (include/cuemu/control.h).
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "cuemu/control.h"
#include "state.h"

namespace cuemu {

Counters g_counters;

namespace {

struct Injection {
    uint64_t countdown;
    CUresult result;
};
std::map<std::string, std::vector<Injection>> g_call_faults;
std::vector<Injection> g_launch_faults;
std::string g_last_error;

// Whether `entry` is a driver entry point this library exports (the name tests pass to
// cuemu_fail_call): looked up in the library itself, so the list cannot go stale.
bool exported(const char *entry) {
    if (!entry || strncmp(entry, "cu", 2) != 0 || strncmp(entry, "cuemu_", 6) == 0) return false;
    Dl_info self;
    if (!dladdr((void *)&exported, &self)) return false;
    void *lib = dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD);
    bool found = lib && dlsym(lib, entry);
    if (lib) dlclose(lib);
    return found;
}

}  // namespace

CUresult enter(const char *entry) {
    g_counters.calls[entry] += 1;
    auto it = g_call_faults.find(entry);
    if (it == g_call_faults.end()) return CUDA_SUCCESS;
    CUresult fired = CUDA_SUCCESS;
    for (auto f = it->second.begin(); f != it->second.end();) {
        if (--f->countdown == 0) {
            fired = f->result;
            f = it->second.erase(f);
        } else {
            ++f;
        }
    }
    if (fired != CUDA_SUCCESS) {
        note_error(std::string("injected failure of ") + entry);
        log("%s: injected failure %d", entry, (int)fired);
    }
    return fired;
}

CUresult take_launch_fault() {
    CUresult fired = CUDA_SUCCESS;
    for (auto f = g_launch_faults.begin(); f != g_launch_faults.end();) {
        if (--f->countdown == 0) {
            fired = f->result;
            f = g_launch_faults.erase(f);
        } else {
            ++f;
        }
    }
    return fired;
}

void note_error(const std::string &message) {
    g_last_error = message;
    log("error: %s", message.c_str());
}

const std::string &last_error() { return g_last_error; }

}  // namespace cuemu

using namespace cuemu;

extern "C" {

int cuemu_is_emulator(void) { return 1; }

unsigned long long cuemu_counter(const char *name) {
    std::lock_guard<std::mutex> lock(g_mu);
    std::string n = name ? name : "";
    if (n == "launches") return g_counters.launches;
    if (n == "launches_run") return g_counters.launches_run;
    if (n == "host_syncs") return g_counters.host_syncs;
    if (n == "prefetches") return g_counters.prefetches;
    if (n == "pending") return g_pending.size();
    if (n == "live_allocations" || n == "live_bytes") {
        unsigned long long count = 0, bytes = 0;
        for (auto &kv : g_allocs)
            if (kv.second.kind != Alloc::PinnedHost) {
                ++count;
                bytes += kv.second.size;
            }
        return n == "live_allocations" ? count : bytes;
    }
    if (n.compare(0, 6, "calls:") == 0) {
        auto it = g_counters.calls.find(n.substr(6));
        return it == g_counters.calls.end() ? 0 : it->second;
    }
    if (n.compare(0, 9, "launches:") == 0) {
        auto it = g_counters.kernel_launches.find(n.substr(9));
        return it == g_counters.kernel_launches.end() ? 0 : it->second;
    }
    return 0;
}

void cuemu_reset_counters(void) {
    std::lock_guard<std::mutex> lock(g_mu);
    g_counters = Counters{};
}

int cuemu_fail_call(const char *entry, unsigned long long nth, int result) {
    std::lock_guard<std::mutex> lock(g_mu);
    if (!exported(entry) || nth == 0) return -1;
    g_call_faults[entry].push_back(Injection{nth, (CUresult)result});
    return 0;
}

void cuemu_fail_launch(unsigned long long nth, int result) {
    std::lock_guard<std::mutex> lock(g_mu);
    if (nth) g_launch_faults.push_back(Injection{nth, (CUresult)result});
}

void cuemu_clear_faults(void) {
    std::lock_guard<std::mutex> lock(g_mu);
    g_call_faults.clear();
    g_launch_faults.clear();
}

const char *cuemu_last_error(void) {
    std::lock_guard<std::mutex> lock(g_mu);
    return g_last_error.c_str();
}

}  // extern "C"
