#!/usr/bin/env bash
# Runs every test of libadam8bit on a fresh machine: installs what is missing, checks
# formatting and lints, runs the Rust tests (golden vectors, bitsandbytes traces, ABI), and
# the C/C++ programs under ctest.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "formatting and lints"
cargo fmt --check
cargo clippy --all-targets --locked -- -D warnings

step "Rust tests"
cargo test --locked

step "LibTorch extension against bitsandbytes (CPU)"
scripts/test-torch.sh
