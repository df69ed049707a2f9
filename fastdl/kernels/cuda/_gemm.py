"""GEMM for the cuda backend: C = op(A) @ op(B), op(M) = M.T when its flag is set.

Three implementations, chosen once (``impl()``), overridable with ``FASTDL_CUDA_GEMM`` or
``set_impl`` (benchmarks/gpu_check.py validates each before timing):

``cublas``  cuBLAS sgemm/dgemm called through CuPy's thin binding with raw device pointers: no
            array wrappers, one C call (a few microseconds of host time per GEMM).
``cupy``    ``cupy.matmul`` on zero-copy views (``cupy.asarray`` reads the numba array's
            ``__cuda_array_interface__``); the fallback if the raw binding moves.
``numba``   the shared-memory tiled kernel below, ``config.CUDA_GEMM_TILE`` wide. Always
            available (simulator included); the test reference for the two above. Reaches only a
            fraction of cuBLAS (no tensor cores, no register tiling).

All three run on the default stream (CuPy's current stream unless the caller changed it), so
they are ordered with the numba launches around them without any host synchronization.

Row-major to cuBLAS (column-major): a row-major (r, c) matrix is its column-major transpose with
leading dimension c, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T, i.e.
``gemm(opB, opA, n, m, k, B, ldb=B.shape[1], A, lda=A.shape[1], C, ldc=n)``.
"""

from __future__ import annotations

import os

import numpy as np
from numba import cuda

from ... import config
from ._device import _fill_kernel, blocks, in_simulator, nb_type, tpb

IMPLS = ("cublas", "cupy", "numba")
_state = {"impl": None, "cp": None, "cublas": None, "scalars": {}}


def _detect():
    forced = os.environ.get("FASTDL_CUDA_GEMM", "").strip().lower()
    if forced:
        if forced not in IMPLS:
            raise ValueError(f"FASTDL_CUDA_GEMM={forced!r} is not a GEMM implementation; "
                             f"expected one of {IMPLS}")
        return forced
    if in_simulator():
        return "numba"
    try:
        import cupy  # noqa: F401
    except Exception:  # not installed, or no usable CUDA runtime for CuPy
        return "numba"
    try:
        from cupy_backends.cuda.libs import cublas  # noqa: F401
        return "cublas"
    except Exception:
        return "cupy"


def impl() -> str:
    """The GEMM implementation in use (detected on first call)."""
    if _state["impl"] is None:
        set_impl(_detect())
    return _state["impl"]


def set_impl(name: str) -> None:
    """Select the GEMM implementation: one of ``IMPLS``."""
    if name not in IMPLS:
        raise ValueError(f"name={name!r} is not a GEMM implementation; expected one of {IMPLS}")
    if name in ("cublas", "cupy"):
        import cupy
        _state["cp"] = cupy
    if name == "cublas":
        from cupy_backends.cuda.libs import cublas
        _state["cublas"] = cublas
    _state["impl"] = name


def gemm(C, A, B, trans_a, trans_b):
    """C = op(A) @ op(B) into the caller's C (C-contiguous (m, n))."""
    m, n = C.shape
    k = A.shape[0] if trans_a else A.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:
        _fill_kernel[blocks(m * n), tpb()](C.reshape(m * n), C.dtype.type(0))
        return
    name = impl()
    contiguous = all(x.is_c_contiguous() for x in (A, B, C)) if name != "numba" else True
    if name == "cublas" and contiguous:
        _gemm_cublas(C, A, B, trans_a, trans_b, m, n, k)
    elif name == "cupy" and contiguous:
        cp = _state["cp"]
        a, b = cp.asarray(A), cp.asarray(B)
        cp.matmul(a.T if trans_a else a, b.T if trans_b else b, out=cp.asarray(C))
    else:
        gemm_numba(C, A, B, trans_a, trans_b)


def _ptr(x) -> int:
    """Device address of x's first element (numba arrays: without building the interface
    dict, which costs microseconds per call)."""
    p = getattr(x, "device_ctypes_pointer", None)
    if p is not None:
        return p.value or 0
    return x.__cuda_array_interface__["data"][0]


def _gemm_cublas(C, A, B, trans_a, trans_b, m, n, k):
    cublas, cp = _state["cublas"], _state["cp"]
    dt = C.dtype
    scalars = _state["scalars"].get(dt)
    if scalars is None:  # host alpha = 1, beta = 0, kept alive for the pointer's lifetime
        scalars = (np.ones(1, dt), np.zeros(1, dt))
        _state["scalars"][dt] = scalars
    func = cublas.sgemm if dt == np.float32 else cublas.dgemm
    handle = cp.cuda.device.get_cublas_handle()  # per device; CuPy caches it
    cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
    op_a = cublas.CUBLAS_OP_T if trans_a else cublas.CUBLAS_OP_N
    op_b = cublas.CUBLAS_OP_T if trans_b else cublas.CUBLAS_OP_N
    func(handle, op_b, op_a, n, m, k, scalars[0].ctypes.data, _ptr(B), B.shape[1],
         _ptr(A), A.shape[1], scalars[1].ctypes.data, _ptr(C), n)


def _gemm_kernel(dtype, tile=None):
    """The tiled GEMM kernel for ``dtype`` and ``tile`` (default ``config.CUDA_GEMM_TILE``)."""
    return _tiled_gemm(nb_type(dtype), int(config.CUDA_GEMM_TILE if tile is None else tile))


_tiled_cache: dict = {}


