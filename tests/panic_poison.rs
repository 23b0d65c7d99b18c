//! docs/design.md, "Poisoned handles": a panic that interrupts an update poisons the handle.
//! The panic is injected on a worker thread in the middle of a step's update sweep
//! (`adam8bit::test_hooks`, the `test-hooks` feature). That step and every later call on the
//! handle except `destroy` must report `BNB_ERR_PANIC` with a message and write nothing: no
//! output argument, no caller buffer, no file (the last good checkpoint stays as it was, and no
//! temporary file is left). Other handles keep working, and `destroy` frees the whole
//! half-updated state.

mod common;
use common::checkpoint::*;
use common::counting_alloc::{Counting, LIVE};
use common::*;

use std::ffi::c_void;
use std::path::Path;
use std::ptr::null_mut;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

use adam8bit::ffi::bnb_adam8bit_t;
use adam8bit::ffi::checkpoint::*;
use adam8bit::ffi::handle::*;
use adam8bit::ffi::params::*;
use adam8bit::ffi::state::*;
use adam8bit::ffi::types::*;
use adam8bit::test_hooks::panic_in_next_update;

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The allocation counters are process-wide: one test at a time.
static EXCLUSIVE: Mutex<()> = Mutex::new(());

/// (numel, dtype, group): a blockwise tensor of three 16,384-element chunks, whose first chunk
/// the injected panic follows; a 32-bit one; a bf16 one in a second group.
const SPECS: [(u64, bnb_dtype_t, u32); 3] = [
    (40_000, BNB_DTYPE_F32, 0),
    (300, BNB_DTYPE_F32, 0),
    (5000, BNB_DTYPE_BF16, 1),
];

/// Elements of one work item of the CPU sweep (`cpu::CHUNK`).
const CHUNK: usize = 16_384;

/// A handle with [`SPECS`] registered and stepped `steps` times, its parameters and the
/// gradients of its next step.
struct Trained {
    h: Handle,
    params: Vec<Vec<u8>>,
    grads: Vec<Vec<u8>>,
}

impl Trained {
    fn new(seed: u64, steps: usize) -> Trained {
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
        let mut grads = || -> Vec<Vec<u8>> {
            SPECS
                .iter()
                .map(|&(n, dtype, _)| random_elems(&mut rng, n as usize, dtype, 0.1))
                .collect()
        };
        let mut t = Trained {
            h,
            params,
            grads: grads(),
        };
        for _ in 0..steps {
            ok(t.step_all());
            t.grads = grads();
        }
        t
    }

    /// `step_many` over every parameter.
    fn step_all(&mut self) -> bnb_status_t {
        let items: Vec<bnb_step_item_t> = self
            .params
            .iter_mut()
            .zip(&self.grads)
            .enumerate()
            .map(|(id, (p, g))| bnb_step_item_t {
                id: id as u32,
                param: p.as_mut_ptr().cast(),
                grad: g.as_ptr().cast(),
            })
            .collect();
        // SAFETY: every item points at its parameter's live buffers of the registered size.
        unsafe { bnb_adam8bit_step_many(self.h.0, items.as_ptr(), items.len(), null_mut()) }
    }

    /// Injects the panic into the next step and runs it.
    fn poison(&mut self) {
        unsafe { panic_in_next_update(self.h.0) };
        let before = self.params[0].clone();
        assert_eq!(self.step_all(), BNB_ERR_PANIC);
        let msg = message();
        assert!(
            msg.starts_with("internal panic") && msg.contains("injected"),
            "{msg}"
        );
        // The panic came after the first chunk was updated: a half-updated state.
        assert_ne!(self.params[0][..CHUNK * 4], before[..CHUNK * 4]);
    }
}

/// Bytes with a recognisable pattern, to see that a call wrote nothing into them.
fn canary(len: usize) -> Vec<u8> {
    (0..len).map(|i| 0xA5 ^ i as u8).collect()
}

/// What a call returned and whether it left its output arguments and buffers untouched.
struct Outcome {
    name: &'static str,
    status: bnb_status_t,
    message: String,
    untouched: bool,
}

