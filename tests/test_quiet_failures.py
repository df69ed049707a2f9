"""Inputs and numerics that used to go wrong quietly (issue 15): weights that change meaning in
the model's dtype, two decision rules for one class, non-finite outputs, parameters kept after a
divergence, inspection calls that changed the model, BLAS threads left alone. Each test failed
before its fix."""

import os
import subprocess
import sys
import textwrap
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastdl as fd

ROOT = Path(__file__).resolve().parents[1]
X = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
y = np.array([0, 1, 1])


def net(dtype="float32", **kw):
    return fd.Sequential([fd.Dense(3, activation="tanh"), fd.Dense(1, activation="sigmoid")],
                         input_dim=2, seed=0, dtype=dtype, **kw)


# --- sample_weight is validated in the model's dtype ---------------------------------------------
def test_sample_weight_that_underflows_to_zero_in_float32_is_an_error():
    with pytest.raises(ValueError, match=r"sample_weight\[0\]=1e-46 underflows to 0 in float32"):
        net().train_on_batch(X, y, fd.optim.SGD(), sample_weight=np.full(3, 1e-46))
    with pytest.raises(ValueError, match=r"sample_weight\[1\]=1e-46 underflows"):
        net().fit(X, y, sample_weight=[1.0, 1e-46, 1.0], verbose=0)
    with pytest.raises(ValueError, match=r"validation_data\[2\]\[0\]=1e-46 underflows"):
        net().fit(X, y, validation_data=(X, y, [1e-46, 1, 1]), verbose=0)
    cost = net("float64").train_on_batch(X, y, fd.optim.SGD(), sample_weight=np.full(3, 1e-46))
    assert np.isfinite(cost)                       # representable in float64: fine there


def test_sample_weight_that_overflows_float32_is_an_error():
    with pytest.raises(ValueError, match=r"sample_weight\[1\]=1e\+39 overflows float32"):
        net().fit(X, y, sample_weight=[1.0, 1e39, 1.0], verbose=0)
    with pytest.raises(ValueError, match=r"sample_weight\[1\]=1e\+39 overflows"):
        net().evaluate(X, y, sample_weight=[1.0, 1e39, 1.0])


def test_sklearn_sample_weight_is_validated_in_the_model_dtype():
    pytest.importorskip("sklearn")
    from fastdl.sklearn import MLPClassifier
    clf = MLPClassifier((3,), max_iter=2, random_state=0, dtype="float32")
    with pytest.raises(ValueError, match=r"sample_weight\[2\]=1e\+39 overflows float32"):
        clf.fit(X, y, sample_weight=[1.0, 1.0, 1e39])


# --- one decision rule for predict, evaluate and training accuracy -------------------------------
def test_predict_and_evaluate_agree_at_the_sigmoid_boundary():
    """A logit of -1e-8: the float32 probability rounds to 0.5, the class is 0 (logit < 0) for
    predict and evaluate alike."""
    model = fd.Sequential([fd.Dense(1, activation="sigmoid")], input_dim=1, seed=0)
    model.set_weights([np.zeros((1, 1)), np.array([-1e-8])])
    Xb = np.zeros((4, 1))
    assert (model.predict_proba(Xb) == np.float32(0.5)).all()
    np.testing.assert_array_equal(model.predict(Xb), 0)
    assert model.evaluate(Xb, np.zeros(4))["accuracy"] == 1.0
    assert model.evaluate(Xb, np.ones(4))["accuracy"] == 0.0


def test_predict_and_evaluate_agree_on_softmax_ties_in_probability():
    """Logits 0 and 1e-8 give equal float32 probabilities; the class is the larger logit's."""
    model = fd.Sequential([fd.Dense(2, activation="softmax")], input_dim=1, seed=0)
    model.set_weights([np.zeros((2, 1)), np.array([0.0, 1e-8])])
    Xb = np.zeros((3, 1))
    p = model.predict_proba(Xb)
    assert p[0, 0] == p[0, 1]
    np.testing.assert_array_equal(model.predict(Xb), 1)
    assert model.evaluate(Xb, np.ones(3, int))["accuracy"] == 1.0


