//! The C ABI from the caller's side: validation and misuse (rule 13: errors, never aborts; a
//! rejected call changes nothing), per-parameter settings, groups and presets (issue 3),
//! thread-count independence (rule 16), and the state accessors.

mod common;
use common::*;

use std::ffi::c_void;
use std::ptr::{null, null_mut};

use adam8bit::ffi::bnb_adam8bit_t;
use adam8bit::ffi::handle::*;
use adam8bit::ffi::params::*;
use adam8bit::ffi::state::*;
use adam8bit::ffi::types::*;

/// Per parameter: step, non-finite count, and every state array it keeps.
type Snapshot = Vec<(u64, u64, Vec<Vec<u8>>)>;
type ConfigEdit = Box<dyn Fn(&mut bnb_adam8bit_config_t)>;

/// Everything observable about a handle's parameters.
fn snapshot(h: &Handle, ids: &[u32]) -> Snapshot {
    ids.iter()
        .map(|&id| {
            let i = h.info(id);
            let arrays = common::checkpoint::KINDS
                .iter()
                .filter(|&&k| h.has(id, k))
                .map(|&k| h.read(id, k))
                .collect();
            (i.step, i.nonfinite_count, arrays)
        })
        .collect()
}

fn random_f32(rng: &mut Rng, n: usize, scale: f32) -> Vec<u8> {
    (0..n)
        .flat_map(|_| (rng.normal() * scale).to_le_bytes())
        .collect()
}

#[track_caller]
fn expect(status: bnb_status_t, want: bnb_status_t) {
    assert_eq!(status, want, "got {status}: {}", message());
    if want != BNB_OK {
        assert!(!message().is_empty(), "an error must come with a message");
    }
}

/// `sizeof(bnb_adam8bit_config_t)`.
const SIZE: usize = std::mem::size_of::<bnb_adam8bit_config_t>();

fn create(cfg: &bnb_adam8bit_config_t) -> bnb_status_t {
    let mut h: *mut bnb_adam8bit_t = null_mut();
    let s = unsafe { bnb_adam8bit_create(cfg, BNB_DEVICE_CPU, 0, &mut h) };
    if s == BNB_OK {
        unsafe { bnb_adam8bit_destroy(h) };
    } else {
        assert!(h.is_null(), "a failed create must not write *out");
    }
    s
}

#[test]
fn defaults_and_presets_are_bitsandbytes_classes() {
    let d = config_default();
    assert_eq!(
        d.struct_size as usize,
        std::mem::size_of::<bnb_adam8bit_config_t>()
    );
    assert_eq!(
        (d.lr, d.beta1, d.beta2, d.eps, d.weight_decay),
        (1e-3, 0.9, 0.999, 1e-8, 0.0)
    );
    assert_eq!(
        (d.optim_bits, d.min_8bit_size, d.percentile_clipping),
        (32, 4096, 100)
    );
    assert!(!d.amsgrad && d.block_wise && !d.is_paged && !d.skip_zeros && d.max_unorm == 0.0);
    let mut c = d;
    for (preset, wd, paged) in [
        (BNB_PRESET_ADAM8BIT, 0.0, false),
        (BNB_PRESET_ADAMW8BIT, 0.01, false),
        (BNB_PRESET_PAGED_ADAM8BIT, 0.0, true),
        (BNB_PRESET_PAGED_ADAMW8BIT, 0.01, true),
    ] {
        ok(unsafe { bnb_adam8bit_config_preset(preset, &mut c, SIZE) });
        assert_eq!((c.weight_decay, c.is_paged), (wd, paged));
        assert_eq!(c.lr, 1e-3);
        assert_eq!(create(&c), BNB_OK);
    }
    expect(
        unsafe { bnb_adam8bit_config_preset(4, &mut c, SIZE) },
        BNB_ERR_INVALID_ARGUMENT,
    );
    expect(
        unsafe { bnb_adam8bit_config_preset(0, null_mut(), SIZE) },
        BNB_ERR_INVALID_ARGUMENT,
    );
}

