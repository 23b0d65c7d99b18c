//! Shards: a tensor registered as slices cut by `bnb_shard_range` steps bit-identically to the
//! same slices of the whole tensor (blockwise 8-bit, and the 32-bit path, decided by
//! full_numel), and checkpoints of the shards merge into the whole run's checkpoint and split
//! back, through the library and through the `adam8bit-ckpt` tool.

mod common;
use common::checkpoint::*;
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

use adam8bit::ffi::types::*;

/// (full_numel, dtype, path it must take). 5000 elements stay 8-bit even though every slice
/// is below min_8bit_size; 3000 takes the 32-bit path; 300 has only two blocks, so rank 2 of
/// 3 holds none of it.
const TENSORS: [(u64, bnb_dtype_t, bnb_path_t); 4] = [
    (5000, BNB_DTYPE_BF16, BNB_PATH_BLOCKWISE8),
    (3000, BNB_DTYPE_F32, BNB_PATH_FP32),
    (300, BNB_DTYPE_F32, BNB_PATH_FP32),
    (9000, BNB_DTYPE_F16, BNB_PATH_BLOCKWISE8),
];
const STEPS: usize = 4;

fn config() -> bnb_adam8bit_config_t {
    let mut c = config_default();
    c.weight_decay = 0.01;
    c
}

/// Initial parameters and the gradients of every step, per tensor.
fn data() -> (Vec<Vec<u8>>, Vec<Vec<Vec<u8>>>) {
    let mut rng = Rng(42);
    let init = TENSORS
        .iter()
        .map(|&(n, dt, _)| random_elems(&mut rng, n as usize, dt, 1.0))
        .collect();
    let grads = (0..STEPS)
        .map(|_| {
            TENSORS
                .iter()
                .map(|&(n, dt, _)| random_elems(&mut rng, n as usize, dt, 0.1))
                .collect()
        })
        .collect();
    (init, grads)
}

/// The unsharded run: its handle and final parameters.
fn full_run() -> (Handle, Vec<Vec<u8>>) {
    let (mut params, grads) = data();
    let h = Handle::new(&config());
    for &(n, dt, _) in &TENSORS {
        h.add(n, dt);
    }
    for g in &grads {
        for (id, p) in params.iter_mut().enumerate() {
            h.step(id as u32, p, &g[id]);
        }
    }
    (h, params)
}

/// Tensor index and slice of every parameter rank `rank` registers, in order.
fn slices(rank: u32, world: u32) -> Vec<(usize, u64, u64)> {
    TENSORS
        .iter()
        .enumerate()
        .map(|(t, &(n, _, _))| {
            let (off, len) = shard_range(n, rank, world);
            (t, off, len)
        })
        .filter(|&(_, _, len)| len > 0)
        .collect()
}

/// A handle for rank `rank` with its slices registered (no steps).
fn shard_handle(rank: u32, world: u32) -> Handle {
    let h = Handle::new(&config());
    for (t, off, len) in slices(rank, world) {
        let mut o = param_options_default();
        o.flags = BNB_OPT_SHARD;
        o.shard_full_numel = TENSORS[t].0;
        o.shard_offset = off;
        h.add_ex(len, TENSORS[t].1, &o);
    }
    h
}

/// Rank `rank`'s run: its handle and final parameter slices.
fn shard_run(rank: u32, world: u32) -> (Handle, Vec<Vec<u8>>) {
    let (init, grads) = data();
    let h = shard_handle(rank, world);
    let cut = |v: &[u8], t: usize, off: u64, len: u64| {
        let e = elem_size(TENSORS[t].1);
        v[off as usize * e..(off + len) as usize * e].to_vec()
    };
    let mut params: Vec<Vec<u8>> = slices(rank, world)
        .iter()
        .map(|&(t, off, len)| cut(&init[t], t, off, len))
        .collect();
    for g in &grads {
        for (id, &(t, off, len)) in slices(rank, world).iter().enumerate() {
            let gs = cut(&g[t], t, off, len);
            h.step(id as u32, &mut params[id], &gs);
        }
    }
    (h, params)
}

/// Bytes of array `kind` belonging to elements `[off, off+len)` of the whole tensor's array.
fn cut_array(full: &[u8], kind: bnb_state_kind_t, numel: u64, off: u64, len: u64) -> Vec<u8> {
    let (unit, elem) = match kind {
        BNB_ABSMAX1 | BNB_ABSMAX2 => (256, 4),
        BNB_QMAP1 | BNB_QMAP2 => return full.to_vec(),
        _ => (1, full.len() as u64 / numel),
    };
    full[(off / unit * elem) as usize..((off + len).div_ceil(unit) * elem) as usize].to_vec()
}

#[test]
fn shards_step_exactly_like_slices_of_the_whole_tensor() {
    let (full, full_params) = full_run();
    for world in [2u32, 3] {
        for rank in 0..world {
            let (h, params) = shard_run(rank, world);
            for (id, &(t, off, len)) in slices(rank, world).iter().enumerate() {
                let id = id as u32;
                let what = format!("world {world} rank {rank} tensor {t}");
                assert_eq!(h.info(id).path, TENSORS[t].2, "{what}: path");
                assert_eq!(full.info(t as u32).path, TENSORS[t].2, "{what}: full path");
                let e = elem_size(TENSORS[t].1);
                assert_eq!(
                    params[id as usize],
                    full_params[t][off as usize * e..(off + len) as usize * e],
                    "{what}: parameters"
                );
                for kind in KINDS.into_iter().filter(|&k| full.has(t as u32, k)) {
                    let whole = full.read(t as u32, kind);
                    assert_eq!(
                        h.read(id, kind),
                        cut_array(&whole, kind, TENSORS[t].0, off, len),
                        "{what}: state kind {kind}"
                    );
                }
                assert_eq!(h.info(id).step, STEPS as u64);
            }
        }
    }
}

