//! The two 256-entry quantization maps (bnb-reference.md Appendix A) and the exact
//! nearest-code quantizer built on them (DECISIONS rule 1), in O(1) per element.
//!
//! The maps are constants, never regenerated: bitsandbytes builds them at run time with
//! `torch.linspace`, whose last-ulp results depend on the torch build (bnb-reference.md 2.4).
//!
//! Quantizing `x` means: the index whose fp32 midpoints `fl(fl(q[k] + q[k+1]) * 0.5)` bracket
//! `x`, an exact tie going to the even index, NaN giving 0 (bitsandbytes' `quantize_2D`).
//! Instead of its 8-step binary search we look up a bucket keyed by the top 16 bits of `|x|`
//! (sign, 8 exponent bits, 7 mantissa bits). Every bucket holds at most one midpoint (checked
//! for every bucket when the tables are built and in the tests), so the bucket's count of
//! midpoints below it, plus one compare against that single midpoint, is the exact answer.

use std::sync::LazyLock;

mod linear;

pub use linear::{Linear, BINADE_BIAS, FRAC_BITS, ONE_BITS, SLACK_ULPS};

/// Signed map (`qmap1`, first moment): IEEE-754 binary32 bit patterns; 0.0 at index 127.
pub const SIGNED_BITS: [u32; 256] = [
    0xbf7e3333, 0xbf7a999a, 0xbf770000, 0xbf736666, 0xbf6fcccd, 0xbf6c3333, 0xbf68999a, 0xbf650000,
    0xbf616666, 0xbf5dcccd, 0xbf5a3333, 0xbf56999a, 0xbf530000, 0xbf4f6666, 0xbf4bcccd, 0xbf483333,
    0xbf44999a, 0xbf410000, 0xbf3d6666, 0xbf39cccd, 0xbf363334, 0xbf32999a, 0xbf2f0000, 0xbf2b6666,
    0xbf27cccd, 0xbf243334, 0xbf20999a, 0xbf1d0000, 0xbf196666, 0xbf15cccd, 0xbf123334, 0xbf0e999a,
    0xbf0b0000, 0xbf076666, 0xbf03cccc, 0xbf003333, 0xbef93332, 0xbef20000, 0xbeeacccc, 0xbee3999a,
    0xbedc6666, 0xbed53333, 0xbece0000, 0xbec6cccc, 0xbebf999a, 0xbeb86666, 0xbeb13333, 0xbeaa0000,
    0xbea2cccc, 0xbe9b999a, 0xbe946666, 0xbe8d3334, 0xbe860000, 0xbe7d9999, 0xbe6f3333, 0xbe60cccd,
    0xbe526666, 0xbe440000, 0xbe35999a, 0xbe273333, 0xbe18cccd, 0xbe0a6666, 0xbdf80000, 0xbddb3334,
    0xbdc9eb85, 0xbdc428f7, 0xbdbe6667, 0xbdb8a3d7, 0xbdb2e148, 0xbdad1eb8, 0xbda75c2a, 0xbda1999a,
    0xbd9bd70a, 0xbd96147b, 0xbd9051eb, 0xbd8a8f5d, 0xbd84cccd, 0xbd7e147b, 0xbd728f5d, 0xbd670a3d,
    0xbd5b851f, 0xbd500000, 0xbd447ae1, 0xbd38f5c3, 0xbd2d70a3, 0xbd21eb85, 0xbd166667, 0xbd0ae148,
    0xbcfeb852, 0xbce7ae15, 0xbcd0a3d7, 0xbcb9999a, 0xbca28f5d, 0xbc8b851f, 0xbc68f5c3, 0xbc3ae148,
    0xbc1f3b64, 0xbc160418, 0xbc0ccccd, 0xbc039581, 0xbbf4bc6a, 0xbbe24dd3, 0xbbcfdf3b, 0xbbbd70a4,
    0xbbab020d, 0xbb989374, 0xbb8624dd, 0xbb676c8a, 0xbb428f5c, 0xbb1db22d, 0xbaf1a9fc, 0xbaa7ef9d,
    0xba7765ff, 0xba59e83e, 0xba3c6a80, 0xba1eecc1, 0xba016f01, 0xb9c7e283, 0xb98ce705, 0xb923d70b,
    0xb8ba1f4b, 0xb88aefb3, 0xb8378034, 0xb7b24206, 0xb70205ff, 0xb65a1a94, 0xb513a3b7, 0x00000000,
    0x3513a3b7, 0x365a1a94, 0x370205ff, 0x37b24206, 0x38378034, 0x388aefb3, 0x38ba1f4b, 0x3923d70b,
    0x398ce705, 0x39c7e283, 0x3a016f01, 0x3a1eecc1, 0x3a3c6a80, 0x3a59e83e, 0x3a7765ff, 0x3aa7ef9d,
    0x3af1a9fc, 0x3b1db22d, 0x3b428f5c, 0x3b676c8a, 0x3b8624dd, 0x3b989374, 0x3bab020d, 0x3bbd70a4,
    0x3bcfdf3b, 0x3be24dd3, 0x3bf4bc6a, 0x3c039581, 0x3c0ccccd, 0x3c160418, 0x3c1f3b64, 0x3c3ae148,
    0x3c68f5c3, 0x3c8b851f, 0x3ca28f5d, 0x3cb9999a, 0x3cd0a3d7, 0x3ce7ae15, 0x3cfeb852, 0x3d0ae148,
    0x3d166667, 0x3d21eb85, 0x3d2d70a3, 0x3d38f5c3, 0x3d447ae1, 0x3d500000, 0x3d5b851f, 0x3d670a3d,
    0x3d728f5d, 0x3d7e147b, 0x3d84cccd, 0x3d8a8f5d, 0x3d9051eb, 0x3d96147b, 0x3d9bd70a, 0x3da1999a,
    0x3da75c2a, 0x3dad1eb8, 0x3db2e148, 0x3db8a3d7, 0x3dbe6667, 0x3dc428f7, 0x3dc9eb85, 0x3ddb3334,
    0x3df80000, 0x3e0a6666, 0x3e18cccd, 0x3e273333, 0x3e35999a, 0x3e440000, 0x3e526666, 0x3e60cccd,
    0x3e6f3333, 0x3e7d9999, 0x3e860000, 0x3e8d3334, 0x3e946666, 0x3e9b999a, 0x3ea2cccc, 0x3eaa0000,
    0x3eb13333, 0x3eb86666, 0x3ebf999a, 0x3ec6cccc, 0x3ece0000, 0x3ed53333, 0x3edc6666, 0x3ee3999a,
    0x3eeacccc, 0x3ef20000, 0x3ef93332, 0x3f003333, 0x3f03cccc, 0x3f076666, 0x3f0b0000, 0x3f0e999a,
    0x3f123334, 0x3f15cccd, 0x3f196666, 0x3f1d0000, 0x3f20999a, 0x3f243334, 0x3f27cccd, 0x3f2b6666,
    0x3f2f0000, 0x3f32999a, 0x3f363334, 0x3f39cccd, 0x3f3d6666, 0x3f410000, 0x3f44999a, 0x3f483333,
    0x3f4bcccd, 0x3f4f6666, 0x3f530000, 0x3f56999a, 0x3f5a3333, 0x3f5dcccd, 0x3f616666, 0x3f650000,
    0x3f68999a, 0x3f6c3333, 0x3f6fcccd, 0x3f736666, 0x3f770000, 0x3f7a999a, 0x3f7e3333, 0x3f800000,
];

