"""Cases of ``fastdl/kernels/*/precision.py`` (see ``tests/kernel_cases/__init__.py``): the
float32 <-> bfloat16 conversions are exact functions (round to nearest even, NaN -> quiet NaN
with its sign), so every backend must agree bit for bit."""

import numpy as np

from fastdl.kernels import BF16

from . import EXACT, KernelCase

#: float32 values every rounding rule must get right: NaN of both signs (and with a payload
#: that truncation would turn into inf), infinities, the largest finite float32 (rounds to
#: inf), subnormals, signed zeros, and ties to even (1 + 2^-8 rounds down, 1 + 3 * 2^-8 up)
SPECIAL = np.array([np.nan, -np.nan, np.inf, -np.inf, 3.4028235e38, -3.39e38, 1e-40, -1e-45,
                    0.0, -0.0, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8, -(1.0 + 2.0 ** -8)],
                   np.float32)


def _narrow(d, *shape):
    x = d.hostile(shape, 10.0, np.float32).reshape(-1)
    x[:min(x.size, SPECIAL.size)] = SPECIAL[:x.size]
    if x.size > SPECIAL.size:               # a signalling-NaN payload in the low 16 bits
        x.view(np.uint32)[SPECIAL.size] = 0x7F800001
    return dict(out=d.out(shape, BF16), x=x.reshape(shape))


def _widen(d, *shape):
    bits = d.rng.integers(0, 1 << 16, size=shape).astype(BF16)
    flat = bits.reshape(-1)
    flat[:min(flat.size, 4)] = np.array([0x7FC0, 0xFF80, 0x0001, 0x8000], BF16)[:flat.size]
    return dict(out=d.out(shape), x=bits)


SIM = [(13,), (3, 7), (0,)]
CPU = [(1,), (13,), (4, 9), (64, 33), (0, 5)]
PARALLEL = [(3000,), (61, 67)]

CASES = {
    "to_bfloat16": KernelCase(draw=_narrow, sim=SIM, cpu=CPU, parallel=PARALLEL,
                              outputs=("out",), rtol=EXACT, dtypes=(np.float32,),
                              cpu_parallel=True),
    "from_bfloat16": KernelCase(draw=_widen, sim=SIM, cpu=CPU, parallel=PARALLEL,
                                outputs=("out",), rtol=EXACT, cpu_parallel=True),
}
