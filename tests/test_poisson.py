"""loss="poisson": the exp + half Poisson deviance kernels (cpu vs the NumPy reference, the
reference vs scikit-learn's ``poisson_loss``), the fused epoch, gradient checks and the model.

Hand-written cases (the registry-driven kernel tables of tests/test_kernels_cpu.py will take a
declaration for these kernels; until then everything the kernel contract asks is here):
float32 and float64, batch 1 and sizes that are multiples of nothing, zero counts, huge counts,
fractional rates, log-means near the float32 exp overflow, in place (dZ aliasing Z), weights
with zeros, all-ones and all-zero weights, an empty batch.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastdl as fd
from fastdl.kernels import LOSSES
from fastdl.kernels import cpu as C
from fastdl.kernels import reference as R

DTYPES = (np.float32, np.float64)
RTOL = {np.float32: 1e-5, np.float64: 1e-12}
NAME = "exp_half_poisson_deviance"
SHAPES = [(1, 1), (1, 3), (7, 17), (129, 5)]


def assert_close(got, ref, dtype, rtol=None, scale=None):
    """Relative tolerance with atol = rtol * the largest finite reference magnitude."""
    rtol = RTOL[dtype] if rtol is None else rtol
    ref = np.asarray(ref)
    if scale is None:
        finite = np.abs(ref[np.isfinite(ref)])
        scale = float(finite.max()) if finite.size else 1.0
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=rtol * scale)


def log_means(rng, shape, dtype):
    """Log-means: normal, exact zeros, tiny, and |z| up to ~25 (mu from 1e-11 to 7e10)."""
    z = 2.0 * rng.standard_normal(shape)
    flat = z.reshape(-1)
    k = flat.size
    flat[rng.integers(0, k, size=max(1, k // 7))] = 0.0
    flat[rng.integers(0, k, size=max(1, k // 11))] *= 10.0
    flat[rng.integers(0, k, size=max(1, k // 13))] *= 1e-6
    return np.clip(z, -25, 25).astype(dtype)


def counts(rng, shape, dtype):
    """Targets: Poisson counts (many zeros), a few huge counts and fractional rates."""
    y = rng.poisson(1.5, size=shape).astype(np.float64)
    flat = y.reshape(-1)
    k = flat.size
    flat[rng.integers(0, k, size=max(1, k // 9))] = 1e4
    flat[rng.integers(0, k, size=max(1, k // 5))] = rng.random(max(1, k // 5)) * 3
    return y.astype(dtype)


def run(k, name, Z, Y, *extra, in_place=False):
    loss = np.full(1, np.nan)
    Zc = Z.copy()
    dZ = Zc if in_place else np.full_like(Z, np.nan)
    getattr(k, name)(loss, dZ, Zc, Y, *extra)
    return loss, dZ


def cost_scale(Z, Y):
    """The size of the cost's terms (exp(z), y |z|, y log y), which cancel near a perfect
    fit: two correct evaluation orders differ by ~eps times this (per row)."""
    z, y = Z.astype(np.float64), Y.astype(np.float64)
    return float((np.exp(z) + y * np.abs(z) + y * np.log1p(y)).sum() / Z.shape[0])


# ------------------------------------------------------------------ reference = the spec
def test_registered():
    assert LOSSES["poisson"] == 3
    assert NAME in fd.kernels.KERNELS["losses"]
    assert "weighted_" + NAME in fd.kernels.KERNELS["losses"]


@pytest.mark.parametrize("shape", [(1, 1), (9, 1), (9, 4)])
def test_reference_is_sklearns_half_poisson_deviance(shape):
    """J = scikit-learn 1.9's ``poisson_loss(y, exp(z))`` (mean over rows, sum over outputs,
    weighted by sample_weight), and dZ is its back-propagated delta ``(exp(z) - y) / m``."""
    from sklearn.neural_network._base import poisson_loss
    rng = np.random.default_rng(0)
    Z = rng.standard_normal(shape)
    Y = rng.poisson(2.0, shape).astype(np.float64)
    loss, dZ = run(R, NAME, Z, Y)
    np.testing.assert_allclose(loss[0], poisson_loss(Y, np.exp(Z)), rtol=1e-12)
    np.testing.assert_allclose(dZ, (np.exp(Z) - Y) / shape[0], rtol=1e-12)
    w = rng.random(shape[0]) * 2
    wl, wdZ = run(R, "weighted_" + NAME, Z, Y, w, float(w.sum()))
    np.testing.assert_allclose(wl[0], poisson_loss(Y, np.exp(Z), sample_weight=w), rtol=1e-12)
    np.testing.assert_allclose(wdZ, (np.exp(Z) - Y) * w[:, None] / w.sum(), rtol=1e-12)


def test_reference_zero_at_perfect_fit_and_zero_counts():
    """mu = y gives J = 0 (y log y - y + y - y log y); y = 0 contributes exp(z) (0 log 0 = 0)."""
    Y = np.array([[1.0, 5.0, 0.5]])
    loss, dZ = run(R, NAME, np.log(Y), Y)
    assert abs(loss[0]) < 1e-14 and np.abs(dZ).max() < 1e-14
    loss, dZ = run(R, NAME, np.array([[0.3, -2.0]]), np.zeros((1, 2)))
    np.testing.assert_allclose(loss[0], np.exp(0.3) + np.exp(-2.0), rtol=1e-15)
    np.testing.assert_allclose(dZ, [[np.exp(0.3), np.exp(-2.0)]], rtol=1e-15)


# ------------------------------------------------------------------ cpu vs reference
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_cpu_matches_reference(dtype, shape):
    rng = np.random.default_rng(hash(shape) % 2**32)
    Z, Y = log_means(rng, shape, dtype), counts(rng, shape, dtype)
    ref = run(R, NAME, Z, Y)
    for in_place in (False, True):
        loss, dZ = run(C, NAME, Z, Y, in_place=in_place)
        assert loss.dtype == np.float64
        assert_close(loss, ref[0], dtype, scale=cost_scale(Z, Y))
        assert_close(dZ, ref[1], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (7, 17), (129, 3)])
def test_weighted_cpu_matches_reference_and_spec(dtype, shape):
    """cpu = reference (in place too); J = sum w_i l_i / sum w with l_i the unweighted
    kernel's cost of row i; all-ones weights = the unweighted kernel; all-zero weights give
    J = 0 and dZ = 0."""
    rng = np.random.default_rng(7)
    Z, Y = log_means(rng, shape, dtype), counts(rng, shape, dtype)
    w = (rng.random(shape[0]) * 3).astype(dtype)
    w[0] = 0.0
    wsum = float(w.astype(np.float64).sum())
    ref = run(R, "weighted_" + NAME, Z, Y, w, wsum)
    scale = cost_scale(Z, Y) * shape[0] * max(float(w.max()), 1e-300) / max(wsum, 1e-300)
    for in_place in (False, True):
        got = run(C, "weighted_" + NAME, Z, Y, w, wsum, in_place=in_place)
        assert_close(got[0], ref[0], dtype, scale=scale)
        assert_close(got[1], ref[1], dtype)
    rows = [run(R, NAME, Z[i:i + 1], Y[i:i + 1]) for i in range(shape[0])]
    if wsum > 0:
        expect = sum(float(w[i]) * rows[i][0][0] for i in range(shape[0])) / wsum
        np.testing.assert_allclose(ref[0][0], expect, rtol=1e-10)
    ones = np.ones(shape[0], dtype)
    for k in (C, R):
        loss, dZ = run(k, "weighted_" + NAME, Z, Y, ones, float(shape[0]))
        plain = run(k, NAME, Z, Y)
        assert_close(loss, plain[0], dtype, scale=cost_scale(Z, Y))
        assert_close(dZ, plain[1], dtype)
        loss, dZ = run(k, "weighted_" + NAME, Z, Y, np.zeros_like(w), 0.0)
        assert loss[0] == 0.0 and (dZ == 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_overflow_is_inf_not_nan(dtype):
    """A log-mean past exp's range is a genuinely infinite cost (the training loop's
    divergence check stops on it): +inf, never NaN, in both backends; very negative log-means
    are a finite cost y |z|."""
    Z = np.array([[800.0, 0.0], [-1e4, 1.0]], dtype)
    Y = np.array([[3.0, 0.0], [2.0, 1.0]], dtype)
    for k in (R, C):
        with np.errstate(over="ignore"):
            loss, dZ = run(k, NAME, Z, Y)
        assert loss[0] == np.inf and dZ[0, 0] == np.inf and np.isfinite(dZ[1:]).all()
        assert not np.isnan(dZ).any()
    Z[0, 0] = 0.0
    loss, dZ = run(C, NAME, Z, Y)
    ref = run(R, NAME, Z, Y)
    assert np.isfinite(loss[0]) and loss[0] > 1e4
    assert_close(loss, ref[0], dtype)
    assert_close(dZ, ref[1], dtype)


def test_empty_batch_is_nan_like_the_reference():
    Z, Y = np.zeros((0, 2)), np.zeros((0, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = run(R, NAME, Z, Y)
    got = run(C, NAME, Z, Y)
    assert np.isnan(ref[0][0]) and np.isnan(got[0][0])


@given(m=st.integers(1, 25), c=st.integers(1, 6), zscale=st.floats(1e-3, 8.0),
       lam=st.floats(0.0, 200.0), seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from(DTYPES))
@settings(max_examples=30, deadline=None)
def test_fuzz(m, c, zscale, lam, seed, dtype):
    rng = np.random.default_rng(seed)
    Z = (zscale * rng.standard_normal((m, c))).astype(dtype)
    Y = rng.poisson(lam, (m, c)).astype(dtype)
    loss, dZ = run(C, NAME, Z, Y)
    ref = run(R, NAME, Z, Y)
    assert np.isfinite(loss[0])
    assert_close(loss, ref[0], dtype, scale=cost_scale(Z, Y))
    assert_close(dZ, ref[1], dtype)


# ------------------------------------------------------------------ fused epoch
def run_epochs(k, dtype, m, batch, l2, epochs=2, seed=3):
    """Two epochs of the whole-epoch kernel (loss code 3) on a 4-6(tanh)-2 net with Adam;
    returns costs, parameters, gradients and optimizer state."""
    from fastdl.kernels import ACTIVATIONS, OPTIMIZERS
    rng = np.random.default_rng(seed)
    n_in, sizes = 4, [(6, "tanh"), (2, "linear")]
    layout, off, inputs = [], 0, n_in
    for units, act in sizes:                  # all weights first (the L2 part), then biases
        layout.append([off, -1, units, inputs, ACTIVATIONS[act]])
        off += units * inputs
        inputs = units
    n_l2 = off
    for row, (units, _) in zip(layout, sizes):
        row[1] = off
        off += units
    layout = np.array(layout, dtype=np.int64)
    params = (0.5 * rng.standard_normal(off)).astype(dtype)
    X = rng.standard_normal((m, n_in)).astype(dtype)
    Y = counts(rng, (m, 2), dtype)
    Y[Y > 100] = 7.0                         # moderate counts: a few steps stay finite
    grads, state = np.zeros(off, dtype), np.zeros((2, off), dtype)
    ws = np.zeros(batch * (n_in + 2 * int(layout[:, 2].sum())), dtype)
    hyper = np.array([0.01, 0.9, 0.999, 1e-8, 0.0, 0.0])      # Adam (reference/optim.py)
    nb = (m + batch - 1) // batch
    costs = []
    for e in range(epochs):
        c = np.full(nb, np.nan)
        k.train_epoch(c, np.zeros(0), params, grads, state, ws, X, Y,
                      rng.permutation(m).astype(np.int64),
                      batch, layout, LOSSES["poisson"], l2, n_l2, 0.01, OPTIMIZERS["adam"],
                      hyper, e * nb)
        costs.append(c)
    return np.concatenate(costs), params, grads, state


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m, batch, l2", [(23, 5, 0.05), (8, 8, 0.0), (3, 1, 0.2)])
def test_train_epoch_matches_reference(dtype, m, batch, l2):
    """The whole-epoch kernel with loss code 3: costs, parameters, gradients and Adam state
    after two epochs equal the reference epoch's."""
    got, ref = run_epochs(C, dtype, m, batch, l2), run_epochs(R, dtype, m, batch, l2)
    assert np.isfinite(got[0]).all()
    for g, r in zip(got, ref):
        assert_close(g, r, dtype, rtol=1e-4 if dtype == np.float32 else 1e-10)


