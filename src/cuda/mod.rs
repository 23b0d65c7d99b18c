//! The CUDA backend: kernels from `csrc/` embedded as one fatbin, launched through the driver
//! API on the caller's stream.
//!
//! A step enqueues, in this order, with no host synchronisation: prefetch of paged states;
//! `a8_prepare` (zero the per-step accumulators); with percentile clipping `a8_grad_norm` and
//! `a8_finalize_clip` (norm, history and scale stay on the device); for non-blockwise tensors,
//! and 32-bit ones with `max_unorm`, the reduction pass and `a8_finalize_update` (update scale,
//! swap of the non-blockwise scales); then one update launch per path. Each launch covers up to
//! [`abi::MAX_TENSORS`] tensors, passed by value as the kernel parameter, so no host buffer
//! outlives the call that enqueues it.

pub mod abi;
pub mod driver;
pub mod state;

use std::ffi::c_void;

use cudarc::driver::result;
use cudarc::driver::sys::{self, CUdevice_attribute as Attr};

use crate::config::{Path, BLOCKSIZE};
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::qmap::{SIGNED, UNSIGNED};
use crate::scalars::StepScalars;
use driver::{cu, Context, DevBuf, Module};
pub use state::DeviceState;

const THREADS: u32 = 256;
const WARPS_PER_CTA: u64 = (THREADS / 32) as u64;

/// Kernels in the order of the step.
struct Kernels {
    prepare: sys::CUfunction,
    grad_norm: sys::CUfunction,
    finalize_clip: sys::CUfunction,
    blockwise: sys::CUfunction,
    dynamic_reduce: sys::CUfunction,
    dynamic_update: sys::CUfunction,
    fp32_reduce: sys::CUfunction,
    fp32_update: sys::CUfunction,
    finalize_update: sys::CUfunction,
}

/// A CUDA handle's device: context, kernels, maps, and launch geometry.
pub struct Backend {
    // Field order is drop order: maps and module go before the context is released.
    maps: DevBuf,
    kernels: Kernels,
    /// Keeps the kernels loaded while the handle lives.
    _module: Module,
    /// CTAs that fill the device once (SMs x resident CTAs of the heaviest sweep).
    persistent_ctas: u64,
    /// Prefetching managed memory needs concurrent managed access (not on every platform).
    prefetch: bool,
    pub ctx: Context,
}

// SAFETY: CUfunction handles are plain driver handles, valid on any thread with the context
// current, which every entry point ensures.
unsafe impl Send for Backend {}

/// One parameter's share of a CUDA step.
pub struct Job<'a> {
    pub state: &'a DeviceState,
    pub dtype: Dtype,
    pub param: *mut u8,
    pub grad: *const u8,
    pub scalars: StepScalars,
    pub t: u64,
    pub percentile: Option<i32>,
    pub max_unorm: f64,
    pub skip_zeros: bool,
}

