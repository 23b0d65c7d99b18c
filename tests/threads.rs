//! What the header promises about threads: different handles work from different threads at
//! once, calls on one handle are serialised (every concurrent history equals some sequential
//! order of its calls), `bnb_last_error_message()` is per thread, and `bnb_set_num_threads`
//! may run while other threads step. `scripts/test-tsan.sh` runs this file under
//! ThreadSanitizer with the library instrumented; docs/reliability.md has the figures.

mod common;
use common::checkpoint::{random_elems, Snapshot};
use common::*;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::ptr::null_mut;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Barrier;

use adam8bit::ffi::handle::*;
use adam8bit::ffi::params::*;
use adam8bit::ffi::types::*;

thread_local! {
    /// Library calls this thread made, for the figures the tests print.
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

fn count_calls(n: u64) {
    CALLS.with(|c| c.set(c.get() + n));
}

fn counted(status: bnb_status_t) -> bnb_status_t {
    count_calls(1);
    status
}

/// `f`'s result and the library calls it made on this thread.
fn with_calls<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = CALLS.with(Cell::get);
    let out = f();
    (out, CALLS.with(Cell::get) - before)
}

/// (numel, dtype, group) of one training run: two chunks of blockwise 8-bit, the 32-bit path,
/// bf16 and f16 in a second group.
const SPECS: [(u64, bnb_dtype_t, u32); 4] = [
    (20_000, BNB_DTYPE_F32, 0),
    (300, BNB_DTYPE_F32, 0),
    (5000, BNB_DTYPE_BF16, 1),
    (4100, BNB_DTYPE_F16, 1),
];

/// Everything a run leaves behind: the handle's state and the caller's parameters.
#[derive(Debug, PartialEq)]
struct Fingerprint {
    state: Snapshot,
    params: Vec<Vec<u8>>,
}

fn fingerprint(h: &Handle, params: &[Vec<u8>]) -> Fingerprint {
    Fingerprint {
        state: h.snapshot(),
        params: params.to_vec(),
    }
}

/// `step_many` of parameters `ids[i]` with buffers `params[i]` and gradients `grads[i]`.
fn step_many(h: &Handle, ids: &[u32], params: &mut [Vec<u8>], grads: &[Vec<u8>]) -> bnb_status_t {
    let items: Vec<bnb_step_item_t> = ids
        .iter()
        .zip(params.iter_mut().zip(grads))
        .map(|(&id, (p, g))| bnb_step_item_t {
            id,
            param: p.as_mut_ptr().cast(),
            grad: g.as_ptr().cast(),
        })
        .collect();
    // SAFETY: every item points at live buffers of its parameter's registered size.
    counted(unsafe { bnb_adam8bit_step_many(h.0, items.as_ptr(), items.len(), null_mut()) })
}

/// One training run on a handle of its own: `steps` sweeps over every parameter with a
/// learning-rate schedule between them, and the queries a trainer makes.
fn train_alone(seed: u64, steps: usize) -> Fingerprint {
    let mut cfg = config_default();
    cfg.weight_decay = 0.01;
    let h = Handle::new(&cfg);
    let mut rng = Rng(seed);
    let mut params = Vec::new();
    for &(n, dtype, group) in &SPECS {
        let mut o = param_options_default();
        o.group = group;
        h.add_ex(n, dtype, &o);
        params.push(random_elems(&mut rng, n as usize, dtype, 1.0));
    }
    let ids: Vec<u32> = (0..SPECS.len() as u32).collect();
    for t in 0..steps {
        let grads: Vec<Vec<u8>> = SPECS
            .iter()
            .map(|&(n, dtype, _)| random_elems(&mut rng, n as usize, dtype, 0.1))
            .collect();
        ok(step_many(&h, &ids, &mut params, &grads));
        let lr = 1e-3 / (1.0 + t as f64);
        ok(counted(unsafe { bnb_adam8bit_set_lr(h.0, lr) }));
        ok(counted(unsafe {
            bnb_adam8bit_set_group_lr(h.0, 1, lr / 2.0)
        }));
        h.info(t as u32 % 4);
        count_calls(1);
    }
    fingerprint(&h, &params)
}

