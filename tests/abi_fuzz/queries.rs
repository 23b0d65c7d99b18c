//! Calls that read: the versioned structs' `_default` functions, get_config, num_params and
//! get_device; and the process-wide worker count, which no result depends on.

use std::ptr::null_mut;

use adam8bit::ffi::handle::*;
use adam8bit::ffi::params::*;
use adam8bit::ffi::types::*;

use super::bytes::{from_bytes, out_ptr, struct_bytes, CONFIG_SIZE, MAX_STRUCT_SIZE, OPTIONS_SIZE};
use super::fuzzer::{Buf, Expect, Fuzzer};
use crate::common::ok;

/// `bnb.optim.Adam8bit`'s defaults, as the header lists them.
pub fn documented_defaults() -> bnb_adam8bit_config_t {
    bnb_adam8bit_config_t {
        struct_size: CONFIG_SIZE as u64,
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        max_unorm: 0.0,
        min_8bit_size: 4096,
        optim_bits: 32,
        percentile_clipping: 100,
        amsgrad: false,
        block_wise: true,
        is_paged: false,
        skip_zeros: false,
        reserved: [0; 4],
        seed: 0,
        stochastic_rounding: false,
        reserved2: [0; 7],
    }
}

impl Fuzzer {
    /// `bnb_adam8bit_config_default`, `_preset` and `bnb_param_options_default` with every
    /// kind of `struct_size`: at most that many bytes written, zeros past this library's
    /// struct, `struct_size` set, nothing past the caller's size.
    pub fn struct_defaults(&mut self) {
        let which = self.below(3);
        let fault = self.fault(
            &["out NULL", "size below 8", "size implausible", "preset"],
            false,
        );
        let ours = if which == 2 {
            OPTIONS_SIZE
        } else {
            CONFIG_SIZE
        };
        let mut size = match self.below(3) {
            0 => ours,
            1 => 8 + self.below(ours as u64 - 8) as usize,
            _ => ours + 1 + self.below(40) as usize,
        };
        let mut preset = self.pick(&[
            BNB_PRESET_ADAM8BIT,
            BNB_PRESET_ADAMW8BIT,
            BNB_PRESET_PAGED_ADAM8BIT,
            BNB_PRESET_PAGED_ADAMW8BIT,
        ]);
        match fault {
            Some("size below 8") => size = self.below(8) as usize,
            Some("size implausible") => size = MAX_STRUCT_SIZE + 1,
            Some("preset") => preset = self.pick(&[4, -1, 1 << 20]),
            _ => {}
        }
        let expect = match fault {
            None => Expect::Accept,
            Some("preset") if which != 1 => Expect::Accept,
            _ => Expect::Reject(BNB_ERR_INVALID_ARGUMENT),
        };
        // Room for what a wrongly accepted size would write, plus a pattern after it.
        let canary: Vec<u8> = (0..size + 64).map(|i| i as u8 ^ 0x5A).collect();
        let mut buf = Buf::new(&canary);
        let out = if fault == Some("out NULL") {
            null_mut()
        } else {
            buf.ptr()
        };
        let name = ["config_default", "config_preset", "param_options_default"][which as usize];
        self.begin(name, format!("{fault:?} size {size} preset {preset}"));
        let st = unsafe {
            match which {
                0 => bnb_adam8bit_config_default(out.cast(), size),
                1 => bnb_adam8bit_config_preset(preset, out.cast(), size),
                _ => bnb_param_options_default(out.cast(), size),
            }
        };
        if !self.settle(None, expect, st) {
            if buf.as_bytes()[..canary.len()] != canary[..] {
                self.fail("a rejected call wrote its output");
            }
            return;
        }
        let mut want = match which {
            0 => struct_bytes(&documented_defaults()),
            1 => {
                let mut c = documented_defaults();
                c.weight_decay = [0.0, 0.01, 0.0, 0.01][preset as usize];
                c.is_paged = preset >= BNB_PRESET_PAGED_ADAM8BIT;
                struct_bytes(&c)
            }
            _ => {
                // No override set, group 0; the values of unset fields are not promised, so
                // they are taken from a full-size write.
                let mut full = [0u8; OPTIONS_SIZE];
                ok(unsafe { bnb_param_options_default(full.as_mut_ptr().cast(), OPTIONS_SIZE) });
                let o: bnb_param_options_t = from_bytes(&full);
                if (o.flags, o.group) != (0, 0) {
                    self.fail(format!("options default {o:?}"));
                }
                full.to_vec()
            }
        };
        want.resize(size.max(ours), 0);
        want.truncate(size);
        want[..8].copy_from_slice(&(size as u64).to_le_bytes());
        let got = &buf.as_bytes()[..canary.len()];
        if got[..size] != want[..] || got[size..] != canary[size..] {
            self.fail(format!(
                "wrote {:?}, expected {want:?}",
                &got[..size.max(1)]
            ));
        }
    }

