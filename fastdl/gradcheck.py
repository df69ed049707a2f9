"""Gradient checking (course week 1, "Gradient checking").

For every parameter theta_i, the two-sided difference

    g'_i = (J(theta + eps e_i) - J(theta - eps e_i)) / (2 eps)

is compared with the backpropagated gradient g by the relative difference

    difference = ||g - g'||_2 / (||g||_2 + ||g'||_2)

which the course reads as: < 1e-7 great, ~1e-5 look closer, > 1e-3 a bug. ``passed`` uses
2e-7. The check always runs in float64 (on a float64 copy when the model is float32), in
training mode (batch statistics for batch norm) with randomness (dropout) switched off, and
reports the difference per tensor so a bug points at its layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._validation import check_float

THRESHOLD = 2e-7


@dataclass
class GradcheckResult:
    difference: float
    passed: bool
    threshold: float
    per_tensor: list = field(default_factory=list)   # [(name, difference, max_abs_error)]
    grad: np.ndarray = field(repr=False, default=None)
    numerical: np.ndarray = field(repr=False, default=None)

    def worst(self):
        """(name, difference) of the tensor that disagrees most."""
        return max(self.per_tensor, key=lambda t: t[1])[:2] if self.per_tensor else None

    def __str__(self):
        lines = [f"gradient check: difference {self.difference:.3e} "
                 f"({'passed' if self.passed else 'FAILED'}, threshold {self.threshold:.0e})"]
        for name, d, e in self.per_tensor:
            flag = "" if d < self.threshold else "   <-- check this layer"
            lines.append(f"  {name:<12} difference {d:.3e}  max |g - g'| {e:.3e}{flag}")
        return "\n".join(lines)


def _rel(a, b):
    den = np.linalg.norm(a) + np.linalg.norm(b)
    return 0.0 if den == 0 else float(np.linalg.norm(a - b) / den)


def gradcheck(model, X, y, eps=1e-7, l2=0.0, threshold=THRESHOLD, *, sample_weight=None):
    """Compare backprop gradients of ``model`` on (X, y) with two-sided differences.

    ``sample_weight`` (m,): check the weighted cost of ``Sequential.fit`` instead.

    Costs two forward passes per parameter: use a small batch and a small net. Returns a
    :class:`GradcheckResult` (``.difference``, ``.passed``, ``.per_tensor``).
    """
    from .nn.sequential import Sequential
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a fastdl Sequential, got {type(model).__name__}")
    if model.compute_dtype is not None:
        raise ValueError(
            f"gradcheck needs float64 arithmetic, but this model computes its GEMMs in "
            f"{model.compute_dtype} (compute_dtype={model.compute_dtype!r}), whose rounding "
            "(~3 significant digits) swamps finite differences. Check the same architecture "
            "in float64: fd.gradcheck(fd.Sequential.from_config({**model.get_config(), "
            "'dtype': 'float64', 'compute_dtype': None}), X, y)")
    eps = check_float("eps", eps, minimum=0.0, strict=True)
    l2 = check_float("l2", l2, minimum=0.0)
    work = model
    if model.dtype != np.float64:
        work = Sequential.from_config({**model.get_config(), "dtype": "float64"},
                                      backend=model.backend_name)
        work.set_weights([w.astype(np.float64) for w in model.get_weights()])
    Xc, Yc = work._XY(X, y)
    w = None if sample_weight is None else work._sample_weight(sample_weight, Xc.shape[0])[0]
    with _deterministic(work), work._state_kept():   # BatchNorm running statistics unchanged
        _, grad = work._flat_loss_and_grad(Xc, Yc, l2, w)
        theta = work.params.snapshot()
        num = np.empty_like(theta)
        probe = theta.copy()
        for i in range(theta.shape[0]):
            probe[i] = theta[i] + eps
            work.params.restore(probe)
            plus = work._cost(Xc, Yc, l2, w)
            probe[i] = theta[i] - eps
            work.params.restore(probe)
            minus = work._cost(Xc, Yc, l2, w)
            probe[i] = theta[i]
            num[i] = (plus - minus) / (2 * eps)
        work.params.restore(theta)
    per = []
    for layer, name in work._tensor_keys():          # layer order: W0, b0, W1, b1, ...
        off, shape = work.params.offsets[(layer, name)]
        sl = slice(off, off + int(np.prod(shape)))
        per.append((f"{name}{layer}", _rel(grad[sl], num[sl]),
                    float(np.max(np.abs(grad[sl] - num[sl]))) if shape else 0.0))
    diff = _rel(grad, num)
    return GradcheckResult(diff, bool(diff < threshold), threshold, per, grad, num)


class _deterministic:
    """Switch off layers' randomness (dropout) for the duration of the check."""

    def __init__(self, model):
        self.layers = [layer for layer in model.layers if hasattr(layer, "deterministic")]

    def __enter__(self):
        self.saved = [layer.deterministic for layer in self.layers]
        for layer in self.layers:
            layer.deterministic = True

    def __exit__(self, *exc):
        for layer, s in zip(self.layers, self.saved):
            layer.deterministic = s
