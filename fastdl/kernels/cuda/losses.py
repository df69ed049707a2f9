"""Losses fused with their output activation and their gradient (cuda).

Same math as ``reference/losses.py`` (mean cost into ``loss[0]``, gradient already divided by
m into ``dZ``, which may alias the input). Differs in where the arithmetic runs: in the dtype
of the inputs (the reference uses float64), one thread per row for the softmax (stable
log-sum-exp) and one thread per element for the others, and the cost is reduced without a
race and without a host sync: each block tree-reduces its threads' sums in shared memory and
writes one partial; a second one-block kernel adds the partials into ``loss[0]`` (a launch
with a single block writes ``loss[0]`` directly).

The private stage-1 kernels take ``order, start`` so the epoch launcher can read target rows
through the shuffle (row r uses ``Y[order[start + r]]``; an empty ``order`` means ``Y[r]``)
instead of gathering Y first.

``correct_predictions`` counts the examples classified right (one thread per row, the reference's
rule, in the dtype of Z: counts are exact up to 2^24 rows), reduced the same way; it also takes
``order, start`` for the epoch launcher and an optional ``W`` (size 0: unweighted).

The Poisson deviance is one thread per element like the binary cross-entropy (its ``y log y``
term is computed in the input dtype too).

The weighted variants (``weighted_*``, see the reference) use their own stage-1 kernels, with
``W`` (m,) in place of the shuffle indirection (the step path gathers the batch's rows, weights
included, before the loss): row r's terms are multiplied by ``W[r]`` and ``scale`` is
``1 / wsum`` (``1 / (wsum k)`` for mse; 0 when wsum is 0), so the unweighted kernels, and the
fused epoch that uses them, are unchanged.
"""

import math

from numba import cuda

from ._device import (SHARED_SIZE, block_sum, empty_index, finish, per_dtype, reduce_blocks,
                      scratch, tpb)

SOFTMAX_CE, SIGMOID_BCE, MSE, POISSON = "softmax_ce", "sigmoid_bce", "mse", "poisson"


@cuda.jit(device=True, inline="always")
def _emit(out, k, scale, partial, direct, total):
    """Thread 0 of each block stores the block's sum: out[k] = total * scale when the launch
    has one block (``direct``), else partial[blockIdx.x] = total for the second stage."""
    if cuda.threadIdx.x == 0:
        if direct:
            out[k] = total * scale
        else:
            partial[cuda.blockIdx.x] = total


@per_dtype
def _softmax_cross_entropy_kernel(T):
    @cuda.jit
    def kernel(out, k, scale, partial, direct, dZ, Z, Y, order, start):
        """One thread per row: log p = z - zmax - log sum exp(z - zmax); dZ = (p sum(y) - y) m^-1."""
        sh = cuda.shared.array(SHARED_SIZE, T)
        C = Z.shape[1]
        acc = T(0)
        for r in range(cuda.grid(1), Z.shape[0], cuda.gridsize(1)):
            yr = order[start + r] if order.shape[0] > 0 else r
            zmax = Z[r, 0]
            for c in range(1, C):
                zmax = max(zmax, Z[r, c])
            s = T(0)
            for c in range(C):
                s += math.exp(Z[r, c] - zmax)
            log_s = math.log(s)
            ysum = T(0)
            for c in range(C):
                y = Y[yr, c]
                ysum += y
                acc -= y * ((Z[r, c] - zmax) - log_s)
            for c in range(C):
                p = math.exp((Z[r, c] - zmax) - log_s)
                dZ[r, c] = (p * ysum - Y[yr, c]) * scale
        _emit(out, k, scale, partial, direct, block_sum(sh, acc))
    return kernel


@per_dtype
def _sigmoid_binary_cross_entropy_kernel(T):
    @cuda.jit
    def kernel(out, k, scale, partial, direct, dZ, Z, Y, order, start):
        """One thread per element: max(z,0) - z y + log1p(exp(-|z|)); dZ = (sigmoid(z) - y) m^-1."""
        sh = cuda.shared.array(SHARED_SIZE, T)
        n = Z.shape[1]
        acc = T(0)
        for i in range(cuda.grid(1), Z.shape[0] * n, cuda.gridsize(1)):
            r = i // n
            c = i - r * n
            yr = order[start + r] if order.shape[0] > 0 else r
            z = Z[r, c]
            y = Y[yr, c]
            e = math.exp(-abs(z))
            acc += (max(z, T(0)) - z * y) + math.log1p(e)
            sig = T(1) / (T(1) + e) if z >= T(0) else e / (T(1) + e)
            dZ[r, c] = (sig - y) * scale
        _emit(out, k, scale, partial, direct, block_sum(sh, acc))
    return kernel


