#!/usr/bin/env bash
# The README demo: builds libadam8bit and examples-c/ with CMake, fetches the digits table if it
# is missing (scikit-learn's wheel via pip, nothing installed), trains the quickstart MLP with
# 8-bit and with fp32 optimizer states, and renders the loss curves to docs/quickstart_loss.png
# with the matplotlib that scripts/install-deps.sh puts into a virtual environment in the cache.
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
plot_py="${ADAM8BIT_CACHE:-$HOME/.cache/adam8bit}/venv/bin/python"
if "$plot_py" -c "import matplotlib" 2>/dev/null; then
  "$plot_py" "$repo/scripts/plot_loss.py" "$curve"
else
  echo "demo: matplotlib not installed, skipping the plot (scripts/install-deps.sh installs it)"
fi
