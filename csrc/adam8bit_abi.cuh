// adam8bit_abi.cuh: what the host passes to the kernels. src/cuda/abi.rs mirrors every struct
// field for field (#[repr(C)]); tests/cuda_abi_layout.rs compares every struct size, field
// offset and A8_ constant.
#ifndef ADAM8BIT_ABI_CUH
#define ADAM8BIT_ABI_CUH

#include "adam8bit_math.cuh"

#define A8_MAX_TENSORS 128
#define A8_BLOCK 256
// Blocks per chunk of the finalize kernels' first summation level (2^19 elements).
#define A8_CHUNK 2048

enum { A8_F32 = 0, A8_F16 = 1, A8_BF16 = 2 };
// A8_VECTOR: the parameter and gradient pointers are aligned for the quad accesses (16 bytes
// for fp32, 8 for fp16/bf16).
// A8_STOCHASTIC: updated fp16/bf16 parameters round stochastically (rule 19).
enum { A8_CLIP = 1u, A8_UNORM = 2u, A8_SKIP_ZEROS = 4u, A8_VECTOR = 8u, A8_DYNAMIC = 16u,
       A8_STOCHASTIC = 32u };

// Everything the kernels look codes up in, in device memory, staged in shared memory per CTA:
// the two maps' values and their packed bucket tables (a8_quantize_signed/_unsigned).
struct a8_maps {
    float q1[256], q2[256];
    uint32_t b1[A8_BUCKETS], b2[A8_BUCKETS];
};

// Per-parameter device scalars (one per parameter, in device memory). The step counter and the
// per-step accumulators come in two slots, by the parity of the host's count of step calls:
// call c reads the step count call c - 1 left in slot (c + 1) & 1, writes its own to slot c & 1,
// accumulates into slot c & 1 and clears slot (c + 1) & 1 for the next call, so no launch zeroes
// them and a skipped call (found_inf) can leave everything as it was.
struct a8_aux {
    unsigned long long step[2];  // steps taken
    unsigned long long nonfinite[2];
    float max1, max2;           // non-blockwise: the scales of the stored codes
    float dec1, dec2;           // non-blockwise: the scales that decode the codes during a step
    uint32_t new_max1[2], new_max2[2];  // non-blockwise: bits of the step's max |m|, |v|
    float gnorm_scale;          // this step's percentile-clipping scale (1 without clipping)
    float update_scale;         // this step's max_unorm scale (1 without it)
    float unorm_vec;            // this step's squared update norm
    uint32_t ticket;            // finalize: chunks of this step summed so far
    float history[A8_HISTORY];  // percentile clipping's squared gradient norms
};

struct a8_tensor {
    void *p;
    const void *g;
    void *s1, *s2;               // codes (8-bit paths) or fp32 moments
    float *a1, *a2;              // blockwise absmax
    double *partial;             // f64 sums: 2 per block (1 for the gradient norm), then per chunk
    a8_aux *aux;
    unsigned long long n;
    unsigned long long first_block;  // prefix of blocks over the launch's tensors
    unsigned long long first_chunk;  // prefix of finalize chunks over the launch's tensors
    a8_scalars k;
    uint32_t dtype, flags;
    uint32_t powers_last;            // the power table's last index; later steps read it
    unsigned long long call;         // the host's number of this step call (its slot parity)
    double lr, eps;                  // rule 2's inputs the device scalars are made from
    const double *powers;            // beta1^t, beta2^t for t = 0 .. powers_last (the host's pow)
    int32_t percentile;
    float max_unorm;
    uint32_t sr_key[2];              // rule 19: the Philox key of this parameter's draws
    unsigned long long sr_first;     // rule 19: the full tensor's index of element 0 (a shard's offset)
};

struct a8_batch {
    const a8_maps *maps;
    const float *grad_scale;         // loss scaling: g / *grad_scale (NULL: none)
    const float *found_inf;          // *found_inf != 0: the call changes nothing (NULL: step)
    uint32_t count;
    unsigned long long total_blocks;
    unsigned long long total_chunks;
    a8_tensor t[A8_MAX_TENSORS];
};

#endif
