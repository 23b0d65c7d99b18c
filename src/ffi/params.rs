//! Parameter registration, learning rates, and the step calls.

use std::ffi::c_void;

use super::types::*;
use super::{arg, bnb_adam8bit_t, c_array, guard, out_arg, read_versioned, write_versioned};
use crate::config::ParamOverrides;
use crate::error::invalid;
use crate::optimizer::{StepItem, StepOptions};

/// Writes options with no override set and group 0 to `*out`, a struct of `struct_size`
/// bytes (pass `sizeof *out`), as `bnb_adam8bit_config_default` does.
///
/// # Safety
/// `out` must be NULL or point to `struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn bnb_param_options_default(
    out: *mut bnb_param_options_t,
    struct_size: usize,
) -> bnb_status_t {
    guard(|| write_versioned(out, struct_size, bnb_param_options_t::default(), "out"))
}

/// Registers a parameter of `numel` elements of `dtype` with the handle's settings and
/// allocates its optimizer state. `*out_id` receives its id (0, 1, 2, ... in order).
///
/// # Safety
/// `h` must be a live handle or NULL; `out_id` writable or NULL.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_add_param(
    h: *mut bnb_adam8bit_t,
    numel: u64,
    dtype: bnb_dtype_t,
    out_id: *mut u32,
) -> bnb_status_t {
    guard(|| {
        let mut opt = arg(h, "handle")?.lock()?;
        let dtype = super::types::dtype(dtype)?;
        let out_id = out_arg(out_id, "out_id")?;
        out_id.set(opt.add_param(numel, dtype, ParamOverrides::default())?);
        Ok(())
    })
}

/// `bnb_adam8bit_add_param` with per-parameter overrides (`options` may be NULL: none).
///
/// # Safety
/// As `bnb_adam8bit_add_param`; `options` NULL or pointing to `struct_size` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_add_param_ex(
    h: *mut bnb_adam8bit_t,
    numel: u64,
    dtype: bnb_dtype_t,
    options: *const bnb_param_options_t,
    out_id: *mut u32,
) -> bnb_status_t {
    guard(|| {
        let mut opt = arg(h, "handle")?.lock()?;
        let dtype = super::types::dtype(dtype)?;
        let overrides = if options.is_null() {
            ParamOverrides::default()
        } else {
            read_versioned(options, "options")?.overrides()?
        };
        let out_id = out_arg(out_id, "out_id")?;
        out_id.set(opt.add_param(numel, dtype, overrides)?);
        Ok(())
    })
}

/// The number of registered parameters.
///
/// # Safety
/// `h` must be a live handle or NULL; `out` writable or NULL.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_num_params(
    h: *const bnb_adam8bit_t,
    out: *mut u32,
) -> bnb_status_t {
    guard(|| {
        let opt = arg(h, "handle")?.lock()?;
        out_arg(out, "out")?.set(opt.params().len() as u32);
        Ok(())
    })
}

/// Writes what the handle knows about parameter `id` to `*out`, a struct of `struct_size`
/// bytes (pass `sizeof *out`), as `bnb_adam8bit_config_default` does: fields this library
/// does not know read 0.
///
/// # Safety
/// `h` must be a live handle or NULL; `out` NULL or pointing to `struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_param_info(
    h: *const bnb_adam8bit_t,
    id: u32,
    out: *mut bnb_param_info_t,
    struct_size: usize,
) -> bnb_status_t {
    guard(|| {
        let opt = arg(h, "handle")?.lock()?;
        let i = opt.info(id)?;
        let info = bnb_param_info_t {
            struct_size: std::mem::size_of::<bnb_param_info_t>() as u64,
            numel: i.numel,
            dtype: dtype_code(i.dtype),
            path: path_code(i.path),
            step: i.step,
            blocks: i.blocks,
            state_bytes: i.state_bytes,
            nonfinite_count: i.nonfinite,
            lr: i.lr,
            gnorm_scale: i.gnorm_scale,
            group: i.group,
            paged: i.paged,
            stochastic_rounding: i.stochastic_rounding,
            reserved: [0; 6],
            rounding_key: i.rounding_key,
        };
        write_versioned(out, struct_size, info, "out")
    })
}

/// Sets the learning rate of every group, for schedulers. Takes effect at the next step.
///
/// # Safety
/// `h` must be a live handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_set_lr(h: *mut bnb_adam8bit_t, lr: f64) -> bnb_status_t {
    guard(|| arg(h, "handle")?.lock()?.set_lr(lr))
}

/// Sets the learning rate of one group (a group exists once a parameter names it).
///
/// # Safety
/// `h` must be a live handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_set_group_lr(
    h: *mut bnb_adam8bit_t,
    group: u32,
    lr: f64,
) -> bnb_status_t {
    guard(|| arg(h, "handle")?.lock()?.set_group_lr(group, lr))
}

