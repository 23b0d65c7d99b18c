//! The optimizer configuration: the seed's knobs, their defaults and presets, validation
//! (DECISIONS rule 13), and the per-parameter overrides that `add_param` accepts.

use crate::error::{invalid, Error, Result};

/// Elements per absmax block of the blockwise 8-bit path (bitsandbytes' `BLOCKSIZE_2STATE`).
pub const BLOCKSIZE: u64 = 256;
/// Slots of the percentile-clipping history (bitsandbytes' `gnorm_vec`).
pub const HISTORY: usize = 100;
/// Tensors with at least this many elements get managed ("paged") state on a paged CUDA handle.
pub const PAGED_MIN_NUMEL: u64 = 100_000;

/// Handle-wide settings, the values a Python user passes to `bnb.optim.Adam8bit`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub max_unorm: f64,
    pub min_8bit_size: u64,
    pub optim_bits: i32,
    pub percentile_clipping: i32,
    pub amsgrad: bool,
    pub block_wise: bool,
    pub is_paged: bool,
    pub skip_zeros: bool,
    /// Rule 19: 16-bit parameters round stochastically, with draws keyed by `seed`.
    pub stochastic_rounding: bool,
    pub seed: u64,
}

/// The four classes of the seed's family; they differ only in `weight_decay` and `is_paged`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Adam8bit,
    AdamW8bit,
    PagedAdam8bit,
    PagedAdamW8bit,
}

impl Config {
    pub fn preset(preset: Preset) -> Config {
        let base = Config {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            max_unorm: 0.0,
            min_8bit_size: 4096,
            optim_bits: 32,
            percentile_clipping: 100,
            amsgrad: false,
            block_wise: true,
            is_paged: false,
            skip_zeros: false,
            stochastic_rounding: false,
            seed: 0,
        };
        match preset {
            Preset::Adam8bit => base,
            Preset::AdamW8bit => Config {
                weight_decay: 1e-2,
                ..base
            },
            Preset::PagedAdam8bit => Config {
                is_paged: true,
                ..base
            },
            Preset::PagedAdamW8bit => Config {
                weight_decay: 1e-2,
                is_paged: true,
                ..base
            },
        }
    }

    /// Rule 13: every value checked, NaN fails every range check, nothing silently ignored.
    pub fn validate(&self) -> Result<()> {
        if self.amsgrad {
            return Err(Error::Unsupported(
                "amsgrad = true is not supported by Adam8bit (bitsandbytes raises too)".into(),
            ));
        }
        if self.optim_bits != 32 {
            invalid!(
                "optim_bits must be 32 (it exists for signature compatibility, as in bitsandbytes; \
                 got {}); use the per-parameter override optim_bits = 32 to keep a tensor in fp32 state",
                self.optim_bits
            );
        }
        check_hyper(self.lr, self.beta1, self.beta2, self.eps, self.weight_decay)?;
        if !non_negative_finite(self.max_unorm) {
            invalid!(
                "max_unorm must be >= 0 and at most f32::MAX (got {})",
                self.max_unorm
            );
        }
        if !(1..=100).contains(&self.percentile_clipping) {
            invalid!(
                "percentile_clipping must lie in 1..=100 (got {}); 100 turns it off",
                self.percentile_clipping
            );
        }
        Ok(())
    }

    pub fn clips_percentile(&self) -> bool {
        self.percentile_clipping < 100
    }
}

/// The range checks shared by the handle config and the per-parameter overrides.
fn check_hyper(lr: f64, beta1: f64, beta2: f64, eps: f64, weight_decay: f64) -> Result<()> {
    check_lr(lr)?;
    for (i, beta) in [beta1, beta2].into_iter().enumerate() {
        if !(0.0..1.0).contains(&beta) {
            invalid!("beta{} must lie in [0, 1) (got {beta})", i + 1);
        }
    }
    if !non_negative_finite(eps) {
        invalid!("eps must be >= 0 and at most f32::MAX (got {eps})");
    }
    if !non_negative_finite(weight_decay) {
        invalid!("weight_decay must be >= 0 and at most f32::MAX (got {weight_decay})");
    }
    Ok(())
}

/// `x >= 0` and finite as an f32 (so false for NaN and infinities): the kernels compute in
/// f32, where a larger value would turn every update into an infinity.
fn non_negative_finite(x: f64) -> bool {
    x >= 0.0 && x <= f32::MAX as f64
}

pub fn check_lr(lr: f64) -> Result<()> {
    if !non_negative_finite(lr) {
        invalid!("lr must be >= 0 and at most f32::MAX (got {lr})");
    }
    Ok(())
}

/// Which state a parameter keeps, decided once at registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    Blockwise8,
    Dynamic8,
    Fp32,
}

