"""Shared helpers of the benchmark suite: sizes, thread control, timing, data, PyTorch peers.

Rules every benchmark here follows (DESIGN.md, "Performance principles"):

* correctness first: fastdl is checked against the NumPy reference backend (and the PyTorch peer
  against fastdl) on the same weights and batch *before* anything is timed;
* compilation is excluded: every timed function runs a warm-up epoch first;
* every peer reshuffles every epoch, holds its data in memory already, and runs on the same
  number of threads (``THREADS``: ``fd.set_num_threads`` for Numba and BLAS,
  ``torch.set_num_threads`` for PyTorch);
* peers are measured in the same run, and figures are reported as ratios.

``FASTDL_BENCH_SMALL=1`` (set by ``conftest.py`` under ``--benchmark-disable``, which is what CI
runs) shrinks every size so the whole suite runs once in seconds.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np

import fastdl as fd

#: Small mode: tiny sizes, one round, nothing asserted about speed.
SMALL = os.environ.get("FASTDL_BENCH_SMALL", "") not in ("", "0")

#: Threads for every peer (the dev machine has 2 cores).
THREADS = max(1, min(2, os.cpu_count() or 1))


# ------------------------------------------------------------------------------ threads ----
def set_threads(n: int = THREADS) -> None:
    """The same thread count for fastdl (Numba + BLAS through threadpoolctl) and PyTorch."""
    fd.set_num_threads(n)
    torch = try_torch()
    if torch is not None:
        torch.set_num_threads(n)


def try_torch():
    """The torch module, or None when it is not installed (peers then skip)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def require_torch():
    import pytest
    return pytest.importorskip("torch", reason="PyTorch (the peer) is not installed")


# ------------------------------------------------------------------------------- timing ----
class Timer:
    """Wraps a function; every call's wall time (perf_counter) is recorded in ``times``."""

    def __init__(self, fn):
        self.fn = fn
        self.times: list[float] = []

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        out = self.fn(*args, **kwargs)
        self.times.append(time.perf_counter() - t0)
        return out

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def best(self) -> float:
        return min(self.times)


def time_rounds(fn, rounds: int, warmup: int = 1) -> Timer:
    """Call ``fn`` ``warmup`` times untimed, then ``rounds`` times timed."""
    for _ in range(warmup):
        fn()
    t = Timer(fn)
    for _ in range(rounds):
        t()
    return t


def bench_pedantic(benchmark, fn, rounds: int) -> Timer:
    """Time ``fn`` through pytest-benchmark (pedantic, one call per round) and our own timer,
    so the figure exists with ``--benchmark-disable`` too (then ``fn`` runs once)."""
    t = Timer(fn)
    benchmark.pedantic(t, rounds=rounds, iterations=1, warmup_rounds=0)
    return t


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best-of GFLOP/s of an n^3 float32 ``np.matmul`` (NumPy's BLAS, current thread count):
    the machine's practical compute ceiling for the fastdl figures."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    c = np.empty((n, n), np.float32)
    np.matmul(a, b, out=c)
    best = min(_once(lambda: np.matmul(a, b, out=c)) for _ in range(repeats))
    return 2.0 * n ** 3 / best / 1e9


def _once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------------- data ----
def xor_data(m: int, seed: int = 0):
    """Two features, a binary XOR-like label: the 2-5-2-1 benchmark's data (float32, y (m,))."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, 2)).astype(np.float32)
    y = ((X[:, 0] * X[:, 1]) > 0).astype(np.float32)
    return X, y


def mnist_like(m: int, n_features: int = 784, n_classes: int = 10, seed: int = 0):
    """Synthetic MNIST-shaped data: float32 features in [0, 1), integer labels that depend on
    the features (so the loss moves), both already in memory."""
    rng = np.random.default_rng(seed)
    X = rng.random((m, n_features), dtype=np.float32)
    proj = rng.standard_normal((n_features, n_classes)).astype(np.float32)
    y = np.argmax(X @ proj, axis=1).astype(np.int64)
    return X, y


# ---------------------------------------------------------------------------- networks ----
def dense_model(sizes, activations, input_dim, backend, seed=0, dtype="float32"):
    return fd.Sequential([fd.Dense(u, activation=a) for u, a in zip(sizes, activations)],
                         input_dim=input_dim, dtype=dtype, seed=seed, backend=backend)


def flops_per_sample(model) -> float:
    """6 * weights: forward 2P, backward 4P multiply-adds per sample (the usual estimate; the
    first layer's skipped dX makes the true count 2 * n0 * n1 lower)."""
    return 6.0 * sum(op.units * op.input_dim for op in model._ops)


# ---------------------------------------------------------------------------- PyTorch ----
def torch_mlp(fd_model):
    """A ``torch.nn.Sequential`` with the same layers and the same initial weights as a dense
    fastdl model (W is (units, inputs) in both); the output layer emits logits (its sigmoid /
    softmax lives in the loss, as in fastdl)."""
    torch = require_torch()
    nn = torch.nn
    weights = fd_model.get_weights()
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
    mods, k = [], 0
    ops = fd_model._ops
    for i, op in enumerate(ops):
        lin = nn.Linear(op.input_dim, op.units, bias=op.use_bias)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(weights[k])))
            k += 1
            if op.use_bias:
                lin.bias.copy_(torch.from_numpy(np.ascontiguousarray(weights[k])))
                k += 1
        mods.append(lin)
        if i < len(ops) - 1 and op.activation != "linear":
            mods.append(acts[op.activation]())
    return nn.Sequential(*mods)


