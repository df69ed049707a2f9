"""Batch normalization, forward (training, inference) and backward (cpu).

Same math, buffers and aliasing rules as ``reference/batchnorm.py``. Row-major jitted passes
with no temporaries:

    forward (training)  pass 1: column sums into ``mean`` (float64, vectorized along rows)
                        pass 2: squared deviations into ``inv_std`` (two-pass variance), then
                                per feature inv_std = 1/sqrt(var + eps) and the running update
                        pass 3: y = (x - mean) * (inv_std * gamma) + beta
    backward            pass 1: dbeta, dgamma (float64 within L1-sized row blocks, added to the
                                outputs once per block, as in ``dense.py``)
                        pass 2: dx = gamma inv_std / m (m dy - dbeta - x_hat dgamma)

Reductions never race: the parallel variants (``prange``, buffers of at least
``config.PARALLEL_MIN_SIZE`` elements and at least two column blocks) give each task its own
block of features, over all rows.
"""

import numpy as np

from ... import config  # before numba: it sets OMP_WAIT_POLICY
from numba import prange

from ._jit import jit, pjit

#: Features per task of the parallel variants (each task owns its statistics: no race).
_COL_BLOCK = 64
#: Elements per row block of the backward reduction (fits L1 while its column sums are taken).
_BLOCK_ELEMS = 4096


@jit(inline="always")
def _train_cols(Y, mean, inv_std, rmean, rvar, X, gamma, beta, momentum, eps, unbiased, c0, c1):
    m = X.shape[0]
    for j in range(c0, c1):
        mean[j] = 0.0
        inv_std[j] = 0.0
    for i in range(m):
        for j in range(c0, c1):
            mean[j] += X[i, j]
    for j in range(c0, c1):
        mean[j] /= m
    for i in range(m):
        for j in range(c0, c1):
            d = X[i, j] - mean[j]
            inv_std[j] += d * d
    keep = 1.0 - momentum
    corr = m / (m - 1.0) if unbiased and m > 1 else 1.0
    for j in range(c0, c1):
        var = inv_std[j] / m
        inv_std[j] = 1.0 / np.sqrt(var + eps)
        rmean[j] = momentum * rmean[j] + keep * mean[j]
        rvar[j] = momentum * rvar[j] + keep * (var * corr)
    for i in range(m):
        for j in range(c0, c1):
            Y[i, j] = (X[i, j] - mean[j]) * (inv_std[j] * gamma[j]) + beta[j]


@jit(inline="always")
def _eval_cols(Y, X, gamma, beta, rmean, rvar, eps, c0, c1):
    for i in range(X.shape[0]):
        for j in range(c0, c1):
            inv = 1.0 / np.sqrt(np.float64(rvar[j]) + eps)
            Y[i, j] = (np.float64(X[i, j]) - rmean[j]) * (inv * gamma[j]) + beta[j]


@jit(inline="always")
def _backward_cols(dX, dgamma, dbeta, dY, X, mean, inv_std, gamma, c0, c1):
    m = X.shape[0]
    zero = dgamma.dtype.type(0)
    for j in range(c0, c1):
        dgamma[j] = zero
        dbeta[j] = zero
    rb = max(16, _BLOCK_ELEMS // max(1, c1 - c0))
    for r0 in range(0, m, rb):
        r1 = min(m, r0 + rb)
        for j in range(c0, c1):
            sb = 0.0
            sg = 0.0
            mu = mean[j]
            for i in range(r0, r1):
                d = np.float64(dY[i, j])
                sb += d
                sg += d * (X[i, j] - mu)
            dbeta[j] += sb
            dgamma[j] += sg * inv_std[j]
    if dX.size == 0:
        return
    for i in range(m):
        for j in range(c0, c1):
            k = gamma[j] * inv_std[j] / m
            xh = (X[i, j] - mean[j]) * inv_std[j]
            dX[i, j] = k * (m * np.float64(dY[i, j]) - dbeta[j] - xh * dgamma[j])


@jit
def _train_serial(Y, mean, inv_std, rmean, rvar, X, gamma, beta, momentum, eps, unbiased):
    _train_cols(Y, mean, inv_std, rmean, rvar, X, gamma, beta, momentum, eps, unbiased,
                0, X.shape[1])


@pjit
def _train_parallel(Y, mean, inv_std, rmean, rvar, X, gamma, beta, momentum, eps, unbiased):
    n = X.shape[1]
    for c in prange((n + _COL_BLOCK - 1) // _COL_BLOCK):
        _train_cols(Y, mean, inv_std, rmean, rvar, X, gamma, beta, momentum, eps, unbiased,
                    c * _COL_BLOCK, min(n, (c + 1) * _COL_BLOCK))


@jit
def _eval_serial(Y, X, gamma, beta, rmean, rvar, eps):
    _eval_cols(Y, X, gamma, beta, rmean, rvar, eps, 0, X.shape[1])


@pjit
def _eval_parallel(Y, X, gamma, beta, rmean, rvar, eps):
    n = X.shape[1]
    for c in prange((n + _COL_BLOCK - 1) // _COL_BLOCK):
        _eval_cols(Y, X, gamma, beta, rmean, rvar, eps, c * _COL_BLOCK,
                   min(n, (c + 1) * _COL_BLOCK))


@jit
def _backward_serial(dX, dgamma, dbeta, dY, X, mean, inv_std, gamma):
    _backward_cols(dX, dgamma, dbeta, dY, X, mean, inv_std, gamma, 0, X.shape[1])


@pjit
def _backward_parallel(dX, dgamma, dbeta, dY, X, mean, inv_std, gamma):
    n = X.shape[1]
    for c in prange((n + _COL_BLOCK - 1) // _COL_BLOCK):
        _backward_cols(dX, dgamma, dbeta, dY, X, mean, inv_std, gamma, c * _COL_BLOCK,
                       min(n, (c + 1) * _COL_BLOCK))


def _parallel(X):
    return X.size >= config.PARALLEL_MIN_SIZE and X.shape[1] >= 2 * _COL_BLOCK


def batchnorm_forward_train(Y, mean, inv_std, running_mean, running_var, X, gamma, beta,
                            momentum, eps, unbiased):
    """Training forward in three row-major jitted passes (float64 statistics)."""
    if X.size == 0:
        return
    f = _train_parallel if _parallel(X) else _train_serial
    f(Y, mean, inv_std, running_mean, running_var, X, gamma, beta, float(momentum), float(eps),
      bool(unbiased))


def batchnorm_forward_eval(Y, X, gamma, beta, running_mean, running_var, eps):
    """Inference forward in one jitted pass."""
    if X.size == 0:
        return
    f = _eval_parallel if _parallel(X) else _eval_serial
    f(Y, X, gamma, beta, running_mean, running_var, float(eps))


def batchnorm_backward(dX, dgamma, dbeta, dY, X, mean, inv_std, gamma):
    """Backward: one blocked reduction pass (dbeta, dgamma), one pass for dX."""
    if X.size == 0:
        dgamma[...] = 0
        dbeta[...] = 0
        return
    f = _backward_parallel if _parallel(X) else _backward_serial
    f(dX, dgamma, dbeta, dY, X, mean, inv_std, gamma)
