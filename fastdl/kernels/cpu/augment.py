"""Image augmentation of a mini-batch: flips, shifts, Gaussian noise (cpu).

Same draws, order of operations and results as ``reference/augment.py`` (bit for bit: read its
legend). Differs in computing each output row in one jitted pass (the example's three draws,
then every output element from its source pixel and its noise value), ``prange`` over rows for
batches of at least ``config.PARALLEL_MIN_SIZE`` elements. Compiled without fast-math: the
noise's quantile function must not be contracted into FMAs or reassociated, or its bits would
differ from the reference's.
"""

import math

import numpy as np

from ... import config  # before numba: it sets OMP_WAIT_POLICY
from numba import prange

from ..reference.augment import (AUG_SALT, LN2, LOG_TERMS, NOISE_SALT, PPF_A, PPF_B, PPF_C,
                                 PPF_D, PPF_LOW, SQRT_HALF, TWO_M53)
from ._jit import jit, pjit
from .dropout import _GOLDEN, _mix64

_S12, _S32, _S63 = np.uint64(12), np.uint64(32), np.uint64(63)
_ONE, _TWO, _THREE = np.uint64(1), np.uint64(2), np.uint64(3)


def _exact(fn=None, **kw):
    """``jit`` without fast-math (see the module docstring)."""
    return jit(fn, fastmath=False, **kw)


@_exact(inline="always")
def _h(start, j):
    return _mix64(start + (np.uint64(j) + _ONE) * _GOLDEN)


@_exact(inline="always")
def _shift_draw(h, shift):
    s = np.uint64(shift)
    return np.int64(((h >> _S32) * (_TWO * s + _ONE)) >> _S32) - shift


@_exact(inline="always")
def _log(p):
    m, e = math.frexp(p)
    if m < SQRT_HALF:
        m = m * 2.0
        e -= 1
    s = (m - 1.0) / (m + 1.0)
    w = s * s
    acc = LOG_TERMS[0]
    for k in range(1, len(LOG_TERMS)):
        acc = acc * w + LOG_TERMS[k]
    return float(e) * LN2 + (2.0 * s) * acc


@_exact(inline="always")
def _normal_ppf(u):
    if u < PPF_LOW or u > 1.0 - PPF_LOW:
        p = u if u < 0.5 else 1.0 - u
        t = math.sqrt(-2.0 * _log(p))
        num = PPF_C[0]
        for k in range(1, 6):
            num = num * t + PPF_C[k]
        den = PPF_D[0]
        for k in range(1, 4):
            den = den * t + PPF_D[k]
        z = num / (den * t + 1.0)
        return z if u < 0.5 else -z
    q = u - 0.5
    r = q * q
    num = PPF_A[0]
    for k in range(1, 6):
        num = num * r + PPF_A[k]
    den = PPF_B[0]
    for k in range(1, 5):
        den = den * r + PPF_B[k]
    return (num * q) / (den * r + 1.0)


@_exact(inline="always")
def _noise(nkey, e, noise):
    """nz(e): float32(noise * Phi^-1(u_e))."""
    u = np.float64((_h(nkey, e) >> _S12) * _TWO + _ONE) * TWO_M53
    return np.float32(noise * _normal_ppf(u))


@_exact(inline="always")
def _row(out, X, i, H, W, C, key, nkey, flip, shift, noise):
    ii = np.uint64(i)
    flipped = flip and (_h(key, _THREE * ii) >> _S63) == _ONE
    dy = _shift_draw(_h(key, _THREE * ii + _ONE), shift) if shift else 0
    dx = _shift_draw(_h(key, _THREE * ii + _TWO), shift) if shift else 0
    o = out[i]
    x_row = X[i]
    n = H * W * C
    zero = out.dtype.type(0)
    for y in range(H):
        sy = y - dy
        for x in range(W):
            sx = x - dx
            inside = 0 <= sy < H and 0 <= sx < W
            if flipped:
                sx = W - 1 - sx
            base = (y * W + x) * C
            src = (sy * W + sx) * C
            for c in range(C):
                v = x_row[src + c] if inside else zero
                if noise != 0.0:
                    v = v + out.dtype.type(_noise(nkey, i * n + base + c, noise))
                o[base + c] = v


@_exact(inline="always")
def _keys(seed, epoch, batch):
    k = _mix64(np.uint64(seed) ^ AUG_SALT)
    k = _mix64(k ^ np.uint64(epoch))
    key = _mix64(k ^ np.uint64(batch))
    return key, _mix64(key ^ NOISE_SALT)


@_exact
def _augment_serial(out, X, H, W, C, seed, epoch, batch, flip, shift, noise):
    key, nkey = _keys(seed, epoch, batch)
    for i in range(X.shape[0]):
        _row(out, X, i, H, W, C, key, nkey, flip, shift, noise)


@pjit(fastmath=False)
def _augment_parallel(out, X, H, W, C, seed, epoch, batch, flip, shift, noise):
    key, nkey = _keys(seed, epoch, batch)
    for i in prange(X.shape[0]):
        _row(out, X, i, H, W, C, key, nkey, flip, shift, noise)


def augment_images(out, X, height, width, channels, seed, epoch, batch, flip, shift, noise):
    """out = the augmented batch X, in one jitted pass per row (``out`` may be ``X`` only when
    flip and shift are off: each element then reads only itself)."""
    if X.shape[0] == 0 or X.shape[1] == 0:
        return
    f = _augment_parallel if X.size >= config.PARALLEL_MIN_SIZE else _augment_serial
    f(out, X, int(height), int(width), int(channels), np.uint64(seed), np.uint64(epoch),
      np.uint64(batch), bool(flip), int(shift), float(noise))
