//! Device memory and the current context for tests of CUDA handles (on the emulated device).

use std::ffi::c_void;

use adam8bit::ffi::handle::*;
use adam8bit::ffi::params::*;
use adam8bit::ffi::types::*;
use cudarc::driver::{result, sys};

use super::{ok, Handle};

/// Makes device 0's primary context current on this thread (retained once per process), as a
/// program that also uses the device itself would have it.
pub fn context() -> sys::CUcontext {
    static CTX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let ctx = *CTX.get_or_init(|| {
        result::init().expect("cuInit");
        let dev = result::device::get(0).expect("cuDeviceGet");
        unsafe { result::primary_ctx::retain(dev) }.expect("cuDevicePrimaryCtxRetain") as usize
    }) as sys::CUcontext;
    unsafe { result::ctx::set_current(ctx) }.expect("cuCtxSetCurrent");
    ctx
}

/// Device memory of the test (freed on drop); `ptr` may start `misalign` bytes into the
/// allocation, to take the kernels' unaligned path.
pub struct DevBuf {
    base: sys::CUdeviceptr,
    pub ptr: sys::CUdeviceptr,
    pub len: usize,
}

impl DevBuf {
    pub fn new(len: usize, misalign: usize) -> DevBuf {
        context();
        let base = unsafe { result::malloc_sync((len + misalign).max(1)) }.expect("cuMemAlloc");
        DevBuf {
            base,
            ptr: base + misalign as u64,
            len,
        }
    }

    pub fn from(bytes: &[u8], misalign: usize) -> DevBuf {
        let b = DevBuf::new(bytes.len(), misalign);
        b.write(bytes);
        b
    }

    /// Copies `bytes` in; complete (for every stream) when this returns.
    pub fn write(&self, bytes: &[u8]) {
        assert_eq!(bytes.len(), self.len);
        if bytes.is_empty() {
            return;
        }
        context();
        unsafe { result::memcpy_htod_sync(self.ptr, bytes) }.expect("cuMemcpyHtoD");
        // A copy from pageable memory may still be in flight when the call returns, and a
        // non-blocking stream does not wait for it.
        result::ctx::synchronize().expect("cuCtxSynchronize");
    }

    pub fn read(&self) -> Vec<u8> {
        let mut v = vec![0u8; self.len];
        if !v.is_empty() {
            context();
            unsafe { result::memcpy_dtoh_sync(&mut v, self.ptr) }.expect("cuMemcpyDtoH");
        }
        v
    }

    pub fn as_mut_ptr(&self) -> *mut c_void {
        self.ptr as *mut c_void
    }
}

impl Drop for DevBuf {
    fn drop(&mut self) {
        context();
        let _ = unsafe { result::free_sync(self.base) };
    }
}

/// A stream created with CU_STREAM_NON_BLOCKING, as PyTorch's pool streams are: it does not
/// wait for the legacy stream.
pub fn non_blocking_stream() -> *mut c_void {
    context();
    result::stream::create(result::stream::StreamKind::NonBlocking).expect("cuStreamCreate")
        as *mut c_void
}

pub fn synchronize() {
    context();
    result::ctx::synchronize().expect("cuCtxSynchronize");
}

impl Handle {
    /// A CUDA handle on device 0, or the status creating it returned.
    pub fn try_new_cuda(cfg: &bnb_adam8bit_config_t) -> Result<Handle, bnb_status_t> {
        let mut h = std::ptr::null_mut();
        match unsafe { bnb_adam8bit_create(cfg, BNB_DEVICE_CUDA, 0, &mut h) } {
            BNB_OK => Ok(Handle(h)),
            s => Err(s),
        }
    }

    pub fn new_cuda(cfg: &bnb_adam8bit_config_t) -> Handle {
        context();
        Handle::try_new_cuda(cfg).unwrap_or_else(|s| {
            ok(s);
            unreachable!()
        })
    }

    /// One step of every (id, param, grad) on a CUDA handle, device buffers, on `stream`.
    pub fn step_device(
        &self,
        items: &[(u32, &DevBuf, &DevBuf)],
        stream: *mut c_void,
    ) -> bnb_status_t {
        let list: Vec<bnb_step_item_t> = items
            .iter()
            .map(|(id, p, g)| bnb_step_item_t {
                id: *id,
                param: p.as_mut_ptr(),
                grad: g.as_mut_ptr(),
            })
            .collect();
        unsafe { bnb_adam8bit_step_many(self.0, list.as_ptr(), list.len(), stream) }
    }
}
