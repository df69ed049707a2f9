"""Mini-batch assembly (cuda): copy the rows of a shuffled batch into a reused device buffer.

Same as ``reference/batching.py``; differs in running one thread per copied element with the
index array on the device (the private kernel also takes an offset into a whole epoch's order,
so the epoch launcher gathers each batch without slicing).
"""

from numba import cuda

import numpy as np

from ._device import blocks, scratch, tpb
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