/// One optimizer step of parameter `id`: reads `grad`, updates `param` and the state in place.
/// Both point to `numel` elements of the parameter's dtype, aligned to it, not overlapping.
/// `stream` must be NULL on a CPU handle; on a CUDA handle it is the `cudaStream_t` /
/// `CUstream` to enqueue on (NULL = the legacy default stream), and the call returns without
/// waiting for the GPU.
///
/// # Safety
/// `h` must be a live handle or NULL; `param`/`grad` NULL or valid for `numel` elements.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_step(
    h: *mut bnb_adam8bit_t,
    id: u32,
    param: *mut c_void,
    grad: *const c_void,
    stream: *mut c_void,
) -> bnb_status_t {
    let item = bnb_step_item_t { id, param, grad };
    bnb_adam8bit_step_many(h, &item, 1, stream)
}

/// One optimizer step of every listed parameter, as one parallel sweep (CPU) or one launch per
/// path (CUDA). All items are checked before anything changes: ids must be registered and
/// distinct, buffers non-NULL, aligned and non-overlapping. `count` may be 0.
///
/// # Safety
/// `items` must point to `count` items (or be NULL with `count` 0); see `bnb_adam8bit_step`.
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_step_many(
    h: *mut bnb_adam8bit_t,
    items: *const bnb_step_item_t,
    count: usize,
    stream: *mut c_void,
) -> bnb_status_t {
    guard(|| {
        let mut opt = arg(h, "handle")?.lock()?;
        let items = c_array(items, count, "items")?;
        if opt.device() == crate::optimizer::Device::Cpu && !stream.is_null() {
            invalid!("stream must be NULL on a CPU handle");
        }
        // Same layout (checked at compile time below): a view, not a copy, so that a step
        // allocates nothing.
        let items = std::slice::from_raw_parts(items.as_ptr().cast::<StepItem>(), items.len());
        opt.step(items, stream)
    })
}

/// Writes options with nothing set (no loss scaling, always step) to `*out`, a struct of
/// `struct_size` bytes (pass `sizeof *out`).
///
/// # Safety
/// `out` must be NULL or point to `struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn bnb_step_options_default(
    out: *mut bnb_step_options_t,
    struct_size: usize,
) -> bnb_status_t {
    guard(|| write_versioned(out, struct_size, bnb_step_options_t::default(), "out"))
}

/// `bnb_adam8bit_step_many` with options (`options` may be NULL: none): loss scaling fused into
/// the step, as PyTorch's fused Adam takes GradScaler's `grad_scale` and `found_inf`. On a CUDA
/// handle both are device pointers, read by the kernels on `stream` (no host read, no
/// synchronisation; the step counters live on the device, so `param_info` reports the steps
/// actually taken); on a CPU handle they are host pointers, read during the call. A skipped
/// call returns BNB_OK and changes nothing.
///
/// # Safety
/// As `bnb_adam8bit_step_many`; `options` NULL or a valid struct whose non-NULL pointers point
/// to one float each (device-accessible on a CUDA handle, until the stream reaches the step).
#[no_mangle]
pub unsafe extern "C" fn bnb_adam8bit_step_many_ex(
    h: *mut bnb_adam8bit_t,
    items: *const bnb_step_item_t,
    count: usize,
    options: *const bnb_step_options_t,
    stream: *mut c_void,
) -> bnb_status_t {
    guard(|| {
        let mut opt = arg(h, "handle")?.lock()?;
        let items = c_array(items, count, "items")?;
        let o = if options.is_null() {
            bnb_step_options_t::default()
        } else {
            read_versioned(options, "options")?
        };
        for (p, what) in [(o.grad_scale, "grad_scale"), (o.found_inf, "found_inf")] {
            if !p.is_aligned() {
                invalid!("options.{what} is not aligned to a float");
            }
        }
        if opt.device() == crate::optimizer::Device::Cpu && !stream.is_null() {
            invalid!("stream must be NULL on a CPU handle");
        }
        let items = std::slice::from_raw_parts(items.as_ptr().cast::<StepItem>(), items.len());
        opt.step_with_options(
            items,
            stream,
            StepOptions {
                grad_scale: o.grad_scale,
                found_inf: o.found_inf,
            },
        )
    })
}

const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<StepItem>() == size_of::<bnb_step_item_t>());
    assert!(align_of::<StepItem>() == align_of::<bnb_step_item_t>());
    assert!(offset_of!(StepItem, id) == offset_of!(bnb_step_item_t, id));
    assert!(offset_of!(StepItem, param) == offset_of!(bnb_step_item_t, param));
    assert!(offset_of!(StepItem, grad) == offset_of!(bnb_step_item_t, grad));
};
