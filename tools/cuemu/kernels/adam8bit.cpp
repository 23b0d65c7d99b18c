// The library's kernels on the emulated device: csrc/adam8bit.cu compiled unchanged (with
// cuemu/device.h force-included), registered under their names, and the device memory that
// each launch's a8_batch claims, which the driver checks before the launch runs.
#include "adam8bit.cu"

#include "cuemu/registry.h"

void cuemu_footprint(cuemu::Footprint &fp, const a8_batch &b, long) {
    fp.device_range(b.maps, sizeof(a8_maps), "a8_batch.maps", -1);
    if (b.count == 0 || b.count > A8_MAX_TENSORS) {
        fp.invalid("a8_batch.count", (long)b.count);
        return;
    }
    unsigned long long blocks_before = 0, chunks_before = 0;
    for (uint32_t i = 0; i < b.count; ++i) {
        const a8_tensor &t = b.t[i];
        const long at = (long)i;
        if (t.first_block != blocks_before || t.first_chunk != chunks_before || t.dtype > A8_BF16)
            fp.invalid("a8_tensor", at);
        const unsigned long long n = t.n, blocks = (n + A8_BLOCK - 1) / A8_BLOCK;
        const unsigned long long chunks = (blocks + A8_CHUNK - 1) / A8_CHUNK;
        blocks_before += blocks;
        chunks_before += chunks;
        const size_t elem = t.dtype == A8_F32 ? 4 : 2;
        fp.device_range(t.p, n * elem, "a8_tensor.p", at);
        fp.device_range(t.g, n * elem, "a8_tensor.g", at);
        // Codes on the 8-bit paths (blockwise: with absmax; non-blockwise: A8_DYNAMIC), fp32
        // moments on the 32-bit path.
        const bool eight_bit = t.a1 || (t.flags & A8_DYNAMIC);
        const size_t state = eight_bit ? n : n * 4;
        fp.device_range(t.s1, state, "a8_tensor.s1", at);
        fp.device_range(t.s2, state, "a8_tensor.s2", at);
        if (t.a1 || t.a2) {
            fp.device_range(t.a1, blocks * 4, "a8_tensor.a1", at);
            fp.device_range(t.a2, blocks * 4, "a8_tensor.a2", at);
        }
        // Block sums, then chunk sums: 1 f64 each for the gradient norm, 2 for max_unorm.
        if (t.flags & (A8_CLIP | A8_UNORM))
            fp.device_range(t.partial, (blocks + chunks) * 8 * ((t.flags & A8_UNORM) ? 2 : 1),
                            "a8_tensor.partial", at);
        fp.device_range(t.aux, sizeof(a8_aux), "a8_tensor.aux", at);
    }
    if (blocks_before != b.total_blocks) fp.invalid("a8_batch.total_blocks", -1);
    if (chunks_before != b.total_chunks) fp.invalid("a8_batch.total_chunks", -1);
}

#include "cuemu_kernels.inc"
