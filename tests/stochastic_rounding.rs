//! Stochastic rounding of 16-bit parameters (DECISIONS rule 19, docs/design.md "Stochastic
//! rounding"), end to end through the C ABI, against a reference written here from the
//! documented definition alone: its own Philox4x32-10, and the rounding done on the unbounded
//! grid of the 16-bit format in f64 (the two neighbours of `x`, the draw compared with the
//! fraction of the gap `x` lies above the lower one).
//!
//! Covered: the reference against the library on edge inputs; every updated element is the
//! reference rounding of the f32 value an fp32 handle computes from the same inputs, on every
//! path; the same bits for every thread count and SIMD level; shards equal slices of the full
//! tensor; a checkpoint resume continues the same draws; unbiasedness; off by default and
//! bit for bit unchanged when off.

mod common;
use common::checkpoint::*;
use common::*;

use adam8bit::cpu::simd::{force_isa, Isa};
use adam8bit::ffi::handle::bnb_set_num_threads;
use adam8bit::ffi::types::*;

/// The definition of docs/design.md, written independently of src/rounding.rs.
mod reference {
    /// Philox4x32-10 as Salmon et al. define it: ten rounds, the key bumped by the Weyl
    /// constants between rounds.
    pub fn philox(key: [u32; 2], ctr: [u32; 4]) -> [u32; 4] {
        let mut k = key;
        let mut c = ctr;
        for r in 0..10 {
            if r != 0 {
                k = [
                    k[0].wrapping_add(0x9E37_79B9),
                    k[1].wrapping_add(0xBB67_AE85),
                ];
            }
            let a = (c[0] as u64).wrapping_mul(0xD251_1F53);
            let b = (c[2] as u64).wrapping_mul(0xCD9E_8D57);
            let (hi_a, lo_a) = ((a >> 32) as u32, a as u32);
            let (hi_b, lo_b) = ((b >> 32) as u32, b as u32);
            c = [hi_b ^ c[1] ^ k[0], lo_b, hi_a ^ c[3] ^ k[1], lo_a];
        }
        c
    }

    fn words(x: u64) -> (u32, u32) {
        ((x & 0xFFFF_FFFF) as u32, (x >> 32) as u32)
    }

    /// The key of the `ordinal`-th registered parameter whose full tensor has `n` elements.
    pub fn default_key(n: u64, ordinal: u32) -> u64 {
        let (lo, hi) = words(n);
        let w = philox([0, 0], [lo, hi, ordinal, 1]);
        (w[1] as u64) << 32 | w[0] as u64
    }

    /// The draw of element `i` of the full tensor at step `t` (1 for the first step).
    pub fn draw(seed: u64, param_key: u64, t: u64, i: u64) -> u32 {
        let (s0, s1) = words(seed);
        let (p0, p1) = words(param_key);
        let k = philox([s0, s1], [p0, p1, 0, 2]);
        let (i0, i1) = words(i / 4);
        let (t0, t1) = words(t);
        philox([k[0], k[1]], [i0, i1, t0, t1])[(i % 4) as usize]
    }

    /// A 16-bit format: significand bits (hidden one included), smallest normal exponent,
    /// the first power of two it cannot represent, and its round-to-nearest conversion.
    pub struct Format {
        pub precision: i32,
        pub min_exp: i32,
        pub overflow: f64,
        pub nearest: fn(f32) -> u16,
        pub from_f64: fn(f64) -> u16,
    }

    pub const BF16: Format = Format {
        precision: 8,
        min_exp: -126,
        overflow: f64::from_bits(0x47F0_0000_0000_0000), // 2^128
        nearest: |x| half::bf16::from_f32(x).to_bits(),
        from_f64: |x| half::bf16::from_f64(x).to_bits(),
    };

    pub const F16: Format = Format {
        precision: 11,
        min_exp: -14,
        overflow: 65536.0,
        nearest: |x| half::f16::from_f32(x).to_bits(),
        from_f64: |x| half::f16::from_f64(x).to_bits(),
    };