# ------------------------------------------------------------------ gradcheck and the model
@pytest.mark.parametrize("backend", ["numpy", "cpu"])
@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid"])
def test_gradcheck(backend, act):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((12, 3))
    Y = rng.poisson(np.exp(0.5 * X[:, :2]))
    model = fd.Sequential([fd.Dense(5, activation=act), fd.Dense(2, activation="exp")],
                          input_dim=3, seed=2, dtype="float64", backend=backend)
    assert model.loss.name == "poisson"
    r = fd.gradcheck(model, X, Y, l2=0.3)
    assert r.passed and r.difference < 2e-7, str(r)
    r = fd.gradcheck(model, X, Y, l2=0.3, sample_weight=rng.random(12))
    assert r.passed and r.difference < 2e-7, str(r)


@pytest.mark.parametrize("layers", [
    lambda: [fd.Dense(6, activation="relu"), fd.Dense(1, activation="exp")],
    lambda: [fd.Dense(6, activation="relu"), fd.Dense(1), fd.Activation("exp")],
])
def test_sequential_poisson_fit_predict_evaluate(layers):
    """Both spellings of the exp output; numpy (step path) and cpu (fused epoch) agree;
    predict returns exp(z) (means), evaluate the half deviance, no accuracy."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 3))
    y = rng.poisson(np.exp(X @ [0.4, -0.3, 0.2] + 0.5))
    runs = {}
    for backend in ("numpy", "cpu"):
        model = fd.Sequential(layers(), input_dim=3, seed=0, dtype="float64", backend=backend,
                              loss="poisson")
        h = model.fit(X, y, optimizer=fd.optim.Adam(lr=0.02), epochs=15, batch_size=32,
                      verbose=0)
        runs[backend] = (h.history["loss"], model.predict(X), model.evaluate(X, y))
    np.testing.assert_allclose(runs["cpu"][0], runs["numpy"][0], rtol=1e-9)
    np.testing.assert_allclose(runs["cpu"][1], runs["numpy"][1], rtol=1e-9)
    loss_hist, pred, ev = runs["cpu"]
    assert loss_hist[-1] < 0.8 * loss_hist[0]       # it learns
    assert set(ev) == {"loss"}
    from sklearn.neural_network._base import poisson_loss
    np.testing.assert_allclose(ev["loss"], poisson_loss(y.reshape(-1, 1), pred.reshape(-1, 1)),
                               rtol=1e-10)
    assert pred.shape == (300,) and (pred > 0).all()


def test_sequential_poisson_errors():
    with pytest.raises(ValueError, match="loss='poisson' needs an exp output layer"):
        fd.Sequential([fd.Dense(1)], input_dim=2, loss="poisson")
    with pytest.raises(ValueError, match="layers\\[0\\] uses exp, which fastdl supports only "
                                         "as the output activation"):
        fd.Sequential([fd.Dense(3, activation="exp"), fd.Dense(1)], input_dim=2)
    with pytest.raises(ValueError, match="cannot follow an exp output; use loss='poisson'"):
        fd.Sequential([fd.Dense(1, activation="exp")], input_dim=2, loss="mse")
    model = fd.Sequential([fd.Dense(1, activation="exp")], input_dim=2, seed=0)
    with pytest.raises(ValueError, match=r"y has a value -1.0; loss='poisson' expects finite "
                                         "counts or rates >= 0"):
        model.fit(np.zeros((3, 2)), [1, -1, 2], verbose=0)


def test_poisson_model_saves_and_loads(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 2))
    model = fd.Sequential([fd.Dense(3, activation="tanh"), fd.Dense(1, activation="exp")],
                          input_dim=2, seed=0)
    model.save(tmp_path / "p.npz")
    back = fd.load(tmp_path / "p.npz")
    assert back.loss.name == "poisson"
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
