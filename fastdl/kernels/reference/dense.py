"""Dense (fully connected) layer, forward and backward, with the activation fused (reference).

Legend: m examples (rows), n_in inputs, n_out units.
    X  (m, n_in)   input        W (n_out, n_in) weights (PyTorch nn.Linear / course W[l] layout)
    b  (n_out,)    bias         A (m, n_out)    output g(X W^T + b)
Backward (course week 1, "backpropagation"; scaled by 1/m already inside dA from the loss):
    dZ = dA * g'(Z)     dW = dZ^T X     db = sum_rows dZ     dX = dZ W
A bias or dX of size 0 means "no bias" / "skip dX" (first layer: nothing consumes it).

Mixed precision (``compute_dtype="bfloat16"``, ``fastdl/precision.py``): the GEMM operands X and
W are then bfloat16 (uint16 bit patterns: the previous layer's ``A16`` and the optimizer's
weight shadow) while A, b, dA, dW, db, dX stay float32. The kernels that write the data also
write the bfloat16 copies the next GEMMs read, so no conversion pass of its own exists:

    forward   A16  = bf16(A)     (size 0: skip; the next layer's GEMM operand)
    backward  dZ16 = bf16(dZ)    (size 0: skip, the GEMMs read dZ itself); then
              dW = dZ16^T X,  dX = dZ16 W   (``gemm``: bfloat16 operands, float32 accumulation)
"""

import numpy as np

from .activations import activation_backward, activation_forward
from .blas import gemm
from .precision import to_bfloat16


def dense_forward(A, A16, X, W, b, activation, alpha):
    """A = g(X W^T + b); A16 = bf16(A) unless A16 has size 0. GEMM, then bias and activation."""
    gemm(A, X, W, False, True)
    if b.size:
        A += b
    activation_forward(A, A, activation, alpha)
    if A16.size:
        to_bfloat16(A16, A)


def dense_backward(dX, dW, db, dZ16, dA, A, X, W, activation, alpha):
    """Gradients of the layer. ``dA`` is overwritten with dZ (it is a workspace); with a
    non-empty ``dZ16`` the GEMMs read its bfloat16 copy of dZ (and X, W are bfloat16)."""
    activation_backward(dA, dA, A, activation, alpha)
    if db.size:
        np.sum(dA, axis=0, out=db)
    dZ = dA
    if dZ16.size:
        to_bfloat16(dZ16, dA)
        dZ = dZ16
    gemm(dW, dZ, X, True, False)
    if dX.size:
        gemm(dX, dZ, W, False, False)
