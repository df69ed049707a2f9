"""Mini-batch assembly (reference): copy the rows of a shuffled batch into a reused buffer."""

import numpy as np


def gather_rows(out, X, idx):
    """out[i] = X[idx[i]] for i < len(idx). ``out`` has at least len(idx) rows."""
    np.take(X, idx, axis=0, out=out[: idx.shape[0]])
