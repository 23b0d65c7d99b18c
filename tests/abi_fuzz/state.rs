//! State access and settings: read_state, write_state, state_size, param_info, set_step,
//! set_lr and set_group_lr.

use std::ffi::c_void;
use std::ptr::null_mut;

use adam8bit::ffi::params::*;
use adam8bit::ffi::state::*;
use adam8bit::ffi::types::*;

use super::bytes::INFO_SIZE;
use super::fuzzer::{Buf, Expect, Fuzzer};
use crate::common::ok;

const INVALID: Expect = Expect::Reject(BNB_ERR_INVALID_ARGUMENT);

/// Arrays of magnitudes, which may not hold a negative element.
fn is_magnitude(kind: bnb_state_kind_t) -> bool {
    matches!(
        kind,
        BNB_ABSMAX1 | BNB_ABSMAX2 | BNB_MAX1 | BNB_MAX2 | BNB_GNORM_VEC | BNB_UNORM_VEC
    )
}

fn f32_bytes(xs: impl Iterator<Item = f32>) -> Vec<u8> {
    xs.flat_map(f32::to_le_bytes).collect()
}

impl Fuzzer {
    /// A kind parameter `id` keeps (with its size), one it does not keep, or one that is no
    /// kind at all, as `fault` says.
    fn pick_kind(
        &mut self,
        p: usize,
        id: u32,
        known: bool,
        fault: Option<&str>,
    ) -> (bnb_state_kind_t, u64) {
        if fault == Some("unknown kind") {
            return (self.pick(&[-1, 10, 1 << 30]), 16);
        }
        if !known {
            return (BNB_STATE1, 16);
        }
        let k = &self.pairs[p].known;
        if fault == Some("kind not kept") {
            let absent: Vec<bnb_state_kind_t> = (BNB_STATE1..=BNB_UNORM_VEC)
                .filter(|&kind| k.state_size(id as usize, kind).is_none())
                .collect();
            return (self.pick(&absent), 16);
        }
        let kinds = k.kinds(id as usize);
        self.pick(&kinds)
    }

    /// A wrong byte count for an array of `size` bytes.
    fn wrong_size(&mut self, size: u64) -> u64 {
        self.pick(&[0, size - 1, size + 1, 2 * size])
    }

    pub fn read_state(&mut self) {
        let fault = self.fault(
            &[
                "handle NULL",
                "unknown id",
                "unknown kind",
                "kind not kept",
                "bytes wrong",
                "dst NULL",
            ],
            false,
        );
        let (p, id, known) = self.target_param(fault);
        let (kind, size) = self.pick_kind(p, id, known, fault);
        let bytes = if fault == Some("bytes wrong") {
            self.wrong_size(size)
        } else {
            size
        };
        let canary: Vec<u8> = (0..size.max(bytes) + 16).map(|i| i as u8 ^ 0x3C).collect();
        let mut dst = Buf::new(&canary);
        let ptr = if fault == Some("dst NULL") {
            null_mut()
        } else {
            dst.ptr()
        };
        let h = self.handle(p, fault);
        let expect = if fault.is_some() || !known {
            INVALID
        } else {
            Expect::Accept
        };
        self.begin(
            "read_state",
            format!("{fault:?} pair {p} id {id} kind {kind} bytes {bytes}"),
        );
        let st = unsafe { bnb_adam8bit_read_state(h, id, kind, ptr.cast::<c_void>(), bytes) };
        let got = &dst.as_bytes()[..canary.len()];
        if !self.settle((!h.is_null()).then_some(p), expect, st) {
            if got != canary {
                self.fail("a rejected read_state wrote into dst");
            }
            return;
        }
        let want = self.pairs[p].last.params[id as usize].array(kind);
        if &got[..size as usize] != want || got[size as usize..] != canary[size as usize..] {
            self.fail("read_state wrote other bytes than the array's");
        }
        self.check_unchanged(p);
    }

    /// Contents for array `kind` of `size` bytes that a write must accept.
    fn state_contents(&mut self, p: usize, id: u32, kind: bnb_state_kind_t, size: u64) -> Vec<u8> {
        let n = size as usize / 4;
        if matches!(kind, BNB_QMAP1 | BNB_QMAP2) {
            return self.pairs[p].last.params[id as usize].array(kind).to_vec();
        }
        if is_magnitude(kind) {
            // -0.0 and NaN with its sign bit set are not negative.
            let specials = [
                0.0,
                -0.0,
                f32::INFINITY,
                f32::NAN,
                f32::from_bits(0xFFC0_0000),
            ];
            let special = self.chance(0.2);
            let xs: Vec<f32> = (0..n)
                .map(|_| {
                    if special && self.chance(0.2) {
                        self.pick(&specials)
                    } else {
                        self.rng.uniform() * self.pick(&[1e-3, 1.0, 10.0])
                    }
                })
                .collect();
            return f32_bytes(xs.into_iter());
        }
        let path = self.pairs[p].known.params[id as usize].path;
        if path == BNB_PATH_FP32 {
            return self.elements(n, BNB_DTYPE_F32, 0.1);
        }
        (0..size).map(|_| self.rng.next_u64() as u8).collect()
    }

