"""GradientMonitor: its figures against values computed by hand, the vanishing / exploding /
healthy verdicts on deep nets, History integration, plotting and bad input."""

import math

import numpy as np
import pytest

import fastdl as fd
from fastdl.train.monitor import diagnose_gradients

RNG = np.random.default_rng(0)
X_DEEP = RNG.standard_normal((256, 16))
Y_DEEP = (X_DEEP[:, 0] + X_DEEP[:, 1] > 0).astype(np.float64)


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _small_net(backend="cpu"):
    return fd.Sequential([fd.Dense(6, activation="relu"), fd.Dense(5, activation="tanh"),
                          fd.Dense(4, activation="sigmoid"), fd.Dense(1, activation="sigmoid")],
                         input_dim=3, loss="binary_crossentropy", dtype="float64", seed=4,
                         backend=backend)


@pytest.mark.parametrize("backend", ["cpu", "numpy"])
def test_figures_equal_hand_computation(backend):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((16, 3))
    y = (X[:, 0] > 0).astype(np.float64)
    model = _small_net(backend)
    W0 = model.get_weights()
    _, grads = model.loss_and_grads(X, y)          # the gradient backprop writes (l2=0)
    lr = 0.3
    mon = fd.GradientMonitor(every=1, verbose=0)
    hist = model.fit(X, y, optimizer=fd.optim.SGD(lr=lr), epochs=1, batch_size=16,
                     shuffle=False, callbacks=[mon], verbose=0)
    W1 = model.get_weights()
    # forward by hand with the weights before the update
    acts, A = [], X
    for i, g in enumerate((lambda z: np.maximum(z, 0), np.tanh, _sigmoid, lambda z: z)):
        A = g(A @ W0[2 * i].T + W0[2 * i + 1])
        acts.append(A)
    assert mon.layers == ["dense_1", "dense_2", "dense_3", "dense_4"]
    for i, name in enumerate(mon.layers):
        W_old, W_new, dW = W0[2 * i], W1[2 * i], grads[2 * i]
        expect = {"grad_norm": np.linalg.norm(dW), "weight_norm": np.linalg.norm(W_new),
                  "update_norm": np.linalg.norm(W_new - W_old),
                  "update_ratio": np.linalg.norm(W_new - W_old) / np.linalg.norm(W_old),
                  "act_mean": acts[i].mean(), "act_std": acts[i].std()}
        np.testing.assert_allclose(expect["update_norm"], lr * expect["grad_norm"], rtol=1e-12)
        for k, v in expect.items():
            got = mon.history[f"{k}/{name}"]
            assert len(got) == 1
            np.testing.assert_allclose(got[0], v, rtol=1e-10, atol=1e-14, err_msg=f"{k}/{name}")
            assert hist.history[f"{k}/{name}"] == got          # History keeps the series
    dead = np.mean(acts[0].max(axis=0) <= 0)
    assert mon.history["dead_frac/dense_1"] == [pytest.approx(dead)]
    assert mon.history["saturated_frac/dense_2"] == [pytest.approx(np.mean(np.abs(acts[1])
                                                                           >= 0.99))]
    sat3 = np.mean((acts[2] <= 0.005) | (acts[2] >= 0.995))
    assert mon.history["saturated_frac/dense_3"] == [pytest.approx(sat3)]
    assert "dead_frac/dense_2" not in mon.history and "saturated_frac/dense_4" not in mon.history


def test_dead_and_saturated_units_are_counted():
    """Units forced dead (ReLU) and saturated (tanh) by their biases are counted exactly."""
    model = fd.Sequential([fd.Dense(4, activation="relu"), fd.Dense(4, activation="tanh"),
                           fd.Dense(1, activation="sigmoid")], input_dim=2, dtype="float64",
                          seed=0)
    w = model.get_weights()
    w[1][:] = [-100.0, -100.0, 0.0, 0.0]       # two ReLU units never fire
    w[3][:] = [50.0, -50.0, 0.0, 0.0]          # two tanh units pinned at +-1
    w[2][:, :2] = 0.0                          # ... whatever their inputs
    w[0][:] = np.clip(w[0], -1, 1)
    model.set_weights(w)
    X = np.random.default_rng(0).uniform(-1, 1, (32, 2))
    mon = fd.GradientMonitor(every=1, verbose=0)
    model.fit(X, (X[:, 0] > 0) * 1.0, optimizer=fd.optim.SGD(lr=1e-9), epochs=1, batch_size=32,
              callbacks=[mon], verbose=0)
    A1 = np.maximum(X @ w[0].T + w[1], 0)
    A2 = np.tanh(A1 @ w[2].T + w[3])
    dead = np.mean(A1.max(axis=0) <= 0)
    sat = np.mean(np.abs(A2) >= 0.99)
    assert 0.5 <= dead < 1 and 0.5 <= sat < 1          # the planted units, maybe a few more
    assert mon.history["dead_frac/dense_1"] == [dead]
    assert mon.history["saturated_frac/dense_2"] == [sat]