@per_dtype
def _mean_squared_error_kernel(T):
    @cuda.jit
    def kernel(out, k, scale, partial, direct, dA, A, Y, order, start):
        """One thread per element: (a - y)^2; dA = 2 (a - y) / (m k) (scale = 1 / (m k))."""
        sh = cuda.shared.array(SHARED_SIZE, T)
        n = A.shape[1]
        acc = T(0)
        for i in range(cuda.grid(1), A.shape[0] * n, cuda.gridsize(1)):
            r = i // n
            c = i - r * n
            yr = order[start + r] if order.shape[0] > 0 else r
            diff = A[r, c] - Y[yr, c]
            acc += diff * diff
            dA[r, c] = T(2) * diff * scale
        _emit(out, k, scale, partial, direct, block_sum(sh, acc))
    return kernel


@cuda.jit(device=True, inline="always")
def _poisson_cost(z, y, mu, zero):
    """exp(z) - y z + y log y - y (the half deviance; y log y = 0 at y = 0), given mu = exp(z)."""
    ylogy = y * math.log(y) if y > zero else zero
    return (mu - y * z) + (ylogy - y)


@per_dtype
def _exp_half_poisson_deviance_kernel(T):
    @cuda.jit
    def kernel(out, k, scale, partial, direct, dZ, Z, Y, order, start):
        """One thread per element: exp(z) - y z + y log y - y; dZ = (exp(z) - y) m^-1."""
        sh = cuda.shared.array(SHARED_SIZE, T)
        n = Z.shape[1]
        acc = T(0)
        for i in range(cuda.grid(1), Z.shape[0] * n, cuda.gridsize(1)):
            r = i // n
            c = i - r * n
            yr = order[start + r] if order.shape[0] > 0 else r
            z = Z[r, c]
            y = Y[yr, c]
            mu = math.exp(z)
            acc += _poisson_cost(z, y, mu, T(0))
            dZ[r, c] = (mu - y) * scale
        _emit(out, k, scale, partial, direct, block_sum(sh, acc))
    return kernel


@per_dtype
def _weighted_exp_half_poisson_deviance_kernel(T):
    @cuda.jit
    def kernel(out, k, scale, partial, direct, dZ, Z, Y, W):
        """One thread per element: W[r] * half deviance; dZ = (exp(z) - y) W[r] scale."""
        sh = cuda.shared.array(SHARED_SIZE, T)
        n = Z.shape[1]
        acc = T(0)
        for i in range(cuda.grid(1), Z.shape[0] * n, cuda.gridsize(1)):
            r = i // n
            c = i - r * n
            w = W[r]
            z = Z[r, c]
            y = Y[r, c]
            mu = math.exp(z)
            acc += w * _poisson_cost(z, y, mu, T(0))
            dZ[r, c] = (mu - y) * (w * scale)
        _emit(out, k, scale, partial, direct, block_sum(sh, acc))
    return kernel


@per_dtype
def _weighted_softmax_cross_entropy_kernel(T):
    @cuda.jit
    def kernel(out, k, scale, partial, direct, dZ, Z, Y, W):
        """One thread per row: W[r] * (-sum_c y log p); dZ = (p sum(y) - y) W[r] scale."""
        sh = cuda.shared.array(SHARED_SIZE, T)
        C = Z.shape[1]
        acc = T(0)
        for r in range(cuda.grid(1), Z.shape[0], cuda.gridsize(1)):
            w = W[r]
            zmax = Z[r, 0]
            for c in range(1, C):
                zmax = max(zmax, Z[r, c])
            s = T(0)
            for c in range(C):
                s += math.exp(Z[r, c] - zmax)
            log_s = math.log(s)
            ysum = T(0)
            row = T(0)
            for c in range(C):
                y = Y[r, c]
                ysum += y
                row -= y * ((Z[r, c] - zmax) - log_s)
            acc += w * row
            ws = w * scale
            for c in range(C):
                p = math.exp((Z[r, c] - zmax) - log_s)
                dZ[r, c] = (p * ysum - Y[r, c]) * ws
        _emit(out, k, scale, partial, direct, block_sum(sh, acc))
    return kernel


