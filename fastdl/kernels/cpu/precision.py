"""bfloat16 conversions (cpu): jitted loops, bit for bit the reference's rounding.

Same math and storage as ``reference/precision.py``. One vectorized pass (``_bf16.bf16``);
``prange`` over blocks above ``config.PARALLEL_MIN_SIZE`` elements. These are the stand-alone
conversions (a model's input batch when it cannot be converted while it is gathered, an
unfused Activation layer, refreshing the weight shadow after ``set_weights``); the training
step's conversions are fused into the kernels that write the data.
"""

import numpy as np
from numba import prange

from ... import config
from ._bf16 import bf16, widen
from ._jit import jit, pjit

_BLOCK = 1 << 16


@jit
def _narrow(out, x):
    for i in range(x.shape[0]):
        out[i] = bf16(x[i])


@pjit
def _narrow_parallel(out, x):
    n = x.shape[0]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo = b * _BLOCK
        hi = min(n, lo + _BLOCK)
        _narrow(out[lo:hi], x[lo:hi])


@jit
def _widen(out, x):
    for i in range(x.shape[0]):
        out[i] = widen(x[i])


@pjit
def _widen_parallel(out, x):
    n = x.shape[0]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo = b * _BLOCK
        hi = min(n, lo + _BLOCK)
        _widen(out[lo:hi], x[lo:hi])


def _flat(a):
    """A 1-D view (C-contiguous input) or a contiguous copy for the read-only operand."""
    return a.reshape(-1) if a.flags.c_contiguous else np.ascontiguousarray(a).reshape(-1)


def to_bfloat16(out, x):
    """out = bfloat16(x) by one jitted pass (float32 ``x``; ``out`` uint16, C-contiguous)."""
    if x.size == 0:
        return
    src, dst = _flat(x), out.reshape(-1)
    (_narrow_parallel if src.shape[0] >= config.PARALLEL_MIN_SIZE else _narrow)(dst, src)


def from_bfloat16(out, x):
    """out = x widened exactly by one jitted pass (``out`` float32 or float64, C-contiguous)."""
    if x.size == 0:
        return
    src, dst = _flat(x), out.reshape(-1)
    (_widen_parallel if src.shape[0] >= config.PARALLEL_MIN_SIZE else _widen)(dst, src)
