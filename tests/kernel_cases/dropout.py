"""Cases of ``fastdl/kernels/*/dropout.py`` (see ``tests/kernel_cases/__init__.py``): masks
are bit-identical in every backend (a counter-based hash), so outputs are compared exactly."""

import numpy as np

from fastdl.kernels import BF16

from . import EXACT, KernelCase

#: (seed, step, layer, keep_prob): large counters, keep_prob 1 (identity) and tiny
DRAWS = ((3, 5, 0, 0.8), (2**40 + 7, 123456789, 3, 0.5), (0, 0, 0, 1.0), (9, 2, 1, 0.1),
         (2**62 + 12345, 987654321, 4, 1e-6))


def _inputs(d, m, n):
    X = d.hostile((m, n))
    if X.size:
        X[0, 0] = np.nan            # a dropped NaN becomes 0, a kept one stays NaN
    return X


def _forward(d, m, n, seed, step, layer, keep_prob, low=False):
    """``low``: the bfloat16 copy A16 is written too (mixed precision, float32 only)."""
    A16 = d.out((m, n), BF16) if low and d.low else d.no16()
    return dict(A=d.out((m, n)), A16=A16, X=_inputs(d, m, n), seed=seed, step=step,
                layer=layer, keep_prob=keep_prob)


def _backward(d, m, n, seed, step, layer, keep_prob):
    return dict(dX=d.out((m, n)), dA=_inputs(d, m, n), seed=seed, step=step, layer=layer,
                keep_prob=keep_prob)


SIM = [(9, 7) + p for p in DRAWS[:4]]
CPU = [s + p for s in ((1, 1), (1, 17), (7, 1), (37, 53), (0, 5)) for p in DRAWS]
PARALLEL = [(37, 131) + p for p in DRAWS[:2]]

CASES = {
    "dropout_forward": KernelCase(draw=_forward, sim=SIM + [SIM[1] + (True,)],
                                  cpu=CPU + [p + (True,) for p in CPU[::3]],
                                  parallel=PARALLEL + [PARALLEL[0] + (True,)],
                                  outputs=("A", "A16"), aliases=(("A", "X"),), rtol=EXACT,
                                  cpu_parallel=True),
    "dropout_backward": KernelCase(draw=_backward, sim=SIM, cpu=CPU, parallel=PARALLEL,
                                   outputs=("dX",), aliases=(("dX", "dA"),), rtol=EXACT,
                                   cpu_parallel=True),
}
