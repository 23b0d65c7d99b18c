"""Trains a small torch model on the CPU with Adam8bitLib and with bitsandbytes.optim.Adam8bit,
step for step, and checks that they agree within the bounds of shared/oracle/README.md.

Each step is taken from the same state on both sides (bitsandbytes' state and parameters are
copied into libadam8bit first), as the oracle README prescribes: bitsandbytes' CPU backend is
not the function DECISIONS.md defines, so only one-step differences are bounded.

usage: python test_against_bnb.py path/to/libadam8bit_torch.so
"""
import os
import sys
import tempfile

import numpy as np
import torch
import bitsandbytes as bnb

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from adam8bit_lib import Adam8bitLib, load_extension  # noqa: E402

STEPS = 12


def ulp(x, dtype):
    """Spacing of `dtype` at each value of x (as float64)."""
    x = x.to(dtype)
    up = torch.nextafter(x.abs(), torch.full_like(x, float("inf")))
    return (up.double() - x.abs().double())


def compare_step(name, dtype, lr, wd, ours_p, bnb_p, ours_state, bnb_state):
    slack = lr * (4e-5 + 10 * lr * wd)
    dp = (ours_p.double() - bnb_p.double()).abs()
    bound = ulp(bnb_p, dtype) + slack
    assert bool((dp <= bound).all()), f"{name}: |dp| {float(dp.max()):.3e} exceeds the bound"
    if ours_state["state1"].dtype == torch.uint8:
        for key, limit in (("state1", 0.03), ("state2", 0.12)):
            a, b = ours_state[key].flatten().long(), bnb_state[key].flatten().long()
            amax = ours_state["absmax" + key[-1]]
            zero_block = (amax == 0).repeat_interleave(256)[: a.numel()]
            differ = (a != b) & ~zero_block
            qmap = bnb_state["qmap" + key[-1]].double()
            close = ((a - b).abs() <= 1) | ((qmap[a] - qmap[b]).abs() <= 6.2e-5)
            assert bool(close[differ].all()), f"{name}: {key} codes differ by more than the LUT allows"
            frac = float(differ.double().mean())
            assert frac <= limit, f"{name}: {frac:.2%} of {key} codes differ"
        for key in ("absmax1", "absmax2"):
            a = ours_state[key].numpy().view(np.int32).astype(np.int64)
            b = bnb_state[key].numpy().view(np.int32).astype(np.int64)
            assert int(np.abs(a - b).max()) <= 2, f"{name}: {key} differs by more than 2 ulp"
    else:
        for key in ("state1", "state2"):
            x, y = ours_state[key].double(), bnb_state[key].flatten().double()
            state_bound = 2 * ulp(y.float(), torch.float32) + 1e-6 * float(y.abs().max())
            assert bool(((x - y).abs() <= state_bound).all()), f"{name}: fp32 {key} out of bounds"
    return float((dp / bound).max())


def run(dtype, wd):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.Tanh(), torch.nn.Linear(96, 10)).to(dtype)
    twin = [p.detach().clone() for p in model.parameters()]
    lr = 1e-3
    ref = bnb.optim.Adam8bit(model.parameters(), lr=lr, weight_decay=wd)
    ours_params = [torch.nn.Parameter(t) for t in twin]
    ours = Adam8bitLib(ours_params, lr=lr, weight_decay=wd)
    x = torch.randn(256, 64).to(dtype)
    y = torch.randint(0, 10, (256,))
    worst = 0.0
    for step in range(1, STEPS + 1):
        # teacher forcing: our parameters and state := bitsandbytes' before this step
        for pid, (p, q) in enumerate(zip(model.parameters(), ours_params)):
            q.data.copy_(p.data)
            st = ref.state.get(p, {})
            if st:
                keys = ("state1", "state2", "absmax1", "absmax2") if st["state1"].dtype == torch.uint8 else ("state1", "state2")
                for key in keys:
                    ours.handle.write_state(pid, key, st[key].flatten())
            ours.handle.set_step(pid, step - 1)
        model.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        for p, q in zip(model.parameters(), ours_params):
            q.grad = p.grad.clone()
        ref.step()
        ours.step()
        for pid, (p, q) in enumerate(zip(model.parameters(), ours_params)):
            st = ref.state[p]
            mine = {k: ours.handle.read_state(pid, k) for k in ("state1", "state2")}
            if st["state1"].dtype == torch.uint8:
                mine.update({k: ours.handle.read_state(pid, k) for k in ("absmax1", "absmax2")})
            name = f"{dtype} wd={wd} param {pid} step {step}"
            worst = max(worst, compare_step(name, dtype, lr, wd, q.data.flatten(), p.data.flatten(), mine, st))
        if step == STEPS:
            print(f"{str(dtype):16} wd={wd:<5} loss {loss.item():.4f}  max |dp|/bound {worst:.3f}")


