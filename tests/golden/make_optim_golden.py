"""Record PyTorch optimizer trajectories for tests/test_optim.py (run from the repo root):

    python tests/golden/make_optim_golden.py        # writes tests/golden/optim_torch.npz

The fixed problem: a flat parameter vector of N entries whose first N_W are "weights" (the L2
prefix), gradients ``g_t = c * (p - target) + noise[t]`` computed with NumPy in the run's dtype
from the current parameters, T steps. Every case is run in float32 and float64; the file keeps
the problem, the final parameters and the optimizer state under our state-row names, so the
tests check fastdl against PyTorch without torch installed. ``run_torch`` is also imported by
the tests for a live comparison when torch is installed.

Cases where conventions differ are set up to match (see docs/optimizers.md):
* the loss's L2 on the weight prefix is a torch parameter group with ``weight_decay=l2``;
* the course's EWA momentum is torch's ``SGD(momentum=b, dampening=b)`` with the momentum
  buffer seeded with zeros (torch's own first step sets it to g without dampening; the case
  ``momentum_ewa_torch_default`` records that behaviour).
"""

from __future__ import annotations

import os

import numpy as np

N, N_W, T = 13, 9, 20
SEED = 20261126
HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "optim_torch.npz")

# name -> (torch class, kwargs, L2 on the weight prefix, lr change {step: lr}, seed zero buffer)
CASES = {
    "sgd": ("SGD", dict(lr=0.1), 0.0, {}, False),
    "sgd_wd": ("SGD", dict(lr=0.1, weight_decay=0.05), 0.0, {}, False),
    "sgd_l2": ("SGD", dict(lr=0.1), 0.05, {}, False),
    "momentum_pytorch": ("SGD", dict(lr=0.05, momentum=0.9), 0.0, {}, False),
    "momentum_ewa": ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.9), 0.0, {}, True),
    "momentum_ewa_torch_default": ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.9), 0.0, {},
                                   False),
    "nesterov": ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True), 0.0, {}, False),
    "nesterov_wd_l2": ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
                       0.05, {}, False),
    "rmsprop": ("RMSprop", dict(lr=0.01, alpha=0.99, eps=1e-8), 0.0, {}, False),
    "rmsprop_wd_l2": ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.01), 0.05,
                      {}, False),
    "adam": ("Adam", dict(lr=0.01), 0.0, {}, False),
    "adam_wd": ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.1), 0.0, {},
                False),
    "adam_l2": ("Adam", dict(lr=0.01), 0.1, {}, False),
    "adam_lr_change": ("Adam", dict(lr=0.01), 0.0, {10: 0.003, 15: 0.02}, False),
    "adamw": ("AdamW", dict(lr=0.01, weight_decay=0.1), 0.0, {}, False),
    "adamw_l2": ("AdamW", dict(lr=0.01, betas=(0.85, 0.995), weight_decay=0.2), 0.05, {},
                 False),
}

#: torch state key -> our state-row name
STATE_NAMES = {"momentum_buffer": "velocity", "square_avg": "square_avg", "exp_avg": "m",
               "exp_avg_sq": "v"}


def problem():
    """(p0, c, target, noise) in float64."""
    rng = np.random.default_rng(SEED)
    p0 = rng.standard_normal(N)
    c = rng.uniform(0.5, 2.0, N)
    target = rng.standard_normal(N)
    noise = 0.1 * rng.standard_normal((T, N))
    return p0, c, target, noise


def gradient(p, t, prob, dtype):
    """The fixed problem's gradient at step t (0-based), in ``dtype``."""
    _, c, target, noise = prob
    return (c.astype(dtype) * (p - target.astype(dtype)) + noise[t].astype(dtype)).astype(dtype)


def run_torch(case, dtype):
    """Final params and state rows ({name: array}) of torch on ``case``; float64/32 NumPy."""
    import torch

    cls, kwargs, l2, lr_change, seed_zero = CASES[case]
    prob = problem()
    p0 = prob[0].astype(dtype)
    w = torch.tensor(p0[:N_W], requires_grad=True)
    b = torch.tensor(p0[N_W:], requires_grad=True)
    if l2:
        # the loss's L2 (weights only) as a per-group coupled decay: weight_decay adds to it
        wd = kwargs.get("weight_decay", 0.0)
        if cls == "AdamW":   # AdamW's weight_decay is decoupled; the loss's L2 is in the grad
            groups = [{"params": [w]}, {"params": [b]}]
        else:
            groups = [{"params": [w], "weight_decay": wd + l2},
                      {"params": [b], "weight_decay": wd}]
    else:
        groups = [{"params": [w, b]}]
    opt = getattr(torch.optim, cls)(groups, **kwargs)
    if seed_zero:
        for t in (w, b):
            opt.state[t]["momentum_buffer"] = torch.zeros_like(t)
    for step in range(T):
        if step in lr_change:
            for g in opt.param_groups:
                g["lr"] = lr_change[step]
        p = np.concatenate([w.detach().numpy(), b.detach().numpy()])
        g = gradient(p, step, prob, dtype)
        if l2 and cls == "AdamW":
            g[:N_W] += dtype(l2) * p[:N_W]
        w.grad = torch.from_numpy(g[:N_W].copy())
        b.grad = torch.from_numpy(g[N_W:].copy())
        opt.step()
    params = np.concatenate([w.detach().numpy(), b.detach().numpy()])
    state = {}
    for key, name in STATE_NAMES.items():
        if key in opt.state[w]:
            state[name] = np.concatenate([opt.state[w][key].numpy(), opt.state[b][key].numpy()])
    if "step" in opt.state[w]:
        state["step"] = np.array(int(opt.state[w]["step"]))
    return params, state


def main():
    import torch

    p0, c, target, noise = problem()
    out = {"p0": p0, "c": c, "target": target, "noise": noise,
           "meta": np.array(f"torch {torch.__version__}, N={N}, N_W={N_W}, T={T}, seed={SEED}")}
    for case in CASES:
        for dtype in (np.float32, np.float64):
            params, state = run_torch(case, dtype)
            key = f"{case}/{np.dtype(dtype).name}"
            out[f"{key}/params"] = params
            for name, row in state.items():
                out[f"{key}/state/{name}"] = row
    np.savez_compressed(PATH, **out)
    print(f"wrote {PATH}: {len(CASES)} cases x 2 dtypes, torch {torch.__version__}")


if __name__ == "__main__":
    main()