def _tiled_gemm(T, tile):
    key = (T, tile)
    if key in _tiled_cache:
        return _tiled_cache[key]

    @cuda.jit
    def kernel(C, A, B, trans_a, trans_b):
        """One block per tile x tile block of C (grid-stride over tiles); the k loop stages a
        tile of op(A) and of op(B) in shared memory."""
        sA = cuda.shared.array((tile, tile), T)
        sB = cuda.shared.array((tile, tile), T)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        M = C.shape[0]
        N = C.shape[1]
        K = A.shape[0] if trans_a else A.shape[1]
        for ti in range(cuda.blockIdx.y, (M + tile - 1) // tile, cuda.gridDim.y):
            for tj in range(cuda.blockIdx.x, (N + tile - 1) // tile, cuda.gridDim.x):
                row = ti * tile + ty
                col = tj * tile + tx
                acc = T(0)
                for k0 in range(0, K, tile):
                    ka = k0 + tx
                    if row < M and ka < K:
                        sA[ty, tx] = A[ka, row] if trans_a else A[row, ka]
                    else:
                        sA[ty, tx] = T(0)
                    kb = k0 + ty
                    if kb < K and col < N:
                        sB[ty, tx] = B[col, kb] if trans_b else B[kb, col]
                    else:
                        sB[ty, tx] = T(0)
                    cuda.syncthreads()
                    for kk in range(tile):
                        acc += sA[ty, kk] * sB[kk, tx]
                    cuda.syncthreads()
                if row < M and col < N:
                    C[row, col] = acc

    _tiled_cache[key] = kernel
    return kernel


def gemm_numba(C, A, B, trans_a, trans_b):
    """The tiled numba GEMM (fallback and test reference)."""
    m, n = C.shape
    if m == 0 or n == 0:
        return
    tile = int(config.CUDA_GEMM_TILE)
    kernel = _gemm_kernel(C.dtype, tile)
    grid = (min((n + tile - 1) // tile, 65535), min((m + tile - 1) // tile, 65535))
    kernel[grid, (tile, tile)](C, A, B, bool(trans_a), bool(trans_b))



# --- tensor cores: TF32 / bfloat16 through cuBLAS (not used by any model yet) ------------------
#: cuBLAS / CUDA enum values (cublas_api.h: cublasComputeType_t; library_types.h:
#: cudaDataType_t; cublasGemmAlgo_t), passed to CuPy's thin ``cublasGemmEx`` binding.
_CUDA_R_32F, _CUDA_R_16BF = 0, 14
_COMPUTE_32F, _COMPUTE_32F_FAST_TF32 = 68, 77
_GEMM_DEFAULT = -1
#: mode -> (operand storage dtype, cudaDataType of the operands, cublasComputeType)
TENSOR_MODES = {"tf32": (np.dtype(np.float32), _CUDA_R_32F, _COMPUTE_32F_FAST_TF32),
                "bf16": (np.dtype(np.uint16), _CUDA_R_16BF, _COMPUTE_32F)}


def gemm_tensor_core(C, A, B, trans_a, trans_b, mode):
    """C (float32) = op(A) @ op(B) on tensor cores with cuBLAS ``cublasGemmEx``, float32
    accumulation. ``mode="tf32"``: float32 operands rounded to TF32 (10-bit mantissa) inside
    cuBLAS (``CUBLAS_COMPUTE_32F_FAST_TF32``, PyTorch's ``set_float32_matmul_precision("high")``);
    ``mode="bf16"``: bfloat16 operands (uint16 bit patterns, ``kernels/reference/precision.py``)
    as ``reference/blas.py`` defines them. All arrays C-contiguous device arrays; the row-major
    product is the column-major ``C^T = op(B)^T op(A)^T``, as in ``_gemm_cublas``.

    Written for issue 17 without a GPU: nothing in fastdl calls it, and
    ``benchmarks/gpu_check.py`` (section ``tensor``) validates it against the reference before
    timing it. Only after that passes on a device may ``compute_dtype="tfloat32"/"bfloat16"``
    on cuda route GEMMs here (``fastdl/precision.py`` refuses them until then)."""
    if mode not in TENSOR_MODES:
        raise ValueError(f"mode={mode!r} is not a tensor-core mode; expected one of "
                         f"{tuple(TENSOR_MODES)}")
    dt, ab_type, compute = TENSOR_MODES[mode]
    if np.dtype(A.dtype) != dt or np.dtype(B.dtype) != dt or np.dtype(C.dtype) != np.float32:
        raise TypeError(f"gemm_tensor_core(mode={mode!r}) needs {dt.name} operands and a "
                        f"float32 C; got A {A.dtype}, B {B.dtype}, C {C.dtype}")
    m, n = C.shape
    k = A.shape[0] if trans_a else A.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:
        _fill_kernel[blocks(m * n), tpb()](C.reshape(m * n), np.float32(0))
        return
    import cupy
    from cupy_backends.cuda.libs import cublas
    scalars = _state["scalars"].get("tensor")
    if scalars is None:
        scalars = _state["scalars"]["tensor"] = (np.ones(1, np.float32), np.zeros(1, np.float32))
    handle = cupy.cuda.device.get_cublas_handle()
    cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
    op_a = cublas.CUBLAS_OP_T if trans_a else cublas.CUBLAS_OP_N
    op_b = cublas.CUBLAS_OP_T if trans_b else cublas.CUBLAS_OP_N
    cublas.gemmEx(handle, op_b, op_a, n, m, k, scalars[0].ctypes.data, _ptr(B), ab_type,
                  B.shape[1], _ptr(A), ab_type, A.shape[1], scalars[1].ctypes.data, _ptr(C),
                  _CUDA_R_32F, n, compute, _GEMM_DEFAULT)
