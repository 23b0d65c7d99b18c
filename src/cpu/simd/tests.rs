//! Every SIMD level against the scalar kernel, bit for bit, on inputs chosen to hit the edges:
//! partial last blocks, NaN/±Inf/±0 gradients, all-zero blocks, subnormal and huge moments,
//! NaN parameters, and quantizer inputs on and around every midpoint; every path both with
//! round-to-nearest and with stochastic rounding (rule 19).

use half::{bf16, f16};

use super::element::VecElement;
use super::quantize::{quantize, quantize_linear, signed_code};
use super::{Isa, Lanes};
use crate::config::Hyper;
use crate::cpu::kernels::{
    blockwise, blockwise_scalar, dynamic_reduce, dynamic_update, dynamic_update_scalar,
    fp32_update, fp32_update_scalar,
};
use crate::qmap::{signed_code as scalar_signed_code, SIGNED, UNSIGNED};
use crate::rng::Rng;
use crate::rounding::{Rounding, Stream};
use crate::scalars::StepScalars;

/// Test inputs on top of the project's generator.
trait Inputs {
    /// Mostly ordinary values, sometimes an edge case.
    fn value(&mut self, scale: f32) -> f32;
}

impl Inputs for Rng {
    fn value(&mut self, scale: f32) -> f32 {
        match self.next_u64() % 64 {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => f32::NEG_INFINITY,
            3 => 0.0,
            4 => -0.0,
            5 => f32::from_bits(1 + (self.next_u64() as u32 & 0x7F_FFFF)),
            6 => 3e38,
            _ => (self.uniform() * 2.0 - 1.0) * scale * 10f32.powf(-6.0 * self.uniform()),
        }
    }
}

/// Parameter bit patterns with every NaN as one pattern. Which NaN `p + u` returns when both
/// are NaN depends on the operand order the compiler picks for a commutative add (Rust leaves NaN
/// payloads and signs unspecified), so the sign of a NaN parameter is not part of the function.
fn param_bits<P: VecElement>(v: &[P], bits: fn(P) -> u32) -> Vec<u32> {
    v.iter()
        .map(|&x| {
            if x.widen().is_nan() {
                u32::MAX
            } else {
                bits(x)
            }
        })
        .collect()
}

/// Round-to-nearest on even rounds, else stochastic rounding with random seed, key and step,
/// for a slice that starts at some block of its tensor.
fn rounding(rng: &mut Rng, round: usize) -> Rounding {
    if round.is_multiple_of(2) {
        return Rounding::Nearest;
    }
    let (seed, key, step) = (rng.next_u64(), rng.next_u64(), 1 + rng.next_u64() % 1000);
    Rounding::Stochastic(Stream::new(seed, key, step, 256 * (rng.next_u64() % 4096)))
}

fn levels() -> Vec<Isa> {
    let l: Vec<Isa> = Isa::ALL
        .into_iter()
        .filter(|&i| i != Isa::Scalar && i.available())
        .collect();
    // Every AArch64 CPU has NEON and every x86-64 CPU this crate is tested on has AVX2: an
    // empty list would make the comparisons below pass without comparing anything.
    #[cfg(target_arch = "aarch64")]
    assert!(l.contains(&Isa::Neon), "NEON not detected");
    #[cfg(target_arch = "x86_64")]
    assert!(l.contains(&Isa::Avx2), "AVX2 not detected");
    eprintln!("SIMD levels tested against scalar: {l:?}");
    l
}

fn scalars(rng: &mut Rng) -> StepScalars {
    let h = Hyper {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: if rng.next_u64().is_multiple_of(2) {
            0.0
        } else {
            0.01
        },
    };
    let mut k = StepScalars::new(1e-3, &h, 1 + rng.next_u64() % 50);
    if rng.next_u64().is_multiple_of(3) {
        k.gnorm_scale = 0.37;
    }
    k
}

