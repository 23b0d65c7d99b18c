//! Loss scaling fused into the step (DECISIONS rule 18, `bnb_adam8bit_step_many_ex`): the
//! gradient divided by `*grad_scale` before anything reads it; a call with `*found_inf != 0`,
//! or a scale that is zero, negative or not finite, changes nothing at all. On a CPU handle the
//! pointers are host memory; on a CUDA handle (the emulated device) device memory read by the
//! kernels, with the step counters on the device: the two backends stay bit for bit equal
//! through skipped calls, checkpoints and step numbers past the device's power table.

mod common;
use common::checkpoint::{random_elems, KINDS};
use common::device::*;
use common::emulator::on_emulator;
use common::*;

use adam8bit::ffi::params::*;
use adam8bit::ffi::types::*;

/// What `step_many_ex` gets: nothing, a scale, a found_inf flag, or both.
#[derive(Clone, Copy, Debug)]
struct Scaling {
    grad_scale: Option<f32>,
    found_inf: Option<f32>,
}

const NONE: Scaling = Scaling {
    grad_scale: None,
    found_inf: None,
};

fn scaled(s: f32) -> Scaling {
    Scaling {
        grad_scale: Some(s),
        found_inf: Some(0.0),
    }
}

fn options_default() -> bnb_step_options_t {
    let mut o = std::mem::MaybeUninit::<bnb_step_options_t>::uninit();
    ok(unsafe {
        bnb_step_options_default(o.as_mut_ptr(), std::mem::size_of::<bnb_step_options_t>())
    });
    unsafe { o.assume_init() }
}

/// A handle's whole observable state: every parameter's step, counters and arrays.
fn state(h: &Handle) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for id in 0..h.num_params() {
        let i = h.info(id);
        out.push([i.step.to_le_bytes(), i.nonfinite_count.to_le_bytes()].concat());
        out.push(i.gnorm_scale.to_le_bytes().to_vec());
        for &k in KINDS.iter().filter(|&&k| h.has(id, k)) {
            out.push(h.read(id, k));
        }
    }
    out
}

/// A CPU handle and (with `cuda`) a CUDA handle of the same parameters, stepped through
/// `step_many_ex` with the same inputs and options.
struct Run {
    cpu: Handle,
    gpu: Option<(Handle, Vec<DevBuf>)>,
    sizes: Vec<(u64, bnb_dtype_t)>,
    params: Vec<Vec<u8>>,
    rng: Rng,
}

impl Run {
    fn new(cfg: &bnb_adam8bit_config_t, sizes: &[(u64, bnb_dtype_t)], cuda: bool) -> Run {
        let cpu = Handle::new(cfg);
        let mut rng = Rng(21);
        let mut params = Vec::new();
        for &(n, dt) in sizes {
            cpu.add(n, dt);
            params.push(random_elems(&mut rng, n as usize, dt, 1.0));
        }
        let gpu = cuda.then(|| {
            let h = Handle::new_cuda(cfg);
            let bufs = sizes
                .iter()
                .zip(&params)
                .map(|(&(n, dt), p)| {
                    h.add(n, dt);
                    DevBuf::from(p, 0)
                })
                .collect();
            (h, bufs)
        });
        Run {
            cpu,
            gpu,
            sizes: sizes.to_vec(),
            params,
            rng,
        }
    }

    /// Gradients of the next step, times `mul` (a loss scale the step then divides out).
    fn grads(&mut self, mul: f32) -> Vec<Vec<u8>> {
        let sizes = self.sizes.clone();
        sizes
            .iter()
            .map(|&(n, dt)| {
                let g: Vec<f32> = (0..n).map(|_| self.rng.normal() * 1e-2 * mul).collect();
                encode(dt, g.into_iter())
            })
            .collect()
    }

    fn step(&mut self, grads: &[Vec<u8>], s: Scaling) {
        let items: Vec<bnb_step_item_t> = self
            .params
            .iter_mut()
            .zip(grads)
            .enumerate()
            .map(|(id, (p, g))| bnb_step_item_t {
                id: id as u32,
                param: p.as_mut_ptr().cast(),
                grad: g.as_ptr().cast(),
            })
            .collect();
        let (scale, inf) = (s.grad_scale.unwrap_or(0.0), s.found_inf.unwrap_or(0.0));
        let mut o = options_default();
        o.grad_scale = s.grad_scale.map_or(std::ptr::null(), |_| &scale);
        o.found_inf = s.found_inf.map_or(std::ptr::null(), |_| &inf);
        ok(unsafe {
            bnb_adam8bit_step_many_ex(
                self.cpu.0,
                items.as_ptr(),
                items.len(),
                &o,
                std::ptr::null_mut(),
            )
        });
        if let Some((h, bufs)) = &self.gpu {
            let dev_g: Vec<DevBuf> = grads.iter().map(|g| DevBuf::from(g, 0)).collect();
            let dev_scale = DevBuf::from(&scale.to_le_bytes(), 0);
            let dev_inf = DevBuf::from(&inf.to_le_bytes(), 0);
            let items: Vec<bnb_step_item_t> = bufs
                .iter()
                .zip(&dev_g)
                .enumerate()
                .map(|(id, (p, g))| bnb_step_item_t {
                    id: id as u32,
                    param: p.as_mut_ptr(),
                    grad: g.as_mut_ptr(),
                })
                .collect();
            let mut o = options_default();
            o.grad_scale = s
                .grad_scale
                .map_or(std::ptr::null(), |_| dev_scale.ptr as *const f32);
            o.found_inf = s
                .found_inf
                .map_or(std::ptr::null(), |_| dev_inf.ptr as *const f32);
            let stream = non_blocking_stream();
            ok(unsafe { bnb_adam8bit_step_many_ex(h.0, items.as_ptr(), items.len(), &o, stream) });
            synchronize();
        }
    }

