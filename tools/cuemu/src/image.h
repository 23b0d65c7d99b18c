// image.h: what the emulator reads from a module image (an nvcc fatbin or a bare cubin).
#ifndef CUEMU_IMAGE_H
#define CUEMU_IMAGE_H

#include <stddef.h>

#include <string>
#include <vector>

namespace cuemu {

// One kernel of the cubin the device would load, as ptxas compiled it.
struct ImageKernel {
    std::string name;
    unsigned max_threads = 0;    // __launch_bounds__ (EIATTR_MAX_THREADS); 0 when none
    unsigned param_bytes = 0;    // the parameter block (EIATTR_CBANK_PARAM_SIZE)
    unsigned registers = 0;      // EIATTR_REGCOUNT
    unsigned local_bytes = 0;    // stack frame per thread (EIATTR_FRAME_SIZE)
    unsigned static_shared = 0;  // the .nv.shared.<kernel> section, as the cubin sizes it
};

struct Image {
    unsigned arch = 0;  // the SM version of the chosen cubin, e.g. 90
    size_t bytes = 0;   // the length of the whole image
    std::vector<ImageKernel> kernels;
};

// Parses `data` (whose length the image's own headers give) and picks the cubin for `arch`.
// False with `error` set when the image is not one the emulated device can load.
bool parse_image(const void *data, unsigned arch, Image &out, std::string &error);

}  // namespace cuemu

#endif
