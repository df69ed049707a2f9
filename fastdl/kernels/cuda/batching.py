"""Mini-batch assembly (cuda): copy the rows of a shuffled batch into a reused device buffer.

Same as ``reference/batching.py``; differs in running one thread per copied element with the
index array on the device (the private kernel also takes an offset into a whole epoch's order,
so the epoch launcher gathers each batch without slicing).
"""

from numba import cuda, int64

import numpy as np

from ._device import SHARED_SIZE, blocks, scratch, tpb
from .precision import to_bfloat16


@cuda.jit
def _gather_rows_kernel(out, X, order, start, count):
    """out[r, c] = X[order[start + r], c] for r < count."""
    n = X.shape[1]
    for i in range(cuda.grid(1), count * n, cuda.gridsize(1)):
        r = i // n
        c = i - r * n
        out[r, c] = X[order[start + r], c]


def gather_rows(out, X, idx):
    """out[i] = X[idx[i]] for i < len(idx). ``out`` has at least len(idx) rows; ``idx`` is a
    device int array. 1-D ``X`` (labels) is handled as one column. A uint16 ``out`` with a
    float32 ``X`` receives bfloat16 rows (gathered into float32 scratch, then converted)."""
    count = idx.shape[0]
    if np.dtype(out.dtype) == np.uint16 and np.dtype(X.dtype) != np.uint16:
        if count and X.shape[1]:
            n = count * X.shape[1]
            rows = scratch("gather_bf16", n, X.dtype)[:n].reshape(count, X.shape[1])
            _gather_rows_kernel[blocks(count * X.shape[1]), tpb()](rows, X, idx, 0, count)
            to_bfloat16(out[:count], rows)
        return
    if X.ndim == 1:
        X = X.reshape(X.shape[0], 1)
        out = out.reshape(out.shape[0], 1)
    if count and X.shape[1]:
        _gather_rows_kernel[blocks(count * X.shape[1]), tpb()](out, X, idx, 0, count)


@cuda.jit
def _csr_offsets_kernel(out_indptr, indptr, idx):
    """One block: out_indptr[0] = 0, out_indptr[i + 1] = out_indptr[i] + len(row idx[i]).
    Each thread sums a contiguous chunk of the batch's rows, thread 0 turns the chunk sums
    into starting offsets in shared memory, then each thread writes its chunk's running
    sums."""
    sh = cuda.shared.array(SHARED_SIZE, int64)
    t = cuda.threadIdx.x
    nt = cuda.blockDim.x
    k = idx.shape[0]
    chunk = (k + nt - 1) // nt
    lo = min(k, t * chunk)
    hi = min(k, lo + chunk)
    s = 0
    for i in range(lo, hi):
        s += indptr[idx[i] + 1] - indptr[idx[i]]
    sh[t] = s
    cuda.syncthreads()
    if t == 0:
        run = 0
        for q in range(nt):
            v = sh[q]
            sh[q] = run
            run += v
        out_indptr[0] = 0
    cuda.syncthreads()
    run = sh[t]
    for i in range(lo, hi):
        run += indptr[idx[i] + 1] - indptr[idx[i]]
        out_indptr[i + 1] = run


@cuda.jit
def _csr_copy_kernel(out_data, out_indices, out_indptr, data, indices, indptr, idx):
    """Row idx[i]'s entries to out_*[out_indptr[i]:]: a block per row (grid-stride), its
    threads over the entries."""
    for i in range(cuda.blockIdx.x, idx.shape[0], cuda.gridDim.x):
        s = indptr[idx[i]]
        n = indptr[idx[i] + 1] - s
        o = out_indptr[i]
        for q in range(cuda.threadIdx.x, n, cuda.blockDim.x):
            out_data[o + q] = data[s + q]
            out_indices[o + q] = indices[s + q]


def gather_csr_rows(out_data, out_indices, out_indptr, data, indices, indptr, idx):
    """The CSR rows ``idx`` into reused device buffers (``reference/batching.py``): one
    single-block kernel for the row offsets, one copying the entries (device arrays; the
    caller sized ``out_data``/``out_indices`` for its longest batch)."""
    k = idx.shape[0]
    _csr_offsets_kernel[1, tpb()](out_indptr, indptr, idx)
    if k:
        _csr_copy_kernel[blocks(k, 1), tpb()](out_data, out_indices, out_indptr, data, indices,
                                              indptr, idx)
