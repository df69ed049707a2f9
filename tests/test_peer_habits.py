"""What a user coming from Keras, PyTorch or scikit-learn does by habit (issue 15): each call
below used to do something else silently, or fail with a misleading message; now it does the
obvious thing or fails clearly. Each test failed before its fix."""

import io
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastdl as fd
from fastdl.data import make_moons

ROOT = Path(__file__).resolve().parents[1]
X, y = make_moons(96, seed=0)


def net(**kw):
    args = dict(input_dim=2, seed=0, dtype="float64")
    args.update(kw)
    return fd.Sequential([fd.Dense(5, activation="tanh"), fd.Dense(1, activation="sigmoid")],
                         **args)


# --- optimizer, epochs across fit calls --------------------------------------------------------
def test_fit_without_optimizer_continues_with_the_models_optimizer():
    model, opt = net(), fd.optim.Adam(lr=0.01)
    model.fit(X, y, optimizer=opt, epochs=1, batch_size=32, verbose=0)
    steps = opt.iterations
    model.fit(X, y, epochs=1, batch_size=32, verbose=0)             # Keras: compiled optimizer
    assert model.optimizer is opt and opt.iterations == steps + 3


def test_fit_after_load_continues_with_the_saved_optimizer(tmp_path):
    model = net()
    model.fit(X, y, optimizer=fd.optim.Adam(lr=0.01), epochs=1, batch_size=32, verbose=0)
    model.save(tmp_path / "m.npz")
    loaded = fd.load(tmp_path / "m.npz")
    loaded.fit(X, y, epochs=1, batch_size=32, verbose=0)
    assert isinstance(loaded.optimizer, fd.optim.Adam) and loaded.optimizer.lr == 0.01
    assert loaded.optimizer.iterations == 6


def test_fit_without_any_optimizer_uses_sgd():
    model = net()
    model.fit(X, y, epochs=1, verbose=0)
    assert isinstance(model.optimizer, fd.optim.SGD) and model.optimizer.lr == 0.01


def test_a_second_fit_counts_epochs_from_this_call(capsys):
    model, seen = net(), []
    model.fit(X, y, epochs=3, verbose=2)
    capsys.readouterr()
    h = model.fit(X, y, epochs=2, verbose=2, lr_schedule=lambda e: seen.append(e) or 0.1)
    out = capsys.readouterr().out
    assert "Epoch 1/2" in out and "Epoch 2/2" in out and "Epoch 4" not in out, out
    assert h.epoch == [0, 1] and seen == [0, 1]
    assert model.epochs_trained == 5          # the shuffle counter runs on: new batches


def test_initial_epoch_as_keras(capsys):
    model, seen = net(), []
    h = model.fit(X, y, epochs=5, initial_epoch=3, verbose=2,
                  lr_schedule=lambda e: seen.append(e) or 0.1)
    assert h.epoch == [3, 4] and seen == [3, 4]
    assert "Epoch 4/5" in capsys.readouterr().out
    with pytest.raises(ValueError, match="initial_epoch=-1"):
        model.fit(X, y, epochs=5, initial_epoch=-1, verbose=0)


def test_initial_epoch_and_resume_from_do_not_mix(tmp_path):
    model = net()
    model.fit(X, y, epochs=1, verbose=0, callbacks=[fd.ModelCheckpoint(str(tmp_path / "c.npz"))])
    with pytest.raises(ValueError, match="initial_epoch.*resume_from"):
        model.fit(X, y, epochs=3, initial_epoch=1, resume_from=str(tmp_path / "c.npz"),
                  verbose=0)


def test_resume_from_a_checkpoint_past_epochs_warns(tmp_path):
    ck = str(tmp_path / "c.npz")
    net().fit(X, y, epochs=3, verbose=0, callbacks=[fd.ModelCheckpoint(ck)])
    model = net()
    with pytest.warns(UserWarning, match="already trained 3 epochs.*nothing will be trained"):
        h = model.fit(X, y, epochs=2, resume_from=ck, verbose=0)
    assert h.epoch == [0, 1, 2]


