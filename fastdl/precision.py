"""Mixed precision: which dtype each part of a model computes in, decided once per model.

``fd.Sequential(..., dtype="float32", compute_dtype="bfloat16")`` (Keras' word; PyTorch's
``torch.autocast("cpu", torch.bfloat16)``, Keras' ``mixed_bfloat16`` policy) keeps

* in float32 ("master weights"): parameters, gradients, optimizer state and update, biases,
  activations' float32 outputs and their derivatives, batch-norm statistics, the loss with its
  softmax / sigmoid, everything a user reads (``get_weights``, ``predict_proba``, ``evaluate``);
* in bfloat16: the operands of every Dense GEMM (forward ``X W^T``, ``dW = dZ^T X``,
  ``dX = dZ W``), which accumulate in float32 (``kernels/reference/blas.py``).

The bfloat16 operands are written by the kernels that write the data anyway: the pass that
computes a layer's output (bias + activation, batch norm, dropout) also writes its bfloat16
copy ``A16`` for the next Dense, the dZ pass writes ``dZ16``, the optimizer writes the weights'
bfloat16 ``shadow`` right after updating them, and input rows are rounded as they are gathered
(``kernels/reference/precision.py``). Why: bfloat16 GEMMs run at about twice the float32 rate
on CPUs with AVX512_BF16 and several times on AMX; separate conversion passes would cost as
much as the GEMMs they feed (NOTES.md: ``ml_dtypes.astype`` of a 1024x784 batch ~630 us vs
~500 us for the GEMM). docs/mixed_precision.md has the details and the measured figures.

This module is the one place that decides: layers see only the buffers it made them allocate
(a size-0 bfloat16 buffer means "compute in dtype"), the GEMM provider is chosen by operand
dtype in ``kernels/<backend>/blas.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: ``compute_dtype`` values: None (= ``dtype``), or one of these.
COMPUTE_DTYPES = ("float32", "float64", "bfloat16", "tfloat32")
#: Storage dtype of bfloat16 buffers: uint16 bit patterns (``fastdl.kernels.BF16``).
BF16 = np.dtype(np.uint16)

_EXTRA_HINT = 'pip install "fastdl[bf16]"'


class PrecisionUnavailable(ValueError):
    """``compute_dtype`` cannot run (fast) on this backend or machine: the request is valid,
    the place is not. A ValueError, so it is caught like every bad-argument error."""


@dataclass(frozen=True)
class Precision:
    """The resolved policy of one model.

    ``compute_dtype``: None (GEMMs in ``dtype``) or "bfloat16". ``low``: GEMM operands are
    bfloat16. ``gemm``: who multiplies them, for ``summary()`` and benchmarks ("blas",
    "onednn", "emulated": exact float32 emulation without bfloat16 instructions, "reference":
    the numpy backend's float64 arithmetic).
    """

    compute_dtype: str | None = None
    gemm: str = "blas"

    @property
    def low(self) -> bool:
        return self.compute_dtype == "bfloat16"

    def describe(self) -> str:
        if not self.low:
            return ""
        return f"compute_dtype=bfloat16 ({self.gemm} GEMMs)"


FULL = Precision()


def bf16_status(backend: str = "cpu"):
    """``(supported, detail)``: whether ``backend`` has fast bfloat16 GEMMs here, and the
    instruction set (or what is missing, with how to get it)."""
    if backend == "cpu":
        from .kernels.cpu import _onednn
        return _onednn.bf16_gemm_status()
    if backend == "numpy":
        return False, ("the numpy backend is the reference: it computes bfloat16 with float64 "
                       "arithmetic, slowly")
    if backend == "cuda":
        return False, ("bfloat16 compute on the cuda backend is not available in this version "
                       "(the cpu backend has it)")
    from .backend import check_name
    check_name(backend)
    raise AssertionError("unreachable")  # pragma: no cover


def bf16_supported(backend: str = "cpu") -> bool:
    """Does this machine compute bfloat16 GEMMs fast on ``backend`` ("cpu" by default)?

    On the cpu backend: oneDNN (the ``bf16`` extra) is installed and this CPU has bfloat16
    instructions (AVX512_BF16 or AMX-BF16; checked by oneDNN and by one small product against
    exact arithmetic). Without them ``compute_dtype="bfloat16"`` needs ``allow_slow=True``.
    """
    return bool(bf16_status(backend)[0])


def check_compute_dtype(compute_dtype):
    """The normalized name (None or one of ``COMPUTE_DTYPES``), or a ValueError."""
    if compute_dtype is None:
        return None
    name = compute_dtype
    if not isinstance(name, str):
        try:
            name = np.dtype(compute_dtype).name
        except TypeError:
            name = None
    if name not in COMPUTE_DTYPES:
        raise ValueError(f"compute_dtype={compute_dtype!r} is not known; expected None (compute "
                         f"in dtype) or one of {COMPUTE_DTYPES}")
    return name


def resolve(compute_dtype, dtype, backend, allow_slow=False) -> Precision:
    """The policy for a model of ``dtype`` on ``backend`` (a name); a clear error when the
    combination is impossible, or slow without ``allow_slow=True``. Nothing falls back to
    float32 silently."""
    name = check_compute_dtype(compute_dtype)
    if not isinstance(allow_slow, (bool, np.bool_)):
        raise TypeError(f"allow_slow={allow_slow!r} is invalid; expected True or False")
    dtype = np.dtype(dtype)
    if name is None or name == dtype.name:
        return FULL
    if name in ("float32", "float64"):
        raise ValueError(f"compute_dtype={name!r} differs from dtype={dtype.name!r}; a model "
                         "computes in its dtype or in a reduced precision ('bfloat16'): set "
                         f"dtype={name!r} instead")
    if dtype != np.float32:
        raise ValueError(f"compute_dtype={name!r} needs dtype='float32' (float32 master "
                         f"weights), got dtype={dtype.name!r}; float64 is for gradient checking "
                         "and exact comparisons")
    if name == "tfloat32":
        raise PrecisionUnavailable(
            f"compute_dtype='tfloat32' is an NVIDIA tensor-core format; it is not available on "
            f"backend={backend!r} (on the CPU use 'bfloat16' or None)")
    if backend == "cuda":
        raise PrecisionUnavailable(
            "compute_dtype='bfloat16' on the cuda backend is not available in this version; "
            "use backend='cpu' (oneDNN bfloat16 GEMMs) or compute_dtype=None on the GPU")
    if backend == "numpy":
        if not allow_slow:
            raise PrecisionUnavailable(
                "compute_dtype='bfloat16' on backend='numpy': the numpy backend is the reference "
                "and has no fast bfloat16 path; use backend='cpu', or pass allow_slow=True to run "
                "the reference arithmetic (bfloat16 operands, float64 products)")
        return Precision("bfloat16", "reference")
    ok, detail = bf16_status(backend)
    if ok:
        return Precision("bfloat16", "onednn")
    if not allow_slow:
        hint = (f"install it: {_EXTRA_HINT}" if "not installed" in detail else
                "run on a CPU with AVX512_BF16 (AMD Zen 4 and later, Intel Cooper Lake, "
                "Sapphire Rapids and later)")
        raise PrecisionUnavailable(
            f"compute_dtype='bfloat16' cannot run fast here: {detail}. Either {hint}, use "
            "compute_dtype=None (float32), or pass allow_slow=True to compute the same "
            "bfloat16 arithmetic by exact float32 emulation (no speed-up)")
    return Precision("bfloat16", "emulated")
