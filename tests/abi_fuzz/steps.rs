//! Steps: `step` and `step_many` with valid items and with every kind of bad one, and the
//! injected panic that poisons a handle.

use std::ffi::c_void;
use std::ptr::null_mut;

use adam8bit::ffi::params::*;
use adam8bit::ffi::types::*;

use super::fuzzer::{Buf, Elems, Expect, Fuzzer};
use crate::common::ok;

/// One item, its pointers as the fault says: a NULL or misaligned (odd: every element type is
/// at least 2 bytes) param or grad, or a grad that is the param itself.
fn item(id: u32, param: &mut Elems, grad: &mut Elems, fault: Option<&str>) -> bnb_step_item_t {
    let (p, g) = (param.ptr(), grad.ptr());
    let (p, g) = match fault {
        Some("param NULL") => (null_mut(), g),
        Some("grad NULL") => (p, null_mut()),
        Some("param misaligned") => (p.wrapping_add(1), g),
        Some("grad misaligned") => (p, g.wrapping_add(1)),
        Some("grad is the param") => (p, p),
        _ => (p, g),
    };
    bnb_step_item_t {
        id,
        param: p.cast(),
        grad: g.cast::<c_void>(),
    }
}

impl Fuzzer {
    /// A stream is a fault on a CPU handle only (a CUDA handle enqueues on it).
    fn stream_fault(&self) -> Option<&'static str> {
        (self.device == BNB_DEVICE_CPU).then_some("stream")
    }

    /// Gradients for parameters `ids` of pair `p`.
    pub fn gradients(&mut self, p: usize, ids: &[u32]) -> Vec<Elems> {
        ids.iter()
            .map(|&id| {
                let k = self.pairs[p].known.params[id as usize];
                let scale = self.pick(&[0.01, 1.0, 100.0]);
                let bytes = self.elements(k.numel as usize, k.dtype, scale);
                Elems::new(self.device, &bytes)
            })
            .collect()
    }

    /// The model takes the accepted step as single `step` calls, in item order.
    fn step_model(&mut self, p: usize, ids: &[u32], grads: &mut [Elems]) {
        let pair = &mut self.pairs[p];
        for (&id, g) in ids.iter().zip(grads) {
            let param = pair.model_params[id as usize].ptr();
            ok(unsafe {
                bnb_adam8bit_step(pair.model.0, id, param.cast(), g.ptr().cast(), null_mut())
            });
            pair.known.params[id as usize].step += 1;
        }
        self.check_same(p);
    }

    /// Whether every parameter of `ids` can count one more step.
    fn can_step(&self, p: usize, ids: &[u32]) -> bool {
        ids.iter()
            .all(|&id| self.pairs[p].known.params[id as usize].step < u64::MAX)
    }

    pub fn step(&mut self) {
        let p = self.target();
        let n = self.pairs[p].known.params.len() as u32;
        let mut faults = vec![
            "handle NULL",
            "unknown id",
            "param NULL",
            "grad NULL",
            "param misaligned",
            "grad misaligned",
            "grad is the param",
        ];
        faults.extend(self.stream_fault());
        let fault = self.fault(&faults, n == 0);
        let id = match fault {
            Some("unknown id") => n + self.pick(&[0, 1, u32::MAX - n]),
            _ => self.below(n as u64) as u32,
        };
        // An unknown id has no buffers: small spare ones, which the call must not reach.
        let mut grads = if id < n {
            self.gradients(p, &[id])
        } else {
            vec![Elems::new(self.device, &[0; 64])]
        };
        let mut spare = Elems::new(self.device, &[0; 64]);
        let pair = &mut self.pairs[p];
        let param = pair.params.get_mut(id as usize).unwrap_or(&mut spare);
        let it = item(id, param, &mut grads[0], fault);
        let h = if fault == Some("handle NULL") {
            null_mut()
        } else {
            pair.subject.0
        };
        let stream = if fault == Some("stream") {
            0x10 as *mut c_void
        } else {
            null_mut()
        };
        let expect = if fault.is_some() || !self.can_step(p, &[id]) {
            Expect::Reject(BNB_ERR_INVALID_ARGUMENT)
        } else {
            Expect::Accept
        };
        self.begin("step", format!("{fault:?} pair {p} id {id}"));
        let st = unsafe { bnb_adam8bit_step(h, it.id, it.param, it.grad, stream) };
        if self.settle((!h.is_null()).then_some(p), expect, st) {
            // The model steps it through step_many.
            let pair = &mut self.pairs[p];
            let model_item = bnb_step_item_t {
                id,
                param: pair.model_params[id as usize].ptr().cast(),
                grad: grads[0].ptr().cast(),
            };
            ok(unsafe { bnb_adam8bit_step_many(pair.model.0, &model_item, 1, null_mut()) });
            pair.known.params[id as usize].step += 1;
            self.check_same(p);
        }
    }

    pub fn step_many(&mut self) {
        let p = self.target();
        let n = self.pairs[p].known.params.len() as u32;
        let mut faults = vec![
            "handle NULL",
            "items NULL",
            "items misaligned",
            "unknown id",
            "duplicate id",
            "param NULL",
            "grad NULL",
            "param misaligned",
            "grad misaligned",
            "grad is the param",
            "a grad overlaps another item's param",
            "items inside a param buffer",
        ];
        faults.extend(self.stream_fault());
        let fault = self.fault(&faults, false);
        // A random subset of the parameters, in random order (possibly none).
        let mut ids: Vec<u32> = (0..n).filter(|_| self.chance(0.6)).collect();
        for i in (1..ids.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            ids.swap(i, j);
        }
        let needs_items = matches!(
            fault,
            Some("items misaligned" | "duplicate id" | "param NULL" | "grad NULL")
                | Some("param misaligned" | "grad misaligned" | "grad is the param")
                | Some("items inside a param buffer" | "items NULL")
        );
        let needs_two = fault == Some("a grad overlaps another item's param");
        if (needs_items && ids.is_empty() && n == 0) || (needs_two && n < 2) {
            return self.step();
        }
        if needs_items && ids.is_empty() {
            ids.push(0);
        }
        if needs_two && ids.len() < 2 {
            ids = vec![0, 1];
        }
        let mut grads = self.gradients(p, &ids);
        let at = self.below(ids.len() as u64) as usize;
        let pair = &mut self.pairs[p];
        let mut items: Vec<bnb_step_item_t> = ids
            .iter()
            .zip(grads.iter_mut())
            .enumerate()
            .map(|(i, (&id, g))| {
                let f = if i == at { fault } else { None };
                item(id, &mut pair.params[id as usize], g, f)
            })
            .collect();
        // A scratch parameter buffer that holds the item list itself, or a second copy of a
        // parameter (separate buffers, so only its id is wrong).
        let mut scratch = Buf::new(&vec![0u8; items.len().max(1) * 24 + 64]);
        let copy_len = match fault {
            Some("duplicate id") => pair.known.params[ids[at] as usize].bytes(),
            _ => 0,
        };
        let mut copy = [0, 1].map(|_| Buf::new(&vec![0u8; copy_len]));
        match fault {
            Some("unknown id") => items.push(bnb_step_item_t {
                id: n + (self.rng.next_u64() % 3) as u32,
                ..items.first().copied().unwrap_or(bnb_step_item_t {
                    id: 0,
                    param: scratch.ptr().cast(),
                    grad: scratch.ptr().wrapping_add(32).cast(),
                })
            }),
            Some("duplicate id") => items.push(bnb_step_item_t {
                id: ids[at],
                param: copy[0].ptr().cast(),
                grad: copy[1].ptr().cast(),
            }),
            Some("a grad overlaps another item's param") => {
                let other = (at + 1) % items.len();
                items[at].grad = items[other].param;
            }
            _ => {}
        }
        let mut list = Buf::new(&vec![0u8; items.len() * 24 + 8]);
        let mut list_ptr = list.ptr().cast::<bnb_step_item_t>();
        match fault {
            Some("items NULL") => list_ptr = std::ptr::null_mut(),
            Some("items misaligned") => list_ptr = list.ptr().wrapping_add(4).cast(),
            Some("items inside a param buffer") => {
                // Parameter `at`'s buffer becomes the scratch one, which the list is copied into.
                let k = pair.known.params[ids[at] as usize];
                if scratch.len < k.bytes() {
                    scratch = Buf::new(&vec![0u8; k.bytes() + items.len() * 24]);
                }
                items[at].param = scratch.ptr().cast();
                list_ptr = scratch.ptr().cast();
            }
            _ => {}
        }
        unsafe {
            std::ptr::copy_nonoverlapping(
                items.as_ptr().cast::<u8>(),
                list_ptr.cast::<u8>(),
                if list_ptr.is_null() {
                    0
                } else {
                    items.len() * 24
                },
            );
        }
        let h = if fault == Some("handle NULL") {
            null_mut()
        } else {
            pair.subject.0
        };
        let stream = if fault == Some("stream") {
            0x10 as *mut c_void
        } else {
            null_mut()
        };
        let expect = if fault.is_some() || !self.can_step(p, &ids) {
            Expect::Reject(BNB_ERR_INVALID_ARGUMENT)
        } else {
            Expect::Accept
        };
        self.begin("step_many", format!("{fault:?} pair {p} ids {ids:?}"));
        let st = unsafe { bnb_adam8bit_step_many(h, list_ptr, items.len(), stream) };
        if self.settle((!h.is_null()).then_some(p), expect, st) {
            self.step_model(p, &ids, &mut grads);
        }
    }

    /// Injects a panic into a valid step of a subject (CPU handles: the hook is in the CPU
    /// sweep), which must poison it: the step and every later call on it but destroy return
    /// BNB_ERR_PANIC (checked by [`Fuzzer::settle`]).
    pub fn poison(&mut self) {
        let p = self.target();
        let ids: Vec<u32> = (0..self.pairs[p].known.params.len() as u32).collect();
        if self.device != BNB_DEVICE_CPU
            || self.pairs[p].poisoned
            || ids.is_empty()
            || !self.can_step(p, &ids)
        {
            return self.step_many();
        }
        let mut grads = self.gradients(p, &ids);
        let pair = &mut self.pairs[p];
        let items: Vec<bnb_step_item_t> = ids
            .iter()
            .zip(grads.iter_mut())
            .map(|(&id, g)| item(id, &mut pair.params[id as usize], g, None))
            .collect();
        let h = pair.subject.0;
        unsafe { adam8bit::test_hooks::panic_in_next_update(h) };
        self.begin("step_many (panic injected)", format!("pair {p}"));
        let st = unsafe { bnb_adam8bit_step_many(h, items.as_ptr(), items.len(), null_mut()) };
        // The step was cut off mid-update: the caller's buffers are what they are now.
        let pair = &mut self.pairs[p];
        pair.poisoned = true;
        pair.model_params = pair.params.clone();
        self.settle(Some(p), Expect::Reject(BNB_ERR_PANIC), st);
    }
}
