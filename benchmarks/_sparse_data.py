"""A tf-idf-like sparse classification problem for the sparse-input benchmarks (issue 16).

``make_sparse_text(n, n_features, nnz_per_row, n_classes)``: each row is a "document" of
``nnz_per_row`` word slots. A slot is, with probability ``topic_frac``, a word of the
document's class topic (``topic_size`` words drawn for each class from a shared pool of
``pool_size`` words, so topics overlap), else a word drawn uniformly from the whole
vocabulary. Values are ``1 + Exp(0.5)`` weights, L2-normalized per row as TfidfVectorizer's
rows are; a word repeated in a row is summed (canonical CSR: sorted, unique columns, so rows
hold slightly fewer than ``nnz_per_row`` entries). ``label_noise`` of the labels are replaced
by random classes, so no model reaches 100%: accuracy differences between two trainers show.
Vectorized NumPy: 100,000 x 50,000 at 50 entries per row in about a second; memory is the
CSR plus a few arrays of its size.
"""

from __future__ import annotations

import numpy as np


def make_sparse_text(n, n_features=50_000, nnz_per_row=50, n_classes=10, topic_size=200,
                     pool_size=1000, topic_frac=0.12, label_noise=0.03, seed=0,
                     dtype=np.float32):
    """(X, y): X a scipy.sparse.csr_matrix (n, n_features) of ``dtype`` with int32 indices,
    y int64 labels in [0, n_classes)."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    pool = rng.choice(n_features, size=min(pool_size, n_features), replace=False)
    topics = np.stack([rng.choice(pool, size=min(topic_size, pool.shape[0]), replace=False)
                       for _ in range(n_classes)])
    y = rng.integers(0, n_classes, n)
    topical = rng.random((n, nnz_per_row)) < topic_frac
    words = rng.integers(0, n_features, (n, nnz_per_row))
    pick = rng.integers(0, topics.shape[1], (n, nnz_per_row))
    words[topical] = topics[np.broadcast_to(y[:, None], words.shape)[topical], pick[topical]]
    values = (1.0 + rng.exponential(0.5, (n, nnz_per_row))).astype(np.float64)
    X = sp.csr_matrix((values.ravel(), words.ravel().astype(np.int32),
                       np.arange(0, n * nnz_per_row + 1, nnz_per_row, dtype=np.int64)),
                      shape=(n, n_features))
    X.sum_duplicates()                              # sorted, unique columns (as tf-idf)
    norms = np.sqrt(np.add.reduceat(X.data ** 2, X.indptr[:-1]))
    X.data /= np.repeat(norms, np.diff(X.indptr))
    X = X.astype(dtype)
    X.indptr = X.indptr.astype(np.int32)
    noisy = rng.random(n) < label_noise
    y[noisy] = rng.integers(0, n_classes, int(noisy.sum()))
    return X, y


def csr_nbytes(X) -> int:
    """Bytes of a CSR matrix's three arrays: what it costs in memory."""
    return int(X.data.nbytes + X.indices.nbytes + X.indptr.nbytes)
