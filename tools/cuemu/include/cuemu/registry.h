// registry.h: how a kernel translation unit makes its kernels launchable on the emulated device.
//
// A kernel TU includes its .cu source, then the generated list of CUEMU_KERNEL(name) lines (one
// per `__global__` function of the source, found by scripts/build-cuemu.sh). Each line
// registers the host-compiled kernel under its name, with the sizes and alignments of its
// parameters (deduced from its C++ signature) so the driver can copy a launch's `void **`
// parameters, and with a footprint check that names the device memory each parameter claims.
#ifndef CUEMU_REGISTRY_H
#define CUEMU_REGISTRY_H

#include <stddef.h>

#include <type_traits>
#include <utility>

namespace cuemu {

// The device memory a launch's parameters claim; the driver checks each claim against the
// live allocations when the launch runs (a host pointer or freed memory is an illegal address).
class Footprint {
public:
    // `bytes` starting at `p` must lie in one live device allocation. `what` names the
    // parameter field for the error message.
    virtual void device_range(const void *p, size_t bytes, const char *what, long index) = 0;
    // A parameter value no launch can mean (a count beyond its array, say).
    virtual void invalid(const char *what, long index) = 0;

protected:
    ~Footprint() = default;
};

struct ParamSpec {
    size_t size, align;
};

struct KernelEntry {
    const char *name;
    // Runs the kernel body for the current CUDA thread with parameters at `args[i]`.
    void (*invoke)(void *const *args);
    // Reports the device memory the parameters claim.
    void (*footprint)(void *const *args, Footprint &fp);
    const ParamSpec *params;
    size_t param_count;
};

void register_kernel(const KernelEntry *entry);

}  // namespace cuemu

// A pointer parameter claims at least the byte it points to; NULL claims nothing (a kernel may
// receive a pointer it does not use). Parameters of other types claim nothing unless a kernel
// TU declares `cuemu_footprint(cuemu::Footprint &, const T &, long)` for their type.
template <class T>
inline void cuemu_footprint(cuemu::Footprint &fp, T *const &p, long index) {
    if (p) fp.device_range((const void *)p, 1, "pointer parameter", index);
}
template <class T, class = std::enable_if_t<!std::is_pointer<T>::value>>
inline void cuemu_footprint(cuemu::Footprint &, const T &, long) {}

namespace cuemu {

template <class F>
struct Kernel;

template <class... A>
struct Kernel<void (*)(A...)> {
    static constexpr size_t count = sizeof...(A);
    using Seq = std::make_index_sequence<count>;
    template <void (*F)(A...), size_t... I>
    static void invoke(void *const *args, std::index_sequence<I...>) {
        F(*static_cast<A *>(args[I])...);
    }
    template <size_t... I>
    static void footprint(void *const *args, Footprint &fp, std::index_sequence<I...>) {
        (cuemu_footprint(fp, *static_cast<const A *>(args[I]), (long)I), ...);
    }
    // One extra element, so a kernel without parameters still has a (zero-length) list.
    static constexpr ParamSpec params[count + 1] = {{sizeof(A), alignof(A)}..., {0, 0}};
};

}  // namespace cuemu

#define CUEMU_KERNEL(fn)                                                             \
    namespace cuemu_registered_##fn {                                                \
    using K = cuemu::Kernel<decltype(&fn)>;                                          \
    static void invoke(void *const *args) { K::invoke<&fn>(args, K::Seq{}); }         \
    static void footprint(void *const *args, cuemu::Footprint &fp) {                 \
        K::footprint(args, fp, K::Seq{});                                            \
    }                                                                                \
    static const cuemu::KernelEntry entry = {#fn, invoke, footprint, K::params, K::count}; \
    [[maybe_unused]] static const bool registered = (cuemu::register_kernel(&entry), true);           \
    }

#endif
