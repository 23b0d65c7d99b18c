// Host driver for tests/cuda_math.rs: runs the per-element functions of csrc/adam8bit_math.cuh,
// compiled by g++ without FMA contraction, on records read from stdin, and writes the results to
// stdout. All values travel as little-endian bit patterns, so nothing is lost in formatting.
//
// Input:  Q1[256] Q2[256] (u32 bits), B1[A8_BUCKETS] B2[A8_BUCKETS] (the packed bucket tables);
//         then sections "tag(u32) count(u64) records...".
// Output: per section, per record, the results listed at its case below.
#include <cstdio>
#include <vector>

#include "../csrc/adam8bit_abi.cuh"

template <class T> static bool get(T &x) { return fread(&x, sizeof x, 1, stdin) == 1; }
template <class T> static void put(T x) { fwrite(&x, sizeof x, 1, stdout); }

int main() {
    static a8_maps maps;
    float *q1 = maps.q1, *q2 = maps.q2;
    const uint32_t *b1 = maps.b1, *b2 = maps.b2;
    if (fread(&maps, sizeof maps, 1, stdin) != 1) return 2;
    uint32_t tag;
    while (get(tag)) {
        uint64_t count;
        if (!get(count)) return 2;
        for (uint64_t r = 0; r < count; ++r) {
            switch (tag) {
            case 1: {  // quantizer: x -> signed code of x with the sign rule by x, unsigned code,
                       // then both again by the Bounded codes where x meets their precondition
                float x;
                if (!get(x)) return 2;
                put(a8_momentum_code(b1, x, x));
                put(a8_variance_code(b2, x));
                const uint32_t u = a8_bits(x);
                put((u & 0x7FFFFFFFu) < 0x40000000u ? a8_momentum_code<true>(b1, x, x)
                                                    : a8_momentum_code(b1, x, x));
                put(u < 0x40000000u ? a8_variance_code<true>(b2, x) : a8_variance_code(b2, x));
                break;
            }
            case 2: {  // conversions: u32 pattern -> f16, bf16 of it; f32 of its low 16 bits
                uint32_t u;
                if (!get(u)) return 2;
                put(a8_f32_to_f16(a8_float(u)));
                put(a8_f32_to_bf16(a8_float(u)));
                put(a8_bits(a8_f16_to_f32((uint16_t)u)));
                put(a8_bits(a8_bf16_to_f32((uint16_t)u)));
                break;
            }
            case 3: {  // element math
                a8_scalars k;
                uint8_t c1, c2;
                uint32_t skip;
                float s1, s2, g, p, m, v;
                if (!(get(k) && get(c1) && get(c2) && get(skip) && get(s1) && get(s2) && get(g) &&
                      get(p) && get(m) && get(v)))
                    return 2;
                float m8, v8;
                bool f8 = a8_moments8(q1[c1], q2[c2], s1, s2, g, k, m8, v8);
                put(m8);
                put(v8);
                put((uint8_t)f8);
                // The Finite variant, where g is finite (the general one's again where not).
                float mf = m8, vf = v8;
                if (a8_isfinite(g)) a8_moments8<true>(q1[c1], q2[c2], s1, s2, g, k, mf, vf);
                put(mf);
                put(vf);
                put(a8_updated_param(p, m8, v8, k.step_size, k));
                put(a8_unorm_term(m8, v8, k));
                // codes after the blockwise normalisation (a division by the scale)
                put(a8_momentum_code(b1, a8_div(m8, s1), m8));
                put(a8_variance_code(b2, a8_div(v8, s2)));
                float m32 = m, v32 = v;
                bool a32 = a8_moments32(m32, v32, g, skip != 0, k);
                put(m32);
                put(v32);
                put((uint8_t)a32);
                put(a8_updated_param(p, m32, v32, k.step_size, k));
                break;
            }
            case 4: {  // percentile clipping: history[100], norm, t, percentile -> history, scale
                float history[A8_HISTORY], norm;
                uint64_t t;
                int32_t percentile;
                for (float &x : history)
                    if (!get(x)) return 2;
                if (!(get(norm) && get(t) && get(percentile))) return 2;
                // As a8_finalize_clip does it: record, then the entry of rank `percentile`.
                uint32_t slot = a8_history_record(history, norm, t);
                float clip_sq = 0.0f;
                for (uint32_t i = 0; i < A8_HISTORY; ++i)
                    if (a8_history_rank(history, i) == (uint32_t)percentile) clip_sq = history[i];
                float scale = a8_clip_scale(history[slot], clip_sq);
                for (float x : history) put(x);
                put(scale);
                break;
            }
            case 5: {  // a block's quantizer division: value, absmax -> both codes, as
                       // a8_block_codes takes them (fast where the absmax bounds the value),
                       // then both from the reciprocal's quotient wherever that is exact
                float a, b;
                if (!(get(a) && get(b))) return 2;
                const float y = a8_div(1.0f, b), abs_a = a < 0 ? -a : a;
                const bool rcp = a8_divides_by_reciprocal(b);
                if (rcp && abs_a <= b) {
                    put(a8_momentum_code<true>(b1, a8_quotient(a, b, y), a));
                    put(a8_variance_code<true>(b2, a8_quotient(abs_a, b, y)));
                } else {
                    put(a8_momentum_code(b1, a8_div(a, b), a));
                    put(a8_variance_code(b2, a8_div(abs_a, b)));
                }
                // The general codes of the quotient by reciprocal, wherever that is exact.
                put(a8_momentum_code(b1, rcp ? a8_quotient(a, b, y) : a8_div(a, b), a));
                put(a8_variance_code(b2, rcp ? a8_quotient(abs_a, b, y) : a8_div(abs_a, b)));
                break;
            }
            case 6: {  // rule 19: key, counter -> Philox4x32-10; x, draw -> fp16, bf16
                uint32_t key[2], ctr[4], u, draw;
                if (!(get(key) && get(ctr) && get(u) && get(draw))) return 2;
                a8_philox(key[0], key[1], ctr);
                for (uint32_t w : ctr) put(w);
                put(a8_f32_to_f16_stochastic(a8_float(u), draw));
                put(a8_f32_to_bf16_stochastic(a8_float(u), draw));
                break;
            }
            case 7: {  // a loss scale: g, scale -> whether it is a power of two, g times 1 / scale
                float g, scale;
                if (!(get(g) && get(scale))) return 2;
                put((uint8_t)a8_is_power_of_two(scale));
                put(g * a8_div(1.0f, scale));
                break;
            }
            default:
                return 3;
            }
        }
    }
    return 0;
}
