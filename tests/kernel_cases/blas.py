"""Cases of ``fastdl/kernels/*/blas.py`` (see ``tests/kernel_cases/__init__.py``): the GEMM
provider, C = op(A) op(B), with float operands of the case's dtype or (``low``) bfloat16
operands and a float32 C (mixed precision: float32 accumulation of exact bfloat16 products)."""

import numpy as np

from . import KernelCase

TRANSPOSES = ((False, False), (True, False), (False, True), (True, True))


def _gemm(d, m, k, n, trans_a, trans_b, low=False):
    low = low and d.low
    A = d.hostile((k, m) if trans_a else (m, k), 1.0)
    B = d.hostile((n, k) if trans_b else (k, n), 1.0)
    if low:
        A, B = d.bf16(A), d.bf16(B)
    return dict(C=d.out((m, n), np.float32 if low else None), A=A, B=B, trans_a=trans_a,
                trans_b=trans_b)


#: (m, k, n): one element, odd shapes, k = 0 (C = 0), a 784-wide inner dimension
SHAPES = [(1, 1, 1), (5, 7, 3), (33, 17, 65), (4, 0, 3), (8, 784, 16)]

CASES = {
    "gemm": KernelCase(
        draw=_gemm,
        sim=[(5, 7, 3) + t for t in TRANSPOSES] + [(5, 7, 3) + t + (True,) for t in TRANSPOSES],
        cpu=[s + t + (low,) for s in SHAPES for t in TRANSPOSES for low in (False, True)],
        # float operands: one BLAS call, no prange of fastdl's (a bfloat16 product above the
        # parallel size widens its operands with precision's parallel loop: cpu cases cover it)
        parallel=[(64, 50, 40) + t for t in TRANSPOSES[:2]],
        # float32 sums of k products in a different order than the reference's matmul
        rtol={np.float32: 2e-5, np.float64: 1e-12},
        outputs=("C",), cpu_parallel=False),
}
