"""Dropout and batch-norm kernels beyond the registry-driven comparison of cpu and reference
(``tests/test_kernels_vs_reference.py``): the dropout hash against an independent pure-Python
implementation and its statistics, the reference's own formulas, hypothesis fuzzing, and batch
norm against PyTorch ``BatchNorm1d`` (golden values from ``tests/golden/make_bn_golden.py``,
plus a live comparison when torch is installed).

Tolerances: dropout outputs and masks are compared bit for bit; batch norm float64 1e-12
relative, float32 1e-5 relative, ``atol`` scaled by the largest reference magnitude.
"""

import importlib.util
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastdl.kernels import ACTIVATIONS
from fastdl.kernels import cpu as C
from fastdl.kernels import reference as R
from fastdl.kernels.reference import dropout as R_dropout
from fastdl.nn import batchnorm_momentum_from_torch

#: empty bfloat16 outputs (A16, dZ16, the optimizers' shadow): kernels compute without
#: mixed-precision copies here (tests/test_precision.py covers them)
NO16 = np.zeros((0, 0), np.uint16)

DTYPES = (np.float32, np.float64)
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
ACTS = sorted(ACTIVATIONS.values())
ALPHA = 0.07            # leaky_relu slope
BACKENDS = {"numpy": R, "cpu": C}
HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "golden", "batchnorm_torch.npz")
_spec = importlib.util.spec_from_file_location(
    "make_bn_golden", os.path.join(HERE, "golden", "make_bn_golden.py"))
bn_golden = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bn_golden)


def assert_close(got, ref, dtype, rtol=None):
    rtol = RTOL[dtype] if rtol is None else rtol
    ref = np.asarray(ref)
    scale = np.abs(ref).max() if ref.size else 1.0
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * max(scale, 1e-30))


# ------------------------------------------------------------------------------ dropout ----
_MASK64 = (1 << 64) - 1


def _py_mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _py_keep(seed, step, layer, e, keep_prob):
    """The mask bit of element e, written with Python integers (independent of NumPy)."""
    key = _py_mix64(_py_mix64(_py_mix64(seed ^ 0x6A09E667F3BCC909) ^ step) ^ layer)
    h = _py_mix64((key + (e + 1) * 0x9E3779B97F4A7C15) & _MASK64)
    return (h >> 40) < math.ceil(keep_prob * 2 ** 24)


