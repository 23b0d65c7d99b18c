#!/usr/bin/env bash
# Runs every test of libadam8bit on a fresh machine: installs what is missing, checks
# formatting and lints, builds the emulated CUDA device and runs its self-test, runs the Rust
# tests (golden vectors, bitsandbytes traces, ABI, checkpoints, and the CUDA backend on the
# emulated device in two scheduling orders), the CUDA suite again on an AddressSanitizer +
# UBSan build of the emulator and once under valgrind, the GPU check end to end on the
# emulator, the NEON kernels cross-built for AArch64 under qemu-user, the C/C++ programs under
# ctest (plain and under valgrind, MPI included), the install + find_package/pkg-config
# consumers, the LibTorch extension against bitsandbytes, and the transformer demo shortened.
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

step "emulated CUDA device (tools/cuemu): plain and sanitizer builds, self-test"
scripts/build-cuemu.sh target/cuemu/plain --selftest
scripts/build-cuemu.sh target/cuemu/asan --sanitize
target/cuemu/plain/selftest/run target/cuemu/plain/selftest/selftest.fatbin
# The Rust tests run their CUDA cases on this build, in forward and reverse order.
export ADAM8BIT_CUEMU="$PWD/target/cuemu/plain"

step "Rust tests"
cargo test --locked --workspace

step "CUDA suite on the AddressSanitizer + UBSan emulator (small sizes, a random order)"
ADAM8BIT_CUEMU="$PWD/target/cuemu/asan" ADAM8BIT_CUEMU_SMALL=1 ADAM8BIT_CUEMU_ORDERS=random:7 \
    cargo test --locked --workspace --test cuda_emulated --test vectors --test cuda_handle

step "CUDA: the blockwise and non-blockwise cases under valgrind (small sizes)"
ADAM8BIT_CUEMU_VALGRIND=1 ADAM8BIT_CUEMU_SMALL=1 ADAM8BIT_CUEMU_ORDERS=forward \
    cargo test --locked --workspace --test cuda_emulated -- blockwise_every_dtype_and_edge_size

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

step "GPU check binary (run on a GPU machine by scripts/gpu_check.sh), end to end on the emulator"
cargo build --release --locked --bin adam8bit-gpu-check
LD_LIBRARY_PATH="$ADAM8BIT_CUEMU" CUEMU_SM_COUNT=3 target/release/adam8bit-gpu-check

step "LibTorch extension against bitsandbytes (CPU)"
scripts/test-torch.sh

step "the transformer demo, shortened (2 seeds of 100 steps)"
scripts/demo-transformer.sh --short