#[test]
fn bad_configs_are_rejected_with_a_message() {
    let base = config_default();
    let cases: Vec<(&str, ConfigEdit, bnb_status_t)> = vec![
        (
            "amsgrad",
            Box::new(|c| c.amsgrad = true),
            BNB_ERR_UNSUPPORTED,
        ),
        (
            "optim_bits 8",
            Box::new(|c| c.optim_bits = 8),
            BNB_ERR_INVALID_ARGUMENT,
        ),
        (
            "lr < 0",
            Box::new(|c| c.lr = -1e-3),
            BNB_ERR_INVALID_ARGUMENT,
        ),
        (
            "lr NaN",
            Box::new(|c| c.lr = f64::NAN),
            BNB_ERR_INVALID_ARGUMENT,
        ),
        (
            "lr inf",
            Box::new(|c| c.lr = f64::INFINITY),
            BNB_ERR_INVALID_ARGUMENT,
        ),
        (
            "lr beyond f32",
            Box::new(|c| c.lr = 1e39),
            BNB_ERR_INVALID_ARGUMENT,
        ),
        (
            "weight_decay beyond f32",
            Box::new(|c| c.weight_decay = 4e38),
            BNB_ERR_INVALID_ARGUMENT,
        ),
        (
            "eps < 0",
            Box::new(|c| c.eps = -1.0),
            BNB_ERR_INVALID_ARGUMENT,
        ),
        (
            "eps NaN",
            Box::new(|c| c.eps = f64::NAN),
            BNB_ERR_INVALID_ARGUMENT,
        ),
        (
            "beta1 = 1",
            Box::new(|c| c.beta1 = 1.0),
            BNB_ERR_INVALID_ARGUMENT,
        ),
        (
            "beta2 < 0",
            Box::new(|c| c.beta2 = -0.1),
            BNB_ERR_INVALID_ARGUMENT,
        ),
        (
            "beta2 NaN",
            Box::new(|c| c.beta2 = f64::NAN),
            BNB_ERR_INVALID_ARGUMENT,
        ),
        (
            "wd < 0",
            Box::new(|c| c.weight_decay = -0.01),
            BNB_ERR_INVALID_ARGUMENT,
        ),
        (
            "wd NaN",
            Box::new(|c| c.weight_decay = f64::NAN),
            BNB_ERR_INVALID_ARGUMENT,
        ),
        (
            "max_unorm < 0",
            Box::new(|c| c.max_unorm = -1.0),
            BNB_ERR_INVALID_ARGUMENT,
        ),
        (
            "percentile 0",
            Box::new(|c| c.percentile_clipping = 0),
            BNB_ERR_INVALID_ARGUMENT,
        ),
        (
            "percentile 101",
            Box::new(|c| c.percentile_clipping = 101),
            BNB_ERR_INVALID_ARGUMENT,
        ),
        (
            "struct_size 0",
            Box::new(|c| c.struct_size = 0),
            BNB_ERR_INVALID_ARGUMENT,
        ),
        (
            "struct_size small",
            Box::new(|c| c.struct_size = 16),
            BNB_ERR_INVALID_ARGUMENT,
        ),
    ];
    for (what, edit, want) in cases {
        let mut c = base;
        edit(&mut c);
        assert_eq!(create(&c), want, "{what}: {}", message());
        assert!(!message().is_empty(), "{what}");
    }
    // Accepted edge values: beta 0, eps 0, lr 0, percentile 1 and 100.
    for edit in [
        |c: &mut bnb_adam8bit_config_t| c.beta1 = 0.0,
        |c: &mut bnb_adam8bit_config_t| c.eps = 0.0,
        |c: &mut bnb_adam8bit_config_t| c.lr = 0.0,
        |c: &mut bnb_adam8bit_config_t| c.percentile_clipping = 1,
    ] {
        let mut c = base;
        edit(&mut c);
        assert_eq!(create(&c), BNB_OK, "{}", message());
    }
    let mut h: *mut bnb_adam8bit_t = null_mut();
    expect(
        unsafe { bnb_adam8bit_create(null(), BNB_DEVICE_CPU, 0, &mut h) },
        BNB_ERR_INVALID_ARGUMENT,
    );
    expect(
        unsafe { bnb_adam8bit_create(&base, 7, 0, &mut h) },
        BNB_ERR_INVALID_ARGUMENT,
    );
    expect(
        unsafe { bnb_adam8bit_create(&base, BNB_DEVICE_CPU, 3, &mut h) },
        BNB_ERR_INVALID_ARGUMENT,
    );
    expect(
        unsafe { bnb_adam8bit_create(&base, BNB_DEVICE_CPU, 0, null_mut()) },
        BNB_ERR_INVALID_ARGUMENT,
    );
}

/// The config as a caller compiled against a newer header would pass it: one more field, and
/// `struct_size` covering it.
#[repr(C)]
struct NewerConfig {
    cfg: bnb_adam8bit_config_t,
    future: u64,
}

impl NewerConfig {
    /// What a caller built against a newer header gets from this library's
    /// `bnb_adam8bit_config_default(&c, sizeof c)`; `future` is what was in memory before.
    fn new(future: u64) -> NewerConfig {
        let mut n = NewerConfig {
            cfg: config_default(),
            future,
        };
        let size = std::mem::size_of::<NewerConfig>();
        ok(unsafe { bnb_adam8bit_config_default((&mut n as *mut NewerConfig).cast(), size) });
        n
    }
}

#[test]
fn a_larger_struct_from_a_newer_caller_is_accepted_only_with_zero_unknown_fields() {
    // The defaults zero the field this library does not know and keep the caller's size, so
    // setting that field afterwards is refused rather than ignored.
    let mut n = NewerConfig::new(0xAB);
    assert_eq!(
        n.cfg.struct_size as usize,
        std::mem::size_of::<NewerConfig>()
    );
    assert_eq!(n.future, 0);
    assert_eq!(create(&n.cfg), BNB_OK);
    n.future = 1;
    assert_eq!(create(&n.cfg), BNB_ERR_UNSUPPORTED);
    assert!(message().contains("does not know"), "{}", message());
}

