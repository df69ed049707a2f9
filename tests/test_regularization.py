"""Regularization and normalization at the model level (issue 4): Dropout, BatchNorm,
Standardizer, EarlyStopping, Augment, and every bad input."""

import numpy as np
import pytest

import fastdl as fd
from fastdl.data import make_moons, make_spirals

BACKENDS = ["numpy", "cpu"]


def _moons(m=12, seed=0):
    return make_moons(m, seed=seed)


def _bn_net(backend="cpu", dtype="float64", act="tanh", seed=1, out=1, **bn):
    return fd.Sequential([fd.Dense(5), fd.BatchNorm(**bn), fd.Activation(act),
                          fd.Dense(4), fd.BatchNorm(**bn), fd.Activation(act),
                          fd.Dense(out, activation="sigmoid" if out == 1 else "softmax")],
                         input_dim=2, seed=seed, backend=backend, dtype=dtype)


# ------------------------------------------------------------------------- gradient check ----
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("act", ["tanh", "relu", "leaky_relu", "sigmoid"])
def test_gradcheck_batchnorm_training_mode(backend, act):
    X, y = _moons()
    model = _bn_net(backend, act=act)
    before = [w.copy() for w in model.get_weights()]
    r = fd.gradcheck(model, X, y, l2=0.2)
    assert r.passed, str(r)
    assert [n for n, *_ in r.per_tensor] == ["W0", "gamma1", "beta1", "W3", "gamma4", "beta4",
                                             "W6", "b6"]
    # gradient checking leaves the running statistics (and everything else) untouched
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_batchnorm_softmax_float32_model(backend):
    X, y = make_spirals(15, n_classes=3, seed=0)
    model = _bn_net(backend, dtype="float32", out=3, running_var="unbiased")
    assert fd.gradcheck(model, X, y).passed


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_batchnorm_first_and_last(backend):
    """BatchNorm on the inputs (no dX to compute) and right before a sigmoid output (that
    activation goes to the loss, not into the BatchNorm kernel)."""
    X, y = _moons()
    model = fd.Sequential([fd.BatchNorm(), fd.Dense(4, activation="tanh"), fd.Dense(1),
                           fd.BatchNorm(), fd.Activation("sigmoid")],
                          input_dim=2, seed=2, backend=backend, dtype="float64")
    assert model.output_activation == "sigmoid" and model.layers[3].runtime_activation == 0
    r = fd.gradcheck(model, X, y)
    assert r.passed, str(r)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck_with_dropout_present_is_switched_off(backend):
    X, y = _moons()
    model = fd.Sequential([fd.Dense(6, activation="relu"), fd.Dropout(0.5),
                           fd.Dense(4, activation="tanh"), fd.Dropout(0.7),
                           fd.Dense(1, activation="sigmoid")],
                          input_dim=2, seed=3, backend=backend, dtype="float64")
    r = fd.gradcheck(model, X, y, l2=0.1)
    assert r.passed, str(r)
    assert not any(layer.deterministic for layer in model.layers[1::2])   # restored


# -------------------------------------------------------------------------------- dropout ----
def _drop_net(keep, backend="cpu", seed=0, dtype="float64"):
    layers = [fd.Dense(16, activation="relu")]
    if keep is not None:
        layers.append(fd.Dropout(keep))
    layers += [fd.Dense(8, activation="relu")]
    if keep is not None:
        layers.append(fd.Dropout(keep))
    layers.append(fd.Dense(1, activation="sigmoid"))
    return fd.Sequential(layers, input_dim=2, seed=seed, backend=backend, dtype=dtype)