/// The hyper-parameters one parameter is stepped with: the handle's, or its overrides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hyper {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// Per-parameter settings, the C counterpart of torch param groups and bitsandbytes'
/// `override_config`. `None` means "the handle's value".
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ParamOverrides {
    pub group: u32,
    pub lr_scale: Option<f64>,
    pub beta1: Option<f64>,
    pub beta2: Option<f64>,
    pub eps: Option<f64>,
    pub weight_decay: Option<f64>,
    /// 32 keeps the tensor in fp32 state whatever its size; 8 asks for 8-bit state subject to
    /// `min_8bit_size`.
    pub optim_bits: Option<i32>,
    pub min_8bit_size: Option<u64>,
    /// `(full_numel, offset)` when the parameter is a shard of a larger flattened tensor.
    pub shard: Option<Shard>,
    /// Rule 19 for this parameter instead of the handle's setting and seed.
    pub stochastic_rounding: Option<bool>,
    pub seed: Option<u64>,
    /// The parameter's key in rule 19's draws instead of the default one
    /// (`rounding::default_key`).
    pub rounding_key: Option<u64>,
}

/// A contiguous slice `[offset, offset + numel)` of a flattened tensor of `full_numel` elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub full_numel: u64,
    pub offset: u64,
}

impl Shard {
    /// Why `[offset, offset + numel)` is not a slice that steps like the same elements of
    /// the full tensor, if it is not: it must lie inside the tensor and cut it only at
    /// 256-element block boundaries, so that every block of the shard is a whole block of the
    /// tensor (or its last, partial one).
    pub fn check_slice(&self, numel: u64) -> std::result::Result<(), String> {
        let end = self.offset.checked_add(numel);
        let inside = end.is_some_and(|end| end <= self.full_numel);
        let aligned = self.offset.is_multiple_of(BLOCKSIZE)
            && end.is_some_and(|end| end == self.full_numel || end.is_multiple_of(BLOCKSIZE));
        if inside && aligned {
            return Ok(());
        }
        let what = if inside {
            format!("does not start and end on {BLOCKSIZE}-element block boundaries")
        } else {
            "exceeds the tensor".into()
        };
        Err(format!(
            "shard [{}, {} + {numel}) of a {}-element tensor {what}",
            self.offset, self.offset, self.full_numel
        ))
    }
}

impl ParamOverrides {
    /// The hyper-parameters this parameter steps with, checked like the handle's.
    pub fn resolve(&self, cfg: &Config) -> Result<Hyper> {
        let hyper = Hyper {
            beta1: self.beta1.unwrap_or(cfg.beta1),
            beta2: self.beta2.unwrap_or(cfg.beta2),
            eps: self.eps.unwrap_or(cfg.eps),
            weight_decay: self.weight_decay.unwrap_or(cfg.weight_decay),
        };
        check_hyper(
            cfg.lr,
            hyper.beta1,
            hyper.beta2,
            hyper.eps,
            hyper.weight_decay,
        )?;
        if let Some(scale) = self.lr_scale {
            if !non_negative_finite(scale) {
                invalid!("lr_scale must be >= 0 and at most f32::MAX (got {scale})");
            }
        }
        Ok(hyper)
    }

    /// The element count of the tensor the parameter is (a shard's full tensor).
    pub fn full_numel(&self, numel: u64) -> u64 {
        self.shard.map_or(numel, |s| s.full_numel)
    }

    /// Whether rule 19 applies to a parameter of `dtype` (never to fp32 ones), and its seed.
    pub fn stochastic_seed(&self, cfg: &Config, dtype: crate::dtype::Dtype) -> Option<u64> {
        let on = self.stochastic_rounding.unwrap_or(cfg.stochastic_rounding);
        (on && dtype != crate::dtype::Dtype::F32).then(|| self.seed.unwrap_or(cfg.seed))
    }

    /// The path a parameter of `numel` elements takes (rule 9: `numel < min_8bit_size` is
    /// strict; a shard decides by the full tensor's size, never by its slice).
    pub fn path(&self, cfg: &Config, numel: u64) -> Result<Path> {
        let decided_by = self.full_numel(numel);
        let min_8bit = self.min_8bit_size.unwrap_or(cfg.min_8bit_size);
        let eight_bit = match self.optim_bits {
            None | Some(8) => decided_by >= min_8bit,
            Some(32) => false,
            Some(bits) => invalid!("optim_bits override must be 8 or 32 (got {bits})"),
        };
        Ok(match (eight_bit, cfg.block_wise) {
            (false, _) => Path::Fp32,
            (true, true) => Path::Blockwise8,
            (true, false) => Path::Dynamic8,
        })
    }
}
