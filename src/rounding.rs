//! Stochastic rounding of 16-bit parameters (DECISIONS rule 19): Philox4x32-10, the keys and
//! counters it is fed, and the rounding of an f32 to one of its two neighbouring fp16/bf16
//! values by a 32-bit draw. docs/design.md ("Stochastic rounding") states the same definition
//! bit by bit; csrc/adam8bit_math.cuh implements it for the CUDA kernels.
//!
//! The draw of element `i` (its index in the full tensor, a shard's offset included) at step
//! `t` of a parameter with key `P` under seed `S`:
//!
//! - stream key `K = philox(key = S, counter = [lo(P), hi(P), 0, 2])`, words 0 and 1;
//! - `philox(key = K, counter = [lo(i >> 2), hi(i >> 2), lo(t), hi(t)])`, word `i & 3`.
//!
//! A parameter without an explicit key gets `P = philox(key = 0, counter = [lo(N), hi(N), k, 1])`,
//! words 0 and 1 (low, high), where `N` is the full tensor's element count and `k` the number
//! of parameters registered before it on the handle with the same `N`. Whether a rank holds a
//! slice of a tensor depends only on `N`, so every rank (and an unsharded handle) gives the
//! same tensor the same key.

use crate::dtype::Element;

const M0: u64 = 0xD251_1F53;
const M1: u64 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32-10 (Salmon et al., SC'11): ten rounds of the 4-word Philox bijection keyed by
/// `key`, the Weyl sequence bumping the key between rounds.
#[inline(always)]
pub fn philox(key: [u32; 2], counter: [u32; 4]) -> [u32; 4] {
    let [mut k0, mut k1] = key;
    let [mut c0, mut c1, mut c2, mut c3] = counter;
    for round in 0..10 {
        if round > 0 {
            k0 = k0.wrapping_add(W0);
            k1 = k1.wrapping_add(W1);
        }
        let p0 = M0 * c0 as u64;
        let p1 = M1 * c2 as u64;
        (c0, c1, c2, c3) = (
            (p1 >> 32) as u32 ^ c1 ^ k0,
            p1 as u32,
            (p0 >> 32) as u32 ^ c3 ^ k1,
            p0 as u32,
        );
    }
    [c0, c1, c2, c3]
}

fn split(x: u64) -> [u32; 2] {
    [x as u32, (x >> 32) as u32]
}

fn join(lo: u32, hi: u32) -> u64 {
    lo as u64 | (hi as u64) << 32
}

/// The key of the `ordinal`-th parameter (0-based) of a handle whose full tensor has
/// `full_numel` elements, when the caller sets none.
pub fn default_key(full_numel: u64, ordinal: u32) -> u64 {
    let [lo, hi] = split(full_numel);
    let w = philox([0, 0], [lo, hi, ordinal, 1]);
    join(w[0], w[1])
}

/// The Philox key of the draws of the parameter with key `param_key` under `seed` (what the
/// CUDA kernels receive; they take the step number from the device's counter).
pub fn stream_key(seed: u64, param_key: u64) -> [u32; 2] {
    let [lo, hi] = split(param_key);
    let w = philox(split(seed), [lo, hi, 0, 2]);
    [w[0], w[1]]
}

/// One parameter's draws in one step, from element `first` of the full tensor on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stream {
    key: [u32; 2],
    step: u64,
    first: u64,
}

impl Stream {
    /// The draws of step `step` of the parameter with key `param_key` under `seed`, for a
    /// slice that starts at element `first` of the full tensor.
    pub fn new(seed: u64, param_key: u64, step: u64, first: u64) -> Stream {
        Stream {
            key: stream_key(seed, param_key),
            step,
            first,
        }
    }

    /// The same draws for the slice that starts `by` elements further on.
    pub fn advanced(self, by: usize) -> Stream {
        Stream {
            first: self.first + by as u64,
            ..self
        }
    }

