//! The non-blockwise 8-bit path (rule 10) on `N` lanes: the max sweep of its first pass (without
//! `max_unorm`, whose f64 sum keeps the scalar order) and its update pass, lane by lane in
//! `kernels::dynamic_reduce` / `kernels::dynamic_update`'s order. Requantization multiplies by
//! the reciprocal of the new max, as rule 10 defines, so the linear route's inputs are exact.

use super::element::VecElement;
use super::step8::{moments, store_codes, update_param, Consts};
use super::{run, Isa, Kernel, Lanes};
use crate::rounding::Rounding;
use crate::scalars::StepScalars;

/// Elements per call of the lane loop: a multiple of every level's `N`.
const STRIDE: usize = 16;

struct Args<'a, P> {
    p: *mut P,
    g: *const P,
    s1: *mut u8,
    s2: *mut u8,
    n: usize,
    old: (f32, f32),
    pass: Pass,
    k: &'a StepScalars,
}

impl<P: VecElement> Kernel for Args<'_, P> {
    /// `(non-finite count, maxes)`.
    type Out = (u64, (f32, f32));
    #[inline(always)]
    unsafe fn run<S: Lanes>(&self) -> Self::Out {
        sweep::<S, P>(self, self.pass, self.k)
    }
}

/// The two passes: the new maxes, or the update with the `new` maxes and `step_size`.
#[derive(Clone, Copy)]
enum Pass {
    Max,
    Update {
        new: (f32, f32),
        step_size: f32,
        rounding: Rounding,
    },
}

/// The `(max |m|, max |v|)` of the first `len / 16 * 16` elements at level `isa`, and how many
/// elements that is; the caller takes the rest with the scalar loop.
pub fn dynamic_max<P: VecElement>(
    isa: Isa,
    g: &[P],
    s1: &[u8],
    s2: &[u8],
    old: (f32, f32),
    k: &StepScalars,
) -> (usize, (f32, f32)) {
    let n = g.len() / STRIDE * STRIDE;
    assert!(s1.len() >= n && s2.len() >= n);
    let a = Args {
        p: std::ptr::null_mut::<P>(),
        g: g.as_ptr(),
        s1: s1.as_ptr().cast_mut(),
        s2: s2.as_ptr().cast_mut(),
        n,
        old,
        pass: Pass::Max,
        k,
    };
    // SAFETY: the assert bounds every access to `n` elements, the max pass neither reads `p`
    // nor writes anything; `isa` is a level the CPU has.
    match unsafe { run(isa, &a) } {
        Some((_, maxes)) => (n, maxes),
        None => (0, (0.0, 0.0)),
    }
}

/// The update pass over the first `len / 16 * 16` elements at level `isa`: `(elements done,
/// non-finite count)`.
#[allow(clippy::too_many_arguments)]
pub fn dynamic_update<P: VecElement>(
    isa: Isa,
    p: &mut [P],
    g: &[P],
    s1: &mut [u8],
    s2: &mut [u8],
    old: (f32, f32),
    new: (f32, f32),
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
        old,
        pass: Pass::Update {
            new,
            step_size,
            rounding,
        },
        k,
    };
    // SAFETY: the assert bounds every access to `n` elements; `isa` is a level the CPU has.
    match unsafe { run(isa, &a) } {
        Some((nonfinite, _)) => (n, nonfinite),
        None => (0, 0),
    }
}

#[inline(always)]
unsafe fn sweep<S: Lanes, P: VecElement>(
    a: &Args<P>,
    pass: Pass,
    k: &StepScalars,
) -> (u64, (f32, f32)) {
    let rounding = match pass {
        Pass::Update { rounding, .. } => rounding,
        Pass::Max => Rounding::Nearest,
    };
    let c = Consts::<S>::new(k, rounding);
    let (old1, old2) = (S::splat(a.old.0), S::splat(a.old.1));
    let zero = S::splat(0.0);
    match pass {
        Pass::Max => {
            let (mut acc1, mut acc2) = (zero, zero);
            for i in (0..a.n).step_by(S::N) {
                let gf = c.grad::<P>(a.g.add(i));
                let (m, v, _) = moments::<S>(&c, a.s1.add(i), a.s2.add(i), old1, old2, gf);
                acc1 = S::max(S::abs(m), acc1);
                acc2 = S::max(S::abs(v), acc2);
            }
            (0, (S::hmax(acc1), S::hmax(acc2)))
        }
        Pass::Update { new, step_size, .. } => {
            let (r1, r2) = (S::splat(1.0 / new.0), S::splat(1.0 / new.1));
            let step = S::splat(step_size);
            let mut finite_lanes = 0u64;
            for i in (0..a.n).step_by(S::N) {
                let (s1, s2) = (a.s1.add(i), a.s2.add(i));
                let gf = c.grad::<P>(a.g.add(i));
                let (m, v, finite) = moments::<S>(&c, s1, s2, old1, old2, gf);
                update_param::<S, P>(&c, a.p.add(i), i, m, v, step, finite);
                finite_lanes += S::count(finite) as u64;
                let scaled = (S::mul(m, r1), S::mul(v, r2));
                store_codes::<S>(&c, s1, s2, m, Some(scaled), || scaled);
            }
            (a.n as u64 - finite_lanes, (0.0, 0.0))
        }
    }
}
