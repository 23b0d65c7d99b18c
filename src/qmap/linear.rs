//! A table-free route to the nearest code for the SIMD kernels, exact where it answers and
//! honest where it cannot: it says "not sure" and the caller asks [`Qmap::quantize`].
//!
//! Why: on the CPUs this library targets, a 16-lane gather costs ~27 cycles (microcode
//! mitigations for gather data sampling), and the bucket quantizer needs two per state per 16
//! elements. Here every lookup is a register permute into tables of at most 32 entries.
//!
//! How: both maps are built decade by decade from `linspace`, so inside one decade the
//! midpoints are evenly spaced to about 1e-5 of their spacing. A *segment* is the run of codes
//! between two decade boundaries; in it the position `P(x) = x*alpha + beta` puts the k-th
//! midpoint within a few hundred-thousandths of the integer `k+1`, and `floor(P)` clamped to the
//! segment's highest code is the number of midpoints below `x` (the line stays above the
//! segment's lowest code, which `build` checks). The kernels compute
//! `y = fl(fl(|x| * alpha') + beta')` with `alpha' = alpha/256`, `beta' = 1 + beta/256`, so that
//! for `y` in [1, 2) the bits of `y` above bit 15 are `floor(P)` and the 15 bits below are its
//! fraction. The segment comes from `|x|`'s binade (a 32-entry table: the segment at the
//! binade's bottom and the one decade boundary inside it, checked to be at most one).
//!
//! Exactness, and the "not sure" lanes: `y` is monotone in `x` within a segment, so if `y` is
//! farther from every integer boundary than the largest distance at which any midpoint's own
//! `y` lies (measured when the tables are built), `floor(P)` counts the midpoints below `x`
//! exactly, and no tie is possible. The margin also absorbs an input up to [`SLACK_ULPS`] away
//! from the true `x` (the kernels multiply by `fl(1/absmax)` instead of dividing). Inputs within
//! that many ulps of a decade boundary are served by the neighbouring segment whose position at
//! the boundary is an integer, so the same near-integer test marks them "not sure" (the segment
//! change is selected a few ulps past the boundary on the other side). `build` checks every
//! assumption on the actual constants and returns `None` if one fails (then every lane is
//! "not sure"); the tests check the answers against [`Qmap::quantize`] for every float in
//! [-2, 2] and its neighbourhood.

use super::Qmap;

/// `|x|` lies in binade `clamp(biased exponent - BINADE_BIAS, 0, 31)`: binade 31 is [1, 2) (and
/// everything larger, infinity and NaN), binade 0 everything below 2^-30, zero included.
pub const BINADE_BIAS: i32 = 96;
/// How many ulps an input may be from the `x` whose code is wanted.
pub const SLACK_ULPS: i32 = 3;
/// The bits of 1.0f32: `y`'s bits minus this, shifted right by [`FRAC_BITS`], are `floor(P)`.
pub const ONE_BITS: i32 = 0x3F80_0000;
pub const FRAC_BITS: u32 = 15;
const FRAC_MASK: i32 = (1 << FRAC_BITS) - 1;
/// Thresholds must be at least this many ulps inside their binade, so that an input near a
/// threshold always looks it up in the same binade.
const EDGE_ULPS: u32 = 64;

/// The tables of one map. `align(64)` so that each 16-entry row is one cache line.
#[repr(C, align(64))]
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    /// Per binade: where the segment above the decade boundary inside it starts to be used
    /// (the boundary moved `SLACK_ULPS` to one side, see `build`), or +inf.
    pub threshold: [f32; 32],
    /// Per binade: the segment of its lowest float, as `u32` lane values.
    pub segment: [u32; 32],
    /// Per segment: `alpha' = alpha/256`, `beta' = 1 + beta/256`, and its highest code.
    pub alpha: [f32; 16],
    pub beta: [f32; 16],
    pub hi: [u32; 16],
    /// `y` bits within this distance of an integer boundary are "not sure".
    pub guard: i32,
}

