"""Stochastic rounding of bf16 parameters (DECISIONS rule 19) through `Adam8bitLib`, on the CPU:

- updates below half a bf16 ulp, which round-to-nearest drops every time, move the weights by
  their expected amount (the mean over 2^16 weights within six standard deviations);
- the same seed repeats a run bit for bit, another seed gives other bits;
- fp32 parameters are unaffected, and the handle reports which parameters round.

Usage: python test_stochastic_rounding.py path/to/libadam8bit_torch.so
"""
import math
import sys

import torch

from adam8bit_lib import Adam8bitLib, load_extension

N, STEPS = 1 << 16, 4
GAP = 2.0 ** -8  # bf16's spacing just below 1.0
LR = GAP / 4  # a quarter of the spacing: to nearest, 1.0 never moves


def run(stochastic_rounding, seed, dtype=torch.bfloat16):
    w = torch.nn.Parameter(torch.ones(N, dtype=dtype))
    opt = Adam8bitLib([w], lr=LR, eps=1e-30, stochastic_rounding=stochastic_rounding, seed=seed)
    for _ in range(STEPS):
        # A constant gradient: every step of Adam moves each weight by lr (|m/sqrt(v)| = 1).
        w.grad = torch.full_like(w, 0.5)
        opt.step()
    return w.detach().clone(), opt


def main():
    load_extension(sys.argv[1])
    nearest, opt = run(False, 0)
    assert not opt.handle.stochastic_rounding(opt.ids[0])
    assert torch.equal(nearest, torch.ones(N, dtype=torch.bfloat16)), "to nearest drops sub-ulp updates"

    a, opt = run(True, 2**64 - 1)
    assert opt.handle.stochastic_rounding(opt.ids[0])
    mean = a.double().mean().item()
    want = 1.0 - STEPS * LR
    # Each step adds one independent rounding error of at most one gap (every weight stays in
    # [0.5, 1], where the gap is 2^-8), with standard deviation at most half a gap.
    sigma = math.sqrt(STEPS) * GAP * 0.5 / math.sqrt(N)
    assert abs(mean - want) <= 6 * sigma, f"mean {mean} against {want} (sigma {sigma})"

    again, _ = run(True, 2**64 - 1)
    assert torch.equal(a.view(torch.int16), again.view(torch.int16)), "the same seed repeats the run"
    other, _ = run(True, 1)
    assert not torch.equal(a.view(torch.int16), other.view(torch.int16)), "another seed draws otherwise"

    f32_off, _ = run(False, 0, torch.float32)
    f32_on, opt = run(True, 5, torch.float32)
    assert not opt.handle.stochastic_rounding(opt.ids[0])
    assert torch.equal(f32_off, f32_on), "fp32 parameters are unaffected"
    try:
        Adam8bitLib([torch.nn.Parameter(torch.ones(4))], seed=-1)
        raise AssertionError("a negative seed must be refused")
    except ValueError:
        pass
    print(f"stochastic rounding through Adam8bitLib: mean {mean:.6f} (expected {want:.6f}, "
          f"sigma {sigma:.1e}), to nearest stays at 1.0; same seed repeats, fp32 unaffected: OK")


if __name__ == "__main__":
    main()
