"""Sparse input of the first Dense layer, X in CSR (cpu).

Same math, layout and contract as ``reference/sparse.py``; differs in the order of the work,
chosen by where W and dW lie in memory. W is (n_out, n_in) row-major, so a column W[:, j] (what
one entry of X multiplies) is strided across n_out rows; the kernels therefore go unit by unit
(rows of W and dW), which also makes them race-free: each task owns whole rows of dW and whole
column blocks of A, so no two threads write the same element and no partials are needed.

    forward   the batch is first regrouped by column (a counting sort into CSC: ``colptr``,
              ``rows``, ``vals``, O(nnz + n_in), serial), then per block of ``_UNITS`` units
              the block's rows of W are read in increasing column order, once per batch,
              while A[i, block] accumulates: W streams from memory instead of being gathered
              at random. Then bias + activation (+ A16) in place (``activations``).
    backward  one jitted pass makes dZ (in dA) and db (``dense``'s pass), dZ is transposed
              into scratch (dZ[:, u] contiguous), and per unit u: dW[u] = 0, then
              dW[u, indices[k]] += data[k] * dZ[r, u] for the entries of every row r whose
              dZ[r, u] is not 0 (relu zeroes about half). dW[u] (n_in values) stays in cache
              while it is scattered into.

Measured (2 threads, AMD EPYC Zen 3, m=256, n_in=50,000, n_out=256, 50 entries per row,
float32): forward 6.5 ms (row-order gathers from W: 17.5 ms), backward 4.7 ms (a column-order
variant writing dW column by column: 13.4 ms); a whole-W Adam step over the same 12.8M
weights takes ~12 ms, so the first layer costs about what the optimizer does. Inside a fit
(W and dW cold after the optimizer's pass; ``benchmarks/sparse_check.py --profile``, 100,000
rows): forward 6.8 ms, backward 11.4 ms, Adam 13.7 ms of a 38.8 ms step, all memory-bound.

Scratch (the CSC copy of the batch, dZ^T) is private to this file, per thread, grown as
needed and reused: it is the kernels' own working memory, not an input or output.

Parallel (``prange`` over unit blocks / units) when ``n_out * n_in >=
config.PARALLEL_MIN_SIZE``; serial below (thread start-up would not pay).
"""

import threading

import numpy as np

from ... import config  # before numba: it sets OMP_WAIT_POLICY
from numba import prange

from ._jit import jit, pjit
from .activations import _NO16, _bias_activation, _check_code
from .dense import _COL_BLOCK, _PARALLEL_DZ_DB, _SERIAL_DZ_DB

#: Units per task of the forward pass: the block's W rows are read side by side, so each
#: entry of the batch is loaded once per block instead of once per unit.
_UNITS = 16

_tls = threading.local()


def _scratch(name, n, dtype):
    """A reusable 1-D buffer of at least n elements, private to this thread."""
    bufs = getattr(_tls, "bufs", None)
    if bufs is None:
        bufs = _tls.bufs = {}
    key = (name, np.dtype(dtype))
    buf = bufs.get(key)
    if buf is None or buf.shape[0] < n:
        buf = bufs[key] = np.empty(max(int(n), 1), dtype)
    return buf[:n]


@jit
def _to_csc(colptr, rows, vals, cols, data, indices, indptr, m):
    """Counting sort of the batch's entries by column: column j's entries are
    rows/vals[colptr[j]:colptr[j+1]] in row order; cols[:ncols] lists the columns that have
    entries, increasing. Returns ncols."""
    n = colptr.shape[0] - 1
    for j in range(n + 1):
        colptr[j] = 0
    for p in range(indptr[0], indptr[m]):
        colptr[indices[p] + 1] += 1
    ncols = 0
    for j in range(n):
        if colptr[j + 1]:
            cols[ncols] = j
            ncols += 1
        colptr[j + 1] += colptr[j]
    for i in range(m):                      # colptr[j] is column j's fill cursor
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            q = colptr[j]
            rows[q] = i
            vals[q] = data[p]
            colptr[j] = q + 1
    for j in range(n, 0, -1):               # cursors ended at the next column's start
        colptr[j] = colptr[j - 1]
    colptr[0] = 0
    return ncols