    /// The CUDA run equals the CPU run, bit for bit (parameters, every array, counters).
    fn assert_backends_agree(&self, what: &str) {
        let Some((h, bufs)) = &self.gpu else { return };
        for (id, (b, p)) in bufs.iter().zip(&self.params).enumerate() {
            assert!(
                b.read() == *p,
                "{what}: parameter {id} differs between the backends"
            );
        }
        assert!(
            state(h) == state(&self.cpu),
            "{what}: state differs between the backends"
        );
    }

    fn all_state(&self) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let gpu_params = self
            .gpu
            .as_ref()
            .map_or(Vec::new(), |(_, b)| b.iter().map(DevBuf::read).collect());
        let mut s = state(&self.cpu);
        if let Some((h, _)) = &self.gpu {
            s.extend(state(h));
        }
        ([self.params.clone(), gpu_params].concat(), s)
    }
}

/// fp16 is not among them: a power of two times an fp16 gradient leaves fp16's subnormal range
/// and gains precision, so it is not the same gradient scaled.
fn sizes() -> Vec<(u64, bnb_dtype_t)> {
    vec![
        (5000, BNB_DTYPE_F32),
        (4100, BNB_DTYPE_BF16),
        (700, BNB_DTYPE_BF16),
        (300, BNB_DTYPE_F32),
    ]
}

fn decode(dt: bnb_dtype_t, b: &[u8]) -> Vec<f32> {
    match dt {
        BNB_DTYPE_F32 => f32s(b),
        _ => b
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
    }
}

/// Every config path: blockwise, non-blockwise with max_unorm, percentile clipping.
fn configs() -> Vec<bnb_adam8bit_config_t> {
    let mut v = Vec::new();
    for (block_wise, clip, unorm) in [(true, 100, 0.0), (false, 100, 0.01), (true, 5, 0.0)] {
        let mut c = config_default();
        c.block_wise = block_wise;
        c.percentile_clipping = clip;
        c.max_unorm = unorm;
        c.weight_decay = 0.01;
        v.push(c);
    }
    v
}

/// A skipped call (found_inf, or a scale no gradient can be divided by) changes nothing, bit
/// for bit; a power-of-two scale on gradients multiplied by it gives exactly the plain step.
fn skips_and_scales(cuda: bool) {
    for cfg in configs() {
        let mut run = Run::new(&cfg, &sizes(), cuda);
        let mut plain = Run::new(&cfg, &sizes(), false);
        for step in 0..6 {
            // The same gradients for both runs: one multiplied by 1024 (exact in fp32 and bf16)
            // and divided back by the step.
            let g = run.grads(1.0);
            let g_scaled: Vec<Vec<u8>> = g
                .iter()
                .zip(&run.sizes)
                .map(|(b, &(_, dt))| encode(dt, decode(dt, b).into_iter().map(|x| x * 1024.0)))
                .collect();
            run.step(&g_scaled, scaled(1024.0));
            plain.step(&g, NONE);
            assert!(
                run.params == plain.params,
                "step {step}: a 2^10 loss scale changed the result"
            );
            assert!(state(&run.cpu) == state(&plain.cpu), "step {step}: state");
            run.assert_backends_agree(&format!("step {step}"));
            let before = run.all_state();
            let junk = run.grads(1e30);
            for skip in [
                Scaling {
                    grad_scale: None,
                    found_inf: Some(1.0),
                },
                Scaling {
                    grad_scale: Some(1.0),
                    found_inf: Some(3.0),
                },
                Scaling {
                    grad_scale: Some(0.0),
                    found_inf: None,
                },
                Scaling {
                    grad_scale: Some(-2.0),
                    found_inf: Some(0.0),
                },
                Scaling {
                    grad_scale: Some(f32::INFINITY),
                    found_inf: None,
                },
                Scaling {
                    grad_scale: Some(f32::NAN),
                    found_inf: None,
                },
            ] {
                run.step(&junk, skip);
                assert!(
                    run.all_state() == before,
                    "step {step}: {skip:?} changed something"
                );
            }
        }
    }
}