#[test]
fn many_threads_on_many_handles_equal_the_sequential_runs() {
    let (threads, steps) = (8, 100);
    let want: Vec<Fingerprint> = (0..threads).map(|t| train_alone(t, steps)).collect();
    let (got, calls): (Vec<Fingerprint>, Vec<u64>) = std::thread::scope(|s| {
        let runs: Vec<_> = (0..threads)
            .map(|t| s.spawn(move || with_calls(|| train_alone(t, steps))))
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).unzip()
    });
    for (t, (got, want)) in got.iter().zip(&want).enumerate() {
        assert!(
            got == want,
            "thread {t}'s handle differs from its run alone"
        );
    }
    eprintln!(
        "{threads} threads x {threads} handles: {} calls, every handle as run alone",
        calls.iter().sum::<u64>()
    );
}

#[test]
fn set_num_threads_while_other_threads_step() {
    let (threads, steps) = (4, 30);
    let want: Vec<Fingerprint> = (0..threads).map(|t| train_alone(100 + t, steps)).collect();
    let done = AtomicBool::new(false);
    let mut changes = 0u64;
    let got: Vec<Fingerprint> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..threads)
            .map(|t| s.spawn(move || train_alone(100 + t, steps)))
            .collect();
        let changer = s.spawn(|| {
            let mut n = 0u64;
            for count in [1, 3, 2, 0].into_iter().cycle() {
                if done.load(Ordering::Relaxed) {
                    break;
                }
                ok(bnb_set_num_threads(count));
                assert!(bnb_get_num_threads() >= 1);
                n += 1;
            }
            n
        });
        let runs: Vec<_> = runs.into_iter().map(|r| r.join().unwrap()).collect();
        done.store(true, Ordering::Relaxed);
        changes = changer.join().unwrap();
        runs
    });
    ok(bnb_set_num_threads(0));
    for (t, (got, want)) in got.iter().zip(&want).enumerate() {
        assert!(
            got == want,
            "thread {t}'s handle differs from its run alone"
        );
    }
    eprintln!("{threads} stepping threads x {threads} handles, {changes} set_num_threads calls meanwhile: results as run alone");
}

/// Thread `t`'s parameters on a handle that `threads` threads share: a blockwise one and a
/// 32-bit one, in group `t`, so that no thread's calls change what another's compute.
fn shared_specs(t: usize) -> [(u64, bnb_dtype_t); 2] {
    [
        (8192 + 256 * t as u64, BNB_DTYPE_F32),
        (300, BNB_DTYPE_BF16),
    ]
}

fn shared_handle(threads: usize) -> Handle {
    let h = Handle::new(&config_default());
    for t in 0..threads {
        for (n, dtype) in shared_specs(t) {
            let mut o = param_options_default();
            o.group = t as u32;
            h.add_ex(n, dtype, &o);
        }
    }
    h
}

/// A checkpoint of `h` taken while other threads may step it (its size can change between
/// `serialized_size` and `serialize`, so the buffer has room to spare).
fn serialize_now(h: &Handle) -> Vec<u8> {
    let mut size = 0u64;
    ok(counted(unsafe {
        adam8bit::ffi::checkpoint::bnb_adam8bit_serialized_size(h.0, &mut size)
    }));
    let mut buf = vec![0u8; 2 * size as usize];
    let mut written = 0u64;
    ok(counted(unsafe {
        adam8bit::ffi::checkpoint::bnb_adam8bit_serialize(
            h.0,
            buf.as_mut_ptr().cast(),
            buf.len() as u64,
            &mut written,
        )
    }));
    buf.truncate(written as usize);
    buf
}

