#!/usr/bin/env bash
# Builds the LibTorch extension (examples-c/torch) against torch from PyPI and checks
# Adam8bitLib against bitsandbytes.optim.Adam8bit on the CPU, step for step, then its loss
# scaling with torch.amp.GradScaler and its stochastic rounding of bf16 parameters. The virtual
# environment and the build: scripts/torch-env.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/torch-env.sh
torch_venv
torch_extension
"$TORCH_PY" examples-c/torch/test_against_bnb.py "$TORCH_EXT"
"$TORCH_PY" examples-c/torch/test_grad_scaler.py "$TORCH_EXT"
"$TORCH_PY" examples-c/torch/test_stochastic_rounding.py "$TORCH_EXT"
