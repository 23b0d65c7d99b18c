//! A CUDA handle on a machine without a usable GPU (or a build without nvcc) is an error with a
//! message, never a crash, and leaves `*out` untouched. On a GPU machine creation succeeds.

mod common;
use common::*;

use adam8bit::ffi::handle::*;
use adam8bit::ffi::types::*;

#[test]
fn cuda_handle_creation_reports_instead_of_aborting() {
    let cfg = config_default();
    let sentinel = std::ptr::dangling_mut::<adam8bit::ffi::bnb_adam8bit_t>();
    let mut h = sentinel;
    let status = unsafe { bnb_adam8bit_create(&cfg, BNB_DEVICE_CUDA, 0, &mut h) };
    match status {
        BNB_OK => unsafe { bnb_adam8bit_destroy(h) },
        BNB_ERR_NO_DEVICE | BNB_ERR_UNSUPPORTED => {
            assert_eq!(h, sentinel, "a failed create leaves *out unchanged");
            let m = message();
            assert!(
                m.contains("CUDA") || m.contains("nvcc"),
                "the message says why: {m}"
            );
        }
        s => panic!("unexpected status {s}: {}", message()),
    }
    // An index no machine has is always a clean error.
    let mut h2 = sentinel;
    let status = unsafe { bnb_adam8bit_create(&cfg, BNB_DEVICE_CUDA, 4096, &mut h2) };
    assert!(
        status == BNB_ERR_NO_DEVICE || status == BNB_ERR_UNSUPPORTED,
        "{status}: {}",
        message()
    );
    assert_eq!(h2, sentinel);
    // A negative index is a caller's mistake on any machine.
    let status = unsafe { bnb_adam8bit_create(&cfg, BNB_DEVICE_CUDA, -1, &mut h2) };
    assert_eq!(status, BNB_ERR_INVALID_ARGUMENT, "{}", message());
    assert_eq!(h2, sentinel);
}