#[test]
fn a_skipped_call_changes_nothing_and_a_scale_divides_exactly_on_the_cpu() {
    skips_and_scales(false);
}

#[test]
fn a_skipped_call_changes_nothing_and_a_scale_divides_exactly_on_cuda() {
    on_emulator(
        "a_skipped_call_changes_nothing_and_a_scale_divides_exactly_on_cuda",
        |_| skips_and_scales(true),
    );
}

/// Any scale, fp32 gradients: dividing the gradient first by the same f32 division is the same
/// step; both backends agree through a mix of scaled, skipped and plain calls, a checkpoint
/// taken after skips (its step numbers are the device's), and step numbers far past the device's
/// first power table (set_step to 5000, then 10^6).
fn mixed_calls(cuda: bool) {
    let cfg = configs()[0];
    let f32_sizes = [(5000, BNB_DTYPE_F32), (300, BNB_DTYPE_F32)];
    let mut run = Run::new(&cfg, &f32_sizes, cuda);
    let mut manual = Run::new(&cfg, &f32_sizes, false);
    let s = 1234.567f32;
    for _ in 0..3 {
        let g = run.grads(1.0);
        let divided: Vec<Vec<u8>> = g
            .iter()
            .map(|b| encode(BNB_DTYPE_F32, f32s(b).into_iter().map(|x| x / s)))
            .collect();
        run.step(&g, scaled(s));
        manual.step(&divided, NONE);
        assert!(
            run.params == manual.params,
            "a scale of {s} is not the f32 division first"
        );
        run.assert_backends_agree("scaled");
    }
    let plan = [
        NONE,
        scaled(8.0),
        Scaling {
            grad_scale: None,
            found_inf: Some(1.0),
        },
        NONE,
    ];
    for (k, &s) in plan.iter().cycle().take(8).enumerate() {
        let g = run.grads(s.grad_scale.unwrap_or(1.0));
        run.step(&g, s);
        run.assert_backends_agree(&format!("call {k} ({s:?})"));
    }
    assert_eq!(
        run.cpu.info(0).step,
        3 + 6,
        "two of the eight calls were skipped"
    );
    if let Some((h, _)) = &run.gpu {
        assert_eq!(h.info(0).step, 9, "the device's step counter");
        // A checkpoint of the CUDA handle holds the device's step numbers.
        let from_gpu = Handle::new(&cfg);
        for &(n, dt) in &f32_sizes {
            from_gpu.add(n, dt);
        }
        ok(from_gpu.deserialize(&h.serialize()));
        assert!(
            state(&from_gpu) == state(&run.cpu),
            "the CUDA handle's checkpoint"
        );
    }
    for t in [5000u64, 1_000_000] {
        run.cpu.set_step(0, t);
        run.cpu.set_step(1, t);
        if let Some((h, _)) = &run.gpu {
            h.set_step(0, t);
            h.set_step(1, t);
        }
        for _ in 0..2 {
            let g = run.grads(1.0);
            run.step(&g, NONE);
            run.assert_backends_agree(&format!("after set_step({t})"));
        }
        assert_eq!(run.cpu.info(0).step, t + 2);
    }
}

#[test]
fn scaled_skipped_and_plain_calls_on_the_cpu() {
    mixed_calls(false);
}

#[test]
fn scaled_skipped_and_plain_calls_agree_on_both_backends() {
    on_emulator(
        "scaled_skipped_and_plain_calls_agree_on_both_backends",
        |_| mixed_calls(true),
    );
}

/// `options` may be NULL (no scaling); a struct_size this library does not know is refused, and
/// a refused call changes nothing.
#[test]
fn options_are_checked_before_anything_changes() {
    let mut run = Run::new(&configs()[0], &sizes(), false);
    let g = run.grads(1.0);
    let items: Vec<bnb_step_item_t> = run
        .params
        .iter_mut()
        .zip(&g)
        .enumerate()
        .map(|(id, (p, g))| bnb_step_item_t {
            id: id as u32,
            param: p.as_mut_ptr().cast(),
            grad: g.as_ptr().cast(),
        })
        .collect();
    let before = state(&run.cpu);
    let mut o = options_default();
    o.struct_size = 8;
    let s = unsafe {
        bnb_adam8bit_step_many_ex(
            run.cpu.0,
            items.as_ptr(),
            items.len(),
            &o,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(s, BNB_ERR_INVALID_ARGUMENT, "{}", message());
    assert!(state(&run.cpu) == before);
    let s = unsafe {
        bnb_adam8bit_step_many_ex(
            run.cpu.0,
            items.as_ptr(),
            items.len(),
            std::ptr::null(),
            std::ptr::null_mut(),
        )
    };
    assert_eq!(s, BNB_OK, "{}", message());
    assert_eq!(run.cpu.info(0).step, 1);
}
