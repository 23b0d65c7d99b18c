//! The two quantizers of `qmap` on `N` lanes, operation for operation: the exact bucket
//! quantizer (same key, one compare against the bucket's midpoint, ties to the even index, NaN
//! to 0), the linear route (`Qmap::quantize_linear`, with its "not sure" lanes); and state1's
//! sign rule.

use super::Lanes;
use crate::qmap::{
    Linear, Qmap, BINADE_BIAS, BUCKETS, FRAC_BITS, KEY_HI_BITS, KEY_LO, KEY_SHIFT, ONE_BITS,
};

/// `q.quantize(x)` per lane, as i32 codes 0..=255.
///
/// # Safety
/// `S`'s ISA must be enabled.
#[inline(always)]
pub unsafe fn quantize<S: Lanes>(q: &Qmap, x: S::F) -> S::I {
    let bits = S::as_i(x);
    let mag = S::min_u(
        S::and_i(bits, S::splat_i(0x7FFF_FFFF)),
        S::splat_i(KEY_HI_BITS as i32),
    );
    // Keys below KEY_LO clamp to bucket 0 (the scalar `saturating_sub`).
    let key = S::max_s(
        S::add_i(S::srl::<KEY_SHIFT>(mag), S::splat_i(-(KEY_LO as i32))),
        S::splat_i(0),
    );
    let negative_half = S::and_i(S::sra::<31>(bits), S::splat_i(BUCKETS as i32));
    let idx = S::add_i(key, negative_half);
    let c = S::and_i(S::gather_bytes(q.below.as_ptr(), idx), S::splat_i(0xFF));
    let mid = S::as_f(S::gather(q.mids.as_ptr(), c));
    let one = S::splat_i(1);
    let odd = S::eq_i(S::and_i(c, one), one);
    let up = S::or_m(S::gt(x, mid), S::and_m(S::eq(x, mid), odd));
    let code = S::add_i(c, S::select_i(up, one, S::splat_i(0)));
    S::select_i(S::eq(x, x), code, S::splat_i(0))
}

/// `q.quantize_linear(x)` per lane: the codes, and the lanes where it is not sure (their codes
/// are meaningless). `lin` is `q.linear`.
///
/// # Safety
/// `S`'s ISA must be enabled.
#[inline(always)]
pub unsafe fn quantize_linear<S: Lanes>(q: &Qmap, lin: &Linear, x: S::F) -> (S::I, S::M) {
    let (zero, one) = (S::splat_i(0), S::splat_i(1));
    let bits = S::as_i(x);
    let mag = S::and_i(bits, S::splat_i(0x7FFF_FFFF));
    let ax = S::as_f(mag);
    let binade = S::min_s(
        S::sat_sub_u16(S::srl::<23>(mag), S::splat_i(BINADE_BIAS)),
        S::splat_i(31),
    );
    let t = S::lookup32(lin.threshold.as_ptr(), binade);
    let bottom = S::as_i(S::lookup32(lin.segment.as_ptr().cast(), binade));
    let seg = S::add_i(bottom, S::select_i(S::gt(ax, t), one, zero));
    let y = S::add(
        S::mul(ax, S::lookup16(lin.alpha.as_ptr(), seg)),
        S::lookup16(lin.beta.as_ptr(), seg),
    );
    let yb = S::add_i(S::as_i(y), S::splat_i(-ONE_BITS));
    let hi = S::as_i(S::lookup16(lin.hi.as_ptr().cast(), seg));
    let code = S::min_s(S::sra::<FRAC_BITS>(yb), hi);
    let guard = S::splat_i(lin.guard);
    let frac = S::and_i(S::add_i(yb, guard), S::splat_i((1 << FRAC_BITS) - 1));
    let unsure = S::lt_u(frac, S::splat_i(2 * lin.guard));
    let code = if q.signed {
        let mirrored = S::max_s(S::sub_i(S::splat_i(254), code), zero);
        let code = S::select_i(S::gt_i(zero, bits), mirrored, code);
        S::select_i(S::eq(x, x), code, zero)
    } else {
        S::select_i(S::gt(x, S::splat(0.0)), code, zero)
    };
    (code, unsure)
}

/// `qmap::signed_code` per lane; the result may be -1 or 256, which the byte store wraps.
///
/// # Safety
/// `S`'s ISA must be enabled.
#[inline(always)]
pub unsafe fn signed_code<S: Lanes>(code: S::I, m: S::F) -> S::I {
    let zero = S::splat_i(0);
    let code_negative = S::gt_i(S::splat_i(127), code);
    let m_negative = S::gt_i(zero, S::as_i(m));
    let step = S::select_i(S::gt(m, S::splat(0.0)), S::splat_i(1), S::splat_i(-1));
    let moved = S::select_i(S::xor_m(code_negative, m_negative), step, zero);
    S::add_i(code, moved)
}
