#!/usr/bin/env bash
# The README demo: builds libadam8bit and examples-c/ with CMake, fetches the digits table if it
# is missing (scikit-learn's wheel via pip, nothing installed), trains the quickstart MLP with
# 8-bit and with fp32 optimizer states, and renders the loss curves to docs/quickstart_loss.png
# when matplotlib is available (scripts/install-deps.sh installs it).
# Usage: scripts/demo.sh [build-dir]
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$repo/build}"
"$repo/scripts/install-deps.sh" >/dev/null
digits="$(python3 "$repo/scripts/fetch_digits.py")"
cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target quickstart -j"$(nproc)"
curve="$build/examples-c/quickstart_loss.csv"
"$build/examples-c/quickstart" --data "$digits" --curve "$curve"
if python3 -c "import matplotlib" 2>/dev/null; then
  python3 "$repo/scripts/plot_loss.py" "$curve"
else
  echo "demo: matplotlib not installed, skipping the plot (scripts/install-deps.sh installs it)"
fi