#[test]
fn reserved_bytes_and_bools_of_a_config_are_checked_before_it_is_read() {
    let base = config_default();
    assert_eq!(base.reserved, [0; 4]);
    let mut c = base;
    c.reserved[3] = 1;
    assert_eq!(create(&c), BNB_ERR_UNSUPPORTED);
    assert!(message().contains("does not know"), "{}", message());
    // A C caller can put any byte in a bool field; Rust may not read it as a bool.
    let offset = std::mem::offset_of!(bnb_adam8bit_config_t, is_paged);
    let mut raw = [0u8; std::mem::size_of::<bnb_adam8bit_config_t>()];
    unsafe { std::ptr::write_unaligned(raw.as_mut_ptr().cast(), base) };
    raw[offset] = 2;
    let mut h: *mut bnb_adam8bit_t = null_mut();
    expect(
        unsafe { bnb_adam8bit_create(raw.as_ptr().cast(), BNB_DEVICE_CPU, 0, &mut h) },
        BNB_ERR_INVALID_ARGUMENT,
    );
    assert!(message().contains("is_paged is 2"), "{}", message());
    assert!(h.is_null());
}

#[test]
fn config_outputs_write_at_most_the_callers_struct_size() {
    let h = Handle::new(&config_default());
    // An older caller's smaller struct: only its bytes are written, the rest untouched.
    let mut raw = [0xAAu8; SIZE];
    ok(unsafe { bnb_adam8bit_get_config(h.0, raw.as_mut_ptr().cast(), 16) });
    assert_eq!(u64::from_ne_bytes(raw[..8].try_into().unwrap()), 16);
    assert_eq!(f64::from_ne_bytes(raw[8..16].try_into().unwrap()), 1e-3);
    assert!(raw[16..].iter().all(|&b| b == 0xAA));
    // A newer caller's larger struct: ours is written, the rest zeroed, its size kept.
    let mut n = NewerConfig::new(0);
    n.cfg.lr = 0.5;
    n.future = 7;
    let size = std::mem::size_of::<NewerConfig>();
    ok(unsafe { bnb_adam8bit_config_preset(BNB_PRESET_ADAMW8BIT, &mut n.cfg, size) });
    assert_eq!(n.cfg, {
        let mut c = config_default();
        c.struct_size = size as u64;
        c.weight_decay = 0.01;
        c
    });
    assert_eq!(n.future, 0);
    // A size below the struct_size field itself, or implausibly large: nothing is written.
    let mut c = config_default();
    c.lr = 0.25;
    for size in [0usize, 7, (1 << 20) + 1] {
        expect(
            unsafe { bnb_adam8bit_get_config(h.0, &mut c, size) },
            BNB_ERR_INVALID_ARGUMENT,
        );
        assert_eq!((c.struct_size as usize, c.lr), (SIZE, 0.25));
    }
    // Parameter info: an older caller's struct ends after `step`; nothing past it is written.
    let id = h.add(10, BNB_DTYPE_F32);
    let mut raw = [0xAAu8; std::mem::size_of::<bnb_param_info_t>()];
    let end = std::mem::offset_of!(bnb_param_info_t, step) + 8;
    ok(unsafe { bnb_adam8bit_param_info(h.0, id, raw.as_mut_ptr().cast(), end) });
    assert_eq!(u64::from_ne_bytes(raw[8..16].try_into().unwrap()), 10);
    assert!(raw[end..].iter().all(|&b| b == 0xAA));
    // The whole struct: the reserved tail is written as zeros, not left as it was.
    let mut full = std::mem::MaybeUninit::<bnb_param_info_t>::uninit();
    unsafe { std::ptr::write_bytes(full.as_mut_ptr(), 0xAA, 1) };
    let size = std::mem::size_of::<bnb_param_info_t>();
    ok(unsafe { bnb_adam8bit_param_info(h.0, id, full.as_mut_ptr(), size) });
    assert_eq!(unsafe { full.assume_init() }.reserved, [0; 6]);
}

#[test]
fn null_handles_and_out_pointers_are_errors() {
    let mut id = 0u32;
    let mut info: bnb_param_info_t = unsafe { std::mem::zeroed() };
    const INFO: usize = std::mem::size_of::<bnb_param_info_t>();
    let mut bytes = 0u64;
    let mut buf = [0u8; 4];
    let h: *mut bnb_adam8bit_t = null_mut();
    let inv = BNB_ERR_INVALID_ARGUMENT;
    unsafe {
        expect(bnb_adam8bit_add_param(h, 10, BNB_DTYPE_F32, &mut id), inv);
        expect(
            bnb_adam8bit_add_param_ex(h, 10, BNB_DTYPE_F32, null(), &mut id),
            inv,
        );
        expect(
            bnb_adam8bit_step(
                h,
                0,
                buf.as_mut_ptr().cast(),
                buf.as_ptr().cast(),
                null_mut(),
            ),
            inv,
        );
        expect(bnb_adam8bit_step_many(h, null(), 0, null_mut()), inv);
        expect(bnb_adam8bit_set_lr(h, 1e-3), inv);
        expect(bnb_adam8bit_set_group_lr(h, 0, 1e-3), inv);
        expect(bnb_adam8bit_param_info(h, 0, &mut info, INFO), inv);
        expect(bnb_adam8bit_state_size(h, 0, BNB_STATE1, &mut bytes), inv);
        expect(
            bnb_adam8bit_read_state(h, 0, BNB_STATE1, buf.as_mut_ptr().cast(), 4),
            inv,
        );
        expect(
            bnb_adam8bit_write_state(h, 0, BNB_STATE1, buf.as_ptr().cast(), 4),
            inv,
        );
        expect(bnb_adam8bit_set_step(h, 0, 1), inv);
        expect(bnb_adam8bit_num_params(h, &mut id), inv);
        expect(bnb_adam8bit_get_config(h, null_mut(), SIZE), inv);
        bnb_adam8bit_destroy(null_mut());
    }
    let h = Handle::new(&config_default());
    unsafe {
        expect(
            bnb_adam8bit_add_param(h.0, 10, BNB_DTYPE_F32, null_mut()),
            inv,
        );
        expect(bnb_adam8bit_param_info(h.0, 0, null_mut(), INFO), inv);
        expect(bnb_adam8bit_num_params(h.0, null_mut()), inv);
        expect(bnb_adam8bit_get_config(h.0, null_mut(), SIZE), inv);
    }
    assert_eq!(
        h.info(h.add(10, BNB_DTYPE_F32)).numel,
        10,
        "failed calls registered nothing"
    );
}

