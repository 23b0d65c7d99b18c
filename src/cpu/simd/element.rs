//! Loading and storing parameter/gradient elements as f32 lanes, for each dtype. Widening is
//! exact; narrowing rounds to nearest even with the same NaN handling as the `half` crate, so
//! a lane stores exactly what `Element::narrow` would.

use half::{bf16, f16};

use super::Lanes;
use crate::dtype::Element;

pub trait VecElement: Element {
    /// `N` elements: their raw bits (to store back unchanged) and their f32 values.
    ///
    /// # Safety
    /// `p` must be valid for `S::N` reads; `S`'s ISA must be enabled.
    unsafe fn load<S: Lanes>(p: *const Self) -> (S::I, S::F);
    /// Stores `new`, rounded, where `take` is set and the `old` bits elsewhere.
    ///
    /// # Safety
    /// `p` must be valid for `S::N` writes; `S`'s ISA must be enabled.
    unsafe fn store<S: Lanes>(p: *mut Self, old: S::I, new: S::F, take: S::M);
}

impl VecElement for f32 {
    #[inline(always)]
    unsafe fn load<S: Lanes>(p: *const f32) -> (S::I, S::F) {
        let x = S::load(p);
        (S::as_i(x), x)
    }
    #[inline(always)]
    unsafe fn store<S: Lanes>(p: *mut f32, old: S::I, new: S::F, take: S::M) {
        S::store(p, S::select(take, new, S::as_f(old)))
    }
}

impl VecElement for f16 {
    #[inline(always)]
    unsafe fn load<S: Lanes>(p: *const f16) -> (S::I, S::F) {
        let raw = S::load_u16(p.cast());
        (raw, S::f16_to_f32(raw))
    }
    #[inline(always)]
    unsafe fn store<S: Lanes>(p: *mut f16, old: S::I, new: S::F, take: S::M) {
        S::store_u16(p.cast(), S::select_i(take, S::f32_to_f16(new), old))
    }
}

impl VecElement for bf16 {
    #[inline(always)]
    unsafe fn load<S: Lanes>(p: *const bf16) -> (S::I, S::F) {
        let raw = S::load_u16(p.cast());
        (raw, S::as_f(S::sll::<16>(raw)))
    }
    #[inline(always)]
    unsafe fn store<S: Lanes>(p: *mut bf16, old: S::I, new: S::F, take: S::M) {
        let x = S::as_i(new);
        let high = S::srl::<16>(x);
        // Round to nearest even: add 0x7FFF plus the kept part's lowest bit, then truncate.
        let bias = S::add_i(S::splat_i(0x7FFF), S::and_i(high, S::splat_i(1)));
        let rounded = S::srl::<16>(S::add_i(x, bias));
        // NaN keeps its high payload and becomes quiet (as `half` does).
        let nan = S::gt_i(
            S::and_i(x, S::splat_i(0x7FFF_FFFF)),
            S::splat_i(0x7F80_0000),
        );
        let bits = S::select_i(nan, S::or_i(high, S::splat_i(0x40)), rounded);
        S::store_u16(p.cast(), S::select_i(take, bits, old))
    }
}
