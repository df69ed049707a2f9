"""Weight initializers for a Dense weight W of shape (units, fan_in) = (n[l], n[l-1]).

    he      N(0, 2/fan_in)              course week 1 for ReLU; PyTorch kaiming_normal_ (fan_in)
    lecun   N(0, 1/fan_in)              what the course calls "Xavier" (for tanh)
    xavier  N(0, 2/(fan_in+fan_out))    Glorot & Bengio 2010; PyTorch xavier_normal_, Keras
    glorot  alias of xavier               glorot_normal (truncated there)
    zeros   0                           breaks symmetry not at all (course's cautionary tale)
    normal  N(0, scale^2)               course's ``randn * 0.01``; ``scale`` from Dense(init_scale)

Biases always start at zero. Draws come from an explicit ``numpy.random.Generator``.
"""

import numpy as np

INITIALIZERS = ("he", "lecun", "xavier", "glorot", "zeros", "normal")


def check_init(init):
    if callable(init):
        return init
    if not isinstance(init, str) or init not in INITIALIZERS:
        raise ValueError(f"init={init!r} is not a known initializer; expected one of "
                         f"{INITIALIZERS} or a callable (rng, shape) -> array")
    return init


def initialize(init, rng, shape, scale=0.01, what="W"):
    """A float64 array of ``shape`` (units, fan_in) drawn by ``init``; ``what`` names the
    tensor in errors (``layers[0].W``)."""
    fan_out, fan_in = shape
    if callable(init):
        w = np.asarray(init(rng, shape), dtype=np.float64)
        if w.shape != tuple(shape):
            raise ValueError(f"init={init!r} returned shape {w.shape} for {what}; expected "
                             f"{tuple(shape)} (units, inputs)")
        if not np.isfinite(w).all():
            raise ValueError(f"init={init!r} returned NaN or infinite values for {what}; "
                             "expected finite initial weights")
        return w
    if init == "zeros":
        return np.zeros(shape)
    std = {"he": np.sqrt(2.0 / fan_in), "lecun": np.sqrt(1.0 / fan_in),
           "xavier": np.sqrt(2.0 / (fan_in + fan_out)),
           "glorot": np.sqrt(2.0 / (fan_in + fan_out)), "normal": scale}[init]
    return rng.standard_normal(shape) * std
