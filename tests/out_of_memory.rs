//! Memory exhaustion: `add_param`, `load`, merge and split need buffers the size of a state or
//! of a checkpoint file; under a lowered address-space limit (RLIMIT_AS) that leaves too little
//! room for them they return `BNB_ERR_OUT_OF_MEMORY` and change nothing (the handle, every
//! file, no id consumed), and with more room the same call succeeds. `deserialize` and `save`
//! need no such buffer and succeed with a few MiB to spare.
//!
//! Each call runs with the limit set to the process's current address-space size plus a
//! headroom, swept from 4 MiB to past what the call needs, so the failure lands at each of the
//! call's large allocations in turn. Its own harness: the limit is process-wide, so the cases
//! run one at a time on one thread. glibc's malloc is told to serve every large block by
//! mmap, so freed ones return to the system and the address-space size measures what is in
//! use.

mod common;
use common::checkpoint::*;
use common::*;

use adam8bit::ffi::types::*;

const MIB: u64 = 1 << 20;
/// Elements of the large parameter: 16 MiB of codes and 256 KiB of absmax on the 8-bit path.
const NUMEL: u64 = 1 << 23;

/// The address space this process maps now, from /proc/self/status.
fn address_space() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmSize:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmSize in /proc/self/status");
    kb * 1024
}

/// Runs `f` with the address space limited to its current size plus `headroom` bytes.
fn limited<T>(headroom: u64, f: impl FnOnce() -> T) -> T {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain calls on a valid struct; the soft limit is restored before returning.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_AS, &mut old), 0);
        let low = libc::rlimit {
            rlim_cur: address_space() + headroom,
            rlim_max: old.rlim_max,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_AS, &low), 0);
    }
    let r = f();
    // SAFETY: as above.
    unsafe { assert_eq!(libc::setrlimit(libc::RLIMIT_AS, &old), 0) };
    r
}

/// Headrooms from 4 MiB to `need` plus 8 MiB, in steps of `need / 8`.
fn headrooms(need: u64) -> impl Iterator<Item = u64> {
    (4 * MIB..=need + 8 * MIB).step_by((need / 8) as usize)
}

/// Outcomes of one sweep: every call returned OK or OUT_OF_MEMORY (checked by `call`), at
/// least one of each.
#[derive(Default)]
struct Tally {
    oom: u32,
    ok: u32,
}

impl Tally {
    fn count(&mut self, status: bnb_status_t, what: &str) {
        match status {
            BNB_OK => self.ok += 1,
            BNB_ERR_OUT_OF_MEMORY => {
                assert!(!message().is_empty(), "{what}: no message");
                self.oom += 1
            }
            s => panic!("{what}: status {s}: {}", message()),
        }
    }

    fn report(self, what: &str) -> u32 {
        assert!(self.oom > 0, "{what}: never out of memory");
        assert!(self.ok > 0, "{what}: never succeeded");
        println!(
            "test {what} ... ok: {} limits BNB_ERR_OUT_OF_MEMORY with nothing changed, {} succeeded",
            self.oom, self.ok
        );
        self.oom
    }
}

/// A handle with a small parameter, stepped once so that the worker pool runs (its threads
/// must exist before the limit is lowered), and optionally the large one, its state filled
/// with `seed`.
fn handle(large: Option<u8>) -> Handle {
    let h = mixed_handle(7, 1);
    if let Some(seed) = large {
        let id = h.add(NUMEL, BNB_DTYPE_F32);
        h.write(id, BNB_STATE1, &vec![seed; NUMEL as usize]);
        h.write(id, BNB_STATE2, &vec![!seed; NUMEL as usize]);
    }
    h
}