#[test]
fn rejected_steps_change_nothing() {
    let h = Handle::new(&config_default());
    let mut rng = Rng(7);
    let (n0, n1) = (5000usize, 300usize);
    let a = h.add(n0 as u64, BNB_DTYPE_F32);
    let b = h.add(n1 as u64, BNB_DTYPE_BF16);
    let mut pa = random_f32(&mut rng, n0, 0.1);
    let ga = random_f32(&mut rng, n0, 0.01);
    let mut pb = vec![0u8; n1 * 2];
    let gb = vec![0x3cu8; n1 * 2];
    h.step(a, &mut pa, &ga);
    let before = snapshot(&h, &[a, b]);
    let pa_before = pa.clone();
    let items = |pa: &mut Vec<u8>, pb: &mut Vec<u8>| {
        [
            bnb_step_item_t {
                id: a,
                param: pa.as_mut_ptr().cast(),
                grad: ga.as_ptr().cast(),
            },
            bnb_step_item_t {
                id: b,
                param: pb.as_mut_ptr().cast(),
                grad: gb.as_ptr().cast(),
            },
        ]
    };
    let inv = BNB_ERR_INVALID_ARGUMENT;
    unsafe {
        // unknown id, duplicate ids, NULL buffers, misaligned, overlapping, stream on CPU
        let mut it = items(&mut pa, &mut pb);
        it[1].id = 9;
        expect(bnb_adam8bit_step_many(h.0, it.as_ptr(), 2, null_mut()), inv);
        let mut it = items(&mut pa, &mut pb);
        it[1] = it[0];
        expect(bnb_adam8bit_step_many(h.0, it.as_ptr(), 2, null_mut()), inv);
        let mut it = items(&mut pa, &mut pb);
        it[1].grad = null();
        expect(bnb_adam8bit_step_many(h.0, it.as_ptr(), 2, null_mut()), inv);
        let mut it = items(&mut pa, &mut pb);
        it[0].param = it[0].param.cast::<u8>().add(1).cast();
        expect(bnb_adam8bit_step_many(h.0, it.as_ptr(), 2, null_mut()), inv);
        let mut it = items(&mut pa, &mut pb);
        it[1].param = it[0].param.cast::<u8>().add(64).cast();
        expect(bnb_adam8bit_step_many(h.0, it.as_ptr(), 2, null_mut()), inv);
        let mut it = items(&mut pa, &mut pb);
        it[0].grad = it[0].param;
        expect(bnb_adam8bit_step_many(h.0, it.as_ptr(), 2, null_mut()), inv);
        let it = items(&mut pa, &mut pb);
        expect(
            bnb_adam8bit_step_many(h.0, it.as_ptr(), 2, 0x10 as *mut c_void),
            inv,
        );
        expect(bnb_adam8bit_step_many(h.0, null(), 2, null_mut()), inv);
        // the items array inside a parameter it would update, or misaligned
        let it = items(&mut pa, &mut pb);
        let inside = pa.as_mut_ptr().add(64).cast::<bnb_step_item_t>();
        assert!(inside.is_aligned());
        std::ptr::copy_nonoverlapping(it.as_ptr(), inside, 2);
        expect(bnb_adam8bit_step_many(h.0, inside, 2, null_mut()), inv);
        let misaligned = inside.cast::<u8>().add(1).cast::<bnb_step_item_t>();
        std::ptr::copy(
            inside.cast::<u8>(),
            misaligned.cast::<u8>(),
            2 * size_of_val(&it[0]),
        );
        expect(bnb_adam8bit_step_many(h.0, misaligned, 2, null_mut()), inv);
        pa.copy_from_slice(&pa_before);
        // an empty step is fine and changes nothing either
        expect(bnb_adam8bit_step_many(h.0, null(), 0, null_mut()), BNB_OK);
    }
    assert!(
        snapshot(&h, &[a, b]) == before,
        "a rejected step changed the state"
    );
    assert!(pa == pa_before, "a rejected step changed the parameter");
}

