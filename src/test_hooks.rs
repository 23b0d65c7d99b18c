//! Hooks for the crate's own tests, compiled only with the `test-hooks` feature (which the
//! tests' dev-dependency on this crate enables, and no shipped build does): they make the
//! library fail in ways no valid input can, to test what the ABI promises then.

use crate::ffi::bnb_adam8bit_t;

/// Makes the next CPU step of `h` panic on a worker thread in the middle of its update sweep,
/// right after the first chunk (16,384 elements) of its first item was updated: its state is
/// then half-updated and its step counters not yet advanced, the case the handle's poisoning
/// (`BNB_ERR_PANIC` from then on) exists for. No effect on a CUDA handle, whose steps do not
/// run on the CPU workers.
///
/// # Safety
/// `h` must be a live handle.
pub unsafe fn panic_in_next_update(h: *const bnb_adam8bit_t) {
    let mut opt = (*h).lock().expect("the handle is not poisoned yet");
    opt.arm_update_panic();
}
