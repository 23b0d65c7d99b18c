#!/usr/bin/env bash
# The NEON kernels, built for aarch64-unknown-linux-gnu and run under qemu-user: every SIMD
# kernel against the scalar one bit for bit (lib tests), the golden vectors, the
# bitsandbytes traces, and the ABI tests (rule 16 across 1, 2 and 3 threads included). Native
# only, to keep CI short or because emulation breaks them: the exhaustive quantizer test (the
# route is scalar code, the same on both architectures), tests that re-execute their own
# binary (crash, CLI), the allocation count (rayon's queue growth follows thread timing), and
# threads_and_isa (the lib tests already hold NEON to scalar on every path).
set -euo pipefail
cd "$(dirname "$0")/.."

target=aarch64-unknown-linux-gnu
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu"

# One build of the test binaries, warnings as errors (clippy runs natively; `cargo clippy
# --target aarch64-unknown-linux-gnu --lib` lints the NEON module when it changes).
# The golden vectors on a CUDA handle need the emulated device, which is x86-64 code: they run
# in scripts/test.sh's Rust tests, not here.
RUSTFLAGS="-D warnings" cargo test --locked --target "$target" \
  --lib --test vectors --test oracle --test abi -- --skip qmap::linear --skip every_case_on_a_cuda_handle
