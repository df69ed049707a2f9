"""Mini-batch assembly (cpu): copy the rows of a shuffled batch into a reused buffer.

Same contract as ``reference/batching.py``; a jitted row copy (``np.take(..., out=)`` checks
and dispatches per call), ``prange`` over rows for batches of at least
``config.PARALLEL_MIN_SIZE`` elements.
"""

import numpy as np

from ... import config  # before numba: it sets OMP_WAIT_POLICY
from numba import prange

from ._bf16 import bf16
from ._jit import jit, pjit


@jit
def _gather_serial(out, X, idx):
    for i in range(idx.shape[0]):
        o = out[i]
        x = X[idx[i]]
        for j in range(o.shape[0]):
            o[j] = x[j]


@pjit
def _gather_parallel(out, X, idx):
    for i in prange(idx.shape[0]):
        o = out[i]
        x = X[idx[i]]
        for j in range(o.shape[0]):
            o[j] = x[j]


@jit
def _gather_narrow_serial(out, X, idx):
    for i in range(idx.shape[0]):
        o = out[i]
        x = X[idx[i]]
        for j in range(o.shape[0]):
            o[j] = bf16(x[j])


@pjit
def _gather_narrow_parallel(out, X, idx):
    for i in prange(idx.shape[0]):
        o = out[i]
        x = X[idx[i]]
        for j in range(o.shape[0]):
            o[j] = bf16(x[j])


def gather_rows(out, X, idx):
    """out[i] = X[idx[i]] for i < len(idx), as a jitted row copy (rows of any ndim: the
    trailing axes are viewed as one; a 1-D ``X`` is a column). A uint16 ``out`` with a float32
    ``X`` receives bfloat16 rows, rounded in the same copy (``_bf16.py``)."""
    k = idx.shape[0]
    if k == 0:
        return
    if X.ndim != 2:
        if not out.flags.c_contiguous:  # reshape would copy: write through NumPy instead
            np.take(X, idx, axis=0, out=out[:k])
            return
        out = out.reshape(out.shape[0], -1) if out.ndim != 1 else out.reshape(-1, 1)
        X = X.reshape(X.shape[0], -1) if X.ndim != 1 else X.reshape(-1, 1)
    big = k * X.shape[1] >= config.PARALLEL_MIN_SIZE
    if out.dtype == np.uint16 and X.dtype != np.uint16:
        f = _gather_narrow_parallel if big else _gather_narrow_serial
    else:
        f = _gather_parallel if big else _gather_serial
    f(out, X, idx)
