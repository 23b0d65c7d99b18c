//! The fuzzer's state and its one rule. It drives up to [`MAX_PAIRS`] pairs of handles: the
//! subject gets every call, valid or not; the model gets only the calls the subject accepted,
//! in a canonical form (a `step_many` as single steps, a load as writes of the saved arrays).
//! Every call's status is predicted ([`Expect`]); after a rejected call the subject must
//! observe exactly as before and the caller's buffers be untouched; after an accepted one the
//! subject and the model must observe the same, as [`Known`] predicts.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::CStr;
use std::path::PathBuf;
use std::ptr::null_mut;

use adam8bit::ffi::handle::bnb_status_name;
use adam8bit::ffi::types::*;

use super::driver_faults::{Armed, DriverFaults, Profile};
use super::model::{Known, Signature};
use super::observe::{observe, Observation};
use crate::common::device::DevBuf;
use crate::common::emulator::Emulator;
use crate::common::{message, Handle, Rng};

/// Pairs alive at once; parameters and elements per handle (small, so that a call is cheap).
pub const MAX_PAIRS: usize = 3;
pub const MAX_PARAMS: usize = 8;
pub const MAX_ELEMENTS: u64 = 60_000;

/// What a call must return.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expect {
    Accept,
    Reject(bnb_status_t),
    /// A damaged checkpoint: which of these depends on where the damage is.
    RejectAny(&'static [bnb_status_t]),
}

/// A caller's buffer: 8-byte aligned, with 8 bytes of slack after `len` that hold a pattern
/// (so a misaligned pointer into it stays inside it, and an overrun shows).
#[derive(Debug, Clone, PartialEq)]
pub struct Buf {
    words: Vec<u64>,
    pub len: usize,
}

impl Buf {
    pub fn new(bytes: &[u8]) -> Buf {
        let mut b = Buf {
            words: vec![0xEEEE_EEEE_EEEE_EEEE; bytes.len().div_ceil(8) + 1],
            len: bytes.len(),
        };
        b.as_mut_bytes()[..bytes.len()].copy_from_slice(bytes);
        b
    }

    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: plain words viewed as bytes.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast(), self.words.len() * 8) }
    }

    fn as_mut_bytes(&mut self) -> &mut [u8] {
        // SAFETY: as above, exclusively.
        unsafe {
            std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast(), self.words.len() * 8)
        }
    }

    pub fn ptr(&mut self) -> *mut u8 {
        self.words.as_mut_ptr().cast()
    }
}

/// A parameter's or a gradient's elements where the handle reads them: host memory for a CPU
/// handle, device memory for a CUDA one; either way laid out as a [`Buf`], slack included.
pub enum Elems {
    Host(Buf),
    Device(DevBuf),
}

impl Elems {
    pub fn new(device: bnb_device_t, bytes: &[u8]) -> Elems {
        let host = Buf::new(bytes);
        match device {
            BNB_DEVICE_CPU => Elems::Host(host),
            _ => Elems::Device(DevBuf::from(host.as_bytes(), 0)),
        }
    }

    pub fn ptr(&mut self) -> *mut u8 {
        match self {
            Elems::Host(b) => b.ptr(),
            Elems::Device(d) => d.as_mut_ptr().cast(),
        }
    }

    /// Every byte, slack included (a device buffer is read back).
    pub fn contents(&self) -> Vec<u8> {
        match self {
            Elems::Host(b) => b.as_bytes().to_vec(),
            Elems::Device(d) => d.read(),
        }
    }
}

impl Clone for Elems {
    fn clone(&self) -> Elems {
        match self {
            Elems::Host(b) => Elems::Host(b.clone()),
            Elems::Device(d) => Elems::Device(DevBuf::from(&d.read(), 0)),
        }
    }
}

impl PartialEq for Elems {
    fn eq(&self, other: &Elems) -> bool {
        match (self, other) {
            (Elems::Host(a), Elems::Host(b)) => a == b,
            _ => self.contents() == other.contents(),
        }
    }
}

/// A checkpoint's bytes and what it holds, as the fuzzer saw its handle when it was taken.
#[derive(Debug, Clone)]
pub struct Saved {
    /// The pair it was taken from ([`Pair::serial`]).
    pub origin: u64,
    pub bytes: Vec<u8>,
    pub signature: Signature,
    pub known: Known,
    pub state: Observation,
}

pub struct Pair {
    /// Which pair this is, among all the fuzzer created.
    pub serial: u64,
    pub subject: Handle,
    pub model: Handle,
    pub known: Known,
    /// The caller's parameter buffers of the subject and of the model.
    pub params: Vec<Elems>,
    pub model_params: Vec<Elems>,
    /// The subject's observation after its last call.
    pub last: Observation,
    /// A panic poisoned the subject: every call on it must return BNB_ERR_PANIC.
    pub poisoned: bool,
    /// A driver fault lost the subject's device state: the next call retires the pair.
    pub lost: bool,
    /// The call that lost it.
    pub lost_in: &'static str,
}

