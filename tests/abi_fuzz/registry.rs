//! Handles and parameters: create, destroy, add_param(_ex).

use std::mem::offset_of;
use std::ptr::{null, null_mut};

use adam8bit::ffi::bnb_adam8bit_t;
use adam8bit::ffi::handle::*;
use adam8bit::ffi::params::*;
use adam8bit::ffi::types::*;

use super::bytes::{from_bytes, out_ptr, versioned, CONFIG_SIZE, MAX_STRUCT_SIZE, OPTIONS_SIZE};
use super::fuzzer::{Buf, Elems, Expect, Fuzzer, MAX_ELEMENTS, MAX_PAIRS, MAX_PARAMS};
use super::model::Known;
use super::queries::documented_defaults;
use crate::common::{ok, Handle};

impl Fuzzer {
    fn random_config(&mut self) -> bnb_adam8bit_config_t {
        let mut c = documented_defaults();
        c.lr = self.pick(&[1e-3, 3e-4, 0.0, -0.0, 1e-2]);
        c.beta1 = self.pick(&[0.9, 0.0, 0.5]);
        c.beta2 = self.pick(&[0.999, 0.95, 0.0]);
        c.eps = self.pick(&[1e-8, 0.0, 1e-3]);
        c.weight_decay = self.pick(&[0.0, 0.01]);
        c.max_unorm = self.pick(&[0.0, 0.0, 1.0, 0.01]);
        c.min_8bit_size = self.pick(&[4096, 256, 256, 1]);
        c.percentile_clipping = self.pick(&[100, 100, 100, 95, 1]);
        c.block_wise = self.chance(0.8);
        c.is_paged = self.chance(0.2);
        c.skip_zeros = self.chance(0.3);
        c
    }

