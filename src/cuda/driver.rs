//! Thin, error-mapped access to the CUDA driver: the primary context, the embedded kernels, and
//! device allocations that free themselves. Every driver failure becomes a crate [`Error`]; no
//! call here panics or aborts (cudarc's safe `CudaContext::new` would panic without libcuda,
//! so this module checks `is_culib_present` and uses the `result` layer only).

use std::ffi::{c_void, CString};

use cudarc::driver::result::{self, DriverError};
use cudarc::driver::sys::{self, CUresult};

use crate::error::{Error, Result};

/// The fatbin build.rs compiled from `csrc/` (None in a build without nvcc).
#[cfg(adam8bit_cuda)]
static FATBIN: Option<&[u8]> = Some(include_bytes!(env!("ADAM8BIT_FATBIN")));
#[cfg(not(adam8bit_cuda))]
static FATBIN: Option<&[u8]> = None;

/// Whether this build embeds the kernels (it was built with nvcc).
pub fn kernels_embedded() -> bool {
    FATBIN.is_some()
}

/// Maps a driver error to the crate's: out of memory, no device, a sticky error that has
/// made the context unusable (so the device state is lost), or a plain CUDA error.
pub fn cu(what: &str) -> impl Fn(DriverError) -> Error + '_ {
    move |e: DriverError| {
        let text = format!("{what}: {e}");
        match e.0 {
            CUresult::CUDA_ERROR_OUT_OF_MEMORY => Error::OutOfMemory(text),
            CUresult::CUDA_ERROR_ILLEGAL_ADDRESS
            | CUresult::CUDA_ERROR_LAUNCH_TIMEOUT
            | CUresult::CUDA_ERROR_ASSERT
            | CUresult::CUDA_ERROR_HARDWARE_STACK_ERROR
            | CUresult::CUDA_ERROR_ILLEGAL_INSTRUCTION
            | CUresult::CUDA_ERROR_MISALIGNED_ADDRESS
            | CUresult::CUDA_ERROR_INVALID_ADDRESS_SPACE
            | CUresult::CUDA_ERROR_INVALID_PC
            | CUresult::CUDA_ERROR_LAUNCH_FAILED
            | CUresult::CUDA_ERROR_ECC_UNCORRECTABLE
            | CUresult::CUDA_ERROR_CONTEXT_IS_DESTROYED => {
                Error::DeviceLost(format!("{text} (the CUDA context is unusable from now on)"))
            }
            CUresult::CUDA_ERROR_NO_DEVICE
            | CUresult::CUDA_ERROR_INVALID_DEVICE
            | CUresult::CUDA_ERROR_NOT_INITIALIZED
            | CUresult::CUDA_ERROR_SYSTEM_DRIVER_MISMATCH => Error::NoDevice(text),
            _ => Error::Cuda(text),
        }
    }
}

/// A retained primary context (shared with LibTorch and anyone else on that device).
pub struct Context {
    pub ctx: sys::CUcontext,
    pub dev: sys::CUdevice,
}

// SAFETY: driver handles may be used from any thread; every entry point makes the context
// current on the calling thread first (`Context::bind`).
unsafe impl Send for Context {}

/// A context made current on the calling thread for a scope. Dropping it makes the thread's
/// previous context current again, so the caller's own (LibTorch's device, another GPU) is
/// never left changed by a library call.
#[must_use = "the context is current only while the guard lives"]
pub struct Bound {
    /// The context to make current again; None when it already was ours.
    restore: Option<sys::CUcontext>,
}

fn make_current(ctx: sys::CUcontext) -> Result<Bound> {
    let previous = result::ctx::get_current().map_err(cu("cuCtxGetCurrent"))?;
    if previous == Some(ctx) {
        return Ok(Bound { restore: None });
    }
    // SAFETY: ctx is a retained primary context.
    unsafe { result::ctx::set_current(ctx) }.map_err(cu("cuCtxSetCurrent"))?;
    Ok(Bound {
        restore: Some(previous.unwrap_or(std::ptr::null_mut())),
    })
}

impl Drop for Bound {
    fn drop(&mut self) {
        if let Some(previous) = self.restore {
            // SAFETY: the context that was current before (or NULL: none).
            let _ = unsafe { result::ctx::set_current(previous) };
        }
    }
}

