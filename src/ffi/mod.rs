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
/// the same handle are serialised (never a data race); different handles take different locks
/// (CPU steps of different handles still share the worker pool's threads). A panic while the
/// lock is held poisons it, and with it the handle (docs/design.md, "Poisoned handles").
pub struct bnb_adam8bit_t {
    inner: Mutex<Optimizer>,
}

impl bnb_adam8bit_t {
    pub(crate) fn new(opt: Optimizer) -> Self {
        bnb_adam8bit_t {
            inner: Mutex::new(opt),
        }
    }

    /// The optimizer, unless an internal panic interrupted an earlier call mid-update. Every
    /// entry point but destroy takes it before it looks at its other arguments, so a call on a
    /// poisoned handle reads and writes nothing.
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

/// `&T` from a C pointer that must not be NULL or misaligned.
///
/// # Safety
/// A non-NULL `ptr` must point to a valid `T` for the call's duration.
pub(crate) unsafe fn arg<'a, T>(ptr: *const T, name: &str) -> Result<&'a T> {
    if !ptr.is_aligned() {
        invalid!("{name} is not aligned to its type");
    }
    match ptr.as_ref() {
        Some(r) => Ok(r),
        None => invalid!("{name} is NULL"),
    }
}

/// An output argument, checked (not NULL, aligned) before the call does anything and written
/// once, through the raw pointer, when the result is known. No reference to the caller's
/// memory is held meanwhile, so outputs that alias each other or another argument are
/// harmless (the last write wins).
pub(crate) struct Out<T: Copy>(*mut T);

impl<T: Copy> Out<T> {
    /// # Safety
    /// The pointer given to [`out_arg`] must still be writable.
    pub(crate) unsafe fn set(self, value: T) {
        self.0.write(value)
    }
}

/// # Safety
/// A non-NULL `ptr` must be writable for a `T` for the call's duration.
pub(crate) unsafe fn out_arg<T: Copy>(ptr: *mut T, name: &str) -> Result<Out<T>> {
    if ptr.is_null() {
        invalid!("{name} is NULL");
    }
    if !ptr.is_aligned() {
        invalid!("{name} is not aligned to its type");
    }
    Ok(Out(ptr))
}

/// `&[T]` from a C array of `count` elements: NULL is allowed only with `count` 0, and the
/// pointer must be aligned and the array fit in the address space (`from_raw_parts`'s
/// preconditions, which would otherwise abort in a debug build).
///
/// # Safety
/// A non-NULL `ptr` must point to `count` valid `T` for the call's duration.
pub(crate) unsafe fn c_array<'a, T>(ptr: *const T, count: usize, name: &str) -> Result<&'a [T]> {
    if count == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        invalid!("{name} is NULL but count is {count}");
    }
    if !ptr.is_aligned() {
        invalid!("{name} is not aligned to its element type");
    }
    if count
        .checked_mul(std::mem::size_of::<T>())
        .is_none_or(|bytes| bytes > isize::MAX as usize)
    {
        invalid!("count {count} of {name} exceeds the address space");
    }
    Ok(std::slice::from_raw_parts(ptr, count))
}

/// A struct the library writes to the C side.
///
/// # Safety
/// `PADDING` must list every byte range of the struct that no field covers.
pub(crate) unsafe trait Written: Copy {
    const PADDING: &'static [std::ops::Range<usize>] = &[];
}

/// A struct the C side passes in, versioned by its first field `uint64_t struct_size`.
///
/// # Safety
/// `BOOLS` must list the offset of every `bool` field, `RESERVED` and `OLDER_SIZES` lie inside
/// the struct, and all-zero bytes must be a valid value (the fields an older caller's struct
/// lacks read as zero).
pub(crate) unsafe trait Versioned: Copy {
    /// Offsets and names of the `bool` fields: a byte other than 0 or 1 there must be
    /// rejected before the struct is read, because such a `bool` is undefined behaviour.
    const BOOLS: &'static [(usize, &'static str)] = &[];
    /// Bytes kept for fields of later versions (the struct's padding made explicit): like
    /// bytes past this library's size, they must be zero.
    const RESERVED: &'static [std::ops::Range<usize>] = &[];
    /// The sizes of earlier versions of the struct (each ends at a field boundary), which
    /// callers compiled against them pass: the fields after it read as zero, meaning "off".
    const OLDER_SIZES: &'static [usize] = &[];
}

