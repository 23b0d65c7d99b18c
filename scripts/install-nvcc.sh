#!/usr/bin/env bash
# Installs the pinned CUDA 13.0 compiler wheels from PyPI into a prefix and prints nvcc's path.
#
# Usage: scripts/install-nvcc.sh [PREFIX]     (default: $HOME/.cache/adam8bit/cuda-13.0)
#
# CUDA 13.0 is pinned because the GPU machines run driver 580, which cannot load PTX from a newer
# nvcc. --no-deps --target keeps the wheels out of any Python environment: we only want the files.
# Idempotent: a prefix whose nvcc already runs is left alone. build.rs finds nvcc under the same
# default prefix, or under $ADAM8BIT_NVCC_PREFIX, or at $NVCC.
set -euo pipefail

prefix="${1:-${ADAM8BIT_NVCC_PREFIX:-$HOME/.cache/adam8bit/cuda-13.0}}"
nvcc="$prefix/nvidia/cu13/bin/nvcc"
wheels=(
    nvidia-cuda-nvcc==13.0.88
    nvidia-nvvm==13.0.88
    nvidia-cuda-crt==13.0.88
    nvidia-cuda-runtime==13.0.96
    nvidia-cuda-cccl==13.0.85
)

if ! "$nvcc" --version >/dev/null 2>&1; then
    pip="${PIP:-python3 -m pip}"
    $pip install --quiet --disable-pip-version-check --no-deps --upgrade --target "$prefix" "${wheels[@]}" >&2
fi

# The wheels ship nvcc, cicc (under nvvm/) and ptxas in one tree laid out like a toolkit, so nvcc
# finds its helpers relative to itself. Compile a tiny kernel to prove the whole chain works.
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
printf '__global__ void k(float *x) { x[threadIdx.x] = sqrtf(x[threadIdx.x]); }\n' >"$probe/k.cu"
if ! "$nvcc" -fatbin -arch=sm_80 -o "$probe/k.fatbin" "$probe/k.cu" >&2; then
    echo "install-nvcc.sh: $nvcc is installed but cannot compile a kernel" >&2
    exit 1
fi
echo "$nvcc"
