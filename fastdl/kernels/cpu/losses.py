"""Losses fused with their output activation and their gradient (cpu).

Same math, scaling and aliasing rules as ``reference/losses.py`` (``dZ`` may be the input). How
the cpu kernels differ: no full-size float64 temporaries. Each row is read, reduced and its
gradient written in one jitted pass, with float64 arithmetic per element and the cost summed in
float64, written to ``loss[0]``. Softmax cross-entropy on buffers of at least
``activations._UFUNC_MIN_SIZE`` elements takes its exponentials from NumPy's SIMD ``np.exp``
(in place in ``dZ``; see ``activations`` for the measured gap), in the input dtype, between two
jitted passes; it uses the identity

    -sum_c y_c log p_c = (sum_c y_c) lse + sum_c y_c (max - z_c),    lse = log sum_c e^(z_c - max)

(both terms >= 0 for y >= 0: no cancellation) so the logits are not needed after the exp.
Binary cross-entropy keeps the jitted scalar exp/log1p (outputs are few: one per example).
Serial: these buffers are batch x outputs, small next to the GEMMs.

``correct_predictions`` is one jitted pass over the rows (no temporaries); ``_row_correct`` is
shared with the whole-epoch kernel (``epoch.py``).

The weighted variants (``weighted_*``, reference docstring) are single fused row passes with
the row's scale ``w_i / wsum`` folded into its cost and gradient; they have no NumPy-exp path
(weighted training is the step path's option, the unweighted kernels stay as they were).
"""

import numpy as np

from ._jit import jit
from .activations import _UFUNC_MIN_SIZE



@jit(inline="always")
def _softmax_ce_row(dz, z, y, m):
    """One example: returns -sum_c y log softmax(z); writes dz = (p * sum_c y - y) / m."""
    n = z.shape[0]
    mx = z[0]
    for j in range(1, n):
        if z[j] > mx:
            mx = z[j]
    mx64 = np.float64(mx)
    s = 0.0
    ysum = 0.0
    for j in range(n):
        s += np.exp(np.float64(z[j]) - mx64)
        ysum += np.float64(y[j])
    lse = np.log(s)
    row = 0.0
    for j in range(n):
        logp = (np.float64(z[j]) - mx64) - lse
        yj = np.float64(y[j])
        row -= yj * logp
        dz[j] = (np.exp(logp) * ysum - yj) / m
    return row


@jit
def _sce_serial(loss, dZ, Z, Y):
    m = Z.shape[0]
    total = 0.0
    for i in range(m):
        total += _softmax_ce_row(dZ[i], Z[i], Y[i], m)
    loss[0] = total / m


@jit
def _sce_shift(dZ, Z, Y):
    """dZ = Z - row max; returns sum_i sum_c y_ic (max_i - z_ic) (float64)."""
    total = 0.0
    for i in range(Z.shape[0]):
        z = Z[i]
        dz = dZ[i]
        y = Y[i]
        mx = z[0]
        for j in range(1, z.shape[0]):
            if z[j] > mx:
                mx = z[j]
        mx64 = np.float64(mx)
        for j in range(z.shape[0]):
            total += np.float64(y[j]) * (mx64 - np.float64(z[j]))
            dz[j] = z[j] - mx
    return total


@jit
def _sce_finish(loss, dZ, Y, shifted_term):
    """dZ holds e = exp(z - max): writes dZ = (e / sum e * sum y - y) / m and the cost."""
    m = dZ.shape[0]
    total = shifted_term
    for i in range(m):
        e = dZ[i]
        y = Y[i]
        s = 0.0
        ysum = 0.0
        for j in range(e.shape[0]):
            s += np.float64(e[j])
            ysum += np.float64(y[j])
        total += ysum * np.log(s)
        for j in range(e.shape[0]):
            e[j] = (np.float64(e[j]) / s * ysum - np.float64(y[j])) / m
    loss[0] = total / m