    pub fn create(&mut self) {
        if self.pairs.len() >= MAX_PAIRS {
            return self.destroy();
        }
        let fault = self.fault(
            &[
                "config NULL",
                "struct_size small",
                "struct_size implausible",
                "unknown field set",
                "reserved byte set",
                "bool byte 2",
                "amsgrad",
                "optim_bits",
                "lr",
                "beta1",
                "beta2",
                "eps",
                "weight_decay",
                "max_unorm",
                "percentile_clipping",
                "device",
                "device_index",
                "out NULL",
                "out misaligned",
            ],
            false,
        );
        let mut cfg = self.random_config();
        let canonical = cfg;
        let mut size = if self.chance(0.2) {
            CONFIG_SIZE + 8 * (1 + self.below(4) as usize)
        } else {
            CONFIG_SIZE
        };
        let (mut device, mut index) = (self.device, 0);
        if self.device == BNB_DEVICE_CPU && self.chance(0.5) {
            index = -1;
        }
        let invalid = Expect::Reject(BNB_ERR_INVALID_ARGUMENT);
        let unsupported = Expect::Reject(BNB_ERR_UNSUPPORTED);
        let bad = f64::NAN;
        let expect = match fault {
            None | Some("out NULL" | "out misaligned" | "config NULL") => {
                fault.map_or(Expect::Accept, |_| invalid)
            }
            Some("struct_size small") => {
                size = self.pick(&[0, 8, CONFIG_SIZE - 1, CONFIG_SIZE - 8]);
                invalid
            }
            Some("struct_size implausible") => {
                size = MAX_STRUCT_SIZE + 8;
                invalid
            }
            Some("unknown field set" | "reserved byte set" | "amsgrad") => unsupported,
            Some(f) => {
                match f {
                    "bool byte 2" => {}
                    "optim_bits" => cfg.optim_bits = self.pick(&[8, 0, 16]),
                    "lr" => cfg.lr = self.pick(&[-1e-3, bad, f64::INFINITY, 1e39]),
                    "beta1" => cfg.beta1 = self.pick(&[1.0, -0.1, bad]),
                    "beta2" => cfg.beta2 = self.pick(&[1.0, -1e-9, bad]),
                    "eps" => cfg.eps = self.pick(&[-1e-8, bad, f64::INFINITY]),
                    "weight_decay" => cfg.weight_decay = self.pick(&[-0.01, bad]),
                    "max_unorm" => cfg.max_unorm = self.pick(&[-1.0, bad, 1e39]),
                    "percentile_clipping" => cfg.percentile_clipping = self.pick(&[0, 101, -5]),
                    "device" => device = self.pick(&[2, -1, 99]),
                    _ => index = if self.device == BNB_DEVICE_CPU { 1 } else { -1 },
                }
                invalid
            }
        };
        cfg.amsgrad = fault == Some("amsgrad");
        // The struct a caller of this size passes (a newer one's unknown tail is zero), with
        // room for all of this library's struct even when `struct_size` claims less.
        if fault == Some("unknown field set") {
            size = CONFIG_SIZE + 8;
        }
        let mut bytes = versioned(&cfg, size.max(CONFIG_SIZE));
        let raw = bytes.ptr();
        unsafe {
            std::ptr::write_unaligned(raw.cast::<u64>(), size as u64);
            match fault {
                Some("unknown field set") => *raw.add(CONFIG_SIZE + 3) = 1,
                Some("reserved byte set") => {
                    *raw.add(offset_of!(bnb_adam8bit_config_t, reserved) + 1) = 1
                }
                Some("bool byte 2") => *raw.add(offset_of!(bnb_adam8bit_config_t, block_wise)) = 2,
                _ => {}
            }
        }
        let config: *const bnb_adam8bit_config_t = if fault == Some("config NULL") {
            null()
        } else {
            bytes.ptr().cast()
        };
        let sentinel = 0x4000 as *mut bnb_adam8bit_t;
        let mut slot = Buf::new(&(sentinel as usize).to_le_bytes());
        let out = out_ptr::<*mut bnb_adam8bit_t>(&mut slot, fault);
        self.begin(
            "create",
            format!("{fault:?} device {device} index {index} size {size} {cfg:?}"),
        );
        let st = unsafe { bnb_adam8bit_create(config, device, index, out) };
        let created: usize = from_bytes(slot.as_bytes());
        if !self.settle(None, expect, st) {
            if created != sentinel as usize {
                self.fail("a rejected create wrote *out");
            }
            return;
        }
        let mut model = null_mut();
        ok(unsafe { bnb_adam8bit_create(&canonical, self.device, 0, &mut model) });
        let known = Known::new(canonical);
        self.add_pair(Handle(created as *mut _), Handle(model), known);
    }

    /// Destroys a pair (or passes NULL, a no-op): a poisoned subject must go cleanly too, and
    /// goes first (it has shown what it does).
    pub fn destroy(&mut self) {
        if self.chance(0.1) {
            self.begin("destroy", "NULL".into());
            unsafe { bnb_adam8bit_destroy(null_mut()) };
            return;
        }
        let p = match self.pairs.iter().position(|q| q.poisoned) {
            Some(p) => p,
            None => self.target(),
        };
        let poisoned = self.pairs[p].poisoned;
        self.begin("destroy", format!("pair {p}, poisoned {poisoned}"));
        drop(self.pairs.remove(p));
        self.stats.entry("destroy").or_default().0 += 1;
    }

    /// A parameter size: mostly small, sometimes at the 8-bit threshold or several blocks.
    fn numel(&mut self, min_8bit: u64) -> u64 {
        match self.below(6) {
            0 | 1 => 1 + self.below(300),
            2 => (min_8bit + self.below(3)).saturating_sub(1).max(1),
            3 => 256 * (1 + self.below(4)) + self.below(2),
            4 => self.pick(&[700, 4096, 5000, 16_385]),
            _ => 256 + self.below(1500),
        }
    }

