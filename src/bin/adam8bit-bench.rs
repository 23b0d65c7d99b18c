//! `cargo run --release --bin adam8bit-bench [-- --quick] [--isa scalar|avx2|avx512|avx512vbmi|neon]`: the CPU step against the machine's
//! memory speed (issue 7). In one run: the in-place read-modify-write bandwidth
//! (`a[i] += s*b[i]`, 12 bytes per element) at each thread count, then `bnb_adam8bit_step` for
//! fp32/bf16/fp16 parameters at 2^20, 2^24, 2^26 elements (8-bit blockwise states; at the
//! largest size also the non-blockwise 8-bit path, "dyn8", and the 32-bit path for comparison
//! with a fused fp32 Adam; for fp16/bf16 also the 8-bit path with stochastic rounding, "8b-sr",
//! whose cost is the difference to the "8bit" row above it), then a transformer-shaped list through
//! `bnb_adam8bit_step_many`. Every figure is the fastest of several timed steps after a warm-up
//! (the bandwidth sweep too): on a shared machine the minimum is the stable statistic.

use std::ptr::null_mut;
use std::time::Instant;

use adam8bit::ffi::bnb_adam8bit_t;
use adam8bit::ffi::handle::*;
use adam8bit::ffi::params::*;
use adam8bit::ffi::types::*;

fn ok(status: bnb_status_t, what: &str) {
    assert_eq!(status, BNB_OK, "{what} failed with status {status}");
}

fn fastest(v: Vec<f64>) -> f64 {
    v.into_iter().fold(f64::INFINITY, f64::min)
}

/// Seconds per call of `f`, the fastest of `reps` after one warm-up call.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    fastest(
        (0..reps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .collect(),
    )
}

/// The blockwise kernel alone on 2^14 fp32 elements (about 170 KB with its states, in L2), one
/// thread, no executor: compute cost without memory traffic. Best of 200 runs of 20 steps.
fn kernel_in_cache() {
    use adam8bit::cpu::simd;
    let n = 1 << 14;
    let mut rng = adam8bit::rng::Rng(12345);
    let mut p: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
    let g: Vec<f32> = (0..n).map(|_| rng.normal() * 0.01).collect();
    let mut s1: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
    let mut s2: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
    let (mut a1, mut a2) = (vec![0.1f32; n / 256], vec![1e-3f32; n / 256]);
    let hyper = adam8bit::config::Hyper {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
    };
    let k = adam8bit::scalars::StepScalars::new(1e-3, &hyper, 10);
    let isa = simd::isa();
    let nearest = adam8bit::rounding::Rounding::Nearest;
    let mut step = || {
        simd::blockwise(
            isa, &mut p, &g, &mut s1, &mut s2, &mut a1, &mut a2, &k, nearest,
        )
    };
    let secs = time(200, || {
        for _ in 0..20 {
            std::hint::black_box(step());
        }
    });
    println!(
        "blockwise kernel alone, 2^14 fp32 in cache, 1 thread: {:.3} ns/elem",
        secs * 1e9 / (20 * n) as f64
    );
}

/// In-place read-modify-write bandwidth in GB/s with `threads` threads over `n` f32 pairs.
fn rmw_bandwidth(n: usize, threads: usize, reps: usize) -> f64 {
    let mut a = vec![1.0f32; n];
    let b = vec![0.5f32; n];
    let s = std::hint::black_box(1e-3f32);
    let per = n.div_ceil(threads);
    let secs = time(reps, || {
        std::thread::scope(|sc| {
            for (a, b) in a.chunks_mut(per).zip(b.chunks(per)) {
                sc.spawn(move || a.iter_mut().zip(b).for_each(|(x, y)| *x += s * *y));
            }
        });
    });
    std::hint::black_box(&a);
    12.0 * n as f64 / secs / 1e9
}

struct Handle(*mut bnb_adam8bit_t);

