"""Losses fused with their output activation and their gradient (cpu).

Same math, scaling and aliasing rules as ``reference/losses.py`` (``dZ`` may be the input),
in one jitted pass per row instead of several full-size float64 temporaries: each row is read,
reduced (max, log-sum-exp in float64) and its gradient written before the next row. The cost is
accumulated in float64 and written to ``loss[0]``. Buffers of at least
``config.PARALLEL_MIN_SIZE`` elements use a ``prange`` over rows (Numba's per-thread reduction).

The row helpers take the target row index ``yi`` separately so ``epoch.py`` can read targets
through the shuffle order without gathering them.
"""

import numpy as np

from ... import config  # before numba: it sets OMP_WAIT_POLICY
from numba import prange

from ._jit import jit, pjit


@jit
def _softmax_ce_row(dZ, Z, Y, i, yi, m):
    """Row i: returns -sum_c y log softmax(z); writes dZ = (p * sum_c y - y) / m."""
    n = Z.shape[1]
    mx = Z[i, 0]
    for j in range(1, n):
        if Z[i, j] > mx:
            mx = Z[i, j]
    mx64 = np.float64(mx)
    s = 0.0
    ysum = 0.0
    for j in range(n):
        s += np.exp(np.float64(Z[i, j]) - mx64)
        ysum += np.float64(Y[yi, j])
    lse = np.log(s)
    row = 0.0
    for j in range(n):
        logp = (np.float64(Z[i, j]) - mx64) - lse
        y = np.float64(Y[yi, j])
        row -= y * logp
        dZ[i, j] = (np.exp(logp) * ysum - y) / m
    return row


@jit
def _sigmoid_bce_row(dZ, Z, Y, i, yi, m):
    """Row i: returns sum_j max(z,0) - z y + log1p(exp(-|z|)); writes dZ = (sigmoid(z) - y)/m."""
    row = 0.0
    for j in range(Z.shape[1]):
        z = np.float64(Z[i, j])
        y = np.float64(Y[yi, j])
        e = np.exp(-abs(z))
        row += max(z, 0.0) - z * y + np.log1p(e)
        sig = 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)
        dZ[i, j] = (sig - y) / m
    return row


@jit
def _mse_row(dA, A, Y, i, yi, n):
    """Row i: returns sum_j (a - y)^2; writes dA = 2 (a - y) / n (n = all elements)."""
    row = 0.0
    for j in range(A.shape[1]):
        d = np.float64(A[i, j]) - np.float64(Y[yi, j])
        row += d * d
        dA[i, j] = 2.0 * d / n
    return row


@jit
def _loss_rows(kind, dZ, Z, Y, i, yi, m, n):
    """Dispatch on the loss code (fastdl.kernels.LOSSES: 0 BCE, 1 CCE, 2 MSE) for the fused
    epoch; returns the row's un-normalized cost."""
    if kind == 0:
        return _sigmoid_bce_row(dZ, Z, Y, i, yi, m)
    if kind == 1:
        return _softmax_ce_row(dZ, Z, Y, i, yi, m)
    return _mse_row(dZ, Z, Y, i, yi, n)


# One serial and one parallel driver per loss (only the losses used get compiled). The cost
# is normalized by m (cross-entropies) or by m * k (MSE), as in the reference.

@jit
def _sce_serial(loss, dZ, Z, Y):
    m = Z.shape[0]
    total = 0.0
    for i in range(m):
        total += _softmax_ce_row(dZ, Z, Y, i, i, m)
    loss[0] = total / m


@pjit
def _sce_parallel(loss, dZ, Z, Y):
    m = Z.shape[0]
    total = 0.0
    for i in prange(m):
        total += _softmax_ce_row(dZ, Z, Y, i, i, m)
    loss[0] = total / m


@jit
def _bce_serial(loss, dZ, Z, Y):
    m = Z.shape[0]
    total = 0.0
    for i in range(m):
        total += _sigmoid_bce_row(dZ, Z, Y, i, i, m)
    loss[0] = total / m


@pjit
def _bce_parallel(loss, dZ, Z, Y):
    m = Z.shape[0]
    total = 0.0
    for i in prange(m):
        total += _sigmoid_bce_row(dZ, Z, Y, i, i, m)
    loss[0] = total / m


@jit
def _mse_serial(loss, dA, A, Y):
    n = A.shape[0] * A.shape[1]
    total = 0.0
    for i in range(A.shape[0]):
        total += _mse_row(dA, A, Y, i, i, n)
    loss[0] = total / n


@pjit
def _mse_parallel(loss, dA, A, Y):
    n = A.shape[0] * A.shape[1]
    total = 0.0
    for i in prange(A.shape[0]):
        total += _mse_row(dA, A, Y, i, i, n)
    loss[0] = total / n


def _run(serial, parallel, loss, dZ, Z, Y):
    if Z.shape[0] == 0:  # the reference's 0/0
        loss[0] = np.nan
        return
    (parallel if Z.size >= config.PARALLEL_MIN_SIZE else serial)(loss, dZ, Z, Y)


def softmax_cross_entropy(loss, dZ, Z, Y):
    """Fused row pass (max, float64 log-sum-exp, cost and dZ) with no temporaries."""
    _run(_sce_serial, _sce_parallel, loss, dZ, Z, Y)


def sigmoid_binary_cross_entropy(loss, dZ, Z, Y):
    """Fused element pass in float64 (cost and dZ) with no temporaries."""
    _run(_bce_serial, _bce_parallel, loss, dZ, Z, Y)


def mean_squared_error(loss, dA, A, Y):
    """Fused element pass in float64 (cost and dA) with no temporaries."""
    _run(_mse_serial, _mse_parallel, loss, dA, A, Y)