fn check_dtype<P: VecElement>(bits: fn(P) -> u32) {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    for isa in levels() {
        for round in 0..64 {
            let n: usize = [1, 255, 256, 257, 4096, 4095, 5000, 12_345][round % 8];
            let blocks = n.div_ceil(256);
            let k = scalars(&mut rng);
            let r = rounding(&mut rng, round);
            let p0: Vec<P> = (0..n).map(|_| P::narrow(rng.value(1.0))).collect();
            let mut g: Vec<P> = (0..n).map(|_| P::narrow(rng.value(1e-2))).collect();
            let mut s1: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            let mut s2: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
            let mut a1: Vec<f32> = (0..blocks).map(|_| rng.value(1e-3).abs()).collect();
            let mut a2: Vec<f32> = (0..blocks).map(|_| rng.value(1e-6).abs()).collect();
            if blocks > 2 {
                // An all-zero block: zero gradients on a zero state (0/0 when requantizing).
                g[256..512].iter_mut().for_each(|x| *x = P::narrow(0.0));
                s1[256..512].iter_mut().for_each(|c| *c = 127);
                s2[256..512].iter_mut().for_each(|c| *c = 0);
                (a1[1], a2[1]) = (0.0, 0.0);
            }
            let (mut p_want, mut s1_want, mut s2_want) = (p0.clone(), s1.clone(), s2.clone());
            let (mut a1_want, mut a2_want) = (a1.clone(), a2.clone());
            let want = blockwise_scalar(
                &mut p_want,
                &g,
                &mut s1_want,
                &mut s2_want,
                &mut a1_want,
                &mut a2_want,
                &k,
                r,
            );
            let mut p = p0.clone();
            let got = blockwise(isa, &mut p, &g, &mut s1, &mut s2, &mut a1, &mut a2, &k, r);
            let ctx = format!("{isa:?} round {round} n {n}");
            assert_eq!(got, want, "{ctx}: non-finite count");
            assert_eq!(s1, s1_want, "{ctx}: state1");
            assert_eq!(s2, s2_want, "{ctx}: state2");
            let fbits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(fbits(&a1), fbits(&a1_want), "{ctx}: absmax1");
            assert_eq!(fbits(&a2), fbits(&a2_want), "{ctx}: absmax2");
            assert_eq!(
                param_bits(&p, bits),
                param_bits(&p_want, bits),
                "{ctx}: params"
            );
        }
    }
}

/// The non-blockwise path: the max pass and the update pass at each level against the scalar
/// level, bit for bit, on the same inputs as the blockwise test (non-finite gradients
/// included), plus a tensor whose new maxes are zero (0 * inf when requantizing).
fn check_dynamic<P: VecElement>(bits: fn(P) -> u32) {
    let mut rng = Rng(0x0DD_BA11);
    for isa in levels() {
        for round in 0..48 {
            let n: usize = [1, 15, 16, 17, 255, 4096, 5000, 12_345][round % 8];
            let k = scalars(&mut rng);
            let r = rounding(&mut rng, round);
            let p0: Vec<P> = (0..n).map(|_| P::narrow(rng.value(1.0))).collect();
            let zero = round % 12 == 11;
            let g: Vec<P> = (0..n)
                .map(|_| P::narrow(if zero { 0.0 } else { rng.value(1e-2) }))
                .collect();
            let s1: Vec<u8> = (0..n)
                .map(|_| if zero { 127 } else { rng.next_u64() as u8 })
                .collect();
            let s2: Vec<u8> = (0..n)
                .map(|_| if zero { 0 } else { rng.next_u64() as u8 })
                .collect();
            let old = (rng.value(1e-3).abs(), rng.value(1e-6).abs());
            let ctx = format!("{isa:?} round {round} n {n}");
            let reduce = |level| dynamic_reduce(level, &p0, &g, &s1, &s2, old, false, &k);
            let (want, got) = (reduce(Isa::Scalar), reduce(isa));
            assert_eq!(got.max1.to_bits(), want.max1.to_bits(), "{ctx}: max1");
            assert_eq!(got.max2.to_bits(), want.max2.to_bits(), "{ctx}: max2");
            let new = (want.max1, want.max2);
            let step = k.step_size;
            let (mut p_want, mut s1_want, mut s2_want) = (p0.clone(), s1.clone(), s2.clone());
            let nf_want = dynamic_update_scalar(
                &mut p_want,
                &g,
                &mut s1_want,
                &mut s2_want,
                old,
                new,
                step,
                &k,
                r,
            );
            let (mut p, mut s1_got, mut s2_got) = (p0.clone(), s1.clone(), s2.clone());
            let nf = dynamic_update(
                isa,
                &mut p,
                &g,
                &mut s1_got,
                &mut s2_got,
                old,
                new,
                step,
                &k,
                r,
            );
            assert_eq!(nf, nf_want, "{ctx}: non-finite count");
            assert_eq!(s1_got, s1_want, "{ctx}: state1");
            assert_eq!(s2_got, s2_want, "{ctx}: state2");
            assert_eq!(
                param_bits(&p, bits),
                param_bits(&p_want, bits),
                "{ctx}: params"
            );
        }
    }
}

