//! The CUDA backend: kernels from `csrc/` embedded as one fatbin, launched through the driver
//! API on the caller's stream.
//!
//! A step enqueues, with no host synchronisation: the prefetch of paged states; then per path
//! and dtype (each sweep kernel is compiled once per dtype), per launch of up to
//! [`abi::MAX_TENSORS`] tensors: with percentile clipping `a8_grad_norm`
//! and `a8_finalize_clip` (norm, history and scale stay on the device); for non-blockwise
//! tensors, and 32-bit ones with `max_unorm`, the reduction pass and `a8_finalize_update`
//! (update scale; swap of the non-blockwise scales); then the update. Each launch takes its
//! work list by value as the kernel parameter (the driver copies it when the launch is
//! enqueued), so one host buffer serves every launch and a step allocates nothing.
//!
//! Ordering without `cuCtxSynchronize`, which would stall every stream of the shared primary
//! context: the library's own copies and memsets go to the legacy stream and are followed by
//! an event (`writes_done`) that the next step's stream waits for; each step ends with an
//! event (`step_done`) that state reads, writes and destroy wait for on the host, and that a
//! step on another stream than the last waits for on the device.

pub mod abi;
pub mod driver;
pub mod state;

use std::cell::{Cell, RefCell};
use std::ffi::c_void;

use cudarc::driver::result;
use cudarc::driver::sys::{self, CUdevice_attribute as Attr};

use crate::config::{Path, BLOCKSIZE};
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::qmap::{SIGNED, UNSIGNED};
use crate::scalars::StepScalars;
use driver::{cu, Context, DevBuf, Event, Module};
pub use state::DeviceState;

const THREADS: u32 = 256;
const WARPS_PER_CTA: u64 = (THREADS / 32) as u64;

/// A sweep kernel per dtype of the tensors it steps (indexed by `abi::F32`, `F16`, `BF16`).
type PerDtype = [sys::CUfunction; 3];

/// An update sweep per dtype, as it rounds 16-bit parameters: to nearest only, or also
/// stochastically (the `_sr` kernels, which carry rule 19's code; fp32 has one kernel).
struct Updates {
    nearest: PerDtype,
    stochastic: PerDtype,
}

impl Updates {
    fn pick(&self, stochastic: bool, d: usize) -> sys::CUfunction {
        if stochastic {
            self.stochastic[d]
        } else {
            self.nearest[d]
        }
    }
}

/// The kernels.
struct Kernels {
    grad_norm: PerDtype,
    finalize_clip: sys::CUfunction,
    blockwise: Updates,
    dynamic_reduce: PerDtype,
    dynamic_update: Updates,
    fp32_reduce: PerDtype,
    fp32_update: Updates,
    finalize_update: sys::CUfunction,
}

/// A CUDA handle's device: context, kernels, maps, launch geometry and ordering events.
pub struct Backend {
    // Field order is drop order: events, maps and module go before the context is released.
    step_done: Event,
    writes_done: Event,
    /// Whether a step was recorded in `step_done`, and on which stream.
    last_stream: Cell<Option<sys::CUstream>>,
    /// Library copies or memsets were queued since the last step.
    writes_pending: Cell<bool>,
    /// The launch's work list, reused by every launch.
    batch: RefCell<Box<abi::Batch>>,
    /// Power tables per pair of betas, and the tables they outgrew (a queued step may still
    /// read one; they go with the handle).
    powers: RefCell<Vec<Powers>>,
    outgrown: RefCell<Vec<DevBuf>>,
    /// The tables the batch points the kernels at.
    _maps: DevBuf,
    kernels: Kernels,
    /// Keeps the kernels loaded while the handle lives.
    _module: Module,
    /// CTAs that fill the device once (SMs x resident CTAs of the heaviest sweep).
    persistent_ctas: u64,
    /// Prefetching managed memory needs concurrent managed access (not on every platform).
    prefetch: bool,
    pub ctx: Context,
}

