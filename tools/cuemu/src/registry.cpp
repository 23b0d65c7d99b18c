// registry.cpp: the host-compiled kernels, by name (filled by CUEMU_KERNEL's static
// initialisers when the library loads).
#include <string.h>

#include <vector>

#include "state.h"

namespace cuemu {
namespace {
std::vector<const KernelEntry *> &registry() {
    static std::vector<const KernelEntry *> kernels;
    return kernels;
}
}  // namespace

void register_kernel(const KernelEntry *entry) { registry().push_back(entry); }

const KernelEntry *find_kernel(const char *name) {
    for (const KernelEntry *k : registry())
        if (!strcmp(k->name, name)) return k;
    return nullptr;
}

}  // namespace cuemu