@per_dtype
def _weighted_sigmoid_binary_cross_entropy_kernel(T):
    @cuda.jit
    def kernel(out, k, scale, partial, direct, dZ, Z, Y, W):
        """One thread per element: W[r] * BCE(z, y); dZ = (sigmoid(z) - y) W[r] scale."""
        sh = cuda.shared.array(SHARED_SIZE, T)
        n = Z.shape[1]
        acc = T(0)
        for i in range(cuda.grid(1), Z.shape[0] * n, cuda.gridsize(1)):
            r = i // n
            c = i - r * n
            w = W[r]
            z = Z[r, c]
            y = Y[r, c]
            e = math.exp(-abs(z))
            acc += w * ((max(z, T(0)) - z * y) + math.log1p(e))
            sig = T(1) / (T(1) + e) if z >= T(0) else e / (T(1) + e)
            dZ[r, c] = (sig - y) * (w * scale)
        _emit(out, k, scale, partial, direct, block_sum(sh, acc))
    return kernel


@per_dtype
def _weighted_mean_squared_error_kernel(T):
    @cuda.jit
    def kernel(out, k, scale, partial, direct, dA, A, Y, W):
        """One thread per element: W[r] (a - y)^2; dA = 2 (a - y) W[r] scale (1/(wsum k))."""
        sh = cuda.shared.array(SHARED_SIZE, T)
        n = A.shape[1]
        acc = T(0)
        for i in range(cuda.grid(1), A.shape[0] * n, cuda.gridsize(1)):
            r = i // n
            c = i - r * n
            w = W[r]
            diff = A[r, c] - Y[r, c]
            acc += w * (diff * diff)
            dA[r, c] = T(2) * diff * (w * scale)
        _emit(out, k, scale, partial, direct, block_sum(sh, acc))
    return kernel


_WEIGHTED = {SOFTMAX_CE: _weighted_softmax_cross_entropy_kernel,
             SIGMOID_BCE: _weighted_sigmoid_binary_cross_entropy_kernel,
             MSE: _weighted_mean_squared_error_kernel,
             POISSON: _weighted_exp_half_poisson_deviance_kernel}


_KERNELS = {SOFTMAX_CE: _softmax_cross_entropy_kernel,
            SIGMOID_BCE: _sigmoid_binary_cross_entropy_kernel,
            MSE: _mean_squared_error_kernel,
            POISSON: _exp_half_poisson_deviance_kernel}


def _loss_into(kind, out, k, dZ, Z, Y, order=None, start=0, extra=None):
    """Launch loss ``kind``: out[k] = mean cost (+ s2 * sum(p2[:n2]) when ``extra`` =
    (p2, n2, s2) holds another reduction's partials), gradient into dZ."""
    m, n = Z.shape
    per_row = kind == SOFTMAX_CE
    items = m if per_row else m * n
    inv = 1.0 / m if kind != MSE else 1.0 / (m * n)
    nb = reduce_blocks(items)
    direct = nb == 1 and extra is None
    partial = scratch("loss", nb, Z.dtype)
    dt = Z.dtype
    _KERNELS[kind](dt)[nb, tpb()](out, k, dt.type(inv), partial, direct, dZ, Z, Y,
                                  empty_index() if order is None else order, start)
    if not direct:
        p2, n2, s2 = extra if extra is not None else (None, 0, 0.0)
        finish(out, k, partial, nb, inv, p2, n2, s2)


def exp_half_poisson_deviance(loss, dZ, Z, Y):
    _loss_into(POISSON, loss, 0, dZ, Z, Y)


def softmax_cross_entropy(loss, dZ, Z, Y):
    _loss_into(SOFTMAX_CE, loss, 0, dZ, Z, Y)


