//! What the fuzzer knows about a handle without asking it: its config, its groups' learning
//! rates and, per parameter, what was registered and how far it stepped. From this, written
//! from the header's rules and not from the library's code, it predicts whether a call must be
//! accepted and what the handle must then report.

use std::collections::BTreeMap;

use adam8bit::ffi::types::*;

/// `x >= 0` and at most f32::MAX (the header's range for lr, eps, weight_decay, ...).
pub fn non_negative_finite(x: f64) -> bool {
    x >= 0.0 && x <= f32::MAX as f64
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnownParam {
    pub numel: u64,
    pub dtype: bnb_dtype_t,
    pub path: bnb_path_t,
    /// The options it was registered with, every field whose flag is unset zeroed (what a
    /// checkpoint compares).
    pub options: bnb_param_options_t,
    pub step: u64,
}

impl KnownParam {
    pub fn elem_size(&self) -> usize {
        if self.dtype == BNB_DTYPE_F32 {
            4
        } else {
            2
        }
    }

    pub fn bytes(&self) -> usize {
        self.numel as usize * self.elem_size()
    }

    pub fn lr_scale(&self) -> f64 {
        if self.options.flags & BNB_OPT_LR_SCALE != 0 {
            self.options.lr_scale
        } else {
            1.0
        }
    }
}

/// What must be equal for a checkpoint of one handle to load into another: the config but
/// its learning rate and `is_paged`, and every parameter's registration (bit patterns, so
/// that -0.0 and 0.0 differ, as they do in a checkpoint's text).
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    config: [u64; 11],
    params: Vec<(u64, bnb_dtype_t, bnb_path_t, [u64; 11])>,
}

#[derive(Debug, Clone)]
pub struct Known {
    pub cfg: bnb_adam8bit_config_t,
    pub groups: BTreeMap<u32, f64>,
    pub params: Vec<KnownParam>,
}

impl Known {
    pub fn new(cfg: bnb_adam8bit_config_t) -> Known {
        Known {
            cfg,
            groups: BTreeMap::new(),
            params: Vec::new(),
        }
    }

    pub fn clips(&self) -> bool {
        self.cfg.percentile_clipping < 100
    }

    pub fn unorm(&self) -> bool {
        self.cfg.max_unorm > 0.0
    }

    /// The outcome of registering `numel` elements of `dtype` with `options` (already checked
    /// for struct size and unknown flags): the new parameter, or the status of the refusal.
    pub fn add(
        &self,
        numel: u64,
        dtype: bnb_dtype_t,
        options: &bnb_param_options_t,
    ) -> Result<KnownParam, bnb_status_t> {
        let o = options;
        let on = |bit| o.flags & bit != 0;
        let size = if dtype == BNB_DTYPE_F32 { 4 } else { 2 };
        if numel == 0
            || numel
                .checked_mul(size)
                .is_none_or(|b| b > isize::MAX as u64)
        {
            return Err(BNB_ERR_INVALID_ARGUMENT);
        }
        let pick = |bit, value: f64, default: f64| if on(bit) { value } else { default };
        let beta1 = pick(BNB_OPT_BETA1, o.beta1, self.cfg.beta1);
        let beta2 = pick(BNB_OPT_BETA2, o.beta2, self.cfg.beta2);
        let eps = pick(BNB_OPT_EPS, o.eps, self.cfg.eps);
        let wd = pick(BNB_OPT_WEIGHT_DECAY, o.weight_decay, self.cfg.weight_decay);
        let betas_ok = [beta1, beta2].iter().all(|b| (0.0..1.0).contains(b));
        if !betas_ok || !non_negative_finite(eps) || !non_negative_finite(wd) {
            return Err(BNB_ERR_INVALID_ARGUMENT);
        }
        if on(BNB_OPT_LR_SCALE) && !non_negative_finite(o.lr_scale) {
            return Err(BNB_ERR_INVALID_ARGUMENT);
        }
        let decided_by = if on(BNB_OPT_SHARD) {
            o.shard_full_numel
        } else {
            numel
        };
        let min_8bit = if on(BNB_OPT_MIN_8BIT_SIZE) {
            o.min_8bit_size
        } else {
            self.cfg.min_8bit_size
        };
        let eight_bit = match on(BNB_OPT_OPTIM_BITS).then_some(o.optim_bits) {
            None | Some(8) => decided_by >= min_8bit,
            Some(32) => false,
            Some(_) => return Err(BNB_ERR_INVALID_ARGUMENT),
        };
        let path = match (eight_bit, self.cfg.block_wise) {
            (false, _) => BNB_PATH_FP32,
            (true, true) => BNB_PATH_BLOCKWISE8,
            (true, false) => BNB_PATH_DYNAMIC8,
        };
        if on(BNB_OPT_SHARD) {
            let (full, offset) = (o.shard_full_numel, o.shard_offset);
            let end = offset.checked_add(numel);
            let inside = end.is_some_and(|e| e <= full);
            let aligned = offset % 256 == 0 && end.is_some_and(|e| e == full || e % 256 == 0);
            if !(inside && aligned) {
                return Err(BNB_ERR_INVALID_ARGUMENT);
            }
            if path == BNB_PATH_DYNAMIC8 || self.clips() || (path == BNB_PATH_FP32 && self.unorm())
            {
                return Err(BNB_ERR_UNSUPPORTED);
            }
        }
        // SAFETY: the struct is plain numbers, for which all-zero bytes are valid.
        let mut options: bnb_param_options_t = unsafe { std::mem::zeroed() };
        (options.flags, options.group) = (o.flags, o.group);
        for (bit, dst, src) in [
            (BNB_OPT_LR_SCALE, &mut options.lr_scale, o.lr_scale),
            (BNB_OPT_BETA1, &mut options.beta1, o.beta1),
            (BNB_OPT_BETA2, &mut options.beta2, o.beta2),
            (BNB_OPT_EPS, &mut options.eps, o.eps),
            (
                BNB_OPT_WEIGHT_DECAY,
                &mut options.weight_decay,
                o.weight_decay,
            ),
        ] {
            if on(bit) {
                *dst = src;
            }
        }
        if on(BNB_OPT_OPTIM_BITS) {
            options.optim_bits = o.optim_bits;
        }
        if on(BNB_OPT_MIN_8BIT_SIZE) {
            options.min_8bit_size = o.min_8bit_size;
        }
        if on(BNB_OPT_SHARD) {
            options.shard_full_numel = o.shard_full_numel;
            options.shard_offset = o.shard_offset;
        }
        Ok(KnownParam {
            numel,
            dtype,
            path,
            options,
            step: 0,
        })
    }

