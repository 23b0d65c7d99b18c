//! Driver faults, on CUDA handles (the emulated device): before a call on the subject, the
//! fuzzer may arm the emulated driver to fail the n-th next call of one entry point. A call
//! that fails for it must return a device status with a message, and leave its handle either
//! exactly as it was or *lost* (docs/cuda.md, "Faults"). A lost subject is then held to that
//! contract (device calls refused with the cause, checkpoints untouched, host calls still
//! served) and destroyed; the emulator's live allocations at the end show that nothing leaked.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::ptr::null_mut;

use adam8bit::ffi::checkpoint::*;
use adam8bit::ffi::handle::*;
use adam8bit::ffi::params::*;
use adam8bit::ffi::types::*;

use super::fuzzer::{Buf, Fuzzer};
use super::observe::observe;
use crate::common::checkpoint::{cpath, dir_contents};
use crate::common::emulator::{Emulator, FALLIBLE_ENTRIES as ENTRIES};
use crate::common::message;

/// What the armed call returns: none of these is sticky, so the context, and the model
/// handles in it, live on.
const RESULTS: [(i32, &str); 3] = [
    (2, "CUDA_ERROR_OUT_OF_MEMORY"),
    (701, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES"),
    (999, "CUDA_ERROR_UNKNOWN"),
];

/// The statuses a failed driver call may surface as.
const DEVICE_STATUSES: [bnb_status_t; 3] = [BNB_ERR_CUDA, BNB_ERR_OUT_OF_MEMORY, BNB_ERR_NO_DEVICE];

const LOST: &str = "device state is lost";

/// Which driver calls each entry point of the library was seen to make, and how many at most
/// (learnt from the calls made with no fault armed), so that armed faults fire.
#[derive(Debug, Default)]
pub struct Profile {
    pub seen: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    /// The counters before the call being made (unarmed).
    before: Option<Vec<u64>>,
}

fn counters(emu: &Emulator) -> Vec<u64> {
    ENTRIES
        .iter()
        .map(|e| emu.counter(&format!("calls:{e}")))
        .collect()
}

/// A fault armed for the call being made.
pub struct Armed {
    entry: &'static str,
    nth: u64,
    result: &'static str,
    calls_before: u64,
}

/// What the faults did, over a run.
#[derive(Debug, Default)]
pub struct DriverFaults {
    /// Calls made with a fault armed.
    pub armed: u64,
    /// Armed faults that fired (the entry point was called often enough).
    pub fired: u64,
    /// Calls a fired fault made fail (the others absorbed it: a retried query, say).
    pub failed_calls: u64,
    /// Subjects that a fault left lost, checked and destroyed.
    pub lost: u64,
    /// By the call that lost them, and the entry point that failed.
    pub lost_in: BTreeMap<(&'static str, &'static str), u64>,
}

impl Fuzzer {
    /// Before the subject's call `name`, on CUDA handles, sometimes: arms one fault. Returns
    /// what the call's log line should say about it.
    pub fn arm_driver_fault(&mut self, name: &'static str) -> Option<String> {
        let emu = self.emulator?;
        let made: Vec<(&'static str, u64)> = self
            .profile
            .seen
            .get(name)
            .map(|m| m.iter().map(|(&e, &n)| (e, n)).collect())
            .unwrap_or_default();
        if matches!(name, "destroy" | "lost handle") || made.is_empty() || !self.chance(0.15) {
            self.profile.before = Some(counters(emu));
            return None;
        }
        let (entry, most) = self.pick(&made);
        let nth = 1 + self.below(most);
        let (code, result) = self.pick(&RESULTS);
        let calls_before = emu.counter(&format!("calls:{entry}"));
        emu.fail_call(entry, nth, code);
        self.driver.armed += 1;
        self.armed = Some(Armed {
            entry,
            nth,
            result,
            calls_before,
        });
        Some(format!("{entry} call {nth} fails with {result}"))
    }

    /// After the subject's call: disarms, and returns the fault if it fired.
    fn disarm(&mut self) -> Option<Armed> {
        let emu = self.emulator?;
        if let Some(before) = self.profile.before.take() {
            let seen = self.profile.seen.entry(self.current).or_default();
            for ((entry, now), then) in ENTRIES.iter().zip(counters(emu)).zip(before) {
                if now > then {
                    let most = seen.entry(entry).or_default();
                    *most = (*most).max(now - then);
                }
            }
        }
        let armed = self.armed.take()?;
        emu.clear_faults();
        let calls = emu.counter(&format!("calls:{}", armed.entry)) - armed.calls_before;
        (calls >= armed.nth).then(|| {
            self.driver.fired += 1;
            armed
        })
    }

    /// A call that a fired fault made fail: a device status whose message says why; the
    /// handle (`pair`) as it was, or lost. Returns false when `status` is not such a failure,
    /// which the ordinary rules then judge.
    #[track_caller]
    pub fn settle_driver_failure(&mut self, pair: Option<usize>, status: bnb_status_t) -> bool {
        let Some(armed) = self.disarm() else {
            return false;
        };
        if !DEVICE_STATUSES.contains(&status) {
            return false;
        }
        let msg = message();
        if !msg.contains(armed.result) && !msg.contains(armed.entry) {
            self.fail(format!(
                "{} call {} failed with {}: the message {msg:?} names neither",
                armed.entry, armed.nth, armed.result
            ));
        }
        self.driver.failed_calls += 1;
        self.driver_failed = true;
        self.stats.entry(self.current).or_default().1 += 1;
        let Some(p) = pair else {
            return true;
        };
        let q = &self.pairs[p];
        match observe(q.subject.0, &q.known) {
            Ok(now) if now == q.last && q.params == q.model_params => {}
            Ok(_) => self.fail(format!(
                "{} failing changed the handle, which is not lost",
                armed.entry
            )),
            Err(e) if e.contains(LOST) => {
                // A step cut off after its first launch: its parameters are what they are.
                self.pairs[p].lost = true;
                self.pairs[p].lost_in = self.current;
                self.driver.lost += 1;
                *self
                    .driver
                    .lost_in
                    .entry((self.current, armed.entry))
                    .or_default() += 1;
            }
            Err(e) => self.fail(format!("after {} failed: {e}", armed.entry)),
        }
        true
    }

    /// Holds the lost subject of pair `p` to docs/cuda.md's contract, then destroys the pair.
    pub fn retire_lost(&mut self, p: usize) {
        self.begin("lost handle", format!("pair {p}"));
        let h = self.pairs[p].subject.0;
        let lost = |f: &Fuzzer, what: &str, status: bnb_status_t| {
            let msg = message();
            if status != BNB_ERR_CUDA || !msg.contains(LOST) {
                f.fail(format!(
                    "{what} on a lost handle returned {status}: {msg:?}"
                ));
            }
        };
        let n = self.pairs[p].known.params.len() as u32;
        if n > 0 {
            let mut info: bnb_param_info_t = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<bnb_param_info_t>();
            lost(self, "param_info", unsafe {
                bnb_adam8bit_param_info(h, 0, &mut info, size)
            });
        }
        // A valid step (arguments are checked before the device state).
        let known = &self.pairs[p].known.params;
        if let Some(id) = (0..n).find(|&id| known[id as usize].step < u64::MAX) {
            let mut grads = self.gradients(p, &[id]);
            let param = self.pairs[p].params[id as usize].ptr();
            let st = unsafe {
                bnb_adam8bit_step(h, id, param.cast(), grads[0].ptr().cast(), null_mut())
            };
            // A load lost part way may have restored this step count already (to 2^64 - 1,
            // which the arguments' check refuses first).
            let partly_loaded = matches!(self.pairs[p].lost_in, "load" | "deserialize")
                && st == BNB_ERR_INVALID_ARGUMENT
                && message().contains("largest step count");
            if !partly_loaded {
                lost(self, "step", st);
            }
        }
        // A save fails before it writes: over a checkpoint, or where there is none.
        let before = dir_contents(&self.dir);
        for name in ["ckpt-0.safetensors", "lost.safetensors"] {
            let path: CString = cpath(&self.dir.join(name));
            lost(self, "save", unsafe { bnb_adam8bit_save(h, path.as_ptr()) });
        }
        if dir_contents(&self.dir) != before {
            self.fail("a save of a lost handle wrote a file");
        }
        let mut size = 0u64;
        let st = unsafe { bnb_adam8bit_serialized_size(h, &mut size) };
        if st == BNB_OK {
            let mut buf = Buf::new(&vec![0x5A; size as usize]);
            let mut written = u64::MAX;
            lost(self, "serialize", unsafe {
                bnb_adam8bit_serialize(h, buf.ptr().cast(), size, &mut written)
            });
            if written != u64::MAX || buf.as_bytes()[..size as usize].iter().any(|&b| b != 0x5A) {
                self.fail("a serialize of a lost handle wrote its outputs");
            }
        } else {
            lost(self, "serialized_size", st);
        }
        // Host calls still work.
        let mut cfg: bnb_adam8bit_config_t = unsafe { std::mem::zeroed() };
        let st = unsafe {
            bnb_adam8bit_get_config(h, &mut cfg, std::mem::size_of::<bnb_adam8bit_config_t>())
        };
        if st != BNB_OK || cfg.lr != self.pairs[p].known.cfg.lr {
            self.fail(format!("get_config on a lost handle: {st}: {}", message()));
        }
        if unsafe { bnb_adam8bit_set_lr(h, cfg.lr) } != BNB_OK {
            self.fail(format!("set_lr on a lost handle: {}", message()));
        }
        self.stats.entry("lost handle").or_default().0 += 1;
        drop(self.pairs.remove(p));
    }
}
