"""Gradient checking: every activation and loss passes; a planted bug is caught and located."""

import numpy as np
import pytest

import fastdl as fd
from fastdl.data import make_moons, make_spirals


def _data(kind, m=12):
    if kind == "softmax":
        return make_spirals(m, n_classes=3, seed=0)
    X, y = make_moons(m, seed=0)
    if kind == "mse":
        return X, np.c_[y, 1 - 2 * y].astype(float)
    return X, y


OUT = {"sigmoid": (1, "sigmoid"), "softmax": (3, "softmax"), "mse": (2, "linear")}


@pytest.mark.parametrize("act", ["linear", "relu", "leaky_relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("out", ["sigmoid", "softmax", "mse"])
@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_gradcheck_passes(act, out, backend):
    n_out, out_act = OUT[out]
    X, y = _data(out)
    model = fd.Sequential([fd.Dense(4, activation=act), fd.Dense(3, activation=act),
                           fd.Dense(n_out, activation=out_act)],
                          input_dim=2, seed=1, backend=backend, dtype="float64",
                          loss="mse" if out == "mse" else None)
    r = fd.gradcheck(model, X, y, l2=0.3)
    assert r.passed, str(r)
    assert r.difference < 2e-7
    assert [name for name, *_ in r.per_tensor] == ["W0", "b0", "W1", "b1", "W2", "b2"]


def test_gradcheck_runs_in_float64_for_float32_models():
    X, y = _data("sigmoid")
    model = fd.Sequential([fd.Dense(4, activation="tanh"), fd.Dense(1, activation="sigmoid")],
                          input_dim=2, seed=1, dtype="float32")
    r = fd.gradcheck(model, X, y)
    assert r.passed and r.grad.dtype == np.float64


def test_gradcheck_standalone_activation_and_no_bias():
    X, y = _data("softmax")
    model = fd.Sequential([fd.Dense(5, use_bias=False), fd.Activation("tanh"),
                           fd.Activation("relu"), fd.Dense(3), fd.Activation("softmax")],
                          input_dim=2, seed=2, dtype="float64")
    assert fd.gradcheck(model, X, y).passed


def test_gradcheck_finds_a_planted_bug(monkeypatch):
    """A backward kernel that forgets to scale dW by the activation derivative in one layer is
    reported, and the per-tensor breakdown points at that layer's weights."""
    X, y = _data("sigmoid")
    model = fd.Sequential([fd.Dense(4, activation="tanh"), fd.Dense(3, activation="tanh"),
                           fd.Dense(1, activation="sigmoid")], input_dim=2, seed=1,
                          dtype="float64", backend="numpy")
    layer = model.layers[1]
    original = layer.backward

    def buggy(dA, ws, need_dX):
        dX = original(dA, ws, need_dX)
        layer.dW[...] *= 1.5                         # the planted bug
        return dX
    monkeypatch.setattr(layer, "backward", buggy)
    r = fd.gradcheck(model, X, y)
    assert not r.passed
    assert r.difference > 1e-2
    assert r.worst()[0] == "W1"
    assert "check this layer" in str(r)


def test_gradcheck_bad_input():
    model = fd.Sequential([fd.Dense(1, activation="sigmoid")], input_dim=2, seed=0)
    with pytest.raises(ValueError, match="eps"):
        fd.gradcheck(model, [[0.0, 1.0]], [1], eps=0)
    with pytest.raises(TypeError, match="model"):
        fd.gradcheck("model", [[0.0, 1.0]], [1])


@pytest.mark.parametrize("out", ["sigmoid", "softmax", "mse"])
@pytest.mark.parametrize("backend", ["numpy", "cpu"])
def test_gradcheck_with_sample_weight(out, backend):
    """The weighted cost sum_i w_i l_i / sum(w) + l2/(2 sum(w)) ||W||^2 (zero weights
    included): backprop matches finite differences, and the cost is that formula built from
    per-row unweighted costs."""
    n_out, out_act = OUT[out]
    X, y = _data(out)
    w = np.random.default_rng(3).random(X.shape[0]) * 3
    w[[1, 4]] = 0.0
    model = fd.Sequential([fd.Dense(4, activation="tanh"), fd.Dense(n_out, activation=out_act)],
                          input_dim=2, seed=1, backend=backend, dtype="float64",
                          loss="mse" if out == "mse" else None)
    r = fd.gradcheck(model, X, y, l2=0.3, sample_weight=w)
    assert r.passed, str(r)
    assert r.difference < 2e-7
    rows = np.array([model.loss_and_grads(X[i:i + 1], y[i:i + 1])[0] for i in range(len(X))])
    sq = sum(float((W ** 2).sum()) for W in model.get_weights()[::2])
    cost, grads = model.loss_and_grads(X, y, l2=0.3, sample_weight=w)
    assert cost == pytest.approx(w @ rows / w.sum() + 0.3 / (2 * w.sum()) * sq, rel=1e-12)
    _, unweighted = model.loss_and_grads(X, y, l2=0.3)
    assert not np.allclose(grads[0], unweighted[0])     # the weights change the gradient