/// Unsigned map (`qmap2`, second moment): IEEE-754 binary32 bit patterns; 0.0 at index 0.
pub const UNSIGNED_BITS: [u32; 256] = [
    0x00000000, 0x34ae7baa, 0x35500998, 0x360e9b38, 0x3692ccf6, 0x36de4c51, 0x3714e5d5, 0x3783126e,
    0x37e171a0, 0x381fe868, 0x384f1800, 0x387e479a, 0x3896bb99, 0x38ae5364, 0x38c5eb31, 0x3906594b,
    0x394154ca, 0x397c5049, 0x399ba5e4, 0x39b923a2, 0x39d6a163, 0x39f41f22, 0x3a08ce71, 0x3a178d50,
    0x3a264c30, 0x3a350b10, 0x3a43c9ef, 0x3a5288d0, 0x3a6147af, 0x3a70068e, 0x3a7ec56e, 0x3a958106,
    0x3aba5e35, 0x3adf3b64, 0x3b020c4a, 0x3b147ae1, 0x3b26e978, 0x3b395810, 0x3b4bc6a7, 0x3b5e3540,
    0x3b70a3d7, 0x3b818937, 0x3b8ac082, 0x3b93f7cf, 0x3b9d2f1a, 0x3ba66666, 0x3baf9db2, 0x3bb8d4fd,
    0x3bc20c4a, 0x3bcb4395, 0x3bd47ae1, 0x3bddb22e, 0x3be6e978, 0x3bf020c5, 0x3bf9580f, 0x3c0147ae,
    0x3c05e354, 0x3c0a7ef9, 0x3c0f1aa0, 0x3c13b645, 0x3c1851eb, 0x3c1ced92, 0x3c218937, 0x3c2f5c2a,
    0x3c466667, 0x3c5d70a3, 0x3c747ae2, 0x3c85c28f, 0x3c9147af, 0x3c9ccccd, 0x3ca851eb, 0x3cb3d70b,
    0x3cbf5c29, 0x3ccae147, 0x3cd66667, 0x3ce1eb87, 0x3ced70a3, 0x3cf8f5c3, 0x3d023d70, 0x3d080000,
    0x3d0dc28f, 0x3d13851f, 0x3d1947af, 0x3d1f0a3d, 0x3d24cccd, 0x3d2a8f5c, 0x3d3051eb, 0x3d36147b,
    0x3d3bd70a, 0x3d41999a, 0x3d475c28, 0x3d4d1eb8, 0x3d52e147, 0x3d58a3d7, 0x3d5e6667, 0x3d6428f7,
    0x3d69eb87, 0x3d6fae15, 0x3d7570a3, 0x3d7b3333, 0x3d807ae2, 0x3d835c2a, 0x3d863d71, 0x3d891eb8,
    0x3d8c0000, 0x3d8ee148, 0x3d91c290, 0x3d94a3d7, 0x3d97851f, 0x3d9a6667, 0x3d9d47af, 0x3da028f6,
    0x3da30a3e, 0x3da5eb85, 0x3da8cccd, 0x3dabae15, 0x3dae8f5c, 0x3db170a4, 0x3db451eb, 0x3db73333,
    0x3dba147b, 0x3dbcf5c3, 0x3dbfd70b, 0x3dc2b852, 0x3dc5999a, 0x3dc87ae2, 0x3dcb5c29, 0x3dd40000,
    0x3de26666, 0x3df0cccd, 0x3dff3333, 0x3e06cccc, 0x3e0e0000, 0x3e153334, 0x3e1c6666, 0x3e23999a,
    0x3e2acccc, 0x3e320000, 0x3e393334, 0x3e406666, 0x3e47999a, 0x3e4ecccc, 0x3e560000, 0x3e5d3334,
    0x3e646666, 0x3e6b999a, 0x3e72cccc, 0x3e7a0000, 0x3e809999, 0x3e843333, 0x3e87cccd, 0x3e8b6666,
    0x3e8f0000, 0x3e92999a, 0x3e963333, 0x3e99cccc, 0x3e9d6666, 0x3ea10000, 0x3ea4999a, 0x3ea83333,
    0x3eabcccc, 0x3eaf6666, 0x3eb30000, 0x3eb6999a, 0x3eba3333, 0x3ebdcccc, 0x3ec16666, 0x3ec50000,
    0x3ec8999a, 0x3ecc3333, 0x3ecfcccc, 0x3ed36666, 0x3ed70000, 0x3eda999a, 0x3ede3333, 0x3ee1cccc,
    0x3ee56666, 0x3ee90000, 0x3eec999a, 0x3ef03333, 0x3ef3cccc, 0x3ef76666, 0x3efb0000, 0x3efe9999,
    0x3f01199a, 0x3f02e666, 0x3f04b333, 0x3f068000, 0x3f084ccc, 0x3f0a199a, 0x3f0be666, 0x3f0db334,
    0x3f0f8000, 0x3f114ccd, 0x3f13199a, 0x3f14e666, 0x3f16b334, 0x3f188000, 0x3f1a4ccd, 0x3f1c199a,
    0x3f1de666, 0x3f1fb334, 0x3f218000, 0x3f234ccd, 0x3f25199a, 0x3f26e666, 0x3f28b334, 0x3f2a8000,
    0x3f2c4ccd, 0x3f2e199a, 0x3f2fe666, 0x3f31b334, 0x3f338000, 0x3f354ccd, 0x3f37199a, 0x3f38e666,
    0x3f3ab334, 0x3f3c8000, 0x3f3e4ccd, 0x3f40199a, 0x3f41e666, 0x3f43b334, 0x3f458000, 0x3f474ccc,
    0x3f49199a, 0x3f4ae666, 0x3f4cb334, 0x3f4e8000, 0x3f504ccc, 0x3f52199a, 0x3f53e666, 0x3f55b334,
    0x3f578000, 0x3f594ccc, 0x3f5b199a, 0x3f5ce666, 0x3f5eb334, 0x3f608000, 0x3f624ccc, 0x3f64199a,
    0x3f65e666, 0x3f67b334, 0x3f698000, 0x3f6b4ccc, 0x3f6d199a, 0x3f6ee666, 0x3f70b334, 0x3f728000,
    0x3f744ccc, 0x3f76199a, 0x3f77e666, 0x3f79b334, 0x3f7b8000, 0x3f7d4ccc, 0x3f7f199a, 0x3f800000,
];

