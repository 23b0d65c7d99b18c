#!/usr/bin/env bash
# Installs what building, packaging and testing libadam8bit's C/C++ side needs, idempotently:
# apt packages (CMake, pkg-config, valgrind, Open MPI for zero1_mpi, an AArch64 cross linker
# and qemu-user for the NEON kernels' tests, pip and venv for Python) and matplotlib (for
# scripts/plot_loss.py) in a virtual environment in the cache. Rust comes from rustup
# (https://rustup.rs). Safe to run repeatedly: it installs only what is missing.
#
# Python: `python3` (or $PYTHON) may be Debian's own, which refuses `pip install` into itself
# (PEP 668, "externally-managed-environment") and makes venvs only with python3-venv; so
# matplotlib goes into ${ADAM8BIT_CACHE:-~/.cache/adam8bit}/venv, never into the system.
set -euo pipefail

apt_pkgs=(cmake pkg-config valgrind libopenmpi-dev openmpi-bin build-essential python3-pip
  python3-venv gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
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
venv="${ADAM8BIT_CACHE:-$HOME/.cache/adam8bit}/venv"
if ! "$venv/bin/python" -c "import matplotlib" 2>/dev/null; then
  echo "install-deps: matplotlib into $venv"
  mkdir -p "$(dirname "$venv")"
  "$py" -m venv --clear "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check matplotlib==3.9.4
else
  echo "install-deps: matplotlib present ($venv)"
fi

if ! command -v cargo >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  echo "install-deps: cargo not found; install Rust with rustup (https://rustup.rs)" >&2
  exit 1
fi
