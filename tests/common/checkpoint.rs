//! Checkpoint helpers for tests: the C calls with their status, a full snapshot of a handle
//! (to prove "unchanged"), and a deterministic little training run.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use adam8bit::ffi::checkpoint::*;
use adam8bit::ffi::params::bnb_adam8bit_num_params;
use adam8bit::ffi::types::*;

use super::{config_default, ok, param_options_default, Handle, Rng};

pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

/// Every state kind, in `bnb_state_kind_t` order.
pub const KINDS: [bnb_state_kind_t; 10] = [
    BNB_STATE1,
    BNB_STATE2,
    BNB_ABSMAX1,
    BNB_ABSMAX2,
    BNB_QMAP1,
    BNB_QMAP2,
    BNB_MAX1,
    BNB_MAX2,
    BNB_GNORM_VEC,
    BNB_UNORM_VEC,
];

/// Per parameter: step, lr, and (kind, bytes) of every array it keeps.
pub type Snapshot = Vec<(u64, f64, Vec<(bnb_state_kind_t, Vec<u8>)>)>;

impl Handle {
    pub fn save(&self, path: &Path) -> bnb_status_t {
        unsafe { bnb_adam8bit_save(self.0, cpath(path).as_ptr()) }
    }

    pub fn load(&self, path: &Path) -> bnb_status_t {
        unsafe { bnb_adam8bit_load(self.0, cpath(path).as_ptr()) }
    }

    pub fn serialize(&self) -> Vec<u8> {
        let mut size = 0u64;
        ok(unsafe { bnb_adam8bit_serialized_size(self.0, &mut size) });
        let mut buf = vec![0u8; size as usize];
        let mut written = 0u64;
        ok(unsafe { bnb_adam8bit_serialize(self.0, buf.as_mut_ptr().cast(), size, &mut written) });
        assert_eq!(written, size);
        buf
    }

    pub fn deserialize(&self, bytes: &[u8]) -> bnb_status_t {
        unsafe { bnb_adam8bit_deserialize(self.0, bytes.as_ptr().cast(), bytes.len() as u64) }
    }

    pub fn num_params(&self) -> u32 {
        let mut n = 0;
        ok(unsafe { bnb_adam8bit_num_params(self.0, &mut n) });
        n
    }

    /// Everything observable: per parameter its step, lr and every array it keeps.
    pub fn snapshot(&self) -> Snapshot {
        (0..self.num_params())
            .map(|id| {
                let info = self.info(id);
                let arrays = KINDS
                    .iter()
                    .filter(|&&k| self.has(id, k))
                    .map(|&k| (k, self.read(id, k)))
                    .collect();
                (info.step, info.lr, arrays)
            })
            .collect()
    }
}

pub fn shard_range(full: u64, rank: u32, world: u32) -> (u64, u64) {
    let (mut off, mut len) = (0, 0);
    ok(unsafe { bnb_shard_range(full, rank, world, &mut off, &mut len) });
    (off, len)
}

/// `n` parameter elements of `dtype` drawn from `rng`, as bytes.
pub fn random_elems(rng: &mut Rng, n: usize, dtype: bnb_dtype_t, scale: f32) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 4);
    for _ in 0..n {
        let x = rng.normal() * scale;
        match dtype {
            BNB_DTYPE_F32 => out.extend(x.to_le_bytes()),
            BNB_DTYPE_F16 => out.extend(half::f16::from_f32(x).to_le_bytes()),
            _ => out.extend(half::bf16::from_f32(x).to_le_bytes()),
        }
    }
    out
}

pub fn elem_size(dtype: bnb_dtype_t) -> usize {
    if dtype == BNB_DTYPE_F32 {
        4
    } else {
        2
    }
}

/// A handle with a mix of paths and overrides, stepped a few times with seeded gradients:
/// blockwise bf16 (5000), fp32 path (300), fp16 in group 1 with lr_scale and beta1 overrides,
/// a parameter forced to 32-bit state.
pub fn mixed_handle(seed: u64, steps: usize) -> Handle {
    let mut cfg = config_default();
    cfg.weight_decay = 0.01;
    let h = Handle::new(&cfg);
    let specs: [(u64, bnb_dtype_t); 4] = [
        (5000, BNB_DTYPE_BF16),
        (300, BNB_DTYPE_F32),
        (4100, BNB_DTYPE_F16),
        (4500, BNB_DTYPE_F32),
    ];
    for (i, &(n, dt)) in specs.iter().enumerate() {
        let mut o = param_options_default();
        match i {
            2 => {
                o.group = 1;
                o.flags = BNB_OPT_LR_SCALE | BNB_OPT_BETA1;
                o.lr_scale = 0.5;
                o.beta1 = 0.8;
            }
            3 => {
                o.flags = BNB_OPT_OPTIM_BITS;
                o.optim_bits = 32;
            }
            _ => {}
        }
        h.add_ex(n, dt, &o);
    }
    let mut rng = Rng(seed);
    let mut params: Vec<Vec<u8>> = specs
        .iter()
        .map(|&(n, dt)| random_elems(&mut rng, n as usize, dt, 1.0))
        .collect();
    for t in 0..steps {
        for (id, &(n, dt)) in specs.iter().enumerate() {
            // Parameter 1 skips every other step, so steps differ between parameters.
            if id == 1 && t % 2 == 1 {
                continue;
            }
            let g = random_elems(&mut rng, n as usize, dt, 0.1);
            h.step(id as u32, &mut params[id], &g);
        }
    }
    h
}

/// A fresh handle with the same registrations as [`mixed_handle`] and no steps.
pub fn mixed_empty() -> Handle {
    mixed_handle(0, 0)
}

/// Every file of `dir` and its bytes.
pub fn dir_contents(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect()
}

/// A fresh, empty directory for one test (under the system's temp dir, removed first).
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("adam8bit-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
