//! [`Lanes`] for AVX2 + F16C: 8 lanes, masks as all-ones lanes.

use std::arch::x86_64::*;

use super::Lanes;

#[derive(Clone, Copy)]
pub struct Avx2;

/// Byte shuffle moving the low byte of each dword of a 128-bit lane to the lane's first 4 bytes.
#[inline(always)]
unsafe fn low_bytes() -> __m256i {
    let lane = _mm_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    _mm256_broadcastsi128_si256(lane)
}

#[inline(always)]
unsafe fn narrow_u16(x: __m256i) -> __m128i {
    // Lanes hold values below 2^16, so the unsigned saturating pack is a plain truncation.
    _mm_packus_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256::<1>(x))
}

// SAFETY: only instantiated by kernels compiled with `avx2,f16c` after runtime detection.
unsafe impl Lanes for Avx2 {
    const N: usize = 8;
    type F = __m256;
    type I = __m256i;
    type M = __m256i;

    #[inline(always)]
    unsafe fn splat(x: f32) -> __m256 {
        _mm256_set1_ps(x)
    }
    #[inline(always)]
    unsafe fn splat_i(x: i32) -> __m256i {
        _mm256_set1_epi32(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, x: __m256) {
        _mm256_storeu_ps(p, x)
    }
    #[inline(always)]
    unsafe fn load_u8(p: *const u8) -> __m256i {
        _mm256_cvtepu8_epi32(_mm_loadl_epi64(p.cast()))
    }
    #[inline(always)]
    unsafe fn store_u8(p: *mut u8, x: __m256i) {
        let packed = _mm256_shuffle_epi8(x, low_bytes());
        let joined = _mm256_permutevar8x32_epi32(packed, _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0));
        _mm_storel_epi64(p.cast(), _mm256_castsi256_si128(joined))
    }
    #[inline(always)]
    unsafe fn load_u16(p: *const u16) -> __m256i {
        _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()))
    }
    #[inline(always)]
    unsafe fn store_u16(p: *mut u16, x: __m256i) {
        _mm_storeu_si128(p.cast(), narrow_u16(x))
    }
    #[inline(always)]
    unsafe fn gather(table: *const f32, idx: __m256i) -> __m256i {
        _mm256_i32gather_epi32::<4>(table.cast(), idx)
    }
    #[inline(always)]
    unsafe fn lookup16(table: *const f32, idx: __m256i) -> __m256 {
        let low = _mm256_permutevar8x32_ps(_mm256_loadu_ps(table), idx);
        let high = _mm256_permutevar8x32_ps(_mm256_loadu_ps(table.add(8)), idx);
        // blendv reads each lane's sign bit: index bit 3 moved there.
        _mm256_blendv_ps(low, high, _mm256_castsi256_ps(_mm256_slli_epi32::<28>(idx)))
    }
    #[inline(always)]
    unsafe fn lookup32(table: *const f32, idx: __m256i) -> __m256 {
        let low = Self::lookup16(table, idx);
        let high = Self::lookup16(table.add(16), idx);
        _mm256_blendv_ps(low, high, _mm256_castsi256_ps(_mm256_slli_epi32::<27>(idx)))
    }
    #[inline(always)]
    unsafe fn gather_bytes(table: *const u8, idx: __m256i) -> __m256i {
        _mm256_i32gather_epi32::<1>(table.cast(), idx)
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        _mm256_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: __m256, b: __m256) -> __m256 {
        _mm256_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn div(a: __m256, b: __m256) -> __m256 {
        _mm256_div_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sqrt(a: __m256) -> __m256 {
        _mm256_sqrt_ps(a)
    }
    #[inline(always)]
    unsafe fn max(a: __m256, b: __m256) -> __m256 {
        _mm256_max_ps(a, b)
    }
    #[inline(always)]
    unsafe fn as_i(a: __m256) -> __m256i {
        _mm256_castps_si256(a)
    }
    #[inline(always)]
    unsafe fn as_f(a: __m256i) -> __m256 {
        _mm256_castsi256_ps(a)
    }
    #[inline(always)]
    unsafe fn add_i(a: __m256i, b: __m256i) -> __m256i {
        _mm256_add_epi32(a, b)
    }
    #[inline(always)]
    unsafe fn sub_i(a: __m256i, b: __m256i) -> __m256i {
        _mm256_sub_epi32(a, b)
    }
    #[inline(always)]
    unsafe fn sat_sub_u16(a: __m256i, b: __m256i) -> __m256i {
        // The high halves are 0 - 0: a 16-bit saturating subtract is the 32-bit one.
        _mm256_subs_epu16(a, b)
    }
    #[inline(always)]
    unsafe fn and_i(a: __m256i, b: __m256i) -> __m256i {
        _mm256_and_si256(a, b)
    }
    #[inline(always)]
    unsafe fn or_i(a: __m256i, b: __m256i) -> __m256i {
        _mm256_or_si256(a, b)
    }
    #[inline(always)]
    unsafe fn srl<const K: u32>(a: __m256i) -> __m256i {
        _mm256_srl_epi32(a, _mm_cvtsi32_si128(K as i32))
    }
    #[inline(always)]
    unsafe fn sll<const K: u32>(a: __m256i) -> __m256i {
        _mm256_sll_epi32(a, _mm_cvtsi32_si128(K as i32))
    }
    #[inline(always)]
    unsafe fn sra<const K: u32>(a: __m256i) -> __m256i {
        _mm256_sra_epi32(a, _mm_cvtsi32_si128(K as i32))
    }
    #[inline(always)]
    unsafe fn min_u(a: __m256i, b: __m256i) -> __m256i {
        _mm256_min_epu32(a, b)
    }
    #[inline(always)]
    unsafe fn max_s(a: __m256i, b: __m256i) -> __m256i {
        _mm256_max_epi32(a, b)
    }
    #[inline(always)]
    unsafe fn min_s(a: __m256i, b: __m256i) -> __m256i {
        _mm256_min_epi32(a, b)
    }
    #[inline(always)]
    unsafe fn lt_u(a: __m256i, b: __m256i) -> __m256i {
        // Flipping the sign bits turns the unsigned order into the signed one.
        let flip = _mm256_set1_epi32(i32::MIN);
        _mm256_cmpgt_epi32(_mm256_xor_si256(b, flip), _mm256_xor_si256(a, flip))
    }
    #[inline(always)]
    unsafe fn gt(a: __m256, b: __m256) -> __m256i {
        _mm256_castps_si256(_mm256_cmp_ps::<_CMP_GT_OQ>(a, b))
    }
    #[inline(always)]
    unsafe fn eq(a: __m256, b: __m256) -> __m256i {
        _mm256_castps_si256(_mm256_cmp_ps::<_CMP_EQ_OQ>(a, b))
    }
    #[inline(always)]
    unsafe fn finite(a: __m256) -> __m256i {
        // |a| < inf is false for NaN and ±Inf.
        let abs = _mm256_and_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF)));
        _mm256_castps_si256(_mm256_cmp_ps::<_CMP_LT_OQ>(
            abs,
            _mm256_set1_ps(f32::INFINITY),
        ))
    }
    #[inline(always)]
    unsafe fn gt_i(a: __m256i, b: __m256i) -> __m256i {
        _mm256_cmpgt_epi32(a, b)
    }
    #[inline(always)]
    unsafe fn eq_i(a: __m256i, b: __m256i) -> __m256i {
        _mm256_cmpeq_epi32(a, b)
    }
    #[inline(always)]
    unsafe fn and_m(a: __m256i, b: __m256i) -> __m256i {
        _mm256_and_si256(a, b)
    }
    #[inline(always)]
    unsafe fn or_m(a: __m256i, b: __m256i) -> __m256i {
        _mm256_or_si256(a, b)
    }
    #[inline(always)]
    unsafe fn xor_m(a: __m256i, b: __m256i) -> __m256i {
        _mm256_xor_si256(a, b)
    }
    #[inline(always)]
    unsafe fn select(m: __m256i, a: __m256, b: __m256) -> __m256 {
        _mm256_blendv_ps(b, a, _mm256_castsi256_ps(m))
    }
    #[inline(always)]
    unsafe fn select_i(m: __m256i, a: __m256i, b: __m256i) -> __m256i {
        _mm256_blendv_epi8(b, a, m)
    }
    #[inline(always)]
    unsafe fn count(m: __m256i) -> u32 {
        (_mm256_movemask_ps(_mm256_castsi256_ps(m)) as u32).count_ones()
    }
    #[inline(always)]
    unsafe fn hmax(a: __m256) -> f32 {
        // Order does not matter: the accumulators hold no NaN.
        let m = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps::<1>(a));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_shuffle_ps::<1>(m, m));
        _mm_cvtss_f32(m)
    }
    #[inline(always)]
    unsafe fn f16_to_f32(a: __m256i) -> __m256 {
        _mm256_cvtph_ps(narrow_u16(a))
    }
    #[inline(always)]
    unsafe fn f32_to_f16(a: __m256) -> __m256i {
        _mm256_cvtepu16_epi32(_mm256_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT }>(a))
    }
}
