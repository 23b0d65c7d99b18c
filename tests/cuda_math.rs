//! The CUDA kernels' per-element math (`csrc/adam8bit_math.cuh`) against the CPU backend's
//! (`src/cpu/math.rs`, `src/qmap.rs`, the `half` crate), bit for bit, without a GPU: the header is
//! compiled for the host by g++ (no FMA contraction, as nvcc's -fmad=false) into a small driver
//! that reads inputs on stdin and writes results on stdout. (The kernel ABI structs' layout:
//! `tests/cuda_abi_layout.rs`.)

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use adam8bit::config::Hyper;
use adam8bit::cpu::math::{codes, moments32, moments8, unorm_term, updated_param};
use adam8bit::qmap::{
    KEY_HI_BITS, KEY_LO, KEY_SHIFT, SIGNED, SIGNED_BITS, UNSIGNED, UNSIGNED_BITS,
};
use adam8bit::scalars::StepScalars;
use half::{bf16, f16};

mod common;
use common::{compile, Rng};

/// The host driver, compiled once per test process (tests run in parallel and must not rewrite
/// an executable another test is starting).
fn driver() -> PathBuf {
    static DRIVER: OnceLock<PathBuf> = OnceLock::new();
    DRIVER.get_or_init(compile_driver).clone()
}

fn compile_driver() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cuda_math_host");
    let src = root.join("tests/cuda_math_host.cpp");
    let flags = [
        "-O2",
        "-ffp-contract=off",
        "-std=c++17",
        "-Wall",
        "-Werror",
        "-o",
    ];
    let mut args: Vec<&std::ffi::OsStr> = flags.iter().map(|f| f.as_ref()).collect();
    args.extend([exe.as_os_str(), src.as_os_str()]);
    compile("CXX", "g++", &args);
    exe
}

/// Runs the driver on the maps followed by one section, returns its output.
fn run(tag: u32, count: usize, records: &[u8]) -> Vec<u8> {
    let mut input = Vec::new();
    let (b1, b2) = (SIGNED.packed_buckets(), UNSIGNED.packed_buckets());
    for b in SIGNED_BITS
        .iter()
        .chain(&UNSIGNED_BITS)
        .chain(&b1)
        .chain(&b2)
    {
        input.extend_from_slice(&b.to_le_bytes());
    }
    input.extend_from_slice(&tag.to_le_bytes());
    input.extend_from_slice(&(count as u64).to_le_bytes());
    input.extend_from_slice(records);
    let mut child = Command::new(driver())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the host driver starts");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "driver exited with {}", out.status);
    out.stdout
}

/// A little-endian reader over the driver's output.
struct Out<'a>(&'a [u8]);

impl Out<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().unwrap()
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }
}

/// Every midpoint and code of both maps with 64 floats on each side, specials, subnormals, and
/// random values (uniform in [-1, 1] and log-uniform magnitudes).
fn quantizer_inputs() -> Vec<f32> {
    let mut xs = Vec::new();
    for q in [&*SIGNED, &*UNSIGNED] {
        let anchors = q.mids[..255].iter().chain(q.values.iter());
        for &a in anchors {
            for s in [a, -a] {
                for d in -64i64..=64 {
                    let bits = s.to_bits() as i64 + d;
                    if (0..=u32::MAX as i64).contains(&bits) {
                        xs.push(f32::from_bits(bits as u32));
                    }
                }
            }
        }
    }
    xs.extend([
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        -f32::NAN,
        f32::from_bits(0x7FA0_0001),
        f32::MIN_POSITIVE,
        -f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::from_bits(0x8000_0001),
        f32::MAX,
        f32::MIN,
        2.0,
        -2.0,
        1.5,
    ]);
    // Both edges of every bucket (the kernels compare low bits within one), both signs.
    for key in KEY_LO..=(KEY_HI_BITS >> KEY_SHIFT) {
        for bits in [key << KEY_SHIFT, (key << KEY_SHIFT) | 0xFFFF] {
            for b in [bits.wrapping_sub(1), bits, bits + 1] {
                xs.push(f32::from_bits(b));
                xs.push(-f32::from_bits(b));
            }
        }
    }
    let mut rng = Rng(0x5EED_CAFE);
    for _ in 0..200_000 {
        xs.push(rng.uniform() * 2.0 - 1.0);
        let mag = f32::from_bits((rng.next_u64() as u32) & 0x3FFF_FFFF);
        xs.push(if rng.next_u64() & 1 == 1 { -mag } else { mag });
    }
    xs
}