/// Buckets are keyed by `|x|.to_bits() >> KEY_SHIFT`, i.e. exponent and 7 mantissa bits.
pub const KEY_SHIFT: u32 = 16;
/// Magnitudes below 2^-25 share the first bucket: no midpoint of either map is that small.
pub const KEY_LO: u32 = 0x3300_0000 >> KEY_SHIFT;
/// Magnitudes of 2.0 and above (and infinity, NaN) are clamped to these bits: the last bucket.
pub const KEY_HI_BITS: u32 = 0x3FFF_FFFF;
const KEY_HI: u32 = KEY_HI_BITS >> KEY_SHIFT;
/// Buckets per sign.
pub const BUCKETS: usize = (KEY_HI - KEY_LO + 1) as usize;

/// One map with everything its quantizers need. `align(64)`: the SIMD kernels load `values`
/// as 16 cache-line rows.
#[repr(C, align(64))]
pub struct Qmap {
    /// The 256 code values, ascending.
    pub values: [f32; 256],
    /// Byte j (little-endian) of every code value: the table of `values` as four byte planes,
    /// which the AVX-512 VBMI kernels look up with byte permutes, 64 codes at a time.
    pub value_bytes: [[u8; 256]; 4],
    /// `mids[k]` separates codes k and k+1; `mids[255]` is NaN so that no compare selects 256.
    pub mids: [f32; 256],
    /// Per sign (positive buckets first), how many midpoints lie below the bucket; then 3
    /// zero bytes so that a SIMD gather may read 4 bytes at any bucket index.
    pub below: Vec<u8>,
    /// The signed map (negative half mirrors the positive one) or the unsigned one.
    pub signed: bool,
    /// The permute-friendly quantizer of the SIMD kernels (`None`: every lane takes the exact
    /// route; never the case for the Appendix A maps, which the tests check).
    pub linear: Option<Linear>,
}