impl Handle {
    fn new(min_8bit_size: u64, block_wise: bool, stochastic_rounding: bool) -> Handle {
        let cfg = bnb_adam8bit_config_t {
            min_8bit_size,
            block_wise,
            weight_decay: 0.01,
            stochastic_rounding,
            seed: 7,
            ..Default::default()
        };
        let mut h = null_mut();
        // SAFETY: `cfg` is a complete config and `h` a writable pointer.
        ok(
            unsafe { bnb_adam8bit_create(&cfg, BNB_DEVICE_CPU, 0, &mut h) },
            "create",
        );
        Handle(h)
    }
    fn add(&self, numel: usize, dtype: bnb_dtype_t) -> u32 {
        let mut id = 0;
        // SAFETY: live handle, writable id.
        ok(
            unsafe { bnb_adam8bit_add_param(self.0, numel as u64, dtype, &mut id) },
            "add_param",
        );
        id
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: created by bnb_adam8bit_create and destroyed once.
        unsafe { bnb_adam8bit_destroy(self.0) }
    }
}

/// Parameter and gradient buffers of one tensor, with gradients of a realistic spread.
struct Tensor {
    param: Vec<u32>,
    grad: Vec<u32>,
}

impl Tensor {
    fn new(numel: usize, dtype: bnb_dtype_t) -> Tensor {
        let words = if dtype == BNB_DTYPE_F32 {
            numel
        } else {
            numel.div_ceil(2)
        };
        let mut rng = adam8bit::rng::Rng(0x9E37_79B9);
        let mut word = |scale: f32| {
            let f = (rng.uniform() - 0.5) * scale;
            if dtype == BNB_DTYPE_F32 {
                f.to_bits()
            } else {
                let h = if dtype == BNB_DTYPE_BF16 {
                    half::bf16::from_f32(f).to_bits()
                } else {
                    half::f16::from_f32(f).to_bits()
                } as u32;
                h | (h << 16)
            }
        };
        let param = (0..words).map(|_| word(0.1)).collect();
        let grad = (0..words).map(|_| word(1e-3)).collect();
        Tensor { param, grad }
    }
    fn item(&mut self, id: u32) -> bnb_step_item_t {
        bnb_step_item_t {
            id,
            param: self.param.as_mut_ptr().cast(),
            grad: self.grad.as_ptr().cast(),
        }
    }
}

fn step_many(h: &Handle, items: &[bnb_step_item_t]) {
    // SAFETY: every item points to its tensor's live buffers of the registered size.
    ok(
        unsafe { bnb_adam8bit_step_many(h.0, items.as_ptr(), items.len(), null_mut()) },
        "step_many",
    );
}

/// (name, dtype, bytes per element moved by an 8-bit step, by a 32-bit-state step).
const DTYPES: [(&str, bnb_dtype_t, f64, f64); 3] = [
    ("fp32", BNB_DTYPE_F32, 16.0, 28.0),
    ("bf16", BNB_DTYPE_BF16, 10.0, 22.0),
    ("fp16", BNB_DTYPE_F16, 10.0, 22.0),
];

/// Block absmax traffic: two f32 read and written per 256 elements.
const ABSMAX_BYTES: f64 = 16.0 / 256.0;