#[test]
fn quantizer_equals_the_table_quantizer_bit_for_bit() {
    let xs = quantizer_inputs();
    let ties = xs
        .iter()
        .filter(|&&x| SIGNED.mids[..255].contains(&x) || UNSIGNED.mids[..255].contains(&x))
        .count();
    assert!(ties >= 510, "every exact midpoint is among the inputs");
    let records: Vec<u8> = xs.iter().flat_map(|x| x.to_le_bytes()).collect();
    let bounded = xs.iter().filter(|x| x.to_bits() < 0x4000_0000).count();
    assert!(bounded > 100_000, "the Bounded codes' inputs are many");
    let out = run(1, xs.len(), &records);
    let mut o = Out(&out);
    for &x in &xs {
        let (c1, c2) = codes(x, x, x);
        // The general codes, then the Bounded ones (the general again outside their range).
        for route in ["general", "bounded"] {
            assert_eq!(
                (o.u8(), o.u8()),
                (c1, c2),
                "{route} codes of x = {x:e} ({:#010x})",
                x.to_bits()
            );
        }
    }
    assert!(o.0.is_empty());
}

/// All 65536 16-bit patterns in the low half (for the widening conversions), and for the
/// narrowing ones every exponent with tie, near-tie and random mantissas in both ranges
/// (normal and subnormal results) plus random patterns.
fn conversion_inputs() -> Vec<u32> {
    let mut us: Vec<u32> = (0..=0xFFFFu32).collect();
    let mut rng = Rng(0xC0FFEE);
    for sign in [0u32, 0x8000_0000] {
        for e in 0..=255u32 {
            for shift in 13..=24u32 {
                let half = 1u32 << (shift - 1);
                for low in [half - 1, half, half + 1, 0, (1 << shift) - 1] {
                    for lsb in [0u32, 1] {
                        let man = ((lsb << shift) | low) & 0x7F_FFFF;
                        us.push(sign | (e << 23) | man);
                    }
                }
            }
            for _ in 0..16 {
                us.push(sign | (e << 23) | (rng.next_u64() as u32 & 0x7F_FFFF));
            }
        }
    }
    for _ in 0..100_000 {
        us.push(rng.next_u64() as u32);
    }
    us
}

#[test]
fn fp16_bf16_conversions_equal_the_half_crate() {
    let us = conversion_inputs();
    let records: Vec<u8> = us.iter().flat_map(|u| u.to_le_bytes()).collect();
    let out = run(2, us.len(), &records);
    let mut o = Out(&out);
    for &u in &us {
        let x = f32::from_bits(u);
        let h = u as u16;
        assert_eq!(o.u16(), f16::from_f32(x).to_bits(), "f32->f16 {u:#010x}");
        assert_eq!(o.u16(), bf16::from_f32(x).to_bits(), "f32->bf16 {u:#010x}");
        assert_eq!(
            o.u32(),
            f16::from_bits(h).to_f32().to_bits(),
            "f16->f32 {h:#06x}"
        );
        // Exact, and a NaN keeps its bits (signalling ones too; half quiets them).
        let widened = o.u32();
        assert_eq!(widened, (h as u32) << 16, "bf16->f32 {h:#06x}");
        let want = bf16::from_bits(h).to_f32();
        assert!(
            widened == want.to_bits() || want.is_nan(),
            "bf16->f32 {h:#06x}"
        );
    }
    assert!(o.0.is_empty());
}

