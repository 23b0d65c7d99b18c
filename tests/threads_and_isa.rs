//! Rule 16 and the SIMD levels end to end: the same steps through the C ABI give bit-identical
//! parameters and states for every available ISA level and for 1, 2 and 3 worker threads.
//! One test function, because the ISA override and the thread count are process-wide.

mod common;
use common::*;

use adam8bit::cpu::simd::{force_isa, Isa};
use adam8bit::ffi::handle::bnb_set_num_threads;
use adam8bit::ffi::types::*;

/// Sizes across paths: blockwise with partial last blocks and several chunks, and tensors
/// under `min_8bit_size` (4096) on the 32-bit path.
const SIZES: [u64; 5] = [300_001, 70_000, 16_384, 4095, 257];

/// Runs three steps of every dtype and returns every output byte.
fn run() -> Vec<u8> {
    let mut cfg = config_default();
    cfg.weight_decay = 0.01;
    let mut out = Vec::new();
    for (d, dtype) in [BNB_DTYPE_F32, BNB_DTYPE_F16, BNB_DTYPE_BF16]
        .into_iter()
        .enumerate()
    {
        let h = Handle::new(&cfg);
        let width = if dtype == BNB_DTYPE_F32 { 4 } else { 2 };
        let mut rng = Rng(0x5EED + d as u64);
        for &n in &SIZES {
            let id = h.add(n, dtype);
            let mut p = encode(dtype, (0..n).map(|_| rng.normal()));
            for _ in 0..3 {
                let g = encode(
                    dtype,
                    (0..n).map(|i| match i % 997 {
                        0 => f32::NAN,
                        1 => f32::INFINITY,
                        2 => -0.0,
                        _ => rng.normal() * 1e-2,
                    }),
                );
                h.step(id, &mut p, &g);
            }
            assert_eq!(p.len(), n as usize * width);
            out.extend(&p);
            for kind in [BNB_STATE1, BNB_STATE2, BNB_ABSMAX1, BNB_ABSMAX2] {
                if h.has(id, kind) {
                    out.extend(h.read(id, kind));
                }
            }
        }
    }
    out
}

#[test]
fn every_isa_and_thread_count_gives_the_same_bits() {
    assert!(force_isa(Some(Isa::Scalar)));
    ok(bnb_set_num_threads(1));
    let want = run();
    let mut combos = 0;
    for isa in Isa::ALL {
        if !force_isa(Some(isa)) {
            eprintln!("skipping {isa:?}: not available on this CPU");
            continue;
        }
        for threads in [1, 2, 3] {
            ok(bnb_set_num_threads(threads));
            assert!(
                run() == want,
                "{isa:?} with {threads} threads differs from scalar, 1 thread"
            );
            combos += 1;
        }
    }
    force_isa(None);
    ok(bnb_set_num_threads(0));
    assert!(combos >= 3, "at least the scalar level must have run");
}
