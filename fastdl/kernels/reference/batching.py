"""Mini-batch assembly (reference): copy the rows of a shuffled batch into a reused buffer."""

import numpy as np

from .precision import to_bfloat16


def gather_rows(out, X, idx):
    """out[i] = X[idx[i]] for i < len(idx). ``out`` has at least len(idx) rows. A uint16
    ``out`` with a float32 ``X`` receives the rows rounded to bfloat16 (the input of a
    mixed-precision first layer, ``reference/precision.py``); otherwise dtypes match."""
    k = idx.shape[0]
    if out.dtype == np.uint16 and X.dtype != np.uint16:
        to_bfloat16(out[:k], np.take(X, idx, axis=0))
        return
    np.take(X, idx, axis=0, out=out[:k])
