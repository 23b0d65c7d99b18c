//! The C ABI and nothing else: argument checks, the panic guard, status codes and messages.
//! No math lives here; every call forwards to [`crate::optimizer::Optimizer`].

pub mod checkpoint;
pub mod handle;
pub mod params;
pub mod state;
pub mod types;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, MutexGuard};

use crate::error::{invalid, set_last_message, Error, Result, BNB_ERR_PANIC, BNB_OK};
use crate::optimizer::Optimizer;
use types::bnb_status_t;

/// Opaque optimizer handle. Every call on one handle takes its lock, so concurrent calls on
/// the same handle are serialised (never a data race); different handles never contend.
pub struct bnb_adam8bit_t {
    inner: Mutex<Optimizer>,
}

impl bnb_adam8bit_t {
    pub(crate) fn new(opt: Optimizer) -> Self {
        bnb_adam8bit_t {
            inner: Mutex::new(opt),
        }
    }

    /// The optimizer, unless an internal panic interrupted an earlier call mid-update.
    pub(crate) fn lock(&self) -> Result<MutexGuard<'_, Optimizer>> {
        self.inner.lock().map_err(|_| {
            Error::Panic(
                "this handle was left inconsistent by an earlier internal panic; destroy it".into(),
            )
        })
    }
}

/// Runs `f`, turning its error or panic into a status code and this thread's message.
pub(crate) fn guard(f: impl FnOnce() -> Result<()>) -> bnb_status_t {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => {
            set_last_message("");
            BNB_OK
        }
        Ok(Err(e)) => {
            set_last_message(&e.to_string());
            e.status()
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            set_last_message(&format!(
                "internal panic (a bug in libadam8bit, please report it): {what}"
            ));
            BNB_ERR_PANIC
        }
    }
}

/// `&T` from a C pointer that must not be NULL.
///
/// # Safety
/// A non-NULL `ptr` must point to a valid `T` for the call's duration.
pub(crate) unsafe fn arg<'a, T>(ptr: *const T, name: &str) -> Result<&'a T> {
    match ptr.as_ref() {
        Some(r) => Ok(r),
        None => invalid!("{name} is NULL"),
    }
}

/// `&mut T` from a C pointer that must not be NULL.
///
/// # Safety
/// As [`arg`], and nothing else may access `*ptr` during the call.
pub(crate) unsafe fn arg_mut<'a, T>(ptr: *mut T, name: &str) -> Result<&'a mut T> {
    match ptr.as_mut() {
        Some(r) => Ok(r),
        None => invalid!("{name} is NULL"),
    }
}

/// Reads a caller's versioned struct (first field `uint64_t struct_size`): a smaller size than
/// this library's is rejected, a larger one is accepted only if the bytes this library does not
/// know are zero (so a newer caller's new options are never silently ignored).
///
/// # Safety
/// A non-NULL `ptr` must point to at least `struct_size` readable bytes.
pub(crate) unsafe fn read_versioned<T: Copy>(ptr: *const T, name: &str) -> Result<T> {
    if ptr.is_null() {
        invalid!("{name} is NULL");
    }
    let size = std::ptr::read_unaligned(ptr.cast::<u64>());
    let ours = std::mem::size_of::<T>() as u64;
    if size < ours {
        invalid!("{name}.struct_size is {size}, expected {ours}; initialise it with its _default() function");
    }
    if size > ours {
        if size > (1 << 20) {
            invalid!("{name}.struct_size {size} is implausible");
        }
        let extra =
            std::slice::from_raw_parts(ptr.cast::<u8>().add(ours as usize), (size - ours) as usize);
        if extra.iter().any(|&b| b != 0) {
            return Err(Error::Unsupported(format!(
                "{name} sets fields this version of libadam8bit does not know (struct_size {size} > {ours})"
            )));
        }
    }
    Ok(std::ptr::read_unaligned(ptr))
}