impl Backend {
    pub fn new(device_index: i32) -> Result<Backend> {
        let ctx = Context::primary(device_index)?;
        // Current for the occupancy query; every other call below binds it itself.
        let _bound = ctx.bind()?;
        let module = Module::load(&ctx)?;
        let f = |name: &str| module.function(name);
        let kernels = Kernels {
            prepare: f("a8_prepare")?,
            grad_norm: f("a8_grad_norm")?,
            finalize_clip: f("a8_finalize_clip")?,
            blockwise: f("a8_blockwise")?,
            dynamic_reduce: f("a8_dynamic_reduce")?,
            dynamic_update: f("a8_dynamic_update")?,
            fp32_reduce: f("a8_fp32_reduce")?,
            fp32_update: f("a8_fp32_update")?,
            finalize_update: f("a8_finalize_update")?,
        };
        let sms = ctx.attribute(Attr::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as u64;
        // SAFETY: a valid function handle and block size.
        let resident = unsafe {
            result::occupancy::max_active_block_per_multiprocessor(
                kernels.blockwise,
                THREADS as i32,
                0,
            )
        }
        .map_err(cu("cuOccupancyMaxActiveBlocksPerMultiprocessor"))?
        .max(1) as u64;
        let prefetch = ctx.attribute(Attr::CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS)? != 0;
        let maps = DevBuf::zeroed(&ctx, 512 * 4, false)?;
        let values: Vec<f32> = SIGNED
            .values
            .iter()
            .chain(UNSIGNED.values.iter())
            .copied()
            .collect();
        maps.upload(crate::state::as_bytes(&values))?;
        // The zeroing and the copy are asynchronous to the host for device memory; a step on a
        // caller's non-blocking stream must not overtake them.
        ctx.synchronize()?;
        Ok(Backend {
            maps,
            kernels,
            _module: module,
            persistent_ctas: sms * resident,
            prefetch,
            ctx,
        })
    }

    /// Allocates a parameter's state (zeroed, as bitsandbytes starts it).
    pub fn alloc(
        &self,
        path: Path,
        numel: u64,
        clips: bool,
        unorm: bool,
        paged: bool,
    ) -> Result<DeviceState> {
        DeviceState::new(&self.ctx, path, numel, clips, unorm, paged)
    }

    /// Enqueues one step of every job on `stream`; returns without waiting for the GPU.
    ///
    /// # Safety
    /// Each job's `param` and `grad` must be device-accessible pointers of this context to
    /// `numel` elements of `dtype`, valid until the stream reaches the step.
    pub unsafe fn step(&self, jobs: &[Job<'_>], stream: *mut c_void) -> Result<()> {
        let _bound = self.ctx.bind()?;
        let stream = stream as sys::CUstream;
        if self.prefetch {
            self.prefetch_paged(jobs, stream)?;
        }
        let by_path = |p: Path| -> Vec<abi::Tensor> {
            jobs.iter()
                .filter(|j| j.state.path == p)
                .map(|j| self.tensor(j))
                .collect()
        };
        let blockwise = batches(&by_path(Path::Blockwise8), &self.maps);
        let dynamic = batches(&by_path(Path::Dynamic8), &self.maps);
        let fp32 = batches(&by_path(Path::Fp32), &self.maps);

        // Up to the first launch nothing has changed; from it on, a failure leaves the step
        // partly applied and the handle's device state inconsistent.
        let mut launched = 0usize;
        let mut go = |f: sys::CUfunction, ctas: u32, b: &abi::Batch| -> Result<()> {
            self.launch(f, ctas, b, stream).map_err(|e| match e {
                Error::DeviceLost(m) => Error::DeviceLost(m),
                e if launched > 0 => Error::DeviceLost(format!(
                    "a step failed after {launched} of its launches were enqueued: {e}"
                )),
                e => e,
            })?;
            launched += 1;
            Ok(())
        };
        let k = &self.kernels;
        let all = || blockwise.iter().chain(&dynamic).chain(&fp32);
        for b in all() {
            go(k.prepare, 1, b)?;
        }
        for b in all().filter(|b| b.t[0].flags & abi::CLIP != 0) {
            go(k.grad_norm, self.sweep_ctas(b), b)?;
            go(k.finalize_clip, b.count, b)?;
        }
        for b in &dynamic {
            go(k.dynamic_reduce, self.sweep_ctas(b), b)?;
            go(k.finalize_update, b.count, b)?;
        }
        for b in fp32.iter().filter(|b| b.t[0].flags & abi::UNORM != 0) {
            go(k.fp32_reduce, self.sweep_ctas(b), b)?;
            go(k.finalize_update, b.count, b)?;
        }
        for b in &blockwise {
            go(k.blockwise, self.sweep_ctas(b), b)?;
        }
        for b in &dynamic {
            go(k.dynamic_update, self.sweep_ctas(b), b)?;
        }
        for b in &fp32 {
            go(k.fp32_update, self.sweep_ctas(b), b)?;
        }
        Ok(())
    }

    fn tensor(&self, j: &Job<'_>) -> abi::Tensor {
        let s = j.state;
        let (a1, a2) = s
            .absmax
            .as_ref()
            .map_or((0, 0), |(a1, a2)| (a1.ptr, a2.ptr));
        let unorm = j.max_unorm > 0.0 && s.path != Path::Blockwise8;
        let aligned = (j.param as usize | j.grad as usize).is_multiple_of(16);
        let flags = [
            (j.percentile.is_some(), abi::CLIP),
            (unorm, abi::UNORM),
            (j.skip_zeros && s.path == Path::Fp32, abi::SKIP_ZEROS),
            (aligned, abi::ALIGNED16),
            (s.path == Path::Dynamic8, abi::DYNAMIC),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |acc, (_, bit)| acc | bit);
        abi::Tensor {
            p: j.param as u64,
            g: j.grad as u64,
            s1: s.s1.ptr,
            s2: s.s2.ptr,
            a1,
            a2,
            partial: s.partial.as_ref().map_or(0, |b| b.ptr),
            aux: s.aux.ptr,
            n: s.numel,
            first_block: 0,
            k: j.scalars,
            dtype: match j.dtype {
                Dtype::F32 => abi::F32,
                Dtype::F16 => abi::F16,
                Dtype::Bf16 => abi::BF16,
            },
            flags,
            t: j.t,
            percentile: j.percentile.unwrap_or(100),
            max_unorm: j.max_unorm as f32,
        }
    }

    /// Enough CTAs for every warp to own a block, at most one device-full (persistent grid).
    fn sweep_ctas(&self, b: &abi::Batch) -> u32 {
        b.total_blocks
            .div_ceil(WARPS_PER_CTA)
            .clamp(1, self.persistent_ctas) as u32
    }

    unsafe fn launch(
        &self,
        f: sys::CUfunction,
        ctas: u32,
        b: &abi::Batch,
        stream: sys::CUstream,
    ) -> Result<()> {
        // The driver copies the parameter when the launch is enqueued, so `b` may go away after.
        let mut params = [b as *const abi::Batch as *mut c_void];
        result::launch_kernel(f, (ctas, 1, 1), (THREADS, 1, 1), 0, stream, &mut params)
            .map_err(cu("cuLaunchKernel"))
    }

    unsafe fn prefetch_paged(&self, jobs: &[Job<'_>], stream: sys::CUstream) -> Result<()> {
        let location = sys::CUmemLocation {
            type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
            id: self.ctx.dev,
        };
        for j in jobs.iter().filter(|j| j.state.paged) {
            for buf in [&j.state.s1, &j.state.s2] {
                result::mem_prefetch_async(buf.ptr, buf.bytes, location, stream)
                    .map_err(cu("cuMemPrefetchAsync"))?;
            }
        }
        Ok(())
    }
}

/// Cuts a path's tensors into launches of at most MAX_TENSORS, with the prefix of blocks.
fn batches(tensors: &[abi::Tensor], maps: &DevBuf) -> Vec<Box<abi::Batch>> {
    tensors
        .chunks(abi::MAX_TENSORS)
        .map(|chunk| {
            let mut b = Box::new(abi::Batch {
                maps: maps.ptr,
                count: chunk.len() as u32,
                total_blocks: 0,
                t: [chunk[0]; abi::MAX_TENSORS],
            });
            for (slot, t) in b.t.iter_mut().zip(chunk) {
                *slot = *t;
                slot.first_block = b.total_blocks;
                b.total_blocks += t.n.div_ceil(BLOCKSIZE);
            }
            b
        })
        .collect()
}
