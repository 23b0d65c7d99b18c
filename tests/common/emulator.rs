//! Tests on the emulated CUDA device (tools/cuemu, built by scripts/build-cuemu.sh).
//!
//! cudarc finds libcuda.so through the dynamic loader, which reads `LD_LIBRARY_PATH` when a
//! process starts. So a test re-executes its own binary, filtered to itself, with the
//! emulator's directory on that path, once per scheduling order of the emulated threads, and
//! the child runs the test's body. Each child folds what it computed into a digest; every
//! order must give the same one, so results that rule 3 only bounds across backends (those
//! behind a reduction) must still be identical from run to run on one backend.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const CHILD: &str = "ADAM8BIT_CUEMU_CHILD";
const DIGEST: &str = "ADAM8BIT_CUEMU_DIGEST";

/// What a child computed, folded into one number (FNV-1a).
pub struct Digest(u64);

impl Digest {
    pub fn add(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
}

/// True in the child process that runs a test's body on the emulated device.
pub fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// The emulator's directory: `$ADAM8BIT_CUEMU` (scripts/test.sh builds a plain and a sanitizer
/// build), else a plain build made once under cargo's target directory.
pub fn emulator_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        if let Some(d) = std::env::var_os("ADAM8BIT_CUEMU") {
            return PathBuf::from(d);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("cuemu");
        std::fs::create_dir_all(&dir).unwrap();
        // Test binaries may run at the same time: one builds, the others wait.
        let lock = std::fs::File::create(dir.join(".lock")).unwrap();
        lock.lock().unwrap();
        let status = Command::new(root.join("scripts/build-cuemu.sh"))
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("running scripts/build-cuemu.sh");
        assert!(status.success(), "scripts/build-cuemu.sh failed");
        dir
    })
    .clone()
}

/// A command that runs `program` on the emulated device: the emulator first on the loader's
/// path, the environment a sanitizer build needs (its `cuemu.env`), and 3 multiprocessors, so
/// that persistent grids stride over more blocks than they have warps.
pub fn emulator_command(program: &Path) -> Command {
    let dir = emulator_dir();
    let mut cmd = if std::env::var_os("ADAM8BIT_CUEMU_VALGRIND").is_some() {
        let mut c = Command::new("valgrind");
        c.args(["--quiet", "--error-exitcode=99", "--leak-check=no"])
            .arg(program);
        c
    } else {
        Command::new(program)
    };
    let path = match std::env::var_os("LD_LIBRARY_PATH") {
        Some(old) => format!("{}:{}", dir.display(), old.to_string_lossy()),
        None => dir.display().to_string(),
    };
    cmd.env("LD_LIBRARY_PATH", path).env("CUEMU_SM_COUNT", "3");
    if let Ok(text) = std::fs::read_to_string(dir.join("cuemu.env")) {
        for line in text.lines().filter(|l| !l.is_empty()) {
            let (k, v) = line.split_once('=').expect("cuemu.env lines are KEY=VALUE");
            cmd.env(k, v);
        }
    }
    cmd
}

/// The scheduling orders each test runs in (`ADAM8BIT_CUEMU_ORDERS`, comma-separated).
fn orders() -> Vec<String> {
    std::env::var("ADAM8BIT_CUEMU_ORDERS")
        .unwrap_or_else(|_| "forward,reverse".into())
        .split(',')
        .map(str::to_string)
        .collect()
}

/// Whether this build can run CUDA handles at all; without kernels (no nvcc at build time)
/// there is nothing to emulate, which `ADAM8BIT_REQUIRE_CUDA=1` (CI) does not accept.
fn kernels_or_skip(name: &str) -> bool {
    if adam8bit::cuda::driver::kernels_embedded() {
        return true;
    }
    assert!(
        std::env::var("ADAM8BIT_REQUIRE_CUDA").as_deref() != Ok("1"),
        "{name}: ADAM8BIT_REQUIRE_CUDA=1 but this build has no CUDA kernels"
    );
    eprintln!("{name}: NOT RUN: this build has no CUDA kernels (no nvcc when it was built)");
    false
}

