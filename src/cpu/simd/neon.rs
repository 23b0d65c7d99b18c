//! [`Lanes`] for AArch64 NEON: 4 lanes, all-ones lane masks. NEON has no gather and no
//! cross-lane permute wider than bytes, so table lookups read each lane's entry with a scalar
//! load, which is what a 4-lane gather would cost anyway.

use std::arch::aarch64::*;

use half::f16;

use super::Lanes;

#[derive(Clone, Copy)]
pub struct Neon;

/// The four lanes' indices, for the scalar table reads.
#[inline(always)]
unsafe fn lanes_of(idx: int32x4_t) -> [usize; 4] {
    let mut out = [0i32; 4];
    vst1q_s32(out.as_mut_ptr(), idx);
    out.map(|i| i as usize)
}

// SAFETY: only instantiated by kernels compiled with `neon` after runtime detection.
unsafe impl Lanes for Neon {
    const N: usize = 4;
    type F = float32x4_t;
    type I = int32x4_t;
    type M = uint32x4_t;

    #[inline(always)]
    unsafe fn splat(x: f32) -> float32x4_t {
        vdupq_n_f32(x)
    }
    #[inline(always)]
    unsafe fn splat_i(x: i32) -> int32x4_t {
        vdupq_n_s32(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> float32x4_t {
        vld1q_f32(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, x: float32x4_t) {
        vst1q_f32(p, x)
    }
    #[inline(always)]
    unsafe fn load_u8(p: *const u8) -> int32x4_t {
        let b = p.cast::<[u8; 4]>().read_unaligned();
        vld1q_s32(b.map(i32::from).as_ptr())
    }
    #[inline(always)]
    unsafe fn store_u8(p: *mut u8, x: int32x4_t) {
        let half = vmovn_u32(vreinterpretq_u32_s32(x));
        let bytes = vmovn_u16(vcombine_u16(half, half));
        let word = vget_lane_u32::<0>(vreinterpret_u32_u8(bytes));
        p.cast::<u32>().write_unaligned(word)
    }
    #[inline(always)]
    unsafe fn load_u16(p: *const u16) -> int32x4_t {
        vreinterpretq_s32_u32(vmovl_u16(vld1_u16(p)))
    }
    #[inline(always)]
    unsafe fn store_u16(p: *mut u16, x: int32x4_t) {
        vst1_u16(p, vmovn_u32(vreinterpretq_u32_s32(x)))
    }
    #[inline(always)]
    unsafe fn gather(table: *const f32, idx: int32x4_t) -> int32x4_t {
        let words = lanes_of(idx).map(|i| table.add(i).cast::<i32>().read());
        vld1q_s32(words.as_ptr())
    }
    #[inline(always)]
    unsafe fn lookup16(table: *const f32, idx: int32x4_t) -> float32x4_t {
        Self::as_f(Self::gather(table, idx))
    }
    #[inline(always)]
    unsafe fn lookup32(table: *const f32, idx: int32x4_t) -> float32x4_t {
        Self::as_f(Self::gather(table, idx))
    }
    #[inline(always)]
    unsafe fn gather_bytes(table: *const u8, idx: int32x4_t) -> int32x4_t {
        let words = lanes_of(idx).map(|i| table.add(i).cast::<i32>().read_unaligned().to_le());
        vld1q_s32(words.as_ptr())
    }
    #[inline(always)]
    unsafe fn add(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        vaddq_f32(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        vmulq_f32(a, b)
    }
    #[inline(always)]
    unsafe fn div(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        vdivq_f32(a, b)
    }
    #[inline(always)]
    unsafe fn sqrt(a: float32x4_t) -> float32x4_t {
        vsqrtq_f32(a)
    }
    #[inline(always)]
    unsafe fn max(a: float32x4_t, b: float32x4_t) -> float32x4_t {
        // x86 `maxps`: `a` only where `a > b`, so a NaN on either side gives `b`. NEON's
        // `fmax` would return the NaN instead.
        vbslq_f32(vcgtq_f32(a, b), a, b)
    }
    #[inline(always)]
    unsafe fn as_i(a: float32x4_t) -> int32x4_t {
        vreinterpretq_s32_f32(a)
    }
    #[inline(always)]
    unsafe fn as_f(a: int32x4_t) -> float32x4_t {
        vreinterpretq_f32_s32(a)
    }
    #[inline(always)]
    unsafe fn add_i(a: int32x4_t, b: int32x4_t) -> int32x4_t {
        vaddq_s32(a, b)
    }
    #[inline(always)]
    unsafe fn sub_i(a: int32x4_t, b: int32x4_t) -> int32x4_t {
        vsubq_s32(a, b)
    }
    #[inline(always)]
    unsafe fn sat_sub_u16(a: int32x4_t, b: int32x4_t) -> int32x4_t {
        // The high halves are 0 - 0: a 16-bit saturating subtract is the 32-bit one.
        vreinterpretq_s32_u16(vqsubq_u16(
            vreinterpretq_u16_s32(a),
            vreinterpretq_u16_s32(b),
        ))
    }
    #[inline(always)]
    unsafe fn and_i(a: int32x4_t, b: int32x4_t) -> int32x4_t {
        vandq_s32(a, b)
    }
    #[inline(always)]
    unsafe fn or_i(a: int32x4_t, b: int32x4_t) -> int32x4_t {
        vorrq_s32(a, b)
    }
    #[inline(always)]
    unsafe fn srl<const K: u32>(a: int32x4_t) -> int32x4_t {
        // A negative count shifts right; unsigned lanes shift in zeros.
        vreinterpretq_s32_u32(vshlq_u32(
            vreinterpretq_u32_s32(a),
            vdupq_n_s32(-(K as i32)),
        ))
    }
    #[inline(always)]
    unsafe fn sll<const K: u32>(a: int32x4_t) -> int32x4_t {
        vshlq_s32(a, vdupq_n_s32(K as i32))
    }
    #[inline(always)]
    unsafe fn sra<const K: u32>(a: int32x4_t) -> int32x4_t {
        vshlq_s32(a, vdupq_n_s32(-(K as i32)))
    }
    #[inline(always)]
    unsafe fn min_u(a: int32x4_t, b: int32x4_t) -> int32x4_t {
        vreinterpretq_s32_u32(vminq_u32(
            vreinterpretq_u32_s32(a),
            vreinterpretq_u32_s32(b),
        ))
    }
    #[inline(always)]
    unsafe fn max_s(a: int32x4_t, b: int32x4_t) -> int32x4_t {
        vmaxq_s32(a, b)
    }
    #[inline(always)]
    unsafe fn min_s(a: int32x4_t, b: int32x4_t) -> int32x4_t {
        vminq_s32(a, b)
    }
    #[inline(always)]
    unsafe fn lt_u(a: int32x4_t, b: int32x4_t) -> uint32x4_t {
        vcltq_u32(vreinterpretq_u32_s32(a), vreinterpretq_u32_s32(b))
    }
    #[inline(always)]
    unsafe fn gt(a: float32x4_t, b: float32x4_t) -> uint32x4_t {
        vcgtq_f32(a, b)
    }
    #[inline(always)]
    unsafe fn eq(a: float32x4_t, b: float32x4_t) -> uint32x4_t {
        vceqq_f32(a, b)
    }
    #[inline(always)]
    unsafe fn finite(a: float32x4_t) -> uint32x4_t {
        // |a| < inf is false for NaN and ±Inf.
        vcltq_f32(vabsq_f32(a), vdupq_n_f32(f32::INFINITY))
    }
    #[inline(always)]
    unsafe fn gt_i(a: int32x4_t, b: int32x4_t) -> uint32x4_t {
        vcgtq_s32(a, b)
    }
    #[inline(always)]
    unsafe fn eq_i(a: int32x4_t, b: int32x4_t) -> uint32x4_t {
        vceqq_s32(a, b)
    }
    #[inline(always)]
    unsafe fn and_m(a: uint32x4_t, b: uint32x4_t) -> uint32x4_t {
        vandq_u32(a, b)
    }
    #[inline(always)]
    unsafe fn or_m(a: uint32x4_t, b: uint32x4_t) -> uint32x4_t {
        vorrq_u32(a, b)
    }
    #[inline(always)]
    unsafe fn xor_m(a: uint32x4_t, b: uint32x4_t) -> uint32x4_t {
        veorq_u32(a, b)
    }
    #[inline(always)]
    unsafe fn select(m: uint32x4_t, a: float32x4_t, b: float32x4_t) -> float32x4_t {
        vbslq_f32(m, a, b)
    }
    #[inline(always)]
    unsafe fn select_i(m: uint32x4_t, a: int32x4_t, b: int32x4_t) -> int32x4_t {
        vbslq_s32(m, a, b)
    }
    #[inline(always)]
    unsafe fn count(m: uint32x4_t) -> u32 {
        vaddvq_u32(vshrq_n_u32::<31>(m))
    }
    #[inline(always)]
    unsafe fn hmax(a: float32x4_t) -> f32 {
        // Folded with `max` so that NaN lanes behave as on x86.
        let mut lanes = [0f32; 4];
        vst1q_f32(lanes.as_mut_ptr(), a);
        lanes[1..]
            .iter()
            .fold(lanes[0], |acc, &x| if x > acc { x } else { acc })
    }
    #[inline(always)]
    unsafe fn f16_to_f32(a: int32x4_t) -> float32x4_t {
        // Per lane through `half`, the conversion the scalar kernels use (exact either way).
        let mut bits = [0i32; 4];
        vst1q_s32(bits.as_mut_ptr(), a);
        let x = bits.map(|b| f16::from_bits(b as u16).to_f32());
        vld1q_f32(x.as_ptr())
    }
    #[inline(always)]
    unsafe fn f32_to_f16(a: float32x4_t) -> int32x4_t {
        let mut x = [0f32; 4];
        vst1q_f32(x.as_mut_ptr(), a);
        let bits = x.map(|v| i32::from(f16::from_f32(v).to_bits()));
        vld1q_s32(bits.as_ptr())
    }
}
