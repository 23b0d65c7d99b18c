// The C++17 wrapper from an installed package: RAII handle, span-style step, exceptions.
#include <adam8bit.hpp>

#include <cmath>
#include <cstdio>
#include <vector>

int main() {
    adam8bit::Optimizer opt(adam8bit::Config().lr(1e-3));
    std::vector<float> p(8192, 0.0f), g(8192, 0.25f);
    const std::uint32_t id = opt.add_param(p.size());
    opt.step(id, p, g);
    for (float x : p)
        if (std::fabs(x + 1e-3f) > 2e-5f) return std::puts("consumer (C++): wrong update"), 1;
    try {
        opt.set_lr(-1.0);
        return std::puts("consumer (C++): set_lr(-1) did not throw"), 1;
    } catch (const adam8bit::Error &e) {
        if (e.status() != BNB_ERR_INVALID_ARGUMENT) return 1;
    }
    std::printf("consumer (C++): libadam8bit %s OK\n", adam8bit::version().c_str());
    return 0;
}
