"""Device plumbing shared by the cuda kernel files: buffers, launch geometry, per-dtype kernel
factories and the two-stage (non-racing) reductions.

Why kernels come from factories: numba types a Python float literal as float64, and
``float32 * float64`` is float64, so a literal in a float32 kernel silently runs in double
precision (1/64 rate on consumer GPUs; the simulator does no type checking and cannot catch
it). Each kernel is therefore built by ``_<name>_kernel(dtype)``, a cached factory that closes
over the numba scalar type ``T``: every literal is written ``T(1.0)`` and every shared array is
``cuda.shared.array(n, T)``. ``tests/test_kernels_cuda.py`` types each float32 kernel with the
CUDA compiler front end (no GPU needed) and fails on float64 arithmetic in Numba's typed IR;
device functions are ``inline="always"`` so that they are typed inside their kernels.

Launch geometry is read from ``fastdl.config`` at every launch (tests patch it small so tiny
shapes span several blocks). Everything runs on the default stream, so launches, cuBLAS calls
made through CuPy (also on the default stream) and copies are ordered without host syncs.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import cuda, float32, float64

from ... import config

#: Most blocks a grid-stride launch uses (each thread then loops).
MAX_BLOCKS = 1 << 16
#: Most blocks of the first stage of a reduction (the second stage is one block over them).
MAX_REDUCE_BLOCKS = 1024
#: Static size of the shared scratch of block reductions: the largest legal block.
SHARED_SIZE = 1024

_NB_TYPES = {np.dtype(np.float32): float32, np.dtype(np.float64): float64}


def nb_type(dtype):
    """The numba scalar type of a float32/float64 NumPy dtype."""
    try:
        return _NB_TYPES[np.dtype(dtype)]
    except KeyError:
        raise TypeError(f"dtype={np.dtype(dtype)} is not supported by the cuda kernels; "
                        "expected float32 or float64") from None


def per_dtype(make):
    """Decorator: ``make(T)`` builds kernels for the numba scalar type ``T``; the result,
    called with a NumPy dtype, returns them (built once per dtype, compiled on first launch)."""
    cached = functools.lru_cache(maxsize=None)(make)

    @functools.wraps(make)
    def get(dtype):
        return cached(nb_type(dtype))

    get.for_type = cached  # the same, keyed by the numba type (for use inside factories)
    return get


def in_simulator() -> bool:
    from numba import config as nb_config
    return bool(nb_config.ENABLE_CUDASIM)


# --- launch geometry ------------------------------------------------------------------------
def tpb() -> int:
    """Threads per block for 1-D launches (``config.CUDA_THREADS_PER_BLOCK``)."""
    return max(1, min(int(config.CUDA_THREADS_PER_BLOCK), SHARED_SIZE))


#: Items each thread of a reduction's first stage takes at least: small reductions (a batch's
#: loss, a layer's weights) then fit one block and need no second launch, which costs more
#: host time than the extra loop iterations cost the GPU.
REDUCE_ITEMS_PER_THREAD = 16


def blocks(n, threads=None, cap=MAX_BLOCKS) -> int:
    """Blocks of a grid-stride launch over ``n`` items."""
    t = tpb() if threads is None else threads
    return max(1, min((int(n) + t - 1) // t, cap))


def reduce_blocks(n) -> int:
    """Blocks of the first stage of a reduction over ``n`` items."""
    t = tpb() * REDUCE_ITEMS_PER_THREAD
    return max(1, min((int(n) + t - 1) // t, MAX_REDUCE_BLOCKS))


# --- buffers --------------------------------------------------------------------------------
def _empty(shape, dtype):
    return cuda.device_array(shape, dtype=np.dtype(dtype))


def _zeros(shape, dtype):
    arr = cuda.device_array(shape, dtype=np.dtype(dtype))
    if arr.size:
        flat = arr.reshape(arr.size)
        _fill_kernel[blocks(arr.size), tpb()](flat, arr.dtype.type(0))
    return arr


def _to_device(host_array, stream=0):
    """A device copy of ``host_array`` (asynchronous on ``stream`` when the host memory is
    pinned, e.g. from ``cuda.pinned_array``)."""
    return cuda.to_device(np.ascontiguousarray(host_array), stream=stream)


def _to_host(arr) -> np.ndarray:
    if isinstance(arr, np.ndarray):
        return arr
    return arr.copy_to_host()


def _synchronize():
    cuda.synchronize()


def is_device_array(a) -> bool:
    """A numba device array, a simulator one, or any ``__cuda_array_interface__`` object."""
    return not isinstance(a, np.ndarray) and (hasattr(a, "__cuda_array_interface__")
                                              or hasattr(a, "copy_to_host"))


def as_device(a, dtype=None):
    """``a`` if it already is a device array, else a device copy (small host inputs only)."""
    if is_device_array(a):
        return a
    host = np.asarray(a) if dtype is None else np.asarray(a, dtype=dtype)
    return cuda.to_device(np.ascontiguousarray(host))


def as_host(a) -> np.ndarray:
    return a.copy_to_host() if is_device_array(a) else np.asarray(a)


@cuda.jit
def _fill_kernel(out, value):
    """out[:] = value (1-D)."""
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = value


_scratch_cache: dict = {}


def scratch(name, n, dtype):
    """A reusable 1-D device buffer of at least ``n`` entries for a launcher's intermediates
    (reduction partials). Allocated on first use and grown, never per call; safe to reuse
    because every launch runs on the same stream."""
    key = (name, np.dtype(dtype))
    buf = _scratch_cache.get(key)
    if buf is None or buf.shape[0] < n:
        buf = cuda.device_array(max(int(n), 1), dtype=np.dtype(dtype))
        _scratch_cache[key] = buf
    return buf


_EMPTY_INDEX = {}
_EMPTY_BF16 = {}


def empty_bf16(ndim=2):
    """An empty uint16 device array of ``ndim`` dimensions, made once: the "no bfloat16 copy"
    argument of the dense kernels (2-D) and the optimizers' "no shadow" (1-D)."""
    if ndim not in _EMPTY_BF16:
        _EMPTY_BF16[ndim] = cuda.device_array((0,) * ndim, dtype=np.uint16)
    return _EMPTY_BF16[ndim]


