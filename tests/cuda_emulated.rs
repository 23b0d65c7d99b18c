//! The CUDA backend on the emulated device (tools/cuemu): csrc/'s kernels, compiled unchanged
//! for the host, run by the unmodified library through the emulated driver. Every path, dtype
//! and edge size on a CUDA handle against a CPU handle fed the same inputs, field by field,
//! bit for bit where DECISIONS rule 3 demands it and within its bounds where a reduction is
//! involved; the step's launches and host synchronisations; checkpoints across backends; and
//! driver faults. Each test runs once per scheduling order of the emulated threads, and the
//! orders must compute the same digest (tests/common/emulator.rs).

mod common;
use common::checkpoint::{elem_size, random_elems, temp_dir, KINDS};
use common::device::*;
use common::emulator::*;
use common::*;

use adam8bit::ffi::params::*;
use adam8bit::ffi::types::*;
use adam8bit::rule3::{self, Field};

/// With `ADAM8BIT_CUEMU_SMALL=1` (the sanitizer and valgrind runs) the sizes stay small.
fn small() -> bool {
    std::env::var_os("ADAM8BIT_CUEMU_SMALL").is_some()
}

/// One parameter of a comparison.
#[derive(Clone, Copy)]
struct Spec {
    n: u64,
    dtype: bnb_dtype_t,
    opts: bnb_param_options_t,
    /// Whether its device buffers start 16-byte aligned (the kernels' vector path).
    aligned: bool,
}

fn spec(n: u64, dtype: bnb_dtype_t, aligned: bool) -> Spec {
    Spec {
        n,
        dtype,
        opts: param_options_default(),
        aligned,
    }
}

const DTYPES: [bnb_dtype_t; 3] = [BNB_DTYPE_F32, BNB_DTYPE_F16, BNB_DTYPE_BF16];

/// The edge sizes: one element, below, at and above a block, around min_8bit_size,
/// a tensor over several persistent-grid strides, and (not in small runs) one >= 2^20.
fn edge_sizes() -> Vec<u64> {
    let mut v = vec![1, 7, 255, 256, 257, 4095, 4096];
    if !small() {
        v.push(300_001);
    }
    v
}

/// Every edge size in every dtype, aligned and not.
fn edge_specs() -> Vec<Spec> {
    let mut v = Vec::new();
    for &n in &edge_sizes() {
        for dt in DTYPES {
            for aligned in [true, false] {
                v.push(spec(n, dt, aligned));
            }
        }
    }
    v
}

/// Gradients that exercise everything: N(0, 1e-2) with a block of zeros, blocks scaled up and
/// down by 1e3, and NaN, +Inf, -Inf and zeros scattered in.
fn gradient(rng: &mut Rng, n: usize, dtype: bnb_dtype_t) -> Vec<u8> {
    let mut g: Vec<f32> = (0..n).map(|_| rng.normal() * 1e-2).collect();
    for (b, block) in g.chunks_mut(256).enumerate() {
        match b % 7 {
            1 if n > 512 => block.fill(0.0),
            3 => block.iter_mut().for_each(|x| *x *= 1e3),
            5 => block.iter_mut().for_each(|x| *x *= 1e-3),
            _ => {}
        }
    }
    for _ in 0..(n / 700 + usize::from(n > 100)) {
        let i = (rng.next_u64() % n as u64) as usize;
        g[i] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0][(rng.next_u64() % 4) as usize];
    }
    encode(dtype, g.into_iter())
}

/// What each state kind holds, for rule 3's comparison.
fn field(kind: bnb_state_kind_t, n: u64, bytes: usize) -> Field {
    match kind {
        BNB_STATE1 | BNB_STATE2 if bytes as u64 == n => Field::Codes,
        BNB_GNORM_VEC | BNB_UNORM_VEC => Field::SquaredNorms,
        _ => Field::Floats { width: 4 },
    }
}

/// A CPU handle and a CUDA handle with the same parameters, stepped with the same inputs.
struct Pair {
    cpu: Handle,
    gpu: Handle,
    specs: Vec<Spec>,
    /// The CPU run's parameters; the CUDA run's live in `dev`.
    params: Vec<Vec<u8>>,
    dev: Vec<DevBuf>,
    rng: Rng,
    /// Results behind a reduction (clipping, max_unorm): rule 3's bounds, teacher-forced.
    bounded: bool,
    stream: *mut std::ffi::c_void,
    steps: u64,
}

impl Pair {
    fn new(cfg: &bnb_adam8bit_config_t, specs: Vec<Spec>, seed: u64) -> Pair {
        let cpu = Handle::new(cfg);
        let gpu = Handle::new_cuda(cfg);
        let mut rng = Rng(seed);
        let mut params = Vec::new();
        let mut dev = Vec::new();
        for s in &specs {
            assert_eq!(cpu.add_ex(s.n, s.dtype, &s.opts), gpu.add_ex(s.n, s.dtype, &s.opts));
            let p = random_elems(&mut rng, s.n as usize, s.dtype, 1.0);
            dev.push(DevBuf::from(&p, if s.aligned { 0 } else { elem_size(s.dtype) }));
            params.push(p);
        }
        let bounded = cfg.percentile_clipping < 100 || cfg.max_unorm > 0.0;
        Pair {
            cpu,
            gpu,
            specs,
            params,
            dev,
            rng,
            bounded,
            stream: non_blocking_stream(),
            steps: 0,
        }
    }

