# Sourced (not run) by the scripts that use the LibTorch extension (scripts/test-torch.sh,
# scripts/demo-transformer.sh), from the repository root:
#   torch_venv       sets TORCH_PY: the Python of a virtual environment with torch 2.15.0,
#                    bitsandbytes 0.50.2 and what the scripts import (Debian's own python3
#                    refuses pip outside a venv, PEP 668). About 5.5 GB with torch's CUDA
#                    wheels, cached in ${ADAM8BIT_CACHE:-$HOME/.cache/adam8bit}/torch-venv.
#   torch_extension  sets TORCH_EXT: examples-c/torch/adam8bit_torch.cpp built against that
#                    torch and target/release/libadam8bit.so (target/torch/libadam8bit_torch.so).

torch_venv() {
  local cache="${ADAM8BIT_CACHE:-$HOME/.cache/adam8bit}"
  local venv="$cache/torch-venv"
  # safetensors: docs/checkpoint.md's loader into bitsandbytes, run by test_against_bnb.py;
  # matplotlib: the transformer demo's picture.
  local pkgs=(torch==2.15.0 bitsandbytes==0.50.2 numpy safetensors==0.8.0 matplotlib==3.11.2)
  TORCH_PY="$venv/bin/python"
  if "$TORCH_PY" -c "import torch, bitsandbytes, numpy, safetensors, matplotlib" 2>/dev/null; then
    return
  fi
  mkdir -p "$cache"
  # Worktrees and CI on one machine share the cache: one installer at a time.
  (
    flock 9
    if ! "$TORCH_PY" -c "import torch, bitsandbytes, numpy, safetensors, matplotlib" 2>/dev/null; then
      echo "installing ${pkgs[*]} into $venv (a few minutes, once)"
      [ -x "$TORCH_PY" ] || python3 -m venv "$venv"
      "$venv/bin/pip" install -q "${pkgs[@]}"
    fi
  ) 9>"$cache/torch-venv.lock"
}

torch_extension() {
  local torch_dir nvcc cuda_inc abi abi_so
  torch_dir="$("$TORCH_PY" -c 'import torch, os; print(os.path.dirname(torch.__file__))')"
  # The CUDA runtime headers that torch's stream API includes: from the pinned CUDA wheels of
  # scripts/install-nvcc.sh (torch's own wheels lack crt/).
  nvcc="$(scripts/install-nvcc.sh)"
  cuda_inc="$(dirname "$(dirname "$nvcc")")/include"
  abi="$("$TORCH_PY" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')"
  cargo build --release --locked --lib
  # The library's soname carries the ABI version; the extension records it and loads it from
  # target/release through the rpath below.
  abi_so="libadam8bit.so.$(sed -n 's/^pub const BNB_ADAM8BIT_ABI_VERSION: u32 = \([0-9]*\);$/\1/p' src/ffi/types.rs)"
  ln -sf libadam8bit.so "target/release/$abi_so"
  TORCH_EXT=target/torch/libadam8bit_torch.so
  # Compiling against torch's headers takes about 20 s: only when the extension is older than
  # what it is made of.
  local input
  for input in examples-c/torch/adam8bit_torch.cpp include/adam8bit.h scripts/torch-env.sh \
    target/release/libadam8bit.so "$torch_dir/lib/libtorch_cpu.so"; do
    [ "$TORCH_EXT" -nt "$input" ] || { build_torch_extension "$torch_dir" "$cuda_inc" "$abi"; return; }
  done
}

build_torch_extension() {
  local torch_dir="$1" cuda_inc="$2" abi="$3"
  mkdir -p target/torch
  g++ -std=c++20 -O2 -shared -fPIC -D_GLIBCXX_USE_CXX11_ABI="$abi" -Wall \
    -I include -I "$torch_dir/include" -I "$torch_dir/include/torch/csrc/api/include" -I "$cuda_inc" \
    examples-c/torch/adam8bit_torch.cpp -o "$TORCH_EXT" \
    -L "$torch_dir/lib" -ltorch_cpu -lc10 -lc10_cuda -L target/release -ladam8bit \
    -Wl,-rpath,"$torch_dir/lib" -Wl,-rpath,"$PWD/target/release"
}
