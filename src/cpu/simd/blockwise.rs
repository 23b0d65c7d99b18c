//! The blockwise 8-bit step (rules 1-6) on `N` lanes: `math::moments8`, `math::updated_param`
//! and `math::codes` lane by lane, in their operation order. Two sweeps per 256-element block,
//! the second over the block's m and v kept in a stack buffer (L1), so the arrays themselves
//! are read and written once.
//!
//! Requantization takes the linear route (`Qmap::quantize_linear`) on `m * fl(1/absmax)`, a
//! multiply instead of rule 1's division: the route's answer holds for every input within
//! `SLACK_ULPS` of its own, and `fl(m * fl(1/a))` is within 2 ulps of `fl(m / a)` whenever
//! `fl(1/a)` is finite (or `a` is 0: both are NaN then). The unsure lanes of a vector are
//! redone exactly (true division, the scalar bucket quantizer), so the codes are rule 1's, bit
//! for bit.

use super::element::VecElement;
use super::step8::{decode, moments_of, store_codes, update_param, Consts};
use super::{run, Isa, Kernel, Lanes};
use crate::config::BLOCKSIZE;
use crate::rounding::Rounding;
use crate::scalars::StepScalars;

const BLOCK: usize = BLOCKSIZE as usize;

/// Runs the whole blocks of a chunk at level `isa` and returns `(elements done, non-finite
/// count)`; the caller finishes a partial last block with the scalar kernel. The scalar level
/// does nothing here.
#[allow(clippy::too_many_arguments)]
pub fn blockwise<P: VecElement>(
    isa: Isa,
    p: &mut [P],
    g: &[P],
    s1: &mut [u8],
    s2: &mut [u8],
    a1: &mut [f32],
    a2: &mut [f32],
    k: &StepScalars,
    rounding: Rounding,
) -> (usize, u64) {
    let blocks = p.len() / BLOCK;
    assert!(g.len() >= blocks * BLOCK && s1.len() >= blocks * BLOCK && s2.len() >= blocks * BLOCK);
    assert!(a1.len() >= blocks && a2.len() >= blocks);
    let args = Args {
        p: p.as_mut_ptr(),
        g: g.as_ptr(),
        s1: s1.as_mut_ptr(),
        s2: s2.as_mut_ptr(),
        a1: a1.as_mut_ptr(),
        a2: a2.as_mut_ptr(),
        blocks,
        k,
        rounding,
    };
    // SAFETY: the asserts above bound every access of `blocks` whole blocks, and `isa` is
    // only a level that `Isa::available` confirmed (`simd::isa` never returns another).
    match unsafe { run(isa, &args) } {
        Some(nonfinite) => (blocks * BLOCK, nonfinite),
        None => (0, 0),
    }
}

struct Args<'a, P> {
    p: *mut P,
    g: *const P,
    s1: *mut u8,
    s2: *mut u8,
    a1: *mut f32,
    a2: *mut f32,
    blocks: usize,
    k: &'a StepScalars,
    rounding: Rounding,
}

impl<P: VecElement> Kernel for Args<'_, P> {
    type Out = u64;
    #[inline(always)]
    unsafe fn run<S: Lanes>(&self) -> u64 {
        blocks::<S, P>(self, self.k)
    }
}

#[inline(always)]
unsafe fn blocks<S: Lanes, P: VecElement>(a: &Args<P>, k: &StepScalars) -> u64 {
    let mut m_buf = [0f32; BLOCK];
    let mut v_buf = [0f32; BLOCK];
    let c = Consts::<S>::new(k, a.rounding);
    let mut nonfinite = 0u64;
    for b in 0..a.blocks {
        let at = b * BLOCK;
        nonfinite += block::<S, P>(
            at,
            a.p.add(at),
            a.g.add(at),
            a.s1.add(at),
            a.s2.add(at),
            &mut *a.a1.add(b),
            &mut *a.a2.add(b),
            k,
            &c,
            &mut m_buf,
            &mut v_buf,
        ) as u64;
    }
    nonfinite
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn block<S: Lanes, P: VecElement>(
    at: usize,
    p: *mut P,
    g: *const P,
    s1: *mut u8,
    s2: *mut u8,
    a1: &mut f32,
    a2: &mut f32,
    k: &StepScalars,
    c: &Consts<S>,
    m_buf: &mut [f32; BLOCK],
    v_buf: &mut [f32; BLOCK],
) -> u32 {
    let (old1, old2) = (S::splat(*a1), S::splat(*a2));
    let step = S::splat(k.step_size);
    let zero = S::splat(0.0);
    let (mut acc1, mut acc2) = (zero, zero);
    let mut finite_lanes = 0u32;
    // Where the ISA decodes whole blocks, the buffers hold the decoded codes first, then the new
    // moments in their place.
    let decoded = S::decode_block(c.signed, s1, m_buf.as_mut_ptr())
        && S::decode_block(c.unsigned, s2, v_buf.as_mut_ptr());
    for i in (0..BLOCK).step_by(S::N) {
        let gf = c.grad::<P>(g.add(i));
        let (q1, q2) = if decoded {
            (
                S::load(m_buf.as_ptr().add(i)),
                S::load(v_buf.as_ptr().add(i)),
            )
        } else {
            decode::<S>(c, s1.add(i), s2.add(i))
        };
        let (m, v, finite) = moments_of::<S>(c, q1, q2, old1, old2, gf);
        S::store(m_buf.as_mut_ptr().add(i), m);
        S::store(v_buf.as_mut_ptr().add(i), v);
        acc1 = S::max(S::abs(m), acc1);
        acc2 = S::max(S::abs(v), acc2);
        update_param::<S, P>(c, p.add(i), at + i, m, v, step, finite);
        finite_lanes += S::count(finite);
    }
    let (new1, new2) = (S::hmax(acc1), S::hmax(acc2));
    *a1 = new1;
    *a2 = new2;
    let (r1, r2) = (1.0 / new1, 1.0 / new2);
    let near_exact = (r1.is_finite() || new1 == 0.0) && (r2.is_finite() || new2 == 0.0);
    let (new1, new2, r1, r2) = (S::splat(new1), S::splat(new2), S::splat(r1), S::splat(r2));
    for i in (0..BLOCK).step_by(S::N) {
        let m = S::load(m_buf.as_ptr().add(i));
        let v = S::load(v_buf.as_ptr().add(i));
        let scaled = near_exact.then(|| (S::mul(m, r1), S::mul(v, r2)));
        store_codes::<S>(c, s1.add(i), s2.add(i), m, scaled, || {
            (S::div(m, new1), S::div(v, new2))
        });
    }
    BLOCK as u32 - finite_lanes
}
