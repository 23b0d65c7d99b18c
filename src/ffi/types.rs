//! The C-visible types and constants. Enumerations are plain integer typedefs plus constants so
//! that a value coming from C is checked before it becomes a Rust enum (an out-of-range C enum
//! would be undefined behaviour in Rust).

use std::ffi::c_void;

use super::{Versioned, Written};
use crate::config::{Config, Path, Preset};
use crate::dtype::Dtype;
use crate::error::{invalid, Error, Result};
use crate::optimizer::Device;
use crate::state::StateKind;

/// Major version of the C ABI; a change that breaks existing callers increments it.
pub const BNB_ADAM8BIT_ABI_VERSION: u32 = 3;
/// Library version (equal to the crate version in Cargo.toml; a test checks it).
pub const BNB_ADAM8BIT_VERSION_MAJOR: u32 = 0;
pub const BNB_ADAM8BIT_VERSION_MINOR: u32 = 2;
pub const BNB_ADAM8BIT_VERSION_PATCH: u32 = 0;

/// Result of every fallible call: `BNB_OK` (0) or one of the `BNB_ERR_*` codes. On an error,
/// `bnb_last_error_message()` says what was wrong.
pub type bnb_status_t = i32;
pub const BNB_OK: bnb_status_t = 0;
/// A NULL pointer, an unknown id or enum value, a wrong size, a value out of range.
pub const BNB_ERR_INVALID_ARGUMENT: bnb_status_t = 1;
/// A valid request this build or this handle cannot serve (e.g. CUDA in a CPU-only build).
pub const BNB_ERR_UNSUPPORTED: bnb_status_t = 2;
/// An allocation failed (host or device).
pub const BNB_ERR_OUT_OF_MEMORY: bnb_status_t = 3;
/// No CUDA driver or no such GPU at run time.
pub const BNB_ERR_NO_DEVICE: bnb_status_t = 4;
/// The CUDA driver reported an error.
pub const BNB_ERR_CUDA: bnb_status_t = 5;
/// Reading or writing a file failed.
pub const BNB_ERR_IO: bnb_status_t = 6;
/// Checkpoint data is damaged or not a libadam8bit checkpoint.
pub const BNB_ERR_CORRUPT: bnb_status_t = 7;
/// Data is valid but does not fit this handle (other parameters, config or map).
pub const BNB_ERR_MISMATCH: bnb_status_t = 8;
/// An internal bug was caught before it could cross into C. The handle it happened on is
/// poisoned: every later call on it but `bnb_adam8bit_destroy` returns `BNB_ERR_PANIC` too.
pub const BNB_ERR_PANIC: bnb_status_t = 9;

/// Element type of a parameter and its gradient (they always share it).
pub type bnb_dtype_t = i32;
pub const BNB_DTYPE_F32: bnb_dtype_t = 0;
pub const BNB_DTYPE_F16: bnb_dtype_t = 1;
pub const BNB_DTYPE_BF16: bnb_dtype_t = 2;

/// Where a handle keeps its state and runs its steps.
pub type bnb_device_t = i32;
pub const BNB_DEVICE_CPU: bnb_device_t = 0;
pub const BNB_DEVICE_CUDA: bnb_device_t = 1;

/// The update path a parameter was given at registration.
pub type bnb_path_t = i32;
/// 8-bit codes, one absmax per 256-element block and state (the default).
pub const BNB_PATH_BLOCKWISE8: bnb_path_t = 0;
/// 8-bit codes, one scale per state for the whole tensor (`block_wise = false`).
pub const BNB_PATH_DYNAMIC8: bnb_path_t = 1;
/// fp32 states (`numel < min_8bit_size`, or the `optim_bits = 32` override).
pub const BNB_PATH_FP32: bnb_path_t = 2;

