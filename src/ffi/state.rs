//! Reading and writing a parameter's state arrays and step counter (host buffers).

use std::ffi::c_void;

use super::types::*;
use super::{arg, bnb_adam8bit_t, guard, out_arg};
use crate::error::{invalid, Result};
use crate::optimizer::Optimizer;
use crate::state::StateKind;

/// The length of a caller's buffer, checked before any slice is made of it: non-NULL and
/// exactly the size of the state array.
fn exact_len(
    opt: &Optimizer,
    id: u32,
    kind: StateKind,
    is_null: bool,
    bytes: u64,
) -> Result<usize> {
    let want = opt.state_size(id, kind)?;
    if want != bytes {
        invalid!(
            "{} of parameter {id} is {want} bytes, not {bytes}",
            kind.name()
        );
    }
    if is_null {
        invalid!("the {} buffer is NULL", kind.name());
    }
    Ok(want as usize)
}

/// Writes the exact size in bytes of state array `which` of parameter `id` to `*out_bytes`.
///
/// # Safety
/// `h` must be a live handle or NULL; `out_bytes` writable or NULL.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_state_size(
    h: *const bnb_adam8bit_t,
    id: u32,
    which: bnb_state_kind_t,
    out_bytes: *mut u64,
) -> bnb_status_t {
    guard(|| {
        let opt = arg(h, "handle")?.lock()?;
        let kind = state_kind(which)?;
        out_arg(out_bytes, "out_bytes")?.set(opt.state_size(id, kind)?);
        Ok(())
    })
}

/// Copies state array `which` of parameter `id` into `dst`, which holds exactly `bytes`
/// bytes (`bnb_adam8bit_state_size`). Codes are uint8, everything else f32, little endian.
/// A kind the parameter's path does not keep is `BNB_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `h` must be a live handle or NULL; `dst` NULL or `bytes` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_read_state(
    h: *const bnb_adam8bit_t,
    id: u32,
    which: bnb_state_kind_t,
    dst: *mut c_void,
    bytes: u64,
) -> bnb_status_t {
    guard(|| {
        let opt = arg(h, "handle")?.lock()?;
        let kind = state_kind(which)?;
        let len = exact_len(&opt, id, kind, dst.is_null(), bytes)?;
        opt.read_state(id, kind, std::slice::from_raw_parts_mut(dst.cast(), len))
    })
}

/// Overwrites state array `which` of parameter `id` from `src` (exactly `bytes` bytes). Lets a
/// trainer import state from elsewhere. The maps are fixed: writing `BNB_QMAP1`/`BNB_QMAP2`
/// succeeds only with the library's own table (`BNB_ERR_MISMATCH` otherwise). The arrays of
/// magnitudes (`ABSMAX1/2`, `MAX1/2`, `GNORM_VEC`, `UNORM_VEC`) may hold NaN or +infinity
/// but no negative element, -infinity included (`BNB_ERR_INVALID_ARGUMENT`, nothing written).
///
/// # Safety
/// `h` must be a live handle or NULL; `src` NULL or `bytes` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_write_state(
    h: *mut bnb_adam8bit_t,
    id: u32,
    which: bnb_state_kind_t,
    src: *const c_void,
    bytes: u64,
) -> bnb_status_t {
    guard(|| {
        let mut opt = arg(h, "handle")?.lock()?;
        let kind = state_kind(which)?;
        let len = exact_len(&opt, id, kind, src.is_null(), bytes)?;
        opt.write_state(id, kind, std::slice::from_raw_parts(src.cast(), len))
    })
}

/// Sets the step counter of parameter `id` (the next step uses `step + 1`).
///
/// # Safety
/// `h` must be a live handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_set_step(
    h: *mut bnb_adam8bit_t,
    id: u32,
    step: u64,
) -> bnb_status_t {
    guard(|| arg(h, "handle")?.lock()?.set_step(id, step))
}
