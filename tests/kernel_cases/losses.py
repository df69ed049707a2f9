"""Cases of ``fastdl/kernels/*/losses.py`` (see ``tests/kernel_cases/__init__.py``)."""

import numpy as np

from . import KernelCase

#: target kinds: "hard" (one-hot / 0-1 labels / normal values for mse), "soft" (probability
#: rows / values in [0, 1])
KINDS = ("hard", "soft")


def _targets(d, loss, m, c, kind):
    rng = d.rng
    if loss == "softmax_cross_entropy":
        if kind == "hard":
            return np.eye(c, dtype=d.dtype)[rng.integers(0, c, size=m)]
        y = rng.random((m, c)) + 0.05
        return (y / y.sum(axis=1, keepdims=True)).astype(d.dtype)
    if loss == "sigmoid_binary_cross_entropy":
        return (rng.integers(0, 2, size=(m, c)) if kind == "hard"
                else rng.random((m, c))).astype(d.dtype)
    return d.normal((m, c)) if kind == "hard" else rng.random((m, c)).astype(d.dtype)


def _logits(d, loss, m, c):
    Z = d.hostile((m, c), 2.0)
    if loss != "mean_squared_error":
        Z[0, 0] = 60.0                  # a large logit: exp(60) overflows float32's exp(2 z)
    return Z


def _unweighted(loss):
    def draw(d, m, c, kind, loss_dtype=np.float64):
        Z = _logits(d, loss, m, c)
        grad = "dA" if loss == "mean_squared_error" else "dZ"
        inp = "A" if loss == "mean_squared_error" else "Z"
        return {"loss": d.out((1,), loss_dtype), grad: d.out((m, c)), inp: Z,
                "Y": _targets(d, loss, m, c, kind)}
    return draw


def _weighted(loss):
    def draw(d, m, c, kind, weights):
        args = _unweighted(loss)(d, m, c, kind)
        if weights == "zero":               # the batch carries no information: J = 0, dZ = 0
            w = np.zeros(m, d.dtype)
        else:                               # zeros and one large weight among random ones
            w = (3 * d.rng.random(m) + 0.1).astype(d.dtype)
            if m > 1:
                w[0], w[-1] = 0.0, 7.5
        args.update(w=w, wsum=float(w.astype(np.float64).sum()))
        return args
    return draw


#: (m, c, kind): batch 1, one class, widths multiples of nothing; (129, 17) and (2, 1100) reach
#: the cpu softmax CE's NumPy-exp path (>= 2048 elements)
CPU = [(m, c, k) for m, c in ((1, 1), (1, 3), (7, 17), (129, 17), (2, 1100)) for k in KINDS]
#: the simulator: one block, three blocks (two-stage reduction), m = 1; once with the loss
#: buffer in the model's dtype (the cuda kernels accept either)
SIM = [(3, 4, "hard"), (9, 5, "soft"), (1, 1, "hard"), (9, 5, "hard", "model")]
PARALLEL = [(37, 131, "hard")]
WEIGHTED_CPU = [(m, c, k, "random") for m, c in ((1, 1), (7, 17), (129, 3)) for k in KINDS] \
    + [(7, 17, "hard", "zero"), (1, 3, "soft", "zero")]
WEIGHTED_SIM = [(3, 4, "hard", "random"), (9, 5, "soft", "random"), (1, 1, "hard", "random"),
                (3, 4, "hard", "zero")]


def _model_dtype_loss(draw):
    """Size tuples ending in "model" put the loss in the model's dtype."""
    def wrapped(d, *p):
        if p and p[-1] == "model":
            return draw(d, *p[:-1], loss_dtype=d.dtype)
        return draw(d, *p)
    return wrapped


def _bce_cost_scale(args):
    """The binary cross-entropy cost sums terms max(z, 0) - z y + log1p(e^-|z|) of size ~|z|
    that cancel (z = 60, y = 1: 60 - 60 + 8.8e-27): two correct evaluation orders differ by
    ~eps |z|, so the cost is compared at the scale of its largest row sum of |z|."""
    return float(np.abs(args["Z"].astype(np.float64)).sum(axis=1).max(initial=0.0))


CASES = {}
for _name, _inp, _grad in (("softmax_cross_entropy", "Z", "dZ"),
                           ("sigmoid_binary_cross_entropy", "Z", "dZ"),
                           ("mean_squared_error", "A", "dA")):
    _scale = {"loss": _bce_cost_scale} if _name == "sigmoid_binary_cross_entropy" else {}
    CASES[_name] = KernelCase(
        draw=_model_dtype_loss(_unweighted(_name)), sim=SIM, cpu=CPU, parallel=PARALLEL,
        outputs=("loss", _grad), aliases=((_grad, _inp),), scale=_scale, cpu_parallel=False)
    CASES["weighted_" + _name] = KernelCase(
        draw=_weighted(_name), sim=WEIGHTED_SIM, cpu=WEIGHTED_CPU,
        parallel=[PARALLEL[0] + ("random",)], outputs=("loss", _grad),
        aliases=((_grad, _inp),), scale=_scale, cpu_parallel=False)