// SAFETY: CUfunction and stream handles are plain driver handles, valid on any thread with the
// context current, which every entry point ensures; the cells are only touched under the
// handle's lock.
unsafe impl Send for Backend {}

/// One parameter's share of a CUDA step.
pub struct Job<'a> {
    pub state: &'a DeviceState,
    pub dtype: Dtype,
    pub param: *mut u8,
    pub grad: *const u8,
    /// Rule 2's constants (the fields that depend on the step number are made on the device).
    pub scalars: StepScalars,
    pub lr: f64,
    pub eps: f64,
    pub betas: (f64, f64),
    /// The number of this step call of the parameter (the device's slot parity).
    pub call: u64,
    /// The largest step number this call can take (the host's count, which skips only lower).
    pub max_t: u64,
    pub percentile: Option<i32>,
    pub max_unorm: f64,
    pub skip_zeros: bool,
    /// Rule 19, when it applies.
    pub rounding: Option<StochasticRounding>,
}

/// Rule 19's draws of one parameter: their Philox key, and the full tensor's index of the
/// parameter's element 0.
#[derive(Debug, Clone, Copy)]
pub struct StochasticRounding {
    pub key: [u32; 2],
    pub first: u64,
}

/// Loss scaling of one step (rule 18): device pointers, NULL when unused.
#[derive(Debug, Clone, Copy)]
pub struct StepDevicePtrs {
    pub grad_scale: *const f32,
    pub found_inf: *const f32,
}

/// `beta1^t`, `beta2^t` for `t = 0..len`, in device memory: the one operation of rule 2 that
/// the device does not compute itself, because its pow rounds otherwise than the host's.
struct Powers {
    betas: (u64, u64),
    buf: DevBuf,
    len: u64,
    /// [`crate::scalars::powers_saturate`] of the betas.
    saturated: u64,
}

/// The most entries a power table may have (2 GiB on the device): a table saturates after
/// about 54 ln 2 / (1 - beta2) steps, so this holds every step of beta2 up to 0.9999997, and
/// 2^27 steps of any betas.
const MAX_POWERS: u64 = 1 << 27;

