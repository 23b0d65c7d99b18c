#!/usr/bin/env bash
# Static costs of the CUDA kernels, as docs/cuda.md's cost table shows them: per kernel its
# registers, stack (spills), shared memory and resident CTAs per SM on sm_90, and the SASS
# instructions of a sweep's persistent loop per element against what an H200 can issue per
# element at 90% of its memory bandwidth. No GPU needed.
#
# Usage: scripts/kernel-costs.sh        (installs the pinned cuobjdump and nvdisasm wheels
#                                        next to scripts/install-nvcc.sh's nvcc)
set -euo pipefail
cd "$(dirname "$0")/.."

nvcc="$(scripts/install-nvcc.sh)"
# A prefix of their own: pip's --target replaces top-level folders it installs into.
tools="${ADAM8BIT_CACHE:-$HOME/.cache/adam8bit}/cuda-tools-13.2"
bin="$tools/nvidia/cu13/bin"
if ! "$bin/cuobjdump" --version >/dev/null 2>&1 || ! "$bin/nvdisasm" --version >/dev/null 2>&1; then
    # 13.2 is the oldest release of these wheels; it reads 13.0's cubins.
    ${PIP:-python3 -m pip} install --quiet --disable-pip-version-check --no-deps \
        --target "$tools" nvidia-cuda-cuobjdump==13.2.51 nvidia-cuda-nvdisasm==13.2.51 >&2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mapfile -t flags < <(grep -v '^#' csrc/nvcc.flags | grep .)
# -lineinfo only adds the line table, which attributes each instruction to its source lines.
"$nvcc" -cubin "${flags[@]}" -lineinfo -arch=sm_90 -Icsrc -o "$work/k.cubin" csrc/adam8bit.cu
PATH="$bin:$PATH" "$bin/cuobjdump" -res-usage "$work/k.cubin" >"$work/res.txt"
"$bin/nvdisasm" -gi -c "$work/k.cubin" >"$work/k.sass"
python3 scripts/kernel_costs.py "$work/res.txt" "$work/k.sass" csrc/adam8bit.cu csrc/adam8bit_math.cuh
