"""`Adam8bitLib`: a torch.optim.Optimizer backed by libadam8bit through the LibTorch extension
`libadam8bit_torch.so` (adam8bit_torch.cpp). Same hyper-parameters and defaults as
`bitsandbytes.optim.Adam8bit`; the state lives in libadam8bit, not in `self.state`.
"""
import torch


def load_extension(path):
    """Registers `torch.classes.adam8bit.Optimizer` from the built extension."""
    torch.ops.load_library(path)


class Adam8bitLib(torch.optim.Optimizer):
    # GradScaler's protocol for fused optimizers: `scaler.step(opt)` sets `opt.grad_scale` and
    # `opt.found_inf` (tensors on the scale's device) and calls step() whatever found_inf says;
    # the step divides the gradients by grad_scale itself and skips when found_inf is nonzero.
    # After a user's `scaler.unscale_(opt)` (for gradient clipping) grad_scale is None.
    # What remains unfused: GradScaler still reads every gradient once for found_inf; and the
    # gradients are const to libadam8bit, so `.grad` keeps the scaled values (torch's fused Adam
    # overwrites it with the unscaled ones).
    _step_supports_amp_scaling = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, min_8bit_size=4096,
                 stochastic_rounding=False, seed=0):
        """`stochastic_rounding` rounds updated bf16/fp16 parameters stochastically (DECISIONS
        rule 19; fp32 parameters are unaffected), with draws that depend only on `seed` (an
        unsigned 64-bit integer), the parameter, the step and the element: runs repeat exactly."""
        if not 0 <= seed < 2**64:
            raise ValueError("seed must be an unsigned 64-bit integer")
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        if len(self.param_groups) != 1:
            raise ValueError("Adam8bitLib takes one parameter group (use lr_scale groups in the C API for more)")
        group = self.param_groups[0]
        device = group["params"][0].device
        self.handle = torch.classes.adam8bit.Optimizer(
            lr, betas[0], betas[1], eps, weight_decay, min_8bit_size, device.type == "cuda", device.index or 0,
            stochastic_rounding, seed - 2**64 if seed >= 2**63 else seed)
        self.ids = [self.handle.add_param(p) for p in group["params"]]

    def save(self, path):
        """Writes the optimizer state (all parameters' steps and states) to a checkpoint file."""
        self.handle.save(path)

    def load(self, path):
        """Restores a checkpoint written by `save` for the same parameters; on any mismatch or
        damage it raises and the optimizer is unchanged."""
        self.handle.load(path)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        self.handle.set_lr(group["lr"])  # schedulers edit group["lr"]
        ids, params, grads = [], [], []
        for pid, p in zip(self.ids, group["params"]):
            if p.grad is None:
                continue  # like bitsandbytes: no gradient, no step (its step count stays)
            ids.append(pid)
            params.append(p.data)
            grads.append(p.grad.contiguous())
        grad_scale = getattr(self, "grad_scale", None)
        found_inf = getattr(self, "found_inf", None)
        if grad_scale is None and found_inf is None:
            self.handle.step(ids, params, grads)
        else:
            device = params[0].device if params else torch.device("cpu")
            as_arg = lambda t: None if t is None else t.to(device=device, dtype=torch.float32).reshape(1).contiguous()
            self.handle.step_scaled(ids, params, grads, as_arg(grad_scale), as_arg(found_inf))
        return loss
