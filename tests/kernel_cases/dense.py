"""Cases of ``fastdl/kernels/*/dense.py`` (see ``tests/kernel_cases/__init__.py``)."""

import numpy as np

from fastdl.kernels import ACTIVATIONS, BF16
from fastdl.kernels import reference as R

from . import KernelCase

ACTS = sorted(ACTIVATIONS.values())
ALPHA = 0.07


def _inputs(d, m, n_in, n_out, bias):
    X = d.hostile((m, n_in), 1.0)
    W = d.hostile((n_out, n_in), 1.0 / np.sqrt(max(n_in, 1)))
    b = d.hostile((n_out,), 1.0) if bias else d.skip()
    return X, W, b


def _low_inputs(d, m, n_in, n_out, bias, low):
    """``low`` (mixed precision, float32 only): X and W as the layer passes them then, the
    bfloat16 copies (the GEMMs take bfloat16 operands and accumulate in float32)."""
    X, W, b = _inputs(d, m, n_in, n_out, bias)
    if low:
        X, W = d.bf16(X), d.bf16(W)
    return X, W, b


def _forward(d, m, n_in, n_out, act, bias, low=False):
    low = low and d.low
    X, W, b = _low_inputs(d, m, n_in, n_out, bias, low)
    return dict(A=d.out((m, n_out)), A16=d.out((m, n_out), BF16) if low else d.no16(), X=X,
                W=W, b=b, activation=act, alpha=ALPHA)


def _backward(d, m, n_in, n_out, act, bias, want_dx, low=False):
    low = low and d.low
    X, W, b = _low_inputs(d, m, n_in, n_out, bias, low)
    A = np.empty((m, n_out), d.dtype)
    R.dense_forward(A, d.no16(), X, W, b, act, ALPHA)
    return dict(dX=d.out((m, n_in)) if want_dx else d.skip(), dW=d.out((n_out, n_in)),
                db=d.out((n_out,)) if bias else d.skip(),
                dZ16=d.out((m, n_out), BF16) if low else d.no16(),
                dA=d.hostile((m, n_out), 1.0 / m), A=A, X=X, W=W, activation=act, alpha=ALPHA)


#: (m, n_in, n_out): batch 1, sizes multiples of nothing, a layer without inputs (n_in = 0:
#: A = b, db still summed), and m > the cpu db block (256 rows) so db sums span blocks
SHAPES_CPU = [(1, 1, 1), (3, 7, 17), (129, 17, 3), (64, 5, 129), (1, 129, 7), (300, 3, 7),
              (5, 0, 3)]
#: the cpu parallel pass needs n_out >= 2 column blocks of 64: 300 = 4 blocks and a partial one
SHAPES_PARALLEL = [(37, 5, 300)]
#: the simulator: every activation on one shape, one code each on the others (its GEMM tile and
#: blocks are patched to 4, so these shapes span several of both)
SIM_FORWARD = ([(9, 5, 13, a, True) for a in ACTS]
               + [(1, 3, 2, 4, True), (1, 3, 2, 1, False), (6, 13, 1, 2, True),
                  (6, 13, 1, 3, False), (9, 5, 13, 0, False)])
SIM_BACKWARD = [(1, 3, 2, 4, True, True), (9, 5, 13, 1, True, True), (9, 5, 13, 2, True, True),
                (6, 13, 1, 3, True, True), (7, 4, 5, 1, False, True), (7, 4, 5, 3, True, False),
                (7, 4, 5, 0, False, False)]

#: mixed precision (the trailing True): bfloat16 X and W, the A16 / dZ16 copies written
LOW_FORWARD = [s + (a, True, True) for s in SHAPES_CPU for a in ACTS]
LOW_BACKWARD = [s + (a, True, True, True) for s in SHAPES_CPU for a in ACTS] \
    + [(7, 4, 5, 1, False, False, True)]

CASES = {
    "dense_forward": KernelCase(
        draw=_forward,
        sim=SIM_FORWARD + [(9, 5, 13, 1, True, True), (6, 13, 1, 3, False, True)],
        cpu=[s + (a, bias) for s in SHAPES_CPU for a in ACTS for bias in (True, False)]
        + LOW_FORWARD,
        parallel=[s + (a, True) for s in SHAPES_PARALLEL for a in ACTS]
        + [s + (a, True, True) for s in SHAPES_PARALLEL for a in ACTS],
        outputs=("A", "A16"), cpu_parallel=True),
    "dense_backward": KernelCase(
        draw=_backward,
        sim=SIM_BACKWARD + [(9, 5, 13, 2, True, True, True), (7, 4, 5, 3, True, False, True)],
        cpu=[s + (a, bias, dx) for s in SHAPES_CPU for a in ACTS
             for bias, dx in ((True, True), (False, True), (True, False))] + LOW_BACKWARD,
        parallel=[s + (a, True, True) for s in SHAPES_PARALLEL for a in ACTS]
        + [s + (a, True, True, True) for s in SHAPES_PARALLEL for a in ACTS],
        outputs=("dX", "dW", "db", "dZ16", "dA"), cpu_parallel=True),
}