/// A state array of a parameter, by bitsandbytes' `state_dict` key.
pub type bnb_state_kind_t = i32;
/// First moment: uint8 codes (8-bit paths) or f32 (32-bit path), `numel` elements.
pub const BNB_STATE1: bnb_state_kind_t = 0;
/// Second moment, like `BNB_STATE1`.
pub const BNB_STATE2: bnb_state_kind_t = 1;
/// f32 per-block scales of state1 / state2, `ceil(numel / 256)` each (blockwise path).
pub const BNB_ABSMAX1: bnb_state_kind_t = 2;
pub const BNB_ABSMAX2: bnb_state_kind_t = 3;
/// The 256-entry f32 maps (8-bit paths); fixed, writable only with identical contents.
pub const BNB_QMAP1: bnb_state_kind_t = 4;
pub const BNB_QMAP2: bnb_state_kind_t = 5;
/// One f32 scale per state (non-blockwise path).
pub const BNB_MAX1: bnb_state_kind_t = 6;
pub const BNB_MAX2: bnb_state_kind_t = 7;
/// 100 f32 squared gradient norms (percentile clipping).
pub const BNB_GNORM_VEC: bnb_state_kind_t = 8;
/// One f32, the last step's squared update norm (`max_unorm > 0`, non-blockwise and 32-bit paths).
pub const BNB_UNORM_VEC: bnb_state_kind_t = 9;

/// The bitsandbytes classes a configuration can start from.
pub type bnb_preset_t = i32;
/// `bnb.optim.Adam8bit`: weight_decay 0.
pub const BNB_PRESET_ADAM8BIT: bnb_preset_t = 0;
/// `bnb.optim.AdamW8bit`: weight_decay 0.01 (decoupled, like every preset).
pub const BNB_PRESET_ADAMW8BIT: bnb_preset_t = 1;
/// `bnb.optim.PagedAdam8bit`: `is_paged = true`.
pub const BNB_PRESET_PAGED_ADAM8BIT: bnb_preset_t = 2;
/// `bnb.optim.PagedAdamW8bit`: weight_decay 0.01, `is_paged = true`.
pub const BNB_PRESET_PAGED_ADAMW8BIT: bnb_preset_t = 3;

/// `bnb_param_options_t.flags` bits: which override fields are set.
pub const BNB_OPT_LR_SCALE: u32 = 1 << 0;
pub const BNB_OPT_BETA1: u32 = 1 << 1;
pub const BNB_OPT_BETA2: u32 = 1 << 2;
pub const BNB_OPT_EPS: u32 = 1 << 3;
pub const BNB_OPT_WEIGHT_DECAY: u32 = 1 << 4;
pub const BNB_OPT_OPTIM_BITS: u32 = 1 << 5;
pub const BNB_OPT_MIN_8BIT_SIZE: u32 = 1 << 6;
pub const BNB_OPT_SHARD: u32 = 1 << 7;
/// `BNB_OPT_STOCHASTIC_ROUNDING`, `BNB_OPT_SEED`, `BNB_OPT_ROUNDING_KEY`: rule 19's settings of
/// this parameter (`stochastic_rounding`, `seed`, `rounding_key`).
pub const BNB_OPT_STOCHASTIC_ROUNDING: u32 = 1 << 8;
pub const BNB_OPT_SEED: u32 = 1 << 9;
pub const BNB_OPT_ROUNDING_KEY: u32 = 1 << 10;
/// cbindgen:ignore
const BNB_OPT_ALL: u32 = (1 << 11) - 1;

