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
//! - [`state`]: per-parameter state storage;
//! - [`optimizer`]: the parameter registry and step dispatch;
//! - [`cpu`]: the CPU backend (kernels and worker pool);
//! - [`clipping`]: percentile clipping and `max_unorm` scales.

#![allow(non_camel_case_types)]

#[cfg(not(target_endian = "little"))]
compile_error!("libadam8bit exposes state arrays as little-endian bytes and supports little-endian targets only");

pub mod clipping;
pub mod config;
pub mod cpu;
pub mod dtype;
pub mod error;
pub mod ffi;
pub mod optimizer;
pub mod qmap;
pub mod scalars;
pub mod state;