    /// `get_config` with every kind of `struct_size`.
    pub fn get_config(&mut self) {
        let p = self.target();
        let fault = self.fault(
            &[
                "handle NULL",
                "out NULL",
                "size below 8",
                "size implausible",
            ],
            false,
        );
        let mut size = match self.below(3) {
            0 => CONFIG_SIZE,
            1 => 8 + self.below(CONFIG_SIZE as u64 - 8) as usize,
            _ => CONFIG_SIZE + 1 + self.below(40) as usize,
        };
        match fault {
            Some("size below 8") => size = self.below(8) as usize,
            Some("size implausible") => size = MAX_STRUCT_SIZE + 1,
            _ => {}
        }
        let canary: Vec<u8> = (0..size + 64).map(|i| i as u8 ^ 0xC3).collect();
        let mut buf = Buf::new(&canary);
        let out = if fault == Some("out NULL") {
            null_mut()
        } else {
            buf.ptr()
        };
        let h = if fault == Some("handle NULL") {
            null_mut()
        } else {
            self.pairs[p].subject.0
        };
        self.begin("get_config", format!("{fault:?} pair {p} size {size}"));
        let st = unsafe { bnb_adam8bit_get_config(h, out.cast(), size) };
        let expect = fault.map_or(Expect::Accept, |_| Expect::Reject(BNB_ERR_INVALID_ARGUMENT));
        let pair = (!h.is_null()).then_some(p);
        if !self.settle(pair, expect, st) {
            if buf.as_bytes()[..canary.len()] != canary[..] {
                self.fail("a rejected get_config wrote its output");
            }
            return;
        }
        let mut want = self.pairs[p].last.config.clone();
        want.resize(size.max(CONFIG_SIZE), 0);
        want.truncate(size);
        want[..8].copy_from_slice(&(size as u64).to_le_bytes());
        let got = &buf.as_bytes()[..canary.len()];
        if got[..size] != want[..] || got[size..] != canary[size..] {
            self.fail("get_config wrote other bytes than its struct_size allows");
        }
        self.check_unchanged(p);
    }

    /// `num_params` and `get_device`.
    pub fn counts_and_device(&mut self) {
        let p = self.target();
        let fault = self.fault(&["handle NULL", "out NULL", "out misaligned"], false);
        let h = if fault == Some("handle NULL") {
            null_mut()
        } else {
            self.pairs[p].subject.0
        };
        let mut slot = Buf::new(&0x7777_7777u32.to_le_bytes());
        let device = self.chance(0.5);
        let name = if device { "get_device" } else { "num_params" };
        self.begin(name, format!("{fault:?} pair {p}"));
        let st = unsafe {
            if device {
                bnb_adam8bit_get_device(h, out_ptr(&mut slot, fault))
            } else {
                bnb_adam8bit_num_params(h, out_ptr(&mut slot, fault))
            }
        };
        let expect = fault.map_or(Expect::Accept, |_| Expect::Reject(BNB_ERR_INVALID_ARGUMENT));
        let got: u32 = from_bytes(slot.as_bytes());
        if !self.settle((!h.is_null()).then_some(p), expect, st) {
            if got != 0x7777_7777 {
                self.fail("a rejected call wrote its output");
            }
            return;
        }
        let want = if device {
            self.device as u32
        } else {
            self.pairs[p].known.params.len() as u32
        };
        if got != want {
            self.fail(format!("{got}, expected {want}"));
        }
        self.check_unchanged(p);
    }

    /// The process-wide worker count; results never depend on it.
    pub fn set_num_threads(&mut self) {
        let bad = self.chance(0.2);
        let threads = if bad {
            self.pick(&[4097, u32::MAX])
        } else {
            self.pick(&[0, 1, 2, 3])
        };
        self.begin("set_num_threads", format!("{threads}"));
        let expect = if bad {
            Expect::Reject(BNB_ERR_INVALID_ARGUMENT)
        } else {
            Expect::Accept
        };
        self.settle(None, expect, bnb_set_num_threads(threads));
        if bnb_get_num_threads() == 0 {
            self.fail("no worker threads");
        }
    }
}
