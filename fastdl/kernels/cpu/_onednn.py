"""oneDNN's BLAS-like GEMMs through ctypes: the cpu backend's bfloat16 GEMM provider.

oneDNN (https://github.com/oneapi-src/oneDNN) is the library PyTorch, TensorFlow and ONNX
Runtime use for CPU bfloat16 math. The ``onednn-cpu-gomp`` wheel (``pip install
"fastdl[bf16]"``; oneDNN 3.2, one shared library that needs only the system's libgomp, the
OpenMP runtime Numba's wheels use too, so both share one thread pool) exports, with a row-major
C API (``dnnl.h``):

    dnnl_status_t dnnl_sgemm(char transa, char transb, dnnl_dim_t M, N, K, float alpha,
                             const float *A, dnnl_dim_t lda, const float *B, dnnl_dim_t ldb,
                             float beta, float *C, dnnl_dim_t ldc);
    dnnl_status_t dnnl_gemm_bf16bf16f32(... the same, with const uint16_t *A, *B ...);

    C = alpha op(A) op(B) + beta C,  op(X) = X or X^T,  all matrices row-major.

Nothing here is imported by ``import fastdl``: the library is looked up on first use (the
wheel's file list, ``FASTDL_DNNL_LIBRARY``, then the linker's search path). ``load()`` returns
None when it is absent; callers decide what that means (``fastdl/precision.py`` raises a clear
error naming the extra).

On CPUs without bfloat16 instructions (AVX512_BF16, AMX-BF16; oneDNN's ISA below
``avx512_core_bf16``) ``dnnl_gemm_bf16bf16f32`` returns ``dnnl_unimplemented`` (seen on an AMD
EPYC Zen 3: AVX2 only); :func:`bf16_gemm_status` probes it once with a small product checked
against exact arithmetic.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import numpy as np

#: dnnl_status_t names (dnnl_types.h).
_STATUS = {0: "success", 1: "out_of_memory", 2: "invalid_arguments", 3: "unimplemented",
           5: "runtime_error", 6: "not_required", 7: "invalid_graph", 8: "invalid_graph_op",
           9: "invalid_shape", 10: "invalid_data_type"}
#: dnnl_cpu_isa_t (dnnl_types.h, oneDNN 3.x) -> name; the values are bit sets, each ISA
#: containing the bits of the ones it extends.
ISA_NAMES = {0x0: "default", 0x1: "sse41", 0x3: "avx", 0x7: "avx2", 0xF: "avx2_vnni",
             0x1F: "avx2_vnni_2", 0x27: "avx512_core", 0x67: "avx512_core_vnni",
             0xE7: "avx512_core_bf16", 0x1EF: "avx512_core_fp16", 0xFEF: "avx512_core_amx",
             0x1FEF: "avx512_core_amx_fp16"}
#: ISAs with native bfloat16 arithmetic (AVX512_BF16 dot products, AMX tiles, AVX-NE-CONVERT).
_BF16_ISA_BITS = 0xE7

_LIB = None             # the loaded library, or False once a lookup failed
_BF16_STATUS = None     # (ok, reason) of the bfloat16 probe
_THREADS = None         # fd.set_num_threads' count, applied when the library loads


def _candidates():
    env = os.environ.get("FASTDL_DNNL_LIBRARY")
    if env:
        yield env
    try:
        from importlib import metadata
        for dist in ("onednn-cpu-gomp", "onednn-cpu-iomp", "onednn"):
            try:
                files = metadata.files(dist) or ()
            except metadata.PackageNotFoundError:
                continue
            for f in files:
                if os.path.basename(str(f)).startswith("libdnnl.so"):
                    yield str(f.locate())
    except Exception:  # pragma: no cover - importlib.metadata is stdlib; be defensive
        pass
    found = ctypes.util.find_library("dnnl")
    if found:
        yield found


def _bind(lib):
    dim, f32, ptr, ch = ctypes.c_int64, ctypes.c_float, ctypes.c_void_p, ctypes.c_char
    for name in ("dnnl_sgemm", "dnnl_gemm_bf16bf16f32"):
        fn = getattr(lib, name)
        fn.argtypes = [ch, ch, dim, dim, dim, f32, ptr, dim, ptr, dim, f32, ptr, dim]
        fn.restype = ctypes.c_int
    lib.dnnl_get_effective_cpu_isa.restype = ctypes.c_int
    lib.dnnl_get_effective_cpu_isa.argtypes = []
    return lib


def load():
    """The oneDNN library (ctypes.CDLL with the GEMMs bound), or None when it is not there."""
    global _LIB
    if _LIB is None:
        _LIB = False
        errors = []
        for path in _candidates():
            try:
                _LIB = _bind(ctypes.CDLL(path))
                break
            except (OSError, AttributeError) as e:
                errors.append(f"{path}: {e}")
        if _LIB and _THREADS is not None:
            _omp_set_num_threads(_THREADS)
    return _LIB or None


def _omp_set_num_threads(n):
    """oneDNN's GOMP build sizes its parallel regions by the calling thread's OpenMP
    ``nthreads-var``: set it in libgomp, the runtime oneDNN and Numba's OpenMP layer share."""
    try:
        ctypes.CDLL("libgomp.so.1").omp_set_num_threads(ctypes.c_int(int(n)))
    except OSError:  # pragma: no cover - libdnnl links libgomp, so it is loaded with it
        pass


