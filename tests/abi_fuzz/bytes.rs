//! The ABI's structs as bytes: what a caller of another header version passes and what a
//! call wrote, and the output pointers a fault makes NULL or misaligned.

use std::mem::size_of;
use std::ptr::null_mut;

use adam8bit::ffi::types::*;

use super::fuzzer::Buf;

pub const CONFIG_SIZE: usize = size_of::<bnb_adam8bit_config_t>();
pub const OPTIONS_SIZE: usize = size_of::<bnb_param_options_t>();
pub const INFO_SIZE: usize = size_of::<bnb_param_info_t>();
/// Above this a `struct_size` is implausible (the library's guard against garbage).
pub const MAX_STRUCT_SIZE: usize = 1 << 20;

/// `value`'s bytes in a buffer of `size` bytes (zeros after it), with `struct_size = size`.
pub fn versioned<T>(value: &T, size: usize) -> Buf {
    let mut bytes = struct_bytes(value);
    bytes.resize(size.max(bytes.len()), 0);
    bytes[..8].copy_from_slice(&(size as u64).to_le_bytes());
    Buf::new(&bytes)
}

/// An output pointer for `T` that is valid, NULL or misaligned, as `fault` says.
pub fn out_ptr<T>(slot: &mut Buf, fault: Option<&str>) -> *mut T {
    match fault {
        Some("out NULL") => null_mut(),
        Some("out misaligned") => slot.ptr().wrapping_add(1).cast(),
        _ => slot.ptr().cast(),
    }
}

/// The bytes of a plain-number struct (the ABI's structs have no implicit padding).
pub fn struct_bytes<T>(v: &T) -> Vec<u8> {
    // SAFETY: `v` is a live T of size_of::<T>() initialised bytes.
    unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
}

/// The value whose bytes are `b` (at least its size; read unaligned). Only for plain
/// numbers, or structs whose bool bytes the caller checked to be 0 or 1.
pub fn from_bytes<T: Copy>(b: &[u8]) -> T {
    assert!(b.len() >= size_of::<T>());
    // SAFETY: enough bytes; for numbers every bit pattern is a value, bools are checked.
    unsafe { std::ptr::read_unaligned(b.as_ptr().cast()) }
}
