//! The CPU sweeps of each path over one chunk of elements (whole 256-element blocks, except the
//! tensor's last chunk). Chunks are independent, so any thread may run any chunk and the result
//! never depends on the thread count (rule 16).

use super::math::{codes, moments32, moments8, unorm_term, unscaled, updated_param};
use super::simd::{self, VecElement};
use crate::config::BLOCKSIZE;
use crate::dtype::Element;
use crate::rounding::Rounding;
use crate::scalars::StepScalars;

const BLOCK: usize = BLOCKSIZE as usize;

/// Blockwise 8-bit step (rules 1-6) over a chunk of blocks; `absmax*` hold one entry per block
/// of the chunk. The whole blocks run at SIMD level `isa` (one the CPU has), the rest (a
/// tensor's partial last block, or everything at the scalar level) in [`blockwise_scalar`].
/// Returns the number of non-finite gradient elements.
#[allow(clippy::too_many_arguments)]
pub fn blockwise<P: VecElement>(
    isa: simd::Isa,
    p: &mut [P],
    g: &[P],
    state1: &mut [u8],
    state2: &mut [u8],
    absmax1: &mut [f32],
    absmax2: &mut [f32],
    k: &StepScalars,
    r: Rounding,
) -> u64 {
    let (done, nonfinite) = simd::blockwise(isa, p, g, state1, state2, absmax1, absmax2, k, r);
    let b = done / BLOCK;
    nonfinite
        + blockwise_scalar(
            &mut p[done..],
            &g[done..],
            &mut state1[done..],
            &mut state2[done..],
            &mut absmax1[b..],
            &mut absmax2[b..],
            k,
            r.advanced(done),
        )
}

/// The scalar blockwise step, element by element in `math.rs`'s order: the definition every
/// SIMD level must reproduce bit for bit.
#[allow(clippy::too_many_arguments)]
pub fn blockwise_scalar<P: Element>(
    p: &mut [P],
    g: &[P],
    state1: &mut [u8],
    state2: &mut [u8],
    absmax1: &mut [f32],
    absmax2: &mut [f32],
    k: &StepScalars,
    r: Rounding,
) -> u64 {
    let mut nonfinite = 0;
    let mut m_buf = [0f32; BLOCK];
    let mut v_buf = [0f32; BLOCK];
    let blocks = p
        .chunks_mut(BLOCK)
        .zip(g.chunks(BLOCK))
        .zip(state1.chunks_mut(BLOCK).zip(state2.chunks_mut(BLOCK)));
    let absmax = absmax1.iter_mut().zip(absmax2.iter_mut());
    for (b, (((p, g), (s1, s2)), (a1, a2))) in blocks.zip(absmax).enumerate() {
        let r = r.advanced(b * BLOCK);
        let (old1, old2) = (*a1, *a2);
        let (mut new1, mut new2) = (0f32, 0f32);
        for i in 0..p.len() {
            let (m, v, finite) = moments8(s1[i], s2[i], old1, old2, unscaled(g[i].widen(), k), k);
            m_buf[i] = m;
            v_buf[i] = v;
            // f32::max ignores NaN, like CUDA's fmaxf; padding lanes simply do not exist (rule 4).
            new1 = new1.max(m.abs());
            new2 = new2.max(v.abs());
            if finite {
                p[i] = r.narrow(updated_param(p[i].widen(), m, v, k.step_size, k), i);
            } else {
                nonfinite += 1;
            }
        }
        *a1 = new1;
        *a2 = new2;
        for i in 0..p.len() {
            // An all-zero block gives 0/0 = NaN: code 0 for v, 255 for m (harmless: absmax is 0).
            (s1[i], s2[i]) = codes(m_buf[i], m_buf[i] / new1, v_buf[i] / new2);
        }
    }
    nonfinite
}

/// What the reduction sweeps return per chunk; chunk results are combined in chunk order.
#[derive(Debug, Clone, Copy, Default)]
pub struct Partial {
    pub max1: f32,
    pub max2: f32,
    /// Sum of squared bias-corrected updates (`max_unorm`) over updated elements.
    pub unorm: f64,
    /// Sum of squared parameter values before the step (`max_unorm`).
    pub param_sq: f64,
    /// Sum of squared finite gradient values (percentile clipping).
    pub grad_sq: f64,
    pub nonfinite: u64,
}

impl Partial {
    pub fn merge(self, o: Partial) -> Partial {
        Partial {
            max1: self.max1.max(o.max1),
            max2: self.max2.max(o.max2),
            unorm: self.unorm + o.unorm,
            param_sq: self.param_sq + o.param_sq,
            grad_sq: self.grad_sq + o.grad_sq,
            nonfinite: self.nonfinite + o.nonfinite,
        }
    }
}

/// Sum of squares of the finite gradient elements (percentile clipping's norm, rule 11), after
/// the loss scale.
pub fn grad_norm_sq<P: Element>(g: &[P], k: &StepScalars) -> Partial {
    let mut sum = 0f64;
    for &x in g {
        let x = unscaled(x.widen(), k);
        if x.is_finite() {
            sum += x as f64 * x as f64;
        }
    }
    Partial {
        grad_sq: sum,
        ..Partial::default()
    }
}

/// Sum of squared parameter values, in f64.
fn param_sq<P: Element>(p: &[P]) -> f64 {
    p.iter().map(|&x| x.widen() as f64 * x.widen() as f64).sum()
}