def test_dropout_off_at_inference_and_identity_at_keep_1():
    X, y = _moons(50)
    plain, drop, ident = _drop_net(None), _drop_net(0.5), _drop_net(1.0)
    drop.set_weights(plain.get_weights())
    ident.set_weights(plain.get_weights())
    np.testing.assert_array_equal(drop.predict_proba(X), plain.predict_proba(X))
    assert drop.evaluate(X, y) == plain.evaluate(X, y)
    # keep_prob = 1 is skipped by the model: same ops as the plain net (fused-epoch path too)
    assert [type(op) for op in ident._ops] == [type(op) for op in plain._ops]
    assert ident._dense_only
    opt_a, opt_b = fd.optim.SGD(lr=0.1), fd.optim.SGD(lr=0.1)
    plain.fit(X, y, optimizer=opt_a, epochs=3, batch_size=16, verbose=0)
    ident.fit(X, y, optimizer=opt_b, epochs=3, batch_size=16, verbose=0)
    for a, b in zip(plain.get_weights(), ident.get_weights()):
        np.testing.assert_array_equal(a, b)
    # in training, dropout changes the cost; the masks come from (seed, step, layer)
    c_plain, _ = plain.loss_and_grads(X, y)
    drop.set_weights(plain.get_weights())
    c_drop, _ = drop.loss_and_grads(X, y)
    assert c_drop != c_plain


