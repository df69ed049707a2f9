"""Batch normalization over the rows of a batch with the following activation fused, forward
(training, inference) and backward (cuda).

Same legend and formulas as ``reference/batchnorm.py`` (A = g(gamma x_hat + beta); backward
turns dA into dz = dA g'(A) in place first). Differs in precision and grouping:

* Arithmetic runs in the model dtype (the reference accumulates in float64). The cached
  ``mean`` / ``inv_std`` buffers are float64 as the spec says; the kernels only load and store
  them (one conversion per feature), so float32 models do no float64 arithmetic. The variance
  is two-pass (sum of squared deviations from the mean), which keeps float32 accurate.
* Training forward and backward are each ONE kernel over column strips: a block owns TX
  features, its TY thread rows stride down the batch, and a shared-memory tree sums each
  feature's column (no atomics, no race); the same block then writes A / dX for its features.
  The activation (and its derivative) is applied inside those passes, not as a separate kernel.
  The inference forward is element-wise.
"""

import math

from numba import cuda

from ._device import SHARED_SIZE, blocks, column_block, column_sum, per_dtype, tpb
from .activations import _act_fns
from .precision import to_bfloat16


@per_dtype
def _batchnorm_forward_train_kernel(T):
    act, _ = _act_fns.for_type(T)

    @cuda.jit
    def kernel(A, mean, inv_std, running_mean, running_var, X, gamma, beta, momentum,
               one_m_momentum, eps, var_factor, activation, alpha):
        sh = cuda.shared.array(SHARED_SIZE, T)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        TX = cuda.blockDim.x
        TY = cuda.blockDim.y
        m = X.shape[0]
        n = X.shape[1]
        inv_m = T(1) / T(m)
        for c0 in range(cuda.blockIdx.x * TX, n, cuda.gridDim.x * TX):
            c = c0 + tx
            s = T(0)
            if c < n:
                for r in range(ty, m, TY):
                    s += X[r, c]
            mu = column_sum(sh, s) * inv_m
            s = T(0)
            if c < n:
                for r in range(ty, m, TY):
                    d = X[r, c] - mu
                    s += d * d
            var = column_sum(sh, s) * inv_m
            istd = T(1) / math.sqrt(var + eps)
            if c < n:
                if ty == 0:
                    mean[c] = mu
                    inv_std[c] = istd
                    running_mean[c] = momentum * running_mean[c] + one_m_momentum * mu
                    running_var[c] = momentum * running_var[c] + one_m_momentum * (var
                                                                                   * var_factor)
                g = gamma[c]
                b = beta[c]
                for r in range(ty, m, TY):
                    A[r, c] = act((X[r, c] - mu) * istd * g + b, activation, alpha)
    return kernel


@per_dtype
def _batchnorm_forward_eval_kernel(T):
    act, _ = _act_fns.for_type(T)

    @cuda.jit
    def kernel(A, X, gamma, beta, running_mean, running_var, eps, activation, alpha):
        n = X.shape[1]
        for i in range(cuda.grid(1), X.shape[0] * n, cuda.gridsize(1)):
            r = i // n
            c = i - r * n
            inv = T(1) / math.sqrt(running_var[c] + eps)
            A[r, c] = act((X[r, c] - running_mean[c]) * inv * gamma[c] + beta[c], activation,
                          alpha)
    return kernel


@per_dtype
def _batchnorm_backward_kernel(T):
    _, act_grad = _act_fns.for_type(T)

    @cuda.jit
    def kernel(dX, dgamma, dbeta, dA, A, X, mean, inv_std, gamma, activation, alpha):
        sh = cuda.shared.array(SHARED_SIZE, T)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        TX = cuda.blockDim.x
        TY = cuda.blockDim.y
        m = X.shape[0]
        n = X.shape[1]
        want_dx = dX.shape[0] > 0
        for c0 in range(cuda.blockIdx.x * TX, n, cuda.gridDim.x * TX):
            c = c0 + tx
            mu = T(0)
            istd = T(0)
            sb = T(0)
            sg = T(0)
            if c < n:
                mu = T(mean[c])
                istd = T(inv_std[c])
                for r in range(ty, m, TY):
                    dz = act_grad(dA[r, c], A[r, c], activation, alpha)
                    dA[r, c] = dz
                    sb += dz
                    sg += dz * ((X[r, c] - mu) * istd)
            db = column_sum(sh, sb)
            dg = column_sum(sh, sg)
            if c < n:
                if ty == 0:
                    dbeta[c] = db
                    dgamma[c] = dg
                if want_dx:
                    k = gamma[c] * istd / T(m)
                    mt = T(m)
                    for r in range(ty, m, TY):
                        x_hat = (X[r, c] - mu) * istd
                        dX[r, c] = k * (mt * dA[r, c] - db - x_hat * dg)
    return kernel


def _column_grid(n):
    tx, ty = column_block()
    return min((n + tx - 1) // tx, 65535), (tx, ty)


def batchnorm_forward_train(A, A16, mean, inv_std, running_mean, running_var, X, gamma, beta,
                            momentum, eps, unbiased, activation, alpha):
    """Normalize with this batch's statistics, cache them, update the running statistics,
    apply the activation (one kernel); A16 = bf16(A) after it unless A16 is empty."""
    m, n = X.shape
    if n == 0:
        return
    t = X.dtype.type
    factor = m / (m - 1.0) if unbiased and m > 1 else 1.0
    grid, block = _column_grid(n)
    _batchnorm_forward_train_kernel(X.dtype)[grid, block](
        A, mean, inv_std, running_mean, running_var, X, gamma, beta, t(momentum),
        t(1.0 - float(momentum)), t(eps), t(factor), int(activation), t(alpha))
    if A16.size:
        to_bfloat16(A16, A)


def batchnorm_forward_eval(A, A16, X, gamma, beta, running_mean, running_var, eps, activation,
                           alpha):
    """Normalize with the running statistics (inference), then the activation; A16 =
    bf16(A) after it unless A16 is empty."""
    size = X.shape[0] * X.shape[1]
    if size:
        t = X.dtype.type
        _batchnorm_forward_eval_kernel(X.dtype)[blocks(size), tpb()](
            A, X, gamma, beta, running_mean, running_var, t(eps), int(activation), t(alpha))
        if A16.size:
            to_bfloat16(A16, A)


def batchnorm_backward(dX, dgamma, dbeta, dA, A, X, mean, inv_std, gamma, activation, alpha):
    """dgamma, dbeta and (unless ``dX`` has size 0) dX; ``dA`` is overwritten with dz."""
    n = X.shape[1]
    if n == 0:
        return
    if dX.size == 0:  # "skip dX": a 2-D empty stand-in keeps the kernel's typing
        dX = dA[:0]
    grid, block = _column_grid(n)
    _batchnorm_backward_kernel(X.dtype)[grid, block](
        dX, dgamma, dbeta, dA, A, X, mean, inv_std, gamma, int(activation),
        X.dtype.type(alpha))
