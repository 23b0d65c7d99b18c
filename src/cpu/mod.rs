//! The CPU backend: a persistent worker pool and the executor that runs one optimizer step for
//! a list of parameters as one parallel sweep.
//!
//! Work is cut into fixed chunks of whole 256-element blocks, independent of the thread count;
//! reductions are combined in chunk order. So every output bit is the same for any number of
//! threads (rule 16).

pub mod kernels;
pub mod math;
pub mod simd;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once, RwLock};

use half::{bf16, f16};
use rayon::prelude::*;

use crate::clipping::{percentile_scale, update_scale};
use crate::dtype::Dtype;
use crate::error::{Error, Result};
use crate::rounding::Rounding;
use crate::scalars::StepScalars;
use crate::state::{HostState, Moments};
use kernels::Partial;

/// Elements per work item: 64 blocks (64 KiB of fp32 gradient), large enough to amortise
/// scheduling, small enough to balance a step over a few large tensors.
const CHUNK: usize = 64 * crate::config::BLOCKSIZE as usize;

/// The worker pool. A fork()ed child inherits its memory but none of its threads.
static POOL: RwLock<Option<Arc<rayon::ThreadPool>>> = RwLock::new(None);

/// Set in a fork()ed child (by the `pthread_atfork` handler registered with the first pool),
/// so a step checks one atomic instead of asking the kernel for its pid.
static FORKED: AtomicBool = AtomicBool::new(false);

