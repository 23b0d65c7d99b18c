//! The structs the host passes to the kernels, field for field those of
//! `csrc/adam8bit_abi.cuh` (the host test `tests/cuda_abi_layout.rs` compares every size, field
//! offset and constant).

use crate::qmap::{Qmap, BUCKETS};
use crate::scalars::StepScalars;

/// Tensors per launch: the batch travels as one kernel parameter (CUDA 12.1+ allows 32 KiB of
/// parameters on sm_70 and newer), so no host staging buffer outlives the launch call.
pub const MAX_TENSORS: usize = 128;
pub const HISTORY: usize = crate::config::HISTORY;
/// Blocks per chunk of the finalize kernels' first summation level.
pub const CHUNK: u64 = 2048;

/// The kernel-parameter limit of the driver (sm_70+, CUDA 12.1+).
const MAX_PARAM_BYTES: usize = 32764;
const _: () = assert!(
    std::mem::size_of::<Batch>() <= MAX_PARAM_BYTES,
    "a batch must fit in one kernel parameter"
);

pub const F32: u32 = 0;
pub const F16: u32 = 1;
pub const BF16: u32 = 2;

pub const CLIP: u32 = 1;
pub const UNORM: u32 = 2;
pub const SKIP_ZEROS: u32 = 4;
pub const VECTOR: u32 = 8;
pub const DYNAMIC: u32 = 16;
pub const STOCHASTIC: u32 = 32;

/// The maps' values and packed bucket tables, as the kernels stage them in shared memory.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Maps {
    pub q1: [f32; 256],
    pub q2: [f32; 256],
    pub b1: [u32; BUCKETS],
    pub b2: [u32; BUCKETS],
}

impl Maps {
    pub fn new(signed: &Qmap, unsigned: &Qmap) -> Maps {
        Maps {
            q1: signed.values,
            q2: unsigned.values,
            b1: signed.packed_buckets(),
            b2: unsigned.packed_buckets(),
        }
    }
}

/// Per-parameter device scalars. The step counter and the accumulators have a slot per parity
/// of the host's count of step calls: call `c` reads slot `(c + 1) & 1`, writes slot `c & 1`,
/// and clears the accumulators of slot `(c + 1) & 1` for the next call.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Aux {
    pub step: [u64; 2],
    pub nonfinite: [u64; 2],
    pub max1: f32,
    pub max2: f32,
    pub dec1: f32,
    pub dec2: f32,
    pub new_max1: [u32; 2],
    pub new_max2: [u32; 2],
    pub gnorm_scale: f32,
    pub update_scale: f32,
    pub unorm_vec: f32,
    pub ticket: u32,
    pub history: [f32; HISTORY],
}

impl Aux {
    /// The state of a fresh parameter: scales 0, history 0, unit step scales.
    pub fn initial() -> Aux {
        Aux {
            step: [0; 2],
            nonfinite: [0; 2],
            max1: 0.0,
            max2: 0.0,
            dec1: 0.0,
            dec2: 0.0,
            new_max1: [0; 2],
            new_max2: [0; 2],
            gnorm_scale: 1.0,
            update_scale: 1.0,
            unorm_vec: 0.0,
            ticket: 0,
            history: [0.0; HISTORY],
        }
    }

    /// The steps taken and the non-finite count of the last one, after `calls` step calls.
    pub fn after(&self, calls: u64) -> (u64, u64) {
        let slot = (calls & 1) as usize;
        (self.step[slot], self.nonfinite[slot])
    }

    /// `set_step` after `calls` step calls: what the next call reads.
    pub fn set_step(&mut self, calls: u64, step: u64) {
        self.step[(calls & 1) as usize] = step;
    }
}

/// One tensor of a launch.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
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
    pub first_chunk: u64,
    pub k: StepScalars,
    pub dtype: u32,
    pub flags: u32,
    /// The power table's last index, where the kernels clamp the step (past it, every
    /// `1 - beta^t` is 1).
    pub powers_last: u32,
    pub call: u64,
    pub lr: f64,
    pub eps: f64,
    pub powers: u64,
    pub percentile: i32,
    pub max_unorm: f32,
    pub sr_key: [u32; 2],
    pub sr_first: u64,
}

/// One launch's work list.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Batch {
    pub maps: u64,
    pub grad_scale: u64,
    pub found_inf: u64,
    pub count: u32,
    pub total_blocks: u64,
    pub total_chunks: u64,
    pub t: [Tensor; MAX_TENSORS],
}

/// The finalize kernels' chunks of a tensor of `n` elements.
pub fn chunks(n: u64) -> u64 {
    n.div_ceil(crate::config::BLOCKSIZE * CHUNK)
}

// Plain arrays of 4-byte values: no padding, every bit pattern valid.
impl crate::state::Pod for Maps {}