    /// `x` rounded by `draw`: NaN and Inf as to nearest; otherwise the lower neighbour `a`
    /// of `|x|` on the format's grid (exponents unbounded above) or `a + gap`, the latter iff
    /// `draw < floor((|x| - a) / gap * 2^32)`; a neighbour past the largest finite value means
    /// round to nearest instead.
    pub fn round(f: &Format, x: f32, draw: u32) -> u16 {
        if !x.is_finite() {
            return (f.nearest)(x);
        }
        let m = (x as f64).abs();
        let sign = if x.is_sign_negative() { 0x8000 } else { 0 };
        if m == 0.0 {
            return sign;
        }
        let exp = (((m.to_bits() >> 52) & 0x7FF) as i32 - 1023).max(f.min_exp);
        let gap = 2f64.powi(exp - (f.precision - 1));
        let lower = (m / gap).floor() * gap;
        let fraction = (m - lower) / gap; // exact: gap is a power of two
        let threshold = (fraction * 4_294_967_296.0).floor() as u64;
        let chosen = if (draw as u64) < threshold {
            lower + gap
        } else {
            lower
        };
        if chosen > largest(f) {
            return (f.nearest)(x);
        }
        sign | (f.from_f64)(chosen)
    }

    /// The largest finite value of the format.
    pub fn largest(f: &Format) -> f64 {
        f.overflow - f.overflow / 2f64.powi(f.precision)
    }

    /// The probability that `x` rounds away from zero: its fraction of the gap.
    pub fn fraction(f: &Format, x: f32) -> f64 {
        let m = (x as f64).abs();
        let exp = (((m.to_bits() >> 52) & 0x7FF) as i32 - 1023).max(f.min_exp);
        let gap = 2f64.powi(exp - (f.precision - 1));
        (m - (m / gap).floor() * gap) / gap
    }
}

use reference::{Format, BF16, F16};

fn library(f: &Format) -> fn(f32, u32) -> u16 {
    if f.precision == 8 {
        adam8bit::rounding::bf16_stochastic
    } else {
        adam8bit::rounding::f16_stochastic
    }
}

/// Inputs where rounding has edges: zeros, the smallest and largest f32 values, each format's
/// subnormal range and its boundary, values just below and above the largest finite value and
/// the overflow threshold, exact values, and NaN/Inf.
fn edge_inputs() -> Vec<f32> {
    let mut v = vec![
        0.0,
        -0.0,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::from_bits(0x007F_FFFF),
        f32::MAX,
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1.0,
        1.0 + f32::EPSILON,
        65504.0,
        65519.99,
        65520.0,
        65535.99,
        65536.0,
        6.0e-8,
        5.96e-8,
        2.98e-8,
        2.9e-8,
        1.0e-9,
        6.103_515_6e-5,
        6.1e-5,
        3.389_531_4e38,
        3.39e38,
    ];
    for b in [
        0x7F7F_0000u32,
        0x7F7F_7FFF,
        0x7F7F_8000,
        0x7F7F_8001,
        0x7F7F_FFFF,
        0x0080_0000,
        0x0080_7FFF,
        0x0000_FFFF,
        0x0001_0000,
    ] {
        v.push(f32::from_bits(b));
    }
    let mut rng = Rng(19);
    for _ in 0..20_000 {
        v.push(f32::from_bits(rng.next_u64() as u32));
    }
    for _ in 0..20_000 {
        // Magnitudes around fp16's range, where most of its cases are.
        let e = (rng.next_u64() % 48) as i32 - 30;
        v.push(rng.normal() * 2f32.powi(e));
    }
    let negated: Vec<f32> = v.iter().map(|x| -x).collect();
    v.extend(negated);
    v
}

