//! Checkpoints: save and load (files), serialized_size, serialize and deserialize (memory).
//! A checkpoint loads wherever its registration matches (any pair's), which the fuzzer
//! predicts from [`Known::signature`]; the model takes an accepted load as writes of the
//! arrays, steps and learning rates the fuzzer saw when the checkpoint was taken.

use std::ffi::CString;
use std::path::PathBuf;
use std::ptr::null_mut;

use adam8bit::ffi::checkpoint::*;
use adam8bit::ffi::params::*;
use adam8bit::ffi::state::*;
use adam8bit::ffi::types::*;

use super::fuzzer::{Buf, Expect, Fuzzer, Saved};
use crate::common::checkpoint::{cpath, dir_contents};
use crate::common::ok;

/// Checkpoint files `ckpt-0` .. `ckpt-2` in the fuzzer's directory; serialized ones kept.
const FILES: u64 = 3;
const BLOBS: usize = 4;
const INVALID: Expect = Expect::Reject(BNB_ERR_INVALID_ARGUMENT);

impl Fuzzer {
    fn file(&self, k: u64) -> PathBuf {
        self.dir.join(format!("ckpt-{k}.safetensors"))
    }

    /// Checkpoint `bytes` of pair `p` as it is now.
    fn saved(&self, p: usize, bytes: Vec<u8>) -> Saved {
        let pair = &self.pairs[p];
        Saved {
            origin: pair.serial,
            bytes,
            signature: pair.known.signature(),
            known: pair.known.clone(),
            state: pair.last.clone(),
        }
    }

    fn expect_load(&self, p: usize, saved: &Saved) -> Expect {
        if saved.signature == self.pairs[p].known.signature() {
            Expect::Accept
        } else {
            Expect::Reject(BNB_ERR_MISMATCH)
        }
    }

    /// The model takes an accepted load as the writes that restore what was saved; the
    /// subject must then hold exactly that.
    fn load_model(&mut self, p: usize, saved: &Saved) {
        let pair = &mut self.pairs[p];
        let h = pair.model.0;
        if saved.known.params.iter().all(|q| q.step < u64::MAX) {
            for (id, observed) in saved.state.params.iter().enumerate() {
                for (kind, bytes) in &observed.arrays {
                    let len = bytes.len() as u64;
                    ok(unsafe {
                        bnb_adam8bit_write_state(h, id as u32, *kind, bytes.as_ptr().cast(), len)
                    });
                }
                ok(unsafe { bnb_adam8bit_set_step(h, id as u32, saved.known.params[id].step) });
            }
            ok(unsafe { bnb_adam8bit_set_lr(h, saved.known.cfg.lr) });
            for (&group, &lr) in &saved.known.groups {
                ok(unsafe { bnb_adam8bit_set_group_lr(h, group, lr) });
            }
        } else {
            // set_step cannot set 2^64 - 1 (only a step or a load gets there): the model loads
            // the same bytes, and the comparison below with what was saved stays independent.
            ok(pair.model.deserialize(&saved.bytes));
        }
        for (q, s) in pair.known.params.iter_mut().zip(&saved.known.params) {
            q.step = s.step;
        }
        pair.known.set_lr(saved.known.cfg.lr);
        pair.known.groups.clone_from(&saved.known.groups);
        self.check_same(p);
        let restored = self.pairs[p].last.params.iter().zip(&saved.state.params);
        if restored
            .into_iter()
            .any(|(now, then)| now.arrays != then.arrays)
        {
            self.fail("the load restored other arrays than were saved");
        }
    }

    fn keep_blob(&mut self, saved: Saved) {
        if self.blobs.len() == BLOBS {
            self.blobs.pop_front();
        }
        self.blobs.push_back(saved);
    }

    /// A path argument: the C string of `path`, or NULL or "" as the fault says.
    fn path_arg(fault: Option<&str>, path: &CString) -> *const std::ffi::c_char {
        match fault {
            Some("path NULL") => std::ptr::null(),
            Some("path empty") => c"".as_ptr(),
            _ => path.as_ptr(),
        }
    }