pub static SIGNED: LazyLock<Qmap> = LazyLock::new(|| Qmap::build(&SIGNED_BITS, true));
pub static UNSIGNED: LazyLock<Qmap> = LazyLock::new(|| Qmap::build(&UNSIGNED_BITS, false));

/// The index of `x`'s bucket in [`Qmap::below`].
#[inline(always)]
pub fn bucket(x: f32) -> usize {
    let bits = x.to_bits();
    let key = ((bits & 0x7FFF_FFFF).min(KEY_HI_BITS) >> KEY_SHIFT).saturating_sub(KEY_LO);
    key as usize + (bits >> 31) as usize * BUCKETS
}

impl Qmap {
    fn build(bits: &[u32; 256], signed: bool) -> Qmap {
        let values = bits.map(f32::from_bits);
        let mut mids = [f32::NAN; 256];
        for k in 0..255 {
            mids[k] = (values[k] + values[k + 1]) * 0.5;
        }
        let real_mids = &mids[..255];
        let mut below = vec![0u8; 2 * BUCKETS + 3];
        for (b, slot) in below[..2 * BUCKETS].iter_mut().enumerate() {
            let (lowest, highest) = bucket_range(b);
            let count = real_mids.iter().filter(|&&m| m < lowest).count();
            // At most one midpoint per bucket is what makes one compare exact; the tests check
            // this invariant for every bucket of both maps.
            debug_assert!(count + 1 >= 255 || real_mids[count + 1] > highest);
            *slot = count.min(255) as u8;
        }
        let value_bytes = std::array::from_fn(|j| values.map(|v| v.to_le_bytes()[j]));
        let mut q = Qmap {
            values,
            value_bytes,
            mids,
            below,
            signed,
            linear: None,
        };
        q.linear = Linear::build(&q);
        q
    }

