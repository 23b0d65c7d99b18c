//! The structs the host passes to the kernels, field for field those of
//! `csrc/adam8bit_abi.cuh` (the host test `tests/cuda_abi_layout.rs` compares every size, field
//! offset and constant).

use crate::scalars::StepScalars;

/// Tensors per launch: the batch travels as one kernel parameter (CUDA 12.1+ allows 32 KiB of
/// parameters on sm_70 and newer), so no host staging buffer outlives the launch call.
pub const MAX_TENSORS: usize = 128;
pub const HISTORY: usize = crate::config::HISTORY;

pub const F32: u32 = 0;
pub const F16: u32 = 1;
pub const BF16: u32 = 2;

pub const CLIP: u32 = 1;
pub const UNORM: u32 = 2;
pub const SKIP_ZEROS: u32 = 4;
pub const ALIGNED16: u32 = 8;
pub const DYNAMIC: u32 = 16;

/// Per-parameter device scalars.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aux {
    pub nonfinite: u64,
    pub max1: f32,
    pub max2: f32,
    pub dec1: f32,
    pub dec2: f32,
    pub new_max1: u32,
    pub new_max2: u32,
    pub gnorm_scale: f32,
    pub update_scale: f32,
    pub unorm_vec: f32,
    pub history: [f32; HISTORY],
}

impl Aux {
    /// The state of a fresh parameter: scales 0, history 0, unit step scales.
    pub fn initial() -> Aux {
        Aux {
            nonfinite: 0,
            max1: 0.0,
            max2: 0.0,
            dec1: 0.0,
            dec2: 0.0,
            new_max1: 0,
            new_max2: 0,
            gnorm_scale: 1.0,
            update_scale: 1.0,
            unorm_vec: 0.0,
            history: [0.0; HISTORY],
        }
    }
}

/// One tensor of a launch.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Tensor {
    pub p: u64,
    pub g: u64,
    pub s1: u64,
    pub s2: u64,
    pub a1: u64,
    pub a2: u64,
    pub partial: u64,
    pub aux: u64,
    pub n: u64,
    pub first_block: u64,
    pub k: StepScalars,
    pub dtype: u32,
    pub flags: u32,
    pub t: u64,
    pub percentile: i32,
    pub max_unorm: f32,
}

/// One launch's work list.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Batch {
    pub maps: u64,
    pub count: u32,
    pub total_blocks: u64,
    pub t: [Tensor; MAX_TENSORS],
}