def _deep(act, init, scale=0.01, depth=20, width=32):
    layers = [fd.Dense(width, activation=act, init=init, init_scale=scale)
              for _ in range(depth - 1)] + [fd.Dense(1, activation="sigmoid", init="xavier")]
    return fd.Sequential(layers, input_dim=16, loss="binary_crossentropy", dtype="float64",
                         seed=1)


def _monitor(model, epochs=1, **kw):
    mon = fd.GradientMonitor(every=1, verbose=0, **kw)
    model.fit(X_DEEP, Y_DEEP, optimizer=fd.optim.SGD(lr=0.01), epochs=epochs, batch_size=64,
              callbacks=[mon], verbose=0)
    return mon


def test_sigmoid_tiny_weights_vanish():
    d = _monitor(_deep("sigmoid", "normal", 0.01)).diagnosis
    assert d.vanishing and not d.exploding and not d.healthy
    assert d.factor < 0.1                      # the gradient shrinks ~x0.01 per layer
    assert "dense_1" in d.layers and "dense_20" not in d.layers
    assert "Vanishing" in d.message and "He initialization" in d.message \
        and "batch normalization" in d.message


def test_sigmoid_large_weights_explode():
    d = _monitor(_deep("sigmoid", "normal", 5.0, width=64)).diagnosis
    assert d.exploding and not d.vanishing
    assert d.factor > 1.3 and d.layers[0] == "dense_1"
    for remedy in ("initialization", "batch normalization", "lower learning rate", "clipping"):
        assert remedy in d.message


def test_he_relu_net_is_healthy(capsys):
    mon = fd.GradientMonitor(every=1, verbose=1)
    model = _deep("relu", "he", depth=10, width=64)
    model.fit(X_DEEP, Y_DEEP, optimizer=fd.optim.Adam(lr=1e-3), epochs=2, batch_size=64,
              callbacks=[mon], verbose=0)
    assert all(d.healthy for d in mon.diagnoses) and len(mon.diagnoses) == 2
    assert 0.5 < mon.diagnosis.factor < 2.0
    assert capsys.readouterr().out == ""       # a healthy run prints nothing
    assert "healthy" in mon.report() and "dense_10" in mon.report()


def test_sampling_every_and_epoch_means():
    """every=3 over 4 batches samples batches 0 and 3; the epoch figure is their mean."""
    model = _small_net()
    X = np.random.default_rng(2).standard_normal((32, 3))
    y = (X[:, 1] > 0) * 1.0
    seen = []

    class Spy(fd.GradientMonitor):
        def on_batch_end(self, batch, logs=None):
            before = self._count
            super().on_batch_end(batch, logs)
            if self._count > before:
                seen.append((batch, self._acc["grad_norm/dense_1"]))

    mon = Spy(every=3, verbose=0)
    model.fit(X, y, optimizer=fd.optim.SGD(lr=0.1), epochs=2, batch_size=8, callbacks=[mon],
              verbose=0)
    assert [b for b, _ in seen] == [0, 3, 0, 3]
    np.testing.assert_allclose(mon.history["grad_norm/dense_1"][1], seen[3][1] / 2)
    assert mon.epoch == [0, 1]


def test_monitor_with_batchnorm_and_clipping_optimizer():
    model = fd.Sequential([fd.Dense(8), fd.BatchNorm(), fd.Activation("relu"),
                           fd.Dense(1, activation="sigmoid")], input_dim=16, seed=0)
    mon = fd.GradientMonitor(every=2, verbose=0)
    h = model.fit(X_DEEP, Y_DEEP, optimizer=fd.optim.Adam(global_clipnorm=0.5), epochs=2,
                  batch_size=32, callbacks=[mon], verbose=0)
    for k in ("grad_norm/dense_1", "update_ratio/dense_2", "dead_frac/dense_1"):
        assert len(h.history[k]) == 2 and all(math.isfinite(v) for v in h.history[k])
    # activations after BatchNorm + ReLU: non-negative
    assert h.history["act_mean/dense_1"][0] > 0


