//! One error type for the whole crate, its stable status codes, and the thread-local message
//! that `bnb_last_error_message()` returns.

use std::cell::RefCell;

pub use crate::ffi::types::{
    bnb_status_t as Status, BNB_ERR_CORRUPT, BNB_ERR_CUDA, BNB_ERR_INVALID_ARGUMENT, BNB_ERR_IO,
    BNB_ERR_MISMATCH, BNB_ERR_NO_DEVICE, BNB_ERR_OUT_OF_MEMORY, BNB_ERR_PANIC, BNB_ERR_UNSUPPORTED,
    BNB_OK,
};

/// Every failure the library reports. The variant decides the status code; the text is the
/// message a C caller reads back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    OutOfMemory(String),
    #[error("{0}")]
    NoDevice(String),
    #[error("{0}")]
    Cuda(String),
    /// A CUDA failure after which the device state is unknown: a sticky context error (an
    /// illegal address, a failed launch), or a step that failed after part of it was
    /// enqueued. The optimizer turns it into `Cuda` and refuses further device work.
    #[error("{0}")]
    DeviceLost(String),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    Mismatch(String),
    #[error("{0}")]
    Panic(String),
}

impl Error {
    pub fn status(&self) -> Status {
        match self {
            Error::InvalidArgument(_) => BNB_ERR_INVALID_ARGUMENT,
            Error::Unsupported(_) => BNB_ERR_UNSUPPORTED,
            Error::OutOfMemory(_) => BNB_ERR_OUT_OF_MEMORY,
            Error::NoDevice(_) => BNB_ERR_NO_DEVICE,
            Error::Cuda(_) | Error::DeviceLost(_) => BNB_ERR_CUDA,
            Error::Io(_) => BNB_ERR_IO,
            Error::Corrupt(_) => BNB_ERR_CORRUPT,
            Error::Mismatch(_) => BNB_ERR_MISMATCH,
            Error::Panic(_) => BNB_ERR_PANIC,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// `return Err(Error::InvalidArgument(format!(...)))` in one line.
macro_rules! invalid {
    ($($arg:tt)*) => { return Err($crate::error::Error::InvalidArgument(format!($($arg)*))) };
}
pub(crate) use invalid;

/// A `Vec` of `len` copies of `value`, with allocation failure reported instead of aborting.
pub fn try_vec<T: Clone>(len: usize, value: T, what: &str) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| {
        Error::OutOfMemory(format!(
            "cannot allocate {what}: {len} elements of {} bytes",
            std::mem::size_of::<T>()
        ))
    })?;
    v.resize(len, value);
    Ok(v)
}

thread_local! {
    /// The message's bytes and a terminating NUL; empty until the first message. The buffer is
    /// rewritten in place, so a successful call (empty message) allocates nothing.
    static LAST_MESSAGE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Records `message` as this thread's last error message (interior NULs become spaces).
/// During thread exit, after the thread-local is destroyed (a call from a C++ `thread_local`
/// destructor), the message is dropped: `with` would panic outside any guard.
pub fn set_last_message(message: &str) {
    let _ = LAST_MESSAGE.try_with(|m| {
        let mut m = m.borrow_mut();
        if message.is_empty() && m.is_empty() {
            return;
        }
        m.clear();
        m.extend(message.bytes().map(|b| if b == 0 { b' ' } else { b }));
        m.push(0);
    });
}

/// Pointer to this thread's last message; valid until the next library call on this thread.
pub fn last_message_ptr() -> *const std::ffi::c_char {
    LAST_MESSAGE
        .try_with(|m| match m.borrow().as_slice() {
            [] => c"".as_ptr(),
            bytes => bytes.as_ptr().cast(),
        })
        .unwrap_or(c"(no message: the calling thread is exiting)".as_ptr())
}