/// The largest `struct_size` taken as plausible (a guard against an uninitialised one).
const MAX_STRUCT_SIZE: usize = 1 << 20;

/// Reads a caller's versioned struct: a smaller `struct_size` than this library's is taken
/// when it is an earlier version's (the fields it lacks read as zero) and rejected otherwise;
/// bytes this library does not know (reserved, or past its size in a newer caller's struct)
/// must be zero, so a newer caller's options are never silently ignored.
///
/// # Safety
/// A non-NULL `ptr` must point to at least `struct_size` readable bytes.
pub(crate) unsafe fn read_versioned<T: Versioned>(ptr: *const T, name: &str) -> Result<T> {
    if ptr.is_null() {
        invalid!("{name} is NULL");
    }
    let size = std::ptr::read_unaligned(ptr.cast::<u64>());
    let ours = std::mem::size_of::<T>();
    let older = usize::try_from(size).is_ok_and(|s| T::OLDER_SIZES.contains(&s));
    if size < ours as u64 && !older {
        invalid!("{name}.struct_size is {size}, expected {ours}; fill it with its _default function, passing sizeof");
    }
    if size > MAX_STRUCT_SIZE as u64 {
        invalid!("{name}.struct_size {size} is implausible");
    }
    let size = size as usize;
    let bytes = std::slice::from_raw_parts(ptr.cast::<u8>(), size);
    let reserved = T::RESERVED
        .iter()
        .flat_map(|r| bytes.get(r.start.min(size)..r.end.min(size)))
        .flatten();
    if reserved
        .chain(bytes.get(ours..).unwrap_or(&[]))
        .any(|&b| b != 0)
    {
        return Err(Error::Unsupported(format!(
            "{name} sets fields this version of libadam8bit does not know (struct_size {size}, ours {ours})"
        )));
    }
    for &(offset, field) in T::BOOLS {
        if bytes.get(offset).is_some_and(|&b| b > 1) {
            invalid!("{name}.{field} is {}, not a bool (0 or 1)", bytes[offset]);
        }
    }
    // SAFETY: all-zero bytes are a T (the trait's contract), and every byte copied over them
    // was checked above where a bool lies.
    let mut value: T = std::mem::zeroed();
    std::ptr::copy_nonoverlapping(
        ptr.cast::<u8>(),
        (&mut value as *mut T).cast::<u8>(),
        size.min(ours),
    );
    Ok(value)
}

/// Writes `value` to a caller's versioned struct of `size` bytes (its `sizeof` as the caller
/// was compiled): the fields this library knows, at most `size` bytes, so an older caller's
/// smaller struct is never overrun; zeros after them, so a newer caller's fields read as
/// unset (a later version's fields mean "off" when zero); and `struct_size = size`, so the
/// struct can go straight back into the library as input.
///
/// The bytes no field covers are written as zeros: a struct built in Rust leaves them
/// undefined, and a caller must not read stack garbage there (nor see two calls differ).
///
/// # Safety
/// A non-NULL `out` must point to `size` writable bytes.
pub(crate) unsafe fn write_versioned<T: Written>(
    out: *mut T,
    size: usize,
    value: T,
    name: &str,
) -> Result<()> {
    let ours = std::mem::size_of::<T>();
    if out.is_null() {
        invalid!("{name} is NULL");
    }
    if !(8..=MAX_STRUCT_SIZE).contains(&size) {
        invalid!("struct_size {size} for {name}: pass sizeof the struct ({ours} in this version)");
    }
    let n = size.min(ours);
    std::ptr::copy_nonoverlapping((&value as *const T).cast::<u8>(), out.cast::<u8>(), n);
    for hole in T::PADDING {
        let hole = hole.start.min(n)..hole.end.min(n);
        std::ptr::write_bytes(out.cast::<u8>().add(hole.start), 0, hole.len());
    }
    if size > ours {
        std::ptr::write_bytes(out.cast::<u8>().add(ours), 0, size - ours);
    }
    std::ptr::write_unaligned(out.cast::<u64>(), size as u64);
    Ok(())
}
