//! Checkpoints through the C ABI: round trips (file and buffer) that resume bit-identically,
//! every class of rejection with the handle left untouched, the documented layout read with
//! the safetensors crate alone, and the committed checkpoint of format version 1.

mod common;
use common::checkpoint::*;
use common::*;

use std::collections::HashMap;

use adam8bit::checkpoint::crc32::crc32;
use adam8bit::ffi::checkpoint::*;
use adam8bit::ffi::params::bnb_adam8bit_set_group_lr;
use adam8bit::ffi::types::*;
use safetensors::SafeTensors;

const SPECS: [(u64, bnb_dtype_t); 4] = [
    (5000, BNB_DTYPE_BF16),
    (300, BNB_DTYPE_F32),
    (4100, BNB_DTYPE_F16),
    (4500, BNB_DTYPE_F32),
];

/// Steps both handles with the same gradients and parameters.
fn step_both(a: &Handle, b: &Handle, seed: u64) {
    let mut rng = Rng(seed);
    for (id, &(n, dt)) in SPECS.iter().enumerate() {
        let p = random_elems(&mut rng, n as usize, dt, 1.0);
        let g = random_elems(&mut rng, n as usize, dt, 0.1);
        let (mut pa, mut pb) = (p.clone(), p);
        a.step(id as u32, &mut pa, &g);
        b.step(id as u32, &mut pb, &g);
        assert_eq!(pa, pb, "parameter {id} after resuming");
    }
}

#[test]
fn file_round_trip_resumes_bit_identically() {
    let dir = temp_dir("roundtrip");
    let path = dir.join("opt.safetensors");
    let a = mixed_handle(1, 5);
    ok(unsafe { bnb_adam8bit_set_group_lr(a.0, 1, 3e-4) });
    ok(a.save(&path));
    let b = mixed_empty();
    assert_ne!(a.snapshot(), b.snapshot());
    ok(b.load(&path));
    assert_eq!(a.snapshot(), b.snapshot());
    assert_eq!(b.info(2).lr, 3e-4 * 0.5);
    assert_eq!(b.info(1).step, 3);
    step_both(&a, &b, 99);
    assert_eq!(a.snapshot(), b.snapshot());
    // Saving again replaces the file and leaves no temporary file behind.
    ok(b.save(&path));
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("opt.safetensors")]);
    // A directory in the file's place stays where it is: an I/O error, nothing moved or left.
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("keep"), "kept").unwrap();
    assert_eq!(b.save(&sub), BNB_ERR_IO);
    assert!(message().contains("rename"), "{}", message());
    assert_eq!(std::fs::read_to_string(sub.join("keep")).unwrap(), "kept");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["opt.safetensors", "sub"]);
    // A directory that does not exist: an I/O error naming the path.
    assert_eq!(b.save(&dir.join("absent/opt.safetensors")), BNB_ERR_IO);
    assert!(message().contains("absent"), "{}", message());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn buffer_round_trip_and_size_checks() {
    let a = mixed_handle(2, 3);
    let bytes = a.serialize();
    let b = mixed_empty();
    ok(b.deserialize(&bytes));
    assert_eq!(a.snapshot(), b.snapshot());

    // A buffer one byte short: rejected, nothing written.
    let mut small = vec![0xAAu8; bytes.len() - 1];
    let mut written = 7u64;
    let st = unsafe {
        bnb_adam8bit_serialize(
            a.0,
            small.as_mut_ptr().cast(),
            small.len() as u64,
            &mut written,
        )
    };
    assert_eq!(st, BNB_ERR_INVALID_ARGUMENT);
    assert!(message().contains("needs"), "{}", message());
    assert!(small.iter().all(|&b| b == 0xAA));
    assert_eq!(written, bytes.len() as u64, "the size needed");

    // NULL pointers.
    let st = unsafe { bnb_adam8bit_serialize(a.0, std::ptr::null_mut(), 10, &mut written) };
    assert_eq!(st, BNB_ERR_INVALID_ARGUMENT);
    let st = unsafe { bnb_adam8bit_deserialize(b.0, std::ptr::null(), 10) };
    assert_eq!(st, BNB_ERR_INVALID_ARGUMENT);
    let st = unsafe { bnb_adam8bit_serialized_size(a.0, std::ptr::null_mut()) };
    assert_eq!(st, BNB_ERR_INVALID_ARGUMENT);
    let st = unsafe { bnb_adam8bit_save(a.0, std::ptr::null()) };
    assert_eq!(st, BNB_ERR_INVALID_ARGUMENT);
    let st = unsafe { bnb_adam8bit_load(std::ptr::null_mut(), c"x".as_ptr()) };
    assert_eq!(st, BNB_ERR_INVALID_ARGUMENT);
}

