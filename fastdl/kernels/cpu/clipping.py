"""Gradient clipping before an optimizer update (cpu).

Same math, names and argument order as ``reference/clipping.py`` (read the legend there). How
this differs: one jitted pass, ``out[i] = clamp(g[i] * coef, -c, c)``, the clamp written as two
compares so a NaN passes through as in ``np.clip``; buffers of at least
``config.PARALLEL_MIN_SIZE`` elements run over blocks under ``prange`` (as ``optim.py``).
"""

import math

from numba import prange

from ... import config
from ._jit import jit, pjit

_BLOCK = 1 << 16
_NORM_EPS = 1e-6


@jit
def _clip_loop(out, grads, coef, c):
    for i in range(out.shape[0]):
        g = grads[i] * coef
        if g > c:
            g = c
        elif g < -c:
            g = -c
        out[i] = g


@jit
def _coef(sum_sq, max_norm):
    if math.isinf(max_norm):
        return 1.0
    coef = max_norm / (math.sqrt(sum_sq) + _NORM_EPS)
    if coef > 1.0:
        coef = 1.0
    return coef


@jit
def _clip_serial(out, grads, sum_sq, max_norm, clip_value):
    t = grads.dtype.type
    _clip_loop(out, grads, t(_coef(sum_sq[0], max_norm)), t(clip_value))


@pjit
def _clip_parallel(out, grads, sum_sq, max_norm, clip_value):
    t = grads.dtype.type
    coef, c = t(_coef(sum_sq[0], max_norm)), t(clip_value)
    n = out.shape[0]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo, hi = b * _BLOCK, min((b + 1) * _BLOCK, n)
        _clip_loop(out[lo:hi], grads[lo:hi], coef, c)


def clip_grads(out, grads, sum_sq, max_norm, clip_value):
    """out = clamp(grads * min(1, max_norm / (sqrt(sum_sq) + 1e-6)), -clip_value, clip_value)."""
    f = _clip_parallel if out.shape[0] >= config.PARALLEL_MIN_SIZE else _clip_serial
    f(out, grads, sum_sq, float(max_norm), float(clip_value))
