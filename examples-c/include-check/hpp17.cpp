// adam8bit.hpp must compile on its own, first, as C++17 (-Wall -Wextra -Werror -pedantic),
// including its templates: instantiate the Span conversions the wrapper promises.
#include "adam8bit.hpp"

#include <array>

int adam8bit_header_check();
int adam8bit_header_check() {
    std::vector<float> v(4);
    std::array<float, 4> a{};
    float c[4] = {};
    adam8bit::Span<float> s1(v), s2(a), s3(c);
    adam8bit::Span<const float> s4(v);
    return static_cast<int>(s1.size() + s2.size() + s3.size() + s4.size());
}