#[test]
fn state_accessors_check_kind_and_exact_size() {
    let mut cfg = config_default();
    cfg.max_unorm = 1.0;
    let h = Handle::new(&cfg);
    let blk = h.add(1000, BNB_DTYPE_F32); // below min_8bit_size: fp32 path
    let big = h.add(4097, BNB_DTYPE_F16);
    assert_eq!(h.info(blk).path, BNB_PATH_FP32);
    assert_eq!(h.info(big).path, BNB_PATH_BLOCKWISE8);
    assert_eq!(h.size(blk, BNB_STATE1), 4000);
    assert_eq!(h.size(big, BNB_STATE1), 4097);
    assert_eq!(h.size(big, BNB_ABSMAX2), 17 * 4);
    assert_eq!(h.size(big, BNB_QMAP1), 1024);
    assert_eq!(h.size(blk, BNB_UNORM_VEC), 4);
    for (id, absent) in [
        (blk, vec![BNB_ABSMAX1, BNB_QMAP1, BNB_MAX1, BNB_GNORM_VEC]),
        (big, vec![BNB_MAX2, BNB_UNORM_VEC]),
    ] {
        for k in absent {
            assert!(!h.has(id, k));
            let mut v = [0u8; 4];
            expect(
                unsafe { bnb_adam8bit_read_state(h.0, id, k, v.as_mut_ptr().cast(), 4) },
                BNB_ERR_INVALID_ARGUMENT,
            );
        }
    }
    let before = snapshot(&h, &[blk, big]);
    let mut v = vec![0u8; 4096];
    unsafe {
        expect(
            bnb_adam8bit_read_state(h.0, big, BNB_STATE1, v.as_mut_ptr().cast(), 4096),
            BNB_ERR_INVALID_ARGUMENT,
        );
        expect(
            bnb_adam8bit_write_state(h.0, big, BNB_STATE1, v.as_ptr().cast(), 4096),
            BNB_ERR_INVALID_ARGUMENT,
        );
        expect(
            bnb_adam8bit_read_state(h.0, big, 10, v.as_mut_ptr().cast(), 4),
            BNB_ERR_INVALID_ARGUMENT,
        );
        expect(
            bnb_adam8bit_read_state(h.0, big, -1, v.as_mut_ptr().cast(), 4),
            BNB_ERR_INVALID_ARGUMENT,
        );
        expect(
            bnb_adam8bit_read_state(h.0, 5, BNB_STATE1, v.as_mut_ptr().cast(), 4),
            BNB_ERR_INVALID_ARGUMENT,
        );
        expect(
            bnb_adam8bit_write_state(h.0, big, BNB_STATE1, null(), 4097),
            BNB_ERR_INVALID_ARGUMENT,
        );
        expect(
            bnb_adam8bit_read_state(h.0, big, BNB_STATE1, null_mut(), 4097),
            BNB_ERR_INVALID_ARGUMENT,
        );
    }
    // The maps are fixed: our own table is accepted, anything else is a mismatch.
    let q = h.read(big, BNB_QMAP1);
    h.write(big, BNB_QMAP1, &q);
    let mut q2 = q.clone();
    q2[4] ^= 1;
    expect(
        unsafe { bnb_adam8bit_write_state(h.0, big, BNB_QMAP1, q2.as_ptr().cast(), 1024) },
        BNB_ERR_MISMATCH,
    );
    assert!(snapshot(&h, &[blk, big]) == before);
    // Magnitudes are never negative; NaN and infinity are kept (a diverged run saves as is).
    let absmax = h.read(big, BNB_ABSMAX1);
    let mut neg = absmax.clone();
    neg[4..8].copy_from_slice(&(-1.0f32).to_le_bytes());
    expect(
        unsafe {
            bnb_adam8bit_write_state(h.0, big, BNB_ABSMAX1, neg.as_ptr().cast(), neg.len() as u64)
        },
        BNB_ERR_INVALID_ARGUMENT,
    );
    assert!(message().contains("absmax1[1]"), "{}", message());
    assert!(snapshot(&h, &[blk, big]) == before);
    let mut odd = absmax.clone();
    odd[0..4].copy_from_slice(&f32::NAN.to_le_bytes());
    odd[4..8].copy_from_slice(&f32::INFINITY.to_le_bytes());
    odd[8..12].copy_from_slice(&(-0.0f32).to_le_bytes());
    h.write(big, BNB_ABSMAX1, &odd);
    assert_eq!(h.read(big, BNB_ABSMAX1), odd);
    h.write(big, BNB_ABSMAX1, &absmax);
    // Written state reads back exactly.
    let codes: Vec<u8> = (0..4097).map(|i| (i * 7 % 256) as u8).collect();
    h.write(big, BNB_STATE2, &codes);
    assert_eq!(h.read(big, BNB_STATE2), codes);
    h.set_step(big, 41);
    assert_eq!(h.info(big).step, 41);
    expect(
        unsafe { bnb_adam8bit_set_step(h.0, big, u64::MAX) },
        BNB_ERR_INVALID_ARGUMENT,
    );
}

