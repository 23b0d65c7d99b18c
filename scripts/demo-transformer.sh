#!/usr/bin/env bash
# The transformer demo (README, "The transformer demo"): a small character-level transformer
# trained on the CPU on the Python standard library's own sources, through the LibTorch
# extension (examples-c/torch) and its torch.optim wrapper, with torch's Adam, libadam8bit's
# 8-bit states (fp32, bf16 and fp16 parameters), and bitsandbytes' Adam8bit, 3 seeds each.
# Prints the results table, renders docs/transformer_loss.png and checks that our 8-bit run ends
# within 1% of fp32 Adam and as close to it as bitsandbytes' (scripts/demo_transformer.py).
# About 5 minutes on 2 cores, plus the one-time install of torch (scripts/torch-env.sh).
# Usage: scripts/demo-transformer.sh [--short]   (--short: 2 seeds of 100 steps, scripts/test.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
# build-essential and python3-venv (for the venv), like the other demo.
scripts/install-deps.sh >/dev/null
source scripts/torch-env.sh
torch_venv
torch_extension
"$TORCH_PY" scripts/demo_transformer.py "$TORCH_EXT" "$@"
