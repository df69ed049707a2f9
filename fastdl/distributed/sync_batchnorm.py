"""Synchronized batch normalization: statistics over the GLOBAL batch (all ranks' rows).

``fd.BatchNorm(sync=True)`` in a distributed ``fit`` normalizes with the mean and variance of
the whole global mini-batch instead of the rank's shard, as PyTorch's ``SyncBatchNorm``; with
one process (or ``sync=False``, the default, PyTorch DDP's behaviour) the layer is unchanged.
Rank ``r`` holds ``m_r`` rows of a global batch of ``M = sum_r m_r``.

Forward (two small allreduces, float64; the two-pass variance of the reference kernel):

    [M, s] = allreduce([m_r, sum_i x_i])          mean = s / M
    q = allreduce(sum_i (x_i - mean)^2)           var = q / M,   inv_std = 1/sqrt(var + eps)
    A = g(gamma (x - mean) inv_std + beta)        running stats: as the kernel, with M

Backward (one allreduce of 2n numbers). The rank's loss is its mean over ``m_r`` rows and
the training loop weights its gradient by ``m_r / M`` (``trainer.py``); the global batch's
per-feature sums, in the global loss's units, are

    DB = allreduce((m_r/M) sum_i dz_i)          DG = allreduce((m_r/M) sum_i dz_i x_hat_i)

and the gradient of the global loss, taken back to this rank's units (times M / m_r), is

    dx_i = gamma inv_std / m_r * (m_r dz_i - DB - x_hat_i DG)

(with one rank, M = m_r, DB = dbeta, DG = dgamma: the reference kernel's formula). ``dgamma``
and ``dbeta`` stay the rank's own sums: the gradient allreduce weights and adds them.
Source: Ioffe & Szegedy 2015 (backward), PyTorch ``torch/nn/modules/_functions.py``
(SyncBatchNorm: allreduce of the per-feature sums in forward and backward).

Supported on the host backends (``numpy`` and ``cpu``: this path computes in NumPy and calls
the backend's activation kernels); the ``cuda`` backend raises ``NotImplementedError``.
"""

from __future__ import annotations

import numpy as np


def _check(layer):
    if layer._bk.on_device:
        raise NotImplementedError(
            f"BatchNorm(sync=True) (layer {layer._index}) is implemented for the numpy and cpu "
            "backends only; on cuda use the default per-rank statistics (sync=False)")


def forward_train(layer, X, ws, dist, momentum):
    """The training forward of a synchronized BatchNorm layer (module docstring)."""
    _check(layer)
    comm = dist.comm
    m = X.shape[0]
    X64 = X.astype(np.float64)
    n = X.shape[1]
    buf = np.empty(n + 1)
    buf[0] = m
    X64.sum(axis=0, out=buf[1:])
    comm.allreduce_(buf, f"sync BatchNorm mean (layer {layer._index})")
    M = buf[0]
    if M < 2:
        raise ValueError(f"BatchNorm(sync=True) (layer {layer._index}) needs a global batch "
                         f"of at least 2 examples; got {int(M)}")
    mu = buf[1:] / M
    Xc = X64 - mu
    q = (Xc * Xc).sum(axis=0)
    comm.allreduce_(q, f"sync BatchNorm variance (layer {layer._index})")
    var = q / M
    inv_std = 1.0 / np.sqrt(var + layer.eps)
    ws.mean[...] = mu
    ws.inv_std[...] = inv_std
    ws.A[...] = Xc * inv_std * layer.gamma + layer.beta
    layer._bk.k.activation_forward(ws.A, ws.A, layer.runtime_activation, layer.runtime_alpha)
    if ws.A16.size:         # mixed precision: the next Dense's bfloat16 operand
        layer._bk.k.to_bfloat16(ws.A16, ws.A)
    if layer._unbiased:
        var = var * (M / (M - 1.0))
    rm, rv = layer.running_mean, layer.running_var
    rm[...] = momentum * rm + (1.0 - momentum) * mu
    rv[...] = momentum * rv + (1.0 - momentum) * var
    ws.X, ws.M = X, M
    return ws.A


def backward(layer, dA, ws, need_dX, dist):
    """dgamma, dbeta (this rank's sums) and dX with the global batch's sums."""
    k = layer._bk.k
    k.activation_backward(dA, dA, ws.A, layer.runtime_activation, layer.runtime_alpha)
    m = ws.X.shape[0]
    dz = dA.astype(np.float64)
    x_hat = (ws.X.astype(np.float64) - ws.mean) * ws.inv_std
    n = dz.shape[1]
    sums = np.empty(2 * n)
    dz.sum(axis=0, out=sums[:n])
    (dz * x_hat).sum(axis=0, out=sums[n:])
    layer.dbeta[...] = sums[:n]
    layer.dgamma[...] = sums[n:]
    if not need_dX:
        return None
    sums *= m / ws.M
    dist.comm.allreduce_(sums, f"sync BatchNorm backward (layer {layer._index})")
    ws.dX[...] = (layer.gamma * ws.inv_std / m) * (m * dz - sums[:n] - x_hat * sums[n:])
    return ws.dX
