"""Inverted dropout with a counter-based mask (cpu).

Same hash, mask, scaling and aliasing rules as ``reference/dropout.py`` (the masks and outputs
are bit-identical: the hash is integer arithmetic and the scale one multiply in the dtype). One
jitted pass per call over 1-D row views: the mask bit of each element is hashed from its index
while the element is scaled, so nothing is stored between forward and backward. In place
(``dX`` is ``dA``) runs a one-array loop: with two arrays that may be one, LLVM's overlap check
kept the loop scalar (measured 13x slower). Buffers of at least
``config.PARALLEL_MIN_SIZE`` elements use a ``prange`` over rows (elements are independent).
"""

import math

import numpy as np

from ... import config  # before numba: it sets OMP_WAIT_POLICY
from numba import prange

from ._bf16 import bf16
from ._jit import jit, pjit

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SEED_SALT = np.uint64(0x6A09E667F3BCC909)
_S30, _S27, _S31, _S40 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(40)


@jit(inline="always")
def _mix64(z):
    """splitmix64 finalizer; uint64 arithmetic wraps mod 2^64 as in the reference."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@jit(inline="always")
def _key(seed, step, layer):
    k = _mix64(np.uint64(seed) ^ _SEED_SALT)
    k = _mix64(k ^ np.uint64(step))
    return _mix64(k ^ np.uint64(layer))


@jit(inline="always")
def _row(out, inp, i, key, thr, scale):
    """out[i] = inp[i] * keep / keep_prob for row i (element index e = i * n + j)."""
    o = out[i]
    x = inp[i]
    n = x.shape[0]
    zero = out.dtype.type(0)
    state = key + np.uint64(i) * np.uint64(n) * _GOLDEN   # splitmix64 state before e = i n
    for j in range(n):
        state += _GOLDEN
        h = _mix64(state)
        o[j] = x[j] * scale if (h >> _S40) < thr else zero


@jit(inline="always")
def _row_inplace(a, i, key, thr, scale):
    """_row with out = inp: one array per loop, so LLVM vectorizes it (no overlap check)."""
    r = a[i]
    n = r.shape[0]
    zero = a.dtype.type(0)
    state = key + np.uint64(i) * np.uint64(n) * _GOLDEN
    for j in range(n):
        state += _GOLDEN
        h = _mix64(state)
        r[j] = r[j] * scale if (h >> _S40) < thr else zero


@jit(inline="always")
def _narrow_row(a16, a):
    """a16 = bfloat16(a) for one row, while it is still in L1 (``_bf16.py``)."""
    for j in range(a.shape[0]):
        a16[j] = bf16(a[j])


@jit(inline="always")
def _constants(out, keep_prob):
    """Threshold on the top 24 bits and the inverted-dropout scale (in the dtype)."""
    return np.uint64(math.ceil(keep_prob * 16777216.0)), out.dtype.type(1.0 / keep_prob)


@jit
def _apply_serial(out, inp, seed, step, layer, keep_prob, out16):
    key = _key(seed, step, layer)
    thr, scale = _constants(out, keep_prob)
    has16 = out16.shape[0] > 0
    for i in range(inp.shape[0]):
        _row(out, inp, i, key, thr, scale)
        if has16:
            _narrow_row(out16[i], out[i])


@pjit
def _apply_parallel(out, inp, seed, step, layer, keep_prob, out16):
    key = _key(seed, step, layer)
    thr, scale = _constants(out, keep_prob)
    has16 = out16.shape[0] > 0
    for i in prange(inp.shape[0]):
        _row(out, inp, i, key, thr, scale)
        if has16:
            _narrow_row(out16[i], out[i])


@jit
def _inplace_serial(a, seed, step, layer, keep_prob, a16):
    key = _key(seed, step, layer)
    thr, scale = _constants(a, keep_prob)
    has16 = a16.shape[0] > 0
    for i in range(a.shape[0]):
        _row_inplace(a, i, key, thr, scale)
        if has16:
            _narrow_row(a16[i], a[i])


@pjit
def _inplace_parallel(a, seed, step, layer, keep_prob, a16):
    key = _key(seed, step, layer)
    thr, scale = _constants(a, keep_prob)
    has16 = a16.shape[0] > 0
    for i in prange(a.shape[0]):
        _row_inplace(a, i, key, thr, scale)
        if has16:
            _narrow_row(a16[i], a[i])


#: No bfloat16 copy (backward, and forward of float32/float64 compute).
_NO16 = np.zeros((0, 0), np.uint16)


def _apply(out, inp, seed, step, layer, keep_prob, out16=_NO16):
    if inp.size == 0:
        return
    big = inp.size >= config.PARALLEL_MIN_SIZE
    if out is inp:
        (_inplace_parallel if big else _inplace_serial)(out, seed, step, layer, float(keep_prob),
                                                        out16)
    else:
        (_apply_parallel if big else _apply_serial)(out, inp, seed, step, layer,
                                                    float(keep_prob), out16)


def dropout_forward(A, A16, X, seed, step, layer, keep_prob):
    """A = X * keep / keep_prob in one jitted pass, the mask hashed per element; the same pass
    writes A16 = bf16(A) row by row unless A16 is empty."""
    _apply(A, X, seed, step, layer, keep_prob, A16)


def dropout_backward(dX, dA, seed, step, layer, keep_prob):
    """dX = dA * keep / keep_prob, the forward's mask recomputed in the same pass."""
    _apply(dX, dA, seed, step, layer, keep_prob)