def empty_index():
    """A 0-length int64 device array: "no row indirection" for the loss kernels."""
    if "i" not in _EMPTY_INDEX:
        _EMPTY_INDEX["i"] = cuda.device_array(0, dtype=np.int64)
    return _EMPTY_INDEX["i"]


# --- block reductions -----------------------------------------------------------------------
@cuda.jit(device=True, inline="always")
def block_sum(sh, v):
    """Sum of ``v`` over all threads of the block (1-D or 2-D), returned to every thread.

    ``sh`` is a shared array with at least blockDim.x * blockDim.y entries. Tree reduction, no
    atomics; safe to call repeatedly (it syncs before reusing ``sh``)."""
    tid = cuda.threadIdx.y * cuda.blockDim.x + cuda.threadIdx.x
    n = cuda.blockDim.x * cuda.blockDim.y
    cuda.syncthreads()
    sh[tid] = v
    cuda.syncthreads()
    stride = 1
    while stride < n:
        stride *= 2
    stride //= 2
    while stride > 0:
        if tid < stride and tid + stride < n:
            sh[tid] += sh[tid + stride]
        cuda.syncthreads()
        stride //= 2
    return sh[0]


@cuda.jit(device=True, inline="always")
def column_sum(sh, v):
    """In a 2-D block whose threadIdx.x indexes columns and threadIdx.y strides rows: the sum
    of ``v`` over threadIdx.y for this thread's column, returned to every thread. Tree
    reduction in ``sh`` (>= blockDim.x * blockDim.y entries); syncs before reusing it."""
    tx = cuda.threadIdx.x
    ty = cuda.threadIdx.y
    TX = cuda.blockDim.x
    TY = cuda.blockDim.y
    cuda.syncthreads()
    sh[ty * TX + tx] = v
    cuda.syncthreads()
    stride = 1
    while stride < TY:
        stride *= 2
    stride //= 2
    while stride > 0:
        if ty < stride and ty + stride < TY:
            sh[ty * TX + tx] += sh[(ty + stride) * TX + tx]
        cuda.syncthreads()
        stride //= 2
    return sh[tx]


def column_block():
    """(TX, TY) of column-strip kernels: 32 columns x 8 row-strides at 256 threads; tiny test
    blocks keep TY > 1 so the tree reduction runs."""
    t = tpb()
    tx = 32 if t >= 128 else max(1, t // 4)
    return tx, max(1, t // tx)


@per_dtype
def _finish_kernel(T):
    @cuda.jit
    def kernel(out, k, p1, n1, s1, p2, n2, s2):
        """Second stage of a reduction, one block: out[k] = s1 * sum(p1[:n1]) + s2 * sum(p2[:n2])."""
        sh = cuda.shared.array(SHARED_SIZE, T)
        a = T(0)
        for i in range(cuda.threadIdx.x, n1, cuda.blockDim.x):
            a += p1[i]
        b = T(0)
        for i in range(cuda.threadIdx.x, n2, cuda.blockDim.x):
            b += p2[i]
        total = block_sum(sh, s1 * a + s2 * b)
        if cuda.threadIdx.x == 0:
            out[k] = total
    return kernel


def finish(out, k, p1, n1, s1, p2=None, n2=0, s2=0.0):
    """Launch the second stage (one block) on the partials of one or two first stages."""
    dt = p1.dtype
    _finish_kernel(dt)[1, tpb()](out, k, p1, n1, dt.type(s1), p1 if p2 is None else p2, n2,
                                  dt.type(s2))
