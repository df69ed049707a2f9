"""Matrix products of the dense layers (cuda): C = op(A) @ op(B), the provider layer.

Same contract as ``reference/blas.py``. Float operands go to ``_gemm.py`` (cuBLAS through
CuPy, or the tiled numba GEMM). bfloat16 (uint16) operands are widened exactly into float32
scratch buffers and multiplied by the float32 GEMM: the reference's arithmetic up to float32
accumulation, without tensor cores (that is the cuBLASLt path of the GPU mixed-precision work,
not built yet; models refuse ``compute_dtype="bfloat16"`` on cuda, ``fastdl/precision.py``).
"""

import numpy as np

from . import _gemm
from ._device import _empty
from .precision import from_bfloat16

_scratch = {}


def _widened(key, M):
    buf = _scratch.get(key)
    if buf is None or tuple(buf.shape) != tuple(M.shape):
        buf = _scratch[key] = _empty(tuple(M.shape), np.float32)
    from_bfloat16(buf, M)
    return buf


def gemm(C, A, B, trans_a, trans_b):
    """C = op(A) @ op(B): cuBLAS / tiled GEMM for float operands; bfloat16 ones widened first."""
    if np.dtype(A.dtype) == np.uint16:
        A, B = _widened("A", A), _widened("B", B)
    _gemm.gemm(C, A, B, trans_a, trans_b)
