"""Cases of ``fastdl/kernels/*/batchnorm.py`` (see ``tests/kernel_cases/__init__.py``)."""

import numpy as np

from fastdl.kernels import ACTIVATIONS, BF16
from fastdl.kernels import reference as R

from . import CUDA_RTOL, KernelCase

ACTS = sorted(ACTIVATIONS.values())
ALPHA = 0.07


def _inputs(d, m, n):
    """Features with offsets (the one-pass variance must not cancel) and, for n > 2, a
    constant feature (variance 0)."""
    X = (d.hostile((m, n), 1.0) + 5.0 + 2.0 * d.rng.standard_normal(n)).astype(d.dtype)
    if n > 2:
        X[:, 1] = 0.25
    gamma = d.rng.uniform(0.5, 2.0, n).astype(d.dtype)
    beta = d.normal(n)
    return X, gamma, beta


def _running(d, n):
    return d.normal(n), (1.0 + d.rng.random(n)).astype(d.dtype)


def _train(d, m, n, momentum, unbiased, act, low=False):
    """``low`` (here and in ``_eval``): the bfloat16 copy A16 is written too (float32 only)."""
    X, gamma, beta = _inputs(d, m, n)
    rm, rv = _running(d, n)
    return dict(A=d.out((m, n)), A16=d.out((m, n), BF16) if low and d.low else d.no16(),
                mean=d.out(n, np.float64), inv_std=d.out(n, np.float64),
                running_mean=rm, running_var=rv, X=X, gamma=gamma, beta=beta,
                momentum=momentum, eps=1e-5, unbiased=unbiased, activation=act, alpha=ALPHA)


def _eval(d, m, n, act, low=False):
    X, gamma, beta = _inputs(d, m, n)
    rm, rv = _running(d, n)
    return dict(A=d.out((m, n)), A16=d.out((m, n), BF16) if low and d.low else d.no16(), X=X, gamma=gamma, beta=beta, running_mean=rm,
                running_var=rv, eps=1e-3, activation=act, alpha=ALPHA)


def _backward(d, m, n, want_dx, act):
    X, gamma, beta = _inputs(d, m, n)
    X64 = X.astype(np.float64)
    mean = X64.mean(axis=0)
    inv_std = 1.0 / np.sqrt(X64.var(axis=0) + 1e-5)
    A = np.empty_like(X)
    R.batchnorm_forward_train(A, d.no16(), np.empty(n), np.empty(n), np.zeros(n, d.dtype),
                              np.ones(n, d.dtype), X, gamma, beta, 0.9, 1e-5, 0, act, ALPHA)
    return dict(dX=d.out((m, n)) if want_dx else d.skip(), dgamma=d.out(n), dbeta=d.out(n),
                dA=d.hostile((m, n), 1.0), A=A, X=X, mean=mean, inv_std=inv_std, gamma=gamma,
                activation=act, alpha=ALPHA)


def _dx_scale(args):
    """dX = gamma inv_std / m (m dz - dbeta - x_hat dgamma) cancels (to ~1e-7 of its terms at
    m = 2): compare it at the scale of its terms, |dA| gamma inv_std."""
    return float(np.abs(args["dA"]).max() * np.max(args["gamma"] * args["inv_std"]))


def _train_a_scale(args):
    """The cpu kernel normalizes float32 x with the float64 batch mean rounded to float32: an
    error of ~eps |x| before the scaling by gamma / std, which a nearly constant feature (std ~
    sqrt(eps)) magnifies. Compare A at the scale of those terms, max_j |gamma_j| max_i |x_ij| /
    std_j (about 3x max |A| for well-spread features)."""
    X = args["X"].astype(np.float64)
    if X.size == 0:
        return 1.0
    std = np.sqrt(X.var(axis=0) + args["eps"])
    return float((np.abs(args["gamma"]) * np.abs(X).max(axis=0) / std).max())