def test_dropout_training_is_reproducible_and_backend_independent():
    """Same seed: the same masks on numpy and cpu (bit-identical hash), so the same training;
    steps_trained counts updates and feeds the masks."""
    X, y = _moons(64, seed=2)
    runs = {}
    for backend in BACKENDS:
        model = _drop_net(0.6, backend=backend)
        model.fit(X, y, optimizer=fd.optim.SGD(lr=0.2), epochs=3, batch_size=16, verbose=0)
        assert model.steps_trained == 12
        model.train_on_batch(X[:8], y[:8], fd.optim.SGD(lr=0.2))
        assert model.steps_trained == 13
        runs[backend] = model.get_weights()
    for a, b in zip(runs["numpy"], runs["cpu"]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # a different seed draws different masks
    other = _drop_net(0.6, seed=0)
    other.seed = 99
    other.fit(X, y, optimizer=fd.optim.SGD(lr=0.2), epochs=3, batch_size=16, verbose=0)
    assert not np.allclose(other.get_weights()[0], runs["cpu"][0])


def test_dropout_resumed_run_reproduces_masks():
    """Stopping after epoch 2 and continuing on a fresh model that got the weights and the
    counters (what a checkpoint stores) ends where an uninterrupted run ends."""
    X, y = _moons(48, seed=4)
    full = _drop_net(0.7)
    full.fit(X, y, optimizer=fd.optim.SGD(lr=0.1), epochs=4, batch_size=16, verbose=0)
    first = _drop_net(0.7)
    first.fit(X, y, optimizer=fd.optim.SGD(lr=0.1), epochs=2, batch_size=16, verbose=0)
    resumed = fd.Sequential.from_config(first.get_config(), backend="cpu")
    resumed.set_weights(first.get_weights())
    resumed.epochs_trained, resumed.steps_trained = first.epochs_trained, first.steps_trained
    resumed.fit(X, y, optimizer=fd.optim.SGD(lr=0.1), epochs=2, batch_size=16, verbose=0)
    for a, b in zip(full.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_dropout_backward_uses_the_forward_mask():
    """Gradients of a dropout net equal those of the plain net with the mask applied by hand
    (the model computes the mask of step steps_trained for layer index 1)."""
    from fastdl.kernels.reference.dropout import _keep_mask
    X, y = _moons(10, seed=5)
    drop = fd.Sequential([fd.Dense(7, activation="tanh"), fd.Dropout(0.5),
                          fd.Dense(1, activation="sigmoid")], input_dim=2, seed=1,
                         dtype="float64")
    drop.steps_trained = 5
    c, grads = drop.loss_and_grads(X, y)
    W0, b0, W2, b2 = drop.get_weights()
    keep = _keep_mask((10, 7), drop.seed, 5, 1, 0.5)
    A1 = np.tanh(X @ W0.T + b0)
    D = np.where(keep, A1 / 0.5, 0.0)
    z = D @ W2.T + b2
    p = 1 / (1 + np.exp(-z[:, 0]))
    cost = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert c == pytest.approx(cost, rel=1e-12)
    dz = (p - y)[:, None] / 10
    np.testing.assert_allclose(grads[2], dz.T @ D, rtol=1e-10)
    dA1 = np.where(keep, (dz @ W2) / 0.5, 0.0) * (1 - A1 ** 2)
    np.testing.assert_allclose(grads[0], dA1.T @ X, rtol=1e-10)


# ------------------------------------------------------------------------------ batchnorm ----
def test_batchnorm_layout_bias_drop_and_weights_roundtrip():
    model = _bn_net()
    assert not model.layers[0].use_bias and not model.layers[3].use_bias
    names = [(i, n) for i, n, _ in model._weight_keys()]
    assert names == [(0, "W"), (1, "gamma"), (1, "beta"), (1, "running_mean"),
                     (1, "running_var"), (3, "W"), (4, "gamma"), (4, "beta"),
                     (4, "running_mean"), (4, "running_var"), (6, "W"), (6, "b")]
    w = model.get_weights()
    np.testing.assert_array_equal(w[1], 1)        # gamma
    np.testing.assert_array_equal(w[2], 0)        # beta
    np.testing.assert_array_equal(w[3], 0)        # running mean
    np.testing.assert_array_equal(w[4], 1)        # running var
    rng = np.random.default_rng(0)
    new = [rng.uniform(0.5, 1.5, a.shape) for a in w]
    model.set_weights(new)
    for a, b in zip(model.get_weights(), new):
        np.testing.assert_allclose(a, b)
    # a Dense with a nonlinear activation keeps its bias; BN params take no L2 (not decayed)
    m2 = fd.Sequential([fd.Dense(3, activation="relu"), fd.BatchNorm(), fd.Dense(1)],
                       input_dim=2, seed=0)
    assert m2.layers[0].use_bias
    assert m2.params.n_decay == 3 * 2 + 1 * 3
    # config round trip keeps the BN settings
    m3 = fd.Sequential.from_config(_bn_net(momentum=0.8, eps=1e-3,
                                           running_var="unbiased").get_config())
    bn = m3.layers[1]
    assert (bn.momentum, bn.eps, bn.running_var_kind) == (0.8, 1e-3, "unbiased")


@pytest.mark.parametrize("backend", BACKENDS)
def test_batchnorm_running_statistics_and_eval_mode(backend):
    """train_on_batch updates running stats by the EWA of the batch statistics of the BN
    input; predict/evaluate use them (eval mode) and leave them unchanged."""
    rng = np.random.default_rng(1)
    X = rng.normal(3.0, 2.0, (32, 2))
    y = (X[:, 0] > 3).astype(float)
    model = fd.Sequential([fd.Dense(4), fd.BatchNorm(momentum=0.7), fd.Activation("relu"),
                           fd.Dense(1, activation="sigmoid")], input_dim=2, seed=0,
                          backend=backend, dtype="float64")
    W0 = model.get_weights()[0]
    model.train_on_batch(X, y, fd.optim.SGD(lr=0.1))
    Z = X @ W0.T
    w = model.get_weights()
    np.testing.assert_allclose(w[3], 0.3 * Z.mean(0), rtol=1e-12)
    np.testing.assert_allclose(w[4], 0.7 + 0.3 * Z.var(0), rtol=1e-12)
    # eval mode: y = gamma (z - running_mean)/sqrt(running_var + eps) + beta, by hand
    W0, gamma, beta, rm, rv, W3, b3 = w
    h = np.maximum(gamma * ((X @ W0.T) - rm) / np.sqrt(rv + 1e-5) + beta, 0)
    p = 1 / (1 + np.exp(-(h @ W3.T + b3)))
    np.testing.assert_allclose(model.predict_proba(X), p, rtol=1e-10)
    model.evaluate(X, y)
    for a, b in zip(model.get_weights(), w):
        np.testing.assert_array_equal(a, b)


def test_batchnorm_unbiased_running_var_and_converters():
    X = np.random.default_rng(2).normal(size=(10, 3))
    model = fd.Sequential([fd.BatchNorm.from_torch(momentum=0.25)], input_dim=3, loss="mse",
                          seed=0, dtype="float64")
    assert model.layers[0].momentum == 0.75
    model.train_on_batch(X, np.zeros((10, 3)), fd.optim.SGD(lr=0.1))
    np.testing.assert_allclose(model.get_weights()[3], 0.75 + 0.25 * X.var(0, ddof=1))
    assert fd.nn.batchnorm_momentum_from_torch(0.1) == pytest.approx(0.9)
    assert fd.nn.batchnorm_momentum_to_torch(0.9) == pytest.approx(0.1)
    keras = fd.BatchNorm.from_keras()
    assert (keras.momentum, keras.eps, keras.running_var_kind) == (0.99, 1e-3, "biased")


def test_batchnorm_loss_and_grads_and_backend_move():
    X, y = _moons(20)
    model = _bn_net(backend="numpy")
    model.fit(X, y, optimizer=fd.optim.SGD(lr=0.1), epochs=2, batch_size=10, verbose=0)
    cost, grads = model.loss_and_grads(X, y)
    w = model.get_weights()
    assert [g.shape for g in grads] == [a.shape for a in w]
    for k in (3, 4, 8, 9):                   # running statistics: no gradient
        np.testing.assert_array_equal(grads[k], 0)
    w = model.get_weights()
    model.to("cpu")
    for a, b in zip(model.get_weights(), w):
        np.testing.assert_array_equal(a, b)
    p_cpu = model.predict_proba(X)
    model.to("numpy")
    np.testing.assert_allclose(model.predict_proba(X), p_cpu, rtol=1e-12)


def test_batchnorm_fuses_the_following_activation():
    model = _bn_net(act="relu")
    bn, act = model.layers[1], model.layers[2]
    assert act.fused and bn.runtime_activation == 1 and act not in model._ops
    assert "(fused)" in model.summary(print_fn=None).splitlines()[4]


def test_save_and_load_keep_batchnorm_dropout_standardizer_and_step(tmp_path):
    """Issue-5's save/load stores get_weights() (running statistics included), the
    standardizer's get_state() and steps_trained (the dropout counter)."""
    X, y = _moons(64, seed=6)
    model = fd.Sequential([fd.Dense(8), fd.BatchNorm(running_var="unbiased"),
                           fd.Activation("relu"), fd.Dropout(0.7),
                           fd.Dense(1, activation="sigmoid")], input_dim=2, seed=3)
    model.standardizer = fd.Standardizer()
    model.fit(X * 10 + 5, y, optimizer=fd.optim.Adam(lr=0.01), epochs=3, batch_size=16,
              verbose=0)
    model.save(str(tmp_path / "m.npz"))
    back = fd.load(str(tmp_path / "m.npz"))
    assert back.steps_trained == model.steps_trained == 12
    assert back.layers[1].running_var_kind == "unbiased"
    for a, b in zip(back.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(back.standardizer.mean, model.standardizer.mean)
    np.testing.assert_array_equal(back.predict_proba(X * 10 + 5), model.predict_proba(X * 10 + 5))
    c1, _ = back.loss_and_grads(X * 10 + 5, y)          # same dropout masks at the same step
    c2, _ = model.loss_and_grads(X * 10 + 5, y)
    assert c1 == c2


def test_standardizer_applies_to_streamed_batches(tmp_path):
    """X given as a .npy path (streamed): the standardizer is fitted from the file and each
    streamed batch is standardized, exactly as training on a pre-standardized file."""
    X, y = make_moons(96, seed=7)
    Xraw = X * [30.0, 0.1] + [500.0, 2.0]
    np.save(tmp_path / "raw.npy", Xraw.astype(np.float32))
    s = fd.Standardizer().fit(Xraw.astype(np.float32))
    np.save(tmp_path / "std.npy", s.transform(Xraw.astype(np.float32)))
    a, b = _drop_net(0.8, dtype="float32"), _drop_net(0.8, dtype="float32")
    a.standardizer = fd.Standardizer()
    a.fit(str(tmp_path / "raw.npy"), y, epochs=2, batch_size=32, verbose=0)
    b.fit(str(tmp_path / "std.npy"), y, epochs=2, batch_size=32, verbose=0)
    np.testing.assert_allclose(a.standardizer.mean, s.mean)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)


def test_batchnorm_cpu_and_numpy_train_alike():
    X, y = make_spirals(60, n_classes=3, seed=1)
    runs = []
    for backend in BACKENDS:
        model = _bn_net(backend, dtype="float32", act="relu", out=3)
        h = model.fit(X, y, optimizer=fd.optim.Adam(lr=0.01), epochs=3, batch_size=16,
                      verbose=0)
        runs.append((h.history["loss"], model.get_weights()))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=1e-4)
    for a, b in zip(runs[0][1], runs[1][1]):
        np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4)


