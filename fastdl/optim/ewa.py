"""Exponentially weighted averages (course week 2), with the course's bias correction::

    v_0 = 0;   v_t = beta * v_{t-1} + (1 - beta) * x_t;   corrected: v_t / (1 - beta**t)

``EWA`` is the running form (``update(x)`` returns the average so far); ``ewa(series)`` is the
vectorised form over a whole series. Both give the same numbers (same recurrence and
operations in float64). NaN or inf values propagate; they are not rejected (a diverged cost
should show up in a smoothed curve, not crash it).
An EWA with ``beta`` averages over roughly ``1 / (1 - beta)`` values; without correction the
first values are biased towards 0.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .. import config
from .base import check_beta, check_bool


class EWA:
    """Running exponentially weighted average.

    Parameters
    ----------
    beta : float in [0, 1)
        Weight of the past (0.9: about the last 10 values).
    bias_correction : bool, default True
        Divide by ``1 - beta**t`` so early averages are not biased towards 0.

    Examples
    --------
    >>> avg = EWA(beta=0.5)
    >>> avg.update(1.0), avg.update(2.0), avg.update(3.0)
    (1.0, 1.6666666666666667, 2.4285714285714284)
    """

    def __init__(self, beta, bias_correction=True):
        self.beta = check_beta("beta", beta)
        self.bias_correction = check_bool("bias_correction", bias_correction)
        self.reset()

    def reset(self):
        """Forget every value seen."""
        self.t = 0
        self._v = 0.0
        self._power = 1.0        # beta**t as a running product, as ewa() computes it

    def update(self, x):
        """Add ``x`` (a number, or an array of a fixed shape) and return the average so far."""
        x = np.asarray(x, dtype=np.float64)
        self.t += 1
        self._power *= self.beta
        self._v = self.beta * self._v + (1.0 - self.beta) * x
        return self.value

    @property
    def value(self):
        """The current average (``nan`` before the first update)."""
        if self.t == 0:
            return float("nan")
        v = self._v * (1.0 / (1.0 - self._power)) if self.bias_correction else self._v
        return float(v) if np.ndim(v) == 0 else v

    def __repr__(self):
        return f"EWA(beta={self.beta!r}, bias_correction={self.bias_correction!r}, t={self.t})"


@njit(cache=config.JIT_CACHE, nogil=True)
def _ewa_rows(out, x, beta, bias_correction):
    # out, x: (T, k) float64; the recurrence runs down axis 0, one column at a time per row
    v = np.zeros(x.shape[1])
    c = 1.0 - beta
    power = 1.0
    for t in range(x.shape[0]):
        power *= beta
        scale = 1.0 / (1.0 - power) if bias_correction else 1.0
        for j in range(x.shape[1]):
            v[j] = beta * v[j] + c * x[t, j]
            out[t, j] = v[j] * scale


def ewa(series, beta, bias_correction=True):
    """The exponentially weighted average of ``series`` along its first axis (float64).

    ``ewa([1, 2, 3], beta=0.5)`` -> ``[1.0, 1.6667, 2.4286]``; ``out[t]`` is what
    :meth:`EWA.update` returns after ``series[0..t]``.
    """
    beta = check_beta("beta", beta)
    bias_correction = check_bool("bias_correction", bias_correction)
    try:
        x = np.asarray(series, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("series could not be converted to a numeric array; expected numbers") \
            from None
    if x.ndim == 0:
        raise ValueError(f"series has shape {x.shape}; expected at least one dimension")
    x2 = np.ascontiguousarray(x.reshape(x.shape[0], -1))
    out = np.empty_like(x2)
    _ewa_rows(out, x2, beta, bias_correction)
    return out.reshape(x.shape)