/// One call of every entry point that takes a handle, except destroy, each with valid
/// arguments (on a healthy handle every one succeeds); files go to `dir`, where the caller
/// compares them.
fn every_call(h: *mut bnb_adam8bit_t, dir: &Path) -> Vec<Outcome> {
    let mut out = Vec::new();
    let mut check = |name, status, untouched| {
        out.push(Outcome {
            name,
            status,
            message: message(),
            untouched,
        })
    };
    unsafe {
        let (mut p, g) = (canary(300 * 4), canary(300 * 4));
        let st = bnb_adam8bit_step(h, 1, p.as_mut_ptr().cast(), g.as_ptr().cast(), null_mut());
        check("step", st, p == canary(300 * 4));

        let mut bufs: Vec<Vec<u8>> = SPECS.iter().map(|s| canary(s.0 as usize * 4)).collect();
        let grads = bufs.clone();
        let items: Vec<bnb_step_item_t> = (0..SPECS.len())
            .map(|id| bnb_step_item_t {
                id: id as u32,
                param: bufs[id].as_mut_ptr().cast(),
                grad: grads[id].as_ptr().cast(),
            })
            .collect();
        let st = bnb_adam8bit_step_many(h, items.as_ptr(), items.len(), null_mut());
        check("step_many", st, bufs == grads);

        let mut dst = canary(300 * 4);
        let st = bnb_adam8bit_read_state(h, 1, BNB_STATE1, dst.as_mut_ptr().cast(), 1200);
        check("read_state", st, dst == canary(1200));
        let src = vec![0u8; 1200];
        let st = bnb_adam8bit_write_state(h, 1, BNB_STATE1, src.as_ptr().cast(), 1200);
        check("write_state", st, true);
        let mut bytes = 7u64;
        let st = bnb_adam8bit_state_size(h, 1, BNB_STATE1, &mut bytes);
        check("state_size", st, bytes == 7);

        let size = std::mem::size_of::<bnb_param_info_t>();
        let mut info = canary(size);
        let st = bnb_adam8bit_param_info(h, 0, info.as_mut_ptr().cast(), size);
        check("param_info", st, info == canary(size));
        let mut n = 7u32;
        let st = bnb_adam8bit_num_params(h, &mut n);
        check("num_params", st, n == 7);
        let size = std::mem::size_of::<bnb_adam8bit_config_t>();
        let mut cfg = canary(size);
        let st = bnb_adam8bit_get_config(h, cfg.as_mut_ptr().cast(), size);
        check("get_config", st, cfg == canary(size));
        let mut device = 7;
        let st = bnb_adam8bit_get_device(h, &mut device);
        check("get_device", st, device == 7);

        check("set_lr", bnb_adam8bit_set_lr(h, 1e-4), true);
        check("set_group_lr", bnb_adam8bit_set_group_lr(h, 1, 1e-4), true);
        check("set_step", bnb_adam8bit_set_step(h, 0, 5), true);
        let mut id = 7u32;
        let st = bnb_adam8bit_add_param(h, 100, BNB_DTYPE_F32, &mut id);
        check("add_param", st, id == 7);
        let st = bnb_adam8bit_add_param_ex(h, 100, BNB_DTYPE_F32, std::ptr::null(), &mut id);
        check("add_param_ex", st, id == 7);

        // Files are compared by the caller, before and after.
        let good = cpath(&dir.join("good.safetensors"));
        check(
            "save over the last good checkpoint",
            bnb_adam8bit_save(h, good.as_ptr()),
            true,
        );
        let new = cpath(&dir.join("new.safetensors"));
        check(
            "save to a new file",
            bnb_adam8bit_save(h, new.as_ptr()),
            true,
        );
        check("load", bnb_adam8bit_load(h, good.as_ptr()), true);

        let mut len = 7u64;
        let st = bnb_adam8bit_serialized_size(h, &mut len);
        check("serialized_size", st, len == 7);
        let mut buf = canary(1 << 20);
        let st = bnb_adam8bit_serialize(h, buf.as_mut_ptr().cast::<c_void>(), 1 << 20, &mut len);
        check("serialize", st, len == 7 && buf == canary(1 << 20));
        let bytes = std::fs::read(dir.join("good.safetensors")).unwrap();
        let st = bnb_adam8bit_deserialize(h, bytes.as_ptr().cast(), bytes.len() as u64);
        check("deserialize", st, true);
    }
    out
}

#[test]
fn a_panic_mid_update_poisons_the_handle_for_every_later_call() {
    let _one = EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
    let dir = temp_dir("panic-poison");
    let mut t = Trained::new(1, 2);
    ok(t.h.save(&dir.join("good.safetensors")));
    // The same calls succeed on a healthy handle: what fails below fails for the poison.
    let mut bystander = Trained::new(2, 2);
    let bystander_dir = temp_dir("panic-poison-bystander");
    for c in every_call(bystander.h.0, &bystander_dir) {
        assert_eq!(
            c.status, BNB_OK,
            "{} on a healthy handle: {}",
            c.name, c.message
        );
    }

    t.poison();
    let files = dir_contents(&dir);
    for c in every_call(t.h.0, &dir) {
        assert_eq!(c.status, BNB_ERR_PANIC, "{} on a poisoned handle", c.name);
        assert!(
            c.untouched,
            "{} on a poisoned handle wrote an output",
            c.name
        );
        assert!(
            c.message.contains("earlier internal panic"),
            "{}: {}",
            c.name,
            c.message
        );
    }
    assert_eq!(
        dir_contents(&dir),
        files,
        "a call on the poisoned handle wrote, replaced or left a file"
    );

    // The worker that panicked and the other handles are fine.
    ok(bystander.step_all());
    drop(t);
    ok(bystander.step_all());
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&bystander_dir).unwrap();
}

#[test]
fn destroy_frees_a_poisoned_handle() {
    let _one = EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
    // A panic hook that prints no backtrace: the default one's symbol caches (with
    // RUST_BACKTRACE set) are allocated over the first panics and kept, and are not the
    // handle's. One poisoning before counting: the pool and this thread's message buffer
    // exist before the count starts.
    std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
    Trained::new(3, 1).poison();

    let live = LIVE.load(Ordering::Relaxed);
    let mut t = Trained::new(4, 2);
    let state: u64 = (0..SPECS.len() as u32)
        .map(|id| t.h.info(id).state_bytes)
        .sum();
    t.poison();
    drop(t);
    let left = LIVE.load(Ordering::Relaxed) - live;
    assert!(state > 80_000);
    assert!(
        left < 4096,
        "{left} bytes still allocated after destroying a poisoned handle of {state} state bytes"
    );
    drop(std::panic::take_hook());
}
