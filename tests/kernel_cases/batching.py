"""Cases of ``fastdl/kernels/*/batching.py`` (see ``tests/kernel_cases/__init__.py``)."""

import numpy as np

from fastdl.kernels import BF16

from . import EXACT, KernelCase


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
}
