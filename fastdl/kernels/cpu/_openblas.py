"""Float GEMM of the cpu backend: NumPy's BLAS, in a form whose bits do not depend on the thread
count. ``blas.gemm`` (the GEMM provider every dense kernel calls) sends float operands here.

``gemm(C, A, B, trans_a, trans_b)`` computes ``C = op(A) op(B)`` (``op`` transposes when its flag
is set) for C-contiguous 2-D arrays of one float dtype.

Why (``config.DETERMINISTIC``, docs/reproducibility.md): OpenBLAS's threaded GEMM splits the work
by its thread count and rounds differently for each. Measured with NumPy 2.4's OpenBLAS 0.3.31
(Haswell kernels, AMD EPYC Zen 3): the float32 results of the 784-256-128-10 net's GEMMs differ
between 1, 2, 3, 4 and 8 BLAS threads (max abs ~5e-5 at values ~30), float64 ones between 2 and
3 threads at some shapes; below OpenBLAS's threading threshold (batch 1 or 7 rows) they agree.
So a run's weights depended on ``fd.set_num_threads``. No other cpu kernel does: their parallel
variants give each task its own outputs and sum in a fixed order.

The deterministic form (DESIGN.md, "reductions never race", applied to BLAS): C is cut into
blocks fixed by the shape and ``config.GEMM_BLOCKS`` alone (``plan``); each block is one
single-threaded GEMM with the whole K reduction of its elements, so which thread computes it,
and how many threads there are, changes nothing. The blocks go to OpenBLAS in ONE batch call
(``cblas_?gemm_batch``, OpenBLAS >= 0.3.29), whose threads take whole blocks and run each with
the single-threaded driver (``driver/level3/gemm_batch_thread.c``): OpenBLAS's spinning thread
pool starts them in microseconds, where running the blocks on Numba's threads (``prange``,
OpenMP with a passive wait policy) cost 25-45% of a training step in wake-ups. A GEMM of at most
``_SMALL_WORK`` multiply-adds is one plain call with OpenBLAS held at one thread (saved and
restored under a lock, so two Python threads cannot interleave). The BLAS is NumPy's own
OpenBLAS, called through its CBLAS symbols (looked up in the libraries NumPy loaded) from jitted
code. Where none is found (e.g. NumPy on Apple's Accelerate), ``config.DETERMINISTIC=None`` (the
default) falls back to ``np.matmul`` and ``True`` raises.
"""

from __future__ import annotations

import ctypes
import glob
import os
import threading

import numpy as np

from ... import config  # before numba: it sets OMP_WAIT_POLICY
from numba import types

from ._jit import jit

#: Rows (or columns) of C per block at least: blocks much narrower than OpenBLAS's register
#: tiles (16 x 4, 8 x 4 on x86-64) run at a fraction of its speed.
_MIN_BLOCK = 64
#: Multiply-adds up to which OpenBLAS's batch routine takes its "small matrix" path, which
#: crashes in NumPy 2.4's OpenBLAS 0.3.31 (DYNAMIC_ARCH, Haswell kernels: a segmentation fault
#: for any M N K <= 100^3, measured). Such GEMMs, and blocks, are never sent to it: a GEMM this
#: small is one plain single-threaded call.
_SMALL_WORK = 1_000_000

_CBLAS_ROW_MAJOR, _CBLAS_NO_TRANS, _CBLAS_TRANS = 101, 111, 112

# ---------------------------------------------------------------- finding NumPy's OpenBLAS ----
#: Symbol names per build: NumPy >= 2 wheels (scipy-openblas64), NumPy 1.2x wheels
#: (openblas64_), 32-bit-integer builds; (prefix, suffix, 64-bit integers).
_BUILDS = (("scipy_", "64_", True), ("", "64_", True), ("scipy_", "", False), ("", "", False))
_FUNCTIONS = ("cblas_sgemm", "cblas_dgemm", "cblas_sgemm_batch", "cblas_dgemm_batch",
              "openblas_set_num_threads", "openblas_get_num_threads")