pub struct Fuzzer {
    /// The device of every handle the fuzzer creates.
    pub device: bnb_device_t,
    pub rng: Rng,
    seed: u64,
    /// Checkpoint files go here.
    pub dir: PathBuf,
    pub pairs: Vec<Pair>,
    /// What file `ckpt-<k>.safetensors` of `dir` holds, by k.
    pub files: BTreeMap<usize, Saved>,
    /// The last checkpoints taken (saved or serialized).
    pub blobs: VecDeque<Saved>,
    /// Per entry point: accepted and rejected calls.
    pub stats: BTreeMap<&'static str, (u64, u64)>,
    pub calls: u64,
    pairs_created: u64,
    /// The last calls, for a failure's message.
    log: VecDeque<String>,
    pub current: &'static str,
    /// The emulated driver, which fails calls for CUDA handles.
    pub emulator: Option<&'static Emulator>,
    pub armed: Option<Armed>,
    pub driver: DriverFaults,
    pub profile: Profile,
    /// The current call failed for an injected driver fault.
    pub driver_failed: bool,
}

impl Fuzzer {
    pub fn new(device: bnb_device_t, seed: u64, dir: PathBuf) -> Fuzzer {
        Fuzzer {
            device,
            rng: Rng(seed.max(1)),
            seed,
            dir,
            pairs: Vec::new(),
            files: BTreeMap::new(),
            blobs: VecDeque::new(),
            stats: BTreeMap::new(),
            calls: 0,
            pairs_created: 0,
            log: VecDeque::new(),
            current: "",
            emulator: (device == BNB_DEVICE_CUDA).then(Emulator::get),
            armed: None,
            driver: DriverFaults::default(),
            profile: Profile::default(),
            driver_failed: false,
        }
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n.max(1)
    }