# ---------------------------------------------------------------------------- standardizer ----
def test_standardizer_fit_transform_inverse_and_state():
    rng = np.random.default_rng(0)
    X = rng.normal([10.0, -5.0, 2.0], [3.0, 0.5, 1.0], (200, 3))
    X[:, 2] = 7.0                                            # zero variance
    s = fd.Standardizer().fit(X)
    np.testing.assert_allclose(s.mean, X.mean(0))
    np.testing.assert_allclose(s.std, [X[:, 0].std(), X[:, 1].std(), 1.0])
    Z = s.transform(X)
    np.testing.assert_allclose(Z.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(Z.std(0), [1, 1, 0], atol=1e-12)
    np.testing.assert_allclose(s.inverse_transform(Z), X)
    np.testing.assert_allclose(fd.data.Standardizer().fit_transform(X), Z)
    assert s.transform(X.astype(np.float32)).dtype == np.float32
    t = fd.Standardizer.from_state(s.get_state())
    np.testing.assert_array_equal(t.transform(X), Z)
    assert fd.Standardizer().get_state() == {}


def test_standardizer_on_a_model_fits_on_training_data_only(tmp_path):
    X, y = make_moons(200, seed=3)
    Xraw = X * [40.0, 0.01] + [1000.0, -3.0]
    Xdev = Xraw[:50] + 100.0                     # shifted: must not move the statistics
    model = fd.Sequential([fd.Dense(8, activation="tanh"), fd.Dense(1, activation="sigmoid")],
                          input_dim=2, seed=0, dtype="float64")
    model.standardizer = fd.Standardizer()
    model.fit(Xraw, y, optimizer=fd.optim.Adam(lr=0.05), epochs=30, batch_size=32, verbose=0,
              validation_data=(Xdev, y[:50]))
    np.testing.assert_allclose(model.standardizer.mean, Xraw.mean(0))
    assert model.evaluate(Xraw, y)["accuracy"] > 0.85
    # predict takes raw inputs: same as a bare copy of the model on standardized inputs
    bare = fd.Sequential.from_config(model.get_config())
    bare.set_weights(model.get_weights())
    np.testing.assert_allclose(model.predict_proba(Xraw),
                               bare.predict_proba(model.standardizer.transform(Xraw)),
                               rtol=1e-12)
    # a .npy path fits the same statistics (chunked, memory-mapped)
    path = tmp_path / "X.npy"
    np.save(path, Xraw)
    np.testing.assert_allclose(fd.Standardizer().fit(str(path)).std, model.standardizer.std)


# --------------------------------------------------------------------------- early stopping ----
class _Recorder(fd.Callback):
    def __init__(self):
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(self.model.get_weights())


def test_early_stopping_restores_the_best_weights():
    """An over-large net on a few noisy points: val_loss bottoms out then rises; training stops
    `patience` epochs later and the weights are those of the best epoch."""
    Xtr, ytr = make_moons(30, noise=0.4, seed=1)
    Xdv, ydv = make_moons(300, noise=0.4, seed=2)
    model = fd.Sequential([fd.Dense(64, activation="relu"), fd.Dense(64, activation="relu"),
                           fd.Dense(1, activation="sigmoid")], input_dim=2, seed=0,
                          dtype="float64")
    rec, es = _Recorder(), fd.EarlyStopping(patience=5)
    h = model.fit(Xtr, ytr, optimizer=fd.optim.Adam(lr=0.02), epochs=500, batch_size=30,
                  validation_data=(Xdv, ydv), callbacks=[rec, es], verbose=0)
    val = h.history["val_loss"]
    best = int(np.argmin(val))
    assert es.best_epoch == best and es.best == val[best]
    assert es.stopped_epoch == best + 5 == len(val) - 1 < 499
    assert model.stop_training
    for a, b in zip(model.get_weights(), rec.weights[best]):
        np.testing.assert_array_equal(a, b)
    assert model.evaluate(Xdv, ydv)["loss"] == pytest.approx(val[best], rel=1e-12)


def test_early_stopping_modes_and_min_delta():
    es = fd.EarlyStopping(monitor="val_accuracy")
    assert es.mode == "max"
    assert fd.EarlyStopping(monitor="loss").mode == "min"
    X, y = _moons(40)
    model = _drop_net(None)
    # min_delta larger than any change: the first epoch stays best, stops after 3 more
    es = fd.EarlyStopping(monitor="loss", patience=3, min_delta=1e9)
    h = model.fit(X, y, epochs=50, batch_size=40, callbacks=[es], verbose=0)
    assert len(h.epoch) == 4 and es.best_epoch == 0


# ---------------------------------------------------------------------------- augmentation ----
def test_augment_flip_shift_noise_are_deterministic():
    imgs = np.arange(2 * 4 * 5 * 3, dtype=np.float64).reshape(2, 4 * 5 * 3) + 1
    a = fd.Augment(image_shape=(4, 5, 3), flip=True, shift=1, noise=0.0)
    b1, b2 = imgs.copy(), imgs.copy()
    a.apply(b1, 7, 3, 2)
    a.apply(b2, 7, 3, 2)
    np.testing.assert_array_equal(b1, b2)
    b3 = imgs.copy()
    a.apply(b3, 7, 3, 3)
    assert not np.array_equal(b1, b3)
    # flips alone: each image mirrored left-right or untouched, channels kept
    f = imgs.copy()
    fd.Augment(image_shape=(4, 5, 3), flip=True).apply(f, 1, 0, 0)
    src = imgs.reshape(2, 4, 5, 3)
    for i, img in enumerate(f.reshape(2, 4, 5, 3)):
        assert np.array_equal(img, src[i]) or np.array_equal(img, src[i, :, ::-1])
    # shifts alone: a translated copy with zeros shifted in
    sh = imgs[:1].copy()
    fd.Augment(image_shape=(4, 5, 3), shift=2).apply(sh, 5, 1, 1)
    out = sh.reshape(4, 5, 3)
    found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
             if np.array_equal(out, _shift(src[0], dy, dx))]
    assert found
    # noise alone: the requested standard deviation
    big = np.zeros((64, 28 * 28), np.float32)
    fd.Augment(noise=0.05).apply(big, 0, 0, 0)      # 28x28 inferred
    assert big.std() == pytest.approx(0.05, rel=0.02) and big.dtype == np.float32