def test_history_plot_per_layer(tmp_path):
    pytest.importorskip("matplotlib")
    mon = fd.GradientMonitor(every=1, verbose=0)
    h = _small_net().fit(X_DEEP[:, :3], Y_DEEP, optimizer=fd.optim.SGD(lr=0.1), epochs=2,
                         batch_size=64, callbacks=[mon], verbose=0)
    out = h.plot(tmp_path / "g.png", per_layer="grad_norm")
    assert (tmp_path / "g.png").stat().st_size > 1000 and str(out).endswith("g.png")
    with pytest.raises(ValueError, match="per_layer"):
        h.plot(tmp_path / "x.png", per_layer="nonsense")


def test_diagnose_gradients_rules():
    names = [f"dense_{i}" for i in range(1, 6)]
    flat = diagnose_gradients(dict(zip(names, [1e-2] * 5)))
    assert flat.healthy and flat.factor == pytest.approx(1.0)
    nan = diagnose_gradients(dict(zip(names, [np.nan, 1.0, 1e-2, 1e-2, 1e-2])))
    assert nan.exploding and nan.layers == ["dense_1"] and "non-finite" in nan.message
    geo = diagnose_gradients(dict(zip(names, [10.0 ** -k for k in range(8, 3, -1)])))
    assert geo.vanishing and geo.factor == pytest.approx(0.1)
    two = diagnose_gradients({"dense_1": 1e-9, "dense_2": 0.1})   # below the threshold
    assert two.vanishing and two.factor is None and two.layers == ["dense_1"]


@pytest.mark.parametrize("kw,match", [
    (dict(every=0), "every=0"), (dict(every=2.5), "every=2.5"),
    (dict(vanishing_threshold=0), "vanishing_threshold=0"),
    (dict(vanishing_threshold=float("nan")), "vanishing_threshold=nan"),
    (dict(exploding_threshold=-1), "exploding_threshold=-1"),
    (dict(vanishing_threshold=1.0, exploding_threshold=0.5), "exploding_threshold=0.5"),
    (dict(depth_ratio=1.0), "depth_ratio=1.0"), (dict(depth_ratio=True), "depth_ratio=True"),
    (dict(saturation=1.0), r"saturation=1.0 .*\(0, 1.0\)"), (dict(saturation=0), "saturation"),
    (dict(verbose=-1), "verbose=-1"),
])
def test_bad_thresholds(kw, match):
    with pytest.raises(ValueError, match=match):
        fd.GradientMonitor(**kw)


def test_exports():
    assert fd.callbacks.GradientMonitor is fd.GradientMonitor
    assert fd.GradientMonitor.wants_batches()
    with pytest.raises(RuntimeError, match="recorded no epoch"):
        fd.GradientMonitor().diagnose()


_CUDA_SIM_SCRIPT = """
import numpy as np, fastdl as fd
rng = np.random.default_rng(1)
X = rng.standard_normal((16, 3)); y = (X[:, 0] > 0) * 1.0
res = {}
for be in ("cuda", "numpy"):
    m = fd.Sequential([fd.Dense(4, activation="relu"), fd.Dense(3, activation="tanh"),
                       fd.Dense(1, activation="sigmoid")], input_dim=3, dtype="float64", seed=0,
                      backend=be)
    mon = fd.GradientMonitor(every=1, verbose=0)
    opt = fd.optim.Adam(lr=0.01, global_clipnorm=0.1, clipvalue=0.05)
    m.fit(X, y, optimizer=opt, epochs=1, batch_size=8, callbacks=[mon], verbose=0)
    res[be] = (mon.history, m.get_weights(), opt.last_grad_norm)
assert len(res["numpy"][0]) == 20
for k in res["numpy"][0]:
    np.testing.assert_allclose(res["cuda"][0][k], res["numpy"][0][k], rtol=1e-9, atol=1e-12,
                               err_msg=k)
for a, b in zip(res["cuda"][1], res["numpy"][1]):
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
assert abs(res["cuda"][2] - res["numpy"][2]) <= 1e-9 * res["numpy"][2]
print("SIM-OK")
"""


def test_monitor_and_clipping_on_the_cuda_backend_simulated():
    """The monitor's device-to-host reads and the clipped optimizer step on backend="cuda"
    (CUDA simulator, in a subprocess: the variable must be set before numba is imported)."""
    pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    import os
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1",
               PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")]
                                                    if p]))
    proc = subprocess.run([sys.executable, "-c", _CUDA_SIM_SCRIPT], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "SIM-OK" in proc.stdout, proc.stdout + proc.stderr[-4000:]
