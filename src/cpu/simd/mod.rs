//! Explicit SIMD for the CPU sweeps (blockwise and non-blockwise 8-bit, 32-bit): generic kernels
//! written against the small [`Lanes`] trait, instantiated for AVX-512 (16 lanes; a second level
//! adds VBMI's byte permutes for decoding), AVX2 (8 lanes) and, on AArch64, NEON (4 lanes). The
//! ISA is chosen at run time (`is_x86_feature_detected!`, `is_aarch64_feature_detected!`); tests
//! can force any available level with [`force_isa`]. Every lane does exactly the scalar
//! operations of `math.rs` in the same order (no FMA, correctly rounded `/` and `sqrt`), so all
//! levels are bit-identical.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod blockwise;
mod dynamic;
mod element;
mod fp32;
mod lanes;
#[cfg(target_arch = "aarch64")]
mod neon;
mod quantize;
mod step8;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU8, Ordering};

pub use blockwise::blockwise;
pub use dynamic::{dynamic_max, dynamic_update};
pub use element::VecElement;
pub use fp32::fp32;
pub use lanes::Lanes;

/// An instruction-set level of the CPU kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Scalar,
    Avx2,
    Avx512,
    Neon,
    /// AVX-512 with VBMI's byte permutes (Ice Lake, Zen 4 and later).
    Avx512Vbmi,
}

impl Isa {
    /// In discriminant order.
    pub const ALL: [Isa; 5] = [
        Isa::Scalar,
        Isa::Avx2,
        Isa::Avx512,
        Isa::Neon,
        Isa::Avx512Vbmi,
    ];

    /// Whether this CPU can run the level.
    pub fn available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                is_x86_feature_detected!("avx2")
                    && is_x86_feature_detected!("f16c")
                    && is_x86_feature_detected!("popcnt")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512dq")
                    && is_x86_feature_detected!("popcnt")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vbmi => Isa::Avx512.available() && is_x86_feature_detected!("avx512vbmi"),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => std::arch::is_aarch64_feature_detected!("neon"),
            _ => false,
        }
    }

    fn code(self) -> u8 {
        self as u8 + 1
    }
}

/// 0: not chosen yet; otherwise `Isa::code`.
static CHOSEN: AtomicU8 = AtomicU8::new(0);

/// The level the kernels use: the forced one, else the best available.
pub fn isa() -> Isa {
    match CHOSEN.load(Ordering::Relaxed) {
        0 => {
            let best = [Isa::Avx512Vbmi, Isa::Avx512, Isa::Avx2, Isa::Neon]
                .into_iter()
                .find(|i| i.available())
                .unwrap_or(Isa::Scalar);
            CHOSEN.store(best.code(), Ordering::Relaxed);
            best
        }
        c => Isa::ALL[(c - 1) as usize],
    }
}

/// Forces a level (for tests and benchmarks); `None` restores automatic choice. Returns false,
/// changing nothing, when the CPU lacks the level.
pub fn force_isa(level: Option<Isa>) -> bool {
    match level {
        Some(l) if !l.available() => false,
        Some(l) => {
            CHOSEN.store(l.code(), Ordering::Relaxed);
            true
        }
        None => {
            CHOSEN.store(0, Ordering::Relaxed);
            true
        }
    }
}

/// A kernel written once over [`Lanes`]; [`run`] compiles it for each ISA with that ISA's
/// target features, so every kernel shares one dispatch.
pub(crate) trait Kernel {
    type Out;
    /// Runs the kernel on `S` lanes (implementations are `#[inline(always)]`, so they take
    /// the caller's target features).
    ///
    /// # Safety
    /// `S`'s ISA must be enabled, and the kernel's own pointers valid for what it touches.
    unsafe fn run<S: Lanes>(&self) -> Self::Out;
}

/// Runs `kernel` at level `isa`, or returns `None` at the scalar level (the caller's scalar
/// loop then does all the work).
///
/// # Safety
/// `isa` must be available on this CPU (what [`isa`] and [`force_isa`] guarantee), and the
/// kernel's pointers valid for what it touches.
pub(crate) unsafe fn run<K: Kernel>(isa: Isa, kernel: &K) -> Option<K::Out> {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vbmi => Some(run_avx512_vbmi(kernel)),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => Some(run_avx512(kernel)),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => Some(run_avx2(kernel)),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => Some(run_neon(kernel)),
        _ => None,
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vbmi,popcnt")]
unsafe fn run_avx512_vbmi<K: Kernel>(kernel: &K) -> K::Out {
    kernel.run::<avx512::Avx512<true>>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512dq,popcnt")]
unsafe fn run_avx512<K: Kernel>(kernel: &K) -> K::Out {
    kernel.run::<avx512::Avx512<false>>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c,popcnt")]
unsafe fn run_avx2<K: Kernel>(kernel: &K) -> K::Out {
    kernel.run::<avx2::Avx2>()
}

#[cfg(target_arch = "aarch64")]
#[target_feature(enable = "neon")]
unsafe fn run_neon<K: Kernel>(kernel: &K) -> K::Out {
    kernel.run::<neon::Neon>()
}
