//! GPU check (not a `cargo test`: CI has no GPU, and a skipped test must not pass): every path and
//! dtype on a CUDA handle against a CPU handle on fresh random inputs, stepped on a non-blocking
//! stream; halfway, each handle's checkpoint loads into a fresh handle of the other backend and
//! the runs go on (CPU <-> CUDA cross-load); library calls must leave the thread's current
//! context as they found it; then the blockwise step's bandwidth for n = 2^28 against a
//! device-to-device copy measured in the same run.
//! Exits 2 with "no CUDA device" where there is none, 3 when this build has no kernels, 1 on
//! any mismatch. On the emulated device (tools/cuemu) the correctness part is the real one and
//! the benchmark runs at a small size, its timings labelled meaningless.

use std::ffi::{c_void, CStr};
use std::process::ExitCode;

use adam8bit::ffi::bnb_adam8bit_t;
use adam8bit::ffi::checkpoint::*;
use adam8bit::ffi::handle::*;
use adam8bit::ffi::params::*;
use adam8bit::ffi::state::*;
use adam8bit::ffi::types::*;
use adam8bit::rng::Rng;
use adam8bit::rule3::{self, Field};
use cudarc::driver::{result, sys};

fn message() -> String {
    unsafe { CStr::from_ptr(bnb_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

fn check(status: bnb_status_t, what: &str) -> Result<(), String> {
    if status == BNB_OK {
        Ok(())
    } else {
        Err(format!("{what}: status {status}: {}", message()))
    }
}

fn cu<T>(r: Result<T, result::DriverError>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

fn encode(xs: &[f32], dtype: bnb_dtype_t) -> Vec<u8> {
    match dtype {
        BNB_DTYPE_F32 => xs.iter().flat_map(|x| x.to_le_bytes()).collect(),
        BNB_DTYPE_F16 => xs
            .iter()
            .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
            .collect(),
        _ => xs
            .iter()
            .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
            .collect(),
    }
}

/// Device buffer for the check (freed on drop).
struct Dev(sys::CUdeviceptr, usize);
impl Dev {
    fn from(bytes: &[u8]) -> Result<Dev, String> {
        let p = cu(
            unsafe { result::malloc_sync(bytes.len().max(1)) },
            "cuMemAlloc",
        )?;
        cu(
            unsafe { result::memcpy_htod_sync(p, bytes) },
            "cuMemcpyHtoD",
        )?;
        // From pageable memory the copy may still be in flight when the call returns, and the
        // steps run on a non-blocking stream, which does not wait for the legacy stream.
        cu(result::ctx::synchronize(), "cuCtxSynchronize")?;
        Ok(Dev(p, bytes.len()))
    }
    fn write(&self, bytes: &[u8]) -> Result<(), String> {
        cu(
            unsafe { result::memcpy_htod_sync(self.0, bytes) },
            "cuMemcpyHtoD",
        )?;
        cu(result::ctx::synchronize(), "cuCtxSynchronize")
    }
    fn read(&self) -> Result<Vec<u8>, String> {
        let mut v = vec![0u8; self.1];
        cu(
            unsafe { result::memcpy_dtoh_sync(&mut v, self.0) },
            "cuMemcpyDtoH",
        )?;
        Ok(v)
    }
}
impl Drop for Dev {
    fn drop(&mut self) {
        let _ = unsafe { result::free_sync(self.0) };
    }
}

struct Handle(*mut bnb_adam8bit_t);
impl Handle {
    /// A handle of `device` with `sizes` registered in order (ids 0, 1, ...).
    fn with_params(
        cfg: &bnb_adam8bit_config_t,
        device: bnb_device_t,
        sizes: &[u64],
        dtype: bnb_dtype_t,
    ) -> Result<Handle, String> {
        let h = Handle::new(cfg, device)?;
        for &n in sizes {
            let mut id = 0;
            check(
                unsafe { bnb_adam8bit_add_param(h.0, n, dtype, &mut id) },
                "add_param",
            )?;
        }
        Ok(h)
    }

    /// A fresh handle of `device` with this one's parameters and its checkpoint loaded.
    fn cross_load(&self, c: &Case, device: bnb_device_t) -> Result<Handle, String> {
        let mut size = 0u64;
        check(
            unsafe { bnb_adam8bit_serialized_size(self.0, &mut size) },
            "serialized_size",
        )?;
        let mut bytes = vec![0u8; size as usize];
        let mut written = 0u64;
        check(
            unsafe {
                bnb_adam8bit_serialize(self.0, bytes.as_mut_ptr().cast(), size, &mut written)
            },
            "serialize",
        )?;
        let other = Handle::with_params(&c.cfg, device, &c.sizes, c.dtype)?;
        check(
            unsafe { bnb_adam8bit_deserialize(other.0, bytes.as_ptr().cast(), written) },
            "deserialize",
        )?;
        Ok(other)
    }

    fn new(cfg: &bnb_adam8bit_config_t, device: bnb_device_t) -> Result<Handle, String> {
        let mut h = std::ptr::null_mut();
        check(
            unsafe { bnb_adam8bit_create(cfg, device, 0, &mut h) },
            "create",
        )?;
        Ok(Handle(h))
    }
    fn info(&self, id: u32) -> Result<bnb_param_info_t, String> {
        let mut i: bnb_param_info_t = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<bnb_param_info_t>();
        check(
            unsafe { bnb_adam8bit_param_info(self.0, id, &mut i, size) },
            "param_info",
        )?;
        Ok(i)
    }
    fn read(&self, id: u32, kind: bnb_state_kind_t) -> Option<Vec<u8>> {
        let mut bytes = 0u64;
        if unsafe { bnb_adam8bit_state_size(self.0, id, kind, &mut bytes) } != BNB_OK {
            return None;
        }
        let mut v = vec![0u8; bytes as usize];
        let s = unsafe { bnb_adam8bit_read_state(self.0, id, kind, v.as_mut_ptr().cast(), bytes) };
        (s == BNB_OK).then_some(v)
    }
}
impl Drop for Handle {
    fn drop(&mut self) {
        unsafe { bnb_adam8bit_destroy(self.0) };
    }
}

/// One comparison case: a config, a dtype, tensor sizes stepped together with step_many.
struct Case {
    name: &'static str,
    cfg: bnb_adam8bit_config_t,
    dtype: bnb_dtype_t,
    sizes: Vec<u64>,
    /// Percentile clipping and max_unorm pass through an f64 reduction (rule 3's bounds).
    bounded: bool,
}

fn run_case(c: &Case, rng: &mut Rng, stream: sys::CUstream) -> Result<(), String> {
    let mut cpu = Handle::with_params(&c.cfg, BNB_DEVICE_CPU, &c.sizes, c.dtype)?;
    // Stepped on a non-blocking stream right after add_param (and, below, after a load): the
    // library's zeroing and copies must be complete before such a stream reads them.
    let mut gpu = Handle::with_params(&c.cfg, BNB_DEVICE_CUDA, &c.sizes, c.dtype)?;
    let mut params = Vec::new();
    for (id, &n) in c.sizes.iter().enumerate() {
        let p: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
        params.push((id as u32, encode(&p, c.dtype)));
    }
    let dev_p: Vec<Dev> = params
        .iter()
        .map(|(_, p)| Dev::from(p))
        .collect::<Result<_, _>>()?;
    for step in 1..=4 {
        if step == 3 {
            // CPU <-> CUDA: each run goes on from the other backend's checkpoint.
            let from_gpu = gpu.cross_load(c, BNB_DEVICE_CPU)?;
            gpu = cpu.cross_load(c, BNB_DEVICE_CUDA)?;
            cpu = from_gpu;
        }
        let mut grads = Vec::new();
        for &n in &c.sizes {
            let mut g: Vec<f32> = (0..n).map(|_| rng.normal() * 1e-2).collect();
            for _ in 0..(n / 5000) {
                let i = (rng.next_u64() % n) as usize;
                g[i] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0]
                    [(rng.next_u64() % 4) as usize];
            }
            grads.push(encode(&g, c.dtype));
        }
        let dev_g: Vec<Dev> = grads
            .iter()
            .map(|g| Dev::from(g))
            .collect::<Result<_, _>>()?;
        let cpu_items: Vec<bnb_step_item_t> = params
            .iter_mut()
            .zip(&grads)
            .map(|((id, p), g)| bnb_step_item_t {
                id: *id,
                param: p.as_mut_ptr().cast(),
                grad: g.as_ptr().cast(),
            })
            .collect();
        let gpu_items: Vec<bnb_step_item_t> = params
            .iter()
            .zip(&dev_p)
            .zip(&dev_g)
            .map(|(((id, _), p), g)| bnb_step_item_t {
                id: *id,
                param: p.0 as *mut c_void,
                grad: g.0 as *const c_void,
            })
            .collect();
        let null = std::ptr::null_mut();
        check(
            unsafe { bnb_adam8bit_step_many(cpu.0, cpu_items.as_ptr(), cpu_items.len(), null) },
            "cpu step",
        )?;
        check(
            unsafe {
                bnb_adam8bit_step_many(gpu.0, gpu_items.as_ptr(), gpu_items.len(), stream.cast())
            },
            "gpu step",
        )?;
        cu(result::ctx::synchronize(), "synchronize")?;
        compare(c, step, &cpu, &gpu, &params, &dev_p)?;
        if c.bounded {
            // Teacher forcing: the next step starts from the CPU's exact state, so that each
            // step is held to rule 3's per-step bounds (as the golden vectors are).
            for ((id, p), d) in params.iter().zip(&dev_p) {
                for kind in KINDS {
                    if let Some(a) = cpu.read(*id, kind) {
                        check(
                            unsafe {
                                bnb_adam8bit_write_state(
                                    gpu.0,
                                    *id,
                                    kind,
                                    a.as_ptr().cast(),
                                    a.len() as u64,
                                )
                            },
                            "write_state",
                        )?;
                    }
                }
                d.write(p)?;
            }
        }
    }
    Ok(())
}

/// The state arrays a parameter may keep (the maps are constants, compared elsewhere).
const KINDS: [bnb_state_kind_t; 8] = [
    BNB_STATE1,
    BNB_STATE2,
    BNB_ABSMAX1,
    BNB_ABSMAX2,
    BNB_MAX1,
    BNB_MAX2,
    BNB_GNORM_VEC,
    BNB_UNORM_VEC,
];

/// DECISIONS rule 3, field by field: bit for bit, or within its bounds where the case passes
/// through a reduction into a scale.
fn compare(
    c: &Case,
    step: usize,
    cpu: &Handle,
    gpu: &Handle,
    params: &[(u32, Vec<u8>)],
    dev_p: &[Dev],
) -> Result<(), String> {
    let width = if c.dtype == BNB_DTYPE_F32 { 4 } else { 2 };
    let at = |k: usize, what: &str, e: String| {
        format!("{}: step {step} tensor {k}: {what}: {e}", c.name)
    };
    for (k, ((id, p), d)) in params.iter().zip(dev_p).enumerate() {
        rule3::check(Field::Floats { width }, &d.read()?, p, c.bounded)
            .map_err(|e| at(k, "params", e))?;
        for kind in KINDS {
            let (Some(a), Some(b)) = (cpu.read(*id, kind), gpu.read(*id, kind)) else {
                if cpu.read(*id, kind).is_some() != gpu.read(*id, kind).is_some() {
                    return Err(at(
                        k,
                        &format!("state {kind}"),
                        "kept by one backend only".into(),
                    ));
                }
                continue;
            };
            let field = match kind {
                BNB_STATE1 | BNB_STATE2 if a.len() as u64 == c.sizes[k] => Field::Codes,
                BNB_GNORM_VEC | BNB_UNORM_VEC => Field::SquaredNorms,
                _ => Field::Floats { width: 4 },
            };
            rule3::check(field, &b, &a, c.bounded)
                .map_err(|e| at(k, &format!("state {kind}"), e))?;
        }
        let (ia, ib) = (cpu.info(*id)?, gpu.info(*id)?);
        if (ia.nonfinite_count, ia.step) != (ib.nonfinite_count, ib.step) {
            return Err(at(
                k,
                "counters",
                format!(
                    "CPU (nonfinite {}, step {}), CUDA (nonfinite {}, step {})",
                    ia.nonfinite_count, ia.step, ib.nonfinite_count, ib.step
                ),
            ));
        }
        rule3::check(
            Field::Floats { width: 4 },
            &ib.gnorm_scale.to_le_bytes(),
            &ia.gnorm_scale.to_le_bytes(),
            c.bounded,
        )
        .map_err(|e| at(k, "gnorm_scale", e))?;
    }
    Ok(())
}

fn cases() -> Vec<Case> {
    let base = bnb_adam8bit_config_t::default();
    let mut out = Vec::new();
    for (dtype, dn) in [
        (BNB_DTYPE_F32, "fp32"),
        (BNB_DTYPE_F16, "fp16"),
        (BNB_DTYPE_BF16, "bf16"),
    ] {
        let name = |s: &str| -> &'static str { Box::leak(format!("{s} {dn}").into_boxed_str()) };
        let wd = bnb_adam8bit_config_t {
            weight_decay: 0.01,
            ..base
        };
        out.push(Case {
            name: name("blockwise"),
            cfg: wd,
            dtype,
            sizes: vec![300_001],
            bounded: false,
        });
        out.push(Case {
            name: name("blockwise step_many mixed"),
            cfg: base,
            dtype,
            sizes: vec![4096, 5000, 257, 70_001, 1_000_000, 9999],
            bounded: false,
        });
        out.push(Case {
            name: name("non-blockwise"),
            cfg: bnb_adam8bit_config_t {
                block_wise: false,
                ..wd
            },
            dtype,
            sizes: vec![100_003],
            bounded: false,
        });
        out.push(Case {
            name: name("32-bit skip_zeros"),
            cfg: bnb_adam8bit_config_t {
                min_8bit_size: 1 << 30,
                skip_zeros: true,
                ..wd
            },
            dtype,
            sizes: vec![50_001, 77],
            bounded: false,
        });
        out.push(Case {
            name: name("32-bit max_unorm"),
            cfg: bnb_adam8bit_config_t {
                min_8bit_size: 1 << 30,
                max_unorm: 0.01,
                ..base
            },
            dtype,
            sizes: vec![50_001],
            bounded: true,
        });
        out.push(Case {
            name: name("non-blockwise max_unorm"),
            cfg: bnb_adam8bit_config_t {
                block_wise: false,
                max_unorm: 0.01,
                ..base
            },
            dtype,
            sizes: vec![100_003],
            bounded: true,
        });
        out.push(Case {
            name: name("percentile 5"),
            cfg: bnb_adam8bit_config_t {
                percentile_clipping: 5,
                ..base
            },
            dtype,
            sizes: vec![300_001, 1000],
            bounded: true,
        });
        out.push(Case {
            name: name("paged"),
            cfg: bnb_adam8bit_config_t {
                is_paged: true,
                ..base
            },
            dtype,
            sizes: vec![2_000_003, 5000],
            bounded: false,
        });
    }
    out
}

/// Median milliseconds of `runs` timings of `f` on the default stream, by CUDA events.
fn time_ms(runs: usize, mut f: impl FnMut() -> Result<(), String>) -> Result<f32, String> {
    let flags = sys::CUevent_flags::CU_EVENT_DEFAULT;
    let (a, b) = (
        cu(result::event::create(flags), "event")?,
        cu(result::event::create(flags), "event")?,
    );
    f()?; // warm-up
    let mut ms = Vec::new();
    for _ in 0..runs {
        cu(
            unsafe { result::event::record(a, std::ptr::null_mut()) },
            "record",
        )?;
        f()?;
        cu(
            unsafe { result::event::record(b, std::ptr::null_mut()) },
            "record",
        )?;
        cu(unsafe { result::event::synchronize(b) }, "event sync")?;
        ms.push(cu(unsafe { result::event::elapsed(a, b) }, "elapsed")?);
    }
    ms.sort_by(f32::total_cmp);
    Ok(ms[ms.len() / 2])
}

/// Device memory filled with N(0, sd^2) values of `dtype`: one host chunk of normals, uploaded
/// over and over (a 7B-parameter list does not fit in host memory twice; the values need only
/// be realistic, so that v does not underflow and the quantizer does real work).
struct Filled(Dev);

impl Filled {
    fn new(chunk: &[f32], n: usize, dtype: bnb_dtype_t, sd: f32) -> Result<Filled, String> {
        let width = if dtype == BNB_DTYPE_F32 { 4 } else { 2 };
        let head = &chunk[..n.min(chunk.len())];
        let bytes = encode(&head.iter().map(|x| x * sd).collect::<Vec<_>>(), dtype);
        let p = cu(
            unsafe { result::malloc_sync((n * width).max(1)) },
            "cuMemAlloc",
        )?;
        let mut done = 0;
        while done < n {
            let k = (n - done).min(head.len());
            cu(
                unsafe { result::memcpy_htod_sync(p + (done * width) as u64, &bytes[..k * width]) },
                "cuMemcpyHtoD",
            )?;
            done += k;
        }
        cu(result::ctx::synchronize(), "cuCtxSynchronize")?;
        Ok(Filled(Dev(p, n * width)))
    }
}

/// LLaMA-7B's tensors (embedding, per layer q, k, v, o, gate, up, down and two norms, the final
/// norm, the output head), every dimension divided by `div`.
fn llama7b(div: u64) -> Vec<u64> {
    let (h, ff, vocab) = (4096 / div, 11008 / div, 32000 / div);
    let mut v = vec![vocab * h];
    for _ in 0..32 {
        v.extend([h * h, h * h, h * h, h * h, ff * h, ff * h, h * ff, h, h]);
    }
    v.extend([h, vocab * h]);
    v
}

/// Median milliseconds of a device-to-device copy of `bytes`, by events.
fn copy_ms(bytes: usize) -> Result<f32, String> {
    let src = cu(unsafe { result::malloc_sync(bytes) }, "alloc")?;
    let dst = cu(unsafe { result::malloc_sync(bytes) }, "alloc")?;
    let ms = time_ms(20, || {
        cu(
            unsafe { result::memcpy_dtod_async(dst, src, bytes, std::ptr::null_mut()) },
            "copy",
        )
    });
    unsafe {
        let _ = result::free_sync(src);
        let _ = result::free_sync(dst);
    }
    ms
}

/// One timing: a step of `sizes` (one step_many) against a copy of the same bytes.
fn bench_list(
    name: &str,
    sizes: &[u64],
    dtype: bnb_dtype_t,
    chunk: &[f32],
    runs: usize,
) -> Result<(), String> {
    let h = Handle::with_params(
        &bnb_adam8bit_config_t::default(),
        BNB_DEVICE_CUDA,
        sizes,
        dtype,
    )?;
    let mut bufs = Vec::new();
    for &n in sizes {
        let p = Filled::new(chunk, n as usize, dtype, 1.0)?;
        let g = Filled::new(chunk, n as usize, dtype, 1e-2)?;
        bufs.push((p, g));
    }
    let items: Vec<bnb_step_item_t> = bufs
        .iter()
        .enumerate()
        .map(|(id, (p, g))| bnb_step_item_t {
            id: id as u32,
            param: (p.0).0 as *mut c_void,
            grad: (g.0).0 as *const c_void,
        })
        .collect();
    let ms = time_ms(runs, || {
        check(
            unsafe {
                bnb_adam8bit_step_many(h.0, items.as_ptr(), items.len(), std::ptr::null_mut())
            },
            "step_many",
        )
    })?;
    // The host side of a step: the call alone, which enqueues and returns.
    let mut host_us = Vec::new();
    for _ in 0..runs.max(5) {
        let start = std::time::Instant::now();
        check(
            unsafe {
                bnb_adam8bit_step_many(h.0, items.as_ptr(), items.len(), std::ptr::null_mut())
            },
            "step_many",
        )?;
        host_us.push(start.elapsed().as_secs_f64() * 1e6);
    }
    cu(result::ctx::synchronize(), "cuCtxSynchronize")?;
    host_us.sort_by(f64::total_cmp);
    let width: u64 = if dtype == BNB_DTYPE_F32 { 4 } else { 2 };
    let elements: u64 = sizes.iter().sum();
    // Gradient read, parameter read and write, two codes read and write (8-bit tensors).
    let moved = elements * (3 * width + 4);
    let copy = copy_ms((moved / 2) as usize)?;
    let (gbs, copy_gbs) = (
        moved as f64 / (ms as f64 * 1e6),
        moved as f64 / (copy as f64 * 1e6),
    );
    println!(
        "{name}: {} tensors, {elements} elements: step {ms:.3} ms, {gbs:.1} GB/s; copy of the same \
         bytes {copy:.3} ms, {copy_gbs:.1} GB/s; step at {:.0}% of the copy; host side of \
         the call {:.0} us",
        sizes.len(),
        100.0 * gbs / copy_gbs,
        host_us[host_us.len() / 2]
    );
    Ok(())
}

/// Throughput against a device-to-device copy of the same bytes measured in the same run. On
/// the emulated device (tools/cuemu) the timings mean nothing: the benchmark only runs, at a
/// small size, so that its code is exercised.
fn bench(emulated: bool) -> Result<(), String> {
    if emulated {
        println!("emulated device: the timings below are meaningless");
    }
    let (single, div, runs) = if emulated {
        (1u64 << 16, 256, 2)
    } else {
        (1u64 << 28, 1, 30)
    };
    let mut rng = Rng(0x5eed);
    let chunk: Vec<f32> = (0..1 << 22).map(|_| rng.normal()).collect();
    for (dtype, name) in [(BNB_DTYPE_F32, "fp32"), (BNB_DTYPE_BF16, "bf16")] {
        bench_list(
            &format!(
                "blockwise {name}, one tensor of 2^{}",
                single.trailing_zeros()
            ),
            &[single],
            dtype,
            &chunk,
            runs,
        )?;
        let shape = if div == 1 {
            "LLaMA-7B".to_string()
        } else {
            format!("LLaMA-7B / {div}")
        };
        bench_list(
            &format!("{shape} {name}"),
            &llama7b(div),
            dtype,
            &chunk,
            runs,
        )?;
    }
    Ok(())
}

fn main() -> ExitCode {
    if !adam8bit::cuda::driver::kernels_embedded() {
        println!(
            "FAIL this build has no CUDA kernels (nvcc was not found when it was built): \
             rebuild with ADAM8BIT_REQUIRE_CUDA=1 after scripts/install-nvcc.sh"
        );
        return ExitCode::from(3);
    }
    let probe = Handle::new(&bnb_adam8bit_config_t::default(), BNB_DEVICE_CUDA);
    if let Err(e) = probe {
        eprintln!("no CUDA device: {e}");
        return ExitCode::from(2);
    }
    let mut failed = 0;
    // Creating the handle must not have left its context current on this thread.
    match result::ctx::get_current() {
        Ok(None) => println!("ok   create leaves no context current"),
        other => {
            println!("FAIL create changed the current context: {other:?}");
            failed += 1;
        }
    }
    // The primary context of device 0, which the handles use, current here too.
    let ctx = result::device::get(0).and_then(|d| unsafe { result::primary_ctx::retain(d) });
    let ctx = match ctx.and_then(|c| unsafe { result::ctx::set_current(c) }.map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot use the primary context: {e}");
            return ExitCode::from(2);
        }
    };
    let stream = match result::stream::create(result::stream::StreamKind::NonBlocking) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot create a stream: {e}");
            return ExitCode::from(2);
        }
    };
    let mut rng = Rng(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1);
    println!("seed {:#x}", rng.0);
    for c in cases() {
        match run_case(&c, &mut rng, stream) {
            Ok(()) => println!("ok   {}", c.name),
            Err(e) => {
                println!("FAIL {e}");
                failed += 1;
            }
        }
        if result::ctx::get_current().ok().flatten() != Some(ctx) {
            println!(
                "FAIL {}: a library call changed the current context",
                c.name
            );
            failed += 1;
        }
    }
    let emulated = result::device::get(0)
        .and_then(result::device::get_name)
        .is_ok_and(|name| name.starts_with("cuemu"));
    if let Err(e) = bench(emulated) {
        println!("FAIL benchmark: {e}");
        failed += 1;
    }
    if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
