"""The first Dense layer of a model fed sparse rows (``scipy.sparse`` X, ``fastdl/data/sparse.py``).

A model has one list of ops for dense input (``Sequential._ops``). For sparse input it runs the
same network with its first op replaced by a :class:`CSRDense` standing for that Dense layer:
the same parameters (views of the Dense's W, b and their gradients), the same activation, the
same bfloat16 output copy for the next layer; only the input differs, a CSR batch
(``CSRRows``) instead of a dense matrix, and so do the kernels (``csr_dense_forward`` /
``csr_dense_backward``, ``kernels/*/sparse.py``). The model decides which list a pass uses, once
per workspace, from the kind of X (``Sequential._workspace``): no layer tests for sparsity.

Mixed precision (``compute_dtype="bfloat16"``): the sparse products are not GEMMs, so this
layer reads the float32 master weights (not their bfloat16 shadow) and computes in float32; it
writes the bfloat16 copy A16 of its output when the next Dense reads one, as the Dense would.

Only a Dense can be first for sparse input (a BatchNorm or Dropout over 50,000 sparse columns
would densify them): ``Sequential`` raises a clear error otherwise.
"""

from __future__ import annotations

from types import SimpleNamespace

from ..kernels import BF16
from .layers import Dense, Layer


class CSRDense(Layer):
    """``dense`` (a bound :class:`Dense`, the model's first op) on CSR input rows."""

    def __init__(self, dense):
        if not isinstance(dense, Dense):            # pragma: no cover - the model checks
            raise TypeError(f"CSRDense stands for a Dense layer, got {dense!r}")
        self.dense = dense
        self.input_dim, self.output_dim = dense.input_dim, dense.output_dim
        self._bk = dense._bk
        self.low_output = dense.low_output

    def make_workspace(self, m, dtype):
        d, bk = self.dense, self._bk
        return SimpleNamespace(A=bk.empty((m, d.units), dtype),
                               A16=bk.empty((m, d.units) if d.low_output else (0, 0), BF16),
                               X=None)

    def forward(self, X, ws, training):
        d = self.dense
        ws.X = X
        self._bk.k.csr_dense_forward(ws.A, ws.A16, X.data, X.indices, X.indptr, d.W, d.b,
                                     d.runtime_activation, d.runtime_alpha)
        return ws.A

    def backward(self, dA, ws, need_dX):
        d, X = self.dense, ws.X
        self._bk.k.csr_dense_backward(d.dW, d.db, dA, ws.A, X.data, X.indices, X.indptr,
                                      d.runtime_activation, d.runtime_alpha)
        return None         # the model's input: nothing consumes its gradient

    def describe(self):
        return f"{self.dense.describe()} on sparse input"

    def get_config(self):   # pragma: no cover - never saved: the Dense it stands for is
        return self.dense.get_config()
