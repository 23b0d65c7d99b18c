//! The 32-bit step (rule 9) on `N` lanes: `math::moments32` and `math::updated_param` lane by
//! lane, in their operation order, one pass over the four arrays.

use super::element::VecElement;
use super::step8::{update_param, Consts};
use super::{run, Isa, Kernel, Lanes};
use crate::rounding::Rounding;
use crate::scalars::StepScalars;

/// Elements per call of the lane loop: a multiple of every level's `N`.
const STRIDE: usize = 16;

struct Args<'a, P> {
    p: *mut P,
    g: *const P,
    s1: *mut f32,
    s2: *mut f32,
    n: usize,
    skip_zeros: bool,
    step_size: f32,
    k: &'a StepScalars,
    rounding: Rounding,
}

impl<P: VecElement> Kernel for Args<'_, P> {
    type Out = u64;
    #[inline(always)]
    unsafe fn run<S: Lanes>(&self) -> u64 {
        sweep::<S, P>(self, self.k)
    }
}

/// Runs the first `len / 16 * 16` elements at level `isa`; returns `(elements done,
/// non-finite count)`. The caller finishes the rest with the scalar loop.
#[allow(clippy::too_many_arguments)]
pub fn fp32<P: VecElement>(
    isa: Isa,
    p: &mut [P],
    g: &[P],
    s1: &mut [f32],
    s2: &mut [f32],
    skip_zeros: bool,
    step_size: f32,
    k: &StepScalars,
    rounding: Rounding,
) -> (usize, u64) {
    let n = p.len() / STRIDE * STRIDE;
    assert!(g.len() >= n && s1.len() >= n && s2.len() >= n);
    let a = Args {
        p: p.as_mut_ptr(),
        g: g.as_ptr(),
        s1: s1.as_mut_ptr(),
        s2: s2.as_mut_ptr(),
        n,
        skip_zeros,
        step_size,
        k,
        rounding,
    };
    // SAFETY: the assert bounds every access to `n` elements; `isa` is a level the CPU has.
    match unsafe { run(isa, &a) } {
        Some(nonfinite) => (n, nonfinite),
        None => (0, 0),
    }
}

#[inline(always)]
unsafe fn sweep<S: Lanes, P: VecElement>(a: &Args<P>, k: &StepScalars) -> u64 {
    let (beta1, beta2) = (S::splat(k.beta1), S::splat(k.beta2));
    let (om1, om2) = (S::splat(k.one_minus_beta1), S::splat(k.one_minus_beta2));
    let (gnorm, step) = (S::splat(k.gnorm_scale), S::splat(a.step_size));
    let c = Consts::<S>::new(k, a.rounding);
    let zero = S::splat(0.0);
    let mut finite_lanes = 0u64;
    for i in (0..a.n).step_by(S::N) {
        let gf = c.grad::<P>(a.g.add(i));
        let gam = S::mul(gf, gnorm);
        let finite = S::finite(gf);
        // Active: finite and, with skip_zeros, a nonzero scaled gradient (-0.0 is zero).
        let active = if a.skip_zeros {
            S::and_m(finite, S::gt(S::abs(gam), zero))
        } else {
            finite
        };
        let (m0, v0) = (S::load(a.s1.add(i)), S::load(a.s2.add(i)));
        let m = S::add(S::mul(m0, beta1), S::mul(om1, gam));
        let v = S::add(S::mul(v0, beta2), S::mul(om2, S::mul(gam, gam)));
        // Non-finite: +0 states; skipped zeros: states unchanged.
        let m_out = S::select(active, m, S::select(finite, m0, zero));
        let v_out = S::select(active, v, S::select(finite, v0, zero));
        S::store(a.s1.add(i), m_out);
        S::store(a.s2.add(i), v_out);
        update_param::<S, P>(&c, a.p.add(i), i, m, v, step, active);
        finite_lanes += S::count(finite) as u64;
    }
    a.n as u64 - finite_lanes
}