    /// `Some(self.quantize(x))`, or `None` where the linear route is not sure; and the same
    /// answer for any input within [`SLACK_ULPS`] of `x`. The SIMD kernels mirror this lane by
    /// lane.
    #[inline(always)]
    pub fn quantize_linear(&self, x: f32) -> Option<u8> {
        let (code, sure) = self
            .linear
            .as_ref()?
            .magnitude_code(x.to_bits() & 0x7FFF_FFFF);
        let code = match (self.signed, x.is_sign_negative()) {
            // The negative half mirrors codes 127..=254 onto 127..=0; beyond the last positive
            // midpoint (code 255) the lowest code 0 is the nearest.
            (true, true) => (254 - code).max(0),
            (true, false) => code,
            // No midpoint of the unsigned map lies below +0.0.
            (false, _) if x > 0.0 => code,
            (false, _) => 0,
        };
        let code = if x.is_nan() { 0 } else { code };
        sure.then_some(code as u8)
    }

    /// The exact nearest code of `x` (ties to the even index, NaN to 0).
    #[inline(always)]
    pub fn quantize(&self, x: f32) -> u8 {
        if x.is_nan() {
            return 0;
        }
        let c = self.below[bucket(x)];
        let mid = self.mids[c as usize];
        c + ((x > mid) | ((x == mid) & (c & 1 == 1))) as u8
    }

    #[inline(always)]
    pub fn value(&self, code: u8) -> f32 {
        self.values[code as usize]
    }