    /// The four draws of elements `4j .. 4j + 4` of the full tensor.
    #[inline(always)]
    fn quad(&self, j: u64) -> [u32; 4] {
        let [j0, j1] = split(j);
        let [t0, t1] = split(self.step);
        philox(self.key, [j0, j1, t0, t1])
    }

    /// The draw of element `i` of the slice.
    #[inline(always)]
    pub fn draw(&self, i: usize) -> u32 {
        let e = self.first + i as u64;
        self.quad(e >> 2)[(e & 3) as usize]
    }

    /// The draws of elements `i .. i + 4Q` of the slice (in the first `4Q` entries), where
    /// `first + i` is a multiple of 4: `Q` Philox calls, computed side by side (word by word
    /// across the calls) so that the compiler turns each round into a few vector multiplies.
    #[inline(always)]
    pub fn fill<const Q: usize>(&self, i: usize) -> [u32; 16] {
        let e = self.first + i as u64;
        debug_assert!(e.is_multiple_of(4) && Q <= 4);
        let [t0, t1] = split(self.step);
        let quads: [[u32; 2]; Q] = std::array::from_fn(|q| split((e >> 2) + q as u64));
        let mut c: [[u32; Q]; 4] = [quads.map(|j| j[0]), quads.map(|j| j[1]), [t0; Q], [t1; Q]];
        let [mut k0, mut k1] = self.key;
        for round in 0..10 {
            if round > 0 {
                k0 = k0.wrapping_add(W0);
                k1 = k1.wrapping_add(W1);
            }
            let mut next = [[0u32; Q]; 4];
            for q in 0..Q {
                let p0 = M0 * c[0][q] as u64;
                let p1 = M1 * c[2][q] as u64;
                next[0][q] = (p1 >> 32) as u32 ^ c[1][q] ^ k0;
                next[1][q] = p1 as u32;
                next[2][q] = (p0 >> 32) as u32 ^ c[3][q] ^ k1;
                next[3][q] = p0 as u32;
            }
            c = next;
        }
        let mut out = [0u32; 16];
        for q in 0..Q {
            for w in 0..4 {
                out[4 * q + w] = c[w][q];
            }
        }
        out
    }
}

/// How a step turns its f32 results into the parameter's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// Rule 14: to nearest, ties to even.
    Nearest,
    /// Rule 19, with these draws.
    Stochastic(Stream),
}

impl Rounding {
    /// The rounding of the slice that starts `by` elements further on.
    pub fn advanced(self, by: usize) -> Rounding {
        match self {
            Rounding::Nearest => Rounding::Nearest,
            Rounding::Stochastic(s) => Rounding::Stochastic(s.advanced(by)),
        }
    }

    /// Element `i` of the slice, rounded to `P`.
    #[inline(always)]
    pub fn narrow<P: Element>(&self, x: f32, i: usize) -> P {
        match self {
            Rounding::Nearest => P::narrow(x),
            Rounding::Stochastic(s) => P::narrow_stochastic(x, s.draw(i)),
        }
    }
}

/// The magnitude bits of `x` rounded to the 16-bit format whose values are the f32 values with
/// the low `shift` significand bits clear, from the truncated magnitude `kept` (the format's
/// bits without the sign) and the dropped bits `rest`: away from zero when
/// `draw < rest / 2^shift * 2^32`, floored for `shift > 32`. At or above the format's infinity
/// the caller rounds to nearest instead (so a value that rounds to a finite one never becomes
/// infinite).
#[inline(always)]
fn away_if(kept: u32, rest: u32, shift: u32, draw: u32) -> u32 {
    let threshold = if shift <= 32 {
        ((rest as u64) << (32 - shift)) as u32
    } else {
        (rest as u64).checked_shr(shift - 32).unwrap_or(0) as u32
    };
    kept + (draw < threshold) as u32
}

const BF16_INF: u32 = 0x7F80;
const F16_INF: u32 = 0x7C00;

