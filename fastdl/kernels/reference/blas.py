"""Matrix products of the dense layers (reference): the one place a GEMM is defined.

    C = op(A) @ op(B),   op(M) = M.T if trans else M          (C is overwritten)

Operands are either both floating arrays of C's dtype (float32 or float64: the ordinary BLAS
GEMM) or both bfloat16 (``uint16`` bit patterns, ``reference/precision.py``) with C float32:
mixed precision, "bfloat16 operands, float32 accumulation" (PyTorch autocast, Keras
``mixed_bfloat16``, oneDNN ``gemm_bf16bf16f32``). The reference widens bfloat16 operands
exactly and multiplies in float64: every product of two bfloat16 numbers is exact in float32
(8 + 8 significant bits), so this is the exact sum of exact products, rounded once to float32.
Faster backends accumulate in float32 in their own order and agree to float32 rounding of a
K-term sum (tests compare at ``K * 2^-24`` of the magnitudes' scale).
"""

import numpy as np

from .precision import from_bfloat16


def _widen(M):
    out = np.empty(M.shape, np.float64)
    from_bfloat16(out, M)
    return out


def gemm(C, A, B, trans_a, trans_b):
    """C = op(A) @ op(B) (BLAS for floats; bfloat16 operands widened, products in float64)."""
    if A.dtype == np.uint16:
        A, B = _widen(A), _widen(B)
        C[...] = np.matmul(A.T if trans_a else A, B.T if trans_b else B)
        return
    np.matmul(A.T if trans_a else A, B.T if trans_b else B, out=C)