    /// One step of every parameter on both handles (one step_many each), compared.
    fn step(&mut self, digest: &mut Digest) {
        self.step_ids(&(0..self.specs.len() as u32).collect::<Vec<_>>(), digest);
    }

    fn step_ids(&mut self, ids: &[u32], digest: &mut Digest) {
        let grads: Vec<Vec<u8>> = ids
            .iter()
            .map(|&i| {
                let s = self.specs[i as usize];
                gradient(&mut self.rng, s.n as usize, s.dtype)
            })
            .collect();
        let dev_g: Vec<DevBuf> = grads
            .iter()
            .zip(ids)
            .map(|(g, &i)| {
                let s = self.specs[i as usize];
                DevBuf::from(g, if s.aligned { 0 } else { elem_size(s.dtype) })
            })
            .collect();
        let mut items: Vec<bnb_step_item_t> = Vec::new();
        for (&i, g) in ids.iter().zip(&grads) {
            items.push(bnb_step_item_t {
                id: i,
                param: self.params[i as usize].as_mut_ptr().cast(),
                grad: g.as_ptr().cast(),
            });
        }
        ok(unsafe {
            bnb_adam8bit_step_many(self.cpu.0, items.as_ptr(), items.len(), std::ptr::null_mut())
        });
        let dev_items: Vec<(u32, &DevBuf, &DevBuf)> = ids
            .iter()
            .zip(&dev_g)
            .map(|(&i, g)| (i, &self.dev[i as usize], g))
            .collect();
        ok(self.gpu.step_device(&dev_items, self.stream));
        self.steps += 1;
        self.compare(digest);
        if self.bounded {
            self.teacher_force();
        }
    }

    /// Every parameter, state array and counter of the CUDA handle against the CPU's.
    fn compare(&self, digest: &mut Digest) {
        // The step ran on a non-blocking stream, which the legacy stream's copies do not wait for.
        synchronize();
        for (id, s) in self.specs.iter().enumerate() {
            let id = id as u32;
            let what = |field: &str| {
                format!(
                    "step {} parameter {id} (n = {}, dtype {}, {}aligned): {field}",
                    self.steps,
                    s.n,
                    s.dtype,
                    if s.aligned { "" } else { "un" }
                )
            };
            let got = self.dev[id as usize].read();
            let width = elem_size(s.dtype);
            rule3::check(Field::Floats { width }, &got, &self.params[id as usize], self.bounded)
                .unwrap_or_else(|e| panic!("{}: {e}", what("params")));
            digest.add(&got);
            for &kind in KINDS.iter() {
                assert_eq!(self.cpu.has(id, kind), self.gpu.has(id, kind));
                if !self.cpu.has(id, kind) {
                    continue;
                }
                let (want, got) = (self.cpu.read(id, kind), self.gpu.read(id, kind));
                rule3::check(field(kind, s.n, want.len()), &got, &want, self.bounded)
                    .unwrap_or_else(|e| panic!("{}: {e}", what(&format!("state kind {kind}"))));
                digest.add(&got);
            }
            let (a, b) = (self.cpu.info(id), self.gpu.info(id));
            assert_eq!(
                (a.step, a.nonfinite_count, a.numel, a.path, a.state_bytes, a.lr),
                (b.step, b.nonfinite_count, b.numel, b.path, b.state_bytes, b.lr),
                "{}",
                what("param_info")
            );
            rule3::check(
                Field::Floats { width: 4 },
                &b.gnorm_scale.to_le_bytes(),
                &a.gnorm_scale.to_le_bytes(),
                self.bounded,
            )
            .unwrap_or_else(|e| panic!("{}: {e}", what("gnorm_scale")));
            digest.add(&b.gnorm_scale.to_le_bytes());
            digest.add(&b.nonfinite_count.to_le_bytes());
        }
    }

    /// After a bounded comparison, the CUDA handle continues from the CPU's exact state, so
    /// that the next step is compared from the same inputs (as the golden vectors are).
    fn teacher_force(&self) {
        for id in 0..self.specs.len() as u32 {
            for &kind in KINDS.iter() {
                if self.cpu.has(id, kind) && kind != BNB_QMAP1 && kind != BNB_QMAP2 {
                    self.gpu.write(id, kind, &self.cpu.read(id, kind));
                }
            }
            self.dev[id as usize].write(&self.params[id as usize]);
        }
    }
}

fn config(f: impl FnOnce(&mut bnb_adam8bit_config_t)) -> bnb_adam8bit_config_t {
    let mut c = config_default();
    f(&mut c);
    c
}

/// Forces the 32-bit path whatever the size.
fn fp32_state(mut s: Spec) -> Spec {
    s.opts.flags |= BNB_OPT_OPTIM_BITS;
    s.opts.optim_bits = 32;
    s
}

fn run_pair(cfg: bnb_adam8bit_config_t, specs: Vec<Spec>, steps: usize, seed: u64, d: &mut Digest) {
    let mut pair = Pair::new(&cfg, specs, seed);
    for _ in 0..steps {
        pair.step(d);
    }
}

#[test]
fn blockwise_every_dtype_and_edge_size() {
    on_emulator("blockwise_every_dtype_and_edge_size", |d| {
        let cfg = config(|c| {
            c.min_8bit_size = 1;
            c.weight_decay = 0.01;
        });
        let mut specs = edge_specs();
        if !small() {
            specs.push(spec((1 << 20) + 3, BNB_DTYPE_F32, true));
            specs.push(spec((1 << 20) + 3, BNB_DTYPE_BF16, false));
        }
        run_pair(cfg, specs, 3, 1, d);
    });
}
