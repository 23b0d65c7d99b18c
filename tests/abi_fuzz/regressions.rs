//! Every finding of the fuzzer, kept as a test of its own (the seed and call that found it in
//! each doc comment).

use adam8bit::ffi::params::bnb_adam8bit_step;
use adam8bit::ffi::types::*;

use crate::common::checkpoint::temp_dir;
use crate::common::{config_default, message, Handle};

/// Seed 0xAB1F022, call 696: `set_step(2^64 - 2)` and two steps take a parameter to the
/// largest count, and the checkpoint saved then was refused by every load as damaged
/// (`BNB_ERR_CORRUPT`, "step is 2^64 - 1"): the library wrote a file it would not read. Now it
/// loads, from a file and from memory, and the loaded parameter refuses to step, as the saved
/// one does.
#[test]
fn a_parameter_at_the_largest_step_count_saves_and_loads() {
    let saved = Handle::new(&config_default());
    let id = saved.add(300, BNB_DTYPE_F32);
    let (mut p, g) = (vec![0u8; 1200], vec![1u8; 1200]);
    saved.set_step(id, u64::MAX - 1);
    saved.step(id, &mut p, &g);
    assert_eq!(saved.info(id).step, u64::MAX);
    let dir = temp_dir("largest-step");
    let file = dir.join("opt.safetensors");
    assert_eq!(saved.save(&file), BNB_OK);

    let from_file = Handle::new(&config_default());
    let from_bytes = Handle::new(&config_default());
    for h in [&from_file, &from_bytes] {
        h.add(300, BNB_DTYPE_F32);
    }
    assert_eq!(from_file.load(&file), BNB_OK, "{}", message());
    assert_eq!(
        from_bytes.deserialize(&saved.serialize()),
        BNB_OK,
        "{}",
        message()
    );
    for h in [&from_file, &from_bytes] {
        assert_eq!(h.snapshot(), saved.snapshot());
        // SAFETY: both buffers hold the parameter's 300 f32 elements.
        let st = unsafe {
            bnb_adam8bit_step(
                h.0,
                id,
                p.as_mut_ptr().cast(),
                g.as_ptr().cast(),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(
            st, BNB_ERR_INVALID_ARGUMENT,
            "a parameter at 2^64 - 1 stepped"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Seed 0xC0DAF022, call 43 (found on the CUDA run, which draws differently): two calls of
/// `param_options_default` wrote different bytes 60..64, the padding between `optim_bits` and
/// `min_8bit_size`, which a Rust-built struct leaves undefined (stack garbage reached the
/// caller). Every byte of a written struct is now defined: the padding is zero, whatever the
/// buffer held.
#[test]
fn written_structs_have_zero_padding() {
    use adam8bit::ffi::params::bnb_param_options_default;
    let size = std::mem::size_of::<bnb_param_options_t>();
    let outputs: Vec<Vec<u8>> = [0x00u8, 0xAA, 0x5C]
        .iter()
        .map(|&fill| {
            let mut buf = vec![fill; size];
            // SAFETY: `size` writable bytes.
            let st = unsafe { bnb_param_options_default(buf.as_mut_ptr().cast(), size) };
            assert_eq!(st, BNB_OK, "{}", message());
            buf
        })
        .collect();
    assert!(outputs.iter().all(|o| o == &outputs[0]), "{outputs:?}");
    let hole = std::mem::offset_of!(bnb_param_options_t, optim_bits) + 4
        ..std::mem::offset_of!(bnb_param_options_t, min_8bit_size);
    assert!(!hole.is_empty());
    assert!(outputs[0][hole].iter().all(|&b| b == 0));
}
