//! A seeded fuzzer of the whole C ABI: random sequences of create, add_param(_ex), step,
//! step_many, read/write_state, state_size, param_info, get_config, set_step, set_lr,
//! set_group_lr, save/load, serialize/deserialize, the `_default` functions,
//! set_num_threads and destroy, with valid arguments and with one fault at a time (NULL
//! pointers, unknown ids, bad enums, wrong sizes, struct_size mismatches, overlapping or
//! misaligned step items, bad learning rates, damaged checkpoints, a panic injected mid-step).
//! `fuzzer.rs` says what is checked after every call.
//!
//! `cargo test` runs a short run; `BNB_ABI_FUZZ_CALLS` and `BNB_ABI_FUZZ_SEED` set a longer
//! one (docs/reliability.md: the long run's command and figures). [`run`] takes the device
//! kind of the handles it creates, so the same fuzzer can drive CUDA handles once their
//! parameter and gradient buffers ([`fuzzer::Buf`], host memory now) live on the device; the
//! faults that mean something else there (a stream, the CPU sweep's injected panic) are
//! drawn on CPU handles only.

#[path = "../common/mod.rs"]
mod common;

mod bytes;
mod checkpoints;
mod driver_faults;
mod fuzzer;
mod model;
mod observe;
mod queries;
mod registry;
mod regressions;
mod state;
mod steps;

use std::time::Instant;

use adam8bit::ffi::types::*;
use common::checkpoint::temp_dir;
use common::device::synchronize;
use common::emulator::{on_emulator, Emulator};
use fuzzer::Fuzzer;

/// The injected panics are expected: the default hook would print each one's backtrace.
fn quiet_injected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let injected = info
                .payload()
                .downcast_ref::<&str>()
                .is_some_and(|m| m.contains("test_hooks"));
            if !injected {
                default(info);
            }
        }));
    });
}

/// `calls` random calls from `seed` on handles of `device`; returns the fuzzer, whose `stats`
/// count them.
pub fn run(device: bnb_device_t, seed: u64, calls: u64) -> Fuzzer {
    quiet_injected_panics();
    let dir = temp_dir(&format!("abi-fuzz-{device}-{seed}"));
    std::fs::write(dir.join("junk.bin"), b"not a checkpoint, just bytes").unwrap();
    let mut f = Fuzzer::new(device, seed, dir);
    while f.calls < calls {
        f.one_call();
    }
    f
}

/// A number from the environment, decimal or `0x` hex (as failures print seeds).
fn env_u64(name: &str, default: u64) -> u64 {
    let Ok(v) = std::env::var(name) else {
        return default;
    };
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
    .unwrap_or_else(|| panic!("{name}={v} is not a number"))
}

/// The accepted/rejected table of a run, one line.
fn stats_line(f: &Fuzzer) -> String {
    let table: Vec<String> = f
        .stats
        .iter()
        .map(|(name, (accepted, rejected))| format!("{name} {accepted}/{rejected}"))
        .collect();
    table.join(", ")
}

#[test]
fn random_call_sequences_on_cpu_handles() {
    let calls = env_u64("BNB_ABI_FUZZ_CALLS", 20_000);
    let seed = env_u64("BNB_ABI_FUZZ_SEED", 0xAB1_F022);
    let started = Instant::now();
    let f = run(BNB_DEVICE_CPU, seed, calls);
    let took = started.elapsed();
    eprintln!(
        "{} calls in {took:.1?}, seed {seed:#x}, nothing lost; accepted/rejected: {}",
        f.calls,
        stats_line(&f)
    );
    // Every entry point that takes arguments ran both ways.
    for (name, (accepted, rejected)) in &f.stats {
        if !name.starts_with("destroy") && !name.contains("panic injected") {
            assert!(
                *accepted > 0 && *rejected > 0,
                "{name}: {accepted} accepted, {rejected} rejected"
            );
        }
    }
    assert!(
        f.stats.len() >= 24,
        "only {} entry points ran",
        f.stats.len()
    );
    std::fs::remove_dir_all(&f.dir).unwrap();
}

/// The same on CUDA handles of the emulated device, parameters and gradients in device
/// memory, with driver faults injected ([`driver_faults`]); every scheduling order of the
/// emulated threads must take the same path. At the end, with every handle destroyed, the
/// device holds no allocation the run made.
#[test]
fn random_call_sequences_on_cuda_handles() {
    on_emulator("random_call_sequences_on_cuda_handles", |digest| {
        let calls = env_u64("BNB_ABI_FUZZ_CUDA_CALLS", 8_000);
        let seed = env_u64("BNB_ABI_FUZZ_SEED", 0xC0DA_F022);
        let emu = Emulator::get();
        let baseline = emu.counter("live_allocations");
        let started = Instant::now();
        let f = run(BNB_DEVICE_CUDA, seed, calls);
        let took = started.elapsed();
        let line = stats_line(&f);
        let summary = format!(
            "{} calls on CUDA handles in {took:.1?}, seed {seed:#x}, driver faults {:?}; \
             accepted/rejected: {line}",
            f.calls, f.driver
        );
        eprintln!("{summary}");
        // The child's output is shown only when it fails: a long run asks for its figures.
        if let Ok(report) = std::env::var("BNB_ABI_FUZZ_REPORT") {
            let mut text = std::fs::read_to_string(&report).unwrap_or_default();
            text.push_str(&format!(
                "{}: {summary}\n",
                std::env::var("CUEMU_ORDER").unwrap()
            ));
            std::fs::write(&report, text).unwrap();
        }
        digest.add(line.as_bytes());
        for pair in &f.pairs {
            digest.add(&pair.last.config);
            for p in &pair.last.params {
                digest.add(&p.info);
                for (_, bytes) in &p.arrays {
                    digest.add(bytes);
                }
            }
        }
        for (name, (accepted, rejected)) in &f.stats {
            if !name.starts_with("destroy") && *name != "lost handle" {
                assert!(
                    *accepted > 0 && *rejected > 0,
                    "{name}: {accepted} accepted, {rejected} rejected"
                );
            }
        }
        assert!(
            f.driver.failed_calls > calls / 100 && f.driver.lost > 0,
            "too few faults had an effect: {:?}",
            f.driver
        );
        let dir = f.dir.clone();
        drop(f);
        synchronize();
        assert_eq!(
            emu.counter("live_allocations"),
            baseline,
            "device memory outlived the handles and buffers of the run"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    });
}