impl Context {
    pub fn primary(device_index: i32) -> Result<Context> {
        if FATBIN.is_none() {
            return Err(Error::Unsupported(
                "this build of libadam8bit has no CUDA kernels: nvcc was not found when it was built \
                 (run scripts/install-nvcc.sh and rebuild); create the handle with BNB_DEVICE_CPU"
                    .into(),
            ));
        }
        // SAFETY: only probes whether the library can be loaded.
        if !unsafe { sys::is_culib_present() } {
            return Err(Error::NoDevice(
                "no CUDA driver: libcuda.so could not be loaded".into(),
            ));
        }
        result::init().map_err(cu("cuInit"))?;
        let count = result::device::get_count().map_err(cu("cuDeviceGetCount"))?;
        if device_index < 0 || device_index >= count {
            return Err(Error::NoDevice(format!(
                "no CUDA device {device_index}: this machine has {count}"
            )));
        }
        let dev = result::device::get(device_index).map_err(cu("cuDeviceGet"))?;
        // SAFETY: dev is a valid device; the retain is paired with the release in Drop.
        let ctx =
            unsafe { result::primary_ctx::retain(dev) }.map_err(cu("cuDevicePrimaryCtxRetain"))?;
        Ok(Context { ctx, dev })
    }

    /// Makes the context current on this thread until the guard drops.
    pub fn bind(&self) -> Result<Bound> {
        make_current(self.ctx)
    }

    pub fn attribute(&self, a: sys::CUdevice_attribute) -> Result<i32> {
        // SAFETY: dev is valid.
        unsafe { result::device::get_attribute(self.dev, a) }.map_err(cu("cuDeviceGetAttribute"))
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: pairs the retain in `primary`.
        let _ = unsafe { result::primary_ctx::release(self.dev) };
    }
}

/// The loaded kernels.
pub struct Module {
    module: sys::CUmodule,
    ctx: sys::CUcontext,
}

// SAFETY: as for Context.
unsafe impl Send for Module {}

impl Module {
    pub fn load(ctx: &Context) -> Result<Module> {
        let _bound = ctx.bind()?;
        let image =
            FATBIN.ok_or_else(|| Error::Unsupported("no CUDA kernels in this build".into()))?;
        // cuModuleLoadData wants an 8-byte aligned image; include_bytes! guarantees only 1.
        let mut aligned = vec![0u64; image.len().div_ceil(8)];
        crate::state::as_bytes_mut(&mut aligned)[..image.len()].copy_from_slice(image);
        // SAFETY: a complete fatbin image produced by nvcc.
        let module = unsafe { result::module::load_data(aligned.as_ptr().cast::<c_void>()) }
            .map_err(cu("loading the CUDA kernels (cuModuleLoadData)"))?;
        Ok(Module {
            module,
            ctx: ctx.ctx,
        })
    }

    pub fn function(&self, name: &str) -> Result<sys::CUfunction> {
        let c = CString::new(name).map_err(|_| Error::Panic(format!("kernel name {name}")))?;
        let _bound = make_current(self.ctx)?;
        // SAFETY: module is loaded; the name is NUL-terminated.
        unsafe { result::module::get_function(self.module, c) }.map_err(cu("cuModuleGetFunction"))
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        let _bound = make_current(self.ctx);
        // SAFETY: loaded in `load`, unloaded once, in its context.
        let _ = unsafe { result::module::unload(self.module) };
    }
}

/// Device memory (plain or managed) that frees itself.
pub struct DevBuf {
    pub ptr: sys::CUdeviceptr,
    pub bytes: usize,
    ctx: sys::CUcontext,
}

// SAFETY: a device address; freeing binds the owning context first.
unsafe impl Send for DevBuf {}

impl DevBuf {
    /// `bytes` of zeroed device memory; `managed` puts it in CUDA managed memory, after checking
    /// that the device has that much free (oversubscribing managed memory can hang the GPU).
    pub fn zeroed(ctx: &Context, bytes: usize, managed: bool) -> Result<DevBuf> {
        let _bound = ctx.bind()?;
        let bytes = bytes.max(1);
        // SAFETY: plain allocation calls on the current context.
        let ptr = unsafe {
            if managed {
                let (free, _) = result::mem_get_info().map_err(cu("cuMemGetInfo"))?;
                if bytes > free {
                    return Err(Error::OutOfMemory(format!(
                        "{bytes} bytes of managed memory requested, the device has {free} free"
                    )));
                }
                result::malloc_managed(bytes, sys::CUmemAttach_flags::CU_MEM_ATTACH_GLOBAL)
                    .map_err(cu("cuMemAllocManaged"))?
            } else {
                result::malloc_sync(bytes).map_err(cu("cuMemAlloc"))?
            }
        };
        let buf = DevBuf {
            ptr,
            bytes,
            ctx: ctx.ctx,
        };
        // SAFETY: buf covers `bytes` bytes.
        unsafe { result::memset_d8_sync(ptr, 0, bytes) }.map_err(cu("cuMemsetD8"))?;
        Ok(buf)
    }