    pub fn save(&mut self) {
        let p = self.target();
        let fault = self.fault(
            &[
                "handle NULL",
                "path NULL",
                "path empty",
                "path is a directory",
                "directory missing",
            ],
            false,
        );
        let k = self.below(FILES);
        let path = match fault {
            Some("path is a directory") => self.dir.clone(),
            Some("directory missing") => self.dir.join("missing").join("x.safetensors"),
            _ => self.file(k),
        };
        let c = cpath(&path);
        let h = self.handle(p, fault);
        let expect = match fault {
            None => Expect::Accept,
            Some("path is a directory" | "directory missing") => Expect::Reject(BNB_ERR_IO),
            Some(_) => INVALID,
        };
        // A CUDA handle's save may fail for an injected driver fault.
        let rejected =
            expect != Expect::Accept || self.pairs[p].poisoned || self.emulator.is_some();
        let before = rejected.then(|| dir_contents(&self.dir));
        self.begin("save", format!("{fault:?} pair {p} {}", path.display()));
        let st = unsafe { bnb_adam8bit_save(h, Self::path_arg(fault, &c)) };
        if !self.settle((!h.is_null()).then_some(p), expect, st) {
            if before.is_some_and(|b| b != dir_contents(&self.dir)) {
                self.fail("a rejected save created, replaced or left a file");
            }
            return;
        }
        let written = std::fs::read(&path).unwrap_or_else(|e| self.fail(e));
        if written != self.pairs[p].model.serialize() {
            self.fail("the file differs from what the model serializes");
        }
        let saved = self.saved(p, written);
        self.files.insert(k as usize, saved.clone());
        self.keep_blob(saved);
        self.check_unchanged(p);
    }

    pub fn load(&mut self) {
        let p = self.target();
        let fault = self.fault(
            &[
                "handle NULL",
                "path NULL",
                "path empty",
                "file missing",
                "not a checkpoint",
            ],
            self.files.is_empty(),
        );
        let keys: Vec<usize> = self.files.keys().copied().collect();
        let origins: Vec<u64> = self.files.values().map(|s| s.origin).collect();
        let k = if keys.is_empty() {
            0
        } else {
            keys[self.pick_checkpoint(p, &origins)]
        };
        let path = match fault {
            Some("file missing") => self.dir.join("missing.safetensors"),
            Some("not a checkpoint") => self.dir.join("junk.bin"),
            _ => self.file(k as u64),
        };
        let c = cpath(&path);
        let h = self.handle(p, fault);
        let saved = self.files.get(&k).cloned();
        let expect = match (fault, &saved) {
            (None, Some(s)) => self.expect_load(p, s),
            (Some("file missing"), _) | (None, None) => Expect::Reject(BNB_ERR_IO),
            (Some("not a checkpoint"), _) => Expect::Reject(BNB_ERR_CORRUPT),
            _ => INVALID,
        };
        self.begin("load", format!("{fault:?} pair {p} {}", path.display()));
        let st = unsafe { bnb_adam8bit_load(h, Self::path_arg(fault, &c)) };
        if self.settle((!h.is_null()).then_some(p), expect, st) {
            self.load_model(p, &saved.expect("accepted a recorded file"));
        }
    }

    pub fn serialized_size(&mut self) {
        let p = self.target();
        let fault = self.fault(&["handle NULL", "out NULL"], false);
        let h = self.handle(p, fault);
        let mut slot = Buf::new(&u64::MAX.to_le_bytes());
        let out = if fault == Some("out NULL") {
            null_mut()
        } else {
            slot.ptr().cast()
        };
        let expect = if fault.is_some() {
            INVALID
        } else {
            Expect::Accept
        };
        self.begin("serialized_size", format!("{fault:?} pair {p}"));
        let st = unsafe { bnb_adam8bit_serialized_size(h, out) };
        let got = u64::from_le_bytes(slot.as_bytes()[..8].try_into().unwrap());
        if !self.settle((!h.is_null()).then_some(p), expect, st) {
            if got != u64::MAX {
                self.fail("a rejected serialized_size wrote its output");
            }
            return;
        }
        let want = self.pairs[p].model.serialize().len() as u64;
        if got != want {
            self.fail(format!(
                "serialized_size {got}, the model's checkpoint is {want} bytes"
            ));
        }
        self.check_unchanged(p);
    }

