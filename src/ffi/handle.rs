//! Handle lifetime, configuration, versions, errors and the CPU worker count.

use std::ffi::c_char;

use super::types::*;
use super::{arg, bnb_adam8bit_t, guard, out_arg, read_versioned, write_versioned};
use crate::config::Config;
use crate::error::{invalid, last_message_ptr};
use crate::optimizer::Optimizer;

/// Writes the defaults of `bnb.optim.Adam8bit` to `*out`, a struct of `struct_size` bytes
/// (pass `sizeof *out`): lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0, amsgrad
/// false, optim_bits 32, min_8bit_size 4096, percentile_clipping 100, block_wise true,
/// is_paged false, max_unorm 0, skip_zeros false. Sets `out->struct_size`; bytes past this
/// library's struct (a newer header's fields) are zeroed.
///
/// # Safety
/// `out` must be NULL or point to `struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_config_default(
    out: *mut bnb_adam8bit_config_t,
    struct_size: usize,
) -> bnb_status_t {
    guard(|| write_versioned(out, struct_size, bnb_adam8bit_config_t::default(), "out"))
}

/// `bnb_adam8bit_config_default` for one of bitsandbytes' classes (`BNB_PRESET_*`).
///
/// # Safety
/// `out` must be NULL or point to `struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_config_preset(
    preset: bnb_preset_t,
    out: *mut bnb_adam8bit_config_t,
    struct_size: usize,
) -> bnb_status_t {
    guard(|| {
        let config = Config::preset(super::types::preset(preset)?).into();
        write_versioned(out, struct_size, config, "out")
    })
}

/// Creates an optimizer. `device_index` selects the GPU of a CUDA handle (0 or -1 on the CPU).
/// On success `*out` owns a handle that `bnb_adam8bit_destroy` frees; on failure `*out` is
/// left unchanged.
///
/// # Safety
/// `config` must point to a `bnb_adam8bit_config_t` (at least `struct_size` bytes); `out` to a
/// writable pointer.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_create(
    config: *const bnb_adam8bit_config_t,
    device: bnb_device_t,
    device_index: i32,
    out: *mut *mut bnb_adam8bit_t,
) -> bnb_status_t {
    guard(|| {
        let cfg = Config::from(&read_versioned(config, "config")?);
        let device = super::types::device(device)?;
        let out = out_arg(out, "out")?;
        let opt = Optimizer::new(cfg, device, device_index)?;
        out.set(Box::into_raw(Box::new(bnb_adam8bit_t::new(opt))));
        Ok(())
    })
}

/// Frees a handle and all its state, a poisoned one (`BNB_ERR_PANIC`) included. NULL is a
/// no-op. The handle must not be in use by another thread.
///
/// # Safety
/// `h` must be NULL or a handle from `bnb_adam8bit_create` not yet destroyed.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_destroy(h: *mut bnb_adam8bit_t) {
    if !h.is_null() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(Box::from_raw(h))));
    }
}

/// Writes the handle's configuration (with the current `lr`) to `*out`, a struct of
/// `struct_size` bytes, as `bnb_adam8bit_config_default` does.
///
/// # Safety
/// `h` must be a live handle or NULL; `out` NULL or pointing to `struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_get_config(
    h: *const bnb_adam8bit_t,
    out: *mut bnb_adam8bit_config_t,
    struct_size: usize,
) -> bnb_status_t {
    guard(|| {
        let opt = arg(h, "handle")?.lock()?;
        write_versioned(out, struct_size, (*opt.config()).into(), "out")
    })
}

/// The device of a handle (`BNB_DEVICE_*`).
///
/// # Safety
/// `h` must be a live handle or NULL; `out` writable or NULL.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_get_device(
    h: *const bnb_adam8bit_t,
    out: *mut bnb_device_t,
) -> bnb_status_t {
    guard(|| {
        let opt = arg(h, "handle")?.lock()?;
        out_arg(out, "out")?.set(match opt.device() {
            crate::optimizer::Device::Cpu => BNB_DEVICE_CPU,
            crate::optimizer::Device::Cuda => BNB_DEVICE_CUDA,
        });
        Ok(())
    })
}

/// This thread's message for the last failed call ("" after a successful one). The string is
/// owned by the library and valid until the next libadam8bit call on this thread.
#[no_mangle]
pub extern "C" fn bnb_last_error_message() -> *const c_char {
    last_message_ptr()
}

/// The constant name of a status code ("BNB_OK", "BNB_ERR_INVALID_ARGUMENT", ...), or
/// "BNB_ERR_UNKNOWN" for a value that is not one.
#[no_mangle]
pub extern "C" fn bnb_status_name(status: bnb_status_t) -> *const c_char {
    let name: &'static [u8] = match status {
        BNB_OK => b"BNB_OK\0",
        BNB_ERR_INVALID_ARGUMENT => b"BNB_ERR_INVALID_ARGUMENT\0",
        BNB_ERR_UNSUPPORTED => b"BNB_ERR_UNSUPPORTED\0",
        BNB_ERR_OUT_OF_MEMORY => b"BNB_ERR_OUT_OF_MEMORY\0",
        BNB_ERR_NO_DEVICE => b"BNB_ERR_NO_DEVICE\0",
        BNB_ERR_CUDA => b"BNB_ERR_CUDA\0",
        BNB_ERR_IO => b"BNB_ERR_IO\0",
        BNB_ERR_CORRUPT => b"BNB_ERR_CORRUPT\0",
        BNB_ERR_MISMATCH => b"BNB_ERR_MISMATCH\0",
        BNB_ERR_PANIC => b"BNB_ERR_PANIC\0",
        _ => b"BNB_ERR_UNKNOWN\0",
    };
    name.as_ptr().cast()
}

/// The library version, "MAJOR.MINOR.PATCH" (static storage).
#[no_mangle]
pub extern "C" fn bnb_adam8bit_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// The C ABI major version the library implements; compare with `BNB_ADAM8BIT_ABI_VERSION`.
#[no_mangle]
pub extern "C" fn bnb_adam8bit_abi_version() -> u32 {
    BNB_ADAM8BIT_ABI_VERSION
}

/// Sets the number of CPU worker threads for all handles (0 = the cores this process may use,
/// the default). Results never depend on it.
#[no_mangle]
pub extern "C" fn bnb_set_num_threads(threads: u32) -> bnb_status_t {
    guard(|| {
        if threads > 4096 {
            invalid!("{threads} threads is more than this library supports (4096)");
        }
        crate::cpu::set_num_threads(threads)
    })
}

/// The number of CPU worker threads (0 only if the pool could not be started).
#[no_mangle]
pub extern "C" fn bnb_get_num_threads() -> u32 {
    let mut n = 0;
    guard(|| {
        n = crate::cpu::num_threads()? as u32;
        Ok(())
    });
    n
}
