"""Run logs: fd.callbacks.CSVLogger and fd.callbacks.TensorBoard (event files read back with
TensorBoard's own reader); a run broken and resumed from a checkpoint logs what the unbroken
run logs, each epoch once; bad arguments fail before any training."""

import csv
import os
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import fastdl as fd


def _data(m=400, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, 12))
    y = (X[:, :3].sum(1) > 0).astype(int) + (X[:, 3] > 1)
    return X, y


def _model():
    return fd.Sequential([fd.Dense(16, activation="relu"), fd.Dropout(keep_prob=0.9),
                          fd.Dense(3, activation="softmax")], input_dim=12, seed=5,
                         dtype="float64")


class _Crash(fd.Callback):
    """Dies at the end of epoch ``at`` (after the callbacks listed before it ran)."""

    def __init__(self, at):
        self.at = at

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at:
            raise RuntimeError("simulated crash")


def _broken_and_resumed(tmp_path, make_logs, epochs=6, crash_at=4):
    """Run 1 checkpoints after epochs 1 and 3 and dies at the end of epoch 4 (its logs then
    hold epoch 4, past the checkpoint); run 2 resumes from the checkpoint in a new model."""
    X, y = _data()
    ckpt = str(tmp_path / "ckpt.npz")
    kw = dict(epochs=epochs, batch_size=50, verbose=0, validation_data=(X[:80], y[:80]))
    with pytest.raises(RuntimeError, match="simulated crash"):
        _model().fit(X, y, optimizer=fd.optim.Adam(), **kw,
                     callbacks=make_logs() + [fd.ModelCheckpoint(ckpt, every_n_epochs=2),
                                              _Crash(crash_at)])
    resumed = _model()
    resumed.fit(X, y, optimizer=fd.optim.Adam(), resume_from=ckpt, callbacks=make_logs(), **kw)
    return resumed


def _unbroken(make_logs, epochs=6):
    X, y = _data()
    model = _model()
    model.fit(X, y, optimizer=fd.optim.Adam(), epochs=epochs, batch_size=50, verbose=0,
              validation_data=(X[:80], y[:80]), callbacks=make_logs())
    return model


# ------------------------------------------------------------------------------ CSVLogger ----
def test_csv_rows_hold_the_epoch_logs_in_full_precision(tmp_path):
    path = tmp_path / "log.csv"
    X, y = _data()
    h = _model().fit(X, y, epochs=3, batch_size=50, verbose=0, validation_data=(X, y),
                     callbacks=[fd.callbacks.CSVLogger(path)])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["epoch", "loss", "accuracy", "lr", "val_loss", "val_accuracy"]
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    for key in ("loss", "accuracy", "lr", "val_loss", "val_accuracy"):
        assert [float(r[key]) for r in rows] == h.history[key]      # exact: repr round-trips


def test_csv_of_a_resumed_run_equals_the_unbroken_run(tmp_path):
    broken, whole = tmp_path / "broken.csv", tmp_path / "whole.csv"
    a = _broken_and_resumed(tmp_path, lambda: [fd.callbacks.CSVLogger(broken)])
    b = _unbroken(lambda: [fd.callbacks.CSVLogger(whole)])
    text = broken.read_text()
    assert text == whole.read_text()
    assert text.count("epoch,") == 1 and len(text.splitlines()) == 7      # header + 6 epochs
    for wa, wb in zip(a.get_weights(), b.get_weights()):                   # and the run too
        np.testing.assert_array_equal(wa, wb)


def test_csv_append_false_starts_a_new_run_append_true_continues_it(tmp_path):
    path = tmp_path / "log.csv"
    X, y = _data()
    model = _model()
    model.fit(X, y, epochs=2, batch_size=100, verbose=0, callbacks=[fd.callbacks.CSVLogger(path)])
    model.fit(X, y, epochs=2, batch_size=100, verbose=0,       # the model's epochs 2 and 3
              callbacks=[fd.callbacks.CSVLogger(path, append=True)])
    assert [r.split(",")[0] for r in path.read_text().splitlines()] == ["epoch", "0", "1", "2",
                                                                        "3"]
    _model().fit(X, y, epochs=1, batch_size=100, verbose=0,      # a new run, append=False
                 callbacks=[fd.callbacks.CSVLogger(path)])
    assert [r.split(",")[0] for r in path.read_text().splitlines()] == ["epoch", "0"]