#[test]
fn files_are_deterministic_aligned_safetensors() {
    let a = mixed_handle(8, 2);
    let bytes = a.serialize();
    assert_eq!(a.serialize(), bytes, "serializing twice");
    let dir = temp_dir("deterministic");
    let path = dir.join("opt.safetensors");
    ok(a.save(&path));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "save against serialize"
    );
    std::fs::remove_dir_all(&dir).unwrap();

    // The header is padded to 8 bytes and every F32 array starts 4-byte aligned in the file.
    let header = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(header % 8, 0);
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let mut f32_arrays = 0;
    for (name, info) in meta.tensors() {
        if info.dtype == safetensors::Dtype::F32 {
            assert_eq!((8 + header + info.data_offsets.0) % 4, 0, "{name}");
            f32_arrays += 1;
        }
    }
    assert!(f32_arrays > 0);

    // A buffer larger than needed: the checkpoint at its start, the rest untouched.
    let mut big = vec![0x5Au8; bytes.len() + 100];
    let mut written = 0u64;
    ok(unsafe {
        bnb_adam8bit_serialize(a.0, big.as_mut_ptr().cast(), big.len() as u64, &mut written)
    });
    assert_eq!(written as usize, bytes.len());
    assert_eq!(&big[..bytes.len()], &bytes[..]);
    assert!(big[bytes.len()..].iter().all(|&b| b == 0x5A));

    // Twelve parameters: ours orders them by number (param.2 before param.10), the safetensors
    // crate by name. Both layouts load to the same state.
    let mut cfg = config_default();
    cfg.min_8bit_size = 4096;
    let many = Handle::new(&cfg);
    let empty = Handle::new(&cfg);
    let mut rng = Rng(3);
    for i in 0..12u32 {
        let n = if i % 2 == 0 { 5000 } else { 300 };
        assert_eq!(
            (many.add(n, BNB_DTYPE_F32), empty.add(n, BNB_DTYPE_F32)),
            (i, i)
        );
        let mut p = random_elems(&mut rng, n as usize, BNB_DTYPE_F32, 1.0);
        many.step(
            i,
            &mut p,
            &random_elems(&mut rng, n as usize, BNB_DTYPE_F32, 0.1),
        );
    }
    let ours = many.serialize();
    assert_eq!(many.serialize(), ours);
    let order = |bytes: &[u8]| {
        let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
        meta.offset_keys()
    };
    let keys = order(&ours);
    let at = |k: &str| keys.iter().position(|n| n == k).unwrap();
    assert!(at("param.2.state1") < at("param.10.state1"), "{keys:?}");
    let foreign = with_metadata(&ours, |_| {});
    assert_ne!(order(&foreign), keys);
    for bytes in [&ours, &foreign] {
        ok(empty.deserialize(bytes));
        assert_eq!(empty.snapshot(), many.snapshot());
    }
}