impl Linear {
    /// The code of `|x|` (given as bits with the sign cleared) for the positive half of the
    /// map, and whether it is sure. The SIMD kernels compute exactly these operations per lane.
    #[inline(always)]
    pub fn magnitude_code(&self, mag: u32) -> (i32, bool) {
        let binade = ((mag >> 23) as i32 - BINADE_BIAS).clamp(0, 31) as usize;
        let ax = f32::from_bits(mag);
        let t = self.threshold[binade];
        let seg = self.segment[binade] as usize + (ax > t) as usize;
        let y = (ax * self.alpha[seg]) + self.beta[seg];
        let yb = (y.to_bits() as i32).wrapping_sub(ONE_BITS);
        let code = (yb >> FRAC_BITS).min(self.hi[seg] as i32);
        let near_boundary = (yb.wrapping_add(self.guard) & FRAC_MASK) < 2 * self.guard;
        (code, !near_boundary)
    }

    /// Builds and checks the tables of `q`, or `None` when one of the properties the exactness
    /// argument needs does not hold for these constants.
    pub fn build(q: &Qmap) -> Option<Linear> {
        let mids = &q.mids[..255];
        // Midpoints below +0.0: all of the signed map's negative half, none of the unsigned.
        let first = mids.iter().take_while(|&&m| m < 0.0).count();
        if q.signed {
            // The negative half must mirror the positive one for `Qmap::quantize_linear`.
            let mirrored = (0..first).all(|k| mids[k] == -mids[2 * first - 1 - k]);
            if first != 127 || !mirrored {
                return None;
            }
        } else if first != 0 {
            return None;
        }
        // Decade boundaries: the midpoints between codes of different decades.
        let decade = |v: f32| -> i32 {
            match v {
                v if v <= 0.0 => i32::MIN,
                v if v >= 1.0 => i32::MAX,
                v => (v as f64).log10().floor() as i32,
            }
        };
        let thresholds: Vec<usize> = (first..255)
            .filter(|&k| decade(q.values[k]) != decade(q.values[k + 1]))
            .collect();
        let segments = thresholds.len() + 1;
        if segments > 16 {
            return None;
        }
        let boundary_at = |j: usize| mids[thresholds[j]];
        let mut lin = Linear {
            threshold: [f32::INFINITY; 32],
            segment: [0; 32],
            alpha: [0.0; 16],
            beta: [0.0; 16],
            hi: [0; 16],
            guard: 0,
        };
        let y = |lin: &Linear, j: usize, x: f32| (x * lin.alpha[j]) + lin.beta[j];
        // Distance in bits from `y` to the nearest integer position.
        let off_integer = |y: f32| {
            let frac = (y.to_bits() as i64 - ONE_BITS as i64) & FRAC_MASK as i64;
            frac.min((1 << FRAC_BITS) - frac)
        };
        // What each condition needs from the guard, and each segment's perturbation.
        let mut needs = Vec::new();
        let mut perturbation = [0i64; 16];
        for j in 0..segments {
            let lo = if j == 0 { first } else { thresholds[j - 1] + 1 };
            let hi = thresholds.get(j).copied().unwrap_or(255);
            let floor = (j > 0).then(|| boundary_at(j - 1));
            let ceiling = (j + 1 < segments).then(|| boundary_at(j));
            let (alpha, beta) = fit(&mids[lo..hi], lo, floor, ceiling);
            lin.alpha[j] = (alpha / 256.0) as f32;
            lin.beta[j] = (1.0 + beta / 256.0) as f32;
            lin.hi[j] = hi as u32;
            // An input SLACK ulps off moves `x*alpha'` by at most SLACK * x*alpha' ulps of y,
            // plus one rounding of the product and one of the sum (each up to 2 ulps of y
            // while the product stays below 4).
            let span = ceiling.unwrap_or(2.0) as f64 * lin.alpha[j] as f64;
            if span >= 4.0 {
                return None;
            }
            perturbation[j] = (SLACK_ULPS as f64 * span).ceil() as i64 + 4;
            // Every interior midpoint's own `y` must lie near its integer position k + 1.
            for (k, &m) in mids.iter().enumerate().take(hi).skip(lo) {
                let yb = y(&lin, j, m).to_bits() as i64 - ONE_BITS as i64;
                needs.push((yb - ((k as i64 + 1) << FRAC_BITS)).abs() + perturbation[j] + 1);
            }
        }
        // Each decade boundary is selected a few ulps to one side, so that inputs within
        // SLACK ulps of it use the segment whose position there is an integer: they are then
        // "not sure" by the same near-integer test as the midpoints.
        let mut selector = vec![0u32; thresholds.len()];
        for i in 0..thresholds.len() {
            let t = boundary_at(i);
            let below = off_integer(y(&lin, i, t)) + perturbation[i] + 1;
            let above = off_integer(y(&lin, i + 1, t)) + perturbation[i + 1] + 1;
            selector[i] = if below <= above {
                t.to_bits() + SLACK_ULPS as u32
            } else {
                t.to_bits() - SLACK_ULPS as u32 - 1
            };
            needs.push(below.min(above));
        }
        lin.guard = needs.into_iter().max().unwrap_or(0) as i32 + 1;
        if lin.guard >= 64 {
            return None;
        }
        // The lowest code needs no clamp: from the first input a segment serves, `y` is at
        // its lowest position or within the guard below it (then not sure), and only grows.
        for j in 0..segments {
            let lo = if j == 0 { first } else { thresholds[j - 1] + 1 };
            let lowest = if j == 0 {
                0.0
            } else {
                f32::from_bits(selector[j - 1] + 1)
            };
            let yb = y(&lin, j, lowest).to_bits() as i64 - ONE_BITS as i64;
            if yb < ((lo as i64) << FRAC_BITS) - lin.guard as i64 {
                return None;
            }
        }
        for b in 0..32 {
            let bottom = if b == 0 {
                0.0
            } else {
                f32::from_bits(((b as i32 + BINADE_BIAS) as u32) << 23)
            };
            let above =
                |t: f32| b == 31 || t < f32::from_bits(((b as i32 + BINADE_BIAS + 1) as u32) << 23);
            let inside: Vec<usize> = (0..thresholds.len())
                .filter(|&i| boundary_at(i) >= bottom && above(boundary_at(i)))
                .collect();
            if inside.len() > 1 {
                return None;
            }
            if let Some(&i) = inside.first() {
                let t = boundary_at(i);
                let from_bottom = t.to_bits() - bottom.to_bits();
                let to_top =
                    (((b as i32 + BINADE_BIAS + 1) as u32) << 23).saturating_sub(t.to_bits());
                if from_bottom < EDGE_ULPS || to_top < EDGE_ULPS {
                    return None;
                }
                lin.threshold[b] = f32::from_bits(selector[i]);
            }
            lin.segment[b] = (0..thresholds.len())
                .filter(|&i| boundary_at(i) < bottom)
                .count() as u32;
        }
        Some(lin)
    }
}