def set_num_threads(n):
    """Threads of oneDNN's GEMMs (``fd.set_num_threads``); applied now or when it loads."""
    global _THREADS
    _THREADS = int(n)
    if _LIB:
        _omp_set_num_threads(_THREADS)


def isa_name():
    """oneDNN's effective CPU ISA on this machine (e.g. "avx2", "avx512_core_bf16"), or None."""
    lib = load()
    if lib is None:
        return None
    code = lib.dnnl_get_effective_cpu_isa()
    return ISA_NAMES.get(code, hex(code))


def _ld(M, itemsize):
    """Leading dimension of a row-major matrix whose rows are contiguous, else None."""
    if M.ndim != 2 or (M.shape[1] > 1 and M.strides[1] != itemsize) \
            or M.strides[0] % itemsize or M.strides[0] < 0:
        return None
    return max(M.strides[0] // itemsize, M.shape[1], 1)


def _call(fn, C, A, B, trans_a, trans_b):
    """C = op(A) @ op(B) through ``fn`` (one of the two GEMMs); row-major operands."""
    M, N = C.shape
    K = A.shape[0] if trans_a else A.shape[1]
    if M == 0 or N == 0:
        return
    if K == 0:
        C[...] = 0
        return
    item = A.dtype.itemsize
    lda, ldb, ldc = _ld(A, item), _ld(B, item), _ld(C, C.dtype.itemsize)
    if lda is None:
        A = np.ascontiguousarray(A)
        lda = max(A.shape[1], 1)
    if ldb is None:
        B = np.ascontiguousarray(B)
        ldb = max(B.shape[1], 1)
    if ldc is None:
        raise ValueError("oneDNN GEMM: C must have contiguous rows")
    status = fn(b"T" if trans_a else b"N", b"T" if trans_b else b"N", M, N, K, 1.0,
                A.ctypes.data, lda, B.ctypes.data, ldb, 0.0, C.ctypes.data, ldc)
    if status != 0:
        raise RuntimeError(f"oneDNN {fn.__name__} failed: dnnl_{_STATUS.get(status, status)} "
                           f"(M={M}, N={N}, K={K}, ISA {isa_name()})")


def sgemm(C, A, B, trans_a, trans_b):
    """float32 C = op(A) @ op(B) with ``dnnl_sgemm``."""
    _call(load().dnnl_sgemm, C, A, B, trans_a, trans_b)


def gemm_bf16(C, A, B, trans_a, trans_b):
    """float32 C = op(A) @ op(B) with bfloat16 (uint16) A and B, ``dnnl_gemm_bf16bf16f32``."""
    _call(load().dnnl_gemm_bf16bf16f32, C, A, B, trans_a, trans_b)


def bf16_gemm_status():
    """(True, isa) when oneDNN computes bfloat16 GEMMs with bfloat16 instructions here, else
    (False, why). Probed once: a 3x5x7 product of bfloat16 values, checked exactly."""
    global _BF16_STATUS
    if _BF16_STATUS is None:
        _BF16_STATUS = _probe()
    return _BF16_STATUS


def _probe():
    lib = load()
    if lib is None:
        return False, "oneDNN is not installed (pip install \"fastdl[bf16]\")"
    isa = isa_name()
    code = lib.dnnl_get_effective_cpu_isa()
    if (code & _BF16_ISA_BITS) != _BF16_ISA_BITS and code != 0x1F:
        return False, (f"this CPU has no bfloat16 instructions (oneDNN's ISA here is {isa}; "
                       "bfloat16 GEMMs need AVX512_BF16 or AMX-BF16)")
    # small integers are exact in bfloat16 and their products sum exactly in float32
    a = (np.arange(21, dtype=np.float32).reshape(3, 7) % 5 - 2)
    b = (np.arange(35, dtype=np.float32).reshape(5, 7) % 3 - 1)
    a16 = (a.view(np.uint32) >> 16).astype(np.uint16)
    b16 = (b.view(np.uint32) >> 16).astype(np.uint16)
    c = np.full((3, 5), np.nan, np.float32)
    status = lib.dnnl_gemm_bf16bf16f32(b"N", b"T", 3, 5, 7, 1.0, a16.ctypes.data, 7,
                                       b16.ctypes.data, 7, 0.0, c.ctypes.data, 5)
    if status != 0:
        return False, f"oneDNN's bfloat16 GEMM is dnnl_{_STATUS.get(status, status)} here ({isa})"
    if not np.array_equal(c, a @ b.T):
        return False, f"oneDNN's bfloat16 GEMM gave wrong results in a self-check ({isa})"
    return True, isa
