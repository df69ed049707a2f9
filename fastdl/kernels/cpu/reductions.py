"""Reductions (cpu). Same math as the reference; one pass, no float64 copy of the input."""

from ._jit import jit


@jit
def _sum_squares(out, x):
    acc = 0.0
    for i in range(x.shape[0]):
        v = float(x[i])
        acc += v * v
    out[0] = acc


def sum_squares(out, x):
    """out[0] = sum x^2 (float64 accumulator); differs from the reference only in not copying."""
    _sum_squares(out, x)
