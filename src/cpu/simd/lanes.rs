//! The vector operations the generic kernels need, one implementation per ISA. Masks are the
//! ISA's own (AVX-512 mask registers, AVX2 all-ones lanes). Integer lanes are 32-bit.

use crate::qmap::Qmap;

/// A vector of `N` f32 / i32 lanes.
///
/// # Safety
/// Every method may only run on a CPU with the implementing ISA, inside a function compiled
/// with that target feature (so the intrinsics inline). Pointer arguments must be valid for
/// the `N` lanes they cover. This contract is the same for every method, so it is stated once.
#[allow(clippy::missing_safety_doc)]
pub unsafe trait Lanes: Copy {
    const N: usize;
    type F: Copy;
    type I: Copy;
    type M: Copy;

    unsafe fn splat(x: f32) -> Self::F;
    unsafe fn splat_i(x: i32) -> Self::I;
    unsafe fn load(p: *const f32) -> Self::F;
    unsafe fn store(p: *mut f32, x: Self::F);
    /// `N` bytes, zero-extended.
    unsafe fn load_u8(p: *const u8) -> Self::I;
    /// The low byte of each lane.
    unsafe fn store_u8(p: *mut u8, x: Self::I);
    /// `N` u16, zero-extended.
    unsafe fn load_u16(p: *const u16) -> Self::I;
    /// The low 16 bits of each lane.
    unsafe fn store_u16(p: *mut u16, x: Self::I);
    /// `table[idx]` per lane.
    unsafe fn gather(table: *const f32, idx: Self::I) -> Self::I;
    /// `table[idx]` per lane for a 256-entry table (64-byte aligned) and `idx` in 0..=255.
    /// Gathers by default; an ISA with wide register permutes overrides it.
    unsafe fn lookup256(table: *const f32, idx: Self::I) -> Self::F {
        Self::as_f(Self::gather(table, idx))
    }
    /// For an ISA that decodes a whole block faster than a vector at a time: the values in `q`
    /// of the block of [`BLOCKSIZE`](crate::config::BLOCKSIZE) codes at `codes` into `out` (as
    /// many floats), and true. The default does nothing and returns false: the caller then
    /// looks codes up per vector with [`Lanes::lookup256`] (a block's worth of gathers in a
    /// row also overflows valgrind's translation storage).
    unsafe fn decode_block(_q: &Qmap, _codes: *const u8, _out: *mut f32) -> bool {
        false
    }
    /// `table[idx]` per lane for 16- and 32-entry tables (indices in range), by permutes.
    unsafe fn lookup16(table: *const f32, idx: Self::I) -> Self::F;
    unsafe fn lookup32(table: *const f32, idx: Self::I) -> Self::F;
    /// The 4 bytes at `table + idx` per lane, as a little-endian u32 (the caller keeps 3
    /// readable bytes after the last index).
    unsafe fn gather_bytes(table: *const u8, idx: Self::I) -> Self::I;

    unsafe fn add(a: Self::F, b: Self::F) -> Self::F;
    unsafe fn mul(a: Self::F, b: Self::F) -> Self::F;
    unsafe fn div(a: Self::F, b: Self::F) -> Self::F;
    unsafe fn sqrt(a: Self::F) -> Self::F;
    /// Returns `b` when either is NaN (x86 `maxps`), so `max(x, acc)` ignores a NaN `x` the
    /// way `f32::max` does.
    unsafe fn max(a: Self::F, b: Self::F) -> Self::F;
    /// `|a|` (clears the sign bit).
    unsafe fn abs(a: Self::F) -> Self::F {
        Self::as_f(Self::and_i(Self::as_i(a), Self::splat_i(0x7FFF_FFFF)))
    }

    unsafe fn as_i(a: Self::F) -> Self::I;
    unsafe fn as_f(a: Self::I) -> Self::F;
    unsafe fn add_i(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn sub_i(a: Self::I, b: Self::I) -> Self::I;
    /// `max(a - b, 0)` for lanes below 2^16.
    unsafe fn sat_sub_u16(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn and_i(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn or_i(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn srl<const K: u32>(a: Self::I) -> Self::I;
    unsafe fn sll<const K: u32>(a: Self::I) -> Self::I;
    unsafe fn sra<const K: u32>(a: Self::I) -> Self::I;
    unsafe fn min_u(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn max_s(a: Self::I, b: Self::I) -> Self::I;
    unsafe fn min_s(a: Self::I, b: Self::I) -> Self::I;

    unsafe fn gt(a: Self::F, b: Self::F) -> Self::M;
    unsafe fn eq(a: Self::F, b: Self::F) -> Self::M;
    /// Neither NaN nor ±Inf.
    unsafe fn finite(a: Self::F) -> Self::M;
    unsafe fn gt_i(a: Self::I, b: Self::I) -> Self::M;
    unsafe fn eq_i(a: Self::I, b: Self::I) -> Self::M;
    /// `a < b` as unsigned 32-bit integers.
    unsafe fn lt_u(a: Self::I, b: Self::I) -> Self::M;
    unsafe fn and_m(a: Self::M, b: Self::M) -> Self::M;
    unsafe fn or_m(a: Self::M, b: Self::M) -> Self::M;
    unsafe fn xor_m(a: Self::M, b: Self::M) -> Self::M;
    /// `m ? a : b` per lane.
    unsafe fn select(m: Self::M, a: Self::F, b: Self::F) -> Self::F;
    unsafe fn select_i(m: Self::M, a: Self::I, b: Self::I) -> Self::I;
    /// Lanes set in `m`.
    unsafe fn count(m: Self::M) -> u32;
    unsafe fn hmax(a: Self::F) -> f32;

    /// IEEE binary16 bits to f32 (exact) and f32 to binary16 bits (round to nearest even).
    unsafe fn f16_to_f32(a: Self::I) -> Self::F;
    unsafe fn f32_to_f16(a: Self::F) -> Self::I;
}