/// Rule 19's pieces as the kernels compile them: Philox4x32-10 and the stochastic narrowing,
/// against src/rounding.rs (which tests/stochastic_rounding.rs checks against its reference),
/// on the conversions' edge patterns with draws at, next to and far from each threshold.
#[test]
fn stochastic_rounding_equals_the_cpu_backend_bit_for_bit() {
    use adam8bit::rounding::{bf16_stochastic, f16_stochastic, philox};
    let mut rng = Rng(19);
    let mut cases = Vec::new();
    for u in conversion_inputs() {
        // Draws around the thresholds of both formats (bf16 drops 16 bits, normal fp16 13).
        let low16 = (u & 0xFFFF) << 16;
        let low13 = (u & 0x1FFF) << 19;
        for draw in [
            0,
            u32::MAX,
            rng.next_u64() as u32,
            low16,
            low16.wrapping_sub(1),
            low13,
            low13.wrapping_sub(1),
        ] {
            let key = [rng.next_u64() as u32, rng.next_u64() as u32];
            let ctr = [0; 4].map(|_: u32| rng.next_u64() as u32);
            cases.push((key, ctr, u, draw));
        }
    }
    let mut records = Vec::new();
    for (key, ctr, u, draw) in &cases {
        for w in key.iter().chain(ctr).chain([u, draw]) {
            records.extend(w.to_le_bytes());
        }
    }
    let out = run(6, cases.len(), &records);
    let mut o = Out(&out);
    for (key, ctr, u, draw) in cases {
        let got = [o.u32(), o.u32(), o.u32(), o.u32()];
        assert_eq!(
            got,
            philox(key, ctr),
            "philox key {key:x?} counter {ctr:x?}"
        );
        let x = f32::from_bits(u);
        assert_eq!(
            o.u16(),
            f16_stochastic(x, draw),
            "fp16 {u:#010x} draw {draw:#x}"
        );
        assert_eq!(
            o.u16(),
            bf16_stochastic(x, draw),
            "bf16 {u:#010x} draw {draw:#x}"
        );
    }
    assert!(o.0.is_empty());
}

struct Elem {
    k: StepScalars,
    c1: u8,
    c2: u8,
    skip: bool,
    s1: f32,
    s2: f32,
    g: f32,
    p: f32,
    m: f32,
    v: f32,
}

/// A value of magnitude 10^[-lo, hi) with a random sign, or now and then a special.
fn spread(rng: &mut Rng, lo: f32, hi: f32) -> f32 {
    let mag = 10f32.powf(rng.uniform() * (lo + hi) - lo);
    if rng.next_u64() & 1 == 1 {
        -mag
    } else {
        mag
    }
}

fn special_or(rng: &mut Rng, x: f32) -> f32 {
    const SPECIALS: [f32; 8] = [
        0.0,
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e-40,
        -1e-44,
        f32::MIN_POSITIVE,
    ];
    if rng.next_u64().is_multiple_of(16) {
        SPECIALS[(rng.next_u64() % SPECIALS.len() as u64) as usize]
    } else {
        x
    }
}

