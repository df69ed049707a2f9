"""Sparse input of the first Dense layer: ``X W^T`` and ``dZ^T X`` with X in CSR (reference).

Legend (as ``dense.py``): m examples (rows), n_in inputs, n_out units.
    X  (m, n_in) in CSR: row r holds the entries k = indptr[r] .. indptr[r+1]-1, each
       adding data[k] at column indices[k] (X[r, indices[k]] += data[k]). Column indices lie in
       [0, n_in) in any order; a column repeated within a row adds (scipy.sparse's meaning of
       a non-canonical matrix). indptr[0] need not be 0 (a row range of a larger matrix).
       m = A.shape[0] = len(indptr) - 1.
    W  (n_out, n_in)   b (n_out,)   A (m, n_out) = g(X W^T + b)
Backward (as ``dense.py``; dA is already scaled by the loss):
    dZ = dA * g'(A) (written into dA)     db = sum_rows dZ     dW = dZ^T X
and no dX: a sparse X is the model's input, so this is always the first layer and nothing
consumes its input gradient (``fastdl/nn/sparse_input.py``).

Entries X does not store are exact zeros: a NaN or inf in a column of W that a row does not
store does not reach that row's output (scipy's sparse product behaves the same; a dense GEMM
on the densified X would give NaN). fastdl's inputs are finite (checked at the edge).

Mixed precision: ``A16 = bf16(A)`` unless it has size 0, as ``dense_forward`` (the next Dense
then reads bfloat16); the sparse products themselves compute in A's dtype with W in its own
(float32 master weights), never in bfloat16 (they are not GEMMs).

Why these kernels (issue 16): scikit-learn's MLP accepts scipy.sparse X; densified, a batch
of 256 rows of 50,000 tf-idf features is 51 MB of zeros. Here the work is O(nnz * n_out) for
the products, plus writing dW (dense: the optimizer updates every weight).
"""

import numpy as np

from .activations import activation_backward, activation_forward
from .precision import to_bfloat16


def csr_dense_forward(A, A16, data, indices, indptr, W, b, activation, alpha):
    """A = g(X W^T + b) for X in CSR; A16 = bf16(A) unless A16 has size 0. Row by row:
    A[r] = sum over the row's entries k of data[k] * W[:, indices[k]]."""
    for r in range(A.shape[0]):
        k = slice(indptr[r], indptr[r + 1])
        np.matmul(W[:, indices[k]], data[k], out=A[r])
    if b.size:
        A += b
    activation_forward(A, A, activation, alpha)
    if A16.size:
        to_bfloat16(A16, A)


def csr_dense_backward(dW, db, dA, A, data, indices, indptr, activation, alpha):
    """dZ = dA * g'(A) into ``dA``; db = sum_rows dZ (db of size 0: skip); dW = dZ^T X, i.e.
    dW[:, indices[k]] += data[k] * dZ[r] for every entry k of every row r (repeated columns
    add: ``np.add.at``)."""
    activation_backward(dA, dA, A, activation, alpha)
    if db.size:
        np.sum(dA, axis=0, out=db)
    dW[...] = 0
    dW_by_column = dW.T                         # (n_in, n_out) view: row j is column j of dW
    for r in range(dA.shape[0]):
        k = slice(indptr[r], indptr[r + 1])
        np.add.at(dW_by_column, indices[k], np.multiply.outer(data[k], dA[r]))