/// Optimizer settings: the keyword arguments of `bnb.optim.Adam8bit`, plus `max_unorm` and
/// `skip_zeros`. Start from `bnb_adam8bit_config_default(&c, sizeof c)` or
/// `bnb_adam8bit_config_preset`, which also fill in `struct_size`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct bnb_adam8bit_config_t {
    /// `sizeof(bnb_adam8bit_config_t)` as the caller was compiled with it.
    pub struct_size: u64,
    /// Learning rate (>= 0); changeable later with `bnb_adam8bit_set_lr`.
    pub lr: f64,
    /// Moment decay rates, each in [0, 1).
    pub beta1: f64,
    pub beta2: f64,
    /// Denominator term (>= 0).
    pub eps: f64,
    /// Decoupled weight decay (>= 0), applied after the Adam update: `p = (p + u) * (1 - lr*wd)`.
    pub weight_decay: f64,
    /// Update-norm clipping on the non-blockwise and 32-bit paths (0 = off, >= 0).
    pub max_unorm: f64,
    /// Tensors with fewer elements keep fp32 state (strict `<`, as bitsandbytes).
    pub min_8bit_size: u64,
    /// Must be 32: it exists for signature compatibility, exactly as in bitsandbytes.
    pub optim_bits: i32,
    /// 1..=100; below 100 clips each gradient to that percentile of its last 100 norms.
    pub percentile_clipping: i32,
    /// Must be false (bitsandbytes' Adam8bit rejects amsgrad too).
    pub amsgrad: bool,
    /// true: one scale per 256-element block (default); false: one per tensor.
    pub block_wise: bool,
    /// CUDA: state1/state2 of tensors with >= 100000 elements in managed memory. CPU: no effect.
    pub is_paged: bool,
    /// 32-bit path: elements whose gradient is exactly zero are left untouched.
    pub skip_zeros: bool,
    /// Must be zero (the `_default`/`_preset` functions zero it): room for options of
    /// later versions that an older library then refuses instead of ignoring.
    pub reserved: [u8; 4],
    /// Seed of the stochastic rounding's draws (fields since 0.3; a caller compiled against
    /// 0.2's smaller struct gets 0 and false).
    pub seed: u64,
    /// fp16/bf16 parameters round each updated element to one of its two neighbours at random
    /// (DECISIONS rule 19, docs/design.md "Stochastic rounding"), unbiased and reproducible:
    /// the draws depend only on the seed, the parameter's key, the step and the element's
    /// index in the full tensor. fp32 parameters are unaffected. Default false.
    pub stochastic_rounding: bool,
    /// Zero, like `reserved`.
    pub reserved2: [u8; 7],
}

// SAFETY: the offsets are the struct's five bools; the reserved ranges lie inside it, the
// last one at its end; all-zero bytes are a valid value.
unsafe impl Versioned for bnb_adam8bit_config_t {
    const BOOLS: &'static [(usize, &'static str)] = &[
        (std::mem::offset_of!(Self, amsgrad), "amsgrad"),
        (std::mem::offset_of!(Self, block_wise), "block_wise"),
        (std::mem::offset_of!(Self, is_paged), "is_paged"),
        (std::mem::offset_of!(Self, skip_zeros), "skip_zeros"),
        (
            std::mem::offset_of!(Self, stochastic_rounding),
            "stochastic_rounding",
        ),
    ];
    const RESERVED: &'static [std::ops::Range<usize>] = &[
        std::mem::offset_of!(Self, reserved)..std::mem::offset_of!(Self, seed),
        std::mem::offset_of!(Self, reserved2)..std::mem::size_of::<Self>(),
    ];
    const OLDER_SIZES: &'static [usize] = &[std::mem::offset_of!(Self, seed)];
}

impl From<Config> for bnb_adam8bit_config_t {
    fn from(c: Config) -> Self {
        bnb_adam8bit_config_t {
            struct_size: std::mem::size_of::<bnb_adam8bit_config_t>() as u64,
            lr: c.lr,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: c.weight_decay,
            max_unorm: c.max_unorm,
            min_8bit_size: c.min_8bit_size,
            optim_bits: c.optim_bits,
            percentile_clipping: c.percentile_clipping,
            amsgrad: c.amsgrad,
            block_wise: c.block_wise,
            is_paged: c.is_paged,
            skip_zeros: c.skip_zeros,
            reserved: [0; 4],
            seed: c.seed,
            stochastic_rounding: c.stochastic_rounding,
            reserved2: [0; 7],
        }
    }
}

