"""Batch normalization with the activation fused, forward (training, inference) and backward
(cpu).

Same math, buffers and aliasing rules as ``reference/batchnorm.py``. Row-major jitted passes
over 1-D row views (they vectorize along the features), no temporaries:

    forward (training)  pass 1: sums of d = x - x_0 and d^2 into ``mean`` and ``inv_std``
                                (float64; x_0 is the feature's first row: the shifted-data
                                one-pass variance, where the reference takes two passes), then
                                per feature inv_std = 1/sqrt(var + eps) and the running update
                        pass 2: A = g((x - mean) * (inv_std * gamma) + beta)
    backward            pass 1: dz = dA * g'(A) written back into dA, and dbeta, dgamma
                                accumulated along the rows in the model's dtype (float32 sums
                                of at most a batch of rows; the reference sums in float64)
                        pass 2: dx = gamma inv_std / m (m dz - dbeta - x_hat dgamma)
    The element-wise arithmetic runs in the model's dtype with the float64 statistics rounded
    per feature (the reference computes in float64): float32 vectorizes twice as wide.

The activation code is resolved in Python, as in ``activations.py``: each code has its own
compiled loops. tanh and sigmoid run the normalization pass linear, then NumPy's SIMD ufuncs in
place through ``activation_forward`` (Numba's scalar libm is 10-40x slower there); their
derivatives, written from the output, stay fused.

Reductions never race: the parallel variants (``prange``, buffers of at least
``config.PARALLEL_MIN_SIZE`` elements and at least two column blocks) give each task its own
block of features, over all rows.
"""

import numpy as np

from ... import config  # before numba: it sets OMP_WAIT_POLICY
from numba import prange

from ._bf16 import bf16
from ._jit import jit, pjit
from .activations import _dg, _g, activation_forward
from .precision import to_bfloat16

LINEAR, RELU, LEAKY_RELU, TANH, SIGMOID = range(5)
#: Features per task of the parallel variants (each task owns its features: no race).
_COL_BLOCK = 64


@jit(inline="always")
def _statistics(mean, inv_std, rmean, rvar, X, momentum, eps, unbiased, c0, c1):
    """Batch mean and inv_std of features [c0, c1) in one float64 pass over X, and the running
    update. Sums of d = x - x_0 (x_0 the feature's value in row 0: the "shifted data"
    algorithm) give var = mean(d^2) - mean(d)^2 without the cancellation of the textbook
    one-pass formula, since x_0 is within a few standard deviations of the mean."""
    m = X.shape[0]
    k = c1 - c0
    mu = mean[c0:c1]
    iv = inv_std[c0:c1]
    x0 = X[0, c0:c1]
    for j in range(k):
        mu[j] = 0.0
        iv[j] = 0.0
    for i in range(1, m):
        x = X[i, c0:c1]
        for j in range(k):
            d = np.float64(x[j]) - np.float64(x0[j])
            mu[j] += d
            iv[j] += d * d
    keep = 1.0 - momentum
    corr = m / (m - 1.0) if unbiased and m > 1 else 1.0
    rm = rmean[c0:c1]
    rv = rvar[c0:c1]
    for j in range(k):
        s = mu[j] / m
        var = max(iv[j] / m - s * s, 0.0)
        mu[j] = np.float64(x0[j]) + s
        iv[j] = 1.0 / np.sqrt(var + eps)
        rm[j] = momentum * rm[j] + keep * mu[j]
        rv[j] = momentum * rv[j] + keep * (var * corr)


@jit(inline="always")
def _narrow_seg(A16, i, a, c0, c1):
    """A16[i, c0:c1] = bfloat16(a), the row segment just written (still in L1)."""
    a16 = A16[i, c0:c1]
    for j in range(c1 - c0):
        a16[j] = bf16(a[j])


@jit(inline="always")
def _normalize(A, A16, X, gamma, beta, mean, inv_std, act, alpha, c0, c1):
    """A = g((x - mean) * inv_std * gamma + beta) on features [c0, c1), in the dtype (the
    float64 statistics rounded per feature: float32 math vectorizes twice as wide); A16 =
    bf16(A) unless A16 is empty."""
    T = A.dtype.type
    zero = T(0)
    one = T(1)
    k = c1 - c0
    mu = mean[c0:c1]
    iv = inv_std[c0:c1]
    g = gamma[c0:c1]
    b = beta[c0:c1]
    has16 = A16.shape[0] > 0
    for i in range(X.shape[0]):
        x = X[i, c0:c1]
        a = A[i, c0:c1]
        for j in range(k):
            z = (x[j] - T(mu[j])) * T(iv[j] * g[j]) + b[j]
            a[j] = _g(z, act, alpha, zero, one)
        if has16:
            _narrow_seg(A16, i, a, c0, c1)


