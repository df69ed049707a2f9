"""Matrix products of the dense layers (cpu): the GEMM provider layer.

Same contract as ``reference/blas.py`` (``C = op(A) @ op(B)``, float operands of C's dtype or
bfloat16 operands with float32 C). The provider is chosen here, by operand dtype, and nowhere
else (layers and the other kernels call ``gemm``):

* float32 / float64: NumPy's BLAS (OpenBLAS), ``np.matmul(..., out=C)`` (called outside Numba:
  ``np.dot`` inside ``@njit`` needs SciPy and measured 12-17% slower, NOTES.md); with
  ``config.FLOAT_GEMM = "onednn"``, float32 goes to oneDNN's ``dnnl_sgemm`` instead;
* bfloat16 (uint16 bit patterns): ``config.BF16_GEMM`` picks
  - ``"onednn"``: oneDNN's ``dnnl_gemm_bf16bf16f32`` (``_onednn.py``): bfloat16 dot-product
    instructions (AVX512_BF16, AMX), float32 accumulation; the reason the option exists;
  - ``"emulated"``: both operands widened exactly to float32 (one jitted pass each, into
    scratch buffers kept per shape), then the float32 BLAS GEMM. Same operands, same float32
    accumulation, no speed gain: the portable path (``compute_dtype="bfloat16",
    allow_slow=True`` on a CPU without bfloat16 instructions or without the extra);
  - ``"auto"`` (default): oneDNN where its bfloat16 GEMM works on this CPU, else emulated.
  Whether a model may use the emulated path is decided before any kernel runs, by
  ``fastdl/precision.py`` (a clear error unless ``allow_slow=True``); the kernel itself
  never refuses to compute.
"""

import numpy as np

from ... import config
from . import _onednn
from .precision import from_bfloat16

_scratch = {}


def _widened(key, M):
    """M (uint16) widened into a reused float32 buffer of M's shape."""
    buf = _scratch.get(key)
    if buf is None or buf.shape != M.shape:
        buf = _scratch[key] = np.empty(M.shape, np.float32)
    from_bfloat16(buf, M)
    return buf


def _gemm_emulated(C, A, B, trans_a, trans_b):
    A32, B32 = _widened("A", A), _widened("B", B)
    np.matmul(A32.T if trans_a else A32, B32.T if trans_b else B32, out=C)


def _bf16_provider():
    """The name of the provider bfloat16 GEMMs use now: "onednn" or "emulated"."""
    choice = config.BF16_GEMM
    if choice == "auto":
        return "onednn" if _onednn.bf16_gemm_status()[0] else "emulated"
    if choice not in ("onednn", "emulated"):
        raise ValueError(f"config.BF16_GEMM={choice!r} is invalid; expected 'auto', 'onednn' "
                         "or 'emulated'")
    return choice


def gemm(C, A, B, trans_a, trans_b):
    """C = op(A) @ op(B): NumPy's BLAS for float operands, the bfloat16 provider for uint16."""
    if A.dtype == np.uint16:
        if _bf16_provider() == "onednn":
            _onednn.gemm_bf16(C, A, B, trans_a, trans_b)
        else:
            _gemm_emulated(C, A, B, trans_a, trans_b)
        return
    if config.FLOAT_GEMM == "onednn" and C.dtype == np.float32:
        _onednn.sgemm(C, A, B, trans_a, trans_b)
        return
    np.matmul(A.T if trans_a else A, B.T if trans_b else B, out=C)
