//! Issue 7: a CPU step allocates nothing once the handle has seen a step of the same shape.
//! A counting global allocator watches the whole process while steps run on the library's
//! worker pool (blockwise 8-bit fp32 and bf16, the 32-bit path, the non-blockwise path with
//! percentile clipping and max_unorm). Issue 5: saving or serializing a CPU handle copies none
//! of its state.
//!
//! The one allocation left is rayon's: each step enters the worker pool once, and the pool's
//! queue for jobs from outside grows in 63-job blocks, so one small block is allocated about
//! every 63 steps. Anything the library allocated per step would show up 200 times here.

use std::ptr::null_mut;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use adam8bit::ffi::checkpoint::*;
use adam8bit::ffi::handle::*;
use adam8bit::ffi::params::*;
use adam8bit::ffi::types::*;

mod common;
use common::counting_alloc::{Counting, ALLOCATIONS, BYTES};
use common::{config_default, ok, Handle};

/// The counters are process-wide: one test at a time.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Tensor {
    id: u32,
    param: Vec<u32>,
    grad: Vec<u32>,
}

fn tensors(h: &Handle, shapes: &[(u64, bnb_dtype_t)]) -> Vec<Tensor> {
    let mut rng = adam8bit::rng::Rng(11);
    shapes
        .iter()
        .map(|&(numel, dtype)| {
            let words = if dtype == BNB_DTYPE_F32 {
                numel
            } else {
                numel.div_ceil(2)
            };
            // Small values in both halves of each word, finite for every dtype.
            let mut word = || 0x3C00_3C00 ^ (rng.next_u64() as u32 & 0x00FF_00FF);
            Tensor {
                id: h.add(numel, dtype),
                param: (0..words).map(|_| word()).collect(),
                grad: (0..words).map(|_| word()).collect(),
            }
        })
        .collect()
}

/// Allocations during `STEPS` steps after warm-up steps.
const STEPS: u64 = 200;
/// rayon's injector blocks: one per 63 pool entries, plus one for where the count starts.
const RAYON_BLOCKS: u64 = STEPS / 63 + 1;

fn allocations(cfg: &bnb_adam8bit_config_t, shapes: &[(u64, bnb_dtype_t)]) -> u64 {
    let h = Handle::new(cfg);
    let mut ts = tensors(&h, shapes);
    let items: Vec<bnb_step_item_t> = ts
        .iter_mut()
        .map(|t| bnb_step_item_t {
            id: t.id,
            param: t.param.as_mut_ptr().cast(),
            grad: t.grad.as_ptr().cast(),
        })
        .collect();
    let step = || {
        // SAFETY: every item points at its tensor's live buffers of the registered size.
        ok(unsafe { bnb_adam8bit_step_many(h.0, items.as_ptr(), items.len(), null_mut()) })
    };
    for _ in 0..3 {
        step();
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..STEPS {
        step();
    }
    ALLOCATIONS.load(Ordering::Relaxed) - before
}

#[test]
fn steps_allocate_nothing() {
    let _one = EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
    // One worker pool for the whole test binary: two threads, started before counting.
    ok(bnb_set_num_threads(2));
    let mixed = [
        (1 << 20, BNB_DTYPE_F32),
        (300_001, BNB_DTYPE_BF16),
        (70_000, BNB_DTYPE_F16),
        (1000, BNB_DTYPE_F32),
    ];
    let mut blockwise = config_default();
    blockwise.min_8bit_size = 4096;
    blockwise.weight_decay = 0.01;
    let n = allocations(&blockwise, &mixed);
    assert!(
        n <= RAYON_BLOCKS,
        "blockwise + 32-bit: {n} allocations in {STEPS} steps"
    );

    let mut dynamic = blockwise;
    dynamic.block_wise = false;
    dynamic.percentile_clipping = 95;
    dynamic.max_unorm = 1.0;
    let n = allocations(&dynamic, &mixed);
    assert!(
        n <= RAYON_BLOCKS,
        "non-blockwise, clipping, max_unorm: {n} in {STEPS} steps"
    );
}

/// Bytes allocated while `f` runs.
fn bytes_allocated(f: impl FnOnce()) -> u64 {
    let before = BYTES.load(Ordering::Relaxed);
    f();
    BYTES.load(Ordering::Relaxed) - before
}

#[test]
fn saving_copies_no_state() {
    let _one = EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
    let mut cfg = config_default();
    cfg.min_8bit_size = 4096;
    let h = Handle::new(&cfg);
    // 2^22 elements: 8 MiB of codes and 128 KiB of absmax, plus a 32-bit parameter (12 KiB).
    tensors(&h, &[(1 << 22, BNB_DTYPE_F32), (3000, BNB_DTYPE_F32)]);
    const LIMIT: u64 = 64 << 10;

    let mut size = 0u64;
    let n = bytes_allocated(|| ok(unsafe { bnb_adam8bit_serialized_size(h.0, &mut size) }));
    assert!(size > 8 << 20);
    assert!(n < LIMIT, "serialized_size allocated {n} bytes");

    let mut buf = vec![0u8; size as usize];
    let mut written = 0u64;
    let n = bytes_allocated(|| {
        ok(unsafe { bnb_adam8bit_serialize(h.0, buf.as_mut_ptr().cast(), size, &mut written) })
    });
    assert_eq!(written, size);
    assert!(n < LIMIT, "serialize allocated {n} bytes");

    let dir = std::env::temp_dir().join(format!("adam8bit-no-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = std::ffi::CString::new(
        dir.join("opt.safetensors")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    // The file is written through a 1 MiB buffer.
    let n = bytes_allocated(|| ok(unsafe { bnb_adam8bit_save(h.0, path.as_ptr()) }));
    assert!(n < (1 << 20) + LIMIT, "save allocated {n} bytes");
    assert_eq!(std::fs::read(dir.join("opt.safetensors")).unwrap(), buf);
    std::fs::remove_dir_all(&dir).unwrap();
}