def test_hash_matches_pure_python_and_pinned_values():
    """The spec's hash, pinned: key and first hashes for (seed 42, step 7, layer 3), and the
    mask bits of a 4x8 batch at keep_prob 0.5 (a CUDA port must reproduce these)."""
    key = R_dropout._key(42, 7, 3)
    assert int(key[0]) == 0x0E18E6D1DA319CCE
    h = R_dropout._mix64(key + (np.arange(4, dtype=np.uint64) + np.uint64(1))
                         * R_dropout._GOLDEN)
    assert [int(v) for v in h] == [0x50AA95C91E7BA54F, 0x0AED8650EB0FBB69,
                                   0x3EC67F633640B27A, 0xF9A0D5B10C4C87FD]
    mask = R_dropout._keep_mask((4, 8), 42, 7, 3, 0.5)
    assert np.packbits(mask).tobytes().hex() == "e1c8ce70"
    for seed, step, layer, p in [(0, 0, 0, 0.5), (2 ** 63 - 1, 2 ** 40 + 3, 17, 0.8),
                                 (123456789, 1, 0, 0.1)]:
        mask = R_dropout._keep_mask((3, 11), seed, step, layer, p).reshape(-1)
        assert mask.tolist() == [_py_keep(seed, step, layer, e, p) for e in range(33)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("keep_prob", [0.5, 0.8, 1.0, 1e-6])
def test_dropout_is_the_mask_formula(dtype, keep_prob):
    """The reference (hence every backend, bit for bit) is inverted dropout with the hash's
    mask: A = X / keep_prob where kept, else 0; dX the same mask on dA, in place too;
    keep_prob = 1 is the identity."""
    shape = (37, 53)
    X = np.random.default_rng(3).standard_normal(shape).astype(dtype)
    X.reshape(-1)[::5] = 0.0
    seed, step, layer = 2 ** 62 + 12345, 987654321, 4
    A = np.full(shape, np.nan, dtype)
    R.dropout_forward(A, NO16, X, seed, step, layer, keep_prob)
    keep = R_dropout._keep_mask(shape, seed, step, layer, keep_prob)
    scale = dtype(1.0 / keep_prob)
    np.testing.assert_array_equal(A, np.where(keep, X * scale, 0))
    dA = (3.0 * X + 1.0).astype(dtype)
    dX = np.full(shape, np.nan, dtype)
    R.dropout_backward(dX, dA, seed, step, layer, keep_prob)
    np.testing.assert_array_equal(dX, np.where(keep, dA * scale, 0))
    R.dropout_backward(dA, dA, seed, step, layer, keep_prob)                # in place
    np.testing.assert_array_equal(dA, dX)
    if keep_prob == 1.0:
        np.testing.assert_array_equal(A, X)


@given(m=st.integers(1, 40), n=st.integers(1, 40), seed=st.integers(0, 2 ** 63 - 1),
       step=st.integers(0, 2 ** 63 - 1), layer=st.integers(0, 1000),
       keep_prob=st.floats(1e-3, 1.0))
@settings(max_examples=30, deadline=None)
def test_dropout_fuzz_bit_identical(m, n, seed, step, layer, keep_prob):
    X = np.random.default_rng(m * n).standard_normal((m, n)).astype(np.float32)
    A_ref, A_cpu = np.empty_like(X), np.empty_like(X)
    R.dropout_forward(A_ref, NO16, X, seed, step, layer, keep_prob)
    C.dropout_forward(A_cpu, NO16, X, seed, step, layer, keep_prob)
    np.testing.assert_array_equal(A_ref.view(np.uint32), A_cpu.view(np.uint32))


def test_dropout_preserves_mean_activation():
    """Inverted dropout keeps E[A] = X: over 400 steps x 2000 units the mean of A/X is 1 within
    0.5% (the standard error is sqrt((1-p)/(p N)) = 0.11% for p = 0.8, N = 8e5), and the kept
    fraction is keep_prob within 0.3%."""
    X = np.full((40, 50), 2.5, np.float32)
    A = np.empty_like(X)
    for p in (0.8, 0.5):
        total, kept = 0.0, 0
        for step in range(400):
            C.dropout_forward(A, NO16, X, 7, step, 1, p)
            total += float(A.astype(np.float64).sum())
            kept += int(np.count_nonzero(A))
        n = 400 * X.size
        assert total / (n * 2.5) == pytest.approx(1.0, abs=5e-3)
        assert kept / n == pytest.approx(p, abs=3e-3)


def test_dropout_masks_differ_across_seed_step_layer():
    """Each of seed, step and layer changes the mask, and masks of neighbouring counters are
    uncorrelated (agreement of two p=0.5 masks is 1/2 +- 2%)."""
    X = np.ones((64, 64), np.float64)
    base = np.empty_like(X)
    C.dropout_forward(base, NO16, X, 1, 10, 2, 0.5)
    for args in [(2, 10, 2), (1, 11, 2), (1, 10, 3)]:
        other = np.empty_like(X)
        C.dropout_forward(other, NO16, X, *args, 0.5)
        agree = np.mean((base != 0) == (other != 0))
        assert 0.48 < agree < 0.52, (args, agree)


def test_dropout_empty_batch_is_a_no_op():
    """m = 0: nothing is written, not even past the (empty) output: the output is a 0-row view
    into a poisoned buffer whose other rows must stay as they were (jitted code does no bounds
    checking)."""
    for K in BACKENDS.values():
        for dtype in DTYPES:
            buf = np.full((3, 5), 7.0, dtype)
            X = np.zeros((0, 5), dtype)
            K.dropout_forward(buf[1:1], NO16, X, 0, 0, 0, 0.5)
            K.dropout_backward(buf[2:2], X, 0, 0, 0, 0.5)
            K.dropout_forward(buf[1:1], NO16, buf[1:1], 0, 0, 0, 0.5)            # in place
            np.testing.assert_array_equal(buf, np.full((3, 5), 7.0, dtype))


# ---------------------------------------------------------------------------- batchnorm ----
def _bn_inputs(rng, m, n, dtype, offset=5.0):
    X = (offset + 3.0 * rng.standard_normal((m, n))).astype(dtype)
    if n > 2:
        X[:, 1] = 0.25                      # a constant feature: var = 0
    return (X, rng.uniform(0.5, 2.0, n).astype(dtype), rng.standard_normal(n).astype(dtype),
            rng.standard_normal((m, n)).astype(dtype))


def _bn_run(K, X, gamma, beta, dY, momentum=0.9, eps=1e-5, unbiased=False, need_dX=True,
            act=0, alpha=ALPHA):
    m, n = X.shape
    dt = X.dtype
    Y = np.full((m, n), np.nan, dt)
    mean, inv_std = np.full(n, np.nan), np.full(n, np.nan)
    rm = np.linspace(-1, 1, n).astype(dt)
    rv = np.linspace(0.5, 2, n).astype(dt)
    K.batchnorm_forward_train(Y, NO16, mean, inv_std, rm, rv, X, gamma, beta, momentum, eps, unbiased,
                              act, alpha)
    dX = np.full((m, n) if need_dX else (0, n), np.nan, dt)
    dg, db = np.full(n, np.nan, dt), np.full(n, np.nan, dt)
    dz = dY.copy()
    K.batchnorm_backward(dX, dg, db, dz, Y, X, mean, inv_std, gamma, act, alpha)
    Ye = np.full((m, n), np.nan, dt)
    K.batchnorm_forward_eval(Ye, NO16, X, gamma, beta, rm, rv, eps, act, alpha)
    return dict(Y=Y, mean=mean, inv_std=inv_std, rm=rm, rv=rv, dX=dX, dgamma=dg, dbeta=db,
                Ye=Ye, dz=dz)


@pytest.mark.parametrize("K", [R, C], ids=["numpy", "cpu"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_constant_feature(K, dtype):
    """A constant feature (variance 0) normalizes to beta and passes no gradient to gamma."""
    X, gamma, beta, dY = _bn_inputs(np.random.default_rng(4), 37, 5, dtype)
    got = _bn_run(K, X, gamma, beta, dY)
    np.testing.assert_allclose(got["Y"][:, 1], beta[1], rtol=1e-6)
    assert got["dgamma"][1] == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_math(dtype):
    """The reference itself: the normalized output has mean beta and (biased) std gamma, the
    running update is the EWA, momentum 1 freezes it, dX sums to 0 over the batch and its
    projection on x_hat is the eps term only."""
    rng = np.random.default_rng(3)
    X, gamma, beta, dY = _bn_inputs(rng, 64, 6, np.float64, offset=-2.0)
    r = _bn_run(R, X, gamma, beta, dY, unbiased=False)
    x_hat = (r["Y"] - beta) / gamma
    np.testing.assert_allclose(x_hat.mean(0), 0, atol=1e-12)
    var = X.var(0)
    np.testing.assert_allclose((x_hat ** 2).mean(0), var / (var + 1e-5), rtol=1e-10)
    np.testing.assert_allclose(r["rm"], 0.9 * np.linspace(-1, 1, 6) + 0.1 * X.mean(0))
    np.testing.assert_allclose(r["rv"], 0.9 * np.linspace(0.5, 2, 6) + 0.1 * var)
    np.testing.assert_allclose(r["dX"].sum(0), 0, atol=1e-10)
    # sum_i dx x_hat = gamma inv_std dgamma (1 - mean(x_hat^2)) = ... eps / (var + eps)
    np.testing.assert_allclose((r["dX"] * x_hat).sum(0),
                               gamma * r["inv_std"] * r["dgamma"] * 1e-5 / (var + 1e-5),
                               rtol=1e-6, atol=1e-12)
    frozen = _bn_run(C, X.astype(dtype), gamma.astype(dtype), beta.astype(dtype),
                     dY.astype(dtype), momentum=1.0)
    np.testing.assert_array_equal(frozen["rm"], np.linspace(-1, 1, 6).astype(dtype))
    np.testing.assert_array_equal(frozen["rv"], np.linspace(0.5, 2, 6).astype(dtype))


@pytest.mark.parametrize("K", [R, C], ids=["numpy", "cpu"])
def test_batchnorm_skip_dX_and_in_place(K):
    rng = np.random.default_rng(5)
    X, gamma, beta, dY = _bn_inputs(rng, 9, 4, np.float64)
    full = _bn_run(K, X, gamma, beta, dY, act=1)
    skip = _bn_run(K, X, gamma, beta, dY, need_dX=False, act=1)
    assert skip["dX"].shape == (0, 4)
    np.testing.assert_array_equal(skip["dgamma"], full["dgamma"])
    np.testing.assert_array_equal(full["dz"], np.where(full["Y"] > 0, dY, 0))   # dA -> dz
    mean, inv_std = full["mean"], full["inv_std"]
    d = dY.copy()
    dg, db = np.empty(4), np.empty(4)
    K.batchnorm_backward(d, dg, db, d, full["Y"], X, mean, inv_std, gamma, 1, ALPHA)  # dX is dA
    np.testing.assert_allclose(d, full["dX"], rtol=1e-13, atol=1e-15)


@given(m=st.integers(2, 40), n=st.integers(1, 40), offset=st.floats(-1e3, 1e3),
       scale=st.floats(1e-3, 1e3), act=st.sampled_from(ACTS))
@settings(max_examples=25, deadline=None)
def test_batchnorm_fuzz(m, n, offset, scale, act):
    rng = np.random.default_rng(m * 41 + n)
    X = offset + scale * rng.standard_normal((m, n))
    gamma, beta, dY = rng.uniform(0.5, 2, n), rng.standard_normal(n), rng.standard_normal((m, n))
    ref = _bn_run(R, X, gamma, beta, dY, act=act)
    got = _bn_run(C, X, gamma, beta, dY, act=act)
    for k in ref:
        if k == "dX":       # it may cancel to ~1e-8 of its terms: compare at their scale
            scale = np.abs(dY).max() * np.max(gamma * ref["inv_std"])
            np.testing.assert_allclose(got[k], ref[k], rtol=1e-9, atol=1e-9 * scale)
        else:
            assert_close(got[k], ref[k], np.float64, rtol=1e-9)


# --------------------------------------------------------------- batchnorm vs PyTorch ----
def _golden():
    with np.load(GOLDEN, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _ours_vs_torch(K, prob, dtype, momentum_torch, eps):
    """Run the torch problem through our kernels with converted momentum and the unbiased
    running variance; per-step outputs stacked as in ``run_torch``."""
    dt = np.dtype(dtype)
    X, dYs = prob["X"].astype(dt), prob["dY"].astype(dt)
    T, M, N = X.shape
    gamma, beta = prob["gamma"].astype(dt), prob["beta"].astype(dt)
    rm, rv = np.zeros(N, dt), np.ones(N, dt)         # PyTorch's initial running statistics
    momentum = batchnorm_momentum_from_torch(momentum_torch)
    out = {k: [] for k in ("Y", "dX", "dgamma", "dbeta", "running_mean", "running_var")}
    for t in range(T):
        Y, dX = np.empty((M, N), dt), np.empty((M, N), dt)
        mean, inv_std = np.empty(N), np.empty(N)
        dg, db = np.empty(N, dt), np.empty(N, dt)
        K.batchnorm_forward_train(Y, NO16, mean, inv_std, rm, rv, X[t], gamma, beta, momentum, eps,
                                  True, 0, 0.0)
        K.batchnorm_backward(dX, dg, db, dYs[t].copy(), Y, X[t], mean, inv_std, gamma, 0, 0.0)
        for k, v in zip(out, (Y, dX, dg, db, rm, rv)):
            out[k].append(v.copy())
    res = {k: np.stack(v) for k, v in out.items()}
    Ye = np.empty(prob["X_eval"].shape, dt)
    K.batchnorm_forward_eval(Ye, NO16, prob["X_eval"].astype(dt), gamma, beta, rm, rv, eps, 0, 0.0)
    res["Y_eval"] = Ye
    return res


TORCH_RTOL = {"float32": 2e-5, "float64": 1e-10}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("K", [R, C], ids=["numpy", "cpu"])
def test_batchnorm_matches_torch_golden(K, dtype):
    """Training (batch statistics, gradients, running statistics) and eval mode agree with
    PyTorch BatchNorm1d(momentum=0.1) recorded in tests/golden/batchnorm_torch.npz."""
    g = _golden()
    prob = {k.split("/", 1)[1]: v for k, v in g.items() if k.startswith("problem/")}
    ours = _ours_vs_torch(K, prob, dtype, bn_golden.MOMENTUM_TORCH, bn_golden.EPS)
    for k, v in ours.items():
        want = g[f"{dtype}/{k}"]
        np.testing.assert_allclose(v, want, rtol=TORCH_RTOL[dtype],
                                   atol=TORCH_RTOL[dtype] * np.abs(want).max(), err_msg=k)


def test_batchnorm_matches_torch_live():
    pytest.importorskip("torch")
    prob = bn_golden.problem()
    for dtype in ("float32", "float64"):
        want = bn_golden.run_torch(prob, dtype)
        golden = _golden()
        ours = _ours_vs_torch(C, prob, dtype, bn_golden.MOMENTUM_TORCH, bn_golden.EPS)
        for k, v in ours.items():
            np.testing.assert_allclose(v, want[k], rtol=TORCH_RTOL[dtype],
                                       atol=TORCH_RTOL[dtype] * np.abs(want[k]).max(),
                                       err_msg=k)
            np.testing.assert_allclose(golden[f"{dtype}/{k}"], want[k], rtol=1e-6,
                                       atol=1e-6 * np.abs(want[k]).max(), err_msg=k)