/// Thread `t`'s calls on the shared handle: steps of its own parameters (alone and together),
/// its group's learning rate, queries of any thread's parameters, and checkpoints, each of
/// which must be a consistent state of the whole handle (`checker` loads it: checksums and
/// step counts agree). Returns its parameters.
fn shared_worker(
    h: &Handle,
    checker: &Handle,
    threads: usize,
    t: usize,
    steps: usize,
) -> Vec<Vec<u8>> {
    let mut rng = Rng(1000 + t as u64);
    let specs = shared_specs(t);
    let ids = [2 * t as u32, 2 * t as u32 + 1];
    let mut params: Vec<Vec<u8>> = specs
        .iter()
        .map(|&(n, dtype)| random_elems(&mut rng, n as usize, dtype, 1.0))
        .collect();
    for k in 0..steps {
        let mut grads: Vec<Vec<u8>> = specs
            .iter()
            .map(|&(n, dtype)| random_elems(&mut rng, n as usize, dtype, 0.1))
            .collect();
        if k % 2 == 0 {
            ok(step_many(h, &ids, &mut params, &grads));
        } else {
            for i in 0..2 {
                let (p, g) = (&mut params[i..=i], &mut grads[i..=i]);
                ok(step_many(h, &ids[i..=i], p, g));
            }
        }
        let lr = 1e-3 * (1.0 + t as f64) / (1.0 + k as f64);
        ok(counted(unsafe {
            bnb_adam8bit_set_group_lr(h.0, t as u32, lr)
        }));
        let other = (rng.next_u64() % (2 * threads as u64)) as u32;
        h.info(other);
        h.read(other, BNB_STATE1);
        count_calls(2);
        if k % 5 == 4 {
            let bytes = serialize_now(h);
            ok(counted(checker.deserialize(&bytes)));
        }
    }
    params
}

#[test]
fn many_threads_on_one_handle_equal_the_sequential_run() {
    let (threads, steps) = (8, 100);
    let sequential = shared_handle(threads);
    let checker = shared_handle(threads);
    let params: Vec<Vec<u8>> = (0..threads)
        .flat_map(|t| shared_worker(&sequential, &checker, threads, t, steps))
        .collect();
    let want = fingerprint(&sequential, &params);

    let shared = shared_handle(threads);
    let (params, calls): (Vec<Vec<Vec<u8>>>, Vec<u64>) = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let shared = &shared;
                s.spawn(move || {
                    let checker = shared_handle(threads);
                    with_calls(|| shared_worker(shared, &checker, threads, t, steps))
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).unzip()
    });
    let params: Vec<Vec<u8>> = params.into_iter().flatten().collect();
    assert!(
        fingerprint(&shared, &params) == want,
        "the shared handle differs from the sequential run"
    );
    eprintln!(
        "{threads} threads x 1 handle (+{threads} checkers): {} calls, as run one thread after another",
        calls.iter().sum::<u64>()
    );
}

/// One call of the contended round: every one changes the parameter all threads share, and
/// no two commute.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// A step with the round's gradient number `n`.
    Step(usize),
    SetLr(f64),
    SetStep(u64),
}

/// The caller's buffer of the contended parameter, which every thread passes to its steps
/// (the handle's lock orders their accesses).
#[derive(Clone, Copy)]
struct SharedParam(*mut u8);
unsafe impl Send for SharedParam {}
unsafe impl Sync for SharedParam {}

fn apply(h: &Handle, param: SharedParam, grads: &[Vec<u8>], op: Op) {
    let status = unsafe {
        match op {
            Op::Step(n) => {
                bnb_adam8bit_step(h.0, 0, param.0.cast(), grads[n].as_ptr().cast(), null_mut())
            }
            Op::SetLr(lr) => bnb_adam8bit_set_lr(h.0, lr),
            Op::SetStep(step) => adam8bit::ffi::state::bnb_adam8bit_set_step(h.0, 0, step),
        }
    };
    ok(counted(status));
}

/// Every order of the threads' programs that keeps each thread's own order.
fn interleavings(programs: &[Vec<Op>]) -> Vec<Vec<Op>> {
    fn extend(
        programs: &[Vec<Op>],
        next: &mut [usize],
        order: &mut Vec<Op>,
        out: &mut Vec<Vec<Op>>,
    ) {
        if order.len() == programs.iter().map(Vec::len).sum::<usize>() {
            out.push(order.clone());
        }
        for t in 0..programs.len() {
            if next[t] < programs[t].len() {
                order.push(programs[t][next[t]]);
                next[t] += 1;
                extend(programs, next, order, out);
                next[t] -= 1;
                order.pop();
            }
        }
    }
    let mut out = Vec::new();
    extend(
        programs,
        &mut vec![0; programs.len()],
        &mut Vec::new(),
        &mut out,
    );
    out
}