def sigmoid_binary_cross_entropy(loss, dZ, Z, Y):
    _loss_into(SIGMOID_BCE, loss, 0, dZ, Z, Y)


def mean_squared_error(loss, dA, A, Y):
    _loss_into(MSE, loss, 0, dA, A, Y)


def _weighted_loss_into(kind, out, dZ, Z, Y, W, wsum):
    """Launch the weighted loss ``kind``: out[0] = sum_r W[r] l_r / wsum, gradient into dZ."""
    m, n = Z.shape
    items = m if kind == SOFTMAX_CE else m * n
    k = n if kind == MSE else 1
    inv = 1.0 / (float(wsum) * k) if wsum > 0 else 0.0
    nb = reduce_blocks(items)
    direct = nb == 1
    partial = scratch("loss", nb, Z.dtype)
    dt = Z.dtype
    _WEIGHTED[kind](dt)[nb, tpb()](out, 0, dt.type(inv), partial, direct, dZ, Z, Y, W)
    if not direct:
        finish(out, 0, partial, nb, inv)


def weighted_softmax_cross_entropy(loss, dZ, Z, Y, w, wsum):
    _weighted_loss_into(SOFTMAX_CE, loss, dZ, Z, Y, w, wsum)


def weighted_sigmoid_binary_cross_entropy(loss, dZ, Z, Y, w, wsum):
    _weighted_loss_into(SIGMOID_BCE, loss, dZ, Z, Y, w, wsum)


def weighted_mean_squared_error(loss, dA, A, Y, w, wsum):
    _weighted_loss_into(MSE, loss, dA, A, Y, w, wsum)


def weighted_exp_half_poisson_deviance(loss, dZ, Z, Y, w, wsum):
    _weighted_loss_into(POISSON, loss, dZ, Z, Y, w, wsum)


# ------------------------------------------------------------------------ correct predictions
@cuda.jit(device=True, inline="always")
def _argmax_row(A, r, n):
    """np.argmax of row r of A[:, :n]: the first maximum, a NaN counts as the maximum."""
    best = 0
    for j in range(1, n):
        a = A[r, j]
        b = A[r, best]
        if b == b and (a > b or a != a):
            best = j
    return best


@per_dtype
def _correct_predictions_kernel(T):
    @cuda.jit
    def kernel(out, k, partial, direct, Z, Y, W, order, start, kind):
        """One thread per row: c = [argmax z == argmax y] (kind 1) or the row's fraction of
        outputs with (z >= 0) == (y >= 1/2) (kind 0), times W[r] when W is not empty."""
        sh = cuda.shared.array(SHARED_SIZE, T)
        n = Z.shape[1]
        acc = T(0)
        for r in range(cuda.grid(1), Z.shape[0], cuda.gridsize(1)):
            yr = order[start + r] if order.shape[0] > 0 else r
            if kind == 1:
                c = T(1) if _argmax_row(Z, r, n) == _argmax_row(Y, yr, n) else T(0)
            else:
                hits = 0
                for j in range(n):
                    if (Z[r, j] >= T(0)) == (Y[yr, j] >= T(0.5)):
                        hits += 1
                c = T(hits) / T(n)
            if W.shape[0] > 0:
                c *= W[r]
            acc += c
        _emit(out, k, T(1), partial, direct, block_sum(sh, acc))
    return kernel


def _correct_into(out, k, Z, Y, W, loss, order=None, start=0):
    """Launch the count: out[k] = sum_r W[r] c_r (see the module docstring)."""
    if loss not in (0, 1):
        raise ValueError(f"correct_predictions: loss code {loss} has no classes; expected 0 "
                         "(sigmoid outputs) or 1 (softmax)")
    m = Z.shape[0]
    nb = reduce_blocks(m)
    direct = nb == 1
    dt = Z.dtype
    partial = scratch("correct", nb, dt)
    _correct_predictions_kernel(dt)[nb, tpb()](out, k, partial, direct, Z, Y, W,
                                               empty_index() if order is None else order, start,
                                               int(loss))
    if not direct:
        finish(out, k, partial, nb, 1.0)


def correct_predictions(out, Z, Y, w, loss):
    _correct_into(out, 0, Z, Y, w, loss)
