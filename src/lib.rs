//! libadam8bit: bitsandbytes' `Adam8bit` without Python.
//!
//! Adam whose two moments are stored as uint8 codes under block-wise dynamic quantization
//! (about 2.03 bytes of state per parameter instead of 8), computing exactly the function of
//! `shared/spec/DECISIONS.md`. The C ABI lives in [`ffi`] and is described by the generated
//! header `include/adam8bit.h`; the rest of the crate is its implementation:
//!
//! - [`config`]: settings, presets, validation, per-parameter overrides;
//! - [`qmap`]: the two quantization maps and the O(1) exact quantizer;
//! - [`scalars`]: the per-step host scalars (rule 2);
//! - [`rounding`]: stochastic rounding of 16-bit parameters (rule 19);
//! - [`state`]: per-parameter state storage;
//! - [`optimizer`]: the parameter registry and step dispatch;
//! - [`cpu`]: the CPU backend (kernels and worker pool);
//! - [`cuda`]: the CUDA backend (kernels in `csrc/`, driver API through cudarc);
//! - [`clipping`]: percentile clipping and `max_unorm` scales;
//! - [`checkpoint`]: saving, loading, merging and splitting checkpoints.

#![allow(non_camel_case_types)]

#[cfg(not(target_endian = "little"))]
compile_error!("libadam8bit exposes state arrays as little-endian bytes and supports little-endian targets only");

/// cbindgen:ignore
pub mod checkpoint;
/// cbindgen:ignore
pub mod clipping;
/// cbindgen:ignore
pub mod config;
/// cbindgen:ignore
pub mod cpu;
/// cbindgen:ignore
pub mod cuda;
/// cbindgen:ignore
pub mod dtype;
/// cbindgen:ignore
pub mod error;
pub mod ffi;
/// cbindgen:ignore
pub mod optimizer;
/// cbindgen:ignore
pub mod qmap;
/// cbindgen:ignore
#[doc(hidden)]
pub mod rng;
/// cbindgen:ignore
pub mod rounding;
/// cbindgen:ignore
#[doc(hidden)]
pub mod rule3;
/// cbindgen:ignore
pub mod scalars;
/// cbindgen:ignore
pub mod state;
/// cbindgen:ignore
#[cfg(feature = "test-hooks")]
pub mod test_hooks;
