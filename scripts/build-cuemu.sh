#!/usr/bin/env bash
# Builds the emulated CUDA device (tools/cuemu) as OUT/libcuda.so and OUT/libcuda.so.1: a
# test-only CUDA driver that runs csrc/'s kernels, compiled unchanged as host C++, with every
# CUDA thread a fiber. Any program run with LD_LIBRARY_PATH=OUT sees one emulated sm_90 device.
#
# Usage: scripts/build-cuemu.sh OUT [--sanitize] [--selftest]
#   --sanitize  build with AddressSanitizer and UBSan (device memory is host heap there, so an
#               out-of-bounds or misaligned kernel access fails); OUT/cuemu.env then holds the
#               environment a program needs to load it (LD_PRELOAD of the ASan runtime).
#   --selftest  also build OUT/selftest/ (the emulator's own test kernels and their runner).
#
# Needs g++ and the CUDA headers of scripts/install-nvcc.sh (cuda.h declares every entry point
# the emulator defines, so the compiler checks each signature); --selftest also needs nvcc.
set -euo pipefail
cd "$(dirname "$0")/.."

out="" sanitize=0 selftest=0
for arg in "$@"; do
    case "$arg" in
        --sanitize) sanitize=1 ;;
        --selftest) selftest=1 ;;
        -*) echo "build-cuemu.sh: unknown option $arg" >&2; exit 2 ;;
        *) out="$arg" ;;
    esac
done
[ -n "$out" ] || { echo "usage: scripts/build-cuemu.sh OUT [--sanitize] [--selftest]" >&2; exit 2; }

# nvcc as build.rs finds it; the headers live next to it.
find_nvcc() {
    local c
    for c in "${NVCC:-}" "${ADAM8BIT_NVCC_PREFIX:-$HOME/.cache/adam8bit/cuda-13.0}/nvidia/cu13/bin/nvcc" \
        "$(command -v nvcc || true)"; do
        if [ -n "$c" ] && "$c" --version >/dev/null 2>&1; then echo "$c"; return 0; fi
    done
    return 1
}
nvcc="$(find_nvcc)" || { echo "build-cuemu.sh: no nvcc (run scripts/install-nvcc.sh)" >&2; exit 1; }
cuda_inc="$(dirname "$(dirname "$nvcc")")/include"
[ -f "$cuda_inc/cuda.h" ] || { echo "build-cuemu.sh: no cuda.h in $cuda_inc" >&2; exit 1; }

cxx="${CXX:-g++}"
mkdir -p "$out/obj"
out="$(cd "$out" && pwd)"
obj="$out/obj"

# Kernel arithmetic exactly as written: no contraction into FMA, no fast-math; no
# _FORTIFY_SOURCE (its longjmp check rejects the fiber stacks).
flags=(-std=c++17 -fPIC -g -ffp-contract=off -fno-strict-aliasing -fno-omit-frame-pointer
    -U_FORTIFY_SOURCE -Wall -Wextra -Wno-unused-parameter -Werror -Itools/cuemu/include)
link=(-ldl -lpthread)
if [ "$sanitize" = 1 ]; then
    flags+=(-O1 -fsanitize=address,undefined -fno-sanitize-recover=undefined)
    link+=(-fsanitize=address,undefined)
else
    flags+=(-O2)
fi

compile_runtime() {
    local src
    for src in simt state control api image registry; do
        "$cxx" "${flags[@]}" -I"$cuda_inc" -c "tools/cuemu/src/$src.cpp" -o "$obj/$src.o"
    done
}

# A kernel translation unit: the wrapper in tools/cuemu/kernels (or selftest) that includes a
# .cu file unchanged, with the CUEMU_KERNEL list of that file's __global__ functions.
compile_kernels() {
    local name="$1" wrapper="$2" cu="$3" dir="$obj/$1"
    mkdir -p "$dir"
    sed -nE 's/.*__global__[[:space:]]+void[[:space:]]+(__launch_bounds__\([^)]*\)[[:space:]]+)?([A-Za-z_][A-Za-z0-9_]*)[[:space:]]*\(.*/CUEMU_KERNEL(\2)/p' \
        "$cu" >"$dir/cuemu_kernels.inc"
    [ -s "$dir/cuemu_kernels.inc" ] || { echo "build-cuemu.sh: no __global__ kernels in $cu" >&2; exit 1; }
    "$cxx" "${flags[@]}" -Wno-sign-compare -fno-extern-tls-init -include cuemu/device.h -I"$(dirname "$cu")" -I"$dir" \
        -c "$wrapper" -o "$dir/kernels.o"
    # `extern __shared__` arrays are undefined TLS symbols: all of them become the runtime's
    # dynamic shared buffer, so they alias its start as they alias on a GPU.
    local sym
    for sym in $(readelf -sW "$dir/kernels.o" | awk '$4 == "TLS" && $7 == "UND" { print $8 }'); do
        objcopy --redefine-sym "$sym=cuemu_dynamic_smem" "$dir/kernels.o"
    done
}

link_driver() {
    local dest="$1" kernels="$2"
    mkdir -p "$dest"
    local rt=("$obj"/{simt,state,control,api,image,registry}.o)
    "$cxx" -shared -o "$dest/libcuda.so.1" -Wl,-soname,libcuda.so.1 \
        -Wl,--version-script=tools/cuemu/exports.map "${rt[@]}" "$kernels" "${link[@]}"
    ln -sf libcuda.so.1 "$dest/libcuda.so"
}

compile_runtime
compile_kernels adam8bit tools/cuemu/kernels/adam8bit.cpp csrc/adam8bit.cu
link_driver "$out" "$obj/adam8bit/kernels.o"

env_file="$out/cuemu.env"
: >"$env_file"
if [ "$sanitize" = 1 ]; then
    # An uninstrumented program (the Rust tests) loads the instrumented driver: the ASan runtime
    # must come first. Leaks are the tests' business, not ASan's, in processes that never free
    # their fiber stacks.
    echo "LD_PRELOAD=$("$cxx" -print-file-name=libasan.so)" >>"$env_file"
    echo "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allow_user_segv_handler=1" >>"$env_file"
    echo "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1" >>"$env_file"
fi

if [ "$selftest" = 1 ]; then
    st="$out/selftest"
    mkdir -p "$st"
    "$nvcc" -fatbin -std=c++17 -O3 -gencode=arch=compute_90,code=sm_90 \
        -o "$st/selftest.fatbin" tools/cuemu/selftest/selftest.cu
    compile_kernels selftest tools/cuemu/selftest/kernels.cpp tools/cuemu/selftest/selftest.cu
    link_driver "$st" "$obj/selftest/kernels.o"
    "$cxx" -std=c++17 -O1 -g -Wall -Wextra -Werror -I"$cuda_inc" -Itools/cuemu/include \
        tools/cuemu/selftest/run.cpp -o "$st/run" -L"$st" -lcuda -Wl,-rpath,"$st" -ldl
fi
echo "$out/libcuda.so"
