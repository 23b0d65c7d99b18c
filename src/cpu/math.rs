//! The per-element arithmetic of every path, in the one operation order of DECISIONS rule 3:
//! each line one IEEE fp32 operation, no FMA (Rust never contracts), correctly rounded `/` and
//! `sqrt`. `csrc/adam8bit_math.cuh` is the same arithmetic for the GPU; the tests hold the two
//! to bit equality.

use crate::qmap::{SIGNED, UNSIGNED};
use crate::scalars::StepScalars;

/// A gradient element as the step reads it: divided by the loss scale (rule 18), if any.
#[inline(always)]
pub fn unscaled(g: f32, k: &StepScalars) -> f32 {
    if k.grad_scale == 1.0 {
        g
    } else {
        g / k.grad_scale
    }
}

/// New `(m, v)` of an 8-bit element from its codes and the scales that decode them (blockwise:
/// the block's old absmax; non-blockwise: the tensor's max). Non-finite gradients give
/// `(+0, +0)` (rule 6); `finite` says which it was.
#[inline(always)]
pub fn moments8(
    code1: u8,
    code2: u8,
    scale1: f32,
    scale2: f32,
    g: f32,
    k: &StepScalars,
) -> (f32, f32, bool) {
    let finite = g.is_finite();
    let gam = g * k.gnorm_scale;
    let v = ((UNSIGNED.value(code2) * scale2) * k.beta2) + ((k.one_minus_beta2 * gam) * gam);
    let m = ((SIGNED.value(code1) * scale1) * k.beta1) + (k.one_minus_beta1 * gam);
    if finite {
        (m, v, true)
    } else {
        (0.0, 0.0, false)
    }
}

/// New `(m, v)` of an fp32-state element (rule 9), with the 32-bit kernel's `(1-b2)*(g*g)`
/// grouping, and whether the element is updated (`skip_zeros` leaves zero gradients alone).
#[inline(always)]
pub fn moments32(m: f32, v: f32, g: f32, skip_zeros: bool, k: &StepScalars) -> (f32, f32, bool) {
    let gam = g * k.gnorm_scale;
    if !g.is_finite() {
        return (0.0, 0.0, false);
    }
    if skip_zeros && gam == 0.0 {
        return (m, v, false);
    }
    let m = (m * k.beta1) + (k.one_minus_beta1 * gam);
    let v = (v * k.beta2) + (k.one_minus_beta2 * (gam * gam));
    (m, v, true)
}

/// `p + step_size * (m / (sqrt(v) + eps*C2))`, times `1 - lr*wd` after it when weight decay is
/// on (rule 5). `step_size` already carries any `max_unorm` update scale.
#[inline(always)]
pub fn updated_param(p: f32, m: f32, v: f32, step_size: f32, k: &StepScalars) -> f32 {
    let p = p + (step_size * (m / (v.sqrt() + k.eps_c2)));
    if k.apply_decay != 0 {
        p * k.decay
    } else {
        p
    }
}

/// One element's term of the `max_unorm` norm: the squared bias-corrected update, in f64.
#[inline(always)]
pub fn unorm_term(m: f32, v: f32, k: &StepScalars) -> f64 {
    let u = (m * k.unorm_c1) / ((v * k.unorm_c2).sqrt() + k.eps);
    let u = u as f64;
    u * u
}

/// Codes of one element: state1 with the sign rule, state2 plain. `x1`, `x2` are the
/// normalised moments (blockwise divides by the absmax, non-blockwise multiplies by the
/// reciprocal of the max).
#[inline(always)]
pub fn codes(m: f32, x1: f32, x2: f32) -> (u8, u8) {
    (
        crate::qmap::signed_code(SIGNED.quantize(x1), m),
        UNSIGNED.quantize(x2),
    )
}