/// `bnb.optim.Adam8bit`'s defaults (what `bnb_adam8bit_config_default` writes).
impl Default for bnb_adam8bit_config_t {
    fn default() -> Self {
        Config::preset(crate::config::Preset::Adam8bit).into()
    }
}

impl From<&bnb_adam8bit_config_t> for Config {
    fn from(c: &bnb_adam8bit_config_t) -> Self {
        Config {
            lr: c.lr,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: c.weight_decay,
            max_unorm: c.max_unorm,
            min_8bit_size: c.min_8bit_size,
            optim_bits: c.optim_bits,
            percentile_clipping: c.percentile_clipping,
            amsgrad: c.amsgrad,
            block_wise: c.block_wise,
            is_paged: c.is_paged,
            skip_zeros: c.skip_zeros,
            stochastic_rounding: c.stochastic_rounding,
            seed: c.seed,
        }
    }
}

/// Per-parameter settings for `bnb_adam8bit_add_param_ex`: the C form of torch param groups
/// and bitsandbytes' `override_config`. Start from `bnb_param_options_default(&o, sizeof o)`, set fields
/// and the matching `BNB_OPT_*` bits in `flags`; unset fields take the handle's values.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct bnb_param_options_t {
    /// `sizeof(bnb_param_options_t)` as the caller was compiled with it.
    pub struct_size: u64,
    /// `BNB_OPT_*` bits: which of the fields below are set.
    pub flags: u32,
    /// Learning-rate group (always used; default 0). `bnb_adam8bit_set_group_lr` changes a
    /// group's rate, `bnb_adam8bit_set_lr` every group's.
    pub group: u32,
    /// `BNB_OPT_LR_SCALE`: this parameter steps with `lr_scale * (its group's lr)`. A scheduler
    /// therefore moves it too; there is deliberately no pinned absolute per-parameter lr.
    pub lr_scale: f64,
    /// `BNB_OPT_BETA1`, `BNB_OPT_BETA2`, `BNB_OPT_EPS`, `BNB_OPT_WEIGHT_DECAY`.
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// `BNB_OPT_OPTIM_BITS`: 32 keeps fp32 state whatever the size (e.g. embeddings); 8 uses
    /// 8-bit state subject to `min_8bit_size`.
    pub optim_bits: i32,
    /// `BNB_OPT_MIN_8BIT_SIZE`: this parameter's threshold instead of the handle's.
    pub min_8bit_size: u64,
    /// `BNB_OPT_SHARD`: the parameter is elements `[shard_offset, shard_offset + numel)` of a
    /// flattened tensor of `shard_full_numel` elements. The slice starts on a multiple of 256
    /// and ends on one or at `shard_full_numel` (so its blocks are the tensor's blocks);
    /// the 8-bit/32-bit choice uses `shard_full_numel`.
    pub shard_full_numel: u64,
    pub shard_offset: u64,
    /// `BNB_OPT_SEED`: this parameter's seed of rule 19's draws (fields since 0.3).
    pub seed: u64,
    /// `BNB_OPT_ROUNDING_KEY`: this parameter's key in rule 19's draws. Without it the key is
    /// derived from the full tensor's size and how many parameters of that size the handle
    /// registered before it, so every rank of a sharded run gives a tensor the same key.
    pub rounding_key: u64,
    /// `BNB_OPT_STOCHASTIC_ROUNDING`: rule 19 on or off for this parameter.
    pub stochastic_rounding: bool,
    /// Zero: room for later fields.
    pub reserved: [u8; 7],
}