@jit(inline="always")
def _eval_cols(A, A16, X, gamma, beta, rmean, rvar, eps, act, alpha, c0, c1):
    zero = A.dtype.type(0)
    one = A.dtype.type(1)
    k = c1 - c0
    g = gamma[c0:c1]
    b = beta[c0:c1]
    rm = rmean[c0:c1]
    rv = rvar[c0:c1]
    has16 = A16.shape[0] > 0
    for i in range(X.shape[0]):
        x = X[i, c0:c1]
        a = A[i, c0:c1]
        for j in range(k):
            inv = 1.0 / np.sqrt(np.float64(rv[j]) + eps)
            z = A.dtype.type((np.float64(x[j]) - rm[j]) * (inv * g[j]) + b[j])
            a[j] = _g(z, act, alpha, zero, one)
        if has16:
            _narrow_seg(A16, i, a, c0, c1)


@jit(inline="always")
def _backward_cols(dX, dgamma, dbeta, dA, A, X, mean, inv_std, gamma, act, alpha, c0, c1):
    m = X.shape[0]
    k = c1 - c0
    zero = dA.dtype.type(0)
    one = dA.dtype.type(1)
    dg = dgamma[c0:c1]
    db = dbeta[c0:c1]
    mu = mean[c0:c1]
    iv = inv_std[c0:c1]
    for j in range(k):
        dg[j] = zero
        db[j] = zero
    T = dA.dtype.type
    for i in range(m):
        d = dA[i, c0:c1]
        a = A[i, c0:c1]
        x = X[i, c0:c1]
        for j in range(k):
            dz = _dg(d[j], a[j], act, alpha, zero, one)
            d[j] = dz
            db[j] += dz
            dg[j] += dz * (x[j] - T(mu[j]))
    for j in range(k):
        dg[j] *= T(iv[j])
    if dX.size == 0:
        return
    g = gamma[c0:c1]
    tm = T(m)
    for i in range(m):
        d = dA[i, c0:c1]
        x = X[i, c0:c1]
        out = dX[i, c0:c1]
        for j in range(k):
            c = T(g[j] * iv[j] / m)
            out[j] = c * (tm * d[j] - db[j] - (x[j] - T(mu[j])) * T(iv[j]) * dg[j])