def _candidate_libraries():
    """NumPy's compiled core (dlsym on it also searches the libraries it links, i.e. its BLAS),
    then the BLAS libraries shipped beside NumPy (Windows wheels: ``numpy.libs``)."""
    try:
        from numpy._core import _multiarray_umath as core
    except ImportError:                                     # NumPy 1.x
        from numpy.core import _multiarray_umath as core
    yield core.__file__
    base = os.path.dirname(os.path.dirname(np.__file__))
    for pattern in ("numpy.libs/*openblas*", "numpy/.libs/*openblas*"):
        yield from sorted(glob.glob(os.path.join(base, pattern)))


def _find_openblas():
    """(first symbol name, addresses of ``_FUNCTIONS``, 64-bit ints) of NumPy's OpenBLAS, or
    None (another BLAS, or an OpenBLAS without the batch routine: older than 0.3.29)."""
    for path in _candidate_libraries():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix, ilp64 in _BUILDS:
            names = [prefix + f + suffix for f in _FUNCTIONS]
            try:
                addrs = [ctypes.cast(getattr(lib, n), ctypes.c_void_p).value for n in names]
            except AttributeError:
                continue
            return names[0], addrs, ilp64
    return None


_FOUND = _find_openblas()
#: The CBLAS symbol the deterministic GEMM calls (None: no usable OpenBLAS found, see ``gemm``).
BLAS_SYMBOL = None if _FOUND is None else _FOUND[0]
_ILP64 = bool(_FOUND and _FOUND[2])

# The jitted code calls these names; the addresses are bound here, at import, before any of it is
# compiled or loaded from the cache (the cache keeps names, not addresses). 32- and 64-bit-int
# builds get different names so a cache written under one cannot call the other.
_I = types.int64 if _ILP64 else types.int32
_SUFFIX = "i64" if _ILP64 else "i32"
_P = types.intp         # a pointer, as a signed integer of pointer width (uintp + int64
                        # would type as float64 in Numba)
_E = types.int32        # a CBLAS enum
if _FOUND is not None:
    from llvmlite import binding as _llvm
    for _name, _addr in zip(_FUNCTIONS, _FOUND[1]):
        _llvm.add_symbol(f"fastdl_{_name}_{_SUFFIX}", _addr)


def _external(name, *sig):
    return types.ExternalFunction(f"fastdl_{name}_{_SUFFIX}", types.void(*sig))


_sgemm = _external("cblas_sgemm", _E, _E, _E, _I, _I, _I, types.float32, _P, _I, _P, _I,
                   types.float32, _P, _I)
_dgemm = _external("cblas_dgemm", _E, _E, _E, _I, _I, _I, types.float64, _P, _I, _P, _I,
                   types.float64, _P, _I)
# (order, transa[], transb[], m[], n[], k[], alpha[], a[], lda[], b[], ldb[], beta[], c[], ldc[],
#  group_count, group_size[]): one group per block here
_sgemm_batch = _external("cblas_sgemm_batch", _E, *([_P] * 13), _I, _P)
_dgemm_batch = _external("cblas_dgemm_batch", _E, *([_P] * 13), _I, _P)
_set_threads = _external("openblas_set_num_threads", types.int32)
_get_threads = types.ExternalFunction(f"fastdl_openblas_get_num_threads_{_SUFFIX}",
                                      types.int32())


