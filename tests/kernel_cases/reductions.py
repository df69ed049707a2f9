"""Cases of ``fastdl/kernels/*/reductions.py`` (see ``tests/kernel_cases/__init__.py``)."""

import numpy as np

from . import KernelCase


def _sum_squares(d, n, out_dtype=np.float64):
    return dict(out=d.out((1,), out_dtype), x=d.hostile((n,)))


def _out_in_model_dtype(d, n, where):
    """``where == "model"``: the result into a buffer of the model's dtype (cuda accepts it)."""
    return _sum_squares(d, n, d.dtype if where == "model" else np.float64)


CASES = {
    "sum_squares": KernelCase(
        draw=_out_in_model_dtype,
        # empty, one block (direct), several blocks (two stages)
        sim=[(0, "f64"), (3, "f64"), (11, "model"), (37, "f64")],
        cpu=[(0, "f64"), (1, "f64"), (17, "f64"), (1001, "f64"), (4099, "f64")],
        parallel=[(5003, "f64")],
        outputs=("out",),
        # float64 accumulation in every backend: only the order of the additions differs
        rtol={np.float32: 1e-12, np.float64: 1e-12},
        # the "model" case rounds the float64 sum to float32
        cuda_rtol={np.float32: 1e-7, np.float64: 1e-12},
        cpu_parallel=False),
}