#[test]
fn dynamic_path_matches_scalar_for_every_dtype() {
    check_dynamic::<f32>(f32::to_bits);
    check_dynamic::<f16>(|x| x.to_bits() as u32);
    check_dynamic::<bf16>(|x| x.to_bits() as u32);
}

#[test]
fn blockwise_fp32_matches_scalar() {
    check_dtype::<f32>(f32::to_bits);
}

#[test]
fn blockwise_fp16_matches_scalar() {
    check_dtype::<f16>(|x| x.to_bits() as u32);
}

#[test]
fn blockwise_bf16_matches_scalar() {
    check_dtype::<bf16>(|x| x.to_bits() as u32);
}

fn check_fp32_path<P: VecElement>(bits: fn(P) -> u32) {
    let mut rng = Rng(0x0DDB_A11C_AFE5_EED5);
    for isa in levels() {
        for round in 0..64 {
            let n: usize = [1, 15, 16, 17, 1000, 4095][round % 6];
            let k = scalars(&mut rng);
            let r = rounding(&mut rng, round / 2);
            let skip_zeros = round % 2 == 1;
            let step_size = k.step_size * 0.75;
            let p0: Vec<P> = (0..n).map(|_| P::narrow(rng.value(1.0))).collect();
            let g: Vec<P> = (0..n).map(|_| P::narrow(rng.value(1e-2))).collect();
            let s1: Vec<f32> = (0..n).map(|_| rng.value(1e-3)).collect();
            let s2: Vec<f32> = (0..n).map(|_| rng.value(1e-6).abs()).collect();
            let (mut p_want, mut s1_want, mut s2_want) = (p0.clone(), s1.clone(), s2.clone());
            let want = fp32_update_scalar(
                &mut p_want,
                &g,
                &mut s1_want,
                &mut s2_want,
                skip_zeros,
                step_size,
                &k,
                r,
            );
            let (mut p, mut s1, mut s2) = (p0, s1, s2);
            let got = fp32_update(
                isa, &mut p, &g, &mut s1, &mut s2, skip_zeros, step_size, &k, r,
            );
            let ctx = format!("{isa:?} round {round} n {n}");
            assert_eq!(got, want, "{ctx}: non-finite count");
            let fbits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(fbits(&s1), fbits(&s1_want), "{ctx}: state1");
            assert_eq!(fbits(&s2), fbits(&s2_want), "{ctx}: state2");
            assert_eq!(
                param_bits(&p, bits),
                param_bits(&p_want, bits),
                "{ctx}: params"
            );
        }
    }
}

#[test]
fn fp32_path_matches_scalar_for_every_dtype() {
    check_fp32_path::<f32>(f32::to_bits);
    check_fp32_path::<f16>(|x| x.to_bits() as u32);
    check_fp32_path::<bf16>(|x| x.to_bits() as u32);
}