// SAFETY: the one bool is listed; the reserved bytes end the struct; all-zero bytes are a
// valid value.
unsafe impl Versioned for bnb_param_options_t {
    const BOOLS: &'static [(usize, &'static str)] = &[(
        std::mem::offset_of!(Self, stochastic_rounding),
        "stochastic_rounding",
    )];
    #[allow(clippy::single_range_in_vec_init)] // a list of ranges that has one
    const RESERVED: &'static [std::ops::Range<usize>] =
        &[std::mem::offset_of!(Self, reserved)..std::mem::size_of::<Self>()];
    const OLDER_SIZES: &'static [usize] = &[std::mem::offset_of!(Self, seed)];
}

// A later field may only extend these structs, never fill tail padding without changing
// their size: otherwise `struct_size` could not tell an older library that it is there.
const _: () = assert!(
    std::mem::size_of::<bnb_adam8bit_config_t>()
        == std::mem::offset_of!(bnb_adam8bit_config_t, reserved2) + 7
);
const _: () = assert!(
    std::mem::size_of::<bnb_param_options_t>()
        == std::mem::offset_of!(bnb_param_options_t, reserved) + 7
);
const _: () = assert!(
    std::mem::size_of::<bnb_param_info_t>()
        == std::mem::offset_of!(bnb_param_info_t, rounding_key) + 8
);
// The sizes of ABI 3's first release (0.2), which callers compiled then still pass.
const _: () = assert!(std::mem::offset_of!(bnb_adam8bit_config_t, seed) == 80);
const _: () = assert!(std::mem::offset_of!(bnb_param_options_t, seed) == 88);

impl Default for bnb_param_options_t {
    fn default() -> Self {
        bnb_param_options_t {
            struct_size: std::mem::size_of::<bnb_param_options_t>() as u64,
            flags: 0,
            group: 0,
            lr_scale: 1.0,
            beta1: 0.0,
            beta2: 0.0,
            eps: 0.0,
            weight_decay: 0.0,
            optim_bits: 32,
            min_8bit_size: 0,
            shard_full_numel: 0,
            shard_offset: 0,
            seed: 0,
            rounding_key: 0,
            stochastic_rounding: false,
            reserved: [0; 7],
        }
    }
}

impl bnb_param_options_t {
    pub fn overrides(&self) -> Result<crate::config::ParamOverrides> {
        if self.flags & !BNB_OPT_ALL != 0 {
            invalid!(
                "unknown bits {:#x} in bnb_param_options_t.flags",
                self.flags & !BNB_OPT_ALL
            );
        }
        let on = |bit: u32| self.flags & bit != 0;
        Ok(crate::config::ParamOverrides {
            group: self.group,
            lr_scale: on(BNB_OPT_LR_SCALE).then_some(self.lr_scale),
            beta1: on(BNB_OPT_BETA1).then_some(self.beta1),
            beta2: on(BNB_OPT_BETA2).then_some(self.beta2),
            eps: on(BNB_OPT_EPS).then_some(self.eps),
            weight_decay: on(BNB_OPT_WEIGHT_DECAY).then_some(self.weight_decay),
            optim_bits: on(BNB_OPT_OPTIM_BITS).then_some(self.optim_bits),
            min_8bit_size: on(BNB_OPT_MIN_8BIT_SIZE).then_some(self.min_8bit_size),
            shard: on(BNB_OPT_SHARD).then_some(crate::config::Shard {
                full_numel: self.shard_full_numel,
                offset: self.shard_offset,
            }),
            stochastic_rounding: on(BNB_OPT_STOCHASTIC_ROUNDING)
                .then_some(self.stochastic_rounding),
            seed: on(BNB_OPT_SEED).then_some(self.seed),
            rounding_key: on(BNB_OPT_ROUNDING_KEY).then_some(self.rounding_key),
        })
    }
}