#[test]
fn contended_calls_on_one_parameter_equal_some_sequential_order() {
    const NUMEL: usize = 1000;
    let rounds = 60;
    let mut cfg = config_default();
    cfg.min_8bit_size = 256;
    let shared = Handle::new(&cfg);
    let replay = Handle::new(&cfg);
    for h in [&shared, &replay] {
        h.add(NUMEL as u64, BNB_DTYPE_F32);
    }
    let mut rng = Rng(77);
    let mut param = random_elems(&mut rng, NUMEL, BNB_DTYPE_F32, 1.0);
    let mut seen = BTreeSet::new();
    for round in 0..rounds {
        let programs = vec![
            vec![Op::Step(0), Op::Step(1)],
            vec![Op::SetLr(1e-3 * (2 + round) as f64), Op::Step(2)],
            vec![Op::Step(3), Op::SetStep(1000 * round as u64)],
        ];
        let grads: Vec<Vec<u8>> = (0..4)
            .map(|_| random_elems(&mut rng, NUMEL, BNB_DTYPE_F32, 0.1))
            .collect();
        let start = (serialize_now(&shared), param.clone());
        let barrier = Barrier::new(programs.len());
        let target = SharedParam(param.as_mut_ptr());
        std::thread::scope(|s| {
            for program in &programs {
                let (shared, grads, barrier) = (&shared, &grads, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    for &op in program {
                        apply(shared, target, grads, op);
                    }
                });
            }
        });
        let got = fingerprint(&shared, std::slice::from_ref(&param));
        let matched = interleavings(&programs).into_iter().position(|order| {
            ok(replay.deserialize(&start.0));
            let mut p = start.1.clone();
            for op in order {
                apply(&replay, SharedParam(p.as_mut_ptr()), &grads, op);
            }
            fingerprint(&replay, std::slice::from_ref(&p)) == got
        });
        let order = matched.unwrap_or_else(|| {
            panic!("round {round}: the result equals no sequential order of the threads' calls")
        });
        seen.insert(order);
    }
    eprintln!(
        "3 threads x 1 parameter x {rounds} rounds of 6 calls: every round equals one of the 90 \
         sequential orders ({} distinct orders seen)",
        seen.len()
    );
}

/// Thread `t`'s failing calls name `t`, so a message that reached the wrong thread shows.
#[test]
fn concurrent_failing_calls_keep_their_own_messages() {
    let (threads, rounds) = (8, 2000);
    let h = Handle::new(&config_default());
    h.add(300, BNB_DTYPE_F32);
    let barrier = Barrier::new(threads);
    let calls: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (h, barrier) = (&h, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    with_calls(|| failing_calls(h, t, rounds)).1
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).sum()
    });
    eprintln!(
        "{threads} threads x 1 handle: {calls} failing and succeeding calls, no message crossed threads"
    );
}

/// Thread `t`'s calls: two kinds of failure whose messages name `t`, and successes.
fn failing_calls(h: &Handle, t: usize, rounds: usize) {
    let id = 1000 + t as u32;
    let lr = -(1.0 + t as f64);
    for r in 0..rounds {
        let st = counted(unsafe { adam8bit::ffi::state::bnb_adam8bit_set_step(h.0, id, 1) });
        assert_eq!(st, BNB_ERR_INVALID_ARGUMENT);
        // Other threads fail meanwhile; this thread's message stays its own.
        std::thread::yield_now();
        let msg = message();
        assert!(
            msg.contains(&format!("unknown parameter id {id} ")),
            "thread {t}, round {r}: {msg}"
        );
        if r % 2 == 0 {
            let mut n = 0u32;
            ok(counted(unsafe { bnb_adam8bit_num_params(h.0, &mut n) }));
            assert_eq!(
                message(),
                "",
                "thread {t}: a successful call leaves no message"
            );
        }
        assert_eq!(
            counted(unsafe { bnb_adam8bit_set_lr(h.0, lr) }),
            BNB_ERR_INVALID_ARGUMENT
        );
        let msg = message();
        assert!(
            msg.contains(&format!("(got {lr})")),
            "thread {t}, round {r}: {msg}"
        );
    }
}