fn element_inputs() -> Vec<Elem> {
    let mut rng = Rng(0xADA8_0B17);
    (0..200_000)
        .map(|_| {
            let h = Hyper {
                beta1: (rng.uniform() * 0.999) as f64,
                beta2: 1.0 - 10f64.powf(-(rng.uniform() as f64) * 5.0),
                eps: 10f64.powf(-(rng.uniform() as f64) * 10.0),
                weight_decay: if rng.next_u64() & 1 == 1 {
                    0.0
                } else {
                    rng.uniform() as f64 * 0.1
                },
            };
            let lr = 10f64.powf(-(rng.uniform() as f64) * 6.0);
            let t = 1 + rng.next_u64() % 5000;
            let mut k = StepScalars::new(lr, &h, t);
            if rng.next_u64().is_multiple_of(4) {
                k.gnorm_scale = rng.uniform();
            }
            let s1 = if rng.next_u64().is_multiple_of(32) {
                0.0
            } else {
                spread(&mut rng, 30.0, 3.0).abs()
            };
            let s2 = if rng.next_u64().is_multiple_of(32) {
                0.0
            } else {
                spread(&mut rng, 38.0, 3.0).abs()
            };
            Elem {
                k,
                c1: rng.next_u64() as u8,
                c2: rng.next_u64() as u8,
                skip: rng.next_u64() & 1 == 1,
                s1,
                s2,
                g: {
                    let g = spread(&mut rng, 30.0, 5.0);
                    special_or(&mut rng, g)
                },
                p: {
                    let p = spread(&mut rng, 10.0, 3.0);
                    special_or(&mut rng, p)
                },
                m: spread(&mut rng, 30.0, 3.0),
                v: spread(&mut rng, 38.0, 3.0).abs(),
            }
        })
        .collect()
}

fn scalars_bytes(k: &StepScalars) -> Vec<u8> {
    [
        k.beta1,
        k.beta2,
        k.one_minus_beta1,
        k.one_minus_beta2,
        k.step_size,
        k.eps_c2,
        k.decay,
        k.eps,
        k.unorm_c1,
        k.unorm_c2,
        k.gnorm_scale,
        k.grad_scale,
    ]
    .iter()
    .flat_map(|x| x.to_le_bytes())
    .chain(k.apply_decay.to_le_bytes())
    .collect()
}

#[test]
fn element_math_equals_the_cpu_backend_bit_for_bit() {
    let es = element_inputs();
    let mut records = Vec::new();
    for e in &es {
        records.extend(scalars_bytes(&e.k));
        records.extend([e.c1, e.c2]);
        records.extend((e.skip as u32).to_le_bytes());
        for x in [e.s1, e.s2, e.g, e.p, e.m, e.v] {
            records.extend(x.to_le_bytes());
        }
    }
    let out = run(3, es.len(), &records);
    let mut o = Out(&out);
    let mut nonfinite = 0;
    for (i, e) in es.iter().enumerate() {
        let k = &e.k;
        let (m8, v8, f8) = moments8(e.c1, e.c2, e.s1, e.s2, e.g, k);
        nonfinite += !f8 as usize;
        let (c1, c2) = codes(m8, m8 / e.s1, v8 / e.s2);
        let (m32, v32, a32) = moments32(e.m, e.v, e.g, e.skip, k);
        let want_8 = [
            m8.to_bits(),
            v8.to_bits(),
            f8 as u32,
            updated_param(e.p, m8, v8, k.step_size, k).to_bits(),
        ];
        let got_8 = [o.u32(), o.u32(), o.u8() as u32];
        assert_eq!(got_8, want_8[..3], "record {i}: moments8");
        let got_finite = [o.u32(), o.u32()];
        assert_eq!(
            got_finite,
            want_8[..2],
            "record {i}: moments8 for finite gradients"
        );
        assert_eq!(o.u32(), want_8[3], "record {i}: updated_param");
        assert_eq!(
            o.u64(),
            unorm_term(m8, v8, k).to_bits(),
            "record {i}: unorm"
        );
        assert_eq!((o.u8(), o.u8()), (c1, c2), "record {i}: codes");
        let want_32 = [
            m32.to_bits(),
            v32.to_bits(),
            a32 as u32,
            updated_param(e.p, m32, v32, k.step_size, k).to_bits(),
        ];
        let got_32 = [o.u32(), o.u32(), o.u8() as u32, o.u32()];
        assert_eq!(got_32, want_32, "record {i}: moments32 / updated_param");
    }
    assert!(o.0.is_empty());
    assert!(nonfinite > 1000, "the inputs include non-finite gradients");
}