def test_csv_drops_a_row_cut_short_and_rows_past_the_resume_point(tmp_path):
    path = tmp_path / "log.csv"
    X, y = _data()
    model = _model()
    model.fit(X, y, epochs=2, batch_size=100, verbose=0, callbacks=[fd.callbacks.CSVLogger(path)])
    with open(path, "a") as f:
        f.write("2,0.5,0.01\n3,0.4")                      # a later epoch, and a torn last row
    model.fit(X, y, epochs=1, batch_size=100, verbose=0,
              callbacks=[fd.callbacks.CSVLogger(path, append=True)])
    lines = path.read_text().splitlines()
    assert [r.split(",")[0] for r in lines] == ["epoch", "0", "1", "2"]
    assert lines[3] != "2,0.5,0.01"


def test_csv_refuses_to_append_to_a_file_it_did_not_write(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    X, y = _data()
    model = _model()
    with pytest.raises(ValueError, match="not a CSVLogger file"):
        model.fit(X, y, epochs=1, verbose=0, callbacks=[fd.callbacks.CSVLogger(path,
                                                                               append=True)])
    assert model.steps_trained == 0 and path.read_text() == "a,b\n1,2\n"


# ---------------------------------------------------------------------------- TensorBoard ----
def _scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(log_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_scalars_read_back(tmp_path):
    pytest.importorskip("tensorboard")
    X, y = _data()
    model = _model()
    mon = fd.GradientMonitor(verbose=0)
    # the monitor listed after TensorBoard: its figures still land at their epoch's step
    h = model.fit(X, y, optimizer=fd.optim.Adam(lr=0.01), epochs=3, batch_size=40, verbose=0,
                  validation_data=(X[:80], y[:80]),
                  callbacks=[fd.callbacks.TensorBoard(tmp_path, every_n_steps=4), mon])
    s = _scalars(tmp_path)
    ends = [10, 20, 30]                             # 10 updates per epoch
    assert [st for st, _ in s["epoch/loss"]] == ends
    np.testing.assert_allclose([v for _, v in s["epoch/loss"]], h.history["loss"], rtol=1e-6)
    np.testing.assert_allclose([v for _, v in s["epoch/val_accuracy"]],
                               h.history["val_accuracy"], rtol=1e-6)
    assert [v for _, v in s["epoch/epoch"]] == [0, 1, 2]
    assert [st for st, _ in s["step/loss"]] == [4, 8, 12, 16, 20, 24, 28]
    assert all(v == pytest.approx(0.01) for _, v in s["step/lr"])
    assert all(v > 0 for _, v in s["step/samples_per_sec"] + s["epoch/samples_per_sec"])
    assert [st for st, _ in s["grad_norm/dense_1"]] == ends
    np.testing.assert_allclose([v for _, v in s["grad_norm/dense_1"]],
                               mon.history["grad_norm/dense_1"], rtol=1e-6)


def test_tensorboard_of_a_resumed_run_equals_the_unbroken_run(tmp_path):
    pytest.importorskip("tensorboard")
    broken, whole = tmp_path / "broken", tmp_path / "whole"
    _broken_and_resumed(tmp_path, lambda: [fd.callbacks.TensorBoard(broken, every_n_steps=3)])
    _unbroken(lambda: [fd.callbacks.TensorBoard(whole, every_n_steps=3)])
    got, want = _scalars(broken), _scalars(whole)
    assert set(got) == set(want)
    for tag in want:
        if "samples_per_sec" in tag:                # wall-clock figures: only the steps match
            assert [st for st, _ in got[tag]] == [st for st, _ in want[tag]], tag
        else:
            assert got[tag] == want[tag], tag


def test_logging_leaves_training_bit_identical(tmp_path):
    pytest.importorskip("tensorboard")
    X, y = _data()
    plain, logged = _model(), _model()
    plain.fit(X, y, epochs=2, batch_size=50, verbose=0)
    logged.fit(X, y, epochs=2, batch_size=50, verbose=0,
               callbacks=[fd.callbacks.CSVLogger(tmp_path / "l.csv"),
                          fd.callbacks.TensorBoard(tmp_path / "tb", every_n_steps=1)])
    for a, b in zip(plain.get_weights(), logged.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_only_rank_zero_writes(tmp_path):
    model = _model()
    model._dist = SimpleNamespace(rank=1)
    cbs = [fd.callbacks.CSVLogger(tmp_path / "l.csv"),
           fd.callbacks.TensorBoard(tmp_path / "tb", every_n_steps=1)]
    for cb in cbs:
        cb.set_model(model)
        cb.on_train_begin({})
        cb.on_epoch_begin(0, {})
        cb.on_batch_end(0, {"loss": 1.0, "size": 4})
        cb.on_epoch_end(0, {"loss": 1.0})
        cb.on_train_end({})
    assert os.listdir(tmp_path) == []


def test_tensorboard_without_the_package_says_how_to_install(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m.split(".")[0] == "tensorboard"] + ["tensorboard"]:
        monkeypatch.setitem(sys.modules, name, None)            # as if not installed
    X, y = _data()
    model = _model()
    with pytest.raises(ImportError, match=r"fastdl\[tensorboard\]"):
        model.fit(X, y, epochs=1, verbose=0,
                  callbacks=[fd.callbacks.TensorBoard(tmp_path / "tb")])
    assert model.steps_trained == 0


# ------------------------------------------------------------------------------ bad input ----
@pytest.mark.parametrize("value,exc", [(0, ValueError), (-3, ValueError), (1.5, TypeError),
                                       (True, TypeError), ("100", TypeError)])
def test_every_n_steps_must_be_a_positive_integer(tmp_path, value, exc):
    with pytest.raises(exc, match="every_n_steps"):
        fd.callbacks.TensorBoard(tmp_path, every_n_steps=value)


def test_bad_paths_are_refused_when_the_callback_is_made(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="log_dir=.* is a file"):
        fd.callbacks.TensorBoard(a_file)
    with pytest.raises(ValueError, match="log_dir=.*is a file, so the log directory"):
        fd.callbacks.TensorBoard(a_file / "runs")
    with pytest.raises(ValueError, match="path=.* is a directory"):
        fd.callbacks.CSVLogger(tmp_path)
    with pytest.raises(ValueError, match="path=.*is a file, so the CSV log"):
        fd.callbacks.CSVLogger(a_file / "log.csv")
    with pytest.raises(TypeError, match="log_dir=None"):
        fd.callbacks.TensorBoard(None)
    with pytest.raises(TypeError, match="append="):
        fd.callbacks.CSVLogger(tmp_path / "l.csv", append="yes")


def test_unwritable_paths_fail_before_any_training(tmp_path, monkeypatch):
    """A directory that turns out unwritable at fit time (permissions changed, a read-only
    mount: simulated, the tests may run as root) stops fit before the first update."""
    X, y = _data()
    real_open = open

    def no_write(path, mode="r", *a, **k):
        if str(tmp_path) in str(path) and any(c in mode for c in "wa"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, mode, *a, **k)
    monkeypatch.setattr("builtins.open", no_write)
    for cb, name in ((fd.callbacks.CSVLogger(tmp_path / "l.csv"), "path="),
                     (fd.callbacks.TensorBoard(tmp_path / "tb"), "log_dir=")):
        if isinstance(cb, fd.callbacks.TensorBoard):
            pytest.importorskip("tensorboard")
        model = _model()
        with pytest.raises(OSError, match=name):
            model.fit(X, y, epochs=1, verbose=0, callbacks=[cb])
        assert model.steps_trained == 0