#[test]
fn merge_and_split_match_the_runs() {
    let dir = temp_dir("shards");
    let (full, _) = full_run();
    let full_path = dir.join("full.safetensors");
    ok(full.save(&full_path));
    for world in [2u32, 3] {
        let runs: Vec<Handle> = (0..world).map(|r| shard_run(r, world).0).collect();
        let inputs: Vec<PathBuf> = (0..world)
            .map(|r| dir.join(format!("run{world}.{r}.safetensors")))
            .collect();
        for (h, p) in runs.iter().zip(&inputs) {
            ok(h.save(p));
        }
        // N shards -> one checkpoint that loads into a single-process handle.
        let merged = dir.join(format!("merged{world}.safetensors"));
        ok(merge(&inputs, &merged));
        let single = Handle::new(&config());
        for &(n, dt, _) in &TENSORS {
            single.add(n, dt);
        }
        ok(single.load(&merged));
        assert_eq!(single.snapshot(), full.snapshot(), "world {world}: merged");

        // Ranks in the wrong order do not fit together.
        let mut swapped = inputs.clone();
        swapped.swap(0, 1);
        assert_eq!(
            merge(&swapped, &dir.join("bad.safetensors")),
            BNB_ERR_MISMATCH
        );
        assert!(message().contains("rank"), "{}", message());

        // One checkpoint -> M shard checkpoints that load into M shard handles.
        let prefix = dir.join(format!("split{world}"));
        ok(split(&full_path, world, &prefix));
        for (r, run) in runs.iter().enumerate() {
            let h = shard_handle(r as u32, world);
            ok(h.load(&part(&prefix, r as u32, world)));
            assert_eq!(
                h.snapshot(),
                run.snapshot(),
                "world {world} rank {r}: split"
            );
        }
    }
    // world 0 and worlds past the limit are refused before anything is read or written.
    for world in [0, u32::MAX] {
        let prefix = dir.join("huge");
        assert_eq!(split(&full_path, world, &prefix), BNB_ERR_INVALID_ARGUMENT);
        assert!(!part(&prefix, 0, world).exists());
    }
    // A shard checkpoint cannot be split again, and a full one is not a shard to merge.
    assert_eq!(
        split(&dir.join("run2.0.safetensors"), 2, &dir.join("x")),
        BNB_ERR_MISMATCH
    );
    assert_eq!(
        merge(std::slice::from_ref(&full_path), &dir.join("y.safetensors")),
        BNB_ERR_MISMATCH
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tool(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_adam8bit-ckpt"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn command_line_tool() {
    let dir = temp_dir("cli");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (full, _) = full_run();
    let full_path = dir.join("full.safetensors");
    ok(full.save(&full_path));

    let (code, out, err) = tool(&["inspect", &s(&full_path)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("format version 1"), "{out}");
    assert!(out.contains("4 parameters"), "{out}");
    assert!(
        out.contains("param 0: path blockwise8 numel 5000 dtype bf16 step 4 state 10160 bytes"),
        "{out}"
    );
    assert!(
        out.contains("param 1: path fp32 numel 3000 dtype fp32 step 4"),
        "{out}"
    );

    let prefix = dir.join("part");
    let (code, out, err) = tool(&["split", &s(&full_path), "3", &s(&prefix)]);
    assert_eq!(code, 0, "{err}");
    let parts: Vec<PathBuf> = (0..3).map(|r| part(&prefix, r, 3)).collect();
    assert_eq!(out.lines().count(), 3, "{out}");
    let (code, out, _) = tool(&["inspect", &s(&parts[2])]);
    assert_eq!(code, 0);
    assert!(
        out.contains("3 parameters"),
        "rank 2 holds no slice of the 300-element tensor: {out}"
    );
    assert!(out.contains("shard [3584, 5000) of 5000"), "{out}");

    let merged = dir.join("merged.safetensors");
    let mut args = vec!["merge".to_string(), s(&merged)];
    args.extend(parts.iter().map(|p| s(p)));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, _, err) = tool(&argv);
    assert_eq!(code, 0, "{err}");
    let single = Handle::new(&config());
    for &(n, dt, _) in &TENSORS {
        single.add(n, dt);
    }
    ok(single.load(&merged));
    assert_eq!(single.snapshot(), full.snapshot());

    // Errors: the library's status as exit code and its message; usage errors exit 64.
    let junk = dir.join("junk.safetensors");
    std::fs::write(&junk, b"definitely not a checkpoint").unwrap();
    let (code, _, err) = tool(&["inspect", &s(&junk)]);
    assert_eq!(code, BNB_ERR_CORRUPT, "{err}");
    assert!(
        err.contains("junk.safetensors") && err.contains("header length"),
        "{err}"
    );
    let (code, _, err) = tool(&["inspect", &s(&dir.join("absent"))]);
    assert_eq!(code, BNB_ERR_IO, "{err}");
    assert_eq!(tool(&["split", &s(&full_path), "many", "x"]).0, 64);
    assert_eq!(tool(&["frobnicate"]).0, 64);
    std::fs::remove_dir_all(&dir).unwrap();
}