/// Percentile clipping's history update, total-order sort and scale (`a8_percentile_scale`
/// against `clipping::percentile_scale`), including histories a checkpoint or `write_state`
/// could hold: NaN of either sign, -0.0, infinities and negative values.
#[test]
fn percentile_clipping_equals_the_cpu_backend_bit_for_bit() {
    const HISTORY: usize = adam8bit::config::HISTORY;
    let mut rng = Rng(0xC11B_5CA1);
    let odd = [
        f32::NAN,
        -f32::NAN,
        -0.0,
        0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -3.5,
    ];
    let cases: Vec<([f32; HISTORY], f32, u64, i32)> = (0..2000)
        .map(|i| {
            let mut h = [0f32; HISTORY];
            for x in &mut h {
                *x = rng.uniform() * 10.0;
                // Many duplicates, so that equal keys meet in the sort.
                if rng.next_u64().is_multiple_of(3) {
                    *x = (*x).floor();
                }
                if i % 2 == 0 && rng.next_u64().is_multiple_of(10) {
                    *x = odd[(rng.next_u64() % odd.len() as u64) as usize];
                }
            }
            let norm = rng.uniform() * 12.0;
            let norm = special_or(&mut rng, norm);
            let t = [1, 2, 99, 100, 101, 1 + rng.next_u64() % 10_000][i % 6];
            let percentile = 1 + (rng.next_u64() % 99) as i32;
            (h, norm, t, percentile)
        })
        .collect();
    let mut records = Vec::new();
    for (h, norm, t, percentile) in &cases {
        h.iter().for_each(|x| records.extend(x.to_le_bytes()));
        records.extend(norm.to_le_bytes());
        records.extend(t.to_le_bytes());
        records.extend(percentile.to_le_bytes());
    }
    let out = run(4, cases.len(), &records);
    let mut o = Out(&out);
    for (i, (h, norm, t, percentile)) in cases.iter().enumerate() {
        let mut want = *h;
        let scale = adam8bit::clipping::percentile_scale(&mut want, *norm, *t, *percentile);
        let got: Vec<u32> = (0..HISTORY).map(|_| o.u32()).collect();
        let want_bits: Vec<u32> = want.iter().map(|x| x.to_bits()).collect();
        assert_eq!(got, want_bits, "case {i}: history");
        assert_eq!(o.u32(), scale.to_bits(), "case {i}: scale");
    }
    assert!(o.0.is_empty());
}

/// The blockwise quantizers divide by the block's absmax through its reciprocal (Markstein's
/// three operations, csrc/adam8bit_math.cuh): the codes equal those of the true division, for
/// absmax values across the whole float range (all-ones significands and powers of two
/// among them) and values from 0 to the absmax, subnormal and tiny ones included, and values
/// whose quotient lies within 2 ulp of a midpoint. Without the correction step (q = a * y
/// alone) it fails (checked).
#[test]
fn quantizer_division_by_the_reciprocal_gives_the_division_codes() {
    let mut rng = Rng(0xD1D0);
    let mut pairs = Vec::new();
    for i in 0..4000u32 {
        let b = match i % 4 {
            0 => f32::from_bits(((i % 253 + 1) << 23) | 0x7F_FFFF),
            1 => f32::from_bits((i % 253 + 1) << 23),
            _ => f32::from_bits(0x0080_0000 + (rng.next_u64() as u32) % 0x7E00_0000),
        };
        for k in 0..250 {
            let a = match k % 5 {
                0 => b * rng.uniform(),
                1 => -b * rng.uniform(),
                2 => f32::from_bits((rng.next_u64() as u32) % b.to_bits().max(1)),
                3 => -f32::from_bits((rng.next_u64() as u32) % b.to_bits().max(1)),
                _ => [b, -b, 0.0, -0.0, f32::from_bits(1)][k / 5 % 5],
            };
            pairs.push((a, b));
        }
        // Values whose quotient lies at or next to a midpoint, where an ulp changes the code.
        if i % 10 == 0 {
            for q in [&*SIGNED, &*UNSIGNED] {
                for &m in &q.mids[..255] {
                    let a = m * b;
                    for d in -2i32..=2 {
                        pairs.push((f32::from_bits((a.to_bits() as i32 + d) as u32), b));
                    }
                }
            }
        }
    }
    // Block maxima out of the reciprocal's range (the division route): quotients that are NaN
    // (0 / 0, inf / inf, NaN / b) or infinite, where the sign rule meets a NaN code.
    let odd = [
        0.0,
        -0.0,
        1.0,
        -1.0,
        f32::MAX,
        -f32::MAX,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ];
    for b in [
        0.0,
        f32::INFINITY,
        f32::from_bits(1),
        1e-30,
        f32::MAX,
        f32::NAN,
    ] {
        for a in odd.into_iter().chain([f32::NAN, -f32::NAN]) {
            pairs.push((a, b));
        }
    }
    let records: Vec<u8> = pairs
        .iter()
        .flat_map(|(a, b)| a.to_le_bytes().into_iter().chain(b.to_le_bytes()))
        .collect();
    let out = run(5, pairs.len(), &records);
    let mut o = Out(&out);
    for &(a, b) in &pairs {
        let (want_s, want_u) = codes(a, a / b, a.abs() / b);
        for route in ["kernel", "reciprocal"] {
            let (s, u) = (o.u8(), o.u8());
            assert_eq!(s, want_s, "{route}: signed code of {a:e} / {b:e}");
            assert_eq!(u, want_u, "{route}: unsigned code of |{a:e}| / {b:e}");
        }
    }
}

