#!/usr/bin/env bash
# Runs the prebuilt GPU check on a GPU machine; compiles nothing there.
#
# Usage: scripts/gpu_check.sh [BINARY]   (default: target/release/adam8bit-gpu-check)
#
# Build it beforehand on a machine with nvcc (scripts/install-nvcc.sh), then carry the binary:
#     ADAM8BIT_REQUIRE_CUDA=1 cargo build --release --bin adam8bit-gpu-check
# The binary links libadam8bit statically and loads libcuda at run time. It compares every path
# and dtype on a CUDA handle with a CPU handle (bit equality; rule 3's bounds where a reduction
# feeds a scale), stepping the CUDA handle on a non-blocking stream; after two steps each
# handle's checkpoint loads into a fresh handle of the other backend and both runs go on
# (CPU <-> CUDA cross-load); it checks that library calls leave the thread's current context
# unchanged; then it times the blockwise step for n = 2^28 against a device-to-device copy.
# Output goes to stdout and to docs/gpu-check-<UTC date>.txt. Exit status: 0 all passed,
# 1 a mismatch, 2 no CUDA device (message on stderr).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
bin="${1:-$here/target/release/adam8bit-gpu-check}"
if [[ ! -x "$bin" ]]; then
    echo "gpu_check.sh: $bin is not an executable; build it first (see the header of this script)" >&2
    exit 2
fi
out="$here/docs/gpu-check-$(date -u +%F).txt"
mkdir -p "$here/docs"
{
    echo "# adam8bit GPU check, $(date -u +%FT%TZ)"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || true
} | tee "$out.tmp"
set +e
timeout 280 "$bin" 2>&1 | tee -a "$out.tmp"
status=${PIPESTATUS[0]}
set -e
if [[ $status -eq 2 ]]; then
    rm -f "$out.tmp"  # nothing ran: keep no output file
else
    mv "$out.tmp" "$out"
    echo "gpu_check.sh: output written to $out"
fi
exit "$status"
