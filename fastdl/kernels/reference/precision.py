"""bfloat16 conversions (reference: the spec of every backend's rounding).

Storage: a bfloat16 array is a ``np.uint16`` array of bit patterns (``fastdl.kernels.BF16``):
NumPy has no bfloat16 dtype, Numba and numba.cuda index uint16 natively, and no extra package
is needed. bfloat16 is the top half of an IEEE float32 (1 sign, 8 exponent, 7 mantissa bits;
Kalamkar et al. 2019, "A Study of BFLOAT16 for Deep Learning Training"), so widening is exact:

    from_bfloat16:  bits32 = bits16 << 16

Narrowing rounds to nearest, ties to even, on the float32 bit pattern ``u``:

    to_bfloat16:    u16 = (u + 0x7FFF + ((u >> 16) & 1)) >> 16        (u not NaN)
                    u16 = sign(u) | 0x7FC0                             (u NaN: quiet NaN)

Subnormals round like normals (no flush to zero), values above the largest bfloat16 round to
inf, inf stays inf, NaN stays NaN with its sign (the payload is not kept). This is bit for bit
what ``ml_dtypes.bfloat16`` (Eigen's ``float_to_bfloat16_rtne``), PyTorch's
``Tensor.to(torch.bfloat16)`` and oneDNN's ``cvt_float_to_bfloat16`` do.

Only float32 narrows (a float64 model never computes in bfloat16, see ``fastdl/precision.py``);
``from_bfloat16`` widens into float32 or float64 (both exact).
"""

import numpy as np

_NAN_MASK = np.uint32(0x7FFFFFFF)
_INF_BITS = np.uint32(0x7F800000)


def to_bfloat16(out, x):
    """out = bfloat16(x), round to nearest even; ``x`` float32, ``out`` uint16 of x's shape."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = (u & _NAN_MASK) > _INF_BITS
    quiet = (((u >> 16) & 0x8000) | 0x7FC0).astype(np.uint16)
    out[...] = np.where(nan, quiet, rounded)


def from_bfloat16(out, x):
    """out = x widened exactly (``x`` uint16 bit patterns; ``out`` float32 or float64)."""
    out[...] = (np.asarray(x, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