#[test]
fn add_param_validates_sizes_and_dtypes() {
    let h = Handle::new(&config_default());
    let mut id = 0u32;
    let inv = BNB_ERR_INVALID_ARGUMENT;
    unsafe {
        expect(bnb_adam8bit_add_param(h.0, 0, BNB_DTYPE_F32, &mut id), inv);
        expect(bnb_adam8bit_add_param(h.0, 10, 3, &mut id), inv);
        expect(bnb_adam8bit_add_param(h.0, 10, -1, &mut id), inv);
        // sizes beyond the address space are refused before any allocation
        expect(
            bnb_adam8bit_add_param(h.0, u64::MAX, BNB_DTYPE_F32, &mut id),
            inv,
        );
        expect(
            bnb_adam8bit_add_param(h.0, 1 << 62, BNB_DTYPE_F16, &mut id),
            inv,
        );
        let mut count = 9;
        ok(bnb_adam8bit_num_params(h.0, &mut count));
        assert_eq!(count, 0);
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let mut reference: Option<(Vec<Vec<u8>>, Snapshot)> = None;
    for threads in [1u32, 2, 3, 0] {
        ok(bnb_set_num_threads(threads));
        if threads > 0 {
            assert_eq!(bnb_get_num_threads(), threads);
        }
        let mut cfg = config_default();
        cfg.weight_decay = 0.01;
        let h = Handle::new(&cfg);
        let sizes = [300_000usize, 70_001, 4096, 1000, 1];
        let ids: Vec<u32> = sizes
            .iter()
            .map(|&n| h.add(n as u64, BNB_DTYPE_F32))
            .collect();
        let mut rng = Rng(99);
        let mut params: Vec<Vec<u8>> = sizes
            .iter()
            .map(|&n| random_f32(&mut rng, n, 0.1))
            .collect();
        for _ in 0..3 {
            let grads: Vec<Vec<u8>> = sizes
                .iter()
                .map(|&n| random_f32(&mut rng, n, 0.01))
                .collect();
            let items: Vec<bnb_step_item_t> = ids
                .iter()
                .zip(params.iter_mut())
                .zip(&grads)
                .map(|((&id, p), g)| bnb_step_item_t {
                    id,
                    param: p.as_mut_ptr().cast(),
                    grad: g.as_ptr().cast(),
                })
                .collect();
            ok(unsafe { bnb_adam8bit_step_many(h.0, items.as_ptr(), items.len(), null_mut()) });
        }
        let now = (params, snapshot(&h, &ids));
        match &reference {
            None => reference = Some(now),
            Some(r) => assert!(*r == now, "{threads} threads gave other bits"),
        }
    }
    expect(bnb_set_num_threads(100_000), BNB_ERR_INVALID_ARGUMENT);
}

/// Steps one parameter `steps` times on a handle with `cfg` and optional overrides; returns
/// the final parameter and state.
fn train(
    cfg: &bnb_adam8bit_config_t,
    opts: Option<&bnb_param_options_t>,
    n: usize,
    steps: usize,
) -> (Vec<u8>, Vec<Vec<u8>>) {
    let h = Handle::new(cfg);
    let id = match opts {
        Some(o) => h.add_ex(n as u64, BNB_DTYPE_F32, o),
        None => h.add(n as u64, BNB_DTYPE_F32),
    };
    let mut rng = Rng(5);
    let mut p = random_f32(&mut rng, n, 0.1);
    for _ in 0..steps {
        let g = random_f32(&mut rng, n, 0.01);
        h.step(id, &mut p, &g);
    }
    let s = snapshot(&h, &[id]).remove(0).2;
    (p, s)
}

#[test]
fn per_parameter_overrides_equal_a_handle_with_those_values() {
    let base = config_default();
    let mut o = param_options_default();
    o.flags = BNB_OPT_BETA1 | BNB_OPT_BETA2 | BNB_OPT_EPS | BNB_OPT_WEIGHT_DECAY | BNB_OPT_LR_SCALE;
    (o.beta1, o.beta2, o.eps, o.weight_decay, o.lr_scale) = (0.8, 0.95, 1e-6, 0.1, 0.5);
    let mut same = base;
    (same.beta1, same.beta2, same.eps, same.weight_decay, same.lr) = (0.8, 0.95, 1e-6, 0.1, 0.5e-3);
    assert!(train(&base, Some(&o), 5000, 4) == train(&same, None, 5000, 4));
    assert!(train(&base, Some(&o), 5000, 4) != train(&base, None, 5000, 4));

    // optim_bits = 32 keeps a large tensor (an embedding, say) in fp32 state.
    let h = Handle::new(&base);
    let mut o = param_options_default();
    o.flags = BNB_OPT_OPTIM_BITS;
    o.optim_bits = 32;
    let emb = h.add_ex(100_000, BNB_DTYPE_F32, &o);
    assert_eq!(h.info(emb).path, BNB_PATH_FP32);
    assert_eq!(h.info(emb).state_bytes, 800_000);
    o.optim_bits = 8;
    let q = h.add_ex(100_000, BNB_DTYPE_F32, &o);
    assert_eq!(h.info(q).path, BNB_PATH_BLOCKWISE8);
    assert_eq!(h.info(q).state_bytes, 200_000 + 2 * 4 * 391);
    // min_8bit_size per parameter
    o.flags = BNB_OPT_MIN_8BIT_SIZE;
    o.min_8bit_size = 100;
    assert_eq!(
        h.info(h.add_ex(100, BNB_DTYPE_F32, &o)).path,
        BNB_PATH_BLOCKWISE8
    );
    assert_eq!(h.info(h.add_ex(99, BNB_DTYPE_F32, &o)).path, BNB_PATH_FP32);

    // invalid overrides: nothing registered
    let mut count = 0;
    ok(unsafe { bnb_adam8bit_num_params(h.0, &mut count) });
    for edit in [
        |o: &mut bnb_param_options_t| (o.flags, o.optim_bits) = (BNB_OPT_OPTIM_BITS, 16),
        |o: &mut bnb_param_options_t| (o.flags, o.beta1) = (BNB_OPT_BETA1, 1.0),
        |o: &mut bnb_param_options_t| (o.flags, o.lr_scale) = (BNB_OPT_LR_SCALE, -1.0),
        |o: &mut bnb_param_options_t| (o.flags, o.eps) = (BNB_OPT_EPS, f64::NAN),
        |o: &mut bnb_param_options_t| o.flags = 1 << 20,
        |o: &mut bnb_param_options_t| o.struct_size = 8,
        |o: &mut bnb_param_options_t| {
            (o.flags, o.shard_full_numel, o.shard_offset) = (BNB_OPT_SHARD, 10_000, 100)
        },
        |o: &mut bnb_param_options_t| {
            (o.flags, o.shard_full_numel, o.shard_offset) = (BNB_OPT_SHARD, 1000, 512)
        },
        // ends mid-block, before the end of the tensor
        |o: &mut bnb_param_options_t| {
            (o.flags, o.shard_full_numel, o.shard_offset) = (BNB_OPT_SHARD, 10_000, 0)
        },
    ] {
        let mut o = param_options_default();
        edit(&mut o);
        let mut id = 0;
        expect(
            unsafe { bnb_adam8bit_add_param_ex(h.0, 1000, BNB_DTYPE_F32, &o, &mut id) },
            BNB_ERR_INVALID_ARGUMENT,
        );
    }
    let mut after = 0;
    ok(unsafe { bnb_adam8bit_num_params(h.0, &mut after) });
    assert_eq!(after, count);
}

#[test]
fn learning_rates_per_group_follow_the_scheduler() {
    let h = Handle::new(&config_default());
    let mut o = param_options_default();
    let a = h.add(5000, BNB_DTYPE_F32); // group 0
    o.group = 1;
    let b = h.add_ex(5000, BNB_DTYPE_F32, &o);
    o.flags = BNB_OPT_LR_SCALE;
    o.lr_scale = 0.1;
    let c = h.add_ex(5000, BNB_DTYPE_F32, &o); // group 1, a tenth of its rate
    assert_eq!(
        [h.info(a).lr, h.info(b).lr, h.info(c).lr],
        [1e-3, 1e-3, 1e-3 * 0.1]
    );
    ok(unsafe { bnb_adam8bit_set_group_lr(h.0, 1, 2e-3) });
    assert_eq!(
        [h.info(a).lr, h.info(b).lr, h.info(c).lr],
        [1e-3, 2e-3, 2e-3 * 0.1]
    );
    ok(unsafe { bnb_adam8bit_set_lr(h.0, 5e-4) });
    assert_eq!(
        [h.info(a).lr, h.info(b).lr, h.info(c).lr],
        [5e-4, 5e-4, 5e-4 * 0.1]
    );
    expect(
        unsafe { bnb_adam8bit_set_group_lr(h.0, 7, 1e-3) },
        BNB_ERR_INVALID_ARGUMENT,
    );
    expect(
        unsafe { bnb_adam8bit_set_lr(h.0, -1.0) },
        BNB_ERR_INVALID_ARGUMENT,
    );
    expect(
        unsafe { bnb_adam8bit_set_lr(h.0, f64::NAN) },
        BNB_ERR_INVALID_ARGUMENT,
    );
    assert_eq!(h.info(a).lr, 5e-4);
    // A scheduled lr equals a handle created with that lr, bit for bit.
    let mut cfg = config_default();
    cfg.lr = 5e-4;
    let direct = train(&cfg, None, 5000, 3);
    let h = Handle::new(&config_default());
    let id = h.add(5000, BNB_DTYPE_F32);
    ok(unsafe { bnb_adam8bit_set_lr(h.0, 5e-4) });
    let mut rng = Rng(5);
    let mut p = random_f32(&mut rng, 5000, 0.1);
    for _ in 0..3 {
        let g = random_f32(&mut rng, 5000, 0.01);
        h.step(id, &mut p, &g);
    }
    assert!(direct == (p, snapshot(&h, &[id]).remove(0).2));
}

#[test]
fn paged_on_a_cpu_handle_is_accepted_and_reported_unpaged() {
    let mut c = config_default();
    ok(unsafe { bnb_adam8bit_config_preset(BNB_PRESET_PAGED_ADAMW8BIT, &mut c, SIZE) });
    let h = Handle::new(&c);
    let id = h.add(200_000, BNB_DTYPE_F32);
    assert!(!h.info(id).paged);
    assert_eq!(train(&c, None, 5000, 2), {
        let mut plain = c;
        plain.is_paged = false;
        train(&plain, None, 5000, 2)
    });
}

#[test]
fn percentile_clipping_clips_a_spike_after_the_history_wrapped() {
    let mut cfg = config_default();
    cfg.percentile_clipping = 5;
    let h = Handle::new(&cfg);
    let n = 5000;
    let id = h.add(n as u64, BNB_DTYPE_F32);
    let mut rng = Rng(3);
    let mut p = random_f32(&mut rng, n, 0.1);
    let base: Vec<f32> = (0..n).map(|_| rng.normal() * 0.01).collect();
    for t in 1..=130u64 {
        // norms drift slowly upwards, then one step is 100x larger
        let scale = if t == 120 {
            100.0
        } else {
            1.0 + t as f32 * 1e-3
        };
        let g: Vec<u8> = base
            .iter()
            .flat_map(|x| (x * scale).to_le_bytes())
            .collect();
        h.step(id, &mut p, &g);
        let info = h.info(id);
        let hist = f32s(&h.read(id, BNB_GNORM_VEC));
        let mut sorted = hist.clone();
        sorted.sort_by(f32::total_cmp);
        let current = hist[(t % 100) as usize];
        if t == 120 {
            let expected = sorted[5].sqrt() / current.sqrt();
            assert!(
                info.gnorm_scale < 0.011,
                "spike not clipped: scale {}",
                info.gnorm_scale
            );
            assert!((info.gnorm_scale - expected).abs() <= 2.0 * f32::EPSILON * expected);
        } else if t == 1 {
            assert!(
                hist.iter().all(|&x| x == hist[0]),
                "warm start fills every slot"
            );
            assert_eq!(info.gnorm_scale, 1.0);
        } else {
            // slowly growing norms exceed the 6th smallest of the history: clipped mildly
            assert!(
                info.gnorm_scale <= 1.0 && info.gnorm_scale > 0.85,
                "t {t}: {}",
                info.gnorm_scale
            );
        }
    }
}

/// Callers compiled against ABI 3.0's headers pass the structs as they were then: the config
/// ended before `seed` (80 bytes), the parameter options before `seed` (88 bytes). Those sizes
/// are accepted, nothing past them is read or written, and the fields they lack mean "off".
#[test]
fn abi_3_0_struct_sizes_are_accepted_with_the_newer_fields_off() {
    const OLD_CONFIG: usize = 80;
    const OLD_OPTIONS: usize = 88;
    assert_eq!(
        std::mem::offset_of!(bnb_adam8bit_config_t, seed),
        OLD_CONFIG
    );
    assert_eq!(std::mem::offset_of!(bnb_param_options_t, seed), OLD_OPTIONS);

    // _default fills only the caller's bytes.
    let mut raw = [0xFFu8; SIZE];
    ok(unsafe { bnb_adam8bit_config_default(raw.as_mut_ptr().cast(), OLD_CONFIG) });
    assert_eq!(
        u64::from_ne_bytes(raw[..8].try_into().unwrap()),
        OLD_CONFIG as u64
    );
    assert!(raw[OLD_CONFIG..].iter().all(|&b| b == 0xFF));
    // The bytes past the old size would turn stochastic rounding on and be rejected as
    // invalid booleans if they were read.
    let mut h: *mut bnb_adam8bit_t = null_mut();
    ok(unsafe { bnb_adam8bit_create(raw.as_ptr().cast(), BNB_DEVICE_CPU, 0, &mut h) });
    let h = Handle(h);
    let got = {
        let mut c = config_default();
        ok(unsafe { bnb_adam8bit_get_config(h.0, &mut c, SIZE) });
        c
    };
    assert!(!got.stochastic_rounding && got.seed == 0);

    let opts_size = std::mem::size_of::<bnb_param_options_t>();
    let mut raw = vec![0xFFu8; opts_size];
    ok(unsafe { bnb_param_options_default(raw.as_mut_ptr().cast(), OLD_OPTIONS) });
    assert!(raw[OLD_OPTIONS..].iter().all(|&b| b == 0xFF));
    let mut id = u32::MAX;
    let add = |raw: &[u8], id: &mut u32| unsafe {
        bnb_adam8bit_add_param_ex(h.0, 5000, BNB_DTYPE_BF16, raw.as_ptr().cast(), id)
    };
    ok(add(&raw, &mut id));
    let info = h.info(id);
    assert!(
        !info.stochastic_rounding,
        "an ABI 3.0 caller's parameter rounds to nearest"
    );
    assert_eq!(info.rounding_key, adam8bit::rounding::default_key(5000, 0));

    // A size that is neither an earlier version's nor this one's is a caller's bug.
    for size in [OLD_OPTIONS + 8, opts_size - 1] {
        raw[..8].copy_from_slice(&(size as u64).to_ne_bytes());
        expect(add(&raw, &mut id), BNB_ERR_INVALID_ARGUMENT);
        assert!(message().contains("struct_size"), "{}", message());
    }
    assert_eq!(h.num_params(), 1);
}
