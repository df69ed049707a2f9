"""Element-wise activations and their derivatives (cpu).

Same math, codes and aliasing rules as ``reference/activations.py`` (derivatives from the output A).
Each kernel is one jitted pass over memory. The activation code is resolved in Python: every code
has its own compiled loops (``_SERIAL_FWD[code]`` ...), whose body is branch-free and vectorizes,
and only the codes actually used get compiled. Buffers of at least ``config.PARALLEL_MIN_SIZE``
elements use the ``prange`` variant (over rows).

``_fwd_rows``/``_bwd_rows`` take the code at run time (a branch per element): they serve the
fused-epoch kernel, whose layers are a few units wide, and keep its compile time small.
"""

import numpy as np

from ... import config  # before numba: it sets OMP_WAIT_POLICY
from numba import prange

from ._jit import jit, pjit


@jit(inline="always")
def _g(z, act, alpha, zero, one):
    """g(z) for activation code ``act`` (NaN propagates as in the reference)."""
    if act == 1:
        return zero if z <= zero else z
    if act == 2:
        return z if z > zero else z * alpha
    if act == 3:
        return np.tanh(z)
    if act == 4:
        # stable both ways: exp of a non-positive number only
        if z >= zero:
            return one / (one + np.exp(-z))
        e = np.exp(z)
        return e / (one + e)
    return z


@jit(inline="always")
def _dg(da, a, act, alpha, zero, one):
    """da * g'(z), with g' written from the output a."""
    if act == 1:
        return da if a > zero else zero
    if act == 2:
        return da if a > zero else da * alpha
    if act == 3:
        return da * (one - a * a)
    if act == 4:
        return da * a * (one - a)
    return da


@jit(inline="always")
def _fwd_row(A, Z, b, act, alpha, i):
    """A[i] = g(Z[i] + b) (b of size 0: no bias)."""
    zero = A.dtype.type(0)
    one = A.dtype.type(1)
    if b.shape[0] > 0:
        for j in range(A.shape[1]):
            A[i, j] = _g(Z[i, j] + b[j], act, alpha, zero, one)
    else:
        for j in range(A.shape[1]):
            A[i, j] = _g(Z[i, j], act, alpha, zero, one)


@jit(inline="always")
def _bwd_row(dZ, dA, A, act, alpha, i):
    """dZ[i] = dA[i] * g'(from A[i])."""
    zero = dZ.dtype.type(0)
    one = dZ.dtype.type(1)
    for j in range(dZ.shape[1]):
        dZ[i, j] = _dg(dA[i, j], A[i, j], act, alpha, zero, one)


def _specialize(act):
    """The four activation loops for one code; ``act`` is a closure constant, so the element
    helpers fold to one branch-free body."""

    @jit
    def fwd(A, Z, b, alpha):
        for i in range(A.shape[0]):
            _fwd_row(A, Z, b, act, alpha, i)

    @pjit
    def fwd_parallel(A, Z, b, alpha):
        for i in prange(A.shape[0]):
            _fwd_row(A, Z, b, act, alpha, i)

    @jit
    def bwd(dZ, dA, A, alpha):
        for i in range(dZ.shape[0]):
            _bwd_row(dZ, dA, A, act, alpha, i)

    @pjit
    def bwd_parallel(dZ, dA, A, alpha):
        for i in prange(dZ.shape[0]):
            _bwd_row(dZ, dA, A, act, alpha, i)

    return fwd, fwd_parallel, bwd, bwd_parallel


#: Per activation code: the serial / parallel forward (A, Z, b, alpha) and backward
#: (dZ, dA, A, alpha) kernels. ``dense.py`` uses the forward ones with the bias.
_SERIAL_FWD, _PARALLEL_FWD, _SERIAL_BWD, _PARALLEL_BWD = zip(*(_specialize(a) for a in range(5)))


@jit
def _fwd_rows(A, Z, b, act, alpha, r0, r1):
    """A[r0:r1] = g(Z[r0:r1] + b), the code chosen at run time (fused-epoch kernel)."""
    for i in range(r0, r1):
        _fwd_row(A, Z, b, act, alpha, i)


@jit
def _bwd_rows(dZ, dA, A, act, alpha, r0, r1):
    """dZ[r0:r1] = dA * g'(from A), the code chosen at run time (fused-epoch kernel)."""
    for i in range(r0, r1):
        _bwd_row(dZ, dA, A, act, alpha, i)


@jit
def _softmax_row(P, Z, i):
    n = Z.shape[1]
    mx = Z[i, 0]
    for j in range(1, n):
        if Z[i, j] > mx:
            mx = Z[i, j]
    s = 0.0
    for j in range(n):
        e = np.exp(Z[i, j] - mx)
        P[i, j] = e
        s += e
    s_t = P.dtype.type(s)
    for j in range(n):
        P[i, j] = P[i, j] / s_t


@jit
def _softmax_serial(P, Z):
    for i in range(Z.shape[0]):
        _softmax_row(P, Z, i)


@pjit
def _softmax_parallel(P, Z):
    for i in prange(Z.shape[0]):
        _softmax_row(P, Z, i)


def _check_code(activation):
    # Not validation of data: the reference raises on an unknown code, so does this backend.
    if not 0 <= activation <= 4:
        raise ValueError(f"unknown activation code {activation}")


def _no_bias(A):
    return A[0, :0]


def activation_forward(A, Z, activation, alpha):
    """A = g(Z) in one jitted pass (no temporaries). ``A`` may be ``Z`` (in place)."""
    if A.size == 0:
        return
    _check_code(activation)
    table = _PARALLEL_FWD if A.size >= config.PARALLEL_MIN_SIZE else _SERIAL_FWD
    table[activation](A, Z, _no_bias(A), A.dtype.type(alpha))


def activation_backward(dZ, dA, A, activation, alpha):
    """dZ = dA * g'(Z) from the output A, one jitted pass. ``dZ`` may be ``dA``."""
    if dZ.size == 0:
        return
    _check_code(activation)
    table = _PARALLEL_BWD if dZ.size >= config.PARALLEL_MIN_SIZE else _SERIAL_BWD
    table[activation](dZ, dA, A, dZ.dtype.type(alpha))


def softmax_forward(P, Z):
    """Row-wise stable softmax in one jitted row pass, the row sum accumulated in float64."""
    if P.size == 0:
        return
    f = _softmax_parallel if P.size >= config.PARALLEL_MIN_SIZE else _softmax_serial
    f(P, Z)