# --- .npy paths and memory maps everywhere fit takes them --------------------------------------
def test_predict_evaluate_and_validation_data_read_npy_files_in_chunks(tmp_path, monkeypatch):
    from fastdl.nn import sequential
    monkeypatch.setattr(sequential, "EVAL_CHUNK", 7)           # several chunks, a partial one
    Xf = X.astype(np.float32)
    np.save(tmp_path / "X.npy", Xf)
    np.save(tmp_path / "y.npy", y)
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")
    ym = np.load(tmp_path / "y.npy", mmap_mode="r")
    model = net(dtype="float32")
    model.standardizer = fd.Standardizer().fit(Xf)
    for Xs in (str(tmp_path / "X.npy"), Xm):
        np.testing.assert_array_equal(model.predict(Xs), model.predict(Xf))
        np.testing.assert_array_equal(model.predict_proba(Xs), model.predict_proba(Xf))
        for ys in (str(tmp_path / "y.npy"), ym):
            got, want = model.evaluate(Xs, ys), model.evaluate(Xf, y)
            assert got["accuracy"] == want["accuracy"]
            assert got["loss"] == pytest.approx(want["loss"], rel=1e-12)
    a, b = net(), net()
    ha = a.fit(X, y, epochs=2, verbose=0, validation_data=(Xm, ym))
    hb = b.fit(X, y, epochs=2, verbose=0, validation_data=(Xf, y))
    assert ha.history["val_loss"] == pytest.approx(hb.history["val_loss"], rel=1e-6)
    assert ha.history["val_accuracy"] == hb.history["val_accuracy"]


def test_predict_on_zero_rows_returns_an_empty_array():
    assert net().predict(X[:0]).shape == (0,)
    assert net().predict_proba(X[:0]).shape == (0, 1)
    soft = fd.Sequential([fd.Dense(3, activation="softmax")], input_dim=2, seed=0)
    assert soft.predict(X[:0]).shape == (0,) and soft.predict_proba(X[:0]).shape == (0, 3)


# --- arguments with a peer's meaning -----------------------------------------------------------
def test_optimizer_class_instead_of_an_instance_is_a_clear_error():
    with pytest.raises(TypeError, match=r"optimizer=.*Adam.* is a class; pass an instance such "
                                        r"as fd\.optim\.Adam\(\)"):
        net().fit(X, y, optimizer=fd.optim.Adam, verbose=0)
    with pytest.raises(TypeError, match="is a class"):
        net().train_on_batch(X, y, fd.optim.SGD)


def test_a_single_callback_is_accepted():
    stop = fd.EarlyStopping(monitor="loss", patience=0)
    model = net()
    model.fit(X, y, epochs=2, verbose=0, callbacks=stop)
    assert stop.model is model


def test_dense_activation_none_is_linear():
    assert fd.Dense(3, activation=None).activation == "linear"
    assert fd.Activation(None).activation == "linear"
    model = fd.Sequential([fd.Dense(3, activation=None), fd.Dense(1)], input_dim=2, loss="mse")
    assert model.get_config()["layers"][0]["activation"] == "linear"


def test_alpha_only_with_leaky_relu():
    with pytest.raises(ValueError, match=r"alpha=0\.5 is the negative slope of leaky_relu only; "
                                         r"activation='relu' has none"):
        fd.Dense(3, activation="relu", alpha=0.5)
    with pytest.raises(ValueError, match=r"alpha=0\.5"):
        fd.Activation("tanh", alpha=0.5)
    assert fd.Dense(3, activation="leaky_relu", alpha=0.5).alpha == 0.5
    # models saved before the check (alpha 0.01 recorded for every layer) still load
    from fastdl.nn.layers import layer_from_config
    old = {"type": "Dense", "units": 3, "activation": "relu", "init": "he", "use_bias": True,
           "init_scale": 0.01, "alpha": 0.01}
    assert layer_from_config(old).activation == "relu"


def test_dropout_after_the_output_layer_is_a_clear_error():
    with pytest.raises(ValueError, match=r"layers\[2\] is a Dropout after the output layer"):
        fd.Sequential([fd.Dense(4, activation="relu"), fd.Dense(1, activation="sigmoid"),
                       fd.Dropout(keep_prob=0.8)], input_dim=2)


def test_dropout_rate_is_one_minus_keep_prob():
    assert fd.Dropout(rate=0.2).keep_prob == pytest.approx(0.8)
    assert fd.Dropout(0.8).keep_prob == 0.8
    with pytest.raises(ValueError, match="exactly one of keep_prob .* or rate"):
        fd.Dropout(keep_prob=0.8, rate=0.2)
    with pytest.raises(ValueError, match="exactly one of keep_prob"):
        fd.Dropout()
    with pytest.raises(ValueError, match=r"rate=1\.0 is invalid"):
        fd.Dropout(rate=1.0)


# --- History and progress ------------------------------------------------------------------------
class _Costs(fd.Callback):
    def on_batch_end(self, batch, logs=None):        # also routes fit through the step path
        pass


@pytest.mark.parametrize("path", ["fused", "step"])
def test_history_records_the_training_accuracy(path):
    """With one batch per epoch (batch_size = m) the epoch's training accuracy is that of the
    parameters before the update, i.e. evaluate() just before fit, on both training paths."""
    model = net()
    before = model.evaluate(X, y)["accuracy"]
    h = model.fit(X, y, epochs=3, batch_size=len(X), verbose=0,
                  callbacks=[_Costs()] if path == "step" else None)
    assert h.history["accuracy"][0] == before
    assert len(h.history["accuracy"]) == 3 and set(h.history) >= {"loss", "accuracy", "lr"}