fn add_param() -> u32 {
    let mut total = 0;
    for (optim_bits, need) in [(8, 2 * NUMEL), (32, 8 * NUMEL)] {
        let what = format!("add_param_of_{optim_bits}_bit_state_out_of_memory");
        let mut tally = Tally::default();
        for headroom in headrooms(need) {
            let h = handle(None);
            let before = h.snapshot();
            let mut o = param_options_default();
            o.flags = BNB_OPT_OPTIM_BITS;
            o.optim_bits = optim_bits;
            let mut id = u32::MAX;
            let s = limited(headroom, || unsafe {
                adam8bit::ffi::params::bnb_adam8bit_add_param_ex(
                    h.0,
                    NUMEL,
                    BNB_DTYPE_F32,
                    &o,
                    &mut id,
                )
            });
            tally.count(s, &what);
            if s != BNB_OK {
                assert_eq!(id, u32::MAX, "{what}: id written");
                assert!(h.snapshot() == before, "{what}: the handle changed");
                assert_eq!(
                    h.add_ex(NUMEL, BNB_DTYPE_F32, &o),
                    4,
                    "{what}: an id was used up"
                );
            }
        }
        total += tally.report(&what);
    }
    total
}

/// Load and deserialize of the large handle's checkpoint into a handle with other state.
fn load_and_deserialize(dir: &std::path::Path) -> u32 {
    let path = dir.join("large.safetensors");
    let saved = handle(Some(1));
    ok(saved.save(&path));
    let want = saved.snapshot();
    let mut tally = Tally::default();
    for headroom in headrooms(2 * NUMEL) {
        let h = handle(Some(2));
        let before = h.snapshot();
        let s = limited(headroom, || h.load(&path));
        tally.count(s, "load");
        assert!(
            h.snapshot() == if s == BNB_OK { want.clone() } else { before },
            "load with {headroom} bytes of headroom: the handle is wrong"
        );
    }
    let oom = tally.report("load_out_of_memory");

    let bytes = saved.serialize();
    let h = handle(Some(2));
    ok(limited(4 * MIB, || h.deserialize(&bytes)));
    assert!(h.snapshot() == want);
    // And saving needs only its 1 MiB write buffer.
    ok(limited(4 * MIB, || h.save(&dir.join("again.safetensors"))));
    assert_eq!(std::fs::read(dir.join("again.safetensors")).unwrap(), bytes);
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_file(dir.join("again.safetensors")).unwrap();
    println!(
        "test deserialize_and_save_need_no_state_sized_buffer ... ok: {} MiB of state, 4 MiB of headroom",
        2 * NUMEL / MIB
    );
    oom
}

/// Merge and split of the large checkpoint: out of memory, every file stays as it was.
fn merge_and_split(dir: &std::path::Path) -> u32 {
    let full = dir.join("full.safetensors");
    ok(handle(Some(3)).save(&full));
    ok(split(&full, 2, &dir.join("in")));
    let inputs = [part(&dir.join("in"), 0, 2), part(&dir.join("in"), 1, 2)];
    let merged = dir.join("merged.safetensors");
    let out = dir.join("out");
    let mut total = 0;
    for op in ["merge", "split"] {
        let what = format!("{op}_out_of_memory");
        let mut tally = Tally::default();
        for headroom in headrooms(4 * NUMEL) {
            let before = dir_contents(dir);
            let s = limited(headroom, || match op {
                "merge" => merge(&inputs, &merged),
                _ => split(&full, 2, &out),
            });
            tally.count(s, &what);
            if s == BNB_OK {
                // Start the next one from the same files.
                let written = [merged.clone(), part(&out, 0, 2), part(&out, 1, 2)];
                written.iter().for_each(|p| _ = std::fs::remove_file(p));
            }
            assert!(dir_contents(dir) == before, "{what}: the files changed");
        }
        total += tally.report(&what);
    }
    total
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        for t in ["add_param", "load_and_deserialize", "merge_and_split"] {
            println!("{t}_out_of_memory: test");
        }
        return;
    }
    // SAFETY: a glibc tuning call before any other thread allocates.
    assert_eq!(
        unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10) },
        1
    );
    let dir = temp_dir("out-of-memory");
    let oom = add_param() + load_and_deserialize(&dir) + merge_and_split(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    println!("{oom} calls out of memory, each changed nothing");
    println!("3 passed, 0 failed");
}
