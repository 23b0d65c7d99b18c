"""Loss scaling fused into the step (DECISIONS rule 18) with a real `torch.amp.GradScaler`, on
the CPU, fp16 parameters: `Adam8bitLib` takes GradScaler's `grad_scale` and `found_inf` and
decides inside the step. Checked against an unfused run of the same model and batches that
unscales the gradients itself and steps only when they are finite:

- a step whose gradient overflows is skipped: no parameter, state or step number changes, and
  the scale backs off;
- every step of the two runs agrees within DECISIONS rule 3's bounds (parameters within 2 ulp,
  codes at most one apart on at most 0.1%): the fused step divides the fp16 gradient in fp32,
  the unfused one rounds the unscaled gradient to fp16 first, which only small (subnormal)
  unscaled gradients feel.

Usage: python test_grad_scaler.py path/to/libadam8bit_torch.so
"""
import sys

import torch

from adam8bit_lib import Adam8bitLib, load_extension

STEPS, OVERFLOW_AT = 12, 5


def make_model(seed):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.Tanh(), torch.nn.Linear(96, 10))
    return model.half()


def batch(step):
    g = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(32, 64, generator=g).half()
    y = torch.randint(0, 10, (32,), generator=g)
    return x, y


def loss_of(model, step):
    x, y = batch(step)
    loss = torch.nn.functional.cross_entropy(model(x).float(), y)
    # One step's loss is blown up so that its scaled fp16 gradients overflow.
    return loss * (1e6 if step == OVERFLOW_AT else 1.0)


def ulps16(a, b):
    """Largest distance in fp16 ulps between two fp16 tensors (total order of the bits)."""
    def key(t):
        i = t.view(torch.int16).to(torch.int32)
        return torch.where(i < 0, -32768 - i, i)
    return (key(a) - key(b)).abs().max().item()


def states(opt):
    return [opt.handle.read_state(i, k) for i in opt.ids for k in ("state1", "state2")]


def main():
    load_extension(sys.argv[1])
    fused_model, plain_model = make_model(3), make_model(3)
    fused = Adam8bitLib(fused_model.parameters(), lr=1e-3, min_8bit_size=1024)
    plain = Adam8bitLib(plain_model.parameters(), lr=1e-3, min_8bit_size=1024)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    plain_scale = 2.0**12
    skipped = 0
    for step in range(STEPS):
        fused.zero_grad()
        scaler.scale(loss_of(fused_model, step)).backward()
        scale_before = scaler.get_scale()
        steps_before = [fused.handle.get_step(i) for i in fused.ids]
        params_before = [p.detach().clone() for p in fused_model.parameters()]
        scaler.step(fused)
        scaler.update()

        plain.zero_grad()
        (loss_of(plain_model, step) * plain_scale).backward()
        grads = [p.grad for p in plain_model.parameters()]
        if all(torch.isfinite(g.float()).all() for g in grads):
            for g in grads:
                g.copy_((g.float() / plain_scale).half())
            plain.step()
        else:
            plain_scale *= 0.5
            skipped += 1
            assert scaler.get_scale() == scale_before * 0.5, "the scale backs off"
            assert [fused.handle.get_step(i) for i in fused.ids] == steps_before, "a skipped step counted"
            for a, b in zip(fused_model.parameters(), params_before):
                assert torch.equal(a.detach().view(torch.int16), b.view(torch.int16)), "a skipped step moved a parameter"

        assert scaler.get_scale() == plain_scale, f"step {step}: the scales differ"
        worst = max(ulps16(a.detach(), b.detach()) for a, b in zip(fused_model.parameters(), plain_model.parameters()))
        assert worst <= 2, f"step {step}: parameters {worst} ulp apart"
        for a, b in zip(states(fused), states(plain)):
            if a.dtype == torch.uint8:
                d = (a.int() - b.int()).abs()
                assert d.max().item() <= 1 and (d > 0).sum().item() * 1000 <= d.numel(), f"step {step}: codes"
    assert skipped == 1, f"{skipped} steps overflowed, expected the one at step {OVERFLOW_AT}"
    print(f"grad scaler: {STEPS} steps, the overflow at step {OVERFLOW_AT} skipped and the scale halved; "
          "fused and unfused runs within rule 3's bounds: OK")


if __name__ == "__main__":
    main()
