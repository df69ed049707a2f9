"""Image augmentation of a mini-batch: flips, shifts, Gaussian noise, on the device (cuda).

Same draws, order of operations and results as ``reference/augment.py`` (bit for bit: read its
legend). Differs in running one thread per output element (each recomputes its example's three
draws: three hashes are cheaper than a second launch); the batch key and the noise key are
computed on the host, exactly as the reference computes them.

Two things keep the bits equal to the host's. All hash arithmetic is uint64 (``U(...)``), as in
``dropout.py``. And no multiply may be fused with an add: NVVM contracts ``a * b + c`` into one
FMA by default (one rounding instead of the reference's two; seen in the PTX), so every product
that feeds a sum goes through ``_mul`` / ``_add``, CUDA's ``__dmul_rn`` / ``__dadd_rn``, which
are never contracted (CUDA Math API). The simulator has no libdevice; there they are plain
Python arithmetic on float64, which is already IEEE round-to-nearest.
``tests/test_kernels_cuda.py`` checks the kernel's PTX for ``fma`` instructions.

The quantile function runs in float64 also for float32 data (the noise is then rounded to
float32, as in the reference): ~40 float64 operations per element, cheap on data-centre GPUs
(H100/H200: half the float32 rate) and ~0.3 ms per 3M elements on a consumer GPU's 1/64 rate.
"""

import math

import numpy as np
from numba import cuda, uint64 as U

from ..reference.augment import (LN2, LOG_TERMS, NOISE_SALT, PPF_A, PPF_B, PPF_C, PPF_D,
                                 PPF_LOW, SQRT_HALF, TWO_M53)
from ..reference.augment import _key as _host_key
from ..reference.dropout import _mix64 as _host_mix64
from ._device import blocks, in_simulator, per_dtype, tpb
from .dropout import _GOLDEN, _mix64


def _rn_ops():
    """(multiply, add) in float64 that the compiler never fuses into an FMA."""
    if in_simulator():
        @cuda.jit(device=True)
        def mul(a, b):
            return a * b

        @cuda.jit(device=True)
        def add(a, b):
            return a + b
        return mul, add
    from numba.cuda import libdevice

    @cuda.jit(device=True, inline="always")
    def mul(a, b):
        return libdevice.dmul_rn(a, b)

    @cuda.jit(device=True, inline="always")
    def add(a, b):
        return libdevice.dadd_rn(a, b)
    return mul, add


_mul, _add = _rn_ops()
_A0, _A1, _A2, _A3, _A4, _A5 = PPF_A
_B0, _B1, _B2, _B3, _B4 = PPF_B
_C0, _C1, _C2, _C3, _C4, _C5 = PPF_C
_D0, _D1, _D2, _D3 = PPF_D
_LOG_N = len(LOG_TERMS)


@cuda.jit(device=True, inline="always")
def _h(start, j):
    return _mix64(start + (U(j) + U(1)) * U(_GOLDEN))


@cuda.jit(device=True, inline="always")
def _shift_draw(h, shift):
    return np.int64(((h >> U(32)) * (U(2) * U(shift) + U(1))) >> U(32)) - shift


@cuda.jit(device=True, inline="always")
def _horner6(x, c0, c1, c2, c3, c4, c5):
    acc = _add(_mul(c0, x), c1)
    acc = _add(_mul(acc, x), c2)
    acc = _add(_mul(acc, x), c3)
    acc = _add(_mul(acc, x), c4)
    return _add(_mul(acc, x), c5)


@cuda.jit(device=True, inline="always")
def _log(p):
    m, e = math.frexp(p)
    if m < SQRT_HALF:
        m = m * 2.0
        e -= 1
    s = (m - 1.0) / (m + 1.0)
    w = _mul(s, s)
    acc = LOG_TERMS[0]
    for k in range(1, _LOG_N):
        acc = _add(_mul(acc, w), LOG_TERMS[k])
    return _add(_mul(np.float64(e), LN2), _mul(_mul(2.0, s), acc))


@cuda.jit(device=True, inline="always")
def _normal_ppf(u):
    if u < PPF_LOW or u > 1.0 - PPF_LOW:
        p = u if u < 0.5 else 1.0 - u
        t = math.sqrt(_mul(-2.0, _log(p)))
        num = _horner6(t, _C0, _C1, _C2, _C3, _C4, _C5)
        den = _add(_mul(_add(_mul(_add(_mul(_add(_mul(_D0, t), _D1), t), _D2), t), _D3), t),
                   1.0)
        z = num / den
        return z if u < 0.5 else -z
    q = u - 0.5
    r = _mul(q, q)
    num = _mul(_horner6(r, _A0, _A1, _A2, _A3, _A4, _A5), q)
    den = _add(_mul(_add(_mul(_add(_mul(_add(_mul(_add(_mul(_B0, r), _B1), r), _B2), r), _B3),
                                r), _B4), r), 1.0)
    return num / den


@per_dtype
def _augment_kernel(T):
    @cuda.jit
    def kernel(out, X, H, W, C, key, nkey, flip, shift, noise):
        """out[i, e] for every (row, element) e = (y W + x) C + c; grid-stride."""
        n = X.shape[1]
        for g in range(cuda.grid(1), X.shape[0] * n, cuda.gridsize(1)):
            i = g // n
            e = g - i * n
            c = e % C
            pix = e // C
            y = pix // W
            x = pix - y * W
            ii = U(i)
            sy = y
            sx = x
            if shift:
                sy = y - _shift_draw(_h(key, U(3) * ii + U(1)), shift)
                sx = x - _shift_draw(_h(key, U(3) * ii + U(2)), shift)
            v = T(0)
            if 0 <= sy < H and 0 <= sx < W:
                if flip and (_h(key, U(3) * ii) >> U(63)) == U(1):
                    sx = W - 1 - sx
                v = X[i, (sy * W + sx) * C + c]
            if noise != 0.0:
                u = np.float64((_h(nkey, U(g)) >> U(12)) * U(2) + U(1)) * TWO_M53
                v = v + T(np.float32(_mul(noise, _normal_ppf(u))))
            out[i, e] = v
    return kernel


def augment_images(out, X, height, width, channels, seed, epoch, batch, flip, shift, noise):
    """out = the augmented batch X (device arrays; ``out`` may be ``X`` only when flip and
    shift are off)."""
    m, n = X.shape
    if m == 0 or n == 0:
        return
    key = _host_key(int(seed), int(epoch), int(batch))
    nkey = _host_mix64(key ^ NOISE_SALT)
    _augment_kernel(X.dtype)[blocks(m * n), tpb()](
        out, X, int(height), int(width), int(channels), key[0], nkey[0], bool(flip),
        int(shift), float(noise))
