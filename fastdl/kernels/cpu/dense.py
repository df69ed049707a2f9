"""Dense (fully connected) layer with the activation fused (cpu).

Same math, layout and skip rules as ``reference/dense.py``. GEMMs go to NumPy's BLAS outside
Numba (``np.dot`` inside ``@njit`` needs SciPy and measured 12-17% slower, see NOTES.md);
everything around them is one jitted pass:

    forward   A = X W^T (BLAS), then ONE pass: A = g(A + b)
    backward  ONE pass over dA: dZ = dA * g'(A) in place AND db = column sums of dZ
              (float64 within L1-sized row blocks, added to db once per block), then
              dW = dZ^T X and dX = dZ W (BLAS)

The jitted passes are serial below ``config.PARALLEL_MIN_SIZE`` elements: between two GEMMs,
OpenMP threads and OpenBLAS threads would contend for the 2 cores (NOTES.md).
"""

import numpy as np

from ... import config  # before numba: it sets OMP_WAIT_POLICY
from numba import prange

from ._jit import jit, pjit
from .activations import _PARALLEL_FWD, _SERIAL_FWD, _check_code, _dg

#: Columns per task of the parallel backward pass (each task owns its db entries: no race).
_COL_BLOCK = 64
#: Elements per row block of the backward pass (fits L1 while its column sums are taken).
_BLOCK_ELEMS = 4096


@jit(inline="always")
def _dz_db_cols(dA, A, db, act, alpha, c0, c1):
    """dA[:, c0:c1] *= g'(A) in place; db[c0:c1] = its column sums (db of size 0: skip).

    Row blocks of about ``_BLOCK_ELEMS`` elements: the derivative pass writes a block, then its
    column sums are taken in float64 while it is still in L1 and added to db once per block."""
    zero = dA.dtype.type(0)
    one = dA.dtype.type(1)
    m = dA.shape[0]
    rb = max(16, _BLOCK_ELEMS // max(1, c1 - c0))
    has_db = db.shape[0] > 0
    if has_db:
        for j in range(c0, c1):
            db[j] = zero
    for r0 in range(0, m, rb):
        r1 = min(m, r0 + rb)
        for i in range(r0, r1):
            for j in range(c0, c1):
                dA[i, j] = _dg(dA[i, j], A[i, j], act, alpha, zero, one)
        if has_db:
            for j in range(c0, c1):
                s = 0.0
                for i in range(r0, r1):
                    s += dA[i, j]
                db[j] += s


def _specialize(act):
    """Serial and parallel backward passes for one activation code (a closure constant)."""

    @jit
    def serial(dA, A, db, alpha):
        _dz_db_cols(dA, A, db, act, alpha, 0, dA.shape[1])

    @pjit
    def parallel(dA, A, db, alpha):
        n = dA.shape[1]
        for c in prange((n + _COL_BLOCK - 1) // _COL_BLOCK):
            _dz_db_cols(dA, A, db, act, alpha, c * _COL_BLOCK, min(n, (c + 1) * _COL_BLOCK))

    return serial, parallel


#: Per activation code: the serial / parallel (dA, A, db, alpha) backward pass.
_SERIAL_DZ_DB, _PARALLEL_DZ_DB = zip(*(_specialize(a) for a in range(5)))


def dense_forward(A, X, W, b, activation, alpha):
    """A = g(X W^T + b): BLAS GEMM into A, then one jitted bias+activation pass in place."""
    if A.size == 0:
        return
    _check_code(activation)
    np.matmul(X, W.T, out=A)
    table = _PARALLEL_FWD if A.size >= config.PARALLEL_MIN_SIZE else _SERIAL_FWD
    table[activation](A, A, b, A.dtype.type(alpha))


def dense_backward(dX, dW, db, dA, A, X, W, activation, alpha):
    """Gradients of the layer; one jitted pass makes dZ (in ``dA``) and db, then two BLAS GEMMs.

    ``dA`` is overwritten with dZ (a workspace), as in the reference."""
    if dA.size == 0:
        dW[...] = 0
        if db.size:
            db[...] = 0
        if dX.size:
            dX[...] = 0
        return
    _check_code(activation)
    parallel = dA.size >= config.PARALLEL_MIN_SIZE and dA.shape[1] >= 2 * _COL_BLOCK
    table = _PARALLEL_DZ_DB if parallel else _SERIAL_DZ_DB
    table[activation](dA, A, db, dA.dtype.type(alpha))
    np.matmul(dA.T, X, out=dW)
    if dX.size:
        np.matmul(dA, W, out=dX)
