"""Gradient clipping before an optimizer update (reference: the spec).

clip_grads(out, grads, sum_sq, max_norm, clip_value)
    out      (n,)  the clipped gradient, written (an optimizer-owned buffer; ``grads`` is
                   never modified, so the model's gradient stays what backprop computed)
    grads    (n,)  the gradient of the data loss (the model's flat gradient buffer)
    sum_sq   (1,)  float64, ``sum(grads**2)`` from ``reductions.sum_squares`` (any value when
                   ``max_norm`` is inf); read on the device, so a GPU step needs no host sync
    max_norm       global-norm bound, ``inf`` = no norm clipping
    clip_value     element bound, ``inf`` = no value clipping

    coef = min(1, max_norm / (sqrt(sum_sq) + 1e-6))      (a NaN norm gives coef = NaN)
    out  = clip(grads * coef, -clip_value, clip_value)

The first line is PyTorch's ``torch.nn.utils.clip_grad_norm_`` (``clip_coef = max_norm /
(total_norm + 1e-6)``, clamped to 1; the same rule as ``tf.clip_by_global_norm`` up to the
1e-6), the second ``clip_grad_value_`` (``clamp(-c, c)``). Norm clipping comes first, as if
``clip_grad_norm_`` were called before ``clip_grad_value_``. NaN gradients stay NaN. With both
bounds at inf, ``out`` equals ``grads`` exactly (``g * 1``).
"""

import numpy as np

#: PyTorch's guard against a zero norm in ``clip_grad_norm_``.
NORM_EPS = 1e-6


def _clip_coefficient(sum_sq, max_norm):
    """min(1, max_norm / (sqrt(sum_sq) + 1e-6)) in float64; 1 when max_norm is inf; NaN
    propagates (PyTorch's ``clamp(max=1)`` keeps a NaN)."""
    if np.isinf(max_norm):
        return 1.0
    coef = float(max_norm) / (float(np.sqrt(sum_sq)) + NORM_EPS)
    if coef > 1.0:
        coef = 1.0
    return coef


def clip_grads(out, grads, sum_sq, max_norm, clip_value):
    t = grads.dtype.type
    coef = _clip_coefficient(float(sum_sq[0]), float(max_norm))
    c = t(clip_value)
    np.multiply(grads, t(coef), out=out)
    np.clip(out, -c, c, out=out)
