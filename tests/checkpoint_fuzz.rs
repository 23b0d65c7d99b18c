//! A seeded mutation fuzzer for the checkpoint loader, bounded in time for CI: truncations,
//! single bit flips, overwritten bytes, huge header-length fields and huge numbers in the
//! header. No mutation may crash or hang the loader, allocate more than the input justifies,
//! or change the handle; every truncation and single bit flip must be detected.
//!
//! `BNB_FUZZ_SECONDS` (default 3) and `BNB_FUZZ_SEED` (default fixed) control a run.

mod common;
use common::checkpoint::*;
use common::*;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::{Duration, Instant};

use adam8bit::ffi::params::bnb_adam8bit_set_group_lr;
use adam8bit::ffi::types::*;

/// Records the largest single allocation of the current thread while tracking is on.
struct Tracking;

thread_local! {
    static TRACK: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = TRACK.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Tracking = Tracking;

/// A small handle with the three layouts (blockwise, fp32, a second group), stepped twice.
fn small_handle(steps: usize) -> Handle {
    let mut cfg = config_default();
    cfg.min_8bit_size = 256;
    let h = Handle::new(&cfg);
    let specs = [
        (700u64, BNB_DTYPE_BF16, 0u32),
        (100, BNB_DTYPE_F32, 0),
        (300, BNB_DTYPE_F32, 1),
    ];
    for &(n, dt, group) in &specs {
        let mut o = param_options_default();
        o.group = group;
        h.add_ex(n, dt, &o);
    }
    let mut rng = Rng(11);
    for _ in 0..steps {
        for (id, &(n, dt, _)) in specs.iter().enumerate() {
            let mut p = random_elems(&mut rng, n as usize, dt, 1.0);
            let g = random_elems(&mut rng, n as usize, dt, 0.1);
            h.step(id as u32, &mut p, &g);
        }
    }
    h
}

/// Loads `bytes`; returns whether it succeeded and the largest allocation it made.
fn load_tracked(h: &Handle, bytes: &[u8]) -> (bnb_status_t, usize) {
    LARGEST.with(|l| l.set(0));
    TRACK.with(|t| t.set(true));
    let st = h.deserialize(bytes);
    TRACK.with(|t| t.set(false));
    (st, LARGEST.with(Cell::get))
}

#[derive(Debug, Clone, Copy)]
enum Mutation {
    Truncate,
    FlipBit,
    Overwrite,
    HugeHeaderLength,
    HugeNumber,
}

fn mutate(rng: &mut Rng, original: &[u8], header_end: usize) -> (Mutation, Vec<u8>) {
    let mut b = original.to_vec();
    let pick = |rng: &mut Rng, n: usize| (rng.next_u64() % n as u64) as usize;
    let m = match pick(rng, 5) {
        0 => Mutation::Truncate,
        1 => Mutation::FlipBit,
        2 => Mutation::Overwrite,
        3 => Mutation::HugeHeaderLength,
        _ => Mutation::HugeNumber,
    };
    match m {
        Mutation::Truncate => b.truncate(pick(rng, b.len())),
        Mutation::FlipBit => {
            // Half of the flips hit the header, which is small but has the most structure.
            let at = if rng.next_u64().is_multiple_of(2) {
                pick(rng, header_end)
            } else {
                pick(rng, b.len())
            };
            b[at] ^= 1 << pick(rng, 8);
        }
        Mutation::Overwrite => {
            let at = pick(rng, b.len());
            for x in b.iter_mut().skip(at).take(1 + pick(rng, 8)) {
                *x = rng.next_u64() as u8;
            }
        }
        Mutation::HugeHeaderLength => {
            let n = [
                u64::MAX,
                u64::MAX / 2,
                1 << 40,
                original.len() as u64,
                rng.next_u64(),
            ][pick(rng, 5)];
            b[..8].copy_from_slice(&n.to_le_bytes());
        }
        Mutation::HugeNumber => {
            // Replace one number in the JSON header by a huge one, keeping the header's length
            // field consistent so the parser gets to it.
            let header = String::from_utf8_lossy(&b[8..header_end]).into_owned();
            let digits: Vec<usize> = header
                .char_indices()
                .filter(|&(i, c)| {
                    c.is_ascii_digit() && !header[..i].ends_with(|p: char| p.is_ascii_digit())
                })
                .map(|(i, _)| i)
                .collect();
            let start = digits[pick(rng, digits.len())];
            let end = start
                + header[start..]
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(0);
            let huge = [
                "18446744073709551615",
                "99999999999999999999999",
                "4294967296",
                "1e308",
            ][pick(rng, 4)];
            let new_header = format!("{}{huge}{}", &header[..start], &header[end..]);
            let mut out = (new_header.len() as u64).to_le_bytes().to_vec();
            out.extend(new_header.as_bytes());
            out.extend(&b[header_end..]);
            b = out;
        }
    }
    (m, b)
}

#[test]
fn mutated_checkpoints_never_crash_hang_overallocate_or_change_the_handle() {
    let seconds: u64 = std::env::var("BNB_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let seed: u64 = std::env::var("BNB_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_cafe);
    let source = small_handle(2);
    ok(unsafe { bnb_adam8bit_set_group_lr(source.0, 1, 7e-4) });
    let original = source.serialize();
    let header_end = 8 + u64::from_le_bytes(original[..8].try_into().unwrap()) as usize;

    let target = small_handle(1);
    let before = target.snapshot();
    let (st, base_alloc) = load_tracked(&small_handle(1), &original);
    ok(st);
    let loaded = source.snapshot();

    let mut rng = Rng(seed);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut runs, mut accepted) = (0u64, 0u64);
    while Instant::now() < deadline {
        let (m, bytes) = mutate(&mut rng, &original, header_end);
        let started = Instant::now();
        let (st, largest) = load_tracked(&target, &bytes);
        let took = started.elapsed();
        let ctx = format!(
            "seed {seed} run {runs} {m:?} ({} bytes): status {st}: {}",
            bytes.len(),
            message()
        );
        assert!(took < Duration::from_secs(1), "{ctx}: took {took:?}");
        // The input itself, a constant for parsing, and what a valid load of this file needs.
        let budget = 2 * bytes.len() + 64 * 1024 + base_alloc;
        assert!(
            largest <= budget,
            "{ctx}: allocated {largest} bytes at once (budget {budget})"
        );
        if st == BNB_OK {
            accepted += 1;
            assert!(
                !matches!(m, Mutation::Truncate | Mutation::FlipBit),
                "{ctx}: undetected damage"
            );
            assert_eq!(
                target.snapshot(),
                loaded,
                "{ctx}: a mutated file loaded other contents"
            );
            // Back to the starting state for the next run.
            ok(target.deserialize(&small_handle(1).serialize()));
        } else {
            assert!(
                [BNB_ERR_CORRUPT, BNB_ERR_MISMATCH].contains(&st),
                "{ctx}: unexpected status"
            );
            assert!(!message().is_empty(), "{ctx}: no message");
            assert_eq!(
                target.snapshot(),
                before,
                "{ctx}: a rejected load changed the handle"
            );
        }
        runs += 1;
    }
    eprintln!("{runs} mutations in {seconds} s, {accepted} accepted (seed {seed})");
    assert!(runs >= 100, "only {runs} mutations ran");
}

#[test]
fn every_truncation_is_detected() {
    let original = small_handle(2).serialize();
    let target = small_handle(1);
    let before = target.snapshot();
    for len in 0..original.len() {
        let st = target.deserialize(&original[..len]);
        assert_eq!(st, BNB_ERR_CORRUPT, "truncated to {len}: {}", message());
    }
    assert_eq!(target.snapshot(), before);
}

#[test]
fn every_header_bit_flip_is_detected() {
    let original = small_handle(2).serialize();
    let header_end = 8 + u64::from_le_bytes(original[..8].try_into().unwrap()) as usize;
    let target = small_handle(1);
    let before = target.snapshot();
    for at in 0..header_end {
        for bit in 0..8 {
            let mut b = original.clone();
            b[at] ^= 1 << bit;
            let st = target.deserialize(&b);
            let ctx = String::from_utf8_lossy(
                &original[at.saturating_sub(30)..(at + 30).min(header_end)],
            )
            .into_owned();
            assert_ne!(
                st, BNB_OK,
                "flip of bit {bit} at byte {at} went undetected, near `{ctx}`"
            );
        }
    }
    assert_eq!(target.snapshot(), before);
}
