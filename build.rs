//! Build script: the shared library's soname, and the CUDA kernels.
//!
//! With nvcc (`$NVCC`, else `$ADAM8BIT_NVCC_PREFIX/nvidia/cu13/bin/nvcc`, else the default prefix
//! of `scripts/install-nvcc.sh`, else `nvcc` on PATH) every `csrc/*.cu` is compiled into ONE
//! fatbin (SASS for sm_80 and sm_90, PTX for compute_90) that the crate embeds under the cfg
//! `adam8bit_cuda`. The flags (`csrc/nvcc.flags`) are those of DECISIONS rule 3: no FMA
//! contraction, correctly rounded division and square root, no flush-to-zero, no fast-math. Without nvcc the crate builds
//! CPU-only (a warning says so) unless `ADAM8BIT_REQUIRE_CUDA=1`, which makes that an error.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    // Programs linked against the shared library record this name, not the build path. It
    // carries the ABI version, so a program built against one ABI never loads another.
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,-soname,libadam8bit.so.{}",
        abi_version()
    );
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/ffi/types.rs");
    println!("cargo::rustc-check-cfg=cfg(adam8bit_cuda)");
    for var in [
        "NVCC",
        "ADAM8BIT_NVCC_PREFIX",
        "ADAM8BIT_REQUIRE_CUDA",
        "HOME",
        "PATH",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let sources = cuda_sources();
    let require = std::env::var("ADAM8BIT_REQUIRE_CUDA").is_ok_and(|v| v == "1");
    match find_nvcc() {
        Some(nvcc) => {
            let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
            let fatbin = out.join("adam8bit.fatbin");
            compile(&nvcc, &sources, &fatbin);
            println!("cargo:rustc-cfg=adam8bit_cuda");
            println!("cargo:rustc-env=ADAM8BIT_FATBIN={}", fatbin.display());
        }
        None if require => panic!(
            "ADAM8BIT_REQUIRE_CUDA=1 but no nvcc was found: run scripts/install-nvcc.sh, or set NVCC \
             or ADAM8BIT_NVCC_PREFIX"
        ),
        None => println!(
            "cargo:warning=no nvcc found (NVCC, ADAM8BIT_NVCC_PREFIX, ~/.cache/adam8bit/cuda-13.0, PATH): \
             building libadam8bit without its CUDA backend; run scripts/install-nvcc.sh to get one"
        ),
    }
}

/// Every kernel source and header, tracked so that editing one rebuilds the fatbin.
fn cuda_sources() -> Vec<PathBuf> {
    let dir = Path::new("csrc");
    println!("cargo:rerun-if-changed=csrc");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    files.retain(|f| f.extension().is_some_and(|e| e == "cu"));
    files
}

fn runs(nvcc: &Path) -> bool {
    Command::new(nvcc)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn find_nvcc() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NVCC") {
        // An explicit choice that does not run is an error, never a silent CPU-only build.
        let p = PathBuf::from(p);
        assert!(runs(&p), "NVCC={} does not run", p.display());
        return Some(p);
    }
    let prefix = std::env::var_os("ADAM8BIT_NVCC_PREFIX")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/adam8bit/cuda-13.0"))
        });
    let candidates = prefix
        .map(|p| p.join("nvidia/cu13/bin/nvcc"))
        .into_iter()
        .chain(std::iter::once(PathBuf::from("nvcc")));
    candidates.into_iter().find(|c| runs(c))
}

fn compile(nvcc: &Path, sources: &[PathBuf], fatbin: &Path) {
    // One fatbin from one translation unit: further kernels go into headers that adam8bit.cu
    // includes, so no relocatable device code and no device link step are needed.
    assert!(
        sources.len() == 1,
        "csrc/ must hold exactly one .cu file (adam8bit.cu), found {sources:?}"
    );
    let mut cmd = Command::new(nvcc);
    cmd.arg("-fatbin")
        .args(nvcc_flags())
        .args([
            "-gencode=arch=compute_80,code=sm_80",
            "-gencode=arch=compute_90,code=sm_90",
            "-gencode=arch=compute_90,code=compute_90",
            "-Icsrc",
            "-o",
        ])
        .arg(fatbin);
    cmd.args(sources);
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", nvcc.display()));
    assert!(
        status.success(),
        "nvcc failed to compile the CUDA kernels ({status})"
    );
}

/// The flags of `csrc/nvcc.flags` (one per line, `#` comments).
fn nvcc_flags() -> Vec<String> {
    std::fs::read_to_string("csrc/nvcc.flags")
        .expect("csrc/nvcc.flags")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// `BNB_ADAM8BIT_ABI_VERSION` as `src/ffi/types.rs` defines it (the one definition; the header,
/// the soname and the CMake package all derive from it).
fn abi_version() -> u32 {
    const DEFINITION: &str = "pub const BNB_ADAM8BIT_ABI_VERSION: u32 = ";
    let types = std::fs::read_to_string("src/ffi/types.rs").expect("src/ffi/types.rs");
    types
        .lines()
        .find_map(|l| l.strip_prefix(DEFINITION)?.strip_suffix(';')?.parse().ok())
        .expect("src/ffi/types.rs defines BNB_ADAM8BIT_ABI_VERSION as an integer literal")
}