@jit(inline="always")
def _forward_units(A, colptr, rows, vals, cols, ncols, W, w, u0, u1):
    """A[:, u0:u1] = X W[u0:u1]^T, X by column; ``w`` is scratch of >= u1 - u0 entries."""
    nu = u1 - u0
    zero = A.dtype.type(0)
    for i in range(A.shape[0]):
        a = A[i]
        for t in range(nu):
            a[u0 + t] = zero
    for c in range(ncols):
        j = cols[c]
        for t in range(nu):
            w[t] = W[u0 + t, j]
        for p in range(colptr[j], colptr[j + 1]):
            a = A[rows[p]]
            v = vals[p]
            for t in range(nu):
                a[u0 + t] += v * w[t]


@jit
def _forward_serial(A, colptr, rows, vals, cols, ncols, W):
    n_out = A.shape[1]
    w = np.empty(_UNITS, A.dtype)
    for u0 in range(0, n_out, _UNITS):
        _forward_units(A, colptr, rows, vals, cols, ncols, W, w, u0, min(n_out, u0 + _UNITS))


@pjit
def _forward_parallel(A, colptr, rows, vals, cols, ncols, W):
    n_out = A.shape[1]
    for blk in prange((n_out + _UNITS - 1) // _UNITS):
        w = np.empty(_UNITS, A.dtype)
        u0 = blk * _UNITS
        _forward_units(A, colptr, rows, vals, cols, ncols, W, w, u0, min(n_out, u0 + _UNITS))


@jit(inline="always")
def _backward_unit(dW, dZt, data, indices, indptr, u):
    """dW[u] = (dZ^T X)[u] by scattering the rows' entries, weighted by dZ[r, u]."""
    row = dW[u]
    z = dZt[u]
    zero = row.dtype.type(0)
    for j in range(row.shape[0]):
        row[j] = zero
    for i in range(z.shape[0]):
        zi = z[i]
        if zi != zero:                      # data is finite: a zero dZ adds nothing
            for p in range(indptr[i], indptr[i + 1]):
                row[indices[p]] += data[p] * zi


@jit
def _backward_serial(dW, dZt, data, indices, indptr):
    for u in range(dW.shape[0]):
        _backward_unit(dW, dZt, data, indices, indptr, u)


@pjit
def _backward_parallel(dW, dZt, data, indices, indptr):
    for u in prange(dW.shape[0]):
        _backward_unit(dW, dZt, data, indices, indptr, u)


def csr_dense_forward(A, A16, data, indices, indptr, W, b, activation, alpha):
    """A = g(X W^T + b), X in CSR: the batch regrouped by column, then unit blocks of W read
    in column order (module docstring); bias + activation (+ A16) in place."""
    m, n_out = A.shape
    if m == 0:
        return
    _check_code(activation)
    n_in = W.shape[1]
    nnz = int(indptr[m]) - int(indptr[0])
    colptr = _scratch("colptr", n_in + 1, np.int64)
    rows = _scratch("rows", nnz, np.int64)
    vals = _scratch("vals", nnz, A.dtype)
    cols = _scratch("cols", n_in, np.int64)
    ncols = _to_csc(colptr, rows, vals, cols, data, indices, indptr, m)
    big = n_out * n_in >= config.PARALLEL_MIN_SIZE and n_out > _UNITS
    (_forward_parallel if big else _forward_serial)(A, colptr, rows, vals, cols, ncols, W)
    _bias_activation(A, b, activation, alpha, A16)


def csr_dense_backward(dW, db, dA, A, data, indices, indptr, activation, alpha):
    """dZ and db in one jitted pass (as ``dense_backward``), then dW = dZ^T X unit by unit
    (module docstring). ``dA`` is overwritten with dZ, as in the reference."""
    m, n = dA.shape
    if m == 0:
        dW[...] = 0
        if db.size:
            db[...] = 0
        return
    _check_code(activation)
    part = db if db.size == 0 else dW.reshape(-1)[:n]   # db's block sums; dW is written next
    parallel = dA.size >= config.PARALLEL_MIN_SIZE and n >= 2 * _COL_BLOCK
    (_PARALLEL_DZ_DB if parallel else _SERIAL_DZ_DB)[activation](
        dA, A, db, part, _NO16, dA.dtype.type(alpha))
    dZt = _scratch("dZt", n * m, dA.dtype).reshape(n, m)
    np.copyto(dZt, dA.T)
    big = dW.size >= config.PARALLEL_MIN_SIZE and n > 1
    (_backward_parallel if big else _backward_serial)(dW, dZt, data, indices, indptr)
