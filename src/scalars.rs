//! The per-step scalars of DECISIONS rule 2: computed once per parameter and step on the host,
//! in f64 from the f64 hyper-parameters, each rounded to f32 once. Both backends receive
//! exactly these values, which is half of what makes them bit-identical.

use crate::config::Hyper;

/// Everything the element loops need besides the arrays. `#[repr(C)]` because the CUDA
/// kernels receive the same struct.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StepScalars {
    /// `fl(beta1)`, `fl(beta2)`, `fl(1 - beta1)`, `fl(1 - beta2)` (the subtraction in f64).
    pub beta1: f32,
    pub beta2: f32,
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
    /// `S = -lr * sqrt(1 - beta2^t) / (1 - beta1^t)`.
    pub step_size: f32,
    /// `eps * sqrt(1 - beta2^t)`, added to `sqrt(v)` in the denominator.
    pub eps_c2: f32,
    /// `1 - lr * weight_decay`; applied only when `weight_decay > 0`.
    pub decay: f32,
    /// `fl(eps)`, `1 / (1 - beta1^t)`, `1 / (1 - beta2^t)`: the `max_unorm` norm's terms.
    pub eps: f32,
    pub unorm_c1: f32,
    pub unorm_c2: f32,
    /// Gradient multiplier from percentile clipping (1 without it).
    pub gnorm_scale: f32,
    /// Loss scaling (rule 18): every gradient element is divided by it first; 1 without it.
    /// (The CUDA kernels read the scale from the call's device pointer instead.)
    pub grad_scale: f32,
    /// 1 when weight decay applies, 0 otherwise (an integer so the struct has no padding issues).
    pub apply_decay: u32,
}

/// `beta^t` as the reference computes it: `powf`, not `powi` (libm's nearly correctly rounded
/// pow). The CUDA backend takes these values from the host (a table) rather than compute them
/// on the device, where pow rounds differently.
pub fn power(beta: f64, t: u64) -> f64 {
    beta.powf(t as f64)
}

/// The first step from which `1 - beta^t` is exactly 1 for both betas, as is every later one's
/// (`power` decreases in `t`): the scalars of every step from there on are that step's. Found
/// by bisection over all of `u64`.
pub fn powers_saturate(beta1: f64, beta2: f64) -> u64 {
    let saturated = |t: u64| 1.0 - power(beta1, t) == 1.0 && 1.0 - power(beta2, t) == 1.0;
    let (mut lo, mut hi) = (0u64, u64::MAX);
    if !saturated(hi) {
        return hi;
    }
    // saturated(hi), and lo is 0 or not saturated.
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if saturated(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    if saturated(lo) {
        lo
    } else {
        hi
    }
}

impl StepScalars {
    /// Scalars for step `t >= 1` of a parameter with learning rate `lr` and hyper-parameters `h`.
    pub fn new(lr: f64, h: &Hyper, t: u64) -> StepScalars {
        let bc1 = 1.0 - power(h.beta1, t);
        let bc2 = 1.0 - power(h.beta2, t);
        let c2 = bc2.sqrt();
        StepScalars {
            beta1: h.beta1 as f32,
            beta2: h.beta2 as f32,
            one_minus_beta1: (1.0 - h.beta1) as f32,
            one_minus_beta2: (1.0 - h.beta2) as f32,
            step_size: (-lr * c2 / bc1) as f32,
            eps_c2: (h.eps * c2) as f32,
            decay: (1.0 - lr * h.weight_decay) as f32,
            eps: h.eps as f32,
            unorm_c1: (1.0 / bc1) as f32,
            unorm_c2: (1.0 / bc2) as f32,
            gnorm_scale: 1.0,
            grad_scale: 1.0,
            apply_decay: (h.weight_decay > 0.0) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saturated(b1: f64, b2: f64, t: u64) -> bool {
        1.0 - power(b1, t) == 1.0 && 1.0 - power(b2, t) == 1.0
    }

    #[test]
    fn powers_saturate_at_the_first_step_where_both_corrections_are_1() {
        for (b1, b2) in [
            (0.9, 0.999),
            (0.0, 0.0),
            (0.0, 0.95),
            (0.5, 0.99999),
            (0.9, 0.0),
        ] {
            let t = powers_saturate(b1, b2);
            assert!(saturated(b1, b2, t), "{b1} {b2}: {t}");
            assert!(t == 0 || !saturated(b1, b2, t - 1), "{b1} {b2}: {t}");
            // And every later step, sampled up to the largest.
            for later in [t + 1, t + 1000, 2 * t + 7, 1 << 40, u64::MAX] {
                assert!(saturated(b1, b2, later), "{b1} {b2}: {later}");
            }
        }
        assert_eq!(powers_saturate(0.0, 0.0), 1);
        // Roughly 54 ln 2 / (1 - beta2) steps.
        let t = powers_saturate(0.9, 0.999) as f64;
        assert!((t - 37_400.0).abs() < 500.0, "{t}");
    }
}