/// A power-of-two loss scale divides by one multiplication with its reciprocal (a8_unscale):
/// for every normal power of two, on gradients across the whole range (subnormal quotients,
/// ties at the subnormal boundary, infinities, NaN), g * RN(1 / s) is RN(g / s); and nothing
/// else counts as a power of two.
#[test]
fn a_power_of_two_loss_scale_divides_by_its_reciprocal_exactly() {
    let mut rng = Rng(0x5CA1E);
    let mut pairs = Vec::new();
    for e in 1..=254u32 {
        let s = f32::from_bits(e << 23);
        for _ in 0..400 {
            pairs.push((f32::from_bits(rng.next_u64() as u32), s));
        }
        for g in [
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NAN,
            f32::MAX,
            f32::MIN_POSITIVE,
        ] {
            pairs.push((g, s));
        }
        // Quotients near and below the smallest normal, where rounding meets the subnormals.
        for k in 0..64u32 {
            let q = f32::from_bits(k * 0x0002_0001 + (rng.next_u64() as u32 & 0xFF));
            pairs.push((q * s, s));
            pairs.push((f32::from_bits((q * s).to_bits().wrapping_add(1)), s));
        }
    }
    let not_powers = [
        0.0,
        -2.0,
        f32::from_bits(1),
        f32::from_bits(0x0040_0000),
        3.0,
        1234.567,
        f32::INFINITY,
        f32::NAN,
        f32::from_bits((2 << 23) | 1),
    ];
    for s in not_powers {
        pairs.push((1.0, s));
    }
    let records: Vec<u8> = pairs
        .iter()
        .flat_map(|(a, b)| a.to_le_bytes().into_iter().chain(b.to_le_bytes()))
        .collect();
    let out = run(7, pairs.len(), &records);
    let mut o = Out(&out);
    for &(g, s) in &pairs {
        let (power, product) = (o.u8() != 0, f32::from_bits(o.u32()));
        let want = s > 0.0 && s.is_normal() && s.to_bits() & 0x7F_FFFF == 0;
        assert_eq!(power, want, "is {s:e} a power of two");
        if power {
            let q = g / s;
            assert!(
                product.to_bits() == q.to_bits() || (q.is_nan() && product.is_nan()),
                "{g:e} / {s:e}: {q:e}, times the reciprocal {product:e}"
            );
        }
    }
    assert!(o.0.is_empty());
}
