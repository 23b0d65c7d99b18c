#!/usr/bin/env bash
# Runs every test of libadam8bit on a fresh machine: installs what is missing, checks
# formatting and lints, runs the Rust tests (golden vectors, bitsandbytes traces, ABI,
# checkpoints), the NEON kernels cross-built for AArch64 under qemu-user, the C/C++ programs
# under ctest (plain and under valgrind, MPI included), the install + find_package/pkg-config
# consumers, and the LibTorch extension against bitsandbytes.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s (%s)\n' "$*" "$(date -u +%T)"; }

step "dependencies"
scripts/install-deps.sh
# The CUDA compiler (PyPI wheels, CUDA 13.0): every kernel in csrc/ is compiled on every run,
# and a kernel that does not compile fails the build instead of silently dropping CUDA.
scripts/install-nvcc.sh
export ADAM8BIT_REQUIRE_CUDA=1

step "formatting and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Rust tests"
cargo test --locked --workspace

step "SIMD quantizer route against the exact quantizer on every float in [-2, 2]"
# --workspace keeps the feature set of the step above, so its test binary is reused.
ADAM8BIT_EXHAUSTIVE=1 cargo test --locked --workspace --lib qmap::linear

step "thread tests under ThreadSanitizer (library and std instrumented; about 2 minutes cold)"
scripts/test-tsan.sh

step "AArch64: NEON kernels under qemu-user"
scripts/test-aarch64.sh

step "C and C++ programs (ctest)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
ctest --test-dir build -j"$(nproc)" --output-on-failure

step "install, then find_package and pkg-config consumers"
scripts/test-install.sh build

step "GPU check binary (built here, run on a GPU machine by scripts/gpu_check.sh)"
cargo build --release --locked --bin adam8bit-gpu-check

step "LibTorch extension against bitsandbytes (CPU)"
scripts/test-torch.sh
