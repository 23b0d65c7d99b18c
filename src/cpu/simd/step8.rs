//! The per-vector pieces the paths share: decoding codes into new moments (both 8-bit paths),
//! the parameter update (every path), and requantization by the linear route with the exact
//! quantizer for unsure vectors (both 8-bit paths). Each is `math.rs`'s arithmetic lane by lane, in its order.

use super::element::VecElement;
use super::quantize::{quantize, quantize_linear, signed_code};
use super::Lanes;
use crate::qmap::{Linear, Qmap, SIGNED, UNSIGNED};
use crate::rounding::{Rounding, Stream};
use crate::scalars::StepScalars;

/// The step's scalars as lanes, and the maps, built once per kernel call.
pub struct Consts<S: Lanes> {
    beta1: S::F,
    beta2: S::F,
    om1: S::F,
    om2: S::F,
    gnorm: S::F,
    eps_c2: S::F,
    decay: Option<S::F>,
    /// The loss scale gradients are divided by, when there is one (rule 18).
    grad_scale: Option<S::F>,
    /// How updated parameters are rounded; element 0 of the kernel's slice is its element 0.
    rounding: Rounding,
    pub signed: &'static Qmap,
    pub unsigned: &'static Qmap,
    /// Both maps' linear tables, when they built.
    pub linear: Option<(&'static Linear, &'static Linear)>,
}

impl<S: Lanes> Consts<S> {
    /// `N` gradient elements at `g` as the step reads them (`math::unscaled` on `N` lanes).
    ///
    /// # Safety
    /// `S`'s ISA must be enabled; `g` valid for `N` elements.
    #[inline(always)]
    pub unsafe fn grad<P: super::VecElement>(&self, g: *const P) -> S::F {
        let (_, gf) = P::load::<S>(g);
        match self.grad_scale {
            Some(s) => S::div(gf, s),
            None => gf,
        }
    }

    /// # Safety
    /// `S`'s ISA must be enabled.
    #[inline(always)]
    pub unsafe fn new(k: &StepScalars, rounding: Rounding) -> Consts<S> {
        let (signed, unsigned): (&'static Qmap, &'static Qmap) = (&SIGNED, &UNSIGNED);
        Consts {
            beta1: S::splat(k.beta1),
            beta2: S::splat(k.beta2),
            om1: S::splat(k.one_minus_beta1),
            om2: S::splat(k.one_minus_beta2),
            gnorm: S::splat(k.gnorm_scale),
            eps_c2: S::splat(k.eps_c2),
            decay: (k.apply_decay != 0).then(|| S::splat(k.decay)),
            grad_scale: (k.grad_scale != 1.0).then(|| S::splat(k.grad_scale)),
            rounding,
            signed,
            unsigned,
            linear: signed.linear.as_ref().zip(unsigned.linear.as_ref()),
        }
    }
}

/// `math::moments8` on `N` lanes: the new `(m, v)` from the codes at `s1`, `s2` decoded with
/// the scales `old1`, `old2`, and the gradient `gf`; `(+0, +0)` where `gf` is not finite (the
/// returned mask).
///
/// # Safety
/// `S`'s ISA must be enabled; `s1`, `s2` valid for `N` bytes.
#[inline(always)]
pub unsafe fn moments<S: Lanes>(
    c: &Consts<S>,
    s1: *const u8,
    s2: *const u8,
    old1: S::F,
    old2: S::F,
    gf: S::F,
) -> (S::F, S::F, S::M) {
    let (q1, q2) = decode::<S>(c, s1, s2);
    moments_of::<S>(c, q1, q2, old1, old2, gf)
}

/// The values of the `N` codes at `s1` (signed map) and `s2` (unsigned map).
///
/// # Safety
/// `S`'s ISA must be enabled; `s1`, `s2` valid for `N` bytes.
#[inline(always)]
pub unsafe fn decode<S: Lanes>(c: &Consts<S>, s1: *const u8, s2: *const u8) -> (S::F, S::F) {
    (
        S::lookup256(c.signed.values.as_ptr(), S::load_u8(s1)),
        S::lookup256(c.unsigned.values.as_ptr(), S::load_u8(s2)),
    )
}

/// [`moments`] of the decoded code values `q1`, `q2`.
///
/// # Safety
/// `S`'s ISA must be enabled.
#[inline(always)]
pub unsafe fn moments_of<S: Lanes>(
    c: &Consts<S>,
    q1: S::F,
    q2: S::F,
    old1: S::F,
    old2: S::F,
    gf: S::F,
) -> (S::F, S::F, S::M) {
    let zero = S::splat(0.0);
    let finite = S::finite(gf);
    let gam = S::mul(gf, c.gnorm);
    let v = S::add(
        S::mul(S::mul(q2, old2), c.beta2),
        S::mul(S::mul(c.om2, gam), gam),
    );
    let m = S::add(S::mul(S::mul(q1, old1), c.beta1), S::mul(c.om1, gam));
    (
        S::select(finite, m, zero),
        S::select(finite, v, zero),
        finite,
    )
}