    /// The positive half of the bucket table packed one `u32` per bucket, as the CUDA kernels
    /// look codes up (`a8_code_of_magnitude` in `csrc/adam8bit_math.cuh`): the number of
    /// midpoints below the bucket (bits 0-7), a "never" bit (8) and a threshold (bits 16-31),
    /// so that a magnitude whose low 16 bits are `lo` has code `count + 1` exactly when
    /// `(lo << 16) | 0xFF >= entry`. Where the bucket holds a midpoint (its top 16 bits are the
    /// bucket's key), the threshold is the midpoint's low bits, plus one where a tie stays on
    /// the even `count`; where it holds none, or a tie-bound midpoint at its last float, the
    /// "never" bit makes the compare fail for every magnitude. The negative half is not
    /// needed: the signed map mirrors about code 127, and no midpoint of the unsigned one is
    /// negative.
    pub fn packed_buckets(&self) -> [u32; BUCKETS] {
        let mut out = [0u32; BUCKETS];
        for (b, e) in out.iter_mut().enumerate() {
            let count = self.below[b] as u32;
            let key = b as u32 + KEY_LO;
            let inside = count < 255 && {
                let m = self.mids[count as usize].to_bits();
                m >> KEY_SHIFT == key && m >> 31 == 0
            };
            // The clamped first and last buckets hold no midpoint, so the kernels' compare of
            // low bits never meets a clamped magnitude (checked for both maps in the tests).
            debug_assert!(!inside || (key != KEY_LO && key != KEY_HI));
            let threshold = if inside {
                (self.mids[count as usize].to_bits() & 0xFFFF) + (count & 1 == 0) as u32
            } else {
                0x1_0000
            };
            *e = if threshold > 0xFFFF {
                0xFFFF_0000 | 1 << 8 | count
            } else {
                threshold << 16 | count
            };
        }
        out
    }
}

/// The lowest and highest float of bucket `b` (by value, not by magnitude).
pub fn bucket_range(b: usize) -> (f32, f32) {
    let negative = b >= BUCKETS;
    let key = (b % BUCKETS) as u32 + KEY_LO;
    let lo_mag = if key == KEY_LO {
        0.0
    } else {
        f32::from_bits(key << KEY_SHIFT)
    };
    let hi_mag = if key == KEY_HI {
        f32::INFINITY
    } else {
        f32::from_bits((key << KEY_SHIFT) | 0xFFFF)
    };
    if negative {
        (-hi_mag, -lo_mag)
    } else {
        (lo_mag, hi_mag)
    }
}

