"""Scalar bfloat16 helpers for the cpu kernels (``reference/precision.py`` is the spec).

``bf16(x)`` rounds one float32 to bfloat16 bits (nearest even, NaN kept quiet with its sign);
``widen(u)`` is the exact inverse direction. They are ``inline="always"`` so that the kernels
which already write a float32 value (bias + activation, dZ, dropout, batch norm, the optimizer
update) also write its bfloat16 copy in the same loop: the conversion costs the 2-byte store,
not a pass over memory of its own. The bit casts are LLVM ``bitcast`` intrinsics, so the loops
still vectorize (checked with ``inspect_asm``: ``vpaddd``/``vpsrld`` on ymm registers).
"""

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from ._jit import jit


@intrinsic
def _f32_bits(typingctx, x):
    """The IEEE bit pattern of a float32 as a uint32 (no conversion)."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.uint32(types.float32), codegen


@intrinsic
def _bits_f32(typingctx, u):
    """The float32 whose bit pattern is the low 32 bits of integer ``u``."""
    if not isinstance(u, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        v = args[0]
        if v.type.width > 32:
            v = builder.trunc(v, ir.IntType(32))
        elif v.type.width < 32:
            v = builder.zext(v, ir.IntType(32))
        return builder.bitcast(v, ir.FloatType())
    return types.float32(u), codegen


@jit(inline="always")
def bf16(x):
    """bfloat16 bits (uint16) of float32 ``x``, round to nearest even."""
    u = _f32_bits(np.float32(x))
    if (u & 0x7FFFFFFF) > 0x7F800000:           # NaN: quiet, sign kept
        return np.uint16(((u >> 16) & 0x8000) | 0x7FC0)
    return np.uint16((u + 0x7FFF + ((u >> 16) & 1)) >> 16)


@jit(inline="always")
def widen(u):
    """The float32 value of bfloat16 bits ``u`` (exact)."""
    return _bits_f32(np.uint32(u) << 16)
