"""Element-wise activations and their derivatives (cpu).

Same math, codes and aliasing rules as ``reference/activations.py`` (derivatives from the output
A). How the cpu kernels differ:

* Each activation code has its own compiled loops (``_SERIAL_FWD[code]`` ...), chosen in Python:
  the loop bodies are branch-free, vectorize, and only the codes used get compiled. Buffers of
  at least ``config.PARALLEL_MIN_SIZE`` elements use the ``prange`` variants (over rows).
* Transcendentals go to NumPy's SIMD ufuncs, in place: Numba (pip llvmlite has no SVML) calls
  scalar libm, measured per 64 Ki float32 elements: tanh 1088 us vs NumPy 27 us, exp 217 us vs
  37 us (float64: 745 vs 133, 276 vs 51). So tanh is ``np.tanh`` (as in the reference), and
  sigmoid above ``_UFUNC_MIN_SIZE`` elements is ``1 / (1 + exp(-z))`` with NumPy's exp, which
  is as stable as the reference's two-branch form (exp(-z) overflows to inf only where the
  sigmoid is 0) and equal to it within 2 ulp. Small buffers use the jitted scalar form.
* The jitted loops work in place (``A`` is ``Z``, ``dZ`` is ``dA``; otherwise the input is
  copied first): with two arrays that may be one, LLVM's overlap check sends the loop to its
  scalar version. Inner loops run over 1-D row views with counters from 0 (Numba's
  negative-index wraparound check on computed indices also blocks vectorization).

``_g``/``_dg`` are the scalar forms, shared with ``dense.py`` and ``epoch.py``.

Mixed precision: ``_bias_activation`` also writes the bfloat16 copy ``A16`` of its output (the
next layer's GEMM operand, ``reference/dense.py``) row by row, right after the row is computed
(still in L1: a 2-byte store per element, no pass of its own). The NumPy-ufunc paths (tanh,
large sigmoids) end outside Numba, so there the copy is one jitted conversion pass after them.
"""

import numpy as np

from ... import config  # before numba: it sets OMP_WAIT_POLICY
from numba import prange

from ._bf16 import bf16
from ._jit import jit, pjit
from .precision import to_bfloat16


LINEAR, RELU, LEAKY_RELU, TANH, SIGMOID = range(5)

#: Elements from which sigmoid and softmax use NumPy's SIMD exp (below: the jitted scalar form,
#: cheaper than the ~1 us of ``np.errstate`` and the extra calls).
_UFUNC_MIN_SIZE = 2048


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
def _fwd_row(a, b, act, alpha):
    """a = g(a + b) in place on a 1-D row (b of size 0: no bias)."""
    zero = a.dtype.type(0)
    one = a.dtype.type(1)
    if b.shape[0] > 0:
        for j in range(a.shape[0]):
            a[j] = _g(a[j] + b[j], act, alpha, zero, one)
    else:
        for j in range(a.shape[0]):
            a[j] = _g(a[j], act, alpha, zero, one)


@jit(inline="always")
def _narrow_row(a16, a):
    """a16 = bfloat16(a) for one 1-D row."""
    for j in range(a.shape[0]):
        a16[j] = bf16(a[j])


@jit(inline="always")
def _bwd_row(dz, a, act, alpha):
    """dz = dz * g'(from a) in place on 1-D rows."""
    zero = dz.dtype.type(0)
    one = dz.dtype.type(1)
    for j in range(dz.shape[0]):
        dz[j] = _dg(dz[j], a[j], act, alpha, zero, one)


def _specialize(act):
    """The four in-place loops of one activation code; ``act`` is a closure constant, so
    ``_g``/``_dg`` fold to one branch-free body."""

    @jit
    def fwd(A, b, alpha, A16):
        has16 = A16.shape[0] > 0
        for i in range(A.shape[0]):
            _fwd_row(A[i], b, act, alpha)
            if has16:
                _narrow_row(A16[i], A[i])

    @pjit
    def fwd_parallel(A, b, alpha, A16):
        has16 = A16.shape[0] > 0
        for i in prange(A.shape[0]):
            _fwd_row(A[i], b, act, alpha)
            if has16:
                _narrow_row(A16[i], A[i])

    @jit
    def bwd(dZ, A, alpha):
        for i in range(dZ.shape[0]):
            _bwd_row(dZ[i], A[i], act, alpha)

    @pjit
    def bwd_parallel(dZ, A, alpha):
        for i in prange(dZ.shape[0]):
            _bwd_row(dZ[i], A[i], act, alpha)

    return fwd, fwd_parallel, bwd, bwd_parallel


#: Per activation code: serial / parallel in-place forward ``(A, b, alpha, A16)``: A = g(A + b)
#: (and A16 = bf16(A) when A16 is not empty) and backward ``(dZ, A, alpha)``: dZ *= g'(A).
_SERIAL_FWD, _PARALLEL_FWD, _SERIAL_BWD, _PARALLEL_BWD = zip(*(_specialize(a) for a in range(5)))