    /// `bytes` of device memory, not initialised (the caller writes all of it).
    pub fn uninit(ctx: &Context, bytes: usize) -> Result<DevBuf> {
        let _bound = ctx.bind()?;
        let bytes = bytes.max(1);
        // SAFETY: a plain allocation on the current context.
        let ptr = unsafe { result::malloc_sync(bytes) }.map_err(cu("cuMemAlloc"))?;
        Ok(DevBuf {
            ptr,
            bytes,
            ctx: ctx.ctx,
        })
    }

    /// Queues a copy of `src` (from pageable memory, which the driver stages before it
    /// returns: no host synchronisation) to the start of the buffer on `stream`.
    ///
    /// # Safety
    /// `stream` must be NULL or a live stream of the buffer's context, which is current.
    pub unsafe fn upload_async(&self, src: &[u8], stream: sys::CUstream) -> Result<()> {
        if src.len() > self.bytes {
            return Err(Error::Panic("upload larger than its device buffer".into()));
        }
        result::memcpy_htod_async(self.ptr, src, stream).map_err(cu("cuMemcpyHtoDAsync"))
    }

    /// Copies `src` to the start of the buffer (synchronously).
    pub fn upload(&self, src: &[u8]) -> Result<()> {
        self.copy_in(src, |e| e)
    }

    /// As [`DevBuf::upload`], into a buffer whose contents matter: a copy that fails may have
    /// written part of `src`, which loses the device state ([`partly_written`]).
    pub fn overwrite(&self, src: &[u8]) -> Result<()> {
        self.copy_in(src, partly_written)
    }

    fn copy_in(&self, src: &[u8], failed_copy: fn(Error) -> Error) -> Result<()> {
        if src.len() > self.bytes {
            return Err(Error::Panic("upload larger than its device buffer".into()));
        }
        let _bound = make_current(self.ctx)?;
        // SAFETY: the destination holds at least src.len() bytes.
        unsafe { result::memcpy_htod_sync(self.ptr, src) }
            .map_err(cu("cuMemcpyHtoD"))
            .map_err(failed_copy)
    }

    /// Copies the start of the buffer into `dst` (synchronously).
    pub fn download(&self, dst: &mut [u8]) -> Result<()> {
        if dst.len() > self.bytes {
            return Err(Error::Panic(
                "download larger than its device buffer".into(),
            ));
        }
        let _bound = make_current(self.ctx)?;
        // SAFETY: the source holds at least dst.len() bytes.
        unsafe { result::memcpy_dtoh_sync(dst, self.ptr) }.map_err(cu("cuMemcpyDtoH"))
    }
}

impl Drop for DevBuf {
    fn drop(&mut self) {
        let _bound = make_current(self.ctx);
        // SAFETY: allocated in `zeroed`, freed once, with its context current.
        let _ = unsafe { result::free_sync(self.ptr) };
    }
}

/// A CUDA event of the handle's context (no timing), destroyed on drop. The caller has the
/// context current for every call.
pub struct Event {
    ev: sys::CUevent,
    ctx: sys::CUcontext,
}

// SAFETY: as for Context.
unsafe impl Send for Event {}

impl Event {
    pub fn new(ctx: &Context) -> Result<Event> {
        let _bound = ctx.bind()?;
        let ev = result::event::create(sys::CUevent_flags::CU_EVENT_DISABLE_TIMING)
            .map_err(cu("cuEventCreate"))?;
        Ok(Event { ev, ctx: ctx.ctx })
    }

    /// Marks the point `stream` has reached.
    ///
    /// # Safety
    /// `stream` must be NULL (the legacy stream) or a live stream of the event's context.
    pub unsafe fn record(&self, stream: sys::CUstream) -> Result<()> {
        result::event::record(self.ev, stream).map_err(cu("cuEventRecord"))
    }

    /// Blocks the host until the recorded point is reached.
    pub fn synchronize(&self) -> Result<()> {
        // SAFETY: a live event.
        unsafe { result::event::synchronize(self.ev) }.map_err(cu("cuEventSynchronize"))
    }

    /// Makes later work on `stream` wait for the recorded point (no host wait).
    ///
    /// # Safety
    /// As for [`Event::record`].
    pub unsafe fn wait_on(&self, stream: sys::CUstream) -> Result<()> {
        result::stream::wait_event(
            stream,
            self.ev,
            sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT,
        )
        .map_err(cu("cuStreamWaitEvent"))
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        let _bound = make_current(self.ctx);
        // SAFETY: created in `new`, destroyed once.
        let _ = unsafe { result::event::destroy(self.ev) };
    }
}

/// A copy to the device (or the record that orders it before the next step) that failed may
/// have left part of its bytes written, so the array no longer holds a value anyone knows.
pub fn partly_written(e: Error) -> Error {
    match e {
        Error::DeviceLost(_) => e,
        other => Error::DeviceLost(format!("a copy to the device failed part way: {other}")),
    }
}
