"""Cases of ``fastdl/kernels/*/activations.py`` (see ``tests/kernel_cases/__init__.py``)."""

import numpy as np

from fastdl.kernels import ACTIVATIONS
from fastdl.kernels import reference as R

from . import KernelCase

ACTS = sorted(ACTIVATIONS.values())
ALPHA = 0.07          # leaky_relu slope


def _forward(d, m, n, act):
    return dict(A=d.out((m, n)), Z=d.hostile((m, n)), activation=act, alpha=ALPHA)


def _backward(d, m, n, act):
    A = np.empty((m, n), d.dtype)
    R.activation_forward(A, d.hostile((m, n)), act, ALPHA)      # a valid output of g
    return dict(dZ=d.out((m, n)), dA=d.hostile((m, n), 1.0), A=A, activation=act, alpha=ALPHA)


def _softmax(d, m, n):
    Z = d.normal((m, n), 5.0)
    Z[0, 0] = 1e4                       # exp overflows without the max shift
    if m > 2:
        Z[1] += 800.0
        Z[2] -= 800.0
    return dict(P=d.out((m, n)), Z=Z)


#: (m, n): batch 1, widths that are multiples of nothing; (129, 17) and (3, 700) exceed the
#: cpu kernels' ``_UFUNC_MIN_SIZE`` (NumPy's SIMD exp/tanh instead of the jitted scalar form).
ELEMENTWISE_CPU = [(1, 1), (1, 17), (7, 3), (129, 17), (3, 700)]
#: above PARALLEL_TEST_SIZE, rows and columns multiples of nothing
ELEMENTWISE_PARALLEL = [(37, 131)]

CASES = {
    "activation_forward": KernelCase(
        draw=_forward,
        sim=[(9, 7, a) for a in ACTS],
        cpu=[s + (a,) for s in ELEMENTWISE_CPU for a in ACTS],
        parallel=[s + (a,) for s in ELEMENTWISE_PARALLEL for a in ACTS],
        outputs=("A",), aliases=(("A", "Z"),), cpu_parallel=True),
    "activation_backward": KernelCase(
        draw=_backward,
        sim=[(9, 7, a) for a in ACTS],
        cpu=[s + (a,) for s in ELEMENTWISE_CPU for a in ACTS],
        parallel=[s + (a,) for s in ELEMENTWISE_PARALLEL for a in ACTS],
        outputs=("dZ",), aliases=(("dZ", "dA"),), cpu_parallel=True),
    "softmax_forward": KernelCase(
        draw=_softmax,
        sim=[(9, 5), (1, 3)],
        cpu=[(1, 1), (1, 3), (7, 17), (129, 17), (2, 1100)],
        parallel=ELEMENTWISE_PARALLEL,
        outputs=("P",), aliases=(("P", "Z"),), cpu_parallel=False),
}
