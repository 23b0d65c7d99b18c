#!/usr/bin/env python3
"""Renders the quickstart's loss curves (8-bit vs fp32 optimizer states) to a PNG.

Usage: plot_loss.py CURVE_CSV [OUT_PNG]   (default OUT_PNG: docs/quickstart_loss.png)
CURVE_CSV is what `quickstart --curve FILE` writes ("step,loss_8bit,loss_fp32"); the ctest run
leaves one at build/examples-c/quickstart_loss.csv. Needs matplotlib (scripts/install-deps.sh).
"""
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    src = sys.argv[1]
    out = sys.argv[2] if len(sys.argv) > 2 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "docs", "quickstart_loss.png")
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        print(f"plot_loss: {src} has no rows", file=sys.stderr)
        return 1
    step = [int(r["step"]) for r in rows]
    l8 = [float(r["loss_8bit"]) for r in rows]
    l32 = [float(r["loss_fp32"]) for r in rows]

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    ax.plot(step, l32, "-o", ms=3, label=f"fp32 states (final {l32[-1]:.4f})")
    ax.plot(step, l8, "-s", ms=3, label=f"8-bit block-wise states (final {l8[-1]:.4f})")
    ax.set_xlabel("optimizer step (batch 32)")
    ax.set_ylabel("training loss (label-smoothed cross-entropy)")
    ax.set_yscale("log")
    ax.set_title("quickstart.c: digits MLP 64-512-10, Adam lr 1e-3, cosine decay", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
