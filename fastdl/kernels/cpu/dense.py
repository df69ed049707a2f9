"""Dense (fully connected) layer with the activation fused (cpu).

Same math, layout and skip rules as ``reference/dense.py``. GEMMs go to the provider layer
``blas.py`` (NumPy's BLAS for float operands, oneDNN for bfloat16 ones; ``np.dot`` inside
``@njit`` needs SciPy and measured 12-17% slower, see docs/design.md); around them:

    forward   A = X W^T (gemm), then bias + activation in place (``activations``: one jitted
              pass, which also writes A16; tanh and large sigmoids through NumPy's SIMD ufuncs)
    backward  ONE jitted pass over dA: dZ = dA * g'(A) in place AND db = column sums of dZ
              (AND dZ16 = bf16(dZ) under mixed precision), then dW = dZ^T X and dX = dZ W (gemm)

db is summed in row blocks of ``_DB_BLOCK`` rows: each block's column sums accumulate in the
dtype in a scratch row (the first n_out entries of ``dW``, which the GEMM overwrites next), then
are added to db, so float32 error grows with ``_DB_BLOCK + m / _DB_BLOCK`` instead of m (the
reference's ``np.sum(axis=0)`` adds row after row). Both loops are row-major and vectorize.

The jitted passes are serial below ``config.PARALLEL_MIN_SIZE`` elements: between two GEMMs,
OpenMP threads and OpenBLAS threads would contend for the 2 cores (docs/design.md). The parallel pass
splits columns, so every task owns its db entries (no race).
"""

import numpy as np

from ... import config  # before numba: it sets OMP_WAIT_POLICY
from numba import prange

from ._bf16 import bf16
from ._jit import jit, pjit
from .activations import _bias_activation, _check_code, _dg
from .blas import gemm


#: Columns per task of the parallel backward pass.
_COL_BLOCK = 64
#: Rows per db partial sum (see the module docstring).
_DB_BLOCK = 256


@jit(inline="always")
def _dz_db_cols(dA, A, db, part, dZ16, act, alpha, c0, c1):
    """dA[:, c0:c1] *= g'(A) in place; db[c0:c1] = its column sums (db of size 0: skip);
    ``part[c0:c1]`` is scratch for the block sums; dZ16[:, c0:c1] = bf16(dZ) (size 0: skip),
    each row segment right after it is computed."""
    zero = dA.dtype.type(0)
    one = dA.dtype.type(1)
    m = dA.shape[0]
    has_db = db.shape[0] > 0
    has16 = dZ16.shape[0] > 0
    tot = db[c0:c1]
    acc = part[c0:c1]
    if has_db:
        for j in range(c1 - c0):
            tot[j] = zero
    for r0 in range(0, m, _DB_BLOCK):
        if has_db:
            for j in range(c1 - c0):
                acc[j] = zero
        for i in range(r0, min(m, r0 + _DB_BLOCK)):
            dz = dA[i, c0:c1]
            a = A[i, c0:c1]
            for j in range(c1 - c0):
                dz[j] = _dg(dz[j], a[j], act, alpha, zero, one)
            if has16:
                d16 = dZ16[i, c0:c1]
                for j in range(c1 - c0):
                    d16[j] = bf16(dz[j])
            if has_db:
                for j in range(c1 - c0):
                    acc[j] += dz[j]
        if has_db:
            for j in range(c1 - c0):
                tot[j] += acc[j]


def _specialize(act):
    """Serial and parallel backward passes for one activation code (a closure constant)."""

    @jit
    def serial(dA, A, db, part, dZ16, alpha):
        _dz_db_cols(dA, A, db, part, dZ16, act, alpha, 0, dA.shape[1])

    @pjit
    def parallel(dA, A, db, part, dZ16, alpha):
        n = dA.shape[1]
        for c in prange((n + _COL_BLOCK - 1) // _COL_BLOCK):
            _dz_db_cols(dA, A, db, part, dZ16, act, alpha, c * _COL_BLOCK,
                        min(n, (c + 1) * _COL_BLOCK))

    return serial, parallel


#: Per activation code: the serial / parallel (dA, A, db, part, dZ16, alpha) backward pass.
_SERIAL_DZ_DB, _PARALLEL_DZ_DB = zip(*(_specialize(a) for a in range(5)))


def dense_forward(A, A16, X, W, b, activation, alpha):
    """A = g(X W^T + b): GEMM into A, then bias+activation in place (one jitted pass that also
    writes A16, or NumPy's SIMD tanh/exp)."""
    if A.size == 0:
        return
    _check_code(activation)
    gemm(A, X, W, False, True)
    _bias_activation(A, b, activation, alpha, A16)


def dense_backward(dX, dW, db, dZ16, dA, A, X, W, activation, alpha):
    """Gradients of the layer; one jitted pass makes dZ (in ``dA``), db (block sums, ``dW``
    as scratch) and dZ16, then two GEMMs (reading dZ16 when it is not empty). ``dA`` is
    overwritten with dZ, as in the reference."""
    if dA.size == 0:
        dW[...] = 0
        if db.size:
            db[...] = 0
        if dX.size:
            dX[...] = 0
        return
    _check_code(activation)
    n = dA.shape[1]
    if db.size == 0:
        part = db
    elif dW.size >= n:
        part = dW.reshape(-1)[:n]  # a copy (still fine as scratch) if dW is strided
    else:  # a layer without inputs: no room in dW
        part = np.empty(n, dA.dtype)
    parallel = dA.size >= config.PARALLEL_MIN_SIZE and n >= 2 * _COL_BLOCK
    table = _PARALLEL_DZ_DB if parallel else _SERIAL_DZ_DB
    table[activation](dA, A, db, part, dZ16, dA.dtype.type(alpha))
    dZ = dZ16 if dZ16.size else dA
    gemm(dW, dZ, X, True, False)
    if dX.size:
        gemm(dX, dZ, W, False, False)