@jit
def _bce_serial(loss, dZ, Z, Y):
    m = Z.shape[0]
    total = 0.0
    for i in range(m):
        z_i = Z[i]
        y_i = Y[i]
        dz_i = dZ[i]
        for j in range(z_i.shape[0]):
            z = np.float64(z_i[j])
            y = np.float64(y_i[j])
            e = np.exp(-abs(z))
            total += max(z, 0.0) - z * y + np.log1p(e)
            sig = 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)
            dz_i[j] = (sig - y) / m
    loss[0] = total / m


@jit
def _mse_serial(loss, dA, A, Y):
    n = A.shape[0] * A.shape[1]
    total = 0.0
    for i in range(A.shape[0]):
        a_i = A[i]
        y_i = Y[i]
        da_i = dA[i]
        for j in range(a_i.shape[0]):
            d = np.float64(a_i[j]) - np.float64(y_i[j])
            total += d * d
            da_i[j] = 2.0 * d / n
    loss[0] = total / n


@jit(inline="always")
def _poisson_element(z, y):
    """(half deviance exp(z) - y z + y log y - y, exp(z) - y) of one element, in float64."""
    mu = np.exp(z)
    ylogy = y * np.log(y) if y > 0.0 else 0.0
    return mu - y * z + (ylogy - y), mu - y


@jit
def _poisson(loss, dZ, Z, Y, w, inv):
    """Row pass: row i's cost and gradient scaled by w[i] * inv (w empty: by inv)."""
    total = 0.0
    weighted = w.shape[0] > 0
    for i in range(Z.shape[0]):
        z_i, y_i, dz_i = Z[i], Y[i], dZ[i]
        scale = np.float64(w[i]) * inv if weighted else inv
        row = 0.0
        for j in range(z_i.shape[0]):
            cost, grad = _poisson_element(np.float64(z_i[j]), np.float64(y_i[j]))
            row += cost
            dz_i[j] = grad * scale
        total += scale * row
    loss[0] = total


def _empty_batch(loss, Z):
    if Z.shape[0] == 0:  # the reference's 0/0
        loss[0] = np.nan
        return True
    return False


def softmax_cross_entropy(loss, dZ, Z, Y):
    """Fused row pass (float64 log-sum-exp) without temporaries; large buffers take NumPy's
    SIMD exp in the input dtype between two jitted passes."""
    if _empty_batch(loss, Z):
        return
    if Z.size < _UFUNC_MIN_SIZE:
        _sce_serial(loss, dZ, Z, Y)
        return
    shifted_term = _sce_shift(dZ, Z, Y)
    np.exp(dZ, out=dZ)  # arguments <= 0: no overflow
    _sce_finish(loss, dZ, Y, shifted_term)


def sigmoid_binary_cross_entropy(loss, dZ, Z, Y):
    """Fused element pass in float64 (cost and dZ) without temporaries."""
    if _empty_batch(loss, Z):
        return
    _bce_serial(loss, dZ, Z, Y)


def mean_squared_error(loss, dA, A, Y):
    """Fused element pass in float64 (cost and dA) without temporaries."""
    if _empty_batch(loss, A):
        return
    _mse_serial(loss, dA, A, Y)


def exp_half_poisson_deviance(loss, dZ, Z, Y):
    """Fused element pass in float64 (cost and dZ) without temporaries."""
    if _empty_batch(loss, Z):
        return
    _poisson(loss, dZ, Z, Y, Z[:0, 0], 1.0 / Z.shape[0])


# ------------------------------------------------------------------------- weighted variants
@jit
def _wsce(loss, dZ, Z, Y, w, inv):
    total = 0.0
    for i in range(Z.shape[0]):
        scale = np.float64(w[i]) * inv
        # the unweighted row pass with divisor 1/scale (inf for a zero weight: dz = 0)
        total += scale * _softmax_ce_row(dZ[i], Z[i], Y[i], 1.0 / scale)
    loss[0] = total


