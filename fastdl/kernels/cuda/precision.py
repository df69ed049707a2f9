"""bfloat16 conversions (cuda): one grid-stride kernel each, the reference's rounding.

Same math and storage as ``reference/precision.py`` (uint16 bit patterns, round to nearest
even, NaN kept quiet with its sign). The float32 <-> bits casts are CUDA's
``__float_as_int`` / ``__int_as_float`` (``numba.cuda.libdevice``) on a GPU; the simulator
does not implement libdevice, so there they are NumPy views (``_bits``). The kernels that
write a layer's data launch these after themselves on the cuda backend (the fused single-pass
versions are the cpu backend's; GPU mixed precision with fused GEMM epilogues is future work,
``docs/gpu.md``).
"""

import numpy as np
from numba import cuda

from ._device import blocks, in_simulator, tpb


def _bits():
    """(float32 -> int32 bits, int32 bits -> float32) device functions."""
    if in_simulator():
        @cuda.jit(device=True)
        def f2i(x):
            return np.int64(np.float32(x).view(np.uint32))

        @cuda.jit(device=True)
        def i2f(u):
            return np.uint32(u & 0xFFFFFFFF).view(np.float32)
        return f2i, i2f
    from numba.cuda import libdevice

    @cuda.jit(device=True, inline="always")
    def f2i(x):
        return np.int64(libdevice.float_as_int(np.float32(x))) & 0xFFFFFFFF

    @cuda.jit(device=True, inline="always")
    def i2f(u):
        return libdevice.int_as_float(np.int32(u))
    return f2i, i2f


_f2i, _i2f = _bits()


@cuda.jit(device=True, inline="always")
def bf16(x):
    """bfloat16 bits (uint16) of float32 ``x``, round to nearest even (device function)."""
    u = _f2i(x)
    if (u & 0x7FFFFFFF) > 0x7F800000:
        return np.uint16(((u >> 16) & 0x8000) | 0x7FC0)
    return np.uint16(((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF)


@cuda.jit
def _to_bfloat16_kernel(out, x):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        out[i] = bf16(x[i])


@cuda.jit
def _from_bfloat16_kernel(out, x):
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        out[i] = _i2f(np.int64(x[i]) << 16)


def _flat(a):
    return a.reshape(a.size) if a.ndim != 1 else a


def to_bfloat16(out, x):
    """out = bfloat16(x) (float32 ``x``, uint16 ``out``, both C-contiguous device arrays)."""
    if x.size:
        _to_bfloat16_kernel[blocks(x.size), tpb()](_flat(out), _flat(x))


def from_bfloat16(out, x):
    """out = x widened exactly (``out`` float32 or float64)."""
    if x.size:
        _from_bfloat16_kernel[blocks(x.size), tpb()](_flat(out), _flat(x))
