//! Shared test support: a `.npy` reader, the golden-case loader, and a thin checked wrapper
//! around the C ABI (every call asserts `BNB_OK` and shows the library's message otherwise).
#![allow(dead_code)]

use std::ffi::{c_void, CStr};
use std::path::{Path, PathBuf};

use adam8bit::ffi::bnb_adam8bit_t;
use adam8bit::ffi::handle::*;
use adam8bit::ffi::params::*;
use adam8bit::ffi::state::*;
use adam8bit::ffi::types::*;

/// A versioned struct of this header's size, as its `_default` function `fill` writes it.
fn filled<T>(fill: unsafe extern "C" fn(*mut T, usize) -> bnb_status_t) -> T {
    let mut v = std::mem::MaybeUninit::<T>::uninit();
    // SAFETY: `v` has size_of::<T>() writable bytes; on BNB_OK every byte was written.
    unsafe {
        ok(fill(v.as_mut_ptr(), std::mem::size_of::<T>()));
        v.assume_init()
    }
}

pub fn config_default() -> bnb_adam8bit_config_t {
    filled(bnb_adam8bit_config_default)
}

pub fn param_options_default() -> bnb_param_options_t {
    filled(bnb_param_options_default)
}

/// Runs the compiler that `$var` names (`default` without it), e.g. `CC`/`cc` or `CXX`/`g++`,
/// on `args`; panics with its errors.
pub fn compile<S: AsRef<std::ffi::OsStr>>(var: &str, default: &str, args: &[S]) {
    let cc = std::env::var(var).unwrap_or_else(|_| default.into());
    let out = std::process::Command::new(&cc)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
    assert!(
        out.status.success(),
        "{cc} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// A `.npy` array (version 1.0, little endian, C order): its descr, shape and raw bytes.
pub struct Npy {
    pub descr: String,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl Npy {
    pub fn load(path: &Path) -> Npy {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(&bytes[..6], b"\x93NUMPY", "{}", path.display());
        let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
        let descr = header
            .split("'descr': '")
            .nth(1)
            .unwrap()
            .split('\'')
            .next()
            .unwrap()
            .to_string();
        assert!(header.contains("'fortran_order': False"));
        let shape_txt = header
            .split("'shape': (")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap();
        let shape = shape_txt
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        Npy {
            descr,
            shape,
            data: bytes[10 + hlen..].to_vec(),
        }
    }

    pub fn item_size(&self) -> usize {
        self.descr[2..].parse().unwrap()
    }

    /// Row `t` of a 2-D array (or the whole 1-D array for `t == 0`), as bytes.
    pub fn row(&self, t: usize) -> &[u8] {
        let row_len: usize = self.shape.iter().skip(1).product::<usize>() * self.item_size();
        let row_len = if self.shape.len() == 1 {
            self.data.len()
        } else {
            row_len
        };
        &self.data[t * row_len..(t + 1) * row_len]
    }
}

pub fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Values as little-endian elements of `dtype` (rounded to nearest even for f16/bf16).
pub fn encode(dtype: bnb_dtype_t, xs: impl Iterator<Item = f32>) -> Vec<u8> {
    xs.flat_map(|x| match dtype {
        BNB_DTYPE_F32 => x.to_le_bytes().to_vec(),
        BNB_DTYPE_F16 => half::f16::from_f32(x).to_le_bytes().to_vec(),
        _ => half::bf16::from_f32(x).to_le_bytes().to_vec(),
    })
    .collect()
}

pub fn i64s(b: &[u8]) -> Vec<i64> {
    b.chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// One folder of `tests/data/vectors` or `tests/data/oracle`.
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
    pub json: serde_json::Value,
}

impl Case {
    pub fn all(set: &str) -> Vec<Case> {
        let root = data_dir().join(set);
        let mut cases: Vec<Case> = std::fs::read_dir(&root)
            .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("case.json").exists())
            .map(|e| {
                let dir = e.path();
                let json =
                    serde_json::from_slice(&std::fs::read(dir.join("case.json")).unwrap()).unwrap();
                Case {
                    name: e.file_name().to_string_lossy().into_owned(),
                    dir,
                    json,
                }
            })
            .collect();
        cases.sort_by(|a, b| a.name.cmp(&b.name));
        assert!(!cases.is_empty(), "no cases under {}", root.display());
        cases
    }

    pub fn arr(&self, name: &str) -> Option<Npy> {
        let p = self.dir.join(format!("{name}.npy"));
        p.exists().then(|| Npy::load(&p))
    }

    pub fn f(&self, key: &str) -> f64 {
        self.json[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{}: {key}", self.name))
    }

    pub fn n(&self) -> u64 {
        self.json["n"].as_u64().unwrap()
    }

    pub fn steps(&self) -> usize {
        self.json["steps"].as_u64().unwrap() as usize
    }

    pub fn dtype(&self) -> bnb_dtype_t {
        match self.json["dtype"].as_str().unwrap() {
            "fp32" => BNB_DTYPE_F32,
            "fp16" => BNB_DTYPE_F16,
            "bf16" => BNB_DTYPE_BF16,
            d => panic!("dtype {d}"),
        }
    }

    pub fn elem_size(&self) -> usize {
        if self.dtype() == BNB_DTYPE_F32 {
            4
        } else {
            2
        }
    }

    pub fn config(&self) -> bnb_adam8bit_config_t {
        let j = &self.json;
        let mut c = config_default();
        c.lr = self.f("lr");
        c.beta1 = j["betas"][0].as_f64().unwrap();
        c.beta2 = j["betas"][1].as_f64().unwrap();
        c.eps = self.f("eps");
        c.weight_decay = self.f("weight_decay");
        c.min_8bit_size = j["min_8bit_size"].as_u64().unwrap();
        c.block_wise = j["block_wise"].as_bool().unwrap_or(true);
        c.percentile_clipping = j["percentile_clipping"].as_i64().unwrap_or(100) as i32;
        c.max_unorm = j["max_unorm"].as_f64().unwrap_or(0.0);
        c.skip_zeros = j["skip_zeros"].as_bool().unwrap_or(false);
        c
    }
}

pub fn message() -> String {
    unsafe { CStr::from_ptr(bnb_last_error_message()) }
        .to_string_lossy()
        .into_owned()
}

/// Asserts `BNB_OK`, showing the status name and message otherwise.
#[track_caller]
pub fn ok(status: bnb_status_t) {
    assert_eq!(
        status,
        BNB_OK,
        "{}: {}",
        unsafe { CStr::from_ptr(bnb_status_name(status)) }.to_string_lossy(),
        message()
    );
}

/// An optimizer handle for tests; every method asserts success.
pub struct Handle(pub *mut bnb_adam8bit_t);

// SAFETY: the header's promise, which tests/threads.rs tests: a handle may be used from any
// thread, and concurrent calls on it are serialised by its lock.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

impl Handle {
    pub fn new(cfg: &bnb_adam8bit_config_t) -> Handle {
        let mut h = std::ptr::null_mut();
        ok(unsafe { bnb_adam8bit_create(cfg, BNB_DEVICE_CPU, 0, &mut h) });
        Handle(h)
    }

    pub fn add(&self, numel: u64, dtype: bnb_dtype_t) -> u32 {
        let mut id = u32::MAX;
        ok(unsafe { bnb_adam8bit_add_param(self.0, numel, dtype, &mut id) });
        id
    }

    pub fn add_ex(&self, numel: u64, dtype: bnb_dtype_t, o: &bnb_param_options_t) -> u32 {
        let mut id = u32::MAX;
        ok(unsafe { bnb_adam8bit_add_param_ex(self.0, numel, dtype, o, &mut id) });
        id
    }

    pub fn step(&self, id: u32, p: &mut [u8], g: &[u8]) {
        ok(unsafe {
            bnb_adam8bit_step(
                self.0,
                id,
                p.as_mut_ptr().cast(),
                g.as_ptr().cast(),
                std::ptr::null_mut(),
            )
        });
    }

    pub fn size(&self, id: u32, kind: bnb_state_kind_t) -> usize {
        let mut b = 0u64;
        ok(unsafe { bnb_adam8bit_state_size(self.0, id, kind, &mut b) });
        b as usize
    }

    pub fn has(&self, id: u32, kind: bnb_state_kind_t) -> bool {
        let mut b = 0u64;
        unsafe { bnb_adam8bit_state_size(self.0, id, kind, &mut b) == BNB_OK }
    }

    pub fn read(&self, id: u32, kind: bnb_state_kind_t) -> Vec<u8> {
        let mut v = vec![0u8; self.size(id, kind)];
        ok(unsafe {
            bnb_adam8bit_read_state(
                self.0,
                id,
                kind,
                v.as_mut_ptr().cast::<c_void>(),
                v.len() as u64,
            )
        });
        v
    }

    pub fn write(&self, id: u32, kind: bnb_state_kind_t, src: &[u8]) {
        ok(unsafe {
            bnb_adam8bit_write_state(self.0, id, kind, src.as_ptr().cast(), src.len() as u64)
        });
    }

    pub fn set_step(&self, id: u32, step: u64) {
        ok(unsafe { bnb_adam8bit_set_step(self.0, id, step) });
    }

    pub fn info(&self, id: u32) -> bnb_param_info_t {
        let mut i: bnb_param_info_t = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<bnb_param_info_t>();
        ok(unsafe { bnb_adam8bit_param_info(self.0, id, &mut i, size) });
        i
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        unsafe { bnb_adam8bit_destroy(self.0) };
    }
}

pub use adam8bit::rng::Rng;

pub mod checkpoint;
pub mod counting_alloc;
pub mod device;
pub mod emulator;
