// adam8bit_abi.cuh: what the host passes to the kernels. src/cuda/abi.rs mirrors every struct
// field for field (#[repr(C)]); tests/cuda_abi_layout.rs compares every struct size, field
// offset and A8_ constant.
#ifndef ADAM8BIT_ABI_CUH
#define ADAM8BIT_ABI_CUH

#include "adam8bit_math.cuh"

#define A8_MAX_TENSORS 128
#define A8_BLOCK 256

enum { A8_F32 = 0, A8_F16 = 1, A8_BF16 = 2 };
enum { A8_CLIP = 1u, A8_UNORM = 2u, A8_SKIP_ZEROS = 4u, A8_ALIGNED16 = 8u, A8_DYNAMIC = 16u };

// Per-parameter device scalars (one per parameter, in device memory).
struct a8_aux {
    unsigned long long nonfinite;
    float max1, max2;           // non-blockwise: the scales of the stored codes
    float dec1, dec2;           // non-blockwise: the scales that decode the codes during a step
    uint32_t new_max1, new_max2;// non-blockwise: bits of this step's max |m|, |v| (atomicMax)
    float gnorm_scale;          // this step's percentile-clipping scale (1 without clipping)
    float update_scale;         // this step's max_unorm scale (1 without it)
    float unorm_vec;            // this step's squared update norm
    float history[A8_HISTORY];  // percentile clipping's squared gradient norms
};

struct a8_tensor {
    void *p;
    const void *g;
    void *s1, *s2;               // codes (8-bit paths) or fp32 moments
    float *a1, *a2;              // blockwise absmax
    double *partial;             // f64 reduction partials: 2 per block (1 for the gradient norm)
    a8_aux *aux;
    unsigned long long n;
    unsigned long long first_block;  // prefix of blocks over the launch's tensors
    a8_scalars k;
    uint32_t dtype, flags;
    unsigned long long t;            // the step being taken (percentile clipping's slot)
    int32_t percentile;
    float max_unorm;
};

struct a8_batch {
    const float *maps;               // Q1[256], Q2[256] in device memory
    uint32_t count;
    unsigned long long total_blocks;
    a8_tensor t[A8_MAX_TENSORS];
};

#endif
