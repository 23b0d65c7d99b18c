//! The optimizer: the parameter registry, per-parameter path choice, step counters, learning
//! rates and groups, argument checks of a step, and dispatch to a backend.
//!
//! Every public method checks everything before it changes anything, so a rejected call leaves
//! the optimizer exactly as it was (rule 13).

use std::collections::{BTreeMap, HashMap};

use crate::config::{check_lr, Config, Hyper, ParamOverrides, Path, Shard, BLOCKSIZE};
use crate::cpu;
use crate::cuda;
use crate::cuda::driver::partly_written;
use crate::dtype::Dtype;
use crate::error::{invalid, Error, Result};
use crate::rounding::{default_key, stream_key, Rounding, Stream};
use crate::scalars::StepScalars;
use crate::state::{layout, negative_magnitude, state_bytes, HostState, StateKind};

/// Where a handle's state lives and its steps run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda,
}

/// One registered parameter.
#[derive(Debug)]
pub struct Param {
    pub numel: u64,
    pub dtype: Dtype,
    pub path: Path,
    pub hyper: Hyper,
    pub overrides: ParamOverrides,
    /// The parameter's key in rule 19's draws: the override, or `rounding::default_key`.
    pub rounding_key: u64,
    /// Steps taken (CPU), or the most a CUDA parameter can have taken: on a CUDA handle the
    /// count lives on the device, where a skipped call (rule 18) does not advance it.
    pub step: u64,
    /// Step calls enqueued for this parameter (CUDA: the device's slot parity).
    pub calls: u64,
    /// Non-finite gradient elements seen by the last step.
    pub nonfinite: u64,
    /// Percentile clipping's gradient scale in the last step (1 without clipping).
    pub gnorm_scale: f32,
    pub state: Storage,
}

/// Where a parameter's state lives: host memory (CPU handles) or device memory (CUDA handles).
pub enum Storage {
    Host(HostState),
    Device(cuda::DeviceState),
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Storage::Host(h) => h.fmt(f),
            Storage::Device(d) => write!(f, "DeviceState({:?}, {} elements)", d.path, d.numel),
        }
    }
}

/// What `param_info` reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamInfo {
    pub numel: u64,
    pub dtype: Dtype,
    pub path: Path,
    pub step: u64,
    pub blocks: u64,
    pub paged: bool,
    pub state_bytes: u64,
    pub nonfinite: u64,
    pub group: u32,
    pub lr: f64,
    pub gnorm_scale: f32,
    /// Whether the parameter's updates round stochastically (rule 19), and with which key.
    pub stochastic_rounding: bool,
    pub rounding_key: u64,
}

/// One entry of a step: a registered parameter, its data and its gradient (both `numel`
/// elements of the parameter's dtype). `repr(C)` with the layout of the ABI's
/// `bnb_step_item_t`, so that the ABI layer can pass a caller's array without copying it.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct StepItem {
    pub id: u32,
    pub param: *mut u8,
    pub grad: *const u8,
}

/// Loss scaling of one step (rule 18): host pointers on a CPU handle, device pointers on a
/// CUDA handle; NULL when unused.
#[derive(Debug, Clone, Copy)]
pub struct StepOptions {
    pub grad_scale: *const f32,
    pub found_inf: *const f32,
}

impl Default for StepOptions {
    fn default() -> Self {
        StepOptions {
            grad_scale: std::ptr::null(),
            found_inf: std::ptr::null(),
        }
    }
}

pub struct Optimizer {
    cfg: Config,
    device: Device,
    params: Vec<Param>,
    /// Learning rate per parameter group; a group exists once a parameter names it.
    group_lr: BTreeMap<u32, f64>,
    /// Parameters registered so far per full tensor size (the default rounding keys' ordinals).
    same_size: HashMap<u64, u32>,
    /// The device of a CUDA handle. Declared after `params` so that their device state is freed
    /// before the context is released.
    cuda: Option<cuda::Backend>,
    /// Buffers a step reuses, so that repeated steps allocate nothing.
    scratch: StepScratch,
    /// Why this CUDA handle's device state can no longer be trusted, once it cannot: from then
    /// on every call that touches the device fails with this message (docs/cuda.md, "Faults").
    device_lost: std::cell::OnceCell<String>,
}

impl Drop for Optimizer {
    fn drop(&mut self) {
        // A step enqueued on the caller's stream may still be reading the state and kernels
        // that are about to be freed.
        let _ = self.sync_device();
    }
}

