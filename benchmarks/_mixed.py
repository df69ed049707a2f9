"""Shared pieces of the mixed-precision benchmarks (``mixed_precision_check.py``, the script,
and ``test_bench_mixed_precision.py``, the pytest-benchmark suite).

Four trainers of the same net on the same data and initial weights, Adam (lr 1e-3), float32
parameters, 2 threads each, data in memory, reshuffled every epoch:

    fastdl_f32      fastdl, compute in float32
    fastdl_bf16     fastdl, compute_dtype="bfloat16" (oneDNN's bfloat16 GEMMs where the CPU has
                    them; elsewhere the exact emulation, allow_slow=True, and labelled so)
    torch_f32       PyTorch, float32, Adam(fused=True)
    torch_bf16      PyTorch, torch.autocast("cpu", torch.bfloat16) + Adam(fused=True): what a
                    PyTorch user runs on a bfloat16 CPU

PyTorch runs in a worker process of its own (``_peers.TorchPeer``).
"""

from __future__ import annotations

import numpy as np

import _peers as P

#: net name -> (hidden and output widths, activations); input 784.
NETS = {"784-256-128-10": ([256, 128, 10], ["relu", "relu", "softmax"]),
        "784-2048-2048-10": ([2048, 2048, 10], ["relu", "relu", "softmax"])}
ROWS = ("fastdl_f32", "fastdl_bf16", "torch_f32", "torch_bf16")
LR = 1e-3


def data(m, seed=0):
    return P.mnist_like(m, seed=seed)


def fastdl_model(net, compute_dtype=None, seed=0):
    fd = P._fd()
    widths, acts = NETS[net]
    slow = compute_dtype is not None and not fd.bf16_supported()
    return fd.Sequential([fd.Dense(u, activation=a) for u, a in zip(widths, acts)],
                         input_dim=784, seed=seed, compute_dtype=compute_dtype,
                         allow_slow=slow)


class FastdlRunner:
    """``epoch()`` trains one epoch and returns its wall time (a warm-up epoch ran first)."""

    def __init__(self, net, X, y, batch_size, compute_dtype=None):
        fd = P._fd()
        self.model = fastdl_model(net, compute_dtype)
        self.opt = fd.optim.Adam(lr=LR)
        self.X, self.y, self.bs = X, y, batch_size
        self.label = ("fastdl float32" if compute_dtype is None else
                      f"fastdl bfloat16 ({self.model.precision.gemm})")
        self.epoch()

    def epoch(self):
        import time
        t = time.perf_counter()
        self.model.fit(self.X, self.y, optimizer=self.opt, epochs=1, batch_size=self.bs,
                       verbose=0)
        return time.perf_counter() - t

    def close(self):
        pass


class TorchRunner:
    def __init__(self, net, X, y, batch_size, autocast=False):
        spec = P.model_spec(fastdl_model(net))        # the same initial weights
        self.peer = P.TorchPeer(spec, X, y, LR, batch_size, optimizer="adam_fused",
                                autocast=autocast)
        self.label = "torch " + ("autocast bfloat16" if autocast else "float32") + " fused Adam"
        self.peer.epochs(1)

    def epoch(self):
        return self.peer.epochs(1)

    def close(self):
        self.peer.close()


def runner(row, net, X, y, batch_size):
    if row.startswith("torch"):
        P.require_torch()
        return TorchRunner(net, X, y, batch_size, autocast=row == "torch_bf16")
    return FastdlRunner(net, X, y, batch_size, "bfloat16" if row == "fastdl_bf16" else None)


def step_flops(net, exact=True):
    """Flops of one training sample: forward 2P, backward dW 2P and dX 2P, without the first
    layer's dX (never computed) when ``exact``."""
    widths, _ = NETS[net]
    dims = [784] + widths
    P_ = sum(dims[i] * dims[i + 1] for i in range(len(widths)))
    return 6.0 * P_ - (2.0 * dims[0] * dims[1] if exact else 0.0)


def ceiling_of_step(net, batch, ceilings, key):
    """The GEMM rate a whole training step could reach at the net's shapes (the harmonic mean
    of the per-shape ceilings, weighted by each shape's flops: the time the three products of
    every layer take at their measured rate), GFLOP/s; None when ``key`` was not measured."""
    widths, _ = NETS[net]
    rows = {tuple(r["shape"]): r for r in ceilings["rows"]}
    total = seconds = 0.0
    for shape in P.net_gemm_shapes(widths, 784, batch):
        rate = rows[shape][key]
        if rate is None:
            return None
        flop = 2.0 * shape[0] * shape[1] * shape[2]
        n_products = 2 if shape == P.net_gemm_shapes(widths, 784, batch)[0] else 3
        total += n_products * flop
        seconds += n_products * flop / (rate * 1e9)
    return total / seconds / 1e9