def _specialize(act):
    """Kernels for one activation code (a closure constant). Each walks column blocks of width
    ``cb``, serially or one block per ``prange`` task, all passes of a block together."""

    @jit(inline="always")
    def train_block(A, A16, mean, inv_std, rmean, rvar, X, gamma, beta, momentum, eps,
                    unbiased, alpha, cb, c):
        c0, c1 = c * cb, min(X.shape[1], (c + 1) * cb)
        _statistics(mean, inv_std, rmean, rvar, X, momentum, eps, unbiased, c0, c1)
        _normalize(A, A16, X, gamma, beta, mean, inv_std, act, alpha, c0, c1)

    @jit
    def train(A, A16, mean, inv_std, rmean, rvar, X, gamma, beta, momentum, eps, unbiased,
              alpha, cb):
        for c in range((X.shape[1] + cb - 1) // cb):
            train_block(A, A16, mean, inv_std, rmean, rvar, X, gamma, beta, momentum, eps,
                        unbiased, alpha, cb, c)

    @pjit
    def train_parallel(A, A16, mean, inv_std, rmean, rvar, X, gamma, beta, momentum, eps,
                       unbiased, alpha, cb):
        for c in prange((X.shape[1] + cb - 1) // cb):
            train_block(A, A16, mean, inv_std, rmean, rvar, X, gamma, beta, momentum, eps,
                        unbiased, alpha, cb, c)

    @jit
    def evaluate(A, A16, X, gamma, beta, rmean, rvar, eps, alpha, cb):
        _eval_cols(A, A16, X, gamma, beta, rmean, rvar, eps, act, alpha, 0, X.shape[1])

    @pjit
    def evaluate_parallel(A, A16, X, gamma, beta, rmean, rvar, eps, alpha, cb):
        n = X.shape[1]
        for c in prange((n + cb - 1) // cb):
            _eval_cols(A, A16, X, gamma, beta, rmean, rvar, eps, act, alpha, c * cb,
                       min(n, (c + 1) * cb))

    @jit
    def backward(dX, dgamma, dbeta, dA, A, X, mean, inv_std, gamma, alpha, cb):
        n = X.shape[1]
        for c in range((n + cb - 1) // cb):
            _backward_cols(dX, dgamma, dbeta, dA, A, X, mean, inv_std, gamma, act, alpha,
                           c * cb, min(n, (c + 1) * cb))

    @pjit
    def backward_parallel(dX, dgamma, dbeta, dA, A, X, mean, inv_std, gamma, alpha, cb):
        n = X.shape[1]
        for c in prange((n + cb - 1) // cb):
            _backward_cols(dX, dgamma, dbeta, dA, A, X, mean, inv_std, gamma, act, alpha,
                           c * cb, min(n, (c + 1) * cb))

    return train, train_parallel, evaluate, evaluate_parallel, backward, backward_parallel


_TRAIN, _TRAIN_P, _EVAL, _EVAL_P, _BACKWARD, _BACKWARD_P = zip(*(_specialize(a)
                                                                 for a in range(5)))


def _check_code(activation):
    if not 0 <= activation <= 4:
        raise ValueError(f"unknown activation code {activation}")


def _block(X):
    """(column block width, parallel?): the whole width serially (blocks narrower than the
    rows measured slower: short inner loops), ``_COL_BLOCK`` features per ``prange`` task for
    buffers of at least ``config.PARALLEL_MIN_SIZE`` elements with two blocks or more."""
    n = X.shape[1]
    if X.size >= config.PARALLEL_MIN_SIZE and n > _COL_BLOCK:
        return _COL_BLOCK, True
    return n, False


def _normalizing_code(activation):
    """The code the jitted pass applies: tanh and sigmoid go to NumPy's ufuncs after it."""
    return LINEAR if activation in (TANH, SIGMOID) else activation


def _finish(A, A16, code, activation, alpha):
    """tanh / sigmoid after the (linear) jitted pass, through NumPy's ufuncs; then the bfloat16
    copy, which the jitted pass could not write for them (it had not seen the final values)."""
    if code != activation:
        activation_forward(A, A, activation, alpha)
        if A16.size:
            to_bfloat16(A16, A)


def batchnorm_forward_train(A, A16, mean, inv_std, running_mean, running_var, X, gamma, beta,
                            momentum, eps, unbiased, activation, alpha):
    """Training forward: one statistics pass and one normalize+activation pass (which also
    writes A16), jitted."""
    if X.size == 0:
        return
    _check_code(activation)
    code = _normalizing_code(activation)
    cb, parallel = _block(X)
    f = (_TRAIN_P if parallel else _TRAIN)[code]
    f(A, A16 if code == activation else A16[:0], mean, inv_std, running_mean, running_var, X,
      gamma, beta, float(momentum), float(eps), bool(unbiased), A.dtype.type(alpha), cb)
    _finish(A, A16, code, activation, alpha)


def batchnorm_forward_eval(A, A16, X, gamma, beta, running_mean, running_var, eps, activation,
                           alpha):
    """Inference forward: one jitted normalize+activation pass (which also writes A16)."""
    if X.size == 0:
        return
    _check_code(activation)
    code = _normalizing_code(activation)
    cb, parallel = _block(X)
    f = (_EVAL_P if parallel else _EVAL)[code]
    f(A, A16 if code == activation else A16[:0], X, gamma, beta, running_mean, running_var,
      float(eps), A.dtype.type(alpha), cb)
    _finish(A, A16, code, activation, alpha)


def batchnorm_backward(dX, dgamma, dbeta, dA, A, X, mean, inv_std, gamma, activation, alpha):
    """Backward: one pass makes dz (in ``dA``), dbeta and dgamma; one pass makes dX."""
    if X.size == 0:
        dgamma[...] = 0
        dbeta[...] = 0
        return
    _check_code(activation)
    if dX.size == 0:        # any size-0 buffer means "skip dX"; the jitted passes type it 2-D
        dX = dX.reshape(0, X.shape[1])
    cb, parallel = _block(X)
    f = (_BACKWARD_P if parallel else _BACKWARD)[activation]
    f(dX, dgamma, dbeta, dA, A, X, mean, inv_std, gamma, dA.dtype.type(alpha), cb)
