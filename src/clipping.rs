//! The two tensor-wide scales computed between a reduction and the update: percentile clipping's
//! gradient scale (rule 11) and `max_unorm`'s update scale (rules 9, 10). Host code shared by the
//! CPU backend and, for the update scale, by the CUDA backend's host side.

use crate::config::HISTORY;

/// Records this step's squared gradient norm in the 100-slot history (every slot at `t = 1`,
/// slot `t % 100` later) and returns the gradient scale: `clip / current` when the current
/// norm exceeds the `percentile`-th smallest of the history, else 1.
pub fn percentile_scale(history: &mut [f32], grad_norm_sq: f32, t: u64, percentile: i32) -> f32 {
    debug_assert_eq!(history.len(), HISTORY);
    let slot = (t % HISTORY as u64) as usize;
    if t == 1 {
        history.fill(grad_norm_sq);
    } else {
        history[slot] = grad_norm_sq;
    }
    let mut sorted = [0f32; HISTORY];
    sorted.copy_from_slice(history);
    sorted.sort_by(f32::total_cmp);
    let current = history[slot].sqrt();
    let clip = sorted[percentile as usize].sqrt();
    if current > clip {
        clip / current
    } else {
        1.0
    }
}

/// `max_unorm * |p| / sqrt(unorm)` when the update norm exceeds `max_unorm * |p|`, else 1;
/// `param_sq` is the f64 sum of squared parameter values before the step.
pub fn update_scale(unorm: f32, param_sq: f64, max_unorm: f64) -> f32 {
    let param_norm = param_sq.sqrt() as f32;
    let limit = (max_unorm as f32) * param_norm;
    let root = unorm.sqrt();
    if root > limit {
        limit / root
    } else {
        1.0
    }
}