/// A GPT-2-small-shaped model: embeddings, 12 layers of attention and MLP matrices, and the
/// norms and biases that fall below `min_8bit_size` (4096) onto the 32-bit path.
fn transformer() -> Vec<usize> {
    let (d, vocab, ctx, layers) = (768, 50_257, 1024, 12);
    let mut t = vec![vocab * d, ctx * d];
    for _ in 0..layers {
        t.extend([
            d,
            d,
            d * 3 * d,
            3 * d,
            d * d,
            d,
            d,
            d,
            d * 4 * d,
            4 * d,
            4 * d * d,
            d,
        ]);
    }
    t.extend([d, d]);
    t
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    if let Some(level) = args
        .iter()
        .position(|a| a == "--isa")
        .and_then(|i| args.get(i + 1))
    {
        let isa = adam8bit::cpu::simd::Isa::ALL
            .into_iter()
            .find(|i| format!("{i:?}").eq_ignore_ascii_case(level))
            .unwrap_or_else(|| panic!("--isa takes scalar, avx2, avx512 or neon, not {level}"));
        assert!(
            adam8bit::cpu::simd::force_isa(Some(isa)),
            "this CPU lacks {isa:?}"
        );
    }
    let reps = if quick { 3 } else { 11 };
    let sizes: &[u32] = if quick { &[20, 24] } else { &[20, 24, 26] };
    let threads = [1usize, 2];
    println!(
        "adam8bit-bench: {} SIMD level {:?}, best of {} reps",
        if quick { "quick," } else { "full," },
        adam8bit::cpu::simd::isa(),
        reps
    );

    kernel_in_cache();

    let mut floor = Vec::new();
    for &t in &threads {
        let gbs = rmw_bandwidth(1 << 26, t, reps);
        println!("rmw bandwidth a[i] += s*b[i], 2^26 f32, {t} thread(s): {gbs:.1} GB/s");
        floor.push(gbs);
    }

    println!(
        "\n{:<5} {:<6} {:>5} {:>3} {:>8} {:>7} {:>7}",
        "param", "states", "n", "thr", "ns/elem", "GB/s", "floor%"
    );
    for &(name, dtype, bytes8, bytes32) in &DTYPES {
        for &log in sizes {
            let n = 1usize << log;
            // The non-blockwise path reads the gradient and both code arrays twice.
            let grad_bytes = if dtype == BNB_DTYPE_F32 { 4.0 } else { 2.0 };
            let mut nearest_ns = [0.0; 2];
            for (state, min8, block_wise, bytes) in [
                ("8bit", 4096, true, bytes8 + ABSMAX_BYTES),
                ("8b-sr", 4096, true, bytes8 + ABSMAX_BYTES),
                ("dyn8", 4096, false, bytes8 + grad_bytes + 2.0),
                ("32bit", u64::MAX, true, bytes32),
            ] {
                let sr = state == "8b-sr";
                if sr && dtype == BNB_DTYPE_F32 {
                    continue;
                }
                if !state.starts_with("8b") && log != *sizes.last().unwrap() {
                    continue;
                }
                let h = Handle::new(min8, block_wise, sr);
                let id = h.add(n, dtype);
                let mut tensor = Tensor::new(n, dtype);
                let items = [tensor.item(id)];
                for (ti, &t) in threads.iter().enumerate() {
                    ok(bnb_set_num_threads(t as u32), "set_num_threads");
                    let secs = time(reps, || step_many(&h, &items));
                    let ns = secs * 1e9 / n as f64;
                    let gbs = bytes * n as f64 / secs / 1e9;
                    let extra = match state {
                        "8bit" => {
                            nearest_ns[ti] = ns;
                            String::new()
                        }
                        "8b-sr" => format!(
                            "  rounding: +{:.3} ns/elem, {:.2}x the round-to-nearest step",
                            ns - nearest_ns[ti],
                            ns / nearest_ns[ti]
                        ),
                        _ => String::new(),
                    };
                    println!(
                        "{name:<5} {state:<6} 2^{log:<3} {t:>3} {ns:>8.3} {gbs:>7.1} {:>6.0}%{extra}",
                        100.0 * gbs / floor[ti]
                    );
                }
            }
        }
    }

    let shapes = transformer();
    let total: usize = shapes.iter().sum();
    println!(
        "\ntransformer (GPT-2 small shapes, fp32 params): {} tensors, {:.1}M elements, step_many",
        shapes.len(),
        total as f64 / 1e6
    );
    let h = Handle::new(4096, true, false);
    let mut tensors: Vec<Tensor> = shapes
        .iter()
        .map(|&n| Tensor::new(n, BNB_DTYPE_F32))
        .collect();
    let items: Vec<bnb_step_item_t> = shapes
        .iter()
        .zip(&mut tensors)
        .map(|(&n, t)| t.item(h.add(n, BNB_DTYPE_F32)))
        .collect();
    for (ti, &t) in threads.iter().enumerate() {
        ok(bnb_set_num_threads(t as u32), "set_num_threads");
        let secs = time(reps, || step_many(&h, &items));
        let gbs = (16.0 + ABSMAX_BYTES) * total as f64 / secs / 1e9;
        println!(
            "  {t} thread(s): {:.2} ms/step, {:.3} ns/elem, {gbs:.1} GB/s, {:.0}% of floor",
            secs * 1e3,
            secs * 1e9 / total as f64,
            100.0 * gbs / floor[ti]
        );
    }
}
