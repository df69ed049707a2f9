"""Gradient clipping before an optimizer update (cuda).

Same math, names and argument order as ``reference/clipping.py`` (read the legend there).
Differs in being one grid-stride launch that reads the squared norm ``sum_sq[0]`` on the
device (written by ``reductions.sum_squares`` just before), so a clipped step needs no host
synchronization. Each thread forms the coefficient from the float64 ``sum_sq`` (one float64
sqrt and division per thread, nothing per element) and casts it to the gradient dtype.
"""

import math

import numpy as np
from numba import cuda

from ._device import blocks, per_dtype, tpb


@per_dtype
def _clip_grads_kernel(T):
    @cuda.jit
    def kernel(out, grads, sum_sq, max_norm, clip_value):
        coef = T(1)
        if not math.isinf(max_norm):
            c64 = max_norm / (math.sqrt(sum_sq[0]) + 1e-6)
            if c64 < 1.0 or c64 != c64:          # clamp to 1, keep a NaN
                coef = T(c64)
        c = T(clip_value)
        for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
            g = grads[i] * coef
            if g > c:
                g = c
            elif g < -c:
                g = -c
            out[i] = g
    return kernel


def clip_grads(out, grads, sum_sq, max_norm, clip_value):
    """out = clamp(grads * min(1, max_norm / (sqrt(sum_sq) + 1e-6)), -clip_value, clip_value)."""
    _clip_grads_kernel(out.dtype)[blocks(out.shape[0]), tpb()](
        out, grads, sum_sq, np.float64(max_norm), np.float64(clip_value))