/// State1's sign rule (rule 1): a code whose value has another sign bit than `m` moves one step
/// toward `m`'s side (uint8 wrap), so negative or -0.0 momentum never becomes code 127 (+0.0).
#[inline(always)]
pub fn signed_code(code: u8, m: f32) -> u8 {
    // In the signed map, codes 0..=126 are negative and 127..=255 are +0.0 or positive.
    let code_negative = code < 127;
    if code_negative != m.is_sign_negative() {
        if m > 0.0 {
            code.wrapping_add(1)
        } else {
            code.wrapping_sub(1)
        }
    } else {
        code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference's quantizer, line by line: bitsandbytes' `quantize_2D` binary search. Kept as
    /// the oracle the table quantizer is tested against.
    fn quantize_search(q: &Qmap, x: f32, signed: bool) -> u8 {
        let v = &q.values;
        let (mut pivot, mut upper_pivot, mut lower_pivot) = (127usize, 255usize, 0usize);
        let (mut lower, mut upper) = (if signed { -1.0f32 } else { 0.0 }, 1.0f32);
        let mut val = v[pivot];
        let mut i = 64;
        while i > 0 {
            if x > val {
                lower_pivot = pivot;
                lower = val;
                pivot += i;
            } else {
                upper_pivot = pivot;
                upper = val;
                pivot -= i;
            }
            val = v[pivot];
            i >>= 1;
        }
        if x > val {
            let midpoint = (upper + val) * 0.5;
            if x > midpoint {
                upper_pivot as u8
            } else {
                pivot as u8
            }
        } else {
            let midpoint = (lower + val) * 0.5;
            if x < midpoint {
                lower_pivot as u8
            } else {
                pivot as u8
            }
        }
    }

    fn check_all(q: &Qmap, signed: bool, x: f32) {
        assert_eq!(
            q.quantize(x),
            quantize_search(q, x, signed),
            "x = {x:e} ({:#010x})",
            x.to_bits()
        );
    }

    #[test]
    fn every_bucket_holds_at_most_one_midpoint() {
        for q in [&*SIGNED, &*UNSIGNED] {
            for b in 0..2 * BUCKETS {
                let (lowest, highest) = bucket_range(b);
                let inside = q.mids[..255]
                    .iter()
                    .filter(|&&m| m >= lowest && m <= highest)
                    .count();
                assert!(
                    inside <= 1,
                    "bucket {b} [{lowest:e}, {highest:e}] holds {inside} midpoints"
                );
                let c = q.below[b] as usize;
                assert!(c == 0 || q.mids[c - 1] < lowest);
            }
        }
    }

    #[test]
    fn maps_are_appendix_a() {
        for q in [&*SIGNED, &*UNSIGNED] {
            assert!(q.values.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(q.values[255], 1.0);
        }
        assert_eq!(SIGNED.values[127].to_bits(), 0);
        assert_eq!(UNSIGNED.values[0].to_bits(), 0);
        assert_eq!(SIGNED.values[0], -0.992_968_75);
    }

    #[test]
    fn table_quantizer_equals_binary_search_around_every_midpoint_and_code() {
        for (q, signed) in [(&*SIGNED, true), (&*UNSIGNED, false)] {
            let mut anchors: Vec<f32> = q.mids[..255].to_vec();
            anchors.extend_from_slice(&q.values);
            for b in 0..2 * BUCKETS {
                let (lo, hi) = bucket_range(b);
                anchors.extend([lo, hi]);
            }
            for a in anchors {
                if !a.is_finite() {
                    continue;
                }
                // 2000 floats on each side of every anchor, crossing sign where the anchor is 0.
                let base = a.to_bits() as i64;
                for d in -2000i64..=2000 {
                    let bits = base + d;
                    if (0..=u32::MAX as i64).contains(&bits) {
                        let x = f32::from_bits(bits as u32);
                        if x.abs() <= 2.0 {
                            check_all(q, signed, x);
                        }
                    }
                }
            }
            for x in [
                0.0f32,
                -0.0,
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::MIN_POSITIVE,
                1e-45,
                -1e-45,
                1.0,
                -1.0,
            ] {
                check_all(q, signed, x);
            }
            assert_eq!(q.quantize(f32::NAN), 0);
            assert_eq!(q.quantize(-f32::NAN), 0);
        }
    }

    #[test]
    fn table_quantizer_equals_binary_search_on_random_inputs() {
        let mut rng = crate::rng::Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..2_000_000 {
            let state = rng.next_u64();
            // uniform in [-1, 1], and log-uniform magnitudes down to 1e-12
            let u = (state >> 40) as f32 / (1u64 << 24) as f32;
            let e = ((state >> 8) & 0xFFFF) as f32 / 65536.0;
            let sign = if state & 1 == 1 { -1.0 } else { 1.0 };
            let xs = [u * 2.0 - 1.0, sign * 10f32.powf(-12.0 * e)];
            for x in xs {
                check_all(&SIGNED, true, x);
                check_all(&UNSIGNED, false, x);
            }
        }
    }

    #[test]
    fn exact_ties_go_to_the_even_index() {
        for q in [&*SIGNED, &*UNSIGNED] {
            for k in 0..255 {
                let even = if k % 2 == 0 { k } else { k + 1 };
                assert_eq!(q.quantize(q.mids[k]) as usize, even);
            }
        }
    }

    #[test]
    fn sign_rule() {
        let q = &*SIGNED;
        assert_eq!(signed_code(q.quantize(-0.0), -0.0), 126);
        assert_eq!(signed_code(q.quantize(-1e-9), -1e-9), 126);
        assert_eq!(signed_code(q.quantize(1e-9), 1e-9), 127);
        // an all-zero block normalises to 0/0 = NaN: code 0, moved to 255 for m = +0.0
        assert_eq!(signed_code(q.quantize(f32::NAN), 0.0), 255);
    }
}