    pub fn chance(&mut self, p: f64) -> bool {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.below(from.len() as u64) as usize]
    }

    /// One of `faults` in about a third of the calls, or always with `forced`.
    pub fn fault(&mut self, faults: &[&'static str], forced: bool) -> Option<&'static str> {
        (forced || self.chance(0.35)).then(|| self.pick(faults))
    }

    /// A random live pair.
    pub fn target(&mut self) -> usize {
        self.below(self.pairs.len() as u64) as usize
    }

    /// Index into `origins` of a checkpoint to load into pair `p`: mostly one of its own
    /// (which fits, unless it registered more since), else any.
    pub fn pick_checkpoint(&mut self, p: usize, origins: &[u64]) -> usize {
        let serial = self.pairs[p].serial;
        let own: Vec<usize> = (0..origins.len())
            .filter(|&i| origins[i] == serial)
            .collect();
        if !own.is_empty() && self.chance(0.7) {
            self.pick(&own)
        } else {
            self.below(origins.len() as u64) as usize
        }
    }

    /// A pair, and one of its parameter ids or (with the "unknown id" fault, or none
    /// registered) an id it does not have.
    pub fn target_param(&mut self, fault: Option<&str>) -> (usize, u32, bool) {
        let p = self.target();
        let n = self.pairs[p].known.params.len() as u32;
        if fault == Some("unknown id") || n == 0 {
            (p, n + self.pick(&[0, 1, u32::MAX - n]), false)
        } else {
            (p, self.below(n as u64) as u32, true)
        }
    }

    pub fn handle(&self, p: usize, fault: Option<&str>) -> *mut adam8bit::ffi::bnb_adam8bit_t {
        if fault == Some("handle NULL") {
            null_mut()
        } else {
            self.pairs[p].subject.0
        }
    }

    /// Starts call `name`, made next; `what` says its arguments and fault, for a failure's
    /// message. On CUDA handles it may arm a driver fault for the call.
    pub fn begin(&mut self, name: &'static str, what: String) {
        self.calls += 1;
        self.current = name;
        if self.log.len() == 24 {
            self.log.pop_front();
        }
        self.driver_failed = false;
        let driver = self.arm_driver_fault(name).unwrap_or_default();
        self.log
            .push_back(format!("#{} {name}: {what} {driver}", self.calls));
    }

    #[track_caller]
    pub fn fail(&self, why: impl std::fmt::Display) -> ! {
        let log: Vec<&str> = self.log.iter().map(String::as_str).collect();
        panic!(
            "ABI fuzzer, device {}, seed {:#x}, call #{} ({}): {why}\nlast calls:\n  {}",
            self.device,
            self.seed,
            self.calls,
            self.current,
            log.join("\n  ")
        );
    }

    /// Checks a call's status and message: against `expect`, or BNB_ERR_PANIC for any call
    /// on a poisoned `pair` (`None`: no handle, or a NULL one). After a rejection, checks that
    /// the pair is as it was. Returns whether the call was accepted.
    #[track_caller]
    pub fn settle(&mut self, pair: Option<usize>, expect: Expect, status: bnb_status_t) -> bool {
        if self.settle_driver_failure(pair, status) {
            return false;
        }
        let expect = match pair {
            Some(p) if self.pairs[p].poisoned => Expect::Reject(BNB_ERR_PANIC),
            _ => expect,
        };
        let met = match expect {
            Expect::Accept => status == BNB_OK,
            Expect::Reject(s) => status == s,
            Expect::RejectAny(list) => list.contains(&status),
        };
        let msg = message();
        if !met {
            let name = unsafe { CStr::from_ptr(bnb_status_name(status)) };
            self.fail(format!("returned {name:?} ({msg:?}), expected {expect:?}"));
        }
        let accepted = status == BNB_OK;
        if accepted != msg.is_empty() {
            self.fail(format!("status {status} with message {msg:?}"));
        }
        if status == BNB_ERR_PANIC && !msg.contains("panic") {
            self.fail(format!("BNB_ERR_PANIC with message {msg:?}"));
        }
        let counts = self.stats.entry(self.current).or_default();
        if accepted {
            counts.0 += 1;
        } else {
            counts.1 += 1;
            if let Some(p) = pair {
                self.check_unchanged(p);
            }
        }
        accepted
    }

    #[track_caller]
    fn observe(&self, h: &Handle, known: &Known) -> Observation {
        observe(h.0, known).unwrap_or_else(|e| self.fail(e))
    }

    /// After a rejected or a read-only call: the subject is exactly as before, and so are the
    /// caller's buffers (a poisoned subject cannot be observed; its buffers still can).
    #[track_caller]
    pub fn check_unchanged(&mut self, p: usize) {
        let pair = &self.pairs[p];
        if pair.params != pair.model_params {
            self.fail("the subject's parameter buffers changed");
        }
        if !pair.poisoned && self.observe(&pair.subject, &pair.known) != pair.last {
            self.fail("the subject's state changed");
        }
    }

    /// After an accepted call that the model was given too: the two observe the same.
    #[track_caller]
    pub fn check_same(&mut self, p: usize) {
        let pair = &self.pairs[p];
        let subject = self.observe(&pair.subject, &pair.known);
        if self.observe(&pair.model, &pair.known) != subject {
            self.fail("the subject and the model differ");
        }
        if pair.params != pair.model_params {
            self.fail("the subject's and the model's parameter buffers differ");
        }
        self.pairs[p].last = subject;
    }

    /// A new pair from two accepted creations.
    pub fn add_pair(&mut self, subject: Handle, model: Handle, known: Known) {
        let last = self.observe(&subject, &known);
        self.pairs_created += 1;
        self.pairs.push(Pair {
            serial: self.pairs_created,
            subject,
            model,
            known,
            params: Vec::new(),
            model_params: Vec::new(),
            last,
            poisoned: false,
            lost: false,
            lost_in: "",
        });
        let p = self.pairs.len() - 1;
        self.check_same(p);
    }

    /// `n` random elements of `dtype`, mostly small, with the specials a gradient can hold.
    pub fn elements(&mut self, n: usize, dtype: bnb_dtype_t, scale: f32) -> Vec<u8> {
        let specials = [
            f32::NAN,
            f32::INFINITY,
            -f32::INFINITY,
            0.0,
            -0.0,
            1e30,
            1e-40,
        ];
        let special = self.chance(0.1);
        crate::common::encode(
            dtype,
            (0..n).map(|_| {
                if special && self.chance(0.01) {
                    self.pick(&specials)
                } else {
                    (self.rng.uniform() - 0.5) * scale
                }
            }),
        )
    }

    /// One random call.
    pub fn one_call(&mut self) {
        if let Some(p) = self.pairs.iter().position(|q| q.lost) {
            return self.retire_lost(p);
        }
        if self.pairs.is_empty() {
            return self.create();
        }
        match self.below(1000) {
            0..=19 => self.create(),
            20..=29 => self.destroy(),
            30..=119 => self.add_param(),
            120..=269 => self.step(),
            270..=419 => self.step_many(),
            420..=499 => self.read_state(),
            500..=589 => self.write_state(),
            590..=619 => self.state_size(),
            620..=659 => self.param_info(),
            660..=679 => self.get_config(),
            680..=689 => self.counts_and_device(),
            690..=729 => self.set_step(),
            730..=769 => self.set_lr(),
            770..=799 => self.set_group_lr(),
            800..=829 => self.save(),
            830..=859 => self.load(),
            860..=909 => self.serialize(),
            910..=959 => self.deserialize(),
            960..=979 => self.struct_defaults(),
            980..=997 => self.set_num_threads(),
            _ => self.poison(),
        }
    }
}