    /// Registers `p` (an accepted [`Known::add`]); a new group starts at the handle's lr.
    pub fn push(&mut self, p: KnownParam) {
        let lr = self.cfg.lr;
        self.groups.entry(p.options.group).or_insert(lr);
        self.params.push(p);
    }

    /// The learning rate parameter `id` steps with.
    pub fn lr(&self, id: usize) -> f64 {
        let p = &self.params[id];
        self.groups[&p.options.group] * p.lr_scale()
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.cfg.lr = lr;
        self.groups.values_mut().for_each(|g| *g = lr);
    }

    /// Size in bytes of state array `kind` of parameter `id`, if its path keeps one.
    pub fn state_size(&self, id: usize, kind: bnb_state_kind_t) -> Option<u64> {
        let p = &self.params[id];
        let eight_bit = p.path != BNB_PATH_FP32;
        let (elem, count) = match kind {
            BNB_STATE1 | BNB_STATE2 => (if eight_bit { 1 } else { 4 }, p.numel),
            BNB_ABSMAX1 | BNB_ABSMAX2 if p.path == BNB_PATH_BLOCKWISE8 => {
                (4, p.numel.div_ceil(256))
            }
            BNB_QMAP1 | BNB_QMAP2 if eight_bit => (4, 256),
            BNB_MAX1 | BNB_MAX2 if p.path == BNB_PATH_DYNAMIC8 => (4, 1),
            BNB_GNORM_VEC if self.clips() => (4, 100),
            BNB_UNORM_VEC if self.unorm() && p.path != BNB_PATH_BLOCKWISE8 => (4, 1),
            _ => return None,
        };
        Some(elem * count)
    }

    /// Every state array parameter `id` keeps, with its size.
    pub fn kinds(&self, id: usize) -> Vec<(bnb_state_kind_t, u64)> {
        (BNB_STATE1..=BNB_UNORM_VEC)
            .filter_map(|k| self.state_size(id, k).map(|s| (k, s)))
            .collect()
    }

    /// `param_info.state_bytes`: every array but the shared maps.
    pub fn state_bytes(&self, id: usize) -> u64 {
        self.kinds(id)
            .iter()
            .filter(|(k, _)| !matches!(*k, BNB_QMAP1 | BNB_QMAP2))
            .map(|(_, s)| s)
            .sum()
    }

    pub fn signature(&self) -> Signature {
        let c = &self.cfg;
        let o = |p: &KnownParam| {
            let o = &p.options;
            [
                o.flags as u64,
                o.group as u64,
                o.lr_scale.to_bits(),
                o.beta1.to_bits(),
                o.beta2.to_bits(),
                o.eps.to_bits(),
                o.weight_decay.to_bits(),
                o.optim_bits as u64,
                o.min_8bit_size,
                o.shard_full_numel,
                o.shard_offset,
            ]
        };
        Signature {
            config: [
                c.beta1.to_bits(),
                c.beta2.to_bits(),
                c.eps.to_bits(),
                c.weight_decay.to_bits(),
                c.max_unorm.to_bits(),
                c.min_8bit_size,
                c.optim_bits as u64,
                c.percentile_clipping as u64,
                c.amsgrad as u64,
                c.block_wise as u64,
                c.skip_zeros as u64,
            ],
            params: self
                .params
                .iter()
                .map(|p| (p.numel, p.dtype, p.path, o(p)))
                .collect(),
        }
    }
}