def _sum_scale(args):
    """dbeta = sum_i dz_i and dgamma = sum_i dz_i x_hat_i are sums whose terms can cancel (the
    cpu kernels add them in float32, the reference in float64), and dz = dA g'(a) of a saturated
    tanh/sigmoid carries the absolute error of 1 - a (~eps), not a relative one: compare them at
    the scale of the terms without g', max_j sum_i |dA_ij| max(1, |x_hat_ij|)."""
    x_hat = (args["X"].astype(np.float64) - args["mean"]) * args["inv_std"]
    return float((np.abs(args["dA"].astype(np.float64)) * np.maximum(1.0, np.abs(x_hat)))
                 .sum(axis=0).max(initial=0.0))


SHAPES_CPU = [(2, 1), (2, 3), (5, 1), (37, 53), (256, 130)]
#: the cpu parallel passes need >= 2 column blocks of 64 features
SHAPES_PARALLEL = [(37, 131)]
#: the simulator's shapes: several blocks of 4 threads, m = 2, one feature
TRAIN_SIM = [(9, 13, 0.9, 0, 1), (2, 3, 0.99, 1, 0), (5, 1, 1.0, 1, 3), (4, 6, 0.8, 0, 2),
             (3, 4, 0.9, 1, 4)]
#: float32: the cpu kernels normalize in float32 with float64 statistics rounded per feature,
#: the reference computes in float64 (its module docstring)
BN_RTOL = {np.float32: 5e-5, np.float64: 1e-12}
BN_CUDA_RTOL = {t: 5 * r for t, r in CUDA_RTOL.items()}

CASES = {
    "batchnorm_forward_train": KernelCase(
        draw=_train, sim=TRAIN_SIM + [TRAIN_SIM[0] + (True,)],
        cpu=[s + (mom, a % 2, a) for s in SHAPES_CPU for a in ACTS for mom in (0.9,)]
        + [(5, 4, 1.0, 1, 0), (4, 3, 0.0, 0, 1)]
        + [s + (0.9, a % 2, a, True) for s in SHAPES_CPU for a in ACTS],
        parallel=[s + (0.9, a % 2, a) for s in SHAPES_PARALLEL for a in ACTS]
        + [s + (0.9, 1, a, True) for s in SHAPES_PARALLEL for a in ACTS],
        outputs=("A", "A16", "mean", "inv_std", "running_mean", "running_var"),
        scale={"A": _train_a_scale}, aliases=(("A", "X"),), rtol=BN_RTOL,
        cuda_rtol=BN_CUDA_RTOL, cpu_parallel=True),
    "batchnorm_forward_eval": KernelCase(
        draw=_eval, sim=[(9, 7, a) for a in ACTS] + [(9, 7, 1, True)],
        cpu=[s + (a,) for s in SHAPES_CPU for a in ACTS]
        + [s + (a, True) for s in SHAPES_CPU for a in ACTS],
        parallel=[s + (a,) for s in SHAPES_PARALLEL for a in ACTS]
        + [s + (a, True) for s in SHAPES_PARALLEL for a in ACTS],
        outputs=("A", "A16"), aliases=(("A", "X"),), rtol=BN_RTOL, cuda_rtol=BN_CUDA_RTOL,
        cpu_parallel=True),
    "batchnorm_backward": KernelCase(
        draw=_backward,
        sim=[(9, 13, True, 1), (2, 3, True, 4), (6, 4, False, 0), (5, 5, True, 3),
             (4, 6, True, 2)],
        cpu=[s + (dx, a) for s in SHAPES_CPU for a in ACTS for dx in (True, False)],
        parallel=[s + (True, a) for s in SHAPES_PARALLEL for a in ACTS],
        outputs=("dX", "dgamma", "dbeta", "dA"), aliases=(("dX", "dA"),),
        scale={"dX": _dx_scale, "dgamma": _sum_scale, "dbeta": _sum_scale}, rtol=BN_RTOL,
        cuda_rtol=BN_CUDA_RTOL, cpu_parallel=True),
}