    /// Valid options: a group, some overrides, sometimes a shard. Returns the numel they go
    /// with (a shard's slice length).
    fn random_options(&mut self, numel: u64) -> (bnb_param_options_t, u64) {
        let mut o: bnb_param_options_t = from_bytes(&[0u8; OPTIONS_SIZE]);
        o.struct_size = OPTIONS_SIZE as u64;
        o.group = self.pick(&[0, 0, 1, 2, 7]);
        o.lr_scale = 1.0;
        o.optim_bits = 32;
        let mut numel = numel;
        for bit in 0..8 {
            if !self.chance(0.2) {
                continue;
            }
            o.flags |= 1 << bit;
            match 1 << bit {
                BNB_OPT_LR_SCALE => o.lr_scale = self.pick(&[0.0, 0.5, 2.0, 1.0]),
                BNB_OPT_BETA1 => o.beta1 = self.pick(&[0.0, 0.5, 0.95]),
                BNB_OPT_BETA2 => o.beta2 = self.pick(&[0.9, 0.999]),
                BNB_OPT_EPS => o.eps = self.pick(&[0.0, 1e-6]),
                BNB_OPT_WEIGHT_DECAY => o.weight_decay = self.pick(&[0.0, 0.1]),
                BNB_OPT_OPTIM_BITS => o.optim_bits = self.pick(&[8, 32]),
                BNB_OPT_MIN_8BIT_SIZE => o.min_8bit_size = self.pick(&[0, 256, 1 << 20]),
                _ => {
                    // A slice of whole blocks of a tensor of `full` elements.
                    let full = numel + self.below(3) * 256 + self.below(300);
                    let blocks = full.div_ceil(256);
                    let first = self.below(blocks);
                    let last = first + 1 + self.below(blocks - first);
                    o.shard_full_numel = full;
                    o.shard_offset = first * 256;
                    numel = (last * 256).min(full) - first * 256;
                }
            }
        }
        (o, numel)
    }

