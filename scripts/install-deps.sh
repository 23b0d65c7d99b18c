#!/usr/bin/env bash
# Installs what building, packaging and testing libadam8bit's C/C++ side needs, idempotently:
# apt packages (CMake, pkg-config, valgrind, Open MPI for zero1_mpi, an AArch64 cross linker
# and qemu-user for the NEON kernels' tests) and PyPI packages
# (matplotlib for scripts/plot_loss.py). Rust comes from rustup (https://rustup.rs).
# Safe to run repeatedly: it installs only what is missing.
set -euo pipefail

apt_pkgs=(cmake pkg-config valgrind libopenmpi-dev openmpi-bin build-essential python3-pip
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
missing=()
for p in "${apt_pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "install-deps: apt-get install ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
else
  echo "install-deps: apt packages present"
fi

py="${PYTHON:-python3}"
if ! "$py" -c "import matplotlib" 2>/dev/null; then
  echo "install-deps: pip install matplotlib"
  "$py" -m pip install --quiet matplotlib
else
  echo "install-deps: matplotlib present"
fi

if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  echo "install-deps: cargo not found; install Rust with rustup (https://rustup.rs)" >&2
  exit 1
fi
