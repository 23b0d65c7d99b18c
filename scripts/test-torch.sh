#!/usr/bin/env bash
# Builds the LibTorch extension (examples-c/torch) against torch from PyPI and checks
# Adam8bitLib against bitsandbytes.optim.Adam8bit on the CPU, step for step.
# The virtual environment (torch with its CUDA wheels: about 5.5 GB) is cached in
# ${ADAM8BIT_CACHE:-$HOME/.cache/adam8bit}/torch-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${ADAM8BIT_CACHE:-$HOME/.cache/adam8bit}"
venv="$cache/torch-venv"
if ! "$venv/bin/python" -c "import torch, bitsandbytes" 2>/dev/null; then
  echo "installing torch 2.15.0 and bitsandbytes 0.50.2 into $venv (a few minutes, once)"
  mkdir -p "$cache"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q torch==2.15.0 bitsandbytes==0.50.2 numpy
fi
# safetensors: docs/checkpoint.md's loader into bitsandbytes is run by the test.
if ! "$venv/bin/python" -c "import safetensors" 2>/dev/null; then
  "$venv/bin/pip" install -q safetensors==0.8.0
fi
torch_dir="$("$venv/bin/python" -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
# The CUDA runtime headers that torch's stream API includes: from the pinned CUDA wheels of
# scripts/install-nvcc.sh (torch's own wheels lack crt/).
nvcc="$(scripts/install-nvcc.sh)"
cuda_inc="$(dirname "$(dirname "$nvcc")")/include"
abi="$("$venv/bin/python" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')"
cargo build --release --locked --lib
# The library's soname carries the ABI version; the extension records it and loads it from
# target/release through the rpath below.
abi_so="libadam8bit.so.$(sed -n 's/^pub const BNB_ADAM8BIT_ABI_VERSION: u32 = \([0-9]*\);$/\1/p' src/ffi/types.rs)"
ln -sf libadam8bit.so "target/release/$abi_so"
out=target/torch
mkdir -p "$out"
g++ -std=c++20 -O2 -shared -fPIC -D_GLIBCXX_USE_CXX11_ABI="$abi" -Wall \
  -I include -I "$torch_dir/include" -I "$torch_dir/include/torch/csrc/api/include" -I "$cuda_inc" \
  examples-c/torch/adam8bit_torch.cpp -o "$out/libadam8bit_torch.so" \
  -L "$torch_dir/lib" -ltorch_cpu -lc10 -lc10_cuda -L target/release -ladam8bit \
  -Wl,-rpath,"$torch_dir/lib" -Wl,-rpath,"$PWD/target/release"
"$venv/bin/python" examples-c/torch/test_against_bnb.py "$out/libadam8bit_torch.so"
"$venv/bin/python" examples-c/torch/test_grad_scaler.py "$out/libadam8bit_torch.so"
"$venv/bin/python" examples-c/torch/test_stochastic_rounding.py "$out/libadam8bit_torch.so"
