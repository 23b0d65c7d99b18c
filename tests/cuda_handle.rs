//! Creating a CUDA handle: without a driver it is a clean error that leaves `*out` untouched;
//! on the emulated device (and on a GPU) it succeeds. A build without kernels reports
//! BNB_ERR_UNSUPPORTED, which `ADAM8BIT_REQUIRE_CUDA=1` (CI) does not accept.

mod common;
use common::emulator::{in_child, on_emulator};
use common::*;

use adam8bit::ffi::handle::*;
use adam8bit::ffi::types::*;

fn create(device_index: i32) -> (bnb_status_t, *mut adam8bit::ffi::bnb_adam8bit_t) {
    let cfg = config_default();
    let sentinel = std::ptr::dangling_mut::<adam8bit::ffi::bnb_adam8bit_t>();
    let mut h = sentinel;
    let status = unsafe { bnb_adam8bit_create(&cfg, BNB_DEVICE_CUDA, device_index, &mut h) };
    if status != BNB_OK {
        assert_eq!(h, sentinel, "a failed create leaves *out unchanged");
        let m = message();
        assert!(
            m.contains("CUDA") || m.contains("nvcc") || m.contains("device"),
            "{m}"
        );
    }
    (status, h)
}

fn kernels_required() -> bool {
    std::env::var("ADAM8BIT_REQUIRE_CUDA").as_deref() == Ok("1")
}

#[test]
fn without_a_driver_creation_is_a_clean_error() {
    if in_child() {
        return;
    }
    let (status, h) = create(0);
    match status {
        // A machine with a GPU.
        BNB_OK => unsafe { bnb_adam8bit_destroy(h) },
        BNB_ERR_NO_DEVICE => {}
        BNB_ERR_UNSUPPORTED if !kernels_required() => {}
        s => panic!("unexpected status {s}: {}", message()),
    }
    let (status, _) = create(4096);
    assert!(
        status == BNB_ERR_NO_DEVICE || (status == BNB_ERR_UNSUPPORTED && !kernels_required()),
        "{status}: {}",
        message()
    );
    // A negative index is a caller's mistake on any machine.
    let (status, _) = create(-1);
    assert_eq!(status, BNB_ERR_INVALID_ARGUMENT, "{}", message());
}

#[test]
fn on_the_emulated_device_creation_succeeds() {
    on_emulator("on_the_emulated_device_creation_succeeds", |_| {
        let (status, h) = create(0);
        assert_eq!(status, BNB_OK, "{}", message());
        unsafe { bnb_adam8bit_destroy(h) };
        assert_eq!(
            create(1).0,
            BNB_ERR_NO_DEVICE,
            "the emulator has one device"
        );
        assert_eq!(create(-1).0, BNB_ERR_INVALID_ARGUMENT);
    });
}