def torch_loss(fd_model):
    torch = require_torch()
    name = fd_model.loss.name
    if name == "binary_crossentropy":
        return torch.nn.BCEWithLogitsLoss()
    if name == "categorical_crossentropy":
        return torch.nn.CrossEntropyLoss()
    return torch.nn.MSELoss()


def torch_targets(fd_model, y):
    """Targets as PyTorch's loss wants them: float (m, 1) for BCE, int64 (m,) for CE."""
    torch = require_torch()
    if fd_model.loss.name == "categorical_crossentropy":
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32).reshape(len(y), -1))


class TorchTrainer:
    """The idiomatic PyTorch loop: ``randperm`` each epoch, index the batch, forward, loss,
    ``zero_grad``, backward, ``SGD.step``. Data are tensors in memory (``from_numpy``)."""

    def __init__(self, fd_model, X, y, lr, batch_size, seed=0):
        torch = require_torch()
        self.torch = torch
        self.net = torch_mlp(fd_model)
        self.loss_fn = torch_loss(fd_model)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=lr)
        self.X = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        self.y = torch_targets(fd_model, y)
        self.bs = int(batch_size)
        self.gen = torch.Generator().manual_seed(seed)

    def batch_step(self, xb, yb):
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.net(xb), yb)
        loss.backward()
        self.opt.step()
        return loss

    def epoch(self):
        torch, bs = self.torch, self.bs
        m = self.X.shape[0]
        perm = torch.randperm(m, generator=self.gen)
        for s in range(0, m, bs):
            idx = perm[s:s + bs]
            self.batch_step(self.X[idx], self.y[idx])

    def weights(self):
        return [p.detach().numpy().copy() for p in self.net.parameters()]


# ------------------------------------------------------------------------ correctness ----
def check_against_reference(make_model, X, y, lr, batch_size, rtol=1e-4, atol=1e-5,
                            with_torch=True):
    """Before timing: the cpu backend, the numpy backend and (when installed) PyTorch agree.

    * one ``train_on_batch`` on the same batch from the same weights: same cost, same updated
      weights (cpu vs numpy, and torch vs numpy);
    * one epoch of ``fit`` (same seed, so the same shuffles) on cpu and numpy: same epoch cost
      and same final weights — this runs the whole-epoch kernel for small nets.

    Returns a dict of the largest discrepancies found (stored in ``extra_info``)."""
    cpu, ref = make_model("cpu"), make_model("numpy")
    xb, yb = X[:batch_size], y[:batch_size]
    c_cpu = cpu.train_on_batch(xb, yb, fd.optim.SGD(lr=lr))
    c_ref = ref.train_on_batch(xb, yb, fd.optim.SGD(lr=lr))
    np.testing.assert_allclose(c_cpu, c_ref, rtol=rtol, err_msg="train_on_batch cost cpu/numpy")
    _assert_weights(cpu.get_weights(), ref.get_weights(), rtol, atol, "train_on_batch cpu/numpy")
    out = {"step_cost_rel_err": abs(c_cpu - c_ref) / max(abs(c_ref), 1e-30)}
    if with_torch and try_torch() is not None:
        torch = try_torch()
        fresh = make_model("numpy")
        tr = TorchTrainer(fresh, xb, yb, lr, batch_size)
        c_t = float(tr.batch_step(tr.X, tr.y).detach())
        np.testing.assert_allclose(c_t, c_ref, rtol=rtol, err_msg="cost torch/numpy")
        _assert_weights(tr.weights(), ref.get_weights(), rtol, atol, "step torch/numpy")
        out["torch_step_cost_rel_err"] = abs(c_t - c_ref) / max(abs(c_ref), 1e-30)
        del torch
    cpu, ref = make_model("cpu"), make_model("numpy")
    h_cpu = cpu.fit(X, y, optimizer=fd.optim.SGD(lr=lr), epochs=1, batch_size=batch_size,
                    verbose=0)
    h_ref = ref.fit(X, y, optimizer=fd.optim.SGD(lr=lr), epochs=1, batch_size=batch_size,
                    verbose=0)
    e_cpu, e_ref = h_cpu.history["loss"][0], h_ref.history["loss"][0]
    np.testing.assert_allclose(e_cpu, e_ref, rtol=10 * rtol, err_msg="epoch cost cpu/numpy")
    _assert_weights(cpu.get_weights(), ref.get_weights(), 10 * rtol, 10 * atol,
                    "one epoch cpu/numpy")
    out["epoch_cost_rel_err"] = abs(e_cpu - e_ref) / max(abs(e_ref), 1e-30)
    out["epoch_cost"] = e_ref
    return out


def _assert_weights(got, want, rtol, atol, what):
    assert len(got) == len(want), what
    for i, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose(np.asarray(g).reshape(np.shape(w)), w, rtol=rtol, atol=atol,
                                   err_msg=f"{what}: tensor {i}")


# ----------------------------------------------------------------------------- report ----
def print_table(title, rows, columns):
    """rows: list of dicts; columns: list of (key, header, format)."""
    heads = [h for _, h, _ in columns]
    cells = [[("-" if r.get(k) is None else f.format(r[k])) for k, _, f in columns] for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    line = "  ".join(h.rjust(w) for h, w in zip(heads, widths))
    print(f"\n{title}\n{line}\n{'-' * len(line)}")
    for c in cells:
        print("  ".join(v.rjust(w) for v, w in zip(c, widths)))