/// Runs `body` on the emulated device with `env` added: in the parent, spawns this test
/// (`name`, its path in the test binary) once per order and checks that every child passed
/// with the same digest; in a child, runs it.
pub fn on_emulator_with(name: &str, env: &[(&str, &str)], body: impl FnOnce(&mut Digest)) {
    if in_child() {
        let mut digest = Digest(0xcbf2_9ce4_8422_2325);
        body(&mut digest);
        if let Some(path) = std::env::var_os(DIGEST) {
            std::fs::write(path, digest.0.to_string()).unwrap();
        }
        return;
    }
    if !kernels_or_skip(name) {
        return;
    }
    if !cfg!(target_arch = "x86_64") {
        panic!("{name}: the emulated device (tools/cuemu) runs on x86-64 only");
    }
    let exe = std::env::current_exe().unwrap();
    let mut seen: Vec<(String, String)> = Vec::new();
    for order in orders() {
        let digest_file = std::env::temp_dir().join(format!(
            "adam8bit-cuemu-{}-{}-{}",
            std::process::id(),
            name.replace("::", "-"),
            order.replace(':', "-")
        ));
        let _ = std::fs::remove_file(&digest_file);
        let mut cmd = emulator_command(&exe);
        cmd.args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env("CUEMU_ORDER", &order)
            .env(DIGEST, &digest_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd
            .output()
            .expect("spawning the test on the emulated device");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{name} on the emulated device (order {order}) failed: {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            out.status
        );
        let digest = std::fs::read_to_string(&digest_file).expect("the child wrote its digest");
        let _ = std::fs::remove_file(&digest_file);
        seen.push((order, digest));
    }
    for (order, d) in &seen[1..] {
        assert_eq!(
            d, &seen[0].1,
            "{name}: order {order} computed something else than order {}",
            seen[0].0
        );
    }
}

pub fn on_emulator(name: &str, body: impl FnOnce(&mut Digest)) {
    on_emulator_with(name, &[], body)
}

/// The driver entry points a handle's calls make and can see fail. The release calls
/// (cuMemFree, cuEventDestroy, cuModuleUnload, cuDevicePrimaryCtxRelease) are left out: a
/// failed release can only leak, and destroy, which makes them, is never armed.
pub const FALLIBLE_ENTRIES: [&str; 22] = [
    "cuInit",
    "cuDeviceGetCount",
    "cuDeviceGet",
    "cuDevicePrimaryCtxRetain",
    "cuCtxGetCurrent",
    "cuCtxSetCurrent",
    "cuModuleLoadData",
    "cuModuleGetFunction",
    "cuDeviceGetAttribute",
    "cuOccupancyMaxActiveBlocksPerMultiprocessor",
    "cuMemAlloc_v2",
    "cuMemAllocManaged",
    "cuMemGetInfo_v2",
    "cuMemsetD8_v2",
    "cuMemcpyHtoD_v2",
    "cuMemcpyHtoDAsync_v2",
    "cuMemcpyDtoH_v2",
    "cuMemPrefetchAsync_v2",
    "cuEventCreate",
    "cuEventRecord",
    "cuEventSynchronize",
    "cuStreamWaitEvent",
];

/// The function `name` of the loaded library `lib`, as a function pointer of type `F`.
///
/// # Safety
/// `F` must be the function's C signature.
unsafe fn sym<F: Copy>(lib: *mut libc::c_void, name: &std::ffi::CStr) -> F {
    let p = libc::dlsym(lib, name.as_ptr());
    assert!(
        !p.is_null(),
        "{name:?}: this libcuda.so is not the emulator"
    );
    std::mem::transmute_copy::<*mut libc::c_void, F>(&p)
}

/// The emulated driver's test controls (tools/cuemu/include/cuemu/control.h), found in the
/// libcuda.so this process loaded.
pub struct Emulator {
    counter: unsafe extern "C" fn(*const libc::c_char) -> u64,
    reset: unsafe extern "C" fn(),
    fail_call: unsafe extern "C" fn(*const libc::c_char, u64, i32) -> i32,
    fail_launch: unsafe extern "C" fn(u64, i32),
    clear: unsafe extern "C" fn(),
    last_error: unsafe extern "C" fn() -> *const libc::c_char,
}

impl Emulator {
    pub fn get() -> &'static Emulator {
        static EMU: OnceLock<Emulator> = OnceLock::new();
        // Through cudarc, which loads libcuda.so by this name.
        super::device::context();
        EMU.get_or_init(|| unsafe {
            let lib = libc::dlopen(c"libcuda.so".as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
            assert!(!lib.is_null(), "libcuda.so is not loaded");
            Emulator {
                counter: sym(lib, c"cuemu_counter"),
                reset: sym(lib, c"cuemu_reset_counters"),
                fail_call: sym(lib, c"cuemu_fail_call"),
                fail_launch: sym(lib, c"cuemu_fail_launch"),
                clear: sym(lib, c"cuemu_clear_faults"),
                last_error: sym(lib, c"cuemu_last_error"),
            }
        })
    }

    pub fn counter(&self, name: &str) -> u64 {
        let c = std::ffi::CString::new(name).unwrap();
        unsafe { (self.counter)(c.as_ptr()) }
    }

    pub fn reset_counters(&self) {
        unsafe { (self.reset)() }
    }

    /// The `nth` next call of `entry` returns `result` and does nothing.
    pub fn fail_call(&self, entry: &str, nth: u64, result: i32) {
        let c = std::ffi::CString::new(entry).unwrap();
        assert_eq!(
            unsafe { (self.fail_call)(c.as_ptr(), nth, result) },
            0,
            "{entry}"
        );
    }

    /// The `nth` next launch fails with `result` when it runs (asynchronously).
    pub fn fail_launch(&self, nth: u64, result: i32) {
        unsafe { (self.fail_launch)(nth, result) }
    }

    pub fn clear_faults(&self) {
        unsafe { (self.clear)() }
    }

    pub fn last_error(&self) -> String {
        unsafe { std::ffi::CStr::from_ptr((self.last_error)()) }
            .to_string_lossy()
            .into_owned()
    }
}
