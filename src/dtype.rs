//! Parameter and gradient element types (DECISIONS rule 14): the math is fp32, the result is
//! rounded once to the parameter's type, to nearest even (or stochastically, rule 19).

use half::{bf16, f16};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
}

impl Dtype {
    pub fn size(self) -> u64 {
        match self {
            Dtype::F32 => 4,
            Dtype::F16 | Dtype::Bf16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "fp32",
            Dtype::F16 => "fp16",
            Dtype::Bf16 => "bf16",
        }
    }

    pub fn from_name(name: &str) -> Option<Dtype> {
        [Dtype::F32, Dtype::F16, Dtype::Bf16]
            .into_iter()
            .find(|d| d.name() == name)
    }
}

/// A parameter element: widened to f32 exactly, narrowed with one round-to-nearest-even, or
/// with one stochastic rounding by a 32-bit draw (`crate::rounding`; fp32 is left as it is).
pub trait Element: Copy + Send + Sync + 'static {
    fn widen(self) -> f32;
    fn narrow(x: f32) -> Self;
    fn narrow_stochastic(x: f32, draw: u32) -> Self;
}

impl Element for f32 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self
    }
    #[inline(always)]
    fn narrow(x: f32) -> f32 {
        x
    }
    #[inline(always)]
    fn narrow_stochastic(x: f32, _draw: u32) -> f32 {
        x
    }
}

impl Element for f16 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn narrow(x: f32) -> f16 {
        f16::from_f32(x)
    }
    #[inline(always)]
    fn narrow_stochastic(x: f32, draw: u32) -> f16 {
        f16::from_bits(crate::rounding::f16_stochastic(x, draw))
    }
}

impl Element for bf16 {
    #[inline(always)]
    fn widen(self) -> f32 {
        self.to_f32()
    }
    #[inline(always)]
    fn narrow(x: f32) -> bf16 {
        bf16::from_f32(x)
    }
    #[inline(always)]
    fn narrow_stochastic(x: f32, draw: u32) -> bf16 {
        bf16::from_bits(crate::rounding::bf16_stochastic(x, draw))
    }
}