@jit
def _wbce(loss, dZ, Z, Y, w, inv):
    total = 0.0
    for i in range(Z.shape[0]):
        z_i, y_i, dz_i = Z[i], Y[i], dZ[i]
        scale = np.float64(w[i]) * inv
        row = 0.0
        for j in range(z_i.shape[0]):
            z = np.float64(z_i[j])
            y = np.float64(y_i[j])
            e = np.exp(-abs(z))
            row += max(z, 0.0) - z * y + np.log1p(e)
            sig = 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)
            dz_i[j] = (sig - y) * scale
        total += scale * row
    loss[0] = total


@jit
def _wmse(loss, dA, A, Y, w, inv):
    total = 0.0
    for i in range(A.shape[0]):
        a_i, y_i, da_i = A[i], Y[i], dA[i]
        scale = np.float64(w[i]) * inv
        row = 0.0
        for j in range(a_i.shape[0]):
            d = np.float64(a_i[j]) - np.float64(y_i[j])
            row += d * d
            da_i[j] = 2.0 * d * scale
        total += scale * row
    loss[0] = total


def _inv(wsum, k=1):
    """1 / (wsum k); 0 when the weights sum to 0 (reference: such a batch has J = 0, dZ = 0)."""
    return 1.0 / (float(wsum) * k) if wsum > 0 else 0.0


def weighted_softmax_cross_entropy(loss, dZ, Z, Y, w, wsum):
    """One fused row pass (float64 log-sum-exp), each row scaled by w_i / wsum."""
    _wsce(loss, dZ, Z, Y, w, _inv(wsum))


def weighted_sigmoid_binary_cross_entropy(loss, dZ, Z, Y, w, wsum):
    """Fused element pass in float64, each row scaled by w_i / wsum."""
    _wbce(loss, dZ, Z, Y, w, _inv(wsum))


def weighted_mean_squared_error(loss, dA, A, Y, w, wsum):
    """Fused element pass in float64, each row scaled by w_i / (wsum k)."""
    _wmse(loss, dA, A, Y, w, _inv(wsum, A.shape[1]))


def weighted_exp_half_poisson_deviance(loss, dZ, Z, Y, w, wsum):
    """Fused element pass in float64, each row scaled by w_i / wsum."""
    _poisson(loss, dZ, Z, Y, w, _inv(wsum))


# ------------------------------------------------------------------------ correct predictions
@jit(inline="always")
def _argmax(v, stride, n, off):
    """np.argmax over v[off + j * stride], j < n: the first maximum, a NaN counts as maximum."""
    best = 0
    for j in range(1, n):
        a = v[off + j * stride]
        b = v[off + best * stride]
        if b == b and (a > b or a != a):
            best = j
    return best


@jit(inline="always")
def _row_correct(z, z_stride, z_off, y, y_stride, y_off, n, loss):
    """The reference's c_i for one row whose logits are z[z_off + j * z_stride] and targets
    y[y_off + j * y_stride], j < n (strides let the epoch kernel read feature-major rows)."""
    if loss == 1:
        if _argmax(z, z_stride, n, z_off) == _argmax(y, y_stride, n, y_off):
            return 1.0
        return 0.0
    hits = 0
    for j in range(n):
        if (z[z_off + j * z_stride] >= 0) == (y[y_off + j * y_stride] >= 0.5):
            hits += 1
    return hits / n


@jit
def _correct_rows(Z, Y, w, loss):
    total = 0.0
    n = Z.shape[1]
    for i in range(Z.shape[0]):
        c = _row_correct(Z[i], 1, 0, Y[i], 1, 0, n, loss)
        total += c * np.float64(w[i]) if w.shape[0] > 0 else c
    return total


def correct_predictions(out, Z, Y, w, loss):
    """One jitted pass over the rows; same rule and float64 sum as the reference."""
    if loss not in (0, 1):
        raise ValueError(f"correct_predictions: loss code {loss} has no classes; expected 0 "
                         "(sigmoid outputs) or 1 (softmax)")
    out[0] = _correct_rows(Z, Y, w.reshape(-1), np.int64(loss)) if Z.shape[0] else 0.0