#[test]
fn the_library_rounds_as_the_reference_on_edge_inputs() {
    let mut rng = Rng(0x18);
    for f in [&BF16, &F16] {
        let lib = library(f);
        let mut away = 0u64;
        for x in edge_inputs() {
            let t = (reference::fraction(f, x) * 4_294_967_296.0).floor() as u64;
            let mut draws = vec![0, 1, u32::MAX, u32::MAX - 1, rng.next_u64() as u32];
            for d in [t.wrapping_sub(1), t, t + 1] {
                if d <= u32::MAX as u64 {
                    draws.push(d as u32);
                }
            }
            for d in draws {
                let want = reference::round(f, x, d);
                let got = lib(x, d);
                assert_eq!(
                    got,
                    want,
                    "precision {}: x = {x:e} ({:#010x}), draw {d:#x}: library {got:#06x}, reference {want:#06x}",
                    f.precision,
                    x.to_bits()
                );
                away += (got != (f.nearest)(x)) as u64;
            }
        }
        assert!(
            away > 1000,
            "the draws must matter ({away} differ from nearest)"
        );
    }
}

#[test]
fn rounding_keeps_exact_values_specials_and_finite_results() {
    let mut rng = Rng(7);
    for f in [&BF16, &F16] {
        let lib = library(f);
        for x in edge_inputs() {
            for _ in 0..4 {
                let d = rng.next_u64() as u32;
                let got = lib(x, d);
                let nearest = (f.nearest)(x);
                if x.is_nan() {
                    assert_eq!(got, nearest, "NaN is rounded as to nearest (rule 14)");
                    continue;
                }
                if reference::fraction(f, x) == 0.0 || x.is_infinite() {
                    assert_eq!(got, nearest, "{x:e} is exact: it stays put");
                }
                let inf = if f.precision == 8 { 0x7F80 } else { 0x7C00 };
                if nearest & 0x7FFF < inf {
                    assert!(
                        got & 0x7FFF < inf,
                        "{x:e}: nearest is finite, so is the result"
                    );
                }
            }
        }
    }
}

#[test]
fn the_library_draws_what_the_reference_draws() {
    use adam8bit::rounding::{default_key, philox, Stream};
    let mut rng = Rng(0x5EED);
    for _ in 0..1000 {
        let key = [rng.next_u64() as u32, rng.next_u64() as u32];
        let ctr = [0; 4].map(|_: u32| rng.next_u64() as u32);
        assert_eq!(philox(key, ctr), reference::philox(key, ctr));
    }
    for (n, ordinal) in [
        (1u64, 0u32),
        (4096, 0),
        (4096, 1),
        (1 << 40, 7),
        (u64::MAX, u32::MAX),
    ] {
        assert_eq!(default_key(n, ordinal), reference::default_key(n, ordinal));
    }
    for _ in 0..200 {
        let (seed, key, t) = (rng.next_u64(), rng.next_u64(), rng.next_u64() >> 20);
        let first = rng.next_u64() >> 4;
        let s = Stream::new(seed, key, t, first);
        for i in [0usize, 1, 2, 3, 4, 5, 1023] {
            assert_eq!(
                s.draw(i),
                reference::draw(seed, key, t, first + i as u64),
                "seed {seed} key {key} step {t} element {}",
                first + i as u64
            );
        }
    }
}

fn format_of(dtype: bnb_dtype_t) -> &'static Format {
    if dtype == BNB_DTYPE_BF16 {
        &BF16
    } else {
        &F16
    }
}

fn widen(dtype: bnb_dtype_t, b: &[u8]) -> Vec<f32> {
    b.chunks(2)
        .map(|c| {
            let bits = u16::from_le_bytes([c[0], c[1]]);
            if dtype == BNB_DTYPE_BF16 {
                half::bf16::from_bits(bits).to_f32()
            } else {
                half::f16::from_bits(bits).to_f32()
            }
        })
        .collect()
}

