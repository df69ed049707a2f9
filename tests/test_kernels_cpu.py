"""The Numba cpu kernels: what the registry-driven comparison with the reference
(``tests/test_kernels_vs_reference.py``, every registered kernel on its declared cases) cannot
show: hostile values (NaN, inf, logits of 1e4) through both exp paths, hypothesis fuzzing of
shapes and scales, float32 accuracy beyond the reference's, the spec's weighting formula, and
errors on unknown codes.

Tolerances: float64 1e-12 relative, float32 1e-5 relative; ``atol`` is the same relative
tolerance times the largest reference magnitude, so that entries that cancel to ~0 are compared
at the scale of the array.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastdl.kernels import ACTIVATIONS
from fastdl.kernels import cpu as C
from fastdl.kernels import reference as R
from fastdl.kernels.cpu import activations as cpu_activations
from fastdl.kernels.cpu import losses as cpu_losses

#: empty bfloat16 outputs (A16, dZ16, the optimizers' shadow): kernels compute without
#: mixed-precision copies here (tests/test_precision.py covers them)
NO16 = np.zeros((0, 0), np.uint16)

DTYPES = (np.float32, np.float64)
ACTS = sorted(ACTIVATIONS.values())
RTOL = {np.float32: 1e-5, np.float64: 1e-12}


def assert_close(got, ref, dtype, rtol=None):
    rtol = RTOL[dtype] if rtol is None else rtol
    ref = np.asarray(ref)
    finite = np.abs(ref[np.isfinite(ref)]) if ref.size else np.zeros(1)
    scale = finite.max() if finite.size else 1.0
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * scale)


def randn(rng, shape, dtype, scale=1.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def hostile(rng, shape, dtype):
    """Normal values with exact zeros, tiny and large magnitudes mixed in."""
    z = 3.0 * rng.standard_normal(shape)
    flat = z.reshape(-1)
    k = flat.size
    flat[rng.integers(0, k, size=max(1, k // 7))] = 0.0
    flat[rng.integers(0, k, size=max(1, k // 11))] *= 30.0
    flat[rng.integers(0, k, size=max(1, k // 13))] *= 1e-6
    return z.astype(dtype)


SHAPES = [(1, 1), (1, 17), (7, 3), (129, 17)]


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=["jit", "ufunc"])
def exp_path(request, monkeypatch):
    """Run a test through both exp paths: jitted scalar (small buffers) and NumPy's SIMD
    ufuncs (large buffers; forced here by a threshold of 0)."""
    if request.param == "ufunc":
        monkeypatch.setattr(cpu_activations, "_UFUNC_MIN_SIZE", 0)
        monkeypatch.setattr(cpu_losses, "_UFUNC_MIN_SIZE", 0)
    return request.param


# --- activations ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_extremes_and_nan(dtype, exp_path):
    Z = np.array([[np.nan, -np.inf, np.inf, -1e4, 1e4, 0.0, -0.0, 88.0, -88.0, -745.0]],
                 dtype=dtype)
    for act in ACTS:
        A, A_ref = np.empty_like(Z), np.empty_like(Z)
        C.activation_forward(A, Z, act, 0.01)
        with np.errstate(all="ignore"):
            R.activation_forward(A_ref, Z, act, 0.01)
        np.testing.assert_array_equal(np.isnan(A), np.isnan(A_ref), err_msg=f"act {act}")
        assert_close(A, A_ref, dtype)
    # sigmoid stays in [0, 1] and is exact at the saturated ends
    A = np.empty_like(Z)
    C.activation_forward(A, Z, ACTIVATIONS["sigmoid"], 0.0)
    assert A[0, 3] == 0.0 and A[0, 4] == 1.0 and A[0, 5] == 0.5


def test_unknown_activation_code_raises():
    Z = np.zeros((2, 2))
    for bad in (-1, 5):
        with pytest.raises(ValueError, match="activation"):
            C.activation_forward(Z, Z, bad, 0.0)
        with pytest.raises(ValueError, match="activation"):
            C.activation_backward(Z, Z, Z, bad, 0.0)


# --- dense -----------------------------------------------------------------------------------

def test_dense_backward_db_accumulation_float32(rng):
    """db over many rows in float32 stays near the exact (float64) column sums."""
    m, n = 50_000, 3
    dA = (rng.standard_normal((m, n)) + 1.0).astype(np.float32)
    A = np.ones((m, n), np.float32)
    X = np.ones((m, 1), np.float32)
    W = np.ones((n, 1), np.float32)
    db, dW = np.empty(n, np.float32), np.empty((n, 1), np.float32)
    exact = dA.astype(np.float64).sum(axis=0)
    C.dense_backward(np.zeros(0, np.float32), dW, db, NO16, dA, A, X, W, 0, 0.0)
    np.testing.assert_allclose(db, exact, rtol=1e-6)  # row-by-row float32 (reference): 3e-6


@given(m=st.integers(1, 40), n_in=st.integers(1, 40), n_out=st.integers(1, 40),
       act=st.sampled_from(ACTS), bias=st.booleans(), scale=st.floats(1e-3, 1e2),
       seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(DTYPES))
@settings(max_examples=25, deadline=None)
def test_dense_fuzz(m, n_in, n_out, act, bias, scale, seed, dtype):
    rng = np.random.default_rng(seed)
    X = randn(rng, (m, n_in), dtype, scale)
    W = randn(rng, (n_out, n_in), dtype)
    b = randn(rng, (n_out,), dtype) if bias else np.zeros(0, dtype)
    res = []
    A_ref = np.empty((m, n_out), dtype)
    R.dense_forward(A_ref, NO16, X, W, b, act, 0.3)
    for k in (C, R):
        A = np.empty((m, n_out), dtype)
        k.dense_forward(A, NO16, X, W, b, act, 0.3)
        # backward from the same A: 1 - a^2 near a = 1 would amplify a 1-ulp forward difference
        dA = np.cos(np.arange(m * n_out, dtype=dtype)).reshape(m, n_out)
        dX, dW, db = (np.empty((m, n_in), dtype), np.empty((n_out, n_in), dtype),
                      np.empty(b.shape, dtype))
        k.dense_backward(dX, dW, db, NO16, dA, A_ref, X, W, act, 0.3)
        res.append((A, dX, dW, db))
    rtol = RTOL[dtype] * (5 if dtype == np.float32 else 1)
    # Backward outputs are compared at the scale of the products without the activation's
    # derivative: a saturated tanh/sigmoid's 1 - a^2 (or a(1 - a)) is a cancellation whose
    # absolute error is ~eps, not ~eps * (1 - a^2), and two correct formulas differ by that
    # much (found by this fuzz: tanh, scale 49, dX off by 2.4e-12 relative to its largest
    # element but 3e-16 relative to |dA| @ |W|).
    dA = np.abs(np.cos(np.arange(m * n_out, dtype=np.float64)).reshape(m, n_out))
    scales = (None, (dA @ np.abs(W.astype(np.float64))).max(),
              (dA.T @ np.abs(X.astype(np.float64))).max(), dA.sum(axis=0).max())
    for got, ref, scale in zip(*res, scales):
        if scale is None:
            assert_close(got, ref, dtype, rtol=rtol)
        else:
            np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * scale)


# --- losses ----------------------------------------------------------------------------------

LOSS_NAMES = ("softmax_cross_entropy", "sigmoid_binary_cross_entropy", "mean_squared_error")


def _targets(rng, name, shape, dtype, soft):
    m, c = shape
    if name == "softmax_cross_entropy" and not soft:
        return np.eye(c, dtype=dtype)[rng.integers(0, c, size=m)]
    if name == "softmax_cross_entropy":
        y = rng.random(shape)
        return (y / y.sum(axis=1, keepdims=True)).astype(dtype)
    if name == "sigmoid_binary_cross_entropy" and not soft:
        return rng.integers(0, 2, size=shape).astype(dtype)
    return rng.random(shape).astype(dtype) if soft else randn(rng, shape, dtype)


def _run_loss(k, name, Z, Y, in_place=False):
    loss = np.full(1, np.nan)
    Zc = Z.copy()
    dZ = Zc if in_place else np.full_like(Z, np.nan)
    getattr(k, name)(loss, dZ, Zc, Y)
    return loss, dZ


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 17), (129, 3)])
def test_weighted_losses(rng, dtype, name, shape):
    """weighted_<loss> against the spec's formula: J = sum w_i l_i / sum w (l_i from the
    unweighted kernel on one row), dZ_i = w_i dl_i/dz_i / sum w; all-ones weights give the
    unweighted kernel, zero-sum weights J = 0 and dZ = 0 (cpu and reference)."""
    Z = randn(rng, shape, dtype, 4.0)
    Y = _targets(rng, name, shape, dtype, soft=False)
    w = rng.random(shape[0]).astype(dtype) * 3
    w[0] = 0.0
    wsum = float(w.astype(np.float64).sum())
    res = {}
    for k in (C, R):
        loss, dZ = np.full(1, np.nan), np.full_like(Z, np.nan)
        getattr(k, "weighted_" + name)(loss, dZ, Z, Y, w, wsum)
        res[k] = loss, dZ
    rows = [_run_loss(R, name, Z[i:i + 1], Y[i:i + 1]) for i in range(shape[0])]
    for k in (C, R):
        if wsum == 0:
            break
        expect = sum(float(w[i]) * rows[i][0][0] for i in range(shape[0])) / wsum
        np.testing.assert_allclose(res[k][0][0], expect, rtol=10 * RTOL[dtype])
        np.testing.assert_allclose(res[k][1],             # row i: w_i (dl_i/dz_i) / wsum
                                   np.concatenate([r[1] * (float(w[i]) / wsum)
                                                   for i, r in enumerate(rows)]),
                                   rtol=1e-5, atol=1e-7)
    ones = np.ones(shape[0], dtype)
    for k in (C, R):
        loss, dZ = np.zeros(1), np.empty_like(Z)
        getattr(k, "weighted_" + name)(loss, dZ, Z, Y, ones, float(shape[0]))
        ref_loss, ref_dZ = _run_loss(k, name, Z, Y)
        assert_close(loss, ref_loss, dtype)
        assert_close(dZ, ref_dZ, dtype)
        getattr(k, "weighted_" + name)(loss, dZ, Z, Y, np.zeros_like(w), 0.0)
        assert loss[0] == 0.0 and (dZ == 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOSS_NAMES[:2])
def test_losses_huge_logits(rng, dtype, name, exp_path):
    """Logits of +-1e4 neither overflow nor produce NaN (log-sum-exp / |z| guards)."""
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype)
    Y = _targets(rng, name, Z.shape, dtype, soft=False)
    Y[0] = 0
    Y[0, 1] = 1  # confidently wrong: a huge but finite cost
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow is fine
        loss, dZ = _run_loss(C, name, Z, Y)
    loss_ref, dZ_ref = _run_loss(R, name, Z, Y)
    assert np.isfinite(loss[0]) and np.all(np.isfinite(dZ))
    assert loss[0] > 1e3
    assert_close(loss, loss_ref, dtype)
    assert_close(dZ, dZ_ref, dtype)


@given(m=st.integers(1, 30), c=st.integers(1, 30), scale=st.floats(1e-3, 1e4),
       soft=st.booleans(), seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(DTYPES),
       name=st.sampled_from(LOSS_NAMES))
@settings(max_examples=25, deadline=None)
def test_losses_fuzz(m, c, scale, soft, seed, dtype, name):
    rng = np.random.default_rng(seed)
    Z = randn(rng, (m, c), dtype, scale)
    Y = _targets(rng, name, (m, c), dtype, soft)
    loss, dZ = _run_loss(C, name, Z, Y)
    loss_ref, dZ_ref = _run_loss(R, name, Z, Y)
    assert np.isfinite(loss[0])
    # the cost is a mean of terms of size ~|z| that can cancel (BCE at z = 9, y = 1:
    # z - z y + log1p(e^-z)); two correct evaluation orders then differ by ~eps |z|, which the
    # fuzz found as 5.7e-12 relative to a 1.25e-4 cost
    rtol = RTOL[dtype]
    np.testing.assert_allclose(loss, loss_ref, rtol=rtol,
                               atol=rtol * float(np.abs(Z.astype(np.float64)).mean()))
    assert_close(dZ, dZ_ref, dtype)


# --- whole epoch --------------------------------------------------------------------------------

def test_unknown_codes_raise():
    """train_epoch on unknown loss/optimizer codes, correct_predictions on mse (no classes)."""
    args = [np.zeros(1), np.zeros(1), np.zeros(2), np.zeros(2), np.zeros((0, 2)), np.zeros(8),
            np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1, np.int64), 1,
            np.array([[0, 1, 1, 1, 0]], np.int64), 0, 0.0, 1, 0.0, 0, np.zeros(2), 0]
    for k in (C, R):
        bad_loss = list(args)
        bad_loss[11] = 9
        with pytest.raises((ValueError, IndexError)):
            k.train_epoch(*bad_loss)
        mse_with_correct = list(args)
        mse_with_correct[11] = 2
        with pytest.raises(ValueError, match="no classes"):
            k.train_epoch(*mse_with_correct)
        with pytest.raises(ValueError, match="no classes"):
            k.correct_predictions(np.zeros(1), np.zeros((2, 1)), np.zeros((2, 1)), np.zeros(0), 2)
    bad_loss = list(args)
    bad_loss[11] = 9
    with pytest.raises(ValueError, match="loss"):
        C.train_epoch(*bad_loss)
    bad_opt = list(args)
    bad_opt[15] = 99
    with pytest.raises(ValueError, match="optimizer"):
        C.train_epoch(*bad_opt)