    pub fn write_state(&mut self) {
        let mut fault = self.fault(
            &[
                "handle NULL",
                "unknown id",
                "unknown kind",
                "kind not kept",
                "bytes wrong",
                "src NULL",
                "negative magnitude",
                "map differs",
            ],
            false,
        );
        let (p, id, known) = self.target_param(fault);
        let (mut kind, mut size) = self.pick_kind(p, id, known, fault);
        let mut expect = if fault.is_some() || !known {
            INVALID
        } else {
            Expect::Accept
        };
        if known && matches!(fault, Some("negative magnitude" | "map differs")) {
            let k = &self.pairs[p].known;
            let wanted: Vec<(bnb_state_kind_t, u64)> = k
                .kinds(id as usize)
                .into_iter()
                .filter(|&(kind, _)| match fault {
                    Some("map differs") => matches!(kind, BNB_QMAP1 | BNB_QMAP2),
                    _ => is_magnitude(kind),
                })
                .collect();
            if wanted.is_empty() {
                // A 32-bit parameter without such arrays: absmax is one it does not keep.
                fault = Some("kind not kept");
                (kind, size) = (BNB_ABSMAX1, 16);
            } else {
                (kind, size) = self.pick(&wanted);
                if fault == Some("map differs") {
                    expect = Expect::Reject(BNB_ERR_MISMATCH);
                }
            }
        }
        let mut src = if known && !matches!(fault, Some("unknown kind" | "kind not kept")) {
            self.state_contents(p, id, kind, size)
        } else {
            vec![0; size as usize]
        };
        let at = self.below(src.len() as u64 / 4) as usize * 4;
        match fault {
            Some("negative magnitude") if known => {
                let x: f32 = self.pick(&[-1e-3, -f32::INFINITY, -1e-45, -3.0e38]);
                src[at..at + 4].copy_from_slice(&x.to_le_bytes());
            }
            Some("map differs") if known => {
                let x = f32::from_le_bytes(src[at..at + 4].try_into().unwrap());
                src[at..at + 4].copy_from_slice(&(x + 1e-3).to_le_bytes());
            }
            _ => {}
        }
        let bytes = if fault == Some("bytes wrong") {
            self.wrong_size(size)
        } else {
            size
        };
        src.resize(size.max(bytes) as usize, 0);
        let mut buf = Buf::new(&src);
        let ptr = if fault == Some("src NULL") {
            null_mut()
        } else {
            buf.ptr()
        };
        let h = self.handle(p, fault);
        self.begin(
            "write_state",
            format!("{fault:?} pair {p} id {id} kind {kind} bytes {bytes}"),
        );
        let st = unsafe { bnb_adam8bit_write_state(h, id, kind, ptr.cast(), bytes) };
        if self.settle((!h.is_null()).then_some(p), expect, st) {
            ok(unsafe {
                bnb_adam8bit_write_state(self.pairs[p].model.0, id, kind, buf.ptr().cast(), size)
            });
            self.check_same(p);
        }
    }

    pub fn state_size(&mut self) {
        let fault = self.fault(
            &[
                "handle NULL",
                "unknown id",
                "unknown kind",
                "out NULL",
                "out misaligned",
            ],
            false,
        );
        let (p, id, known) = self.target_param(fault);
        let kind = if fault == Some("unknown kind") {
            self.pick(&[-1, 10, i32::MAX])
        } else {
            self.pick(&(BNB_STATE1..=BNB_UNORM_VEC).collect::<Vec<_>>())
        };
        let size = known
            .then(|| self.pairs[p].known.state_size(id as usize, kind))
            .flatten();
        let expect = if fault.is_some() || size.is_none() {
            INVALID
        } else {
            Expect::Accept
        };
        let mut slot = Buf::new(&u64::MAX.to_le_bytes());
        let out: *mut u64 = match fault {
            Some("out NULL") => null_mut(),
            Some("out misaligned") => slot.ptr().wrapping_add(4).cast(),
            _ => slot.ptr().cast(),
        };
        let h = self.handle(p, fault);
        self.begin(
            "state_size",
            format!("{fault:?} pair {p} id {id} kind {kind}"),
        );
        let st = unsafe { bnb_adam8bit_state_size(h, id, kind, out) };
        let got = u64::from_le_bytes(slot.as_bytes()[..8].try_into().unwrap());
        if !self.settle((!h.is_null()).then_some(p), expect, st) {
            if got != u64::MAX || slot.as_bytes()[8..12] != [0xEE; 4] {
                self.fail("a rejected state_size wrote its output");
            }
            return;
        }
        if Some(got) != size {
            self.fail(format!("state_size {got}, expected {size:?}"));
        }
        self.check_unchanged(p);
    }

