"""Cases of ``fastdl/kernels/*/batching.py`` (see ``tests/kernel_cases/__init__.py``)."""

import numpy as np

from fastdl.kernels import BF16

from . import EXACT, KernelCase
from .sparse import csr


def _gather(d, shape, k, extra_rows=3, low=False):
    """A batch of k row indices (repeats, the last row included) into a buffer with
    ``extra_rows`` more rows than the batch: those must stay untouched. ``low``: float32 rows
    gathered into a bfloat16 batch (rounded while gathering; mixed precision)."""
    X = d.hostile(shape, 100.0)
    idx = d.rng.integers(0, shape[0], size=k).astype(np.int64)
    if k:
        idx[-1] = shape[0] - 1
    low = low and d.low
    return dict(out=d.out((k + extra_rows,) + shape[1:], BF16 if low else None), X=X, idx=idx)


def _gather_csr(d, m, n, k, layout="messy32", extra=3):
    """A batch of k rows of an m x n CSR matrix (``sparse.csr``: empty rows, a full row,
    repeated and unsorted columns, a row range) by row indices with repeats and the last row,
    into buffers ``extra`` entries longer than the batch needs: those must stay untouched."""
    data, indices, indptr = csr(d, m, n, layout)
    idx = d.rng.integers(0, m, size=k).astype(np.int64)
    if k:
        idx[-1] = m - 1
    cap = int((indptr[idx + 1] - indptr[idx]).sum()) + extra
    return dict(out_data=d.out((cap,)), out_indices=d.out((cap,), indices.dtype),
                out_indptr=d.out((k + 1,), np.int64), data=data, indices=indices,
                indptr=indptr, idx=idx)


CASES = {
    "gather_rows": KernelCase(
        draw=_gather,
        # 1-D X (labels), one row, an empty batch, 3-D rows
        sim=[((9, 5), 6), ((9,), 7), ((1, 1), 1), ((4, 3), 0), ((9, 5), 6, 3, True)],
        cpu=[((1,), 3), ((17,), 19), ((1, 1), 3), ((9, 7), 11), ((6, 2, 3), 8), ((5, 4), 0),
             ((9, 7), 11, 3, True), ((1, 1), 3, 0, True), ((5, 4), 0, 3, True)],
        parallel=[((5000, 7), 3001), ((5000, 7), 3001, 3, True)],
        outputs=("out",), rtol=EXACT, dtypes=(np.float32, np.float64, np.int64),
        cpu_parallel=True),
    "gather_csr_rows": KernelCase(
        draw=_gather_csr,
        # batch 1, an empty batch, as many rows as X, buffers without spare entries (extra
        # 0), each layout
        sim=[(9, 7, 5), (1, 4, 1, "canon32"), (6, 5, 0, "range64"), (8, 6, 8, "messy64", 0),
             (7, 9, 4, "range32")],
        cpu=[(1, 1, 1), (1, 4, 3, "canon64"), (5, 4, 0), (17, 23, 19, "range32"),
             (17, 23, 19, "canon32", 0), (40, 9, 33, "range64"), (40, 9, 33, "messy64")],
        # > PARALLEL_TEST_SIZE entries and rows: the copy stays serial (one jitted loop)
        parallel=[(600, 50, 700), (600, 50, 2500, "range64")],
        outputs=("out_data", "out_indices", "out_indptr"), rtol=EXACT),
}