@jit
def _neg_bias(A, b):
    """A = -(A + b) in place (b of size 0: no bias)."""
    for i in range(A.shape[0]):
        a = A[i]
        if b.shape[0] > 0:
            for j in range(a.shape[0]):
                a[j] = -(a[j] + b[j])
        else:
            for j in range(a.shape[0]):
                a[j] = -a[j]


@jit
def _inv_1p(A):
    """A = 1 / (1 + A)."""
    one = A.dtype.type(1)
    for i in range(A.shape[0]):
        a = A[i]
        for j in range(a.shape[0]):
            a[j] = one / (one + a[j])


#: The "no bfloat16 copy" argument of the forward loops (a float32 or float64 model).
_NO16 = np.zeros((0, 0), np.uint16)


def _bias_activation(A, b, activation, alpha, A16=_NO16):
    """A = g(A + b) in place, and A16 = bf16(A) unless A16 is empty: the dispatch shared by
    ``activation_forward`` and ``dense_forward``."""
    big = A.size >= config.PARALLEL_MIN_SIZE
    fwd = _PARALLEL_FWD if big else _SERIAL_FWD
    if activation == TANH:
        if b.shape[0]:
            fwd[LINEAR](A, b, A.dtype.type(0), _NO16)
        np.tanh(A, out=A)
    elif activation == SIGMOID and A.size >= _UFUNC_MIN_SIZE:
        _neg_bias(A, b)
        with np.errstate(over="ignore"):  # exp(-z) = inf where sigmoid(z) = 0
            np.exp(A, out=A)
        _inv_1p(A)
    else:
        fwd[activation](A, b, A.dtype.type(alpha), A16)
        return
    if A16.size:                # the ufunc paths end outside Numba: convert after them
        to_bfloat16(A16, A)


@jit
def _softmax_row(p, z):
    """p = softmax(z) on 1-D rows, jitted scalar exp (small rows)."""
    n = z.shape[0]
    mx = z[0]
    for j in range(1, n):
        if z[j] > mx:
            mx = z[j]
    s = 0.0
    for j in range(n):
        e = np.exp(z[j] - mx)
        p[j] = e
        s += e
    s_t = p.dtype.type(s)
    for j in range(n):
        p[j] = p[j] / s_t


@jit
def _softmax_serial(P, Z):
    for i in range(Z.shape[0]):
        _softmax_row(P[i], Z[i])


@jit
def _shift_by_row_max(P, Z):
    """P = Z - max of its row (all <= 0: exp cannot overflow)."""
    for i in range(Z.shape[0]):
        p = P[i]
        z = Z[i]
        mx = z[0]
        for j in range(1, z.shape[0]):
            if z[j] > mx:
                mx = z[j]
        for j in range(z.shape[0]):
            p[j] = z[j] - mx


@jit
def _normalize_rows(P):
    """P /= the row sum (accumulated in float64)."""
    for i in range(P.shape[0]):
        p = P[i]
        s = 0.0
        for j in range(p.shape[0]):
            s += p[j]
        s_t = p.dtype.type(s)
        for j in range(p.shape[0]):
            p[j] = p[j] / s_t


def _check_code(activation):
    # Not validation of data: the reference raises on an unknown code, so does this backend.
    if not 0 <= activation <= 4:
        raise ValueError(f"unknown activation code {activation}")


def activation_forward(A, Z, activation, alpha):
    """A = g(Z) by one jitted pass in place (tanh and large sigmoids: NumPy's SIMD ufuncs);
    ``A`` may be ``Z``, else Z is copied into A first."""
    if A.size == 0:
        return
    _check_code(activation)
    if A is not Z:
        np.copyto(A, Z)  # then in place: one array per loop vectorizes best
    _bias_activation(A, A[0, :0], activation, alpha)


def activation_backward(dZ, dA, A, activation, alpha):
    """dZ = dA * g'(Z) from the output A by one jitted branch-free pass in place; ``dZ`` may be
    ``dA``, else dA is copied into dZ first."""
    if dZ.size == 0:
        return
    _check_code(activation)
    if dZ is not dA:
        np.copyto(dZ, dA)
    table = _PARALLEL_BWD if dZ.size >= config.PARALLEL_MIN_SIZE else _SERIAL_BWD
    table[activation](dZ, A, dZ.dtype.type(alpha))


def softmax_forward(P, Z):
    """Row-wise stable softmax: jitted max-shift, NumPy's SIMD exp in place, jitted float64 row
    sums (small buffers: one jitted pass). ``P`` may be ``Z``."""
    if P.size == 0:
        return
    if P.size < _UFUNC_MIN_SIZE:
        _softmax_serial(P, Z)
        return
    _shift_by_row_max(P, Z)
    np.exp(P, out=P)
    _normalize_rows(P)
