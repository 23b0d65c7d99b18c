//! The table quantizer of `qmap.rs` on `N` lanes: the same bucket key, the same one compare
//! against the bucket's midpoint, ties to the even index, NaN to 0; and state1's sign rule.

use super::Lanes;
use crate::qmap::{Qmap, BUCKETS, KEY_HI_BITS, KEY_LO, KEY_SHIFT};

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