@jit(inline="always")
def plan(M, N, K, most):
    """(split_rows, blocks, block): C (M, N) is cut into ``blocks`` slabs of ``block`` rows
    (``split_rows``) or columns, from the shape and ``most`` (``config.GEMM_BLOCKS``) alone.
    The larger side is cut, so each block packs again only the operand of the smaller side
    (OpenBLAS packs both per call); every block has more than ``_SMALL_WORK`` multiply-adds.
    Measured on 2 cores: 2 blocks ran as fast as OpenBLAS's threaded GEMM (+-1% of a training
    step of the 784-256-128-10 net), 4 blocks cost 4% and 8 blocks 9% at batch 256 and 1024
    (each block packs an operand again and a batch runs in rounds of one block per thread)."""
    split_rows = M > N
    side, other = (M, N) if split_rows else (N, M)
    blocks = min(most, side // _MIN_BLOCK)
    while blocks > 1:
        block = (side + blocks - 1) // blocks
        block = (block + 7) // 8 * 8            # whole 8-wide vectors
        n = (side + block - 1) // block
        if (side - (n - 1) * block) * other * K > _SMALL_WORK:
            return split_rows, n, block
        blocks -= 1
    return split_rows, 1, side


@jit(inline="always")
def _address(x):
    return np.intp(x.ctypes.data)


@jit(inline="always")
def _operands(C, A, B, ta):
    """M, N, K, the leading dimensions and the addresses (as signed integers) of C-contiguous
    C = op(A) op(B)."""
    M, N = C.shape
    K = A.shape[0] if ta else A.shape[1]
    return M, N, K, A.shape[1], B.shape[1], N, _address(C), _address(A), _address(B)


@jit
def _gemm_small(C, A, B, ta, tb):
    """One plain BLAS call with OpenBLAS held at one thread (its rounding then does not depend
    on the thread count), for GEMMs of at most ``_SMALL_WORK`` multiply-adds."""
    M, N, K, lda, ldb, ldc, c, a, b = _operands(C, A, B, ta)
    opa = _CBLAS_TRANS if ta else _CBLAS_NO_TRANS
    opb = _CBLAS_TRANS if tb else _CBLAS_NO_TRANS
    old = _get_threads()
    _set_threads(1)
    if C.itemsize == 8:                 # float64
        _dgemm(_CBLAS_ROW_MAJOR, opa, opb, M, N, K, 1.0, a, lda, b, ldb, 0.0, c, ldc)
    else:
        _sgemm(_CBLAS_ROW_MAJOR, opa, opb, M, N, K, np.float32(1.0), a, lda, b, ldb,
               np.float32(0.0), c, ldc)
    _set_threads(old)


@jit
def _gemm_blocks(C, A, B, ta, tb, most, ints, ops, ptrs, scal):
    """All blocks of ``plan`` in one OpenBLAS batch call: its threads take whole blocks, each
    computed by the single-threaded GEMM driver (``driver/level3/gemm_batch_thread.c``), so
    the bits do not depend on how many threads there are. The batch's argument arrays are the
    caller's scratch (``_scratch``): per block ``ints`` holds m, n, k, lda, ldb, ldc and the
    group size 1; ``ops`` op(A), op(B) (C enums: 32 bits); ``ptrs`` the addresses of A, B, C;
    ``scal`` alpha = 1, beta = 0.
    (Allocating them here cost more compile time than the rest of the function.)"""
    M, N, K, lda, ldb, ldc, c, a, b = _operands(C, A, B, ta)
    split_rows, blocks, block = plan(M, N, K, most)
    size = C.itemsize
    for i in range(blocks):
        lo = i * block
        hi = min(M if split_rows else N, lo + block)
        pa, pb, pc, m, n = a, b, c, M, N
        if split_rows:      # rows lo:hi of op(A) and of C
            pa = a + (lo if ta else lo * lda) * size
            pc = c + lo * ldc * size
            m = hi - lo
        else:               # columns lo:hi of op(B) and of C
            pb = b + (lo * ldb if tb else lo) * size
            pc = c + lo * size
            n = hi - lo
        ints[0, i], ints[1, i], ints[2, i] = m, n, K
        ints[3, i], ints[4, i], ints[5, i], ints[6, i] = lda, ldb, ldc, 1
        ptrs[0, i], ptrs[1, i], ptrs[2, i] = pa, pb, pc
    ops[0, :blocks] = _CBLAS_TRANS if ta else _CBLAS_NO_TRANS
    ops[1, :blocks] = _CBLAS_TRANS if tb else _CBLAS_NO_TRANS
    if C.itemsize == 8:                 # float64
        _dgemm_batch(_CBLAS_ROW_MAJOR, _address(ops[0]), _address(ops[1]), _address(ints[0]),
                     _address(ints[1]), _address(ints[2]), _address(scal[0]),
                     _address(ptrs[0]), _address(ints[3]), _address(ptrs[1]),
                     _address(ints[4]), _address(scal[1]), _address(ptrs[2]),
                     _address(ints[5]), blocks, _address(ints[6]))
    else:
        _sgemm_batch(_CBLAS_ROW_MAJOR, _address(ops[0]), _address(ops[1]), _address(ints[0]),
                     _address(ints[1]), _address(ints[2]), _address(scal[0]),
                     _address(ptrs[0]), _address(ints[3]), _address(ptrs[1]),
                     _address(ints[4]), _address(scal[1]), _address(ptrs[2]),
                     _address(ints[5]), blocks, _address(ints[6]))


_scratch_local = threading.local()


def _scratch(most, dtype):
    """This thread's argument arrays for ``_gemm_blocks`` (reused: the batch call reads them
    before ``_gemm_blocks`` returns)."""
    key = (most, dtype)
    s = getattr(_scratch_local, "arrays", None)
    if s is None or s[0] != key:
        ints = np.zeros((7, most), np.int64 if _ILP64 else np.int32)
        scal = np.zeros((2, most), dtype)
        scal[0] = 1
        s = _scratch_local.arrays = (key, ints, np.zeros((2, most), np.int32),
                                     np.zeros((3, most), np.intp), scal)
    return s[1:]


_lock = threading.Lock()
_NO_OPENBLAS = (
    "fastdl.config.DETERMINISTIC=True needs NumPy's BLAS to be OpenBLAS >= 0.3.29 (the NumPy "
    ">= 2.3 wheels of PyPI on Linux, Windows and x86-64 macOS): no OpenBLAS with CBLAS batch "
    "GEMMs was found in the libraries NumPy loaded, so thread-count-independent GEMMs are not "
    "available here. Set fastdl.config.DETERMINISTIC = False (results then depend on the BLAS "
    "thread count) or install NumPy from PyPI")


def _deterministic_gemm(C, A, B, trans_a, trans_b):
    if _FOUND is None:
        raise RuntimeError(_NO_OPENBLAS)
    if not C.flags.c_contiguous:        # BLAS writes rows of unit stride: go through a copy
        tmp = np.empty(C.shape, C.dtype)
        _deterministic_gemm(tmp, A, B, trans_a, trans_b)
        C[...] = tmp
        return
    if not A.flags.c_contiguous:
        A = np.ascontiguousarray(A)
    if not B.flags.c_contiguous:
        B = np.ascontiguousarray(B)
    M, N = C.shape
    work = M * N * (A.shape[0] if trans_a else A.shape[1])
    if work == 0:                       # nothing to sum (K = 0) or nothing to write
        C[...] = 0
    elif work <= _SMALL_WORK:
        with _lock:     # two Python threads must not interleave their thread-count save/restore
            _gemm_small(C, A, B, bool(trans_a), bool(trans_b))
    else:
        most = config.GEMM_BLOCKS
        _gemm_blocks(C, A, B, bool(trans_a), bool(trans_b), most, *_scratch(most, C.dtype))


def warm(dtype):
    """Compile (or load) both GEMM paths for ``dtype``: ``fd.warmup`` runs the model on tiny
    batches, whose GEMMs are all small; 128^3 multiply-adds take the blocked path."""
    for n in (8, 128):
        A = np.ones((n, n), dtype)
        gemm(np.empty((n, n), dtype), A, A)


def deterministic() -> bool:
    """Whether ``gemm`` takes the thread-count-independent form (``config.DETERMINISTIC``;
    None: where available)."""
    mode = config.DETERMINISTIC
    return _FOUND is not None if mode is None else bool(mode)


def gemm(C, A, B, trans_a=False, trans_b=False):
    """C = op(A) op(B) (``op`` transposes when its flag is set); C is C-contiguous and of A's
    and B's float dtype. Deterministic (``deterministic()``): the bits do not depend on the
    thread count (module docstring); else NumPy's ``matmul`` (OpenBLAS threads as set)."""
    mode = config.DETERMINISTIC
    if mode or (mode is None and _FOUND is not None):
        _deterministic_gemm(C, A, B, trans_a, trans_b)
    else:
        np.matmul(A.T if trans_a else A, B.T if trans_b else B, out=C)