extern "C" fn mark_forked() {
    FORKED.store(true, Ordering::Relaxed);
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn build_pool(threads: usize) -> Result<Arc<rayon::ThreadPool>> {
    static AT_FORK: Once = Once::new();
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    AT_FORK.call_once(|| unsafe {
        libc::pthread_atfork(None, None, Some(mark_forked));
    });
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("adam8bit-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| Error::OutOfMemory(format!("cannot start {threads} worker threads: {e}")))
}

/// In a fork()ed child, takes the inherited pool out of `slot` and leaks it: its threads stayed
/// in the parent, so work sent to it would wait forever, and dropping it would signal threads
/// that do not exist here. Returns its size, for the pool that replaces it.
fn discard_inherited(slot: &mut Option<Arc<rayon::ThreadPool>>) -> Option<usize> {
    if !FORKED.swap(false, Ordering::Relaxed) {
        return None;
    }
    let inherited = slot.take()?;
    let threads = inherited.current_num_threads();
    std::mem::forget(inherited);
    Some(threads)
}

fn pool() -> Result<Arc<rayon::ThreadPool>> {
    if !FORKED.load(Ordering::Relaxed) {
        if let Some(p) = POOL.read().unwrap_or_else(|e| e.into_inner()).as_ref() {
            return Ok(p.clone());
        }
    }
    let mut slot = POOL.write().unwrap_or_else(|e| e.into_inner());
    let inherited = discard_inherited(&mut slot);
    if slot.is_none() {
        *slot = Some(build_pool(inherited.unwrap_or_else(default_threads))?);
    }
    Ok(slot.as_ref().expect("just set").clone())
}

/// Sets the worker count; 0 restores the default (the cores this process may use). Steps
/// already running finish on the old pool.
pub fn set_num_threads(threads: u32) -> Result<()> {
    let threads = if threads == 0 {
        default_threads()
    } else {
        threads as usize
    };
    let new = build_pool(threads)?;
    let mut slot = POOL.write().unwrap_or_else(|e| e.into_inner());
    discard_inherited(&mut slot);
    *slot = Some(new);
    Ok(())
}

pub fn num_threads() -> Result<usize> {
    Ok(pool()?.current_num_threads())
}

/// One parameter's share of a step, as the optimizer hands it over. `state` points into the
/// handle, which the step borrows mutably for its whole duration; the raw pointer lets the
/// job list live in the handle's [`Scratch`] between steps.
pub struct Job {
    pub dtype: Dtype,
    pub numel: usize,
    pub param: *mut u8,
    pub grad: *const u8,
    pub state: *mut HostState,
    pub scalars: StepScalars,
    pub t: u64,
    /// The rounding of updated parameters, for the job's element 0.
    pub rounding: Rounding,
    /// `Some(percentile)` when percentile clipping is on.
    pub percentile: Option<i32>,
    /// 0 when off.
    pub max_unorm: f64,
    pub skip_zeros: bool,
}

/// Everything a step needs besides the arrays, kept by the handle so that a step of the same
/// shape as the last one allocates nothing: the job list, per-job views and sums, per-chunk
/// results.
#[derive(Default)]
pub struct Scratch {
    pub jobs: Vec<Job>,
    outcomes: Vec<Outcome>,
    views: Vec<View>,
    /// `first_chunk[j]` is job j's first chunk; one more entry for the total.
    first_chunk: Vec<usize>,
    partials: Vec<Partial>,
    sums: Vec<Partial>,
    counts: Vec<u64>,
    /// [`crate::test_hooks::panic_in_next_update`]: the next sweep panics mid-update.
    #[cfg(feature = "test-hooks")]
    pub(crate) panic_in_update: bool,
}

// SAFETY: the raw pointers in `jobs` and `views` are only dereferenced during a step, which
// holds the handle (and so the scratch) mutably; between steps they are dead values.
unsafe impl Send for Scratch {}

/// What a step reports per parameter.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Outcome {
    pub nonfinite: u64,
    pub gnorm_scale: f32,
}

/// The raw, `Copy` view of a job that worker threads share. Each work item touches only its
/// own element range of these arrays, so concurrent items never alias.
#[derive(Clone, Copy)]
struct View {
    /// The SIMD level of this step, read once.
    isa: simd::Isa,
    dtype: Dtype,
    numel: usize,
    clipped: bool,
    param: *mut u8,
    grad: *const u8,
    moments: MomentPtrs,
    k: StepScalars,
    rounding: Rounding,
    step_size: f32,
    skip_zeros: bool,
    with_unorm: bool,
    /// Non-blockwise scales: the ones decoding the stored codes, and the new ones.
    old: (f32, f32),
    new: (f32, f32),
}

#[derive(Clone, Copy)]
enum MomentPtrs {
    Blockwise {
        s1: *mut u8,
        s2: *mut u8,
        a1: *mut f32,
        a2: *mut f32,
    },
    Dynamic {
        s1: *mut u8,
        s2: *mut u8,
    },
    Fp32 {
        s1: *mut f32,
        s2: *mut f32,
    },
}

// SAFETY: the pointers reference the caller's parameter/gradient buffers and the handle's
// state, all of which outlive the step; work items write disjoint ranges.
unsafe impl Send for View {}
unsafe impl Sync for View {}

#[derive(Clone, Copy)]
struct Task {
    job: usize,
    start: usize,
    end: usize,
}

/// Chunk `c` of the step: its job and element range.
fn task(first_chunk: &[usize], views: &[View], c: usize) -> Task {
    let job = first_chunk.partition_point(|&f| f <= c) - 1;
    let start = (c - first_chunk[job]) * CHUNK;
    Task {
        job,
        start,
        end: (start + CHUNK).min(views[job].numel),
    }
}

/// `f` of every chunk, in chunk order, into `out` (whose allocation is reused); on the pool's
/// workers when called inside `install`.
fn run<T: Send>(
    first_chunk: &[usize],
    views: &[View],
    out: &mut Vec<T>,
    f: impl Fn(&View, &Task) -> T + Sync,
) {
    let chunks = *first_chunk.last().unwrap_or(&0);
    (0..chunks)
        .into_par_iter()
        .map(|c| {
            let t = task(first_chunk, views, c);
            f(&views[t.job], &t)
        })
        .collect_into_vec(out)
}

/// Per-job merge of chunk partials, in chunk order (f64 sums depend on the order).
fn combine(first_chunk: &[usize], parts: &[Partial], sums: &mut Vec<Partial>) {
    sums.clear();
    for w in first_chunk.windows(2) {
        sums.push(
            parts[w[0]..w[1]]
                .iter()
                .fold(Partial::default(), |acc, p| acc.merge(*p)),
        );
    }
}

macro_rules! with_element {
    ($dtype:expr, $P:ident => $body:expr) => {
        match $dtype {
            Dtype::F32 => {
                type $P = f32;
                $body
            }
            Dtype::F16 => {
                type $P = f16;
                $body
            }
            Dtype::Bf16 => {
                type $P = bf16;
                $body
            }
        }
    };
}

/// The task's slice of an array that starts at `base`.
///
/// # Safety
/// `base` must point to at least `task.end` elements, and no other live reference may cover
/// `[task.start, task.end)`.
unsafe fn part<'a, T>(base: *const T, task: &Task) -> &'a [T] {
    std::slice::from_raw_parts(base.add(task.start), task.end - task.start)
}

/// # Safety
/// As [`part`], for exclusive access.
unsafe fn part_mut<'a, T>(base: *mut T, task: &Task) -> &'a mut [T] {
    std::slice::from_raw_parts_mut(base.add(task.start), task.end - task.start)
}

/// Block range of a task (tasks start on block boundaries).
fn block_task(task: &Task) -> Task {
    let b = crate::config::BLOCKSIZE as usize;
    Task {
        job: task.job,
        start: task.start / b,
        end: task.end.div_ceil(b),
    }
}

fn reduce_task(v: &View, task: &Task) -> Partial {
    with_element!(v.dtype, P => unsafe {
        let p: &[P] = part(v.param as *const P, task);
        let g: &[P] = part(v.grad as *const P, task);
        match v.moments {
            MomentPtrs::Dynamic { s1, s2 } => kernels::dynamic_reduce(
                v.isa, p, g, part(s1, task), part(s2, task), v.old, v.with_unorm, &v.k),
            MomentPtrs::Fp32 { s1, s2 } => kernels::fp32_reduce(
                p, g, part(s1, task), part(s2, task), v.skip_zeros, &v.k),
            MomentPtrs::Blockwise { .. } => Partial::default(),
        }
    })
}

fn update_task(v: &View, task: &Task) -> u64 {
    let r = v.rounding.advanced(task.start);
    with_element!(v.dtype, P => unsafe {
        let p: &mut [P] = part_mut(v.param as *mut P, task);
        let g: &[P] = part(v.grad as *const P, task);
        match v.moments {
            MomentPtrs::Blockwise { s1, s2, a1, a2 } => {
                let blocks = block_task(task);
                kernels::blockwise(v.isa, p, g, part_mut(s1, task), part_mut(s2, task),
                    part_mut(a1, &blocks), part_mut(a2, &blocks), &v.k, r)
            }
            MomentPtrs::Dynamic { s1, s2 } => kernels::dynamic_update(
                v.isa, p, g, part_mut(s1, task), part_mut(s2, task), v.old, v.new, v.step_size, &v.k, r),
            MomentPtrs::Fp32 { s1, s2 } => kernels::fp32_update(
                v.isa, p, g, part_mut(s1, task), part_mut(s2, task), v.skip_zeros, v.step_size,
                &v.k, r),
        }
    })
}

fn grad_task(v: &View, task: &Task) -> Partial {
    with_element!(v.dtype, P => unsafe { kernels::grad_norm_sq::<P>(part(v.grad as *const P, task), &v.k) })
}

/// One step of every job in `scratch.jobs`, as one parallel sweep per phase; returns each
/// job's outcome, in job order. The caller has validated every pointer and size; nothing here
/// can fail after the pool is obtained.
///
/// # Safety
/// Each job's `param` and `grad` must point to `numel` elements of `dtype`, and its state be
/// valid, for the call; no two jobs may share memory, nor a job's buffers each other.
pub unsafe fn step(scratch: &mut Scratch) -> Result<&[Outcome]> {
    // One entry into the pool per step: every phase's parallel sweep runs inside it.
    pool()?.install(|| sweep(scratch));
    Ok(&scratch.outcomes)
}

/// The phases of [`step`], on a worker of the pool.
unsafe fn sweep(scratch: &mut Scratch) {
    let Scratch {
        jobs,
        outcomes,
        views,
        first_chunk,
        partials,
        sums,
        counts,
        #[cfg(feature = "test-hooks")]
        panic_in_update,
    } = scratch;
    views.clear();
    let isa = simd::isa();
    views.extend(jobs.iter().map(|j| view(j, isa)));
    first_chunk.clear();
    first_chunk.push(0);
    for job in jobs.iter() {
        first_chunk.push(first_chunk[first_chunk.len() - 1] + job.numel.div_ceil(CHUNK));
    }
    outcomes.clear();
    outcomes.resize(
        jobs.len(),
        Outcome {
            nonfinite: 0,
            gnorm_scale: 1.0,
        },
    );

    if jobs.iter().any(|j| j.percentile.is_some()) {
        run(first_chunk, views, partials, |v, t| {
            if v.clipped {
                grad_task(v, t)
            } else {
                Partial::default()
            }
        });
        combine(first_chunk, partials, sums);
        for (j, job) in jobs.iter_mut().enumerate() {
            let state = &mut *job.state;
            if let (Some(pct), Some(history)) = (job.percentile, state.gnorm_vec.as_deref_mut()) {
                let scale = percentile_scale(history, sums[j].grad_sq as f32, job.t, pct);
                views[j].k.gnorm_scale = scale;
                outcomes[j].gnorm_scale = scale;
            }
        }
    }

    let reduces = |v: &View| match v.moments {
        MomentPtrs::Dynamic { .. } => true,
        MomentPtrs::Fp32 { .. } => v.with_unorm,
        MomentPtrs::Blockwise { .. } => false,
    };
    if views.iter().any(reduces) {
        run(first_chunk, views, partials, |v, t| {
            if reduces(v) {
                reduce_task(v, t)
            } else {
                Partial::default()
            }
        });
        combine(first_chunk, partials, sums);
        for (j, job) in jobs.iter_mut().enumerate() {
            let v = &mut views[j];
            if let MomentPtrs::Dynamic { .. } = v.moments {
                v.new = (sums[j].max1, sums[j].max2);
            }
            if v.with_unorm && !matches!(v.moments, MomentPtrs::Blockwise { .. }) {
                let unorm = sums[j].unorm as f32;
                let scale = update_scale(unorm, sums[j].param_sq, job.max_unorm);
                v.step_size = scale * v.k.step_size;
                (*job.state).unorm_vec = Some(unorm);
            }
        }
    }

    #[cfg(not(feature = "test-hooks"))]
    run(first_chunk, views, counts, update_task);
    #[cfg(feature = "test-hooks")]
    {
        let panic_now = std::mem::take(panic_in_update);
        run(first_chunk, views, counts, |v, t| {
            let nonfinite = update_task(v, t);
            if panic_now && t.job == 0 && t.start == 0 {
                panic!("injected by test_hooks::panic_in_next_update");
            }
            nonfinite
        });
    }
    for (j, w) in first_chunk.windows(2).enumerate() {
        outcomes[j].nonfinite = counts[w[0]..w[1]].iter().sum();
    }
    for (job, v) in jobs.iter_mut().zip(views.iter()) {
        if let Moments::Dynamic8 { max1, max2, .. } = &mut (*job.state).moments {
            (*max1, *max2) = v.new;
        }
    }
}

/// # Safety
/// `job.state` must be valid and not otherwise borrowed.
unsafe fn view(job: &Job, isa: simd::Isa) -> View {
    let (moments, old) = match &mut (*job.state).moments {
        Moments::Blockwise8 {
            state1,
            state2,
            absmax1,
            absmax2,
        } => (
            MomentPtrs::Blockwise {
                s1: state1.as_mut_ptr(),
                s2: state2.as_mut_ptr(),
                a1: absmax1.as_mut_ptr(),
                a2: absmax2.as_mut_ptr(),
            },
            (0.0, 0.0),
        ),
        Moments::Dynamic8 {
            state1,
            state2,
            max1,
            max2,
        } => (
            MomentPtrs::Dynamic {
                s1: state1.as_mut_ptr(),
                s2: state2.as_mut_ptr(),
            },
            (*max1, *max2),
        ),
        Moments::Fp32 { state1, state2 } => (
            MomentPtrs::Fp32 {
                s1: state1.as_mut_ptr(),
                s2: state2.as_mut_ptr(),
            },
            (0.0, 0.0),
        ),
    };
    View {
        isa,
        dtype: job.dtype,
        numel: job.numel,
        clipped: job.percentile.is_some(),
        param: job.param,
        grad: job.grad,
        moments,
        k: job.scalars,
        rounding: job.rounding,
        step_size: job.scalars.step_size,
        skip_zeros: job.skip_zeros,
        with_unorm: job.max_unorm > 0.0,
        old,
        new: old,
    }
}