/// What `bnb_adam8bit_param_info` reports about one parameter.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct bnb_param_info_t {
    /// The `struct_size` passed to `bnb_adam8bit_param_info`.
    pub struct_size: u64,
    pub numel: u64,
    pub dtype: bnb_dtype_t,
    pub path: bnb_path_t,
    /// Steps taken so far (the next step uses `step + 1` for bias correction).
    pub step: u64,
    /// Absmax blocks per state (blockwise path), else 0.
    pub blocks: u64,
    /// Bytes of optimizer state held for this parameter (codes, scales, histories).
    pub state_bytes: u64,
    /// Non-finite gradient elements in the last step this handle took (their m and v were
    /// zeroed, the parameter element left untouched); a load does not reset it.
    pub nonfinite_count: u64,
    /// The learning rate the next step uses (group lr times lr_scale).
    pub lr: f64,
    /// Percentile clipping's gradient scale in the last step this handle took (1 without
    /// clipping, or before the first step).
    pub gnorm_scale: f32,
    pub group: u32,
    /// Whether state1/state2 live in CUDA managed memory.
    pub paged: bool,
    /// Whether its updates round stochastically (rule 19: on for it, and fp16/bf16).
    pub stochastic_rounding: bool,
    /// Zero: the tail padding made explicit, so a later field placed here reads 0 from an
    /// older library instead of padding bytes.
    pub reserved: [u8; 6],
    /// Its key in rule 19's draws (the override or the default; equal on every rank for the
    /// shards of one tensor).
    pub rounding_key: u64,
}

/// One parameter of a `bnb_adam8bit_step_many` call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct bnb_step_item_t {
    pub id: u32,
    /// `numel` elements of the parameter's dtype, updated in place.
    pub param: *mut c_void,
    /// `numel` elements of the same dtype; only read.
    pub grad: *const c_void,
}

/// Options of one `bnb_adam8bit_step_many_ex` call, a versioned struct: fill it with
/// `bnb_step_options_default(&o, sizeof o)`; every field of a later version means "off" when
/// zero.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct bnb_step_options_t {
    pub struct_size: u64,
    /// Loss scaling (GradScaler): every gradient element is divided by `*grad_scale` (fp32,
    /// correctly rounded) before anything reads it, percentile clipping's norm included. A
    /// `*grad_scale` that is zero, negative or not finite skips the call, as `found_inf` does
    /// (instead of zeroing every moment as non-finite gradients would). NULL: no scaling.
    pub grad_scale: *const f32,
    /// When `*found_inf != 0` at step time (GradScaler sums it over devices, so it may exceed
    /// 1), the call changes nothing: no parameter, state, history, counter or step number.
    /// NULL: always step.
    pub found_inf: *const f32,
}

impl Default for bnb_step_options_t {
    fn default() -> Self {
        bnb_step_options_t {
            struct_size: std::mem::size_of::<bnb_step_options_t>() as u64,
            grad_scale: std::ptr::null(),
            found_inf: std::ptr::null(),
        }
    }
}

// Two pointers after the size: no padding, no bools.
unsafe impl Versioned for bnb_step_options_t {}

pub fn dtype(d: bnb_dtype_t) -> Result<Dtype> {
    Ok(match d {
        BNB_DTYPE_F32 => Dtype::F32,
        BNB_DTYPE_F16 => Dtype::F16,
        BNB_DTYPE_BF16 => Dtype::Bf16,
        _ => {
            invalid!("unknown dtype {d} (expected BNB_DTYPE_F32, BNB_DTYPE_F16 or BNB_DTYPE_BF16)")
        }
    })
}

pub fn dtype_code(d: Dtype) -> bnb_dtype_t {
    match d {
        Dtype::F32 => BNB_DTYPE_F32,
        Dtype::F16 => BNB_DTYPE_F16,
        Dtype::Bf16 => BNB_DTYPE_BF16,
    }
}

pub fn device(d: bnb_device_t) -> Result<Device> {
    Ok(match d {
        BNB_DEVICE_CPU => Device::Cpu,
        BNB_DEVICE_CUDA => Device::Cuda,
        _ => invalid!("unknown device {d} (expected BNB_DEVICE_CPU or BNB_DEVICE_CUDA)"),
    })
}