impl Backend {
    pub fn new(device_index: i32) -> Result<Backend> {
        let ctx = Context::primary(device_index)?;
        // Current for the occupancy query; every other call below binds it itself.
        let _bound = ctx.bind()?;
        let module = Module::load(&ctx)?;
        let f = |name: &str| module.function(name);
        let sweep = |name: &str| -> Result<PerDtype> {
            Ok([
                f(&format!("{name}_f32"))?,
                f(&format!("{name}_f16"))?,
                f(&format!("{name}_bf16"))?,
            ])
        };
        let updates = |name: &str| -> Result<Updates> {
            Ok(Updates {
                nearest: sweep(name)?,
                stochastic: [
                    f(&format!("{name}_f32"))?,
                    f(&format!("{name}_f16_sr"))?,
                    f(&format!("{name}_bf16_sr"))?,
                ],
            })
        };
        let kernels = Kernels {
            grad_norm: sweep("a8_grad_norm")?,
            finalize_clip: f("a8_finalize_clip")?,
            blockwise: updates("a8_blockwise")?,
            dynamic_reduce: sweep("a8_dynamic_reduce")?,
            dynamic_update: updates("a8_dynamic_update")?,
            fp32_reduce: sweep("a8_fp32_reduce")?,
            fp32_update: updates("a8_fp32_update")?,
            finalize_update: f("a8_finalize_update")?,
        };
        let sms = ctx.attribute(Attr::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as u64;
        // SAFETY: a valid function handle and block size.
        let resident = unsafe {
            result::occupancy::max_active_block_per_multiprocessor(
                kernels.blockwise.nearest[abi::F32 as usize],
                THREADS as i32,
                0,
            )
        }
        .map_err(cu("cuOccupancyMaxActiveBlocksPerMultiprocessor"))?
        .max(1) as u64;
        let prefetch = ctx.attribute(Attr::CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS)? != 0;
        let maps = DevBuf::zeroed(&ctx, std::mem::size_of::<abi::Maps>(), false)?;
        let tables = Box::new(abi::Maps::new(&SIGNED, &UNSIGNED));
        maps.upload(crate::state::as_bytes(std::slice::from_ref(&*tables)))?;
        let backend = Backend {
            step_done: Event::new(&ctx)?,
            writes_done: Event::new(&ctx)?,
            last_stream: Cell::new(None),
            writes_pending: Cell::new(false),
            powers: RefCell::new(Vec::new()),
            outgrown: RefCell::new(Vec::new()),
            batch: RefCell::new(Box::new(abi::Batch {
                maps: maps.ptr,
                grad_scale: 0,
                found_inf: 0,
                count: 0,
                total_blocks: 0,
                total_chunks: 0,
                t: [abi::Tensor::default(); abi::MAX_TENSORS],
            })),
            _maps: maps,
            kernels,
            _module: module,
            persistent_ctas: sms * resident,
            prefetch,
            ctx,
        };
        backend.note_writes()?;
        Ok(backend)
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
        let state = DeviceState::new(&self.ctx, path, numel, clips, unorm, paged)?;
        self.note_writes()?;
        Ok(state)
    }

    /// After the library queued copies or memsets on the legacy stream (which return before
    /// the device has done them, and which a caller's non-blocking stream does not wait for):
    /// the next step waits for them.
    pub fn note_writes(&self) -> Result<()> {
        let _bound = self.ctx.bind()?;
        // SAFETY: the legacy stream.
        unsafe { self.writes_done.record(std::ptr::null_mut()) }?;
        self.writes_pending.set(true);
        Ok(())
    }

    /// Blocks until this handle's last step and its own queued writes are done (not the
    /// context's other work).
    pub fn wait_idle(&self) -> Result<()> {
        let _bound = self.ctx.bind()?;
        if self.last_stream.get().is_some() {
            self.step_done.synchronize()?;
        }
        if self.writes_pending.get() {
            self.writes_done.synchronize()?;
        }
        Ok(())
    }

    /// Enqueues one step of every job on `stream`; returns without waiting for the GPU.
    /// `jobs(path)` lists the step's jobs of one path (called once per path, and once more for
    /// the prefetch).
    ///
    /// # Safety
    /// Each job's `param` and `grad` must be device-accessible pointers of this context to
    /// `numel` elements of `dtype`, valid until the stream reaches the step.
    pub unsafe fn step<'a, I: Iterator<Item = Job<'a>>>(
        &self,
        jobs: impl Fn(Option<Path>) -> I,
        scaling: StepDevicePtrs,
        stream: *mut c_void,
    ) -> Result<()> {
        let _bound = self.ctx.bind()?;
        let stream = stream as sys::CUstream;
        if self.prefetch {
            self.prefetch_paged(jobs(None), stream)?;
        }
        if self.writes_pending.get() {
            self.writes_done.wait_on(stream)?;
        }
        if self.last_stream.get().is_some_and(|s| s != stream) {
            self.step_done.wait_on(stream)?;
        }
        // Up to the first launch nothing has changed; from it on, a failure leaves the step
        // partly applied and the handle's device state inconsistent.
        let launched = Cell::new(0usize);
        let enqueued = (|| {
            let dtypes = [Dtype::F32, Dtype::F16, Dtype::Bf16];
            for (path, dtype) in [Path::Blockwise8, Path::Dynamic8, Path::Fp32]
                .into_iter()
                .flat_map(|p| dtypes.map(|d| (p, d)))
            {
                let mut batch = self.batch.borrow_mut();
                batch.count = 0;
                batch.grad_scale = scaling.grad_scale as u64;
                batch.found_inf = scaling.found_inf as u64;
                for job in jobs(Some(path)).filter(|j| j.dtype == dtype) {
                    let slot = batch.count as usize;
                    batch.t[slot] = self.tensor(&job, stream)?;
                    batch.count += 1;
                    if batch.count as usize == abi::MAX_TENSORS {
                        self.launch_batch(path, &mut batch, stream, &launched)?;
                        batch.count = 0;
                    }
                }
                if batch.count > 0 {
                    self.launch_batch(path, &mut batch, stream, &launched)?;
                }
            }
            self.step_done.record(stream)
        })();
        match enqueued {
            Ok(()) => {
                self.writes_pending.set(false);
                self.last_stream.set(Some(stream));
                Ok(())
            }
            Err(Error::DeviceLost(m)) => Err(Error::DeviceLost(m)),
            Err(e) if launched.get() > 0 => Err(Error::DeviceLost(format!(
                "a step failed after {} of its launches were enqueued: {e}",
                launched.get()
            ))),
            Err(e) => Err(e),
        }
    }

    /// The kernels of one launch's tensors of `path` (all of one dtype), in order.
    unsafe fn launch_batch(
        &self,
        path: Path,
        b: &mut abi::Batch,
        stream: sys::CUstream,
        launched: &Cell<usize>,
    ) -> Result<()> {
        let (mut blocks, mut chunks) = (0, 0);
        for t in &mut b.t[..b.count as usize] {
            t.first_block = blocks;
            t.first_chunk = chunks;
            blocks += t.n.div_ceil(BLOCKSIZE);
            chunks += abi::chunks(t.n);
        }
        b.total_blocks = blocks;
        b.total_chunks = chunks;
        let sweep = blocks
            .div_ceil(WARPS_PER_CTA)
            .clamp(1, self.persistent_ctas) as u32;
        let finalize = chunks as u32;
        let go = |f: sys::CUfunction, ctas: u32| -> Result<()> {
            // The driver copies the parameter when the launch is enqueued, so `b` is reused.
            let mut params = [b as *const abi::Batch as *mut c_void];
            result::launch_kernel(f, (ctas, 1, 1), (THREADS, 1, 1), 0, stream, &mut params)
                .map_err(cu("cuLaunchKernel"))?;
            launched.set(launched.get() + 1);
            Ok(())
        };
        let k = &self.kernels;
        let (flags, d) = (b.t[0].flags, b.t[0].dtype as usize);
        let tensors = &b.t[..b.count as usize];
        let stochastic = tensors.iter().any(|t| t.flags & abi::STOCHASTIC != 0);
        if flags & abi::CLIP != 0 {
            go(k.grad_norm[d], sweep)?;
            go(k.finalize_clip, finalize)?;
        }
        match path {
            Path::Blockwise8 => go(k.blockwise.pick(stochastic, d), sweep),
            Path::Dynamic8 => {
                go(k.dynamic_reduce[d], sweep)?;
                go(k.finalize_update, finalize)?;
                go(k.dynamic_update.pick(stochastic, d), sweep)
            }
            Path::Fp32 => {
                if flags & abi::UNORM != 0 {
                    go(k.fp32_reduce[d], sweep)?;
                    go(k.finalize_update, finalize)?;
                }
                go(k.fp32_update.pick(stochastic, d), sweep)
            }
        }
    }

    /// The device address and last index of the power table of `betas`, grown (doubling, so
    /// rarely) to hold `max_t`, or up to where the powers stop mattering (the kernels clamp
    /// their step to the last index); the upload is queued on `stream`, before the launches
    /// that read it.
    unsafe fn powers(
        &self,
        betas: (f64, f64),
        max_t: u64,
        stream: sys::CUstream,
    ) -> Result<(u64, u32)> {
        let key = (betas.0.to_bits(), betas.1.to_bits());
        let mut tables = self.powers.borrow_mut();
        let at = tables.iter().position(|p| p.betas == key);
        let saturated = match at {
            Some(i) => tables[i].saturated,
            None => crate::scalars::powers_saturate(betas.0, betas.1),
        };
        let last = max_t.min(saturated);
        if let Some(p) = at.map(|i| &tables[i]).filter(|p| p.len > last) {
            return Ok((p.buf.ptr, (p.len - 1) as u32));
        }
        if last >= MAX_POWERS {
            return Err(Error::OutOfMemory(format!(
                "the table of beta1^t and beta2^t for betas {betas:?} would need {} entries \
                 to reach step {max_t} (at most {MAX_POWERS})",
                last + 1
            )));
        }
        let len = (last + 1)
            .max(1024)
            .next_power_of_two()
            .min(saturated + 1)
            .min(MAX_POWERS);
        let mut values = crate::error::try_vec(2 * len as usize, 0.0f64, "the power table")?;
        for (t, pair) in values.chunks_exact_mut(2).enumerate() {
            pair[0] = crate::scalars::power(betas.0, t as u64);
            pair[1] = crate::scalars::power(betas.1, t as u64);
        }
        let buf = DevBuf::uninit(&self.ctx, values.len() * 8)?;
        buf.upload_async(crate::state::as_bytes(&values), stream)?;
        let ptr = buf.ptr;
        let table = Powers {
            betas: key,
            buf,
            len,
            saturated,
        };
        match at {
            Some(i) => {
                let old = std::mem::replace(&mut tables[i], table);
                self.outgrown.borrow_mut().push(old.buf);
            }
            None => tables.push(table),
        }
        Ok((ptr, (len - 1) as u32))
    }

    unsafe fn tensor(&self, j: &Job<'_>, stream: sys::CUstream) -> Result<abi::Tensor> {
        let s = j.state;
        let (a1, a2) = s
            .absmax
            .as_ref()
            .map_or((0, 0), |(a1, a2)| (a1.ptr, a2.ptr));
        let unorm = j.max_unorm > 0.0 && s.path != Path::Blockwise8;
        // The quad accesses move 4 elements: 16 bytes of fp32, 8 of fp16/bf16.
        let vector =
            (j.param as usize | j.grad as usize).is_multiple_of(4 * j.dtype.size() as usize);
        let flags = [
            (j.percentile.is_some(), abi::CLIP),
            (unorm, abi::UNORM),
            (j.skip_zeros && s.path == Path::Fp32, abi::SKIP_ZEROS),
            (vector, abi::VECTOR),
            (s.path == Path::Dynamic8, abi::DYNAMIC),
            (j.rounding.is_some(), abi::STOCHASTIC),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .fold(0, |acc, (_, bit)| acc | bit);
        let (powers, powers_last) = self.powers(j.betas, j.max_t, stream)?;
        Ok(abi::Tensor {
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
            first_chunk: 0,
            k: j.scalars,
            dtype: match j.dtype {
                Dtype::F32 => abi::F32,
                Dtype::F16 => abi::F16,
                Dtype::Bf16 => abi::BF16,
            },
            flags,
            powers_last,
            call: j.call,
            lr: j.lr,
            eps: j.eps,
            powers,
            percentile: j.percentile.unwrap_or(100),
            max_unorm: j.max_unorm as f32,
            sr_key: j.rounding.map_or([0, 0], |r| r.key),
            sr_first: j.rounding.map_or(0, |r| r.first),
        })
    }

    unsafe fn prefetch_paged<'a>(
        &self,
        jobs: impl Iterator<Item = Job<'a>>,
        stream: sys::CUstream,
    ) -> Result<()> {
        let location = sys::CUmemLocation {
            type_: sys::CUmemLocationType::CU_MEM_LOCATION_TYPE_DEVICE,
            id: self.ctx.dev,
        };
        for j in jobs.filter(|j| j.state.paged) {
            for buf in [&j.state.s1, &j.state.s2] {
                result::mem_prefetch_async(buf.ptr, buf.bytes, location, stream)
                    .map_err(cu("cuMemPrefetchAsync"))?;
            }
        }
        Ok(())
    }
}
