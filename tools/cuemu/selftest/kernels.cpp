// The self-test kernels on the emulated device (selftest.cu compiled unchanged, with
// cuemu/device.h force-included). Their parameters are plain pointers: the registry's default
// footprint (each non-NULL pointer claims its first byte) applies.
#include "selftest.cu"

#include "cuemu/registry.h"

#include "cuemu_kernels.inc"
