"""Record PyTorch ``BatchNorm1d`` in training and eval modes for the batch-norm tests (run from
the repo root):

    python tests/golden/make_bn_golden.py        # writes tests/golden/batchnorm_torch.npz

The fixed problem: N features, T training steps, each on a batch X[t] (M, N) with an upstream
gradient dY[t]; gamma and beta fixed (no optimizer); then one eval-mode pass on X_eval. PyTorch
runs with ``momentum=MOMENTUM_TORCH``, ``eps=EPS`` (its running variance is the unbiased one).
Per step the file keeps Y, dX, dgamma, dbeta and the running statistics after the step, in
float32 and float64, so the tests compare fastdl (``momentum = 1 - MOMENTUM_TORCH``,
``running_var="unbiased"``) with PyTorch without torch installed. ``run_torch`` is also
imported by the tests for a live comparison when torch is installed.
"""

from __future__ import annotations

import os

import numpy as np

T, M, N = 4, 7, 5
MOMENTUM_TORCH, EPS = 0.1, 1e-5
SEED = 20261126
HERE = os.path.dirname(os.path.abspath(__file__))
PATH = os.path.join(HERE, "batchnorm_torch.npz")
OUTPUTS = ("Y", "dX", "dgamma", "dbeta", "running_mean", "running_var")


def problem():
    """Inputs in float64: batches with per-feature offsets and scales (one feature constant in
    the last step, to cover var = 0), upstream gradients, gamma, beta, an eval batch."""
    rng = np.random.default_rng(SEED)
    offset = rng.normal(0.0, 3.0, N)
    scale = rng.uniform(0.2, 4.0, N)
    X = offset + scale * rng.standard_normal((T, M, N))
    X[-1, :, 2] = 1.5
    return {"X": X, "dY": rng.standard_normal((T, M, N)),
            "gamma": rng.uniform(0.5, 2.0, N), "beta": rng.normal(0.0, 1.0, N),
            "X_eval": offset + scale * rng.standard_normal((M + 2, N))}


def run_torch(prob, dtype):
    """PyTorch's outputs for ``prob`` in ``dtype`` ("float32" | "float64"): a dict of arrays,
    per-step ones stacked along axis 0, plus "Y_eval"."""
    import torch

    tdt = {"float32": torch.float32, "float64": torch.float64}[dtype]
    bn = torch.nn.BatchNorm1d(N, momentum=MOMENTUM_TORCH, eps=EPS).to(tdt)
    with torch.no_grad():
        bn.weight.copy_(torch.from_numpy(prob["gamma"]))
        bn.bias.copy_(torch.from_numpy(prob["beta"]))
    out = {k: [] for k in OUTPUTS}
    bn.train()
    for t in range(T):
        x = torch.tensor(prob["X"][t], dtype=tdt, requires_grad=True)
        y = bn(x)
        y.backward(torch.tensor(prob["dY"][t], dtype=tdt))
        out["Y"].append(y.detach().numpy().copy())
        out["dX"].append(x.grad.numpy().copy())
        out["dgamma"].append(bn.weight.grad.numpy().copy())
        out["dbeta"].append(bn.bias.grad.numpy().copy())
        out["running_mean"].append(bn.running_mean.numpy().copy())
        out["running_var"].append(bn.running_var.numpy().copy())
        bn.weight.grad = None
        bn.bias.grad = None
    bn.eval()
    with torch.no_grad():
        y_eval = bn(torch.tensor(prob["X_eval"], dtype=tdt)).numpy().copy()
    res = {k: np.stack(v) for k, v in out.items()}
    res["Y_eval"] = y_eval
    return res


def main():
    import torch

    prob = problem()
    arrays = {f"problem/{k}": v for k, v in prob.items()}
    for dtype in ("float32", "float64"):
        for k, v in run_torch(prob, dtype).items():
            arrays[f"{dtype}/{k}"] = v
    arrays["meta/torch_version"] = np.array(torch.__version__)
    np.savez(PATH, **arrays)
    print(f"wrote {PATH} ({len(arrays)} arrays, torch {torch.__version__})")


if __name__ == "__main__":
    main()