    pub fn add_param(&mut self) {
        let p = self.target();
        let ex = self.chance(0.6);
        let known = &self.pairs[p].known;
        let full = known.params.len() >= MAX_PARAMS
            || known.params.iter().map(|q| q.numel).sum::<u64>() >= MAX_ELEMENTS;
        let min_8bit = known.cfg.min_8bit_size;
        let mut faults = vec![
            "handle NULL",
            "numel 0",
            "numel past the address space",
            "dtype",
            "out NULL",
            "out misaligned",
        ];
        if ex {
            faults.extend([
                "options struct_size small",
                "options unknown field set",
                "options unknown flag",
                "lr_scale",
                "beta1",
                "eps",
                "weight_decay",
                "optim_bits",
                "shard slice",
            ]);
        }
        // A full handle takes only calls that must fail.
        let fault = self.fault(&faults, full);
        let mut numel = self.numel(min_8bit);
        let mut dtype = self.pick(&[BNB_DTYPE_F32, BNB_DTYPE_F16, BNB_DTYPE_BF16]);
        let mut with_options = ex && self.chance(0.8);
        let (mut o, sliced) = if with_options {
            self.random_options(numel)
        } else {
            (from_bytes(&[0u8; OPTIONS_SIZE]), numel)
        };
        numel = sliced;
        let mut size = OPTIONS_SIZE;
        let mut tail_byte = false;
        let mut expect = None;
        let invalid = Some(Expect::Reject(BNB_ERR_INVALID_ARGUMENT));
        match fault {
            Some("handle NULL" | "out NULL" | "out misaligned") => expect = invalid,
            Some("numel 0") => numel = 0,
            Some("numel past the address space") => numel = self.pick(&[u64::MAX, 1 << 62]),
            Some("dtype") => {
                dtype = self.pick(&[3, -1, 1000]);
                expect = invalid;
            }
            Some("options struct_size small") => {
                with_options = true;
                size = self.pick(&[0, 8, OPTIONS_SIZE - 8]);
                expect = invalid;
            }
            Some("options unknown field set") => {
                with_options = true;
                tail_byte = true;
                expect = Some(Expect::Reject(BNB_ERR_UNSUPPORTED));
            }
            Some("options unknown flag") => {
                with_options = true;
                o.flags |= self.pick(&[1 << 11, 1 << 31]);
                expect = invalid;
            }
            Some(f) => {
                with_options = true;
                let bit = match f {
                    "lr_scale" => {
                        o.lr_scale = self.pick(&[-1.0, f64::NAN, f64::INFINITY]);
                        BNB_OPT_LR_SCALE
                    }
                    "beta1" => {
                        o.beta1 = self.pick(&[1.0, -0.5, f64::NAN]);
                        BNB_OPT_BETA1
                    }
                    "eps" => {
                        o.eps = self.pick(&[-1.0, f64::NAN]);
                        BNB_OPT_EPS
                    }
                    "weight_decay" => {
                        o.weight_decay = self.pick(&[-1.0, 1e39]);
                        BNB_OPT_WEIGHT_DECAY
                    }
                    "optim_bits" => {
                        o.optim_bits = self.pick(&[16, 0, 4]);
                        BNB_OPT_OPTIM_BITS
                    }
                    _ => {
                        o.shard_full_numel = numel + self.below(600);
                        o.shard_offset = self.pick(&[1, 255, o.shard_full_numel + 256]);
                        BNB_OPT_SHARD
                    }
                };
                o.flags |= bit;
            }
            None => {}
        }
        let known = &self.pairs[p].known;
        let predicted = known.add(numel, dtype, &o);
        let expect = expect.unwrap_or(match predicted {
            Ok(_) => Expect::Accept,
            Err(s) => Expect::Reject(s),
        });
        if tail_byte {
            size = OPTIONS_SIZE + 8;
        }
        let mut options = versioned(&o, size.max(OPTIONS_SIZE));
        unsafe {
            std::ptr::write_unaligned(options.ptr().cast::<u64>(), size as u64);
            if tail_byte {
                *options.ptr().add(OPTIONS_SIZE + 5) = 1;
            }
        }
        let h = if fault == Some("handle NULL") {
            null_mut()
        } else {
            self.pairs[p].subject.0
        };
        let mut slot = Buf::new(&0xDEAD_BEEFu32.to_le_bytes());
        let out = out_ptr::<u32>(&mut slot, fault);
        let opt_ptr: *const bnb_param_options_t = if with_options {
            options.ptr().cast()
        } else {
            null()
        };
        let name = if ex { "add_param_ex" } else { "add_param" };
        self.begin(
            name,
            format!("{fault:?} pair {p} numel {numel} dtype {dtype} {o:?}"),
        );
        let st = unsafe {
            if ex {
                bnb_adam8bit_add_param_ex(h, numel, dtype, opt_ptr, out)
            } else {
                bnb_adam8bit_add_param(h, numel, dtype, out)
            }
        };
        let pair = (!h.is_null()).then_some(p);
        let id: u32 = from_bytes(slot.as_bytes());
        if !self.settle(pair, expect, st) {
            if id != 0xDEAD_BEEF {
                self.fail("a rejected add_param wrote *out_id");
            }
            return;
        }
        let param = predicted.unwrap_or_else(|s| self.fail(format!("accepted, predicted {s}")));
        if id as usize != self.pairs[p].known.params.len() {
            self.fail(format!("id {id}"));
        }
        let canonical = versioned(&o, OPTIONS_SIZE);
        let mut model_id = 0;
        let model_opt = if with_options {
            canonical.as_bytes().as_ptr().cast()
        } else {
            null()
        };
        ok(unsafe {
            bnb_adam8bit_add_param_ex(
                self.pairs[p].model.0,
                numel,
                dtype,
                model_opt,
                &mut model_id,
            )
        });
        let initial = self.elements(param.numel as usize, dtype, 2.0);
        let pair = &mut self.pairs[p];
        pair.known.push(param);
        pair.params.push(Elems::new(self.device, &initial));
        pair.model_params.push(Elems::new(self.device, &initial));
        self.check_same(p);
    }
}
