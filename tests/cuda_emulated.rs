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
    cfg: bnb_adam8bit_config_t,
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
            assert_eq!(
                cpu.add_ex(s.n, s.dtype, &s.opts),
                gpu.add_ex(s.n, s.dtype, &s.opts)
            );
            let p = random_elems(&mut rng, s.n as usize, s.dtype, 1.0);
            dev.push(DevBuf::from(
                &p,
                if s.aligned { 0 } else { elem_size(s.dtype) },
            ));
            params.push(p);
        }
        let bounded = cfg.percentile_clipping < 100 || cfg.max_unorm > 0.0;
        Pair {
            cfg: *cfg,
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
            bnb_adam8bit_step_many(
                self.cpu.0,
                items.as_ptr(),
                items.len(),
                std::ptr::null_mut(),
            )
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
            rule3::check(
                Field::Floats { width },
                &got,
                &self.params[id as usize],
                self.bounded,
            )
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
                (
                    a.step,
                    a.nonfinite_count,
                    a.numel,
                    a.path,
                    a.state_bytes,
                    a.lr
                ),
                (
                    b.step,
                    b.nonfinite_count,
                    b.numel,
                    b.path,
                    b.state_bytes,
                    b.lr
                ),
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

    /// A fresh handle on `device` with this pair's parameters.
    fn empty(&self, device: bnb_device_t) -> Handle {
        let h = if device == BNB_DEVICE_CUDA {
            Handle::new_cuda(&self.cfg)
        } else {
            Handle::new(&self.cfg)
        };
        for s in &self.specs {
            h.add_ex(s.n, s.dtype, &s.opts);
        }
        h
    }

    /// Each run goes on from the other backend's checkpoint: the CPU run from the CUDA
    /// handle's (in memory), the CUDA run from the CPU handle's (through a file).
    fn cross_load(&mut self, dir: &std::path::Path) {
        let cpu = self.empty(BNB_DEVICE_CPU);
        ok(cpu.deserialize(&self.gpu.serialize()));
        let gpu = self.empty(BNB_DEVICE_CUDA);
        let file = dir.join("cpu.safetensors");
        ok(self.cpu.save(&file));
        ok(gpu.load(&file));
        self.cpu = cpu;
        self.gpu = gpu;
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

#[test]
fn non_blockwise_every_dtype_and_edge_size() {
    on_emulator("non_blockwise_every_dtype_and_edge_size", |d| {
        let cfg = config(|c| {
            c.min_8bit_size = 1;
            c.block_wise = false;
            c.weight_decay = 0.01;
        });
        run_pair(cfg, edge_specs(), 3, 2, d);
    });
}

#[test]
fn fp32_state_every_dtype_and_edge_size_with_and_without_skip_zeros() {
    on_emulator(
        "fp32_state_every_dtype_and_edge_size_with_and_without_skip_zeros",
        |d| {
            for skip_zeros in [false, true] {
                let cfg = config(|c| {
                    c.min_8bit_size = u64::MAX;
                    c.skip_zeros = skip_zeros;
                    c.weight_decay = 0.01;
                });
                run_pair(cfg, edge_specs(), 3, 3, d);
            }
        },
    );
}

#[test]
fn max_unorm_on_the_non_blockwise_and_fp32_paths() {
    on_emulator("max_unorm_on_the_non_blockwise_and_fp32_paths", |d| {
        for skip_zeros in [false, true] {
            let cfg = config(|c| {
                c.min_8bit_size = 4096;
                c.block_wise = false;
                c.max_unorm = 0.01;
                c.skip_zeros = skip_zeros;
            });
            // Below min_8bit_size: fp32 state; from it on: non-blockwise 8-bit.
            run_pair(cfg, edge_specs(), 3, 4, d);
        }
    });
}

#[test]
fn percentile_clipping_on_every_path() {
    on_emulator("percentile_clipping_on_every_path", |d| {
        for block_wise in [true, false] {
            let cfg = config(|c| {
                c.min_8bit_size = 4096;
                c.block_wise = block_wise;
                c.percentile_clipping = 5;
                c.weight_decay = 0.01;
            });
            run_pair(cfg, edge_specs(), 4, 5, d);
        }
    });
}

/// More tensors than one launch takes (128), of mixed paths, dtypes, groups and overrides,
/// some of them not stepped every time, with the learning rates changed between steps.
#[test]
fn step_many_over_more_than_128_tensors_with_lr_changes() {
    on_emulator(
        "step_many_over_more_than_128_tensors_with_lr_changes",
        |d| {
            let mut rng = Rng(77);
            let count = if small() { 140 } else { 300 };
            let specs: Vec<Spec> = (0..count)
                .map(|i| {
                    let n = 1 + rng.next_u64() % if i % 10 == 0 { 20_000 } else { 6000 };
                    let mut s = spec(n, DTYPES[i % 3], i % 4 != 1);
                    match i % 5 {
                        1 => s = fp32_state(s),
                        2 => {
                            s.opts.flags |= BNB_OPT_LR_SCALE | BNB_OPT_BETA1;
                            s.opts.lr_scale = 0.25;
                            s.opts.beta1 = 0.8;
                            s.opts.group = 1;
                        }
                        3 => {
                            s.opts.flags |= BNB_OPT_MIN_8BIT_SIZE | BNB_OPT_WEIGHT_DECAY;
                            s.opts.min_8bit_size = 1;
                            s.opts.weight_decay = 0.1;
                            s.opts.group = 2;
                        }
                        _ => {}
                    }
                    s
                })
                .collect();
            let mut pair = Pair::new(&config(|c| c.weight_decay = 0.01), specs, 6);
            pair.step(d);
            for h in [&pair.cpu, &pair.gpu] {
                ok(unsafe { bnb_adam8bit_set_lr(h.0, 3e-4) });
                ok(unsafe { bnb_adam8bit_set_group_lr(h.0, 2, 1e-2) });
            }
            pair.step(d);
            let every_third: Vec<u32> = (0..count as u32).filter(|i| i % 3 == 0).collect();
            pair.step_ids(&every_third, d);
            for h in [&pair.cpu, &pair.gpu] {
                ok(unsafe { bnb_adam8bit_set_group_lr(h.0, 1, 5e-3) });
            }
            pair.step(d);
        },
    );
}

/// Rule 19 on every path: the CUDA kernels draw what the CPU draws (same key, step and
/// full-tensor index), so stochastically rounded parameters agree bit for bit, shard slices
/// and per-parameter keys and seeds included.
#[test]
fn stochastic_rounding_on_every_path() {
    on_emulator("stochastic_rounding_on_every_path", |d| {
        for (block_wise, min_8bit_size) in [(true, 4096), (false, 4096), (true, u64::MAX)] {
            let cfg = config(|c| {
                c.min_8bit_size = min_8bit_size;
                c.block_wise = block_wise;
                c.stochastic_rounding = true;
                c.seed = 0x5EED_0019;
                c.weight_decay = 0.01;
            });
            let mut specs = Vec::new();
            for &n in &[1u64, 7, 257, 4095, 4096, 12_289] {
                for dt in DTYPES {
                    specs.push(spec(n, dt, n % 2 == 0));
                }
            }
            // The last slice of a 3-rank split of a tensor: its draws start at its offset
            // (shards take the blockwise or the 32-bit path).
            if block_wise {
                let mut shard = spec(12_289 - 8192, BNB_DTYPE_BF16, false);
                shard.opts.flags |= BNB_OPT_SHARD;
                shard.opts.shard_full_numel = 12_289;
                shard.opts.shard_offset = 8192;
                specs.push(shard);
            }
            let mut keyed = spec(5000, BNB_DTYPE_F16, true);
            keyed.opts.flags |= BNB_OPT_SEED | BNB_OPT_ROUNDING_KEY;
            keyed.opts.seed = 7;
            keyed.opts.rounding_key = u64::MAX - 3;
            specs.push(keyed);
            let mut off = spec(5000, BNB_DTYPE_BF16, true);
            off.opts.flags |= BNB_OPT_STOCHASTIC_ROUNDING;
            off.opts.stochastic_rounding = false;
            specs.push(off);
            let mut pair = Pair::new(&cfg, specs, 19);
            for id in 0..pair.specs.len() as u32 {
                let s = pair.specs[id as usize];
                let on =
                    s.dtype != BNB_DTYPE_F32 && s.opts.flags & BNB_OPT_STOCHASTIC_ROUNDING == 0;
                assert_eq!(pair.gpu.info(id).stochastic_rounding, on, "parameter {id}");
            }
            for _ in 0..3 {
                pair.step(d);
            }
        }
    });
}

/// Paged tensors (managed memory from 100000 elements on) next to plain ones, with and
/// without the device's concurrent managed access (which the prefetch needs).
#[test]
fn paged_states() {
    for concurrent in ["1", "0"] {
        on_emulator_with(
            "paged_states",
            &[("CUEMU_CONCURRENT_MANAGED", concurrent)],
            |d| {
                let cfg = config(|c| c.is_paged = true);
                let n = if small() { 100_000 } else { 250_001 };
                let specs = vec![
                    spec(n, BNB_DTYPE_F32, true),
                    spec(n, BNB_DTYPE_BF16, false),
                    spec(5000, BNB_DTYPE_F16, true),
                    fp32_state(spec(n, BNB_DTYPE_F32, true)),
                ];
                let mut pair = Pair::new(&cfg, specs, 8);
                let paged: Vec<bool> = (0..4).map(|id| pair.gpu.info(id).paged).collect();
                assert_eq!(paged, [true, true, false, true], "numel >= 100000 is paged");
                assert!(
                    (0..4).all(|id| !pair.cpu.info(id).paged),
                    "CPU states are never paged"
                );
                let emu = Emulator::get();
                emu.reset_counters();
                pair.step(d);
                pair.step(d);
                let prefetched = emu.counter("prefetches");
                let want = if std::env::var("CUEMU_CONCURRENT_MANAGED").as_deref() == Ok("0") {
                    0
                } else {
                    2 * 3 * 2 // two steps, three paged tensors, state1 and state2
                };
                assert_eq!(prefetched, want, "prefetches");
            },
        );
    }
}

/// Rule 15: a step enqueues its work and returns; it never waits for the device. And it makes
/// the launches docs/cuda.md lists: per path and per 128 tensors, the clipping norm and its
/// finalize, the reduction and its finalize where the path has one, and one update.
#[test]
fn a_step_never_synchronises_the_host_and_makes_the_documented_launches() {
    on_emulator(
        "a_step_never_synchronises_the_host_and_makes_the_documented_launches",
        |d| {
            for (clip, block_wise, unorm) in [(100, true, 0.0), (5, true, 0.0), (100, false, 0.01)]
            {
                let cfg = config(|c| {
                    c.percentile_clipping = clip;
                    c.block_wise = block_wise;
                    c.max_unorm = unorm;
                });
                // 130 8-bit tensors (two launches' worth) and 3 fp32-state ones.
                let mut specs: Vec<Spec> =
                    (0..130).map(|_| spec(4096, BNB_DTYPE_BF16, true)).collect();
                specs.extend((0..3).map(|_| spec(300, BNB_DTYPE_F32, true)));
                let mut pair = Pair::new(&cfg, specs, 9);
                let emu = Emulator::get();
                let grads: Vec<DevBuf> = pair
                    .specs
                    .iter()
                    .map(|s| DevBuf::from(&gradient(&mut pair.rng, s.n as usize, s.dtype), 0))
                    .collect();
                synchronize();
                emu.reset_counters();
                let items: Vec<(u32, &DevBuf, &DevBuf)> = (0..pair.specs.len())
                    .map(|i| (i as u32, &pair.dev[i], &grads[i]))
                    .collect();
                ok(pair.gpu.step_device(&items, pair.stream));
                assert_eq!(emu.counter("host_syncs"), 0, "a step waited for the device");
                assert!(
                    emu.counter("pending") > 0,
                    "the step's work is still queued"
                );
                let batches_8bit = 2;
                let batches_fp32 = 1;
                let clipping = if clip < 100 { 2 } else { 0 };
                let per_batch_8bit = clipping + if block_wise { 1 } else { 3 };
                let per_batch_fp32 = clipping + if unorm > 0.0 { 3 } else { 1 };
                assert_eq!(
                    emu.counter("launches"),
                    batches_8bit * per_batch_8bit + batches_fp32 * per_batch_fp32,
                    "launches for clip {clip}, block_wise {block_wise}, max_unorm {unorm}"
                );
                // State reads wait for the handle's own step (an event), never for the whole
                // context, which PyTorch's streams share.
                let syncs = emu.counter("calls:cuCtxSynchronize");
                d.add(&pair.gpu.read(0, BNB_STATE1));
                let _ = pair.gpu.info(0);
                assert_eq!(
                    emu.counter("calls:cuCtxSynchronize"),
                    syncs,
                    "a read synchronised the context"
                );
                synchronize();
                d.add(&pair.dev[0].read());
            }
        },
    );
}

/// Issue 5's missing item: a CPU handle's checkpoint loads into a CUDA handle and the two go
/// on bit for bit, and the other way round; state reads and writes on CUDA handles.
#[test]
fn checkpoints_cross_between_backends_mid_run() {
    on_emulator("checkpoints_cross_between_backends_mid_run", |d| {
        let dir = temp_dir("cuemu-cross");
        let mut specs = vec![
            spec(5000, BNB_DTYPE_BF16, true),
            spec(300, BNB_DTYPE_F32, false),
            spec(4100, BNB_DTYPE_F16, true),
            fp32_state(spec(4500, BNB_DTYPE_F32, true)),
        ];
        specs[2].opts.flags |= BNB_OPT_LR_SCALE;
        specs[2].opts.lr_scale = 0.5;
        specs[2].opts.group = 1;
        for block_wise in [true, false] {
            let mut pair = Pair::new(&config(|c| c.block_wise = block_wise), specs.clone(), 10);
            pair.step(d);
            pair.step(d);
            pair.cross_load(&dir);
            pair.compare(d);
            pair.step(d);
            pair.step(d);
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// write_state then read_state on a CUDA handle returns what was written, for every array
/// of every path; a rejected write changes nothing.
#[test]
fn state_reads_and_writes_on_a_cuda_handle() {
    on_emulator("state_reads_and_writes_on_a_cuda_handle", |d| {
        let cfg = config(|c| {
            c.block_wise = false;
            c.percentile_clipping = 5;
            c.max_unorm = 0.01;
        });
        let specs = vec![
            spec(5000, BNB_DTYPE_F32, true),
            spec(700, BNB_DTYPE_BF16, true),
        ];
        let mut pair = Pair::new(&cfg, specs.clone(), 11);
        pair.step(d);
        let blockwise = Pair::new(&config(|_| {}), vec![spec(5000, BNB_DTYPE_F16, true)], 12);
        let mut rng = Rng(13);
        for h in [&pair.gpu, &blockwise.gpu] {
            for id in 0..h.num_params() {
                for &kind in KINDS.iter().filter(|&&k| h.has(id, k)) {
                    let before = h.read(id, kind);
                    if kind == BNB_QMAP1 || kind == BNB_QMAP2 {
                        h.write(id, kind, &before);
                        continue;
                    }
                    let codes = kind <= BNB_STATE2 && h.info(id).path != BNB_PATH_FP32;
                    // Random codes, or floats in [0, 1): magnitudes are never negative, and
                    // write_state refuses negative ones.
                    let new: Vec<u8> = if codes {
                        (0..before.len()).map(|_| rng.next_u64() as u8).collect()
                    } else {
                        (0..before.len() / 4)
                            .flat_map(|_| rng.uniform().to_le_bytes())
                            .collect()
                    };
                    h.write(id, kind, &new);
                    assert_eq!(h.read(id, kind), new, "kind {kind} of parameter {id}");
                    let short = &new[..new.len() - 1];
                    let status = unsafe {
                        adam8bit::ffi::state::bnb_adam8bit_write_state(
                            h.0,
                            id,
                            kind,
                            short.as_ptr().cast(),
                            short.len() as u64,
                        )
                    };
                    assert_eq!(status, BNB_ERR_INVALID_ARGUMENT);
                    assert_eq!(
                        h.read(id, kind),
                        new,
                        "a rejected write changed kind {kind}"
                    );
                    d.add(&new);
                }
            }
        }
    });
}

/// The kernels take their quantizer's fast route only where the maxima bound every quotient
/// (a8_bounds_codes, a8_dynamic_scales_of); written maxima that are NaN, infinite, zero,
/// -0.0, subnormal or huge must give the CPU's codes through the general route, on both 8-bit
/// paths, every block of a tensor meeting another mix of them.
#[test]
fn maxima_that_are_not_finite_zero_or_tiny_give_the_cpu_codes() {
    on_emulator(
        "maxima_that_are_not_finite_zero_or_tiny_give_the_cpu_codes",
        |d| {
            let specials = [
                f32::NAN,
                f32::INFINITY,
                0.0,
                -0.0,
                f32::from_bits(1),
                f32::MIN_POSITIVE,
                1e-30,
                f32::MAX,
                1.0,
            ];
            let l = specials.len();
            for block_wise in [true, false] {
                let cfg = config(|c| {
                    c.block_wise = block_wise;
                    c.min_8bit_size = 1;
                });
                let specs = vec![
                    spec(3000, BNB_DTYPE_F32, true),
                    spec(700, BNB_DTYPE_BF16, true),
                ];
                let mut pair = Pair::new(&cfg, specs, 21);
                pair.step(d);
                let kinds = if block_wise {
                    [BNB_ABSMAX1, BNB_ABSMAX2]
                } else {
                    [BNB_MAX1, BNB_MAX2]
                };
                for round in 0..l {
                    for id in 0..2 {
                        for (k, &kind) in kinds.iter().enumerate() {
                            let len = pair.cpu.read(id, kind).len() / 4;
                            let new: Vec<u8> = (0..len)
                                .flat_map(|i| specials[(i + (k + 1) * round + k) % l].to_le_bytes())
                                .collect();
                            pair.cpu.write(id, kind, &new);
                            pair.gpu.write(id, kind, &new);
                        }
                    }
                    pair.step(d);
                }
            }
        },
    );
}

// ---- driver faults (each test is its own process: a sticky error ends its context) ----

const CUDA_ERROR_OUT_OF_MEMORY: i32 = 2;
const CUDA_ERROR_ILLEGAL_ADDRESS: i32 = 700;
const CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES: i32 = 701;

/// The handle's device memory: the emulator's live allocations beyond the test's own.
fn live_allocations() -> u64 {
    Emulator::get().counter("live_allocations")
}

fn status_of(f: impl FnOnce() -> bnb_status_t) -> (bnb_status_t, String) {
    let s = f();
    (s, message())
}

/// An allocation that fails at add_param is BNB_ERR_OUT_OF_MEMORY and changes nothing: no
/// parameter is added, no device memory is left behind, and the handle goes on stepping.
#[test]
fn out_of_memory_at_add_param_changes_nothing() {
    on_emulator("out_of_memory_at_add_param_changes_nothing", |d| {
        let emu = Emulator::get();
        for (entry, paged) in [("cuMemAlloc_v2", false), ("cuMemAllocManaged", true)] {
            let cfg = config(|c| c.is_paged = paged);
            let mut pair = Pair::new(&cfg, vec![spec(200_000, BNB_DTYPE_F32, true)], 14);
            pair.step(d);
            let before = (live_allocations(), pair.gpu.num_params());
            // The second allocation of the parameter's state fails (the first succeeded).
            emu.fail_call(entry, 2, CUDA_ERROR_OUT_OF_MEMORY);
            let mut id = 0;
            let (s, m) = status_of(|| unsafe {
                bnb_adam8bit_add_param(pair.gpu.0, 200_000, BNB_DTYPE_F32, &mut id)
            });
            assert_eq!(s, BNB_ERR_OUT_OF_MEMORY, "{m}");
            assert!(m.contains(entry) || m.contains("memory"), "{m}");
            assert_eq!(
                (live_allocations(), pair.gpu.num_params()),
                before,
                "{entry}: a leak"
            );
            pair.step(d);
        }
    });
}

/// A launch that fails when it is enqueued: at the first launch of a step the step changed
/// nothing and the handle goes on; later in the step the handle's device state is lost, and
/// says so from then on; destroying it frees everything.
#[test]
fn a_launch_failing_mid_step_loses_the_device_state() {
    on_emulator("a_launch_failing_mid_step_loses_the_device_state", |d| {
        let emu = Emulator::get();
        let dir = temp_dir("cuemu-launch-fault");
        let specs = vec![
            spec(5000, BNB_DTYPE_F32, true),
            spec(300, BNB_DTYPE_BF16, true),
        ];
        let baseline = live_allocations();
        {
            let mut pair = Pair::new(&config(|_| {}), specs.clone(), 15);
            pair.step(d);
            let grads: Vec<DevBuf> = specs
                .iter()
                .map(|s| DevBuf::from(&gradient(&mut Rng(1), s.n as usize, s.dtype), 0))
                .collect();
            emu.fail_call("cuLaunchKernel", 1, CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES);
            {
                let dev: Vec<(u32, &DevBuf, &DevBuf)> = (0..2)
                    .map(|i| (i as u32, &pair.dev[i], &grads[i]))
                    .collect();
                let (s, m) = status_of(|| pair.gpu.step_device(&dev, pair.stream));
                assert_eq!(s, BNB_ERR_CUDA, "{m}");
                assert!(m.contains("cuLaunchKernel"), "{m}");
            }
            // Nothing was enqueued: the step did not happen, and the next one is exact.
            assert_eq!(pair.gpu.info(0).step, 1);
            pair.step(d);

            let dev: Vec<(u32, &DevBuf, &DevBuf)> = (0..2)
                .map(|i| (i as u32, &pair.dev[i], &grads[i]))
                .collect();
            // The step's second launch (blockwise, then 32-bit).
            emu.fail_call("cuLaunchKernel", 2, CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES);
            let (s, m) = status_of(|| pair.gpu.step_device(&dev, pair.stream));
            assert_eq!(s, BNB_ERR_CUDA, "{m}");
            assert!(m.contains("device state is lost"), "{m}");
            let mut info: bnb_param_info_t = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<bnb_param_info_t>();
            for (what, s) in [
                ("param_info", unsafe {
                    bnb_adam8bit_param_info(pair.gpu.0, 0, &mut info, size)
                }),
                ("step", pair.gpu.step_device(&dev, pair.stream)),
                ("save", pair.gpu.save(&dir.join("lost.safetensors"))),
            ] {
                assert_eq!(s, BNB_ERR_CUDA, "{what} on a lost handle");
                assert!(
                    message().contains("device state is lost"),
                    "{what}: {}",
                    message()
                );
            }
            assert!(
                !dir.join("lost.safetensors").exists(),
                "save of a lost handle wrote a file"
            );
        }
        assert_eq!(
            live_allocations(),
            baseline,
            "destroying the lost handle freed everything"
        );
        let _ = std::fs::remove_dir_all(&dir);
    });
}

/// A kernel that faults while it runs (an illegal address) surfaces at a later call, as on a
/// GPU: the step itself returned BNB_OK (its host step counter advanced), the next call that
/// waits for the device returns BNB_ERR_CUDA, and the handle refuses device work from then
/// on. A save leaves the previous checkpoint untouched; destroy frees the host side, and the
/// device memory goes with the context when its last user releases it.
#[test]
fn a_sticky_illegal_address_poisons_the_handle() {
    on_emulator("a_sticky_illegal_address_poisons_the_handle", |d| {
        let emu = Emulator::get();
        let dir = temp_dir("cuemu-sticky");
        let file = dir.join("good.safetensors");
        let mut pair = Pair::new(&config(|_| {}), vec![spec(5000, BNB_DTYPE_F32, true)], 16);
        pair.step(d);
        ok(pair.gpu.save(&file));
        let good = std::fs::read(&file).unwrap();
        emu.fail_launch(1, CUDA_ERROR_ILLEGAL_ADDRESS);
        let grad = DevBuf::from(&gradient(&mut Rng(2), 5000, BNB_DTYPE_F32), 0);
        let dev = [(0u32, &pair.dev[0], &grad)];
        assert_eq!(
            pair.gpu.step_device(&dev, pair.stream),
            BNB_OK,
            "the fault is asynchronous"
        );
        let mut info: bnb_param_info_t = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<bnb_param_info_t>();
        let (s, m) =
            status_of(|| unsafe { bnb_adam8bit_param_info(pair.gpu.0, 0, &mut info, size) });
        assert_eq!(s, BNB_ERR_CUDA, "{m}");
        assert!(
            m.contains("CUDA_ERROR_ILLEGAL_ADDRESS") || m.contains("illegal"),
            "{m}"
        );
        assert!(m.contains("device state is lost"), "{m}");
        let (s, m) = status_of(|| pair.gpu.save(&file));
        assert_eq!(s, BNB_ERR_CUDA, "{m}");
        assert_eq!(
            std::fs::read(&file).unwrap(),
            good,
            "the previous checkpoint is intact"
        );
        // The CPU run loads that checkpoint and goes on: nothing was lost but the GPU run.
        let cpu = pair.empty(BNB_DEVICE_CPU);
        ok(cpu.load(&file));
        assert_eq!(cpu.info(0).step, 1);
        drop(grad);
        let Pair { gpu, dev, .. } = pair;
        drop(gpu);
        drop(dev);
        let _ = std::fs::remove_dir_all(&dir);
        // The test's own retain of the primary context is the last one: releasing it destroys
        // the dead context and, with it, the memory the lost handle could not free.
        let dev0 = cudarc::driver::result::device::get(0).unwrap();
        unsafe { cudarc::driver::result::primary_ctx::release(dev0) }.unwrap();
        assert_eq!(live_allocations(), 0, "device memory outlived the context");
    });
}

/// Every driver call that creating a handle, adding a parameter, stepping and reading state
/// make can fail: each one, failed in turn, gives a typed status and a message, never a
/// panic; creation and add_param leave no device memory behind, and the thread's current
/// context is what it was.
#[test]
fn every_driver_call_of_create_add_param_and_step_can_fail() {
    on_emulator(
        "every_driver_call_of_create_add_param_and_step_can_fail",
        |_| {
            const CUDA_ERROR_UNKNOWN: i32 = 999;
            let emu = Emulator::get();
            let ctx = context();
            let cfg = config(|c| {
                c.is_paged = true;
                c.percentile_clipping = 5;
            });
            let g = DevBuf::from(&gradient(&mut Rng(3), 200_000, BNB_DTYPE_F32), 0);
            let p = DevBuf::from(&random_elems(&mut Rng(4), 200_000, BNB_DTYPE_F32, 1.0), 0);
            // One successful run, counting each entry point's calls.
            let run = |expect_ok: bool| -> Vec<(&'static str, bnb_status_t)> {
                let mut failures = Vec::new();
                let h = match Handle::try_new_cuda(&cfg) {
                    Ok(h) => h,
                    Err(s) => return vec![("create", s)],
                };
                let mut id = 0;
                let s = unsafe { bnb_adam8bit_add_param(h.0, 200_000, BNB_DTYPE_F32, &mut id) };
                if s != BNB_OK {
                    failures.push(("add_param", s));
                } else {
                    let s = h.step_device(&[(0, &p, &g)], std::ptr::null_mut());
                    if s != BNB_OK {
                        failures.push(("step", s));
                    }
                    let mut info: bnb_param_info_t = unsafe { std::mem::zeroed() };
                    let size = std::mem::size_of::<bnb_param_info_t>();
                    let s = unsafe { bnb_adam8bit_param_info(h.0, 0, &mut info, size) };
                    if s != BNB_OK {
                        failures.push(("param_info", s));
                    }
                }
                assert!(
                    !expect_ok || failures.is_empty(),
                    "{failures:?}: {}",
                    message()
                );
                failures
            };
            emu.reset_counters();
            let baseline = live_allocations();
            run(true);
            synchronize();
            assert_eq!(live_allocations(), baseline);
            let calls: Vec<(&str, u64)> = FALLIBLE_ENTRIES
                .iter()
                .map(|&e| (e, emu.counter(&format!("calls:{e}"))))
                .collect();
            let mut injected = 0;
            for &(entry, count) in &calls {
                for nth in 1..=count {
                    emu.fail_call(entry, nth, CUDA_ERROR_UNKNOWN);
                    let failures = run(false);
                    emu.clear_faults();
                    // Failing a call may be harmless (a query that is retried, say); what may not
                    // happen is a panic, an untyped status or a leak.
                    for (what, s) in &failures {
                        assert!(
                            [BNB_ERR_CUDA, BNB_ERR_NO_DEVICE, BNB_ERR_OUT_OF_MEMORY].contains(s),
                            "{entry} call {nth} failed: {what} returned {s}: {}",
                            message()
                        );
                    }
                    synchronize();
                    assert_eq!(
                        live_allocations(),
                        baseline,
                        "{entry} call {nth}: device memory leaked"
                    );
                    let current = cudarc::driver::result::ctx::get_current().unwrap();
                    assert_eq!(
                        current,
                        Some(ctx),
                        "{entry} call {nth} changed the current context"
                    );
                    injected += 1;
                }
            }
            assert!(injected > 30, "only {injected} faults injected");
            eprintln!("{injected} driver faults injected");
        },
    );
}

/// Found by the ABI fuzzer on CUDA handles (seed 0xC0DAF022, call 1535): after `set_step` to
/// near 2^64 a step sized its table of beta powers by the step count (an overflow panic there,
/// and tables of terabytes below it). The table now ends where `1 - beta^t` rounds to 1 for
/// both betas and the kernels clamp to its end, so steps near the largest count and far past
/// the table are exact against the CPU, and the table stays small.
#[test]
fn steps_far_past_the_power_table_are_exact() {
    on_emulator("steps_far_past_the_power_table_are_exact", |d| {
        let specs = vec![
            spec(5000, BNB_DTYPE_F32, true),
            spec(300, BNB_DTYPE_BF16, true),
            spec(100, BNB_DTYPE_F32, true),
        ];
        let mut pair = Pair::new(&config(|c| c.beta2 = 0.9999), specs, 23);
        pair.step(d);
        let bytes = Emulator::get().counter("live_bytes");
        for step in [40_000, 1 << 40, u64::MAX - 3] {
            for id in 0..3 {
                pair.cpu.set_step(id, step);
                pair.gpu.set_step(id, step);
            }
            pair.step(d);
            pair.step(d);
        }
        assert_eq!(pair.gpu.info(0).step, u64::MAX - 1);
        // 0.9999 saturates after about 374,000 steps: a 6 MB table, and the 1 MB one it
        // outgrew at step 40,000.
        let grown = Emulator::get().counter("live_bytes") - bytes;
        assert!(grown <= 8 << 20, "the power table grew by {grown} bytes");
    });
}