pub fn path_code(p: Path) -> bnb_path_t {
    match p {
        Path::Blockwise8 => BNB_PATH_BLOCKWISE8,
        Path::Dynamic8 => BNB_PATH_DYNAMIC8,
        Path::Fp32 => BNB_PATH_FP32,
    }
}

pub fn state_kind(k: bnb_state_kind_t) -> Result<StateKind> {
    usize::try_from(k)
        .ok()
        .and_then(|i| StateKind::ALL.get(i).copied())
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "unknown state kind {k} (expected BNB_STATE1 .. BNB_UNORM_VEC)"
            ))
        })
}

pub fn preset(p: bnb_preset_t) -> Result<Preset> {
    Ok(match p {
        BNB_PRESET_ADAM8BIT => Preset::Adam8bit,
        BNB_PRESET_ADAMW8BIT => Preset::AdamW8bit,
        BNB_PRESET_PAGED_ADAM8BIT => Preset::PagedAdam8bit,
        BNB_PRESET_PAGED_ADAMW8BIT => Preset::PagedAdamW8bit,
        _ => invalid!("unknown preset {p}"),
    })
}

// SAFETY (each): the listed ranges, and only they, are bytes between fields (the test below
// checks every field's bytes and these against the struct's size).
unsafe impl Written for bnb_adam8bit_config_t {}
unsafe impl Written for bnb_param_info_t {}
unsafe impl Written for bnb_step_options_t {}
unsafe impl Written for bnb_param_options_t {
    // A list of holes that happens to have one.
    #[allow(clippy::single_range_in_vec_init)]
    const PADDING: &'static [std::ops::Range<usize>] =
        &[std::mem::offset_of!(Self, optim_bits) + 4..std::mem::offset_of!(Self, min_8bit_size)];
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every byte of `$t` lies in exactly one of its fields or its `PADDING`.
    macro_rules! covers {
        ($t:ty: $($field:ident),+) => {{
            let zero: $t = unsafe { std::mem::zeroed() };
            let mut owner = vec![0u32; std::mem::size_of::<$t>()];
            let mut mark = |range: std::ops::Range<usize>, what: &str| {
                for b in range {
                    owner[b] += 1;
                    assert_eq!(owner[b], 1, "{}: byte {b} ({what}) covered twice", stringify!($t));
                }
            };
            $(
                let at = std::mem::offset_of!($t, $field);
                mark(at..at + std::mem::size_of_val(&zero.$field), stringify!($field));
            )+
            for hole in <$t as Written>::PADDING {
                mark(hole.clone(), "padding");
            }
            let missed: Vec<usize> = (0..owner.len()).filter(|&b| owner[b] == 0).collect();
            assert!(missed.is_empty(), "{}: bytes {missed:?} are padding not listed", stringify!($t));
        }};
    }

    #[test]
    fn written_structs_list_all_their_padding() {
        covers!(bnb_adam8bit_config_t: struct_size, lr, beta1, beta2, eps, weight_decay,
            max_unorm, min_8bit_size, optim_bits, percentile_clipping, amsgrad, block_wise,
            is_paged, skip_zeros, reserved, seed, stochastic_rounding, reserved2);
        covers!(bnb_param_options_t: struct_size, flags, group, lr_scale, beta1, beta2, eps,
            weight_decay, optim_bits, min_8bit_size, shard_full_numel, shard_offset, seed,
            rounding_key, stochastic_rounding, reserved);
        covers!(bnb_param_info_t: struct_size, numel, dtype, path, step, blocks, state_bytes,
            nonfinite_count, lr, gnorm_scale, group, paged, stochastic_rounding, reserved,
            rounding_key);
        covers!(bnb_step_options_t: struct_size, grad_scale, found_inf);
    }
}
