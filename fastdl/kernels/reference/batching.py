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


def gather_csr_rows(out_data, out_indices, out_indptr, data, indices, indptr, idx):
    """The CSR rows ``idx`` of X (data, indices, indptr as in ``sparse.py``), in that order,
    into reused buffers: out_indptr[0] = 0 and out_indptr[i + 1] = out_indptr[i] + the length
    of row idx[i]; out_data / out_indices[out_indptr[i]:out_indptr[i + 1]] = row idx[i]'s
    entries as stored. ``out_indptr`` has len(idx) + 1 entries; ``out_data`` and
    ``out_indices`` hold at least the total length (the caller sizes them once, for the
    longest batch); entries past it are left as they were."""
    out_indptr[0] = 0
    for i, r in enumerate(idx):
        s, e = indptr[r], indptr[r + 1]
        o = out_indptr[i]
        out_data[o:o + e - s] = data[s:e]
        out_indices[o:o + e - s] = indices[s:e]
        out_indptr[i + 1] = o + e - s