/// Quantizes `xs` (a multiple of 16 long) at `isa` both ways: the exact quantizer with the sign
/// rule applied against `m = x` for the signed map, and the linear route (`None` where unsure).
fn quantize_at(isa: Isa, xs: &[f32], signed: bool) -> Vec<(u8, Option<u8>)> {
    let mut out = vec![[0u8; 3]; xs.len()];
    let q = Quantize {
        xs,
        out: out.as_mut_ptr().cast(),
        signed,
    };
    // SAFETY: `isa` comes from `levels()`, so the CPU has it; `out` holds 3 bytes per input.
    unsafe { super::run(isa, &q) }.expect("levels() lists SIMD levels only");
    out.iter()
        .map(|&[exact, linear, unsure]| (exact, (unsure == 0).then_some(linear)))
        .collect()
}

/// Per input, three bytes: exact code, linear-route code, linear route unsure (1) or not.
struct Quantize<'a> {
    xs: &'a [f32],
    out: *mut u8,
    signed: bool,
}

impl super::Kernel for Quantize<'_> {
    type Out = ();
    #[inline(always)]
    unsafe fn run<S: Lanes>(&self) {
        let q = if self.signed { &*SIGNED } else { &*UNSIGNED };
        let lin = q.linear.as_ref().expect("the linear tables build");
        let mut codes = [[0u8; 16]; 3];
        for i in (0..self.xs.len()).step_by(S::N) {
            let x = S::load(self.xs.as_ptr().add(i));
            let c = quantize::<S>(q, x);
            let c = if self.signed {
                signed_code::<S>(c, x)
            } else {
                c
            };
            S::store_u8(codes[0].as_mut_ptr(), c);
            let (c, not_sure) = quantize_linear::<S>(q, lin, x);
            S::store_u8(codes[1].as_mut_ptr(), c);
            let flags = S::select_i(not_sure, S::splat_i(1), S::splat_i(0));
            S::store_u8(codes[2].as_mut_ptr(), flags);
            for lane in 0..S::N {
                for (what, row) in codes.iter().enumerate() {
                    *self.out.add(3 * (i + lane) + what) = row[lane];
                }
            }
        }
    }
}

/// Both quantizers lane for lane against their scalar forms: every float within 64 ulps of
/// every midpoint and code value of both maps (both signs), a large random set in [-1, 1] and
/// at tiny magnitudes, plus the special values.
#[test]
fn quantizer_matches_scalar_around_every_midpoint() {
    let mut xs = Vec::new();
    for q in [&*SIGNED, &*UNSIGNED] {
        for &a in q.mids[..255].iter().chain(&q.values) {
            for d in -64i32..=64 {
                let x = f32::from_bits((a.to_bits() as i32 + d) as u32);
                xs.extend([x, -x]);
            }
        }
    }
    let mut rng = Rng(0xDEAD_BEEF_1234_5678);
    for _ in 0..1_000_000 {
        xs.push(rng.uniform() * 2.0 - 1.0);
        xs.push(rng.value(1.0));
    }
    xs.extend([
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.0,
        -0.0,
        2.0,
        -2.0,
    ]);
    xs.resize(xs.len().div_ceil(16) * 16, 0.5);
    for isa in levels() {
        for signed in [true, false] {
            let got = quantize_at(isa, &xs, signed);
            let q = if signed { &*SIGNED } else { &*UNSIGNED };
            for (&x, &(exact, linear)) in xs.iter().zip(&got) {
                let want = if signed {
                    scalar_signed_code(q.quantize(x), x)
                } else {
                    q.quantize(x)
                };
                let bits = x.to_bits();
                assert_eq!(
                    exact, want,
                    "exact, {isa:?} signed={signed} x={x:e} ({bits:#x})"
                );
                let route = q.quantize_linear(x);
                assert_eq!(
                    linear, route,
                    "linear, {isa:?} signed={signed} x={x:e} ({bits:#x})"
                );
            }
        }
    }
}
