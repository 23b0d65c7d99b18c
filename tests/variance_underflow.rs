//! A behaviour of bitsandbytes' 8-bit Adam that the library keeps on purpose (it computes the
//! reference's function), pinned here so that it stays documented and exact: when an element's
//! second moment is tiny next to its block's largest, it quantizes to code 0 (value 0) while
//! its first moment keeps a nonzero code. If that element's gradient then drops to 0 (a dead
//! ReLU unit, an unused embedding row), the next update is `m / (0 + eps)`, thousands of times
//! the fp32 optimizer's. docs/design.md explains the mitigations.
//!
//! The expected bits come from the executable reference, `shared/reference/adam8bit_ref.py`
//! (`step_blockwise8` and `step_32bit`, default hyper-parameters, the same two gradients on a
//! 256-element block of zeros).

mod common;
use common::*;

use adam8bit::ffi::types::*;

/// Element 1 of a block whose element 0 carries the block's largest gradient.
const N: u64 = 4096;

/// Two steps: gradients 1 and 1e-4 on elements 0 and 1, then 1 on element 0 only. Returns
/// element 1's parameter after each step, and its state codes after the first when no options (8-bit states) were given.
fn two_steps(options: Option<&bnb_param_options_t>) -> (f32, f32, Option<(u8, u8)>) {
    let h = Handle::new(&config_default());
    let id = match options {
        Some(o) => h.add_ex(N, BNB_DTYPE_F32, o),
        None => h.add(N, BNB_DTYPE_F32),
    };
    let mut p = encode(BNB_DTYPE_F32, (0..N).map(|_| 0.0));
    let mut g = vec![0f32; N as usize];
    (g[0], g[1]) = (1.0, 1e-4);
    h.step(id, &mut p, &encode(BNB_DTYPE_F32, g.iter().copied()));
    let after_first = f32s(&p)[1];
    let codes = options
        .is_none()
        .then(|| (h.read(id, BNB_STATE1)[1], h.read(id, BNB_STATE2)[1]));
    g[1] = 0.0;
    h.step(id, &mut p, &encode(BNB_DTYPE_F32, g.iter().copied()));
    (after_first, f32s(&p)[1], codes)
}

#[test]
fn a_zero_variance_code_under_a_live_momentum_code_blows_up_like_the_reference() {
    let (first, second, codes) = two_steps(None);
    assert_eq!(first.to_bits(), 0xba83_0f13, "first step: {first}");
    // After the first step: m = 1e-5 keeps a nonzero code (134), v = 1e-11 is below half the
    // unsigned map's smallest step at absmax 1e-3 and gets code 0.
    assert_eq!(codes, Some((134, 0)));
    assert_eq!(second.to_bits(), 0xc086_8eee, "8-bit second step: {second}");

    let mut fp32 = param_options_default();
    fp32.flags = BNB_OPT_OPTIM_BITS;
    fp32.optim_bits = 32;
    let (_, second_fp32, _) = two_steps(Some(&fp32));
    assert_eq!(
        second_fp32.to_bits(),
        0xbada_df52,
        "fp32 second step: {second_fp32}"
    );
    assert!((second - first).abs() > 1000.0 * (second_fp32 - first).abs());
}