    pub fn serialize(&mut self) {
        if self.chance(0.3) {
            return self.serialized_size();
        }
        let p = self.target();
        let fault = self.fault(
            &[
                "handle NULL",
                "buf NULL",
                "buffer too small",
                "out_written NULL",
            ],
            false,
        );
        let want = self.pairs[p].model.serialize();
        let need = want.len() as u64;
        let cap = match fault {
            Some("buffer too small") => self.below(need),
            _ => need + self.below(64),
        };
        let canary: Vec<u8> = (0..cap + 16).map(|i| i as u8 ^ 0x71).collect();
        let mut buf = Buf::new(&canary);
        let mut slot = Buf::new(&u64::MAX.to_le_bytes());
        let out = if fault == Some("out_written NULL") {
            null_mut()
        } else {
            slot.ptr().cast()
        };
        let ptr = if fault == Some("buf NULL") {
            null_mut()
        } else {
            buf.ptr()
        };
        let h = self.handle(p, fault);
        let expect = if fault.is_some() {
            INVALID
        } else {
            Expect::Accept
        };
        self.begin(
            "serialize",
            format!("{fault:?} pair {p} cap {cap} need {need}"),
        );
        let st = unsafe { bnb_adam8bit_serialize(h, ptr.cast(), cap, out) };
        let written = u64::from_le_bytes(slot.as_bytes()[..8].try_into().unwrap());
        let got = &buf.as_bytes()[..canary.len()];
        let pair = (!h.is_null()).then_some(p);
        if !self.settle(pair, expect, st) {
            // The one output a rejection writes: the size a too small buffer needs.
            let sized =
                fault == Some("buffer too small") && !self.pairs[p].poisoned && !self.driver_failed;
            if written != if sized { need } else { u64::MAX } || got != canary {
                self.fail(format!(
                    "a rejected serialize wrote {written} and its buffer"
                ));
            }
            return;
        }
        if written != need
            || got[..need as usize] != want[..]
            || got[need as usize..] != canary[need as usize..]
        {
            self.fail("serialize wrote other bytes than the model's checkpoint");
        }
        let saved = self.saved(p, want);
        self.keep_blob(saved);
        self.check_unchanged(p);
    }

    pub fn deserialize(&mut self) {
        let p = self.target();
        let fault = self.fault(
            &["handle NULL", "buf NULL", "truncated", "damaged"],
            self.blobs.is_empty(),
        );
        let origins: Vec<u64> = self.blobs.iter().map(|s| s.origin).collect();
        let saved = (!origins.is_empty()).then(|| {
            let i = self.pick_checkpoint(p, &origins);
            self.blobs[i].clone()
        });
        let mut bytes = saved.as_ref().map_or(vec![0u8; 64], |s| s.bytes.clone());
        let expect = match (fault, &saved) {
            (None, Some(s)) => self.expect_load(p, s),
            (Some("truncated"), _) | (None, None) => {
                bytes.truncate(self.below(bytes.len() as u64) as usize);
                Expect::Reject(BNB_ERR_CORRUPT)
            }
            (Some("damaged"), _) => {
                let at = self.below(bytes.len() as u64) as usize;
                bytes[at] ^= 1 << self.below(8);
                Expect::RejectAny(&[BNB_ERR_CORRUPT, BNB_ERR_MISMATCH])
            }
            _ => INVALID,
        };
        let mut buf = Buf::new(&bytes);
        let ptr = if fault == Some("buf NULL") {
            null_mut()
        } else {
            buf.ptr()
        };
        let h = self.handle(p, fault);
        self.begin(
            "deserialize",
            format!("{fault:?} pair {p} {} bytes", bytes.len()),
        );
        let st = unsafe { bnb_adam8bit_deserialize(h, ptr.cast(), bytes.len() as u64) };
        if self.settle((!h.is_null()).then_some(p), expect, st) {
            self.load_model(p, &saved.expect("accepted a recorded checkpoint"));
        }
    }
}