def _poisson(d, m, c, weights=None):
    """Log-means in [-20, 20] (the cuda kernel's exp works in the input dtype: float32 keeps
    exp(20)) with zeros; counts with zeros, a large count and a fractional rate. ``weights``:
    "random" / "zero" as ``_weighted``, None for the unweighted kernel."""
    Z = np.clip(d.hostile((m, c), 3.0), -20, 20).astype(d.dtype)
    Y = d.rng.poisson(1.5, (m, c)).astype(np.float64)
    Y.reshape(-1)[0] = 500.0
    Y.reshape(-1)[-1] = 0.25 if Y.size > 1 else Y.reshape(-1)[-1]
    args = dict(loss=d.out((1,), np.float64), dZ=d.out((m, c)), Z=Z, Y=Y.astype(d.dtype))
    if weights is not None:
        w = np.zeros(m, d.dtype) if weights == "zero" else (3 * d.rng.random(m) + 0.1).astype(
            d.dtype)
        args.update(w=w, wsum=float(w.astype(np.float64).sum()))
    return args


def _poisson_cost_scale(args):
    """The deviance's terms exp(z) - y z + y log y - y cancel near the optimum; compare the cost
    at the scale of its largest row sum of |terms|."""
    z = args["Z"].astype(np.float64)
    y = args["Y"].astype(np.float64)
    ylogy = np.where(y > 0, y * np.log(np.where(y > 0, y, 1.0)), 0.0)
    return float((np.exp(z) + np.abs(y * z) + np.abs(ylogy) + y).sum(axis=1).max(initial=0.0))


CASES["exp_half_poisson_deviance"] = KernelCase(
    draw=_poisson, sim=[(3, 4), (9, 5), (1, 1)],
    cpu=[(1, 1), (1, 3), (7, 17), (129, 17), (2, 1100)], parallel=[(37, 131)],
    outputs=("loss", "dZ"), aliases=(("dZ", "Z"),), scale={"loss": _poisson_cost_scale},
    cpu_parallel=False)
CASES["weighted_exp_half_poisson_deviance"] = KernelCase(
    draw=_poisson, sim=[(3, 4, "random"), (9, 5, "random"), (3, 4, "zero")],
    cpu=[(1, 1, "random"), (7, 17, "random"), (129, 3, "random"), (7, 17, "zero")],
    parallel=[(37, 131, "random")],
    outputs=("loss", "dZ"), aliases=(("dZ", "Z"),), scale={"loss": _poisson_cost_scale},
    cpu_parallel=False)


def _correct(d, m, c, loss, weights, ties=False):
    """Logits with both signs around 0 (and, with ``ties``, equal maxima, NaN-free), targets
    one-hot / probability rows (softmax) or 0-1 / soft labels (sigmoid), weights or none."""
    if loss == 1:
        Y = _targets(d, "softmax_cross_entropy", m, c, "hard" if m % 2 else "soft")
    else:
        Y = _targets(d, "sigmoid_binary_cross_entropy", m, c, "hard" if m % 2 else "soft")
    Z = d.hostile((m, c), 2.0)
    if ties and c > 1:
        Z[:, 1] = Z[:, 0]               # the first of equal maxima wins
    w = (3 * d.rng.random(m)).astype(d.dtype) if weights else d.skip()
    return dict(out=d.out((1,), np.float64), Z=Z, Y=Y, w=w, loss=loss)


CASES["correct_predictions"] = KernelCase(
    draw=_correct,
    sim=[(9, 5, 1, False), (3, 4, 0, True), (1, 1, 0, False), (9, 3, 1, True, True),
         (7, 2, 0, False)],
    cpu=[(m, c, loss, w, ties) for m, c in ((1, 1), (1, 3), (7, 17), (129, 3), (0, 3))
         for loss in (0, 1) for w in (False, True) for ties in (False, True)],
    parallel=[(2000, 7, 1, True), (2000, 7, 0, False)],
    # counts: exact in the cpu backend (float64 sums of 0/1 and row fractions); the cuda kernel
    # adds in the dtype of Z
    rtol={np.float32: 1e-12, np.float64: 1e-12},
    cuda_rtol={np.float32: 1e-6, np.float64: 1e-12},
    outputs=("out",), cpu_parallel=False)
