"""The Numba cpu kernels against the NumPy reference (the spec), float32 and float64.

Tolerances: float64 1e-12 relative, float32 1e-5 relative; ``atol`` is the same relative
tolerance times the largest reference magnitude, so that entries that cancel to ~0 are compared
at the scale of the array. Shapes are hostile (batch 1, sizes that are multiples of nothing).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastdl import config
from fastdl.kernels import ACTIVATIONS, LOSSES, OPTIMIZERS
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
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", SHAPES)
def test_activation_forward(rng, dtype, act, shape, exp_path):
    Z = hostile(rng, shape, dtype)
    A, A_ref = np.full(shape, np.nan, dtype), np.full(shape, np.nan, dtype)
    C.activation_forward(A, Z, act, 0.1)
    R.activation_forward(A_ref, Z, act, 0.1)
    assert A.dtype == dtype
    assert_close(A, A_ref, dtype)
    # in place (A is Z)
    Z2 = Z.copy()
    C.activation_forward(Z2, Z2, act, 0.1)
    assert_close(Z2, A_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", SHAPES)
def test_activation_backward(rng, dtype, act, shape):
    Z = hostile(rng, shape, dtype)
    A = np.empty_like(Z)
    R.activation_forward(A, Z, act, 0.2)
    dA = randn(rng, shape, dtype)
    dZ, dZ_ref = np.empty_like(dA), np.empty_like(dA)
    C.activation_backward(dZ, dA, A, act, 0.2)
    R.activation_backward(dZ_ref, dA, A, act, 0.2)
    assert_close(dZ, dZ_ref, dtype)
    # in place (dZ is dA)
    dA2 = dA.copy()
    C.activation_backward(dA2, dA2, A, act, 0.2)
    assert_close(dA2, dZ_ref, dtype)


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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (7, 17), (129, 17)])
def test_softmax_forward(rng, dtype, shape, exp_path):
    Z = randn(rng, shape, dtype, 5.0)
    Z[0, 0] = 1e4
    if shape[1] > 2:
        Z[-1, 1], Z[-1, 2] = -1e4, 1e4
    P, P_ref = np.empty_like(Z), np.empty_like(Z)
    C.softmax_forward(P, Z)
    R.softmax_forward(P_ref, Z)
    assert np.all(np.isfinite(P))
    assert_close(P, P_ref, dtype)
    assert_close(P.sum(axis=1), np.ones(shape[0]), dtype, rtol=10 * RTOL[dtype])
    C.softmax_forward(Z, Z)  # in place
    assert_close(Z, P_ref, dtype)


# --- dense -----------------------------------------------------------------------------------

DENSE_SHAPES = [(1, 1, 1), (3, 7, 17), (129, 17, 3), (64, 5, 129), (1, 129, 7), (300, 3, 7)]


def _dense_case(rng, dtype, m, n_in, n_out, bias):
    X = randn(rng, (m, n_in), dtype)
    W = randn(rng, (n_out, n_in), dtype, 1.0 / np.sqrt(n_in))
    b = randn(rng, (n_out,), dtype) if bias else np.zeros(0, dtype)
    return X, W, b


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", DENSE_SHAPES)
@pytest.mark.parametrize("bias", [True, False])
def test_dense_forward(rng, dtype, act, shape, bias, exp_path):
    m, n_in, n_out = shape
    X, W, b = _dense_case(rng, dtype, m, n_in, n_out, bias)
    A, A_ref = np.full((m, n_out), np.nan, dtype), np.full((m, n_out), np.nan, dtype)
    C.dense_forward(A, NO16, X, W, b, act, 0.05)
    R.dense_forward(A_ref, NO16, X, W, b, act, 0.05)
    assert_close(A, A_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", DENSE_SHAPES)
@pytest.mark.parametrize("bias,want_dx", [(True, True), (False, True), (True, False)])
def test_dense_backward(rng, dtype, act, shape, bias, want_dx):
    m, n_in, n_out = shape
    X, W, b = _dense_case(rng, dtype, m, n_in, n_out, bias)
    A = np.empty((m, n_out), dtype)
    R.dense_forward(A, NO16, X, W, b, act, 0.05)
    dA = randn(rng, (m, n_out), dtype, 1.0 / m)
    outs = []
    for k in (C, R):
        dX = np.full((m, n_in) if want_dx else (0,), np.nan, dtype)
        dW = np.full((n_out, n_in), np.nan, dtype)
        db = np.full((n_out,) if bias else (0,), np.nan, dtype)
        dA_k = dA.copy()
        k.dense_backward(dX, dW, db, NO16, dA_k, A, X, W, act, 0.05)
        outs.append((dX, dW, db, dA_k))
    for got, ref in zip(*outs):
        assert got.shape == ref.shape
        assert_close(got, ref, dtype)  # dA_k: both overwrite dA with dZ


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_no_inputs(dtype):
    """A layer with no inputs (dW of size 0) still gets its bias gradient."""
    m, n_out = 5, 3
    X, W = np.zeros((m, 0), dtype), np.zeros((n_out, 0), dtype)
    b = np.arange(n_out, dtype=dtype)
    A = np.empty((m, n_out), dtype)
    C.dense_forward(A, NO16, X, W, b, 0, 0.0)
    np.testing.assert_array_equal(A, np.broadcast_to(b, (m, n_out)))
    dA = np.ones((m, n_out), dtype)
    db, dW, dX = np.empty(n_out, dtype), np.empty((n_out, 0), dtype), np.empty((m, 0), dtype)
    C.dense_backward(dX, dW, db, NO16, dA, A, X, W, 0, 0.0)
    np.testing.assert_array_equal(db, np.full(n_out, m, dtype))


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


def test_parallel_variants(rng, monkeypatch):
    """Above PARALLEL_MIN_SIZE the prange variants run; same results as the reference. (float32
    only: the parallel drivers call the same typed loop bodies as the serial ones, and each
    parallel compile costs about a second.)"""
    dtype = np.float32
    monkeypatch.setattr(config, "PARALLEL_MIN_SIZE", 0)
    m, n_in, n_out = 37, 5, 300  # > 2 column blocks, last one partial
    for act in (ACTIVATIONS["sigmoid"],):  # one code: the others differ only in _g/_dg
        X, W, b = _dense_case(rng, dtype, m, n_in, n_out, True)
        A, A_ref = np.empty((m, n_out), dtype), np.empty((m, n_out), dtype)
        C.dense_forward(A, NO16, X, W, b, act, 0.1)
        R.dense_forward(A_ref, NO16, X, W, b, act, 0.1)
        assert_close(A, A_ref, dtype)
        dA = randn(rng, (m, n_out), dtype)
        res = []
        for k in (C, R):
            dX, dW, db = (np.empty((m, n_in), dtype), np.empty((n_out, n_in), dtype),
                          np.empty(n_out, dtype))
            d = dA.copy()
            k.dense_backward(dX, dW, db, NO16, d, A_ref, X, W, act, 0.1)
            res.append((dX, dW, db, d))
        for got, ref in zip(*res):
            assert_close(got, ref, dtype)
        dZ, dZ_ref = np.empty_like(dA), np.empty_like(dA)
        C.activation_backward(dZ, dA, A_ref, act, 0.1)
        R.activation_backward(dZ_ref, dA, A_ref, act, 0.1)
        assert_close(dZ, dZ_ref, dtype)
        C.activation_forward(A, A_ref, act, 0.1)
        R.activation_forward(A_ref, A_ref, act, 0.1)
        assert_close(A, A_ref, dtype)
    Z = randn(rng, (m, n_out), dtype, 3.0)
    P, P_ref = np.empty_like(Z), np.empty_like(Z)
    C.softmax_forward(P, Z)
    R.softmax_forward(P_ref, Z)
    assert_close(P, P_ref, dtype)
    Y = rng.random((m, n_out)).astype(dtype)
    for name in ("softmax_cross_entropy", "sigmoid_binary_cross_entropy", "mean_squared_error"):
        res = []
        for k in (C, R):
            loss, dZ = np.zeros(1), np.empty_like(Z)
            getattr(k, name)(loss, dZ, Z, Y)
            res.append((loss, dZ))
        assert_close(res[0][0], res[1][0], dtype)
        assert_close(res[0][1], res[1][1], dtype)
    idx = rng.integers(0, m, size=50)
    out = np.empty((50, n_out), dtype)
    C.gather_rows(out, Z, idx)
    np.testing.assert_array_equal(out, Z[idx])


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
@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (7, 17), (129, 17)])
@pytest.mark.parametrize("soft", [False, True])
def test_losses(rng, dtype, name, shape, soft, exp_path):
    Z = randn(rng, shape, dtype, 4.0)
    Y = _targets(rng, name, shape, dtype, soft)
    loss, dZ = _run_loss(C, name, Z, Y)
    loss_ref, dZ_ref = _run_loss(R, name, Z, Y)
    assert loss.dtype == np.float64
    assert_close(loss, loss_ref, dtype)
    assert_close(dZ, dZ_ref, dtype)
    loss2, dZ2 = _run_loss(C, name, Z, Y, in_place=True)  # dZ is Z
    assert_close(loss2, loss_ref, dtype)
    assert_close(dZ2, dZ_ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 17), (129, 3)])
def test_weighted_losses(rng, dtype, name, shape):
    """weighted_<loss>: cpu = reference (in place too), the spec's formula J = sum w_i l_i /
    sum w (l_i from the unweighted kernel on one row), all-ones weights = the unweighted
    kernel, and zero-sum weights give J = 0, dZ = 0."""
    Z = randn(rng, shape, dtype, 4.0)
    Y = _targets(rng, name, shape, dtype, soft=False)
    w = rng.random(shape[0]).astype(dtype) * 3
    w[0] = 0.0
    wsum = float(w.astype(np.float64).sum())
    res = {}
    for k in (C, R):
        for in_place in (False, True):
            loss = np.full(1, np.nan)
            Zc = Z.copy()
            dZ = Zc if in_place else np.full_like(Z, np.nan)
            getattr(k, "weighted_" + name)(loss, dZ, Zc, Y, w, wsum)
            res[k, in_place] = loss, dZ
    for got in (res[C, False], res[C, True], res[R, True]):
        assert_close(got[0], res[R, False][0], dtype)
        assert_close(got[1], res[R, False][1], dtype)
    rows = [_run_loss(R, name, Z[i:i + 1], Y[i:i + 1]) for i in range(shape[0])]
    if wsum > 0:
        expect = sum(float(w[i]) * rows[i][0][0] for i in range(shape[0])) / wsum
        np.testing.assert_allclose(res[R, False][0][0], expect, rtol=1e-12)
        np.testing.assert_allclose(res[R, False][1],      # row i: w_i (dl_i/dz_i) / wsum
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


# --- batching ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("shape", [(1,), (17,), (1, 1), (9, 7), (6, 2, 3)])
def test_gather_rows(rng, dtype, shape):
    X = (100 * rng.standard_normal(shape)).astype(dtype)
    m = shape[0]
    idx = rng.integers(0, m, size=m + 2)
    idx[-1] = m - 1
    out = np.full((idx.shape[0] + 3,) + shape[1:], -7, dtype)
    out_ref = out.copy()
    C.gather_rows(out, X, idx)
    R.gather_rows(out_ref, X, idx)
    np.testing.assert_array_equal(out, out_ref)
    C.gather_rows(out, X, idx[:0])  # empty batch: nothing written
    np.testing.assert_array_equal(out, out_ref)


# --- whole epoch --------------------------------------------------------------------------------

def make_net(rng, n_in, layers, dtype):
    """layers: [(units, activation name, bias?)]. Flat params: all weights, then all biases."""
    layout, w_sizes, off = [], [], 0
    inputs = n_in
    for units, act, bias in layers:
        layout.append([off, -1, units, inputs, ACTIVATIONS[act]])
        off += units * inputs
        inputs = units
    n_l2 = off
    for li, (units, act, bias) in enumerate(layers):
        if bias:
            layout[li][1] = off
            off += units
    params = randn(rng, (off,), dtype, 0.7)
    return np.array(layout, dtype=np.int64), params, n_l2


#: Optimizer cases for the fused epoch: (registry name, float64 hyper, state rows), with the
#: packing of ``reference/optim.py:_fused_update``. Cases whose optimizer is not registered in
#: ``fastdl.kernels.OPTIMIZERS`` yet are skipped.
OPT_CASES = {
    "sgd": ("sgd", [0.1, 0.0], 0),
    "sgd+wd": ("sgd", [0.1, 0.01], 0),
    "momentum": ("momentum", [0.05, 0.9, 0.9, 0.0, 0.0], 1),
    "nesterov": ("momentum", [0.05, 0.9, 0.0, 1.0, 0.001], 1),
    "rmsprop": ("rmsprop", [0.01, 0.9, 1e-8, 0.0], 1),
    "adam": ("adam", [0.01, 0.9, 0.999, 1e-8, 0.0, 0.0], 2),
    "adamw": ("adam", [0.01, 0.9, 0.999, 1e-8, 0.0, 0.01], 2),
}


def run_epochs(k, dtype, seed, n_in, layers, loss_name, m, batch, l2, epochs, opt="sgd",
               alpha=0.05):
    rng = np.random.default_rng(seed)
    layout, params, n_l2 = make_net(rng, n_in, layers, dtype)
    X = randn(rng, (m, n_in), dtype)
    k_out = layers[-1][0]
    if loss_name == "categorical_crossentropy":
        Y = np.eye(k_out, dtype=dtype)[rng.integers(0, k_out, size=m)]
    elif loss_name == "binary_crossentropy":
        Y = rng.integers(0, 2, size=(m, k_out)).astype(dtype)
    else:
        Y = randn(rng, (m, k_out), dtype)
    opt_name, hyper, n_state = OPT_CASES[opt]
    n = params.shape[0]
    grads = np.zeros(n, dtype)
    state = np.zeros((n_state, n), dtype)
    ws = np.zeros(batch * (n_in + 2 * int(layout[:, 2].sum())), dtype)
    hyper = np.array(hyper, np.float64)
    n_batches = (m + batch - 1) // batch
    all_costs = []
    for e in range(epochs):
        order = rng.permutation(m).astype(np.int64)
        costs = np.full(n_batches, np.nan)
        k.train_epoch(costs, params, grads, state, ws, X, Y, order, batch, layout,
                      LOSSES[loss_name], l2, n_l2, alpha, OPTIMIZERS[opt_name], hyper,
                      e * n_batches)
        all_costs.append(costs)
    return np.concatenate(all_costs), params, grads, state


NETS = {
    "2-5-2-1 bce": (2, [(5, "relu", True), (2, "relu", True), (1, "linear", True)],
                    "binary_crossentropy"),
    "3-7-4 cce leaky/tanh": (3, [(7, "leaky_relu", True), (4, "tanh", False), (4, "linear", True)],
                             "categorical_crossentropy"),
    "4-6-3 mse sigmoid": (4, [(6, "sigmoid", False), (3, "tanh", True)], "mse"),
    "5-17-2 bce k=2": (5, [(17, "tanh", True), (2, "linear", False)], "binary_crossentropy"),
}


def _check_epochs(dtype, got, ref):
    rtol = 1e-11 if dtype == np.float64 else 1e-4
    assert np.all(np.isfinite(got[0]))
    for g, r in zip(got, ref):  # costs, params, grads, state
        assert_close(g, r, dtype, rtol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("net", sorted(NETS))
@pytest.mark.parametrize("m,batch,l2", [(130, 32, 0.0), (130, 32, 0.7), (9, 1, 0.1),
                                        (20, 64, 0.0)])
def test_train_epoch_matches_reference(dtype, net, m, batch, l2):
    n_in, layers, loss_name = NETS[net]
    args = (dtype, 7, n_in, layers, loss_name, m, batch, l2, 3)
    _check_epochs(dtype, run_epochs(C, *args), run_epochs(R, *args))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", sorted(OPT_CASES))
def test_train_epoch_optimizers(dtype, opt):
    if OPT_CASES[opt][0] not in OPTIMIZERS:
        pytest.skip(f"optimizer {OPT_CASES[opt][0]!r} not in fastdl.kernels.OPTIMIZERS yet")
    n_in, layers, loss_name = NETS["3-7-4 cce leaky/tanh"]
    args = (dtype, 11, n_in, layers, loss_name, 70, 16, 0.3, 3, opt)
    _check_epochs(dtype, run_epochs(C, *args), run_epochs(R, *args))


def test_train_epoch_unknown_codes_raise():
    args = [np.zeros(1), np.zeros(2), np.zeros(2), np.zeros((0, 2)), np.zeros(8),
            np.zeros((1, 1)), np.zeros((1, 1)), np.zeros(1, np.int64), 1,
            np.array([[0, 1, 1, 1, 0]], np.int64), 0, 0.0, 1, 0.0, 0, np.zeros(2), 0]
    bad_loss = list(args)
    bad_loss[10] = 9
    with pytest.raises(ValueError, match="loss"):
        C.train_epoch(*bad_loss)
    bad_opt = list(args)
    bad_opt[14] = 99
    with pytest.raises(ValueError, match="optimizer"):
        C.train_epoch(*bad_opt)