#[derive(Default)]
struct StepScratch {
    cpu: cpu::Scratch,
    /// `check_items`: which ids an item list names, and its buffers' address ranges.
    seen: Vec<bool>,
    ranges: Vec<(usize, usize, &'static str, u32)>,
}

impl Optimizer {
    pub fn new(cfg: Config, device: Device, device_index: i32) -> Result<Optimizer> {
        cfg.validate()?;
        let cuda = match device {
            Device::Cpu if device_index != 0 && device_index != -1 => {
                invalid!("device_index must be 0 or -1 for the CPU (got {device_index})")
            }
            Device::Cpu => None,
            Device::Cuda if device_index < 0 => {
                invalid!("device_index must be 0 or more for CUDA (got {device_index})")
            }
            Device::Cuda => Some(cuda::Backend::new(device_index)?),
        };
        Ok(Optimizer {
            cfg,
            device,
            params: Vec::new(),
            group_lr: BTreeMap::new(),
            same_size: HashMap::new(),
            cuda,
            scratch: StepScratch::default(),
            device_lost: std::cell::OnceCell::new(),
        })
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn params(&self) -> &[Param] {
        &self.params
    }

    /// Registers a parameter and allocates its state now, so memory use is visible and an
    /// allocation failure is reported here rather than at the first step.
    pub fn add_param(&mut self, numel: u64, dtype: Dtype, ov: ParamOverrides) -> Result<u32> {
        if numel == 0 {
            invalid!("numel must be at least 1");
        }
        let id = u32::try_from(self.params.len())
            .ok()
            .filter(|&id| id != u32::MAX)
            .ok_or_else(|| Error::InvalidArgument("too many parameters".into()))?;
        let bytes = numel
            .checked_mul(dtype.size())
            .filter(|&b| b <= isize::MAX as u64);
        if bytes.is_none() {
            invalid!(
                "numel {numel} of {} exceeds the address space",
                dtype.name()
            );
        }
        let hyper = ov.resolve(&self.cfg)?;
        let path = ov.path(&self.cfg, numel)?;
        if let Some(shard) = ov.shard {
            self.check_shard(shard, numel, path)?;
        }
        // The registry's slots first, so that nothing can fail once the state exists.
        self.params
            .try_reserve(1)
            .map_err(|_| Error::OutOfMemory("cannot grow the parameter registry".into()))?;
        self.same_size
            .try_reserve(1)
            .map_err(|_| Error::OutOfMemory("cannot grow the parameter registry".into()))?;
        let full_numel = ov.full_numel(numel);
        let ordinal = self.same_size.get(&full_numel).copied().unwrap_or(0);
        let (clips, unorm) = (self.cfg.clips_percentile(), self.cfg.max_unorm > 0.0);
        let state = match &self.cuda {
            None => Storage::Host(HostState::new(path, numel, clips, unorm)?),
            Some(c) => {
                self.device_usable()?;
                let alloc = c.alloc(path, numel, clips, unorm, self.cfg.is_paged);
                Storage::Device(self.on_device(alloc)?)
            }
        };
        let lr = self.group_lr.get(&ov.group).copied().unwrap_or(self.cfg.lr);
        self.group_lr.insert(ov.group, lr);
        self.same_size.insert(full_numel, ordinal + 1);
        self.params.push(Param {
            numel,
            dtype,
            path,
            hyper,
            overrides: ov,
            rounding_key: ov
                .rounding_key
                .unwrap_or_else(|| default_key(full_numel, ordinal)),
            step: 0,
            calls: 0,
            nonfinite: 0,
            gnorm_scale: 1.0,
            state,
        });
        Ok(id)
    }

    /// A shard steps exactly like the same slice of the full tensor only where every output
    /// depends on its own 256-element blocks alone.
    pub(crate) fn check_shard(&self, s: Shard, numel: u64, path: Path) -> Result<()> {
        s.check_slice(numel).map_err(Error::InvalidArgument)?;
        if path == Path::Dynamic8 {
            return Err(Error::Unsupported(
                "a shard cannot use the non-blockwise path: its scale is a max over the whole tensor".into(),
            ));
        }
        if self.cfg.clips_percentile() {
            return Err(Error::Unsupported(
                "a shard cannot use percentile clipping: its norm is taken over the whole tensor"
                    .into(),
            ));
        }
        if path == Path::Fp32 && self.cfg.max_unorm > 0.0 {
            return Err(Error::Unsupported(
                "a shard cannot use max_unorm on the 32-bit path: its norms span the whole tensor"
                    .into(),
            ));
        }
        Ok(())
    }

    fn param(&self, id: u32) -> Result<&Param> {
        self.params
            .get(id as usize)
            .ok_or_else(|| unknown(id, self.params.len()))
    }

    fn param_mut(&mut self, id: u32) -> Result<&mut Param> {
        let n = self.params.len();
        self.params
            .get_mut(id as usize)
            .ok_or_else(|| unknown(id, n))
    }

    /// Sets the learning rate of every group (what a scheduler with one group calls).
    pub fn set_lr(&mut self, lr: f64) -> Result<()> {
        check_lr(lr)?;
        self.cfg.lr = lr;
        self.group_lr.values_mut().for_each(|g| *g = lr);
        Ok(())
    }

    /// Sets the learning rate of one group.
    pub fn set_group_lr(&mut self, group: u32, lr: f64) -> Result<()> {
        check_lr(lr)?;
        match self.group_lr.get_mut(&group) {
            Some(g) => *g = lr,
            None => invalid!("no parameter belongs to group {group}"),
        }
        Ok(())
    }

    /// The learning rate a parameter steps with: its group's, times its `lr_scale`.
    pub fn param_lr(&self, p: &Param) -> f64 {
        let group = self
            .group_lr
            .get(&p.overrides.group)
            .copied()
            .unwrap_or(self.cfg.lr);
        group * p.overrides.lr_scale.unwrap_or(1.0)
    }

    /// What the handle knows about a parameter. On a CUDA handle this waits for the device
    /// (the last step's counts live there).
    pub fn info(&self, id: u32) -> Result<ParamInfo> {
        let p = self.param(id)?;
        let (nonfinite, gnorm_scale, paged) = match (&p.state, &self.cuda) {
            (Storage::Device(d), Some(c)) => {
                self.device_usable()?;
                let aux = self.on_device(c.wait_idle().and_then(|()| d.read_aux()))?;
                (aux.after(p.calls).1, aux.gnorm_scale, d.paged)
            }
            _ => (p.nonfinite, p.gnorm_scale, false),
        };
        Ok(ParamInfo {
            numel: p.numel,
            dtype: p.dtype,
            path: p.path,
            step: self.step_count(id)?,
            blocks: if p.path == Path::Blockwise8 {
                p.numel.div_ceil(BLOCKSIZE)
            } else {
                0
            },
            paged,
            state_bytes: state_bytes(
                p.path,
                p.numel,
                self.cfg.clips_percentile(),
                self.cfg.max_unorm > 0.0,
            ),
            nonfinite,
            group: p.overrides.group,
            lr: self.param_lr(p),
            gnorm_scale,
            stochastic_rounding: p.overrides.stochastic_seed(&self.cfg, p.dtype).is_some(),
            rounding_key: p.rounding_key,
        })
    }

    /// How step `t` of parameter `p` rounds its updated elements (rule 14 or 19).
    pub fn rounding(&self, p: &Param, t: u64) -> Rounding {
        match p.overrides.stochastic_seed(&self.cfg, p.dtype) {
            Some(seed) => Rounding::Stochastic(Stream::new(seed, p.rounding_key, t, first(p))),
            None => Rounding::Nearest,
        }
    }

    /// Rule 19 as the CUDA kernels take it: the draws' Philox key and the full tensor's index
    /// of element 0 (the step number is the device's).
    fn device_rounding(&self, p: &Param) -> Option<cuda::StochasticRounding> {
        let seed = p.overrides.stochastic_seed(&self.cfg, p.dtype)?;
        Some(cuda::StochasticRounding {
            key: stream_key(seed, p.rounding_key),
            first: first(p),
        })
    }

    /// Exact byte count of state array `kind` of parameter `id`.
    pub fn state_size(&self, id: u32, kind: StateKind) -> Result<u64> {
        let p = self.param(id)?;
        match layout(
            p.path,
            p.numel,
            kind,
            self.cfg.clips_percentile(),
            self.cfg.max_unorm > 0.0,
        ) {
            Some((size, count)) => Ok(size * count),
            None => invalid!(
                "parameter {id} ({:?} path) keeps no {}",
                p.path,
                kind.name()
            ),
        }
    }

    pub fn read_state(&self, id: u32, kind: StateKind, dst: &mut [u8]) -> Result<()> {
        self.check_state_len(id, kind, dst.len())?;
        match &self.param(id)?.state {
            Storage::Host(h) => h.read(kind, dst),
            Storage::Device(d) => {
                self.device_usable()?;
                self.on_device(self.sync_device().and_then(|()| d.read(kind, dst)))
            }
        }
    }

    /// State array `kind` of parameter `id` in place, when it lives in host memory (CPU
    /// handles); `None` for device state, which only [`Self::read_state`] can copy out.
    pub fn host_state(&self, id: u32, kind: StateKind) -> Result<Option<&[u8]>> {
        self.state_size(id, kind)?;
        match &self.param(id)?.state {
            Storage::Host(h) => h.bytes(kind).map(Some),
            Storage::Device(_) => Ok(None),
        }
    }

    pub fn write_state(&mut self, id: u32, kind: StateKind, src: &[u8]) -> Result<()> {
        self.check_state_len(id, kind, src.len())?;
        if let Some((i, x)) = negative_magnitude(kind, src) {
            invalid!(
                "{}[{i}] of parameter {id} is {x}: it holds magnitudes, which are never negative",
                kind.name()
            );
        }
        if self.cuda.is_none() {
            return match &mut self.param_mut(id)?.state {
                Storage::Host(h) => h.write(kind, src),
                Storage::Device(_) => Err(Error::Panic("a CPU handle holds device state".into())),
            };
        }
        self.device_usable()?;
        let Some(backend) = &self.cuda else {
            return Err(Error::Panic("a CUDA handle without its device".into()));
        };
        let written = backend
            .wait_idle()
            .and_then(|()| match &self.params[id as usize].state {
                Storage::Device(d) => d.write(kind, src),
                Storage::Host(_) => Err(Error::Panic("a CUDA handle holds host state".into())),
            });
        // The copy from pageable host memory may still be in flight; the next step waits for it,
        // unless that wait could not be recorded.
        let done = written.and_then(|()| backend.note_writes().map_err(partly_written));
        self.on_device(done)
    }

    /// Waits for this CUDA handle's queued work (state copies must not race a queued step).
    fn sync_device(&self) -> Result<()> {
        self.cuda.as_ref().map_or(Ok(()), |c| c.wait_idle())
    }

    /// Refuses device work once the device state is lost.
    fn device_usable(&self) -> Result<()> {
        match self.device_lost.get() {
            Some(why) => Err(Error::Cuda(why.clone())),
            None => Ok(()),
        }
    }

    /// Passes `r` on, recording a failure that lost the device state (a sticky context
    /// error, a step failed half way) so that later calls refuse instead of using it.
    fn on_device<T>(&self, r: Result<T>) -> Result<T> {
        match r {
            Err(Error::DeviceLost(m)) => Err(self.lose(m)),
            r => r,
        }
    }

    /// Records that the device state is lost, because of `m`.
    fn lose(&self, m: String) -> Error {
        let why = format!(
            "{m}; this CUDA handle's device state is lost: destroy the handle and load a \
             checkpoint into a new one"
        );
        let _ = self.device_lost.set(why.clone());
        Error::Cuda(why)
    }

    /// A change made of several device writes (a checkpoint's arrays) failed with `e` after
    /// some of them: the device state is part old, part new, so on a CUDA handle it is lost.
    pub(crate) fn partly_applied(&self, e: Error) -> Error {
        match (&self.cuda, e) {
            (Some(_), Error::Cuda(m) | Error::OutOfMemory(m) | Error::NoDevice(m))
                if self.device_lost.get().is_none() =>
            {
                self.lose(format!("a checkpoint was partly loaded: {m}"))
            }
            (_, e) => e,
        }
    }

    fn check_state_len(&self, id: u32, kind: StateKind, len: usize) -> Result<()> {
        let want = self.state_size(id, kind)?;
        if want != len as u64 {
            invalid!(
                "{} of parameter {id} is {want} bytes, the buffer holds {len}",
                kind.name()
            );
        }
        Ok(())
    }

    pub fn set_step(&mut self, id: u32, step: u64) -> Result<()> {
        if step == u64::MAX {
            invalid!("step must be below 2^64 - 1 so that the next step can count");
        }
        self.restore_step(id, step)
    }

    /// A checkpoint's step counter, which may be 2^64 - 1: a parameter that stepped that far
    /// (and refuses to step again) saves and loads as it is.
    pub(crate) fn restore_step(&mut self, id: u32, step: u64) -> Result<()> {
        let calls = self.param(id)?.calls;
        if let (Some(backend), Storage::Device(d)) = (&self.cuda, &self.params[id as usize].state) {
            self.device_usable()?;
            let written = backend
                .wait_idle()
                .and_then(|()| d.set_step(calls, step))
                .and_then(|()| backend.note_writes().map_err(partly_written));
            self.on_device(written)?;
        }
        self.params[id as usize].step = step;
        Ok(())
    }

    /// The steps parameter `id` has taken. On a CUDA handle this waits for its queued steps
    /// (the count lives on the device).
    pub fn step_count(&self, id: u32) -> Result<u64> {
        let p = self.param(id)?;
        match (&p.state, &self.cuda) {
            (Storage::Device(d), Some(c)) => {
                self.device_usable()?;
                let aux = self.on_device(c.wait_idle().and_then(|()| d.read_aux()))?;
                Ok(aux.after(p.calls).0)
            }
            _ => Ok(p.step),
        }
    }

    /// One optimizer step for every item: all checked first, then one sweep.
    pub fn step(&mut self, items: &[StepItem], stream: *mut std::ffi::c_void) -> Result<()> {
        self.step_with_options(items, stream, StepOptions::default())
    }

    /// [`Self::step`] with loss scaling (rule 18).
    pub fn step_with_options(
        &mut self,
        items: &[StepItem],
        stream: *mut std::ffi::c_void,
        options: StepOptions,
    ) -> Result<()> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.step_with(items, stream, options, &mut scratch);
        scratch.cpu.jobs.clear();
        self.scratch = scratch;
        result
    }