/// `math::updated_param` on `N` lanes, stored where `finite` (the old bits elsewhere); `p` is
/// element `i` of the kernel's slice.
///
/// # Safety
/// `S`'s ISA must be enabled; `p` valid for `N` elements.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub unsafe fn update_param<S: Lanes, P: VecElement>(
    c: &Consts<S>,
    p: *mut P,
    i: usize,
    m: S::F,
    v: S::F,
    step_size: S::F,
    finite: S::M,
) {
    let (raw, pf) = P::load::<S>(p);
    let mut new = S::add(
        pf,
        S::mul(step_size, S::div(m, S::add(S::sqrt(v), c.eps_c2))),
    );
    if let Some(decay) = c.decay {
        new = S::mul(new, decay);
    }
    match &c.rounding {
        Rounding::Nearest => P::store::<S>(p, raw, new, finite),
        Rounding::Stochastic(stream) => store_stochastic::<S, P>(stream, p, i, new, finite),
    }
}

/// Rule 19's rounding of the lanes where `take` is set, one lane at a time through
/// `Element::narrow_stochastic` (the one definition of it), with one Philox call per four lanes.
///
/// # Safety
/// As [`update_param`].
#[inline(always)]
unsafe fn store_stochastic<S: Lanes, P: VecElement>(
    stream: &Stream,
    p: *mut P,
    i: usize,
    new: S::F,
    take: S::M,
) {
    const MAX_LANES: usize = 16;
    let (mut x, mut taken) = ([0f32; MAX_LANES], [0f32; MAX_LANES]);
    S::store(x.as_mut_ptr(), new);
    S::store(
        taken.as_mut_ptr(),
        S::select(take, S::splat(1.0), S::splat(0.0)),
    );
    // S::N is a constant of the level: one branch survives.
    let draws = match S::N {
        16 => stream.fill::<4>(i),
        8 => stream.fill::<2>(i),
        _ => stream.fill::<1>(i),
    };
    debug_assert!(S::N <= 16);
    for l in 0..S::N {
        if taken[l] != 0.0 {
            *p.add(l) = P::narrow_stochastic(x[l], draws[l]);
        }
    }
}

/// Stores the codes of `m` (signed map, sign rule) and `v` (unsigned map) at `s1`, `s2`.
/// `scaled` gives the inputs the linear route may take (`None`: take the exact route), and
/// `exact` the quantizer inputs rule 1 or 10 defines; the linear route's answers hold for
/// both whenever they are within `SLACK_ULPS` of each other.
///
/// # Safety
/// `S`'s ISA must be enabled; `s1`, `s2` valid for `N` bytes.
#[inline(always)]
pub unsafe fn store_codes<S: Lanes>(
    c: &Consts<S>,
    s1: *mut u8,
    s2: *mut u8,
    m: S::F,
    scaled: Option<(S::F, S::F)>,
    exact: impl FnOnce() -> (S::F, S::F),
) {
    let (c1, c2) = match c.linear.zip(scaled) {
        Some(((l1, l2), (x1, x2))) => {
            let (c1, unsure1) = quantize_linear::<S>(c.signed, l1, x1);
            let (c2, unsure2) = quantize_linear::<S>(c.unsigned, l2, x2);
            if S::count(S::or_m(unsure1, unsure2)) == 0 {
                (c1, c2)
            } else {
                let (x1, x2) = exact();
                (
                    requantize_unsure::<S>(c.signed, c1, unsure1, x1),
                    requantize_unsure::<S>(c.unsigned, c2, unsure2, x2),
                )
            }
        }
        None => {
            let (x1, x2) = exact();
            (quantize::<S>(c.signed, x1), quantize::<S>(c.unsigned, x2))
        }
    };
    S::store_u8(s1, signed_code::<S>(c1, m));
    S::store_u8(s2, c2);
}

/// `codes` with the lanes set in `unsure` replaced by `q.quantize` of `x`, one lane at a time:
/// the linear route leaves a lane or two of a vector unsure now and then, and the scalar bucket
/// quantizer costs less for those than the vector one's gathers do for all lanes.
///
/// # Safety
/// `S`'s ISA must be enabled.
#[inline(always)]
unsafe fn requantize_unsure<S: Lanes>(q: &Qmap, codes: S::I, unsure: S::M, x: S::F) -> S::I {
    const MAX_LANES: usize = 16;
    debug_assert!(S::N <= MAX_LANES);
    if S::count(unsure) == 0 {
        return codes;
    }
    let (mut c, mut xs, mut flag) = ([0i32; MAX_LANES], [0f32; MAX_LANES], [0i32; MAX_LANES]);
    S::store(c.as_mut_ptr().cast(), S::as_f(codes));
    S::store(xs.as_mut_ptr(), x);
    S::store(
        flag.as_mut_ptr().cast(),
        S::as_f(S::select_i(unsure, S::splat_i(1), S::splat_i(0))),
    );
    for l in 0..S::N {
        if flag[l] != 0 {
            c[l] = q.quantize(xs[l]) as i32;
        }
    }
    S::as_i(S::load(c.as_ptr().cast()))
}