# --- non-finite outputs raise, naming the layer -----------------------------------------------
@pytest.mark.parametrize("call", ["predict", "predict_proba", "evaluate"])
def test_outputs_that_overflow_raise_naming_the_layer(call):
    """Finite float32 inputs of 3e38 overflow X W^T (W = 1); the logits are inf - inf = NaN,
    which used to give NaN probabilities and class 0 with only a NumPy warning."""
    model = fd.Sequential([fd.Dense(3, activation="relu"), fd.Dense(1, activation="sigmoid")],
                          input_dim=2, seed=0)
    model.set_weights([np.ones((3, 2)), np.zeros(3), np.array([[1.0, -1.0, 1.0]]),
                       np.zeros(1)])
    X_big = np.full((4, 2), 3e38)
    args = (X_big, np.zeros(4)) if call == "evaluate" else (X_big,)
    with np.errstate(all="ignore"), pytest.raises(
            FloatingPointError, match=rf"{call}: layers\[0\] \(Dense\(3, relu\)\) produced "
                                      r"non-finite values .* for 4 of 4 rows"):
        getattr(model, call)(*args)
    assert model.predict(X[:2]).shape == (2,)     # finite inputs still work


def test_custom_init_returning_nan_is_rejected():
    bad = lambda rng, shape: np.full(shape, np.nan)           # noqa: E731
    with pytest.raises(ValueError, match=r"init=.*returned NaN or infinite values for "
                                         r"layers\[0\]"):
        fd.Sequential([fd.Dense(2, init=bad), fd.Dense(1)], input_dim=2, loss="mse")


# --- divergence keeps the parameters of the last finite cost ------------------------------------
@pytest.mark.parametrize("lr,where,last", [(1e3, "epoch 2, batch 2", (2, 1)),
                                           (1e4, "epoch 2, batch 0", (1, 3))])
def test_divergence_keeps_the_parameters_that_gave_the_last_finite_cost(lr, where, last):
    """A linear mse model whose weights grow 1e3-1e4x per step: they stay finite (~1e38) while
    X W^T overflows float32. The kept parameters must be those that produced the last finite
    cost (recorded by a callback), so predictions are finite; also when the first batch of an
    epoch diverges (lr = 1e4: the last finite cost was the previous epoch's last batch)."""
    rng = np.random.default_rng(0)
    Xr, yr = rng.uniform(1, 2, size=(64, 2)), np.zeros(64)
    model = fd.Sequential([fd.Dense(1)], input_dim=2, loss="mse", seed=0)
    costs = []

    class Record(fd.Callback):
        def on_batch_end(self, batch, logs=None):
            costs.append(logs["loss"])

    with np.errstate(all="ignore"), pytest.raises(fd.DivergenceError, match=where):
        model.fit(Xr, yr, optimizer=fd.optim.SGD(lr=lr), epochs=50, batch_size=16, verbose=0,
                  callbacks=[Record()])
    assert np.isfinite(model.predict(Xr)).all()
    epoch, batch = last                      # the batch whose (finite) cost was the last one
    rows = fd.data.batches.epoch_order(model.seed, epoch, 64)[batch * 16:(batch + 1) * 16]
    assert model.loss_and_grads(Xr[rows], yr[rows])[0] == pytest.approx(costs[-1], rel=1e-6)


# --- inspection calls do not change the model --------------------------------------------------
def bn_net():
    return fd.Sequential([fd.Dense(4), fd.BatchNorm(), fd.Activation("relu"),
                          fd.Dense(1, activation="sigmoid")], input_dim=2, seed=0,
                         dtype="float64")


def test_loss_and_grads_and_gradcheck_leave_batchnorm_statistics_alone():
    model = bn_net()
    Xs = np.random.default_rng(1).standard_normal((16, 2)) * 3 + 5
    ys = (Xs[:, 0] > 5).astype(int)
    before = model.get_weights()
    model.loss_and_grads(Xs, ys)
    fd.gradcheck(model, Xs, ys)
    model.evaluate(Xs, ys)
    model.predict(Xs)
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


# --- threadpoolctl: BLAS threads follow set_num_threads ------------------------------------------
def test_threadpoolctl_is_a_required_dependency():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("threadpoolctl") for d in deps), deps


def test_set_num_threads_sets_blas_threads():
    from threadpoolctl import threadpool_info
    import numba
    blas = [p for p in threadpool_info() if p["user_api"] == "blas"]
    if not blas:
        pytest.skip("NumPy links no BLAS that threadpoolctl can see")
    old = blas[0]["num_threads"]
    try:
        fd.set_num_threads(1)
        assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
        assert numba.get_num_threads() == 1
    finally:
        fd.set_num_threads(min(old, numba.config.NUMBA_NUM_THREADS))


def test_set_num_threads_without_threadpoolctl_says_so():
    code = textwrap.dedent("""
        import importlib.abc, sys
        class _Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "threadpoolctl":
                    raise ImportError("No module named 'threadpoolctl' (blocked by the test)")
        sys.meta_path.insert(0, _Block())
        import fastdl as fd
        try:
            fd.set_num_threads(1)
        except ImportError as e:
            print("RAISED", e)
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300).stdout
    assert "RAISED" in out and "threadpoolctl" in out and "BLAS" in out, out