    fn step_with(
        &mut self,
        items: &[StepItem],
        stream: *mut std::ffi::c_void,
        options: StepOptions,
        scratch: &mut StepScratch,
    ) -> Result<()> {
        self.check_items(items, scratch)?;
        if self.cuda.is_some() {
            return self.step_cuda(items, stream, options);
        }
        // SAFETY: the caller's contract: NULL or one readable float each.
        let (grad_scale, found_inf) =
            unsafe { (options.grad_scale.as_ref(), options.found_inf.as_ref()) };
        let grad_scale = grad_scale.copied().unwrap_or(1.0);
        let skip =
            found_inf.is_some_and(|&f| f != 0.0) || !(grad_scale > 0.0 && grad_scale.is_finite());
        if skip {
            return Ok(());
        }
        let cfg = self.cfg;
        let jobs = &mut scratch.cpu.jobs;
        jobs.clear();
        for it in items {
            let p = &self.params[it.id as usize];
            let t = p.step + 1;
            let scalars = StepScalars {
                grad_scale,
                ..StepScalars::new(self.param_lr(p), &p.hyper, t)
            };
            let (dtype, numel) = (p.dtype, p.numel as usize);
            let rounding = self.rounding(p, t);
            let Storage::Host(state) = &mut self.params[it.id as usize].state else {
                return Err(Error::Panic("a CPU handle holds device state".into()));
            };
            jobs.push(cpu::Job {
                dtype,
                numel,
                param: it.param,
                grad: it.grad,
                state,
                scalars,
                t,
                rounding,
                percentile: cfg.clips_percentile().then_some(cfg.percentile_clipping),
                max_unorm: cfg.max_unorm,
                skip_zeros: cfg.skip_zeros,
            });
        }
        // SAFETY: check_items verified non-null, aligned, non-overlapping buffers and distinct
        // ids (so distinct states, which `self` holds mutably for the call); that the buffers
        // hold numel elements is the caller's contract (documented in the header).
        let outcomes = unsafe { cpu::step(&mut scratch.cpu)? };
        for (it, o) in items.iter().zip(outcomes) {
            let p = &mut self.params[it.id as usize];
            p.step += 1;
            p.nonfinite = o.nonfinite;
            p.gnorm_scale = o.gnorm_scale;
        }
        Ok(())
    }