/// `(alpha, beta)` with `P(m) = m*alpha + beta` near `lo + i + 1` for the i-th of `interior`
/// and, where a line has the freedom, an integer position at the segment's `ceiling` (the
/// decade boundary above it) and a position in `[lo, lo + 1)` at its `floor`. Segments with
/// several midpoints take the least-squares line, which puts the boundary near an integer by
/// the maps' decade structure (`build` measures how near).
fn fit(interior: &[f32], lo: usize, floor: Option<f32>, ceiling: Option<f32>) -> (f64, f64) {
    let lo = lo as f64;
    let through = |(x0, p0): (f64, f64), (x1, p1): (f64, f64)| {
        let alpha = (p1 - p0) / (x1 - x0);
        (alpha, p0 - alpha * x0)
    };
    let floor = floor.map_or(0.0, f64::from);
    match (interior, ceiling) {
        // The top segment (code 255 alone): position lo at its floor, lo + 0.5 at 1.0.
        ([], None) => through((floor, lo), (1.0, lo + 0.5)),
        ([], Some(c)) => through((floor, lo + 0.2), (c as f64, lo + 1.0)),
        ([m], Some(c)) => through((*m as f64, lo + 1.0), (c as f64, lo + 2.0)),
        ([m], None) => through((floor, lo + 0.2), (*m as f64, lo + 1.0)),
        _ => {
            let n = interior.len() as f64;
            let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
            for (i, &m) in interior.iter().enumerate() {
                let (x, y) = (m as f64, lo + i as f64 + 1.0);
                sx += x;
                sy += y;
                sxx += x * x;
                sxy += x * y;
            }
            let alpha = (n * sxy - sx * sy) / (n * sxx - sx * sx);
            (alpha, (sy - alpha * sx) / n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Qmap, SIGNED, UNSIGNED};
    use super::*;
    use rayon::prelude::*;

    fn maps() -> [&'static Qmap; 2] {
        [&SIGNED, &UNSIGNED]
    }

    /// Checks every float with bits in `[start, end)` of the sign `negative`: where the linear
    /// route is sure, the exact quantizer gives its code to every float within SLACK_ULPS.
    fn check_range(q: &Qmap, negative: bool, start: u32, end: u32) -> u64 {
        let s = SLACK_ULPS as u32;
        let sign = if negative { 0x8000_0000 } else { 0 };
        let lo = start.saturating_sub(s);
        let exact: Vec<u8> = (lo..end + s)
            .map(|b| q.quantize(f32::from_bits(b | sign)))
            .collect();
        let mut unsure = 0;
        for b in start..end {
            let x = f32::from_bits(b | sign);
            match q.quantize_linear(x) {
                None => unsure += 1,
                Some(c) => {
                    let at = (b - lo) as usize;
                    let window = &exact[at.saturating_sub(s as usize)..=at + s as usize];
                    assert!(
                        window.iter().all(|&e| e == c),
                        "signed={} x={x:e} ({:#010x}): linear {c}, exact {window:?}",
                        q.signed,
                        x.to_bits()
                    );
                }
            }
        }
        unsure
    }

    #[test]
    fn tables_build_for_both_maps() {
        for q in maps() {
            let lin = q
                .linear
                .as_ref()
                .expect("the Appendix A maps satisfy every check");
            assert!(lin.guard > 0 && lin.guard < 64, "guard {}", lin.guard);
        }
    }

    /// Every float in [-2, 2] in a release build or with `ADAM8BIT_EXHAUSTIVE=1` (`scripts/test.sh`
    /// runs it so); otherwise a debug build takes every 4099th float plus 512 floats around
    /// every midpoint and binade edge.
    #[test]
    fn linear_route_is_exact_wherever_it_is_sure() {
        const CHUNK: u32 = 1 << 20;
        let top = 2.0f32.to_bits() + 1;
        for q in maps() {
            for negative in [false, true] {
                let sampled =
                    cfg!(debug_assertions) && std::env::var_os("ADAM8BIT_EXHAUSTIVE").is_none();
                let unsure: u64 = if sampled {
                    let mut starts: Vec<u32> = (0..top).step_by(4099).collect();
                    let anchors = q.mids[..255].iter().map(|m| m.abs().to_bits());
                    let edges = (0..=128u32).map(|e| e << 23);
                    for a in anchors.chain(edges) {
                        starts.extend((a.saturating_sub(256)..a + 256).filter(|&b| b < top));
                    }
                    starts
                        .par_iter()
                        .map(|&b| check_range(q, negative, b, b + 1))
                        .sum()
                } else {
                    (0..top.div_ceil(CHUNK))
                        .into_par_iter()
                        .map(|i| check_range(q, negative, i * CHUNK, ((i + 1) * CHUNK).min(top)))
                        .sum()
                };
                assert!(
                    unsure > 0,
                    "the near-midpoint lanes must take the exact route"
                );
            }
        }
    }

    #[test]
    fn few_inputs_need_the_exact_route() {
        let mut rng = crate::rng::Rng(7);
        for q in maps() {
            let n = 1_000_000;
            let unsure = (0..n)
                .filter(|_| q.quantize_linear(rng.uniform()).is_none())
                .count();
            assert!(
                unsure * 1000 < n,
                "{unsure} of {n} uniform inputs are unsure"
            );
        }
    }

    #[test]
    fn special_inputs() {
        for q in maps() {
            for x in [
                f32::NAN,
                -f32::NAN,
                f32::INFINITY,
                f32::NEG_INFINITY,
                0.0,
                -0.0,
                1.0,
                -1.0,
            ] {
                if let Some(c) = q.quantize_linear(x) {
                    assert_eq!(c, q.quantize(x), "signed={} x={x}", q.signed);
                }
            }
        }
    }
}