fn bits16(b: &[u8]) -> Vec<u16> {
    b.chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn f32_bytes(x: &[f32]) -> Vec<u8> {
    x.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn sr_config(f: impl FnOnce(&mut bnb_adam8bit_config_t)) -> bnb_adam8bit_config_t {
    let mut c = config_default();
    c.lr = 1e-3;
    c.weight_decay = 0.01;
    c.stochastic_rounding = true;
    c.seed = 0xC0FF_EE19;
    f(&mut c);
    c
}

/// A 16-bit handle with stochastic rounding and an fp32 handle step the same (widened)
/// parameters and gradients; every updated element must be the reference rounding of the fp32
/// handle's result with the draw of its full-tensor index, and the states must agree.
fn against_fp32(cfg: &bnb_adam8bit_config_t, n: u64, dtype: bnb_dtype_t, want_path: bnb_path_t) {
    let sr = Handle::new(cfg);
    let wide = Handle::new(cfg);
    // A parameter of another size first, so that this one's default key has ordinal 0 among
    // its size but is not the handle's first.
    sr.add(n + 1, dtype);
    let id = sr.add(n, dtype);
    wide.add(n + 1, BNB_DTYPE_F32);
    assert_eq!(wide.add(n, BNB_DTYPE_F32), id);
    let info = sr.info(id);
    assert_eq!(info.path, want_path, "n = {n}");
    assert!(info.stochastic_rounding);
    assert!(
        !wide.info(id).stochastic_rounding,
        "fp32 parameters never round"
    );
    assert_eq!(info.rounding_key, reference::default_key(n, 0));
    let f = format_of(dtype);
    let mut rng = Rng(n ^ dtype as u64);
    let mut p = random_elems(&mut rng, n as usize, dtype, 1.0);
    let mut moved_by_chance = 0usize;
    for t in 1..=4u64 {
        let g = random_elems(&mut rng, n as usize, dtype, 0.1);
        let mut p32 = f32_bytes(&widen(dtype, &p));
        let before = bits16(&p);
        sr.step(id, &mut p, &g);
        wide.step(id, &mut p32, &f32_bytes(&widen(dtype, &g)));
        let y = f32s(&p32);
        for (i, (&got, &y)) in bits16(&p).iter().zip(&y).enumerate() {
            let d = reference::draw(cfg.seed, info.rounding_key, t, i as u64);
            let want = reference::round(f, y, d);
            assert_eq!(
                got, want,
                "n = {n} dtype {dtype} step {t} element {i}: f32 result {y:e}, draw {d:#x}"
            );
            moved_by_chance += (got != (f.nearest)(y) && got != before[i]) as usize;
        }
        for kind in [BNB_STATE1, BNB_STATE2, BNB_ABSMAX1, BNB_ABSMAX2] {
            if sr.has(id, kind) {
                assert_eq!(sr.read(id, kind), wide.read(id, kind), "state kind {kind}");
            }
        }
    }
    assert!(
        n < 64 || moved_by_chance > 0,
        "n = {n}: no draw changed a result"
    );
}

#[test]
fn every_element_is_the_reference_rounding_of_the_fp32_result() {
    for dtype in [BNB_DTYPE_BF16, BNB_DTYPE_F16] {
        for n in [1u64, 7, 257, 4095] {
            against_fp32(&sr_config(|_| {}), n, dtype, BNB_PATH_FP32);
        }
        for n in [4096u64, 70_001] {
            against_fp32(&sr_config(|_| {}), n, dtype, BNB_PATH_BLOCKWISE8);
            let dynamic = sr_config(|c| c.block_wise = false);
            against_fp32(&dynamic, n, dtype, BNB_PATH_DYNAMIC8);
        }
    }
}

/// Every path and both 16-bit types, three steps, every output byte.
fn sr_run() -> Vec<u8> {
    let cfg = sr_config(|_| {});
    let mut out = Vec::new();
    for dtype in [BNB_DTYPE_BF16, BNB_DTYPE_F16] {
        for block_wise in [true, false] {
            let h = Handle::new(&sr_config(|c| c.block_wise = block_wise));
            let mut rng = Rng(cfg.seed);
            for n in [300_001u64, 70_000, 4095, 257] {
                let id = h.add(n, dtype);
                let mut p = random_elems(&mut rng, n as usize, dtype, 1.0);
                for _ in 0..3 {
                    let g = random_elems(&mut rng, n as usize, dtype, 0.1);
                    h.step(id, &mut p, &g);
                }
                out.extend(&p);
            }
        }
    }
    out
}

/// One test, since the SIMD level and the thread count are process-wide.
#[test]
fn every_thread_count_and_simd_level_draws_the_same() {
    assert!(force_isa(Some(Isa::Scalar)));
    ok(bnb_set_num_threads(1));
    let want = sr_run();
    let mut runs = 0;
    for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
        assert!(force_isa(Some(isa)));
        for threads in [1, 2, 3] {
            ok(bnb_set_num_threads(threads));
            assert!(sr_run() == want, "{isa:?} with {threads} threads");
            runs += 1;
        }
    }
    force_isa(None);
    ok(bnb_set_num_threads(0));
    assert!(runs >= 3);
}

/// Initial parameters of `sizes` and `steps` gradients for each, from `seed`.
#[allow(clippy::type_complexity)]
fn parameters_and_gradients(
    sizes: &[(u64, bnb_dtype_t)],
    steps: usize,
    seed: u64,
) -> (Vec<Vec<u8>>, Vec<Vec<Vec<u8>>>) {
    let mut rng = Rng(seed);
    let mut draw = |scale: f32| -> Vec<Vec<u8>> {
        sizes
            .iter()
            .map(|&(n, dt)| random_elems(&mut rng, n as usize, dt, scale))
            .collect()
    };
    let init = draw(1.0);
    let grads = (0..steps).map(|_| draw(0.1)).collect();
    (init, grads)
}

/// Tensors of one size each, so that a rank that holds none of a small tensor registers
/// none of that size (the default keys' ordinals count parameters of the same full size).
const SHARDED: [(u64, bnb_dtype_t); 5] = [
    (300, BNB_DTYPE_BF16), // two blocks: rank 2 of 3 holds none of it
    (12_289, BNB_DTYPE_BF16),
    (3000, BNB_DTYPE_F16), // the 32-bit path, by its full size
    (12_289, BNB_DTYPE_F16),
    (9000, BNB_DTYPE_BF16),
];

#[test]
fn a_shard_rounds_as_the_same_slice_of_the_full_tensor() {
    let cfg = sr_config(|_| {});
    let (init, grads) = parameters_and_gradients(&SHARDED, 3, 3);
    let full = Handle::new(&cfg);
    let mut full_p = init.clone();
    for &(n, dt) in &SHARDED {
        full.add(n, dt);
    }
    for g in &grads {
        for (id, p) in full_p.iter_mut().enumerate() {
            full.step(id as u32, p, &g[id]);
        }
    }
    let world = 3;
    let mut covered = vec![0u64; SHARDED.len()];
    for rank in 0..world {
        let h = Handle::new(&cfg);
        let mut mine = Vec::new();
        for (t, &(n, dt)) in SHARDED.iter().enumerate() {
            let (off, len) = shard_range(n, rank, world);
            if len == 0 {
                continue;
            }
            let mut o = param_options_default();
            o.flags = BNB_OPT_SHARD;
            o.shard_full_numel = n;
            o.shard_offset = off;
            let id = h.add_ex(len, dt, &o);
            let (a, b) = (h.info(id), full.info(t as u32));
            assert_eq!(
                (a.rounding_key, a.stochastic_rounding),
                (b.rounding_key, b.stochastic_rounding),
                "rank {rank} tensor {t}: the key every rank agrees on"
            );
            let w = elem_size(dt);
            let range = off as usize * w..(off + len) as usize * w;
            mine.push((
                t,
                id,
                range,
                init[t][off as usize * w..(off + len) as usize * w].to_vec(),
            ));
            covered[t] += len;
        }
        for g in &grads {
            for (t, id, range, p) in mine.iter_mut() {
                h.step(*id, p, &g[*t][range.clone()]);
            }
        }
        for (t, _, range, p) in &mine {
            assert!(
                *p == full_p[*t][range.clone()],
                "rank {rank} tensor {t}: the shard differs from its slice of the full run"
            );
        }
    }
    let want: Vec<u64> = SHARDED.iter().map(|&(n, _)| n).collect();
    assert_eq!(covered, want, "the shards tile every tensor");
}

#[test]
fn a_resumed_run_continues_the_same_draws() {
    let dir = temp_dir("stochastic_rounding_resume");
    let cfg = sr_config(|_| {});
    let sizes = [
        (5000u64, BNB_DTYPE_BF16),
        (300, BNB_DTYPE_F16),
        (5000, BNB_DTYPE_F16),
    ];
    let mut keyed = param_options_default();
    keyed.flags = BNB_OPT_SEED | BNB_OPT_ROUNDING_KEY;
    keyed.seed = 99;
    keyed.rounding_key = 1 << 63;
    let register = |h: &Handle| {
        for (i, &(n, dt)) in sizes.iter().enumerate() {
            if i == 2 {
                h.add_ex(n, dt, &keyed);
            } else {
                h.add(n, dt);
            }
        }
    };
    let (init, grads) = parameters_and_gradients(&sizes, 6, 11);
    let steps = |h: &Handle, p: &mut [Vec<u8>], range: std::ops::Range<usize>| {
        for g in &grads[range] {
            for (id, p) in p.iter_mut().enumerate() {
                h.step(id as u32, p, &g[id]);
            }
        }
    };
    let straight = Handle::new(&cfg);
    register(&straight);
    let mut want = init.clone();
    steps(&straight, &mut want, 0..6);

    let first = Handle::new(&cfg);
    register(&first);
    let mut p = init.clone();
    steps(&first, &mut p, 0..3);
    let file = dir.join("sr.safetensors");
    ok(first.save(&file));
    let bytes = std::fs::read(&file).unwrap();
    let meta = checkpoint_metadata(&bytes);
    assert_eq!(
        meta["format_version"], "2",
        "stochastic rounding writes version 2"
    );
    let resumed = Handle::new(&cfg);
    register(&resumed);
    ok(resumed.load(&file));
    for id in 0..3 {
        assert_eq!(resumed.info(id).rounding_key, first.info(id).rounding_key);
    }
    assert_eq!(resumed.info(2).rounding_key, 1 << 63);
    steps(&resumed, &mut p, 3..6);
    assert!(
        p == want,
        "3 + 3 steps through a checkpoint equal 6 straight"
    );

    // A checkpoint made without it is version 1 and loads only into a handle without it.
    let plain_cfg = sr_config(|c| {
        c.stochastic_rounding = false;
        c.seed = 0;
    });
    let plain = Handle::new(&plain_cfg);
    plain.add(5000, BNB_DTYPE_BF16);
    let v1 = dir.join("plain.safetensors");
    ok(plain.save(&v1));
    let meta = checkpoint_metadata(&std::fs::read(&v1).unwrap());
    assert_eq!(meta["format_version"], "1");
    let rounding = Handle::new(&cfg);
    rounding.add(5000, BNB_DTYPE_BF16);
    let before = rounding.serialize();
    assert_eq!(rounding.load(&v1), BNB_ERR_MISMATCH);
    assert!(message().contains("stochastic_rounding"), "{}", message());
    assert!(
        rounding.serialize() == before,
        "a rejected load changes nothing"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The safetensors header's metadata of a checkpoint file.
fn checkpoint_metadata(bytes: &[u8]) -> std::collections::HashMap<String, String> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).unwrap();
    meta.metadata().clone().unwrap()
}

/// Many elements at the same position between two bf16 (or fp16) values, moved by the same
/// sub-ulp update: the mean of the rounded results must be the f32 result, within six standard
/// deviations of the mean of `N` Bernoulli(f) steps of one gap (a false alarm about once in
/// 5e8 runs; the inputs are fixed, so the test is deterministic anyway).
#[test]
fn rounding_is_unbiased() {
    const N: usize = 1 << 20;
    // One 8-bit step of a constant gradient moves every element by lr (Adam's normalised
    // update is 1 at t = 1 for |g| >> eps), so p = start - lr lies at fraction f of a gap.
    for (dtype, start, gap) in [
        (BNB_DTYPE_BF16, 1.0f32, 2f64.powi(-8)), // below 1.0, bf16's gap is 2^-8
        (BNB_DTYPE_F16, 1.0, 2f64.powi(-11)),
        (BNB_DTYPE_F16, 2f32.powi(-20), 2f64.powi(-24)), // fp16 subnormals
    ] {
        for f in [0.01, 0.3, 0.5, 0.77] {
            let lr = f * gap;
            let cfg = sr_config(|c| {
                c.lr = lr;
                c.weight_decay = 0.0;
                c.eps = 1e-30;
            });
            let h = Handle::new(&cfg);
            let id = h.add(N as u64, dtype);
            let mut p = encode(dtype, std::iter::repeat_n(start, N));
            let g = encode(dtype, std::iter::repeat_n(0.5, N));
            h.step(id, &mut p, &g);
            let got = widen(dtype, &p);
            let wide = Handle::new(&cfg);
            wide.add(N as u64, BNB_DTYPE_F32);
            let mut y = f32_bytes(&vec![start; N]);
            wide.step(0, &mut y, &f32_bytes(&vec![0.5; N]));
            let exact = f32s(&y)[0] as f64;
            assert!(f32s(&y).iter().all(|&v| v as f64 == exact));
            assert!(
                (exact - (start as f64 - lr)).abs() < 1e-3 * lr,
                "the update is lr"
            );
            let lower = start as f64 - gap;
            let mean = got.iter().map(|&x| x as f64).sum::<f64>() / N as f64;
            assert!(
                got.iter().all(|&x| x as f64 == lower || x == start),
                "every result is one of the two neighbours"
            );
            let sigma = gap * (f * (1.0 - f) / N as f64).sqrt();
            assert!(
                (mean - exact).abs() <= 6.0 * sigma,
                "dtype {dtype} start {start:e} f {f}: mean {mean:e}, exact {exact:e}, sigma {sigma:e}"
            );
        }
    }
}

/// Without `stochastic_rounding` a seed changes nothing; fp32 parameters ignore the flag.
#[test]
fn off_by_default_and_unchanged_when_off() {
    let d = config_default();
    assert!(!d.stochastic_rounding);
    assert_eq!(d.seed, 0);
    let o = param_options_default();
    assert!(!o.stochastic_rounding && o.seed == 0 && o.rounding_key == 0);
    let run = |cfg: &bnb_adam8bit_config_t, dtype: bnb_dtype_t| {
        let h = Handle::new(cfg);
        let mut rng = Rng(5);
        let mut out = Vec::new();
        for n in [5000u64, 300] {
            let id = h.add(n, dtype);
            assert_eq!(
                h.info(id).stochastic_rounding,
                cfg.stochastic_rounding && dtype != BNB_DTYPE_F32
            );
            let mut p = random_elems(&mut rng, n as usize, dtype, 1.0);
            for _ in 0..3 {
                h.step(id, &mut p, &random_elems(&mut rng, n as usize, dtype, 0.1));
            }
            out.extend(p);
            out.extend(h.read(id, BNB_STATE1));
        }
        out
    };
    let mut plain = config_default();
    plain.lr = 1e-3;
    let mut seeded = plain;
    seeded.seed = 12345;
    let mut on = plain;
    on.stochastic_rounding = true;
    for dtype in [BNB_DTYPE_BF16, BNB_DTYPE_F16] {
        assert!(
            run(&seeded, dtype) == run(&plain, dtype),
            "a seed alone changes nothing"
        );
        assert!(
            run(&on, dtype) != run(&plain, dtype),
            "and stochastic rounding does"
        );
    }
    assert!(
        run(&on, BNB_DTYPE_F32) == run(&plain, BNB_DTYPE_F32),
        "fp32 is unaffected"
    );
}