/// Non-blockwise pass 1 (rule 10): the new max of |m| and |v| over the tensor, and with
/// `max_unorm` the update norm and the parameter norm. Without `max_unorm` the whole-vector
/// part runs at SIMD level `isa` (a max is the same in any order); the f64 sums keep the
/// scalar loop's order.
#[allow(clippy::too_many_arguments)]
pub fn dynamic_reduce<P: VecElement>(
    isa: simd::Isa,
    p: &[P],
    g: &[P],
    state1: &[u8],
    state2: &[u8],
    old: (f32, f32),
    with_unorm: bool,
    k: &StepScalars,
) -> Partial {
    let mut r = Partial::default();
    let mut done = 0;
    if !with_unorm {
        let (n, (m1, m2)) = simd::dynamic_max(isa, g, state1, state2, old, k);
        (done, r.max1, r.max2) = (n, m1, m2);
    }
    for i in done..g.len() {
        let (m, v, finite) = moments8(
            state1[i],
            state2[i],
            old.0,
            old.1,
            unscaled(g[i].widen(), k),
            k,
        );
        r.max1 = r.max1.max(m.abs());
        r.max2 = r.max2.max(v.abs());
        if with_unorm && finite {
            r.unorm += unorm_term(m, v, k);
        }
    }
    if with_unorm {
        r.param_sq = param_sq(p);
    }
    r
}

/// Non-blockwise pass 2: recompute m and v from the untouched old codes, update every finite
/// element (the tail too), requantize with the new maxes. `step_size` includes the update
/// scale. Whole vectors at SIMD level `isa`, the rest in [`dynamic_update_scalar`].
#[allow(clippy::too_many_arguments)]
pub fn dynamic_update<P: VecElement>(
    isa: simd::Isa,
    p: &mut [P],
    g: &[P],
    state1: &mut [u8],
    state2: &mut [u8],
    old: (f32, f32),
    new: (f32, f32),
    step_size: f32,
    k: &StepScalars,
    r: Rounding,
) -> u64 {
    let (done, nonfinite) =
        simd::dynamic_update(isa, p, g, state1, state2, old, new, step_size, k, r);
    nonfinite
        + dynamic_update_scalar(
            &mut p[done..],
            &g[done..],
            &mut state1[done..],
            &mut state2[done..],
            old,
            new,
            step_size,
            k,
            r.advanced(done),
        )
}

/// The scalar non-blockwise update, the definition the SIMD levels reproduce bit for bit.
#[allow(clippy::too_many_arguments)]
pub fn dynamic_update_scalar<P: Element>(
    p: &mut [P],
    g: &[P],
    state1: &mut [u8],
    state2: &mut [u8],
    old: (f32, f32),
    new: (f32, f32),
    step_size: f32,
    k: &StepScalars,
    r: Rounding,
) -> u64 {
    let (recip1, recip2) = (1.0 / new.0, 1.0 / new.1);
    let mut nonfinite = 0;
    for i in 0..p.len() {
        let (m, v, finite) = moments8(
            state1[i],
            state2[i],
            old.0,
            old.1,
            unscaled(g[i].widen(), k),
            k,
        );
        if finite {
            p[i] = r.narrow(updated_param(p[i].widen(), m, v, step_size, k), i);
        } else {
            nonfinite += 1;
        }
        (state1[i], state2[i]) = codes(m, m * recip1, v * recip2);
    }
    nonfinite
}

/// 32-bit pass 1, only with `max_unorm`: update norm over the elements this step updates, and
/// the parameter norm.
pub fn fp32_reduce<P: Element>(
    p: &[P],
    g: &[P],
    state1: &[f32],
    state2: &[f32],
    skip_zeros: bool,
    k: &StepScalars,
) -> Partial {
    let mut r = Partial::default();
    for i in 0..g.len() {
        let (m, v, active) = moments32(
            state1[i],
            state2[i],
            unscaled(g[i].widen(), k),
            skip_zeros,
            k,
        );
        if active {
            r.unorm += unorm_term(m, v, k);
        }
    }
    r.param_sq = param_sq(p);
    r
}

/// 32-bit step (rule 9): fp32 moments, `skip_zeros`, non-finite guard; SIMD at level `isa`,
/// the tail in [`fp32_update_scalar`].
#[allow(clippy::too_many_arguments)]
pub fn fp32_update<P: VecElement>(
    isa: simd::Isa,
    p: &mut [P],
    g: &[P],
    state1: &mut [f32],
    state2: &mut [f32],
    skip_zeros: bool,
    step_size: f32,
    k: &StepScalars,
    r: Rounding,
) -> u64 {
    let (d, nonfinite) = simd::fp32(isa, p, g, state1, state2, skip_zeros, step_size, k, r);
    nonfinite
        + fp32_update_scalar(
            &mut p[d..],
            &g[d..],
            &mut state1[d..],
            &mut state2[d..],
            skip_zeros,
            step_size,
            k,
            r.advanced(d),
        )
}

/// The scalar 32-bit step: the definition the SIMD levels reproduce bit for bit.
#[allow(clippy::too_many_arguments)]
pub fn fp32_update_scalar<P: Element>(
    p: &mut [P],
    g: &[P],
    state1: &mut [f32],
    state2: &mut [f32],
    skip_zeros: bool,
    step_size: f32,
    k: &StepScalars,
    r: Rounding,
) -> u64 {
    let mut nonfinite = 0;
    for i in 0..p.len() {
        let g = unscaled(g[i].widen(), k);
        nonfinite += !g.is_finite() as u64;
        let (m, v, active) = moments32(state1[i], state2[i], g, skip_zeros, k);
        state1[i] = m;
        state2[i] = v;
        if active {
            p[i] = r.narrow(updated_param(p[i].widen(), m, v, step_size, k), i);
        }
    }
    nonfinite
}