/// bf16: the f32's low 16 bits are dropped (bf16 has f32's exponent range, subnormals
/// included, so the same cut holds everywhere).
#[inline(always)]
pub fn bf16_stochastic(x: f32, draw: u32) -> u16 {
    let u = x.to_bits();
    let mag = u & 0x7FFF_FFFF;
    let bits = away_if(mag >> 16, mag & 0xFFFF, 16, draw);
    // NaN and infinities have all exponent bits set, so they land here too.
    if bits >= BF16_INF {
        return half::bf16::from_f32(x).to_bits();
    }
    ((u >> 16) & 0x8000) as u16 | bits as u16
}

/// fp16: 13 dropped significand bits for normal halves; below 2^-14 the grid is 2^-24, so more.
#[inline(always)]
pub fn f16_stochastic(x: f32, draw: u32) -> u16 {
    let u = x.to_bits();
    let sign = ((u >> 16) & 0x8000) as u16;
    let exp = (u >> 23) & 0xFF;
    let man = u & 0x7F_FFFF;
    if exp >= 113 {
        // |x| >= 2^-14. From 2^16 on (NaN and infinities included) even the truncation is
        // infinite: nearest overflows too.
        if exp >= 143 {
            return half::f16::from_f32(x).to_bits();
        }
        let bits = away_if(((exp - 112) << 10) | (man >> 13), man & 0x1FFF, 13, draw);
        if bits >= F16_INF {
            return half::f16::from_f32(x).to_bits();
        }
        return sign | bits as u16;
    }
    // A multiple of 2^-24: the significand (hidden bit included) shifted right.
    let (sig, e) = if exp == 0 {
        (man, 1)
    } else {
        (man | 0x80_0000, exp)
    };
    let shift = 126 - e;
    let (kept, rest) = if shift >= 32 {
        (0, sig)
    } else {
        (sig >> shift, sig & ((1u32 << shift) - 1))
    };
    // At most 2^-14: never past fp16's largest finite value.
    sign | away_if(kept, rest, shift, draw) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random123's published known answers for Philox4x32-10.
    #[test]
    fn philox_matches_the_known_answers() {
        let cases = [
            (
                [0, 0],
                [0, 0, 0, 0],
                [0x6627_E8D5, 0xE169_C58D, 0xBC57_AC4C, 0x9B00_DBD8],
            ),
            (
                [u32::MAX; 2],
                [u32::MAX; 4],
                [0x408F_276D, 0x41C8_3B0E, 0xA20B_C7C6, 0x6D54_51FD],
            ),
            (
                [0xA409_3822, 0x299F_31D0],
                [0x243F_6A88, 0x85A3_08D3, 0x1319_8A2E, 0x0370_7344],
                [0xD16C_FE09, 0x94FD_CCEB, 0x5001_E420, 0x2412_6EA1],
            ),
        ];
        for (key, counter, want) in cases {
            assert_eq!(
                philox(key, counter),
                want,
                "key {key:x?} counter {counter:x?}"
            );
        }
    }

    /// `fill` and `draw` agree, and a slice's draws are the full tensor's shifted.
    #[test]
    fn draws_depend_on_the_full_tensor_index_only() {
        let full = Stream::new(3, 4, 5, 0);
        let shard = Stream::new(3, 4, 5, 512);
        let filled = shard.fill::<4>(8);
        for (i, &d) in filled.iter().enumerate() {
            assert_eq!(d, shard.draw(8 + i));
            assert_eq!(d, full.draw(520 + i));
            assert_eq!(d, full.advanced(512).draw(8 + i));
        }
        assert_ne!(
            Stream::new(3, 4, 6, 0).draw(0),
            full.draw(0),
            "the step changes draws"
        );
        assert_ne!(
            Stream::new(3, 5, 5, 0).draw(0),
            full.draw(0),
            "the key changes draws"
        );
        assert_ne!(
            Stream::new(4, 4, 5, 0).draw(0),
            full.draw(0),
            "the seed changes draws"
        );
    }
}
