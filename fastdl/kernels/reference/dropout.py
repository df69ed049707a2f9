"""Inverted dropout, forward and backward, with a counter-based mask (reference).

Legend: m examples (rows), n units; ``X``, ``A``, ``dA``, ``dX`` are (m, n), C order.
    forward   A  = X  * keep / keep_prob       (inverted dropout: E[A] = X, course week 1)
    backward  dX = dA * keep / keep_prob       (the same mask, recomputed, never stored)

The mask is a pure function of (seed, step, layer, element index), so every backend draws the
same bits and the backward pass recomputes it instead of keeping it:

    mix64(z)  = splitmix64's finalizer (Stafford's "Mix13"), uint64 arithmetic mod 2^64:
                z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB;
                z ^= z >> 31
    key       = mix64(mix64(mix64(seed ^ 0x6A09E667F3BCC909) ^ step) ^ layer)
    h(e)      = mix64(key + (e + 1) * 0x9E3779B97F4A7C15)    e = i * n + j (row-major index)
    keep(e)   = (h(e) >> 40) < ceil(keep_prob * 2^24)        (top 24 bits as a uniform u)

i.e. element e keeps with probability ceil(keep_prob 2^24) / 2^24 (within 6e-8 of keep_prob);
``keep_prob = 1`` keeps everything. ``h`` is element e+1 of the splitmix64 stream started at
``key`` (Steele, Lea, Flood 2014, "Fast splittable pseudorandom number generators").
``seed``, ``step``, ``layer`` are integers in [0, 2^63). ``dX`` may be ``dA`` (in place); ``A``
may be ``X``. A dropped NaN becomes 0, as the mask multiplies through ``where``.
``A16`` (size 0: skip) receives bf16(A), the next layer's GEMM operand under mixed precision
(``reference/dense.py``).
"""

import math

import numpy as np

from .precision import to_bfloat16

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SEED_SALT = np.uint64(0x6A09E667F3BCC909)


def _mix64(z):
    """splitmix64 finalizer on a uint64 array (NumPy array arithmetic wraps mod 2^64)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _key(seed, step, layer):
    k = _mix64(np.array([seed], dtype=np.uint64) ^ _SEED_SALT)
    k = _mix64(k ^ np.uint64(step))
    return _mix64(k ^ np.uint64(layer))


def _threshold(keep_prob):
    """Integer threshold on the top 24 bits: keep iff (h >> 40) < threshold."""
    return np.uint64(math.ceil(float(keep_prob) * 16777216.0))


def _keep_mask(shape, seed, step, layer, keep_prob):
    """Boolean (m, n) mask of kept elements."""
    e = np.arange(int(np.prod(shape)), dtype=np.uint64).reshape(shape)
    h = _mix64(_key(seed, step, layer) + (e + np.uint64(1)) * _GOLDEN)
    return (h >> np.uint64(40)) < _threshold(keep_prob)


def dropout_forward(A, A16, X, seed, step, layer, keep_prob):
    """A = X * keep / keep_prob (scale applied in X's dtype); A16 = bf16(A) unless empty."""
    keep = _keep_mask(X.shape, seed, step, layer, keep_prob)
    scale = X.dtype.type(1.0 / keep_prob)
    A[...] = np.where(keep, X * scale, X.dtype.type(0))
    if A16.size:
        to_bfloat16(A16, A)


def dropout_backward(dX, dA, seed, step, layer, keep_prob):
    """dX = dA * keep / keep_prob with the forward's mask, recomputed."""
    keep = _keep_mask(dA.shape, seed, step, layer, keep_prob)
    scale = dA.dtype.type(1.0 / keep_prob)
    dX[...] = np.where(keep, dA * scale, dA.dtype.type(0))