    /// `param_info` with every kind of `struct_size`.
    pub fn param_info(&mut self) {
        let fault = self.fault(
            &[
                "handle NULL",
                "unknown id",
                "out NULL",
                "size below 8",
                "size implausible",
            ],
            false,
        );
        let (p, id, known) = self.target_param(fault);
        let size = match fault {
            Some("size below 8") => self.below(8) as usize,
            Some("size implausible") => (1 << 20) + 1,
            _ => match self.below(3) {
                0 => INFO_SIZE,
                1 => 8 + self.below(INFO_SIZE as u64 - 8) as usize,
                _ => INFO_SIZE + 1 + self.below(40) as usize,
            },
        };
        let canary: Vec<u8> = (0..size + 64).map(|i| i as u8 ^ 0x99).collect();
        let mut buf = Buf::new(&canary);
        let out = if fault == Some("out NULL") {
            null_mut()
        } else {
            buf.ptr()
        };
        let h = self.handle(p, fault);
        let expect = if fault.is_some() || !known {
            INVALID
        } else {
            Expect::Accept
        };
        self.begin(
            "param_info",
            format!("{fault:?} pair {p} id {id} size {size}"),
        );
        let st = unsafe { bnb_adam8bit_param_info(h, id, out.cast(), size) };
        let got = &buf.as_bytes()[..canary.len()];
        if !self.settle((!h.is_null()).then_some(p), expect, st) {
            if got != canary {
                self.fail("a rejected param_info wrote its output");
            }
            return;
        }
        let mut want = self.pairs[p].last.params[id as usize].info.clone();
        want.resize(size.max(INFO_SIZE), 0);
        want.truncate(size);
        want[..8].copy_from_slice(&(size as u64).to_le_bytes());
        if got[..size] != want[..] || got[size..] != canary[size..] {
            self.fail("param_info wrote other bytes than its struct_size allows");
        }
        self.check_unchanged(p);
    }

    pub fn set_step(&mut self) {
        let fault = self.fault(&["handle NULL", "unknown id", "step 2^64-1"], false);
        let (p, id, known) = self.target_param(fault);
        let step = match fault {
            Some("step 2^64-1") => u64::MAX,
            // Now and then within a step or two of the largest count.
            _ if self.chance(0.1) => self.pick(&[u64::MAX - 1, u64::MAX - 2]),
            _ => self.pick(&[0, 1, 7, 1000, 1 << 40]),
        };
        let h = self.handle(p, fault);
        let expect = if fault.is_some() || !known {
            INVALID
        } else {
            Expect::Accept
        };
        self.begin(
            "set_step",
            format!("{fault:?} pair {p} id {id} step {step}"),
        );
        let st = unsafe { bnb_adam8bit_set_step(h, id, step) };
        if self.settle((!h.is_null()).then_some(p), expect, st) {
            ok(unsafe { bnb_adam8bit_set_step(self.pairs[p].model.0, id, step) });
            self.pairs[p].known.params[id as usize].step = step;
            self.check_same(p);
        }
    }

    /// A learning rate: valid (zero, -0.0, up to f32::MAX) or, with `bad`, not.
    fn lr(&mut self, bad: bool) -> f64 {
        if bad {
            self.pick(&[
                -1e-3,
                f64::NAN,
                f64::INFINITY,
                -f64::INFINITY,
                f32::MAX as f64 * 1.001,
            ])
        } else {
            self.pick(&[0.0, -0.0, 1e-4, 1e-3, 0.1, f32::MAX as f64])
        }
    }

    pub fn set_lr(&mut self) {
        let p = self.target();
        let fault = self.fault(&["handle NULL", "lr"], false);
        let lr = self.lr(fault == Some("lr"));
        let h = self.handle(p, fault);
        let expect = if fault.is_some() {
            INVALID
        } else {
            Expect::Accept
        };
        self.begin("set_lr", format!("{fault:?} pair {p} lr {lr}"));
        let st = unsafe { bnb_adam8bit_set_lr(h, lr) };
        if self.settle((!h.is_null()).then_some(p), expect, st) {
            ok(unsafe { bnb_adam8bit_set_lr(self.pairs[p].model.0, lr) });
            self.pairs[p].known.set_lr(lr);
            self.check_same(p);
        }
    }

    pub fn set_group_lr(&mut self) {
        let p = self.target();
        let groups: Vec<u32> = self.pairs[p].known.groups.keys().copied().collect();
        let fault = self.fault(&["handle NULL", "lr", "unknown group"], groups.is_empty());
        let group = if fault == Some("unknown group") || groups.is_empty() {
            self.pick(&[3, 100, u32::MAX])
        } else {
            self.pick(&groups)
        };
        let lr = self.lr(fault == Some("lr"));
        let h = self.handle(p, fault);
        let expect = if fault.is_some() || groups.is_empty() {
            INVALID
        } else {
            Expect::Accept
        };
        self.begin(
            "set_group_lr",
            format!("{fault:?} pair {p} group {group} lr {lr}"),
        );
        let st = unsafe { bnb_adam8bit_set_group_lr(h, group, lr) };
        if self.settle((!h.is_null()).then_some(p), expect, st) {
            ok(unsafe { bnb_adam8bit_set_group_lr(self.pairs[p].model.0, group, lr) });
            self.pairs[p].known.groups.insert(group, lr);
            self.check_same(p);
        }
    }
}