def _shift(img, dy, dx):
    out = np.zeros_like(img)
    H, W = img.shape[:2]
    for r in range(H):
        for c in range(W):
            if 0 <= r - dy < H and 0 <= c - dx < W:
                out[r, c] = img[r - dy, c - dx]
    return out


def test_fit_with_augment_never_touches_validation_data():
    rng = np.random.default_rng(0)
    X = rng.random((64, 16))
    y = (X[:, :8].sum(1) > 4).astype(int)
    Xv, yv = X[:16].copy(), y[:16]
    X0 = X.copy()
    seen = []

    class Spy(fd.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((logs["val_loss"], self.model.evaluate(Xv, yv)["loss"]))

    model = _aug_net()
    model.fit(X, y, epochs=2, batch_size=16, validation_data=(Xv, yv), verbose=0,
              augment=fd.Augment(image_shape=(4, 4), flip=True, shift=1, noise=0.1),
              callbacks=[Spy()])
    assert all(a == b for a, b in seen)              # val_loss is the plain evaluate
    np.testing.assert_array_equal(X, X0)             # the caller's data is never modified
    plain = _aug_net()
    plain.fit(X, y, epochs=2, batch_size=16, verbose=0)
    assert not np.allclose(plain.get_weights()[0], model.get_weights()[0])
    # an augmentation that changes nothing trains exactly like no augmentation (step path
    # vs the fused-epoch path for this small net)
    idle = _aug_net()
    idle.fit(X, y, epochs=2, batch_size=16, verbose=0, augment=fd.Augment(image_shape=(4, 4)))
    for a, b in zip(plain.get_weights(), idle.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def _aug_net():
    return fd.Sequential([fd.Dense(8, activation="relu"), fd.Dense(1, activation="sigmoid")],
                         input_dim=16, seed=0)


# -------------------------------------------------------------- regularization works ----
def test_l2_and_dropout_lower_dev_error_on_noisy_moons():
    """Course week 1: an over-large net (2-64-64-1) on 40 noisy points overfits; L2 and
    dropout both generalize better. Fixed seeds; the margins (measured: no regularization
    0.229 dev error, L2 0.105, dropout 0.165; robust over init seeds 0-3) are wide."""
    from threadpoolctl import threadpool_limits
    Xtr, ytr = make_moons(40, noise=0.3, seed=5)
    Xdv, ydv = make_moons(2000, noise=0.3, seed=105)

    def dev_error(l2=0.0, keep=None):
        layers = []
        for _ in range(2):
            layers.append(fd.Dense(64, activation="relu"))
            if keep is not None:
                layers.append(fd.Dropout(keep))
        layers.append(fd.Dense(1, activation="sigmoid"))
        model = fd.Sequential(layers, input_dim=2, seed=0, dtype="float64")
        with threadpool_limits(1):             # tiny GEMMs: threads only add overhead
            model.fit(Xtr, ytr, optimizer=fd.optim.Adam(lr=0.01), epochs=2000, batch_size=40,
                      l2=l2, verbose=0)
        assert model.evaluate(Xtr, ytr)["accuracy"] >= 0.85
        return 1.0 - model.evaluate(Xdv, ydv)["accuracy"]

    none, l2, drop = dev_error(), dev_error(l2=0.6), dev_error(keep=0.5)
    assert l2 < none - 0.05, (none, l2)
    assert drop < none - 0.03, (none, drop)


# ------------------------------------------------------------------------------ bad input ----
X3 = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
y3 = np.array([0, 1, 1])


@pytest.mark.parametrize("make, exc, match", [
    (lambda: fd.Dropout(0), ValueError, r"keep_prob=0 is invalid; expected a number in \(0, 1\]"),
    (lambda: fd.Dropout(1.5), ValueError, r"keep_prob=1.5 is invalid"),
    (lambda: fd.Dropout(-0.2), ValueError, r"keep_prob=-0.2"),
    (lambda: fd.Dropout(float("nan")), ValueError, r"keep_prob=nan"),
    (lambda: fd.Dropout(True), ValueError, r"keep_prob=True"),
    (lambda: fd.Dropout("0.5"), ValueError, r"keep_prob='0.5'"),
    (lambda: fd.BatchNorm(momentum=1.0), ValueError,
     r"momentum=1.0 is invalid; expected a number in \[0, 1\)"),
    (lambda: fd.BatchNorm(momentum=-0.1), ValueError, r"momentum=-0.1"),
    (lambda: fd.BatchNorm(momentum=float("inf")), ValueError, r"momentum=inf"),
    (lambda: fd.BatchNorm(eps=0), ValueError, r"eps=0 is invalid; expected a number > 0"),
    (lambda: fd.BatchNorm(eps=-1e-5), ValueError, r"eps=-1e-05"),
    (lambda: fd.BatchNorm(running_var="sample"), ValueError, r"running_var='sample'"),
    (lambda: fd.nn.batchnorm_momentum_from_torch(0), ValueError, r"momentum_torch=0"),
    (lambda: fd.nn.batchnorm_momentum_to_torch(1.2), ValueError, r"momentum=1.2"),
    (lambda: fd.Augment(image_shape=(28,)), ValueError, r"image_shape=\(28,\)"),
    (lambda: fd.Augment(image_shape=(4, 0)), ValueError, r"image_shape=0"),
    (lambda: fd.Augment(image_shape=(4, 4), shift=4), ValueError, r"shift=4 .* shift < 4"),
    (lambda: fd.Augment(shift=-1), ValueError, r"shift=-1"),
    (lambda: fd.Augment(noise=-0.1), ValueError, r"noise=-0.1"),
    (lambda: fd.Augment(flip=1), TypeError, r"flip=1"),
    (lambda: fd.EarlyStopping(patience=-1), ValueError, r"patience=-1"),
    (lambda: fd.EarlyStopping(min_delta=-0.1), ValueError, r"min_delta=-0.1"),
    (lambda: fd.EarlyStopping(mode="up"), ValueError, r"mode='up'"),
    (lambda: fd.EarlyStopping(monitor=""), ValueError, r"monitor=''"),
    (lambda: fd.EarlyStopping(restore_best_weights=1), TypeError, r"restore_best_weights=1"),
    (lambda: fd.Standardizer().transform(X3), RuntimeError, r"not fitted"),
    (lambda: fd.Standardizer().fit(X3).transform(np.ones((2, 3))), ValueError,
     r"X has 3 features .* fitted on 2"),
    (lambda: fd.Standardizer().fit(np.ones(3)), ValueError, r"X has shape \(3,\)"),
    (lambda: fd.Standardizer().fit([[1.0, np.nan]]), ValueError, r"NaN or infinite"),
    (lambda: fd.Standardizer().fit(np.empty((0, 2))), ValueError, r"X is empty"),
    (lambda: fd.Standardizer().set_state({"mean": [0.0], "std": [0.0]}), ValueError, r"stds > 0"),
])
def test_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def _bn_model():
    return fd.Sequential([fd.Dense(3), fd.BatchNorm(), fd.Activation("relu"),
                          fd.Dense(1, activation="sigmoid")], input_dim=2, seed=0)


def _plain():
    return fd.Sequential([fd.Dense(3, activation="relu"), fd.Dense(1, activation="sigmoid")],
                         input_dim=2, seed=0)


@pytest.mark.parametrize("call, exc, match", [
    (lambda: _bn_model().train_on_batch(X3[:1], y3[:1], fd.optim.SGD(lr=0.1)), ValueError,
     r"BatchNorm \(layer 1\) in training mode needs a batch of at least 2 examples to "
     r"compute a variance; got a batch of 1"),
    (lambda: _bn_model().fit(X3, y3, batch_size=2, verbose=0), ValueError,
     r"batch of 1.*batch_size"),
    (lambda: _bn_model().loss_and_grads(X3[:1], y3[:1]), ValueError, r"at least 2 examples"),
    (lambda: _plain().fit(X3, y3, verbose=0, augment=fd.Augment(flip=True)), ValueError,
     r"augment needs image-shaped inputs, but X has 2 features, which is not a square image"),
    (lambda: fd.Sequential([fd.Dense(1, activation="sigmoid")], input_dim=10, seed=0).fit(
        np.ones((3, 10)), y3, verbose=0, augment=fd.Augment(image_shape=(3, 3))), ValueError,
     r"image_shape=\(3, 3\) holds 9 values per example, but X has 10 features"),
    (lambda: _plain().fit(X3, y3, verbose=0, augment={"flip": True}), TypeError,
     r"augment=\{'flip': True\} is not an augmentation"),
    (lambda: _plain().fit(X3, y3, verbose=0, callbacks=[fd.EarlyStopping()]), ValueError,
     r"monitor='val_loss'.*logged no 'val_loss'.*validation_data"),
    (lambda: setattr(_plain(), "standardizer", "yes"), TypeError, r"standardizer='yes'"),
    (lambda: _with_std(fd.Standardizer()).predict(X3), RuntimeError,
     r"model.standardizer is not fitted"),
    (lambda: _with_std(fd.Standardizer().fit(np.ones((3, 4)))).fit(X3, y3, verbose=0),
     ValueError, r"fitted on 4 features; the model expects 2"),
    (lambda: _bn_model().set_weights(_neg_var(_bn_model().get_weights())), ValueError,
     r"weights\[4\] \(running_var of layer 1\) has negative entries"),
    (lambda: _bn_model().set_weights(_bn_model().get_weights()[:3]), ValueError,
     r"weights has 3 entries; expected a list of 7 arrays \(W0, gamma1, beta1, "
     r"running_mean1, running_var1, W3, b3\)"),
])
def test_bad_model_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def _with_std(s):
    m = _plain()
    m.standardizer = s
    return m


def _neg_var(w):
    w[4] = -np.ones_like(w[4])
    return w
