"""Dense (fully connected) layer, forward and backward, with the activation fused (reference).

Legend: m examples (rows), n_in inputs, n_out units.
    X  (m, n_in)   input        W (n_out, n_in) weights (PyTorch nn.Linear / course W[l] layout)
    b  (n_out,)    bias         A (m, n_out)    output g(X W^T + b)
Backward (course week 1, "backpropagation"; scaled by 1/m already inside dA from the loss):
    dZ = dA * g'(Z)     dW = dZ^T X     db = sum_rows dZ     dX = dZ W
A bias or dX of size 0 means "no bias" / "skip dX" (first layer: nothing consumes it).
"""

import numpy as np

from .activations import activation_backward, activation_forward


def dense_forward(A, X, W, b, activation, alpha):
    """A = g(X W^T + b). GEMM to BLAS, then bias and activation."""
    np.matmul(X, W.T, out=A)
    if b.size:
        A += b
    activation_forward(A, A, activation, alpha)


def dense_backward(dX, dW, db, dA, A, X, W, activation, alpha):
    """Gradients of the layer. ``dA`` is overwritten with dZ (it is a workspace)."""
    activation_backward(dA, dA, A, activation, alpha)
    np.matmul(dA.T, X, out=dW)
    if db.size:
        np.sum(dA, axis=0, out=db)
    if dX.size:
        np.matmul(dA, W, out=dX)