def test_early_stopping_can_monitor_training_accuracy():
    stop = fd.EarlyStopping(monitor="accuracy", patience=1)
    net().fit(X, y, epochs=30, verbose=0, callbacks=[stop], optimizer=fd.optim.SGD(lr=1e-9))
    assert stop.stopped_epoch is not None and stop.best is not None


def test_the_progress_bar_shows_one_cost():
    from fastdl.train.progress import ProgressBar
    stream = io.StringIO()
    bar = ProgressBar(stream, interval=0.0)
    bar.on_train_begin(0, 1)
    sizes = np.array([32, 32, 32])
    bar.on_epoch_begin(0, sizes)
    for b, c in enumerate((3.0, 2.0, 1.0)):
        bar.update(b, 32, c)
    bar.on_epoch_end(0, {"loss": 2.0, "accuracy": 0.5, "lr": 0.1}, np.array([3.0, 2.0, 1.0]),
                     sizes, 1.0)
    final = stream.getvalue().split("\r")[-1]
    assert final.count("loss") == 1 and "cost" not in final and "loss: 2" in final, final
    running = stream.getvalue().split("\r")[-2]        # the mean of the batches so far
    assert "loss: 2" in running and "cost" not in running, running


# --- data helpers --------------------------------------------------------------------------------
def test_augment_noise_works_on_tabular_rows():
    aug = fd.Augment(noise=0.5)
    aug.check_features(3)                          # 3 features: not an image, and need not be
    rows = np.zeros((4000, 3))
    aug.apply(rows, seed=0, epoch=0, batch=0)
    assert rows.std() == pytest.approx(0.5, rel=0.05)
    model = fd.Sequential([fd.Dense(1, activation="sigmoid")], input_dim=3, seed=0)
    model.fit(np.ones((8, 3)), np.ones(8), epochs=1, verbose=0, augment=aug)
    with pytest.raises(ValueError, match="image-shaped"):
        fd.Augment(flip=True).check_features(3)


def test_drop_last_with_a_batch_larger_than_the_data_is_a_clear_error():
    with pytest.raises(ValueError, match=r"drop_last=True with batch_size=128 and 96 training "
                                         r"rows"):
        net().fit(X, y, batch_size=128, drop_last=True, verbose=0)


def test_one_sample_hint_and_shapes_as_given():
    with pytest.raises(ValueError, match=r"shape \(2,\).*X\.reshape\(1, -1\) for a single "
                                         r"example"):
        net().predict(X[0])
    two = fd.Sequential([fd.Dense(2, activation="sigmoid")], input_dim=2, seed=0)
    with pytest.raises(ValueError, match=r"y has shape \(96,\)"):
        two.fit(X, y, verbose=0)


# --- files and backends --------------------------------------------------------------------------
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_files_respect_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        net().save(tmp_path / "m.npz")
        m = net()
        m.fit(X, y, epochs=1, verbose=0, callbacks=[fd.ModelCheckpoint(str(tmp_path / "c.npz"))])
    finally:
        os.umask(old)
    for name in ("m.npz", "c.npz"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name


def test_set_backend_cuda_without_numba_cuda_fails_there_and_keeps_the_default():
    code = textwrap.dedent("""
        import importlib.abc, sys
        class _Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "numba.cuda" or name.startswith(("numba.cuda.", "numba_cuda")):
                    raise ImportError(f"No module named {name!r} (blocked by the test)")
        sys.meta_path.insert(0, _Block())
        import fastdl as fd
        try:
            fd.set_backend("cuda")
        except RuntimeError as e:
            print("RAISED", fd.config.DEFAULT_BACKEND, e)
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT), FASTDL_BACKEND="cpu")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300).stdout
    assert out.startswith("RAISED cpu") and "numba-cuda" in out, out


def test_set_backend_cuda_without_a_gpu_fails_there_and_keeps_the_default():
    pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")
    code = textwrap.dedent("""
        from numba import cuda
        if cuda.is_available():
            print("HAS_GPU")
            raise SystemExit(0)
        import fastdl as fd
        try:
            fd.set_backend("cuda")
        except RuntimeError as e:
            print("RAISED", fd.config.DEFAULT_BACKEND, e)
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT), FASTDL_BACKEND="cpu", NUMBA_ENABLE_CUDASIM="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300).stdout
    if "HAS_GPU" in out:
        pytest.skip("a CUDA GPU is available here")
    assert out.startswith("RAISED cpu") and "no usable CUDA GPU" in out, out