    /// The CUDA step: enqueued on `stream`; the non-finite counts and clipping scales stay on
    /// the device until `info` reads them.
    fn step_cuda(
        &mut self,
        items: &[StepItem],
        stream: *mut std::ffi::c_void,
        options: StepOptions,
    ) -> Result<()> {
        let Some(backend) = &self.cuda else {
            return Err(Error::Panic("step_cuda on a CPU handle".into()));
        };
        let cfg = self.cfg;
        let this = &*self;
        // The jobs of one path (None: all), built as the backend walks them: nothing to allocate.
        let jobs = |path: Option<Path>| {
            items.iter().filter_map(move |it| {
                let p = &this.params[it.id as usize];
                let Storage::Device(state) = &p.state else {
                    return None;
                };
                if path.is_some_and(|path| path != p.path) {
                    return None;
                }
                let lr = this.param_lr(p);
                Some(cuda::Job {
                    state,
                    dtype: p.dtype,
                    param: it.param,
                    grad: it.grad,
                    scalars: StepScalars::new(lr, &p.hyper, 1),
                    lr,
                    eps: p.hyper.eps,
                    betas: (p.hyper.beta1, p.hyper.beta2),
                    call: p.calls + 1,
                    max_t: p.step + 1,
                    percentile: cfg.clips_percentile().then_some(cfg.percentile_clipping),
                    max_unorm: cfg.max_unorm,
                    skip_zeros: cfg.skip_zeros,
                    rounding: this.device_rounding(p),
                })
            })
        };
        self.device_usable()?;
        // SAFETY: check_items verified non-null, aligned, non-overlapping buffers; that they are
        // device-accessible and hold numel elements is the caller's contract (see the header).
        let scaling = cuda::StepDevicePtrs {
            grad_scale: options.grad_scale,
            found_inf: options.found_inf,
        };
        self.on_device(unsafe { backend.step(jobs, scaling, stream) })?;
        for it in items {
            let p = &mut self.params[it.id as usize];
            p.step += 1;
            p.calls += 1;
        }
        Ok(())
    }