def resume_matches_uninterrupted(tmp):
    """Save mid-training, keep going, then resume a fresh optimizer from the file: both runs end
    bit for bit equal."""
    torch.manual_seed(1)
    base = [torch.randn(5000), torch.randn(300)]
    grads = [[torch.randn_like(t) * 0.01 for t in base] for _ in range(6)]

    def train(params, opt, steps):
        for g in steps:
            for p, gi in zip(params, g):
                p.grad = gi.clone()
            opt.step()

    a = [torch.nn.Parameter(t.clone()) for t in base]
    opt_a = Adam8bitLib(a)
    train(a, opt_a, grads[:3])
    opt_a.save(tmp)
    snapshot = [p.detach().clone() for p in a]
    train(a, opt_a, grads[3:])
    b = [torch.nn.Parameter(t) for t in snapshot]
    opt_b = Adam8bitLib(b)
    opt_b.load(tmp)
    train(b, opt_b, grads[3:])
    assert all(torch.equal(x, y) for x, y in zip(a, b)), "resumed run differs"
    try:
        Adam8bitLib([torch.nn.Parameter(torch.zeros(7))]).load(tmp)
    except RuntimeError as e:
        assert "BNB_ERR_MISMATCH" in str(e), e
    else:
        raise AssertionError("loading into other parameters must fail")
    print("save / load: the resumed run equals the uninterrupted one bit for bit")


def doc_loader():
    """`load_into_bnb` exactly as docs/checkpoint.md prints it."""
    doc = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "checkpoint.md")
    block = open(doc).read().split("```python\n", 1)[1].split("```", 1)[0]
    code = block.split("\nmodel = ...", 1)[0]
    scope = {}
    exec(compile(code, doc, "exec"), scope)
    return scope["load_into_bnb"]


def checkpoint_loads_into_bnb(tmp):
    """A libadam8bit checkpoint, loaded into bnb.optim.Adam8bit by the docs' snippet, holds our
    state exactly, and bitsandbytes' next step from it agrees with ours within the oracle bounds."""
    load_into_bnb = doc_loader()
    torch.manual_seed(2)
    shapes = [(64, 96), (96,), (10, 96)]  # 8-bit blockwise, fp32 (below 4096), 8-bit
    base = [torch.randn(s) * 0.1 for s in shapes]
    grads = [[torch.randn(s) * 0.01 for s in shapes] for _ in range(5)]
    lr = 1e-3
    ours_params = [torch.nn.Parameter(t.clone()) for t in base]
    ours = Adam8bitLib(ours_params, lr=lr)
    for g in grads[:4]:
        for p, gi in zip(ours_params, g):
            p.grad = gi.clone()
        ours.step()
    ours.save(tmp)
    ref_params = [torch.nn.Parameter(p.detach().clone()) for p in ours_params]
    ref = bnb.optim.Adam8bit(ref_params, lr=lr)
    load_into_bnb(tmp, ref)
    for pid, p in enumerate(ref_params):
        st = ref.state[p]
        assert int(st["step"]) == 4, st["step"]
        keys = ("state1", "state2", "absmax1", "absmax2", "qmap1", "qmap2")
        keys = keys if st["state1"].dtype == torch.uint8 else ("state1", "state2")
        for key in keys:
            if key.startswith("qmap"):
                continue
            mine = ours.handle.read_state(pid, key)
            assert torch.equal(st[key].flatten().view(torch.uint8), mine.view(torch.uint8)), (pid, key)
    for p, q, gi in zip(ours_params, ref_params, grads[4]):
        p.grad = gi.clone()
        q.grad = gi.clone()
    ours.step()
    ref.step()
    for pid, (p, q) in enumerate(zip(ours_params, ref_params)):
        st = ref.state[q]
        keys = ("state1", "state2", "absmax1", "absmax2") if st["state1"].dtype == torch.uint8 else ("state1", "state2")
        mine = {k: ours.handle.read_state(pid, k) for k in keys}
        compare_step(f"checkpoint param {pid}", torch.float32, lr, 0.0, p.data.flatten(), q.data.flatten(), mine, st)
    print("checkpoint -> bnb.optim.Adam8bit (docs/checkpoint.md snippet): same state, next step within bounds")


def main():
    load_extension(sys.argv[1])
    with tempfile.TemporaryDirectory() as d:
        resume_matches_uninterrupted(os.path.join(d, "opt.safetensors"))
        checkpoint_loads_into_bnb(os.path.join(d, "for_bnb.safetensors"))
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for wd in (0.0, 0.01):
            run(dtype, wd)
    print("Adam8bitLib agrees with bitsandbytes.optim.Adam8bit within the oracle bounds")


if __name__ == "__main__":
    main()
