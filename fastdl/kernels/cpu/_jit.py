"""Numba decorators for cpu kernels, configured from ``fastdl.config``.

``jit``  : serial @njit with the safe fast-math subset and the JIT cache when writable.
``pjit`` : the same with ``parallel=True`` (use for large, memory-bound element-wise work).
"""

from numba import njit

from ... import config


def jit(fn=None, **kw):
    opts = dict(fastmath=set(config.FASTMATH), cache=config.JIT_CACHE, nogil=True)
    opts.update(kw)
    return njit(**opts)(fn) if fn is not None else njit(**opts)


def pjit(fn=None, **kw):
    return jit(fn, parallel=True, **kw)