#[test]
fn metadata_over_the_safetensors_header_limit_is_unsupported_and_writes_nothing() {
    // About 400 bytes of header per one-element parameter: 260,000 of them pass 100 MB.
    let h = Handle::new(&config_default());
    for _ in 0..260_000 {
        h.add(1, BNB_DTYPE_F32);
    }
    let dir = temp_dir("header-limit");
    assert_eq!(h.save(&dir.join("opt.safetensors")), BNB_ERR_UNSUPPORTED);
    assert!(message().contains("limit"), "{}", message());
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "no file, no temporary"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Loads `bytes` into `h`, expects `status` and a message containing `needle`, and checks
/// that `h` did not change.
#[track_caller]
fn rejected(h: &Handle, bytes: &[u8], status: bnb_status_t, needle: &str) {
    let before = h.snapshot();
    let st = h.deserialize(bytes);
    assert_eq!(st, status, "message: {}", message());
    assert!(
        message().contains(needle),
        "`{}` lacks `{needle}`",
        message()
    );
    assert_eq!(before, h.snapshot(), "a rejected load changed the handle");
}

#[test]
fn mismatches_are_named_and_leave_the_handle_untouched() {
    let bytes = mixed_handle(3, 2).serialize();

    let mut cfg = config_default();
    cfg.weight_decay = 0.01;
    cfg.beta2 = 0.99;
    let h = Handle::new(&cfg);
    for &(n, dt) in &SPECS {
        h.add(n, dt);
    }
    rejected(&h, &bytes, BNB_ERR_MISMATCH, "config.beta2");

    // Same config, but parameter 2 lacks its overrides and parameter 3 is smaller.
    cfg.beta2 = 0.999;
    let h = Handle::new(&cfg);
    h.add(5000, BNB_DTYPE_BF16);
    h.add(300, BNB_DTYPE_F32);
    h.add(4100, BNB_DTYPE_F16);
    rejected(
        &h,
        &bytes,
        BNB_ERR_MISMATCH,
        "4 parameters, the handle has 3",
    );
    h.add(4400, BNB_DTYPE_F32);
    rejected(&h, &bytes, BNB_ERR_MISMATCH, "parameter 2.group");

    let h = mixed_handle(4, 1);
    let other_dtype = Handle::new(&cfg);
    other_dtype.add(5000, BNB_DTYPE_F16);
    for &(n, dt) in &SPECS[1..] {
        other_dtype.add(n, dt);
    }
    rejected(&other_dtype, &bytes, BNB_ERR_MISMATCH, "parameter 0.dtype");
    // A stepped handle whose registrations fit loads, and lr differences are allowed.
    ok(h.deserialize(&bytes));

    let mut cfg_lr = cfg;
    cfg_lr.lr = 5e-2;
    cfg_lr.is_paged = true;
    let h = Handle::new(&cfg_lr);
    for (i, &(n, dt)) in SPECS.iter().enumerate() {
        let mut o = param_options_default();
        if i == 2 {
            o.group = 1;
            o.flags = BNB_OPT_LR_SCALE | BNB_OPT_BETA1;
            o.lr_scale = 0.5;
            o.beta1 = 0.8;
        }
        if i == 3 {
            o.flags = BNB_OPT_OPTIM_BITS;
            o.optim_bits = 32;
        }
        h.add_ex(n, dt, &o);
    }
    ok(h.deserialize(&bytes));
    assert_eq!(
        h.info(0).lr,
        1e-3,
        "the checkpoint's lr replaces the handle's"
    );
}

/// The metadata of a checkpoint file, as the safetensors crate reads it.
fn metadata(bytes: &[u8]) -> HashMap<String, String> {
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    meta.metadata().clone().unwrap()
}

/// The data offsets of tensor `name`.
fn meta_info(bytes: &[u8], name: &str) -> (usize, usize) {
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    meta.info(name).unwrap().data_offsets
}

/// Rewrites a checkpoint with edited metadata (and a correct header checksum, per the rule in
/// docs/checkpoint.md), keeping its tensors.
fn with_metadata(bytes: &[u8], edit: impl FnOnce(&mut HashMap<String, String>)) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let mut meta = metadata(bytes);
    edit(&mut meta);
    let text: String = adam8bit::checkpoint::manifest::COVERED
        .iter()
        .map(|k| format!("{}\n", meta[*k]))
        .collect();
    meta.insert(
        "header_crc32".into(),
        format!("{:08x}", crc32(text.as_bytes())),
    );
    safetensors::serialize(st.tensors(), Some(meta)).unwrap()
}