    fn check_items(&self, items: &[StepItem], scratch: &mut StepScratch) -> Result<()> {
        let StepScratch { seen, ranges, .. } = scratch;
        seen.clear();
        seen.resize(self.params.len(), false);
        ranges.clear();
        for (i, it) in items.iter().enumerate() {
            let p = self.param(it.id)?;
            if std::mem::replace(&mut seen[it.id as usize], true) {
                invalid!("item {i}: parameter {} appears twice in one step", it.id);
            }
            if p.step == u64::MAX {
                invalid!(
                    "item {i}: parameter {} has reached the largest step count",
                    it.id
                );
            }
            let align = p.dtype.size() as usize;
            let bytes = (p.numel * p.dtype.size()) as usize;
            for (ptr, what) in [(it.param as usize, "param"), (it.grad as usize, "grad")] {
                if ptr == 0 {
                    invalid!("item {i}: {what} pointer of parameter {} is NULL", it.id);
                }
                if ptr % align != 0 {
                    invalid!(
                        "item {i}: {what} pointer of parameter {} is not aligned to {align} bytes",
                        it.id
                    );
                }
                if ptr.checked_add(bytes).is_none() {
                    invalid!(
                        "item {i}: {what} buffer of parameter {} wraps the address space",
                        it.id
                    );
                }
                ranges.push((ptr, ptr + bytes, what, it.id));
            }
        }
        // The items are read again after the sweep; a parameter must not overwrite them.
        let (list, list_end) = (items.as_ptr() as usize, items.as_ptr_range().end as usize);
        if let Some(r) = ranges
            .iter()
            .find(|r| r.2 == "param" && r.0 < list_end && list < r.1)
        {
            invalid!(
                "the items array lies inside the param buffer of parameter {}",
                r.3
            );
        }
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            if w[1].0 < w[0].1 {
                invalid!(
                    "the {} buffer of parameter {} overlaps the {} buffer of parameter {}",
                    w[0].2,
                    w[0].3,
                    w[1].2,
                    w[1].3
                );
            }
        }
        Ok(())
    }
}

/// What checkpoints need beyond the per-parameter accessors.
impl Optimizer {
    /// Every group's learning rate, by group.
    pub fn group_lrs(&self) -> impl Iterator<Item = (u32, f64)> + '_ {
        self.group_lr.iter().map(|(&g, &lr)| (g, lr))
    }
}

/// The full tensor's index of a parameter's element 0.
fn first(p: &Param) -> u64 {
    p.overrides.shard.map_or(0, |s| s.offset)
}

fn unknown(id: u32, count: usize) -> Error {
    Error::InvalidArgument(format!(
        "unknown parameter id {id} (this handle has {count} parameters)"
    ))
}

#[cfg(feature = "test-hooks")]
impl Optimizer {
    /// See [`crate::test_hooks::panic_in_next_update`].
    pub(crate) fn arm_update_panic(&mut self) {
        self.scratch.cpu.panic_in_update = true;
    }
}