#[test]
fn damage_and_foreign_files_are_rejected() {
    let bytes = mixed_handle(5, 2).serialize();
    let h = mixed_handle(6, 1);

    // One byte of state2 data of parameter 0 flipped: the checksum names it.
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let data_start = bytes.len()
        - st.tensors()
            .iter()
            .map(|(_, t)| t.data().len())
            .sum::<usize>();
    let (s, _) = meta_info(&bytes, "param.0.state2");
    let mut damaged = bytes.clone();
    damaged[data_start + s + 17] ^= 0x10;
    rejected(
        &h,
        &damaged,
        BNB_ERR_CORRUPT,
        "parameter 0.state2: checksum mismatch",
    );

    rejected(&h, &bytes[..bytes.len() - 1], BNB_ERR_CORRUPT, "");
    rejected(&h, &bytes[..5], BNB_ERR_CORRUPT, "too short");
    let mut huge = bytes.clone();
    huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    rejected(&h, &huge, BNB_ERR_CORRUPT, "exceeds");

    // A valid safetensors file that is not ours.
    let foreign = with_metadata(&bytes, |m| {
        m.insert("format".into(), "something-else".into());
    });
    rejected(
        &h,
        &foreign,
        BNB_ERR_CORRUPT,
        "not a libadam8bit checkpoint",
    );
    // A newer format version: valid, but not for this library.
    let newer = with_metadata(&bytes, |m| {
        m.insert("format_version".into(), "3".into());
    });
    rejected(&h, &newer, BNB_ERR_MISMATCH, "newer");
    // Metadata edited without fixing the checksum.
    let mut meta = metadata(&bytes);
    meta.insert(
        "params".into(),
        meta["params"].replace("\"step\":2", "\"step\":9"),
    );
    let edited = safetensors::serialize(
        SafeTensors::deserialize(&bytes).unwrap().tensors(),
        Some(meta),
    )
    .unwrap();
    rejected(&h, &edited, BNB_ERR_CORRUPT, "metadata checksum mismatch");
    // Edited consistently but contradicting itself: a 5000-element parameter on the fp32 path.
    let contradicting = with_metadata(&bytes, |m| {
        let p = m["params"].replacen("\"path\":\"blockwise8\"", "\"path\":\"fp32\"", 1);
        m.insert("params".into(), p);
    });
    rejected(&h, &contradicting, BNB_ERR_CORRUPT, "parameter 0.path");

    // A negative absmax with every checksum correct: impossible state, named.
    let (s, _) = meta_info(&bytes, "param.0.absmax1");
    let mut negative = bytes.clone();
    negative[data_start + s + 8..data_start + s + 12].copy_from_slice(&(-0.5f32).to_le_bytes());
    let st = SafeTensors::deserialize(&negative).unwrap();
    let crc = crc32(st.tensor("param.0.absmax1").unwrap().data());
    let negative = with_metadata(&negative, |m| {
        let mut params: serde_json::Value = serde_json::from_str(&m["params"]).unwrap();
        params[0]["crc32"]["absmax1"] = crc.into();
        m.insert("params".into(), params.to_string());
    });
    rejected(
        &h,
        &negative,
        BNB_ERR_CORRUPT,
        "parameter 0.absmax1: element 2 is -0.5",
    );

    let dir = temp_dir("damage");
    let st = h.load(&dir.join("missing.safetensors"));
    assert_eq!(st, BNB_ERR_IO);
    assert!(message().contains("missing.safetensors"), "{}", message());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn layout_matches_the_documentation() {
    let h = mixed_handle(8, 2);
    let bytes = h.serialize();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let mut want = Vec::new();
    // (numel, 8-bit?) of the four parameters of mixed_handle.
    for (i, (n, eight)) in [(5000usize, true), (300, false), (4100, true), (4500, false)]
        .into_iter()
        .enumerate()
    {
        let blocks = n.div_ceil(256);
        let code = if eight {
            safetensors::Dtype::U8
        } else {
            safetensors::Dtype::F32
        };
        let mut expect = vec![("state1", code, n), ("state2", code, n)];
        if eight {
            expect.extend([
                ("qmap1", safetensors::Dtype::F32, 256),
                ("qmap2", safetensors::Dtype::F32, 256),
                ("absmax1", safetensors::Dtype::F32, blocks),
                ("absmax2", safetensors::Dtype::F32, blocks),
            ]);
        }
        for (key, dtype, len) in expect {
            let name = format!("param.{i}.{key}");
            let t = st.tensor(&name).unwrap();
            assert_eq!((t.dtype(), t.shape()), (dtype, &[len][..]), "{name}");
            want.push(name);
        }
    }
    want.sort();
    assert_eq!(names, want);

    let meta = metadata(&bytes);
    assert_eq!(meta["format"], "libadam8bit-adam8bit-checkpoint");
    assert_eq!(meta["format_version"], "1");
    assert_eq!(meta["library_version"], env!("CARGO_PKG_VERSION"));
    let params: serde_json::Value = serde_json::from_str(&meta["params"]).unwrap();
    assert_eq!(params[0]["step"], serde_json::json!(2));
    assert_eq!(params[0]["dtype"], "bf16");
    assert_eq!(params[2]["group"], 1);
    assert_eq!(params[2]["lr_scale"], 0.5);
    let state2 = st.tensor("param.0.state2").unwrap();
    assert_eq!(params[0]["crc32"]["state2"], crc32(state2.data()));
    let config: serde_json::Value = serde_json::from_str(&meta["config"]).unwrap();
    assert_eq!(config["weight_decay"], 0.01);
    let groups: serde_json::Value = serde_json::from_str(&meta["groups"]).unwrap();
    assert_eq!(
        groups,
        serde_json::json!([{"group": 0, "lr": 1e-3}, {"group": 1, "lr": 1e-3}])
    );
}

/// Per parameter: step, lr, and the FNV-1a of every array.
type Digests = Vec<(u64, f64, Vec<(bnb_state_kind_t, u64)>)>;

/// FNV-1a, to pin the fixture's arrays in a few lines.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

fn fixture() -> std::path::PathBuf {
    data_dir().join("checkpoints/v1.safetensors")
}

/// Every later library must keep loading this file (format version 1) with exactly these
/// contents. `BNB_BLESS_CHECKPOINTS=1` rewrites it from the current library; do that only
/// when adding a new version's file, never to make this test pass.
#[test]
fn format_version_1_fixture_loads_exactly() {
    if std::env::var_os("BNB_BLESS_CHECKPOINTS").is_some() {
        let h = mixed_handle(7, 3);
        ok(unsafe { bnb_adam8bit_set_group_lr(h.0, 1, 2.5e-4) });
        std::fs::create_dir_all(fixture().parent().unwrap()).unwrap();
        ok(h.save(&fixture()));
    }
    let bytes = std::fs::read(fixture()).unwrap();
    assert_eq!(metadata(&bytes)["format_version"], "1");
    let h = mixed_empty();
    ok(h.load(&fixture()));
    let got: Digests = h
        .snapshot()
        .into_iter()
        .map(|(step, lr, arrays)| {
            (
                step,
                lr,
                arrays.into_iter().map(|(k, a)| (k, fnv(&a))).collect(),
            )
        })
        .collect();
    let want = expected_fixture();
    if got != want {
        eprintln!("{got:#x?}");
    }
    assert_eq!(got, want);
}

/// Step, lr and the FNV-1a of every array of the four parameters (parameter 2 is in group 1,
/// lr 2.5e-4 with lr_scale 0.5; parameter 1 skipped every other step).
fn expected_fixture() -> Digests {
    let qmaps = [
        (BNB_QMAP1, 0xd677f22a96665bc4),
        (BNB_QMAP2, 0x43811b16730a873e),
    ];
    vec![
        (
            3,
            1e-3,
            [
                (BNB_STATE1, 0xa0d54b82c745de68),
                (BNB_STATE2, 0x74baec3cedb1afd0),
                (BNB_ABSMAX1, 0x7bbb49c67e1270ee),
                (BNB_ABSMAX2, 0x8e038b12ac1395f4),
            ]
            .into_iter()
            .chain(qmaps)
            .collect(),
        ),
        (
            2,
            1e-3,
            vec![
                (BNB_STATE1, 0xadd37e30201ff468),
                (BNB_STATE2, 0x3ab6ae09aa45c061),
            ],
        ),
        (
            3,
            1.25e-4,
            [
                (BNB_STATE1, 0xe35d8f2e94fdc001),
                (BNB_STATE2, 0xf1e54e8e417217fe),
                (BNB_ABSMAX1, 0x1c311ac2af575ac1),
                (BNB_ABSMAX2, 0x58969d95ab0de62b),
            ]
            .into_iter()
            .chain(qmaps)
            .collect(),
        ),
        (
            3,
            1e-3,
            vec![
                (BNB_STATE1, 0xb7fa29f4876b4fc7),
                (BNB_STATE2, 0x3f9afa604006b80b),
            ],
        ),
    ]
}

#[test]
fn shard_range_arguments_are_checked() {
    let (mut off, mut len) = (1u64, 1u64);
    for (full, rank, world) in [(0u64, 0u32, 1u32), (10, 0, 0), (10, 3, 3)] {
        let st = unsafe { bnb_shard_range(full, rank, world, &mut off, &mut len) };
        assert_eq!(st, BNB_ERR_INVALID_ARGUMENT);
        assert_eq!((off, len), (1, 1));
    }
    let st = unsafe { bnb_shard_range(10, 0, 1, std::ptr::null_mut(), &mut len) };
    assert_eq!(st, BNB_ERR_INVALID_ARGUMENT);
    // A misaligned output is refused; one pointer for both outputs is written twice, in order.
    let mut words = [0u64; 2];
    let misaligned = unsafe { words.as_mut_ptr().cast::<u8>().add(1).cast::<u64>() };
    let st = unsafe { bnb_shard_range(10, 0, 1, misaligned, &mut len) };
    assert_eq!(st, BNB_ERR_INVALID_ARGUMENT);
    assert!(message().contains("not aligned"), "{}", message());
    assert_eq!(words, [0, 0]);
    let both: *mut u64 = &mut off;
    let st = unsafe { bnb_shard_range(5000, 2, 3, both, both) };
    assert_eq!((st, off), (BNB_OK, 1416), "the length, written last");
    assert_eq!(shard_range(10, 0, 1), (0, 10));
    // 5000 elements = 20 blocks over 3 ranks: 7, 7, 6 blocks; the last ends in a partial block.
    assert_eq!(shard_range(5000, 0, 3), (0, 1792));
    assert_eq!(shard_range(5000, 1, 3), (1792, 1792));
    assert_eq!(shard_range(5000, 2, 3), (3584, 1416));
    // 300 elements = 2 blocks over 3 ranks: rank 2 is empty.
    assert_eq!(shard_range(300, 1, 3), (256, 44));
    assert_eq!(shard_range(300, 2, 3), (300, 0));
    // Near 2^64 the bounds must not wrap.
    assert_eq!(shard_range(u64::MAX, 0, 1), (0, u64::MAX));
    let half = (u64::MAX / 256).div_ceil(2) * 256;
    assert_eq!(shard_range(u64::MAX, 0, 2), (0, half));
    assert_eq!(shard_range(u64::MAX, 1, 2), (half, u64::MAX - half));
}

/// The other arrays: `max1`/`max2` (non-blockwise), `gnorm_vec` (percentile clipping),
/// `unorm_vec` (max_unorm) survive a round trip, and such a checkpoint cannot be split.
#[test]
fn non_blockwise_clipping_and_unorm_round_trip() {
    let mut cfg = config_default();
    cfg.block_wise = false;
    cfg.percentile_clipping = 5;
    cfg.max_unorm = 1.0;
    let make = || {
        let h = Handle::new(&cfg);
        h.add(5000, BNB_DTYPE_F32);
        h.add(300, BNB_DTYPE_F16);
        h
    };
    let a = make();
    let mut rng = Rng(21);
    let mut p: Vec<Vec<u8>> = vec![
        random_elems(&mut rng, 5000, BNB_DTYPE_F32, 1.0),
        random_elems(&mut rng, 300, BNB_DTYPE_F16, 1.0),
    ];
    for _ in 0..3 {
        let g0 = random_elems(&mut rng, 5000, BNB_DTYPE_F32, 0.1);
        let g1 = random_elems(&mut rng, 300, BNB_DTYPE_F16, 0.1);
        a.step(0, &mut p[0], &g0);
        a.step(1, &mut p[1], &g1);
    }
    let bytes = a.serialize();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for name in [
        "param.0.max1",
        "param.0.max2",
        "param.0.gnorm_vec",
        "param.0.unorm_vec",
        "param.1.gnorm_vec",
        "param.1.unorm_vec",
    ] {
        assert!(st.tensor(name).is_ok(), "{name} missing");
    }
    assert!(st.tensor("param.0.absmax1").is_err() && st.tensor("param.1.qmap1").is_err());
    let b = make();
    ok(b.deserialize(&bytes));
    assert_eq!(a.snapshot(), b.snapshot());
    let g = random_elems(&mut rng, 5000, BNB_DTYPE_F32, 0.1);
    let (mut pa, mut pb) = (p[0].clone(), p[0].clone());
    a.step(0, &mut pa, &g);
    b.step(0, &mut pb, &g);
    assert_eq!(pa, pb);
    assert_eq!(a.snapshot(), b.snapshot());

    let dir = temp_dir("nonblockwise");
    let path = dir.join("full.safetensors");
    ok(a.save(&path));
    let prefix = cpath(&dir.join("part"));
    let st = unsafe { bnb_checkpoint_split(cpath(&path).as_ptr(), 2, prefix.as_ptr()) };
    assert_eq!(st, BNB_ERR_UNSUPPORTED, "{}", message());
    assert!(message().contains("parameter 0"), "{}", message());
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "a refused split wrote files"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn fixture_v2() -> std::path::PathBuf {
    data_dir().join("checkpoints/v2.safetensors")
}

/// The handle of the version-2 fixture: stochastic rounding on (seed 0xDEC0DE), a bf16
/// parameter with the default key, an fp16 one with its own seed and key, a bf16 one with
/// rounding turned off. With `steps`, stepped that often from seeded parameters; returns the
/// handle and the parameters.
fn rounding_handle(steps: usize) -> (Handle, Vec<Vec<u8>>) {
    let mut cfg = config_default();
    cfg.stochastic_rounding = true;
    cfg.seed = 0xDEC0DE;
    let h = Handle::new(&cfg);
    let specs: [(u64, bnb_dtype_t); 3] = [
        (5000, BNB_DTYPE_BF16),
        (300, BNB_DTYPE_F16),
        (4096, BNB_DTYPE_BF16),
    ];
    for (i, &(n, dt)) in specs.iter().enumerate() {
        let mut o = param_options_default();
        match i {
            1 => {
                o.flags = BNB_OPT_SEED | BNB_OPT_ROUNDING_KEY;
                o.seed = 5;
                o.rounding_key = 77;
            }
            2 => o.flags = BNB_OPT_STOCHASTIC_ROUNDING,
            _ => {}
        }
        h.add_ex(n, dt, &o);
    }
    let mut rng = Rng(19);
    let mut params: Vec<Vec<u8>> = specs
        .iter()
        .map(|&(n, dt)| random_elems(&mut rng, n as usize, dt, 1.0))
        .collect();
    for _ in 0..steps {
        for (id, &(n, dt)) in specs.iter().enumerate() {
            let g = random_elems(&mut rng, n as usize, dt, 0.1);
            h.step(id as u32, &mut params[id], &g);
        }
    }
    (h, params)
}

/// Every later library must keep loading this file (format version 2: rule 19's settings)
/// with exactly these contents, and the step after it must draw exactly as it did when the
/// file was made (so the draws' definition cannot drift). `BNB_BLESS_CHECKPOINTS=1` rewrites
/// it, like the version-1 file.
#[test]
fn format_version_2_fixture_loads_exactly_and_continues_the_same_draws() {
    if std::env::var_os("BNB_BLESS_CHECKPOINTS").is_some() {
        ok(rounding_handle(3).0.save(&fixture_v2()));
    }
    let bytes = std::fs::read(fixture_v2()).unwrap();
    let meta = metadata(&bytes);
    assert_eq!(meta["format_version"], "2");
    let config: serde_json::Value = serde_json::from_str(&meta["config"]).unwrap();
    assert_eq!(
        (&config["stochastic_rounding"], &config["seed"]),
        (&serde_json::json!(true), &serde_json::json!(0xDEC0DE))
    );
    let params: serde_json::Value = serde_json::from_str(&meta["params"]).unwrap();
    let default_key = adam8bit::rounding::default_key(5000, 0);
    assert_eq!(params[0]["key"], serde_json::json!(default_key));
    assert_eq!(params[1]["rounding_key"], serde_json::json!(77));
    assert_eq!(params[1]["seed"], serde_json::json!(5));
    assert_eq!(params[2]["stochastic_rounding"], serde_json::json!(false));

    let (h, mut p) = rounding_handle(3);
    let loaded = rounding_handle(0).0;
    ok(loaded.load(&fixture_v2()));
    assert!(
        loaded.snapshot() == h.snapshot(),
        "the fixture holds the run's state"
    );
    let keys: Vec<(bool, u64)> = (0..3)
        .map(|id| {
            let i = loaded.info(id);
            (i.stochastic_rounding, i.rounding_key)
        })
        .collect();
    assert_eq!(
        keys,
        [
            (true, default_key),
            (true, 77),
            (false, adam8bit::rounding::default_key(4096, 0))
        ]
    );
    // One more step of the loaded handle, from the run's parameters: pinned bits.
    let mut rng = Rng(2026);
    let mut digest = Vec::new();
    for (id, p) in p.iter_mut().enumerate() {
        let g = random_elems(&mut rng, p.len() / 2, loaded.info(id as u32).dtype, 0.1);
        loaded.step(id as u32, p, &g);
        digest.push(fnv(p));
    }
    assert_eq!(
        digest,
        [
            14732920665513588328,
            16260123076271394188,
            16667032783293928186
        ]
    );
}
