"""Long jobs (issue 19): preemption by a real signal, checkpoints inside epochs, signals during
a save, failed writes, and the arguments' errors.

Every "resumed run ends bit for bit as the unbroken one" test compares against an unbroken
run that takes the same path (the step path: every run here has a batch callback, since the
whole-epoch fused kernel rounds differently in the last bit; ``test_fused_path_*`` covers
that kernel separately). Signals are sent with ``os.kill`` to this process from a callback
at a chosen step, so the race is fixed, not timed.
"""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import threading
import warnings

import numpy as np
import pytest

import fastdl as fd
import fastdl.io as fio
from fastdl import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EPOCHS, BS = 4, 32                          # 300 rows: 10 batches per epoch, 40 steps


@pytest.fixture(autouse=True)
def signals_as_in_a_terminal():
    """Ctrl-C raises KeyboardInterrupt, SIGTERM and SIGUSR1 have their default action, as in
    a terminal: a test run started in the background (or by a tool) may inherit them
    ignored, and then no handler runs."""
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL,
                signal.SIGUSR1: signal.SIG_DFL}
    previous = {s: signal.signal(s, h) for s, h in defaults.items()}
    yield
    for s, h in previous.items():
        signal.signal(s, h)


def data(n=300):
    return fd.data.make_moons(n, noise=0.2, seed=0)


def make(seed=0, dropout=True, dtype="float32"):
    layers = [fd.Dense(16, activation="relu"), fd.BatchNorm(), fd.Activation("relu")]
    if dropout:
        layers.append(fd.Dropout(keep_prob=0.8))
    return fd.Sequential(layers + [fd.Dense(1, activation="sigmoid")], input_dim=2, seed=seed,
                         dtype=dtype)


class Steps(fd.Callback):
    """A batch callback (keeps every run on the step path) that records the steps it saw and
    can send ``sig`` to this process after update ``at``."""

    def __init__(self, at=None, sig=signal.SIGTERM):
        self.at, self.sig, self.ended = at, sig, []

    def on_batch_end(self, batch, logs=None):
        if self.model.steps_trained == self.at:
            os.kill(os.getpid(), self.sig)

    def on_train_end(self, logs=None):
        self.ended.append(dict(logs or {}))


def callbacks(path=None, at=None, **ck):
    """The callbacks of every run: EarlyStopping (counters and best weights in the
    checkpoint), a two-argument LearningRateScheduler, GradientMonitor, a checkpoint."""
    out = [Steps(at), fd.EarlyStopping(monitor="loss", patience=10),
           fd.LearningRateScheduler(lambda e, lr: lr * 0.9 if e else lr),
           fd.GradientMonitor(every=3, verbose=0)]
    return out + ([fd.ModelCheckpoint(path, **ck)] if path else [])


def fit(model, X, y, cbs, **kw):
    kw = {"optimizer": fd.optim.Adam(lr=0.01), "epochs": EPOCHS, "batch_size": BS,
          "verbose": 0, **kw}
    return model.fit(X, y, callbacks=cbs, **kw)


def same(a, b):
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert a.optimizer.iterations == b.optimizer.iterations
    np.testing.assert_array_equal(a.optimizer.state_dict()["state"],
                                  b.optimizer.state_dict()["state"])
    assert a.history.epoch == b.history.epoch
    assert json.dumps(a.history.history) == json.dumps(b.history.history)   # bits, NaN-safe


@pytest.fixture(scope="module")
def unbroken():
    X, y = data()
    model = make()
    fit(model, X, y, callbacks())
    return model


def preempted_run(X, y, path, at, **kw):
    model = make()
    cbs = callbacks(path, at=at, **kw.pop("ck", {}))
    with pytest.raises(fd.Preempted) as info:
        fit(model, X, y, cbs, **kw)
    return model, cbs, info.value


# ================================================================================ preemption
def test_sigterm_stops_after_the_batch_writes_a_checkpoint_and_resumes_bit_for_bit(
        tmp_path, unbroken):
    X, y = data()
    path = str(tmp_path / "ck.npz")
    before = signal.getsignal(signal.SIGTERM)
    model, cbs, e = preempted_run(X, y, path, at=15)
    assert signal.getsignal(signal.SIGTERM) is before           # the handler is put back
    # the step in progress finished, the next one did not start
    assert (e.signal, e.epoch, e.batch, e.step, e.checkpoint) == ("SIGTERM", 1, 5, 15, path)
    assert model.steps_trained == 15 and model.epochs_trained == 1
    assert model.history.stopped_at == {"signal": "SIGTERM", "epoch": 1, "batch": 5,
                                        "step": 15, "checkpoint": path}
    assert e.history is model.history and model.history.epoch == [0]
    assert cbs[0].ended == [{"preempted": True}]               # on_train_end ran
    assert "resume_from=" in str(e) and not isinstance(e, Exception)
    f = fio.read(path)
    assert (f["counter/epochs_trained"], f["position/batch"], f["counter/steps_trained"]) == \
        (1, 5, 15)
    # resumed from the file with new callback objects: the unbroken run, bit for bit
    resumed = make(seed=99)
    h = fit(resumed, X, y, callbacks(), optimizer=None, resume_from=path)
    same(resumed, unbroken)
    assert h.stopped_at is None
    # the preempted model itself continues in memory the same way
    fit(model, X, y, callbacks(), optimizer=None, resume_from=model.history)
    same(model, unbroken)


def test_preemption_streamed_from_npy_resumes_bit_for_bit(tmp_path, monkeypatch):
    from fastdl import config
    monkeypatch.setattr(config, "STREAM_BLOCK_BYTES", 4 * 2 * 7)     # 7 rows per block
    monkeypatch.setattr(config, "STREAM_BUFFER_BLOCKS", 3)           # batches straddle buffers
    X, y = data()
    px, py = str(tmp_path / "X.npy"), str(tmp_path / "y.npy")
    np.save(px, X.astype(np.float32))
    np.save(py, y)
    ref = make()
    fit(ref, px, py, callbacks())
    for at in (13, 20, 27):       # inside an epoch, after its last step, inside another
        path = str(tmp_path / f"ck{at}.npz")
        _, _, e = preempted_run(px, py, path, at=at)
        assert e.step == at
        resumed = make(seed=5)
        fit(resumed, px, py, callbacks(), optimizer=None, resume_from=path)
        same(resumed, ref)


def test_signal_during_validation_stops_at_the_epoch_end(tmp_path, unbroken):
    X, y = data()
    path = str(tmp_path / "ck.npz")

    class AtEpochEnd(fd.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                os.kill(os.getpid(), signal.SIGUSR1)
    model = make()
    with pytest.raises(fd.Preempted) as info:
        fit(model, X, y, callbacks(path) + [AtEpochEnd()],
            preemption_signals=("SIGTERM", "SIGUSR1"))
    e = info.value
    assert (e.signal, e.epoch, e.batch, e.step) == ("SIGUSR1", 2, 0, 20)
    assert "position/batch" not in fio.read(path)              # an epoch-end checkpoint
    resumed = make(seed=3)
    fit(resumed, X, y, callbacks(), optimizer=None, resume_from=path)
    same(resumed, unbroken)


def test_fused_path_stops_at_the_epoch_end_through_preempt_path(tmp_path):
    """A net small enough for the whole-epoch kernel has no per-batch hook: the signal is
    seen at the end of the epoch in progress; ``preempt_path`` is written (no checkpoint
    callback in the run)."""
    X, y = data()
    small = lambda: fd.Sequential([fd.Dense(8, activation="relu"),
                                   fd.Dense(1, activation="sigmoid")], input_dim=2, seed=0)
    ref = small()
    ref.fit(X, y, optimizer=fd.optim.Adam(lr=0.01), epochs=EPOCHS, batch_size=BS, verbose=0)

    class AtEpochBegin(fd.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                os.kill(os.getpid(), signal.SIGTERM)
    path = str(tmp_path / "preempt.npz")
    m = small()
    with pytest.raises(fd.Preempted) as info:
        m.fit(X, y, optimizer=fd.optim.Adam(lr=0.01), epochs=EPOCHS, batch_size=BS, verbose=0,
              callbacks=[AtEpochBegin()], preempt_path=path)
    assert (info.value.epoch, info.value.batch, info.value.checkpoint) == (3, 0, path)
    resumed = small()
    resumed.fit(X, y, epochs=EPOCHS, batch_size=BS, verbose=0, resume_from=path)
    for a, b in zip(ref.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_signal_at_the_end_of_the_last_epoch_lets_fit_return(tmp_path, unbroken):
    """The run is over when the flag is read (its last epoch end): fit returns normally."""
    X, y = data()

    class AtLastEpochEnd(fd.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == EPOCHS - 1:
                os.kill(os.getpid(), signal.SIGTERM)
    model = make()
    h = fit(model, X, y, callbacks() + [AtLastEpochEnd()])
    assert h.stopped_at is None and model.epochs_trained == EPOCHS
    same(model, unbroken)


def test_without_a_checkpoint_the_run_still_stops_cleanly(tmp_path):
    X, y = data()
    model = make()
    # save_best_only keeps only the best: it is no place for the resume point
    cbs = [Steps(at=12), fd.ModelCheckpoint(str(tmp_path / "best.npz"), monitor="loss",
                                            save_best_only=True)]
    with pytest.raises(fd.Preempted, match="no checkpoint was written") as info:
        fit(model, X, y, cbs)
    assert info.value.checkpoint is None and model.steps_trained == 12
    assert fio.read(str(tmp_path / "best.npz"))["counter/epochs_trained"] == 1


def test_early_stopping_keeps_the_weights_of_the_stop_point_when_preempted(tmp_path):
    """on_train_end of a preempted run does not put the best weights back (the run is not
    over; the resumed run does at its end), so the model is what the checkpoint holds."""
    X, y = data()
    path = str(tmp_path / "ck.npz")
    model, cbs, _ = preempted_run(X, y, path, at=33)
    assert cbs[1].best_weights is not None
    for a, b in zip(model.get_weights(), fd.load(path).get_weights()):
        np.testing.assert_array_equal(a, b)


def test_default_handles_sigterm_only_in_the_main_thread_and_leaves_own_handlers(tmp_path):
    X, y = data()
    own = lambda signum, frame: None
    previous = signal.signal(signal.SIGTERM, own)
    try:                                 # a handler the program installed is left alone ...
        seen = []

        class Look(fd.Callback):
            def on_train_begin(self, logs=None):
                seen.append(signal.getsignal(signal.SIGTERM))
        fit(make(), X, y, [Look()], epochs=1)
        assert seen == [own] and signal.getsignal(signal.SIGTERM) is own
        # ... unless asked for explicitly, and then put back afterwards
        with pytest.raises(fd.Preempted):
            fit(make(), X, y, [Steps(at=3)], preemption_signals=("SIGTERM",))
        assert signal.getsignal(signal.SIGTERM) is own
    finally:
        signal.signal(signal.SIGTERM, previous)
    out = {}

    def in_thread():
        try:                             # the default is off outside the main thread
            out["h"] = fit(make(), X, y, [], epochs=1)
            fit(make(), X, y, [], epochs=1, preemption_signals=("SIGTERM",))
        except ValueError as e:
            out["error"] = str(e)
    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert out["h"].epoch == [0]
    assert "needs fit to run in the main thread" in out["error"]
    assert "preemption_signals=()" in out["error"]


# ======================================================================= mid-epoch checkpoints
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_n_steps_checkpoints_each_resume_bit_for_bit(tmp_path, dtype):
    X, y = data()
    ref = make(dtype=dtype)
    fit(ref, X, y, callbacks(str(tmp_path / "ref-{step}.npz"), every_n_steps=7))
    written = sorted(int(p[4:-4]) for p in os.listdir(tmp_path) if p.startswith("ref-"))
    assert written == [7, 10, 14, 20, 21, 28, 30, 35, 40]      # steps, and epoch ends
    for step in (7, 14, 21, 35):
        path = str(tmp_path / f"ref-{step}.npz")
        f = fio.read(path)
        assert f["counter/steps_trained"] == step
        assert f["position/batch"] == step % 10 and f["counter/epochs_trained"] == step // 10
        np.testing.assert_array_equal(f["position/losses"].shape, (step % 10,))
        assert f["callback/EarlyStopping/0/state"]["monitor"] == "loss"
        resumed = make(seed=11, dtype=dtype)
        fit(resumed, X, y, callbacks(), optimizer=None, resume_from=path)
        same(resumed, ref)


def test_keep_rotates_formatted_and_numbered_files(tmp_path):
    X, y = data()
    fit(make(), X, y, [fd.ModelCheckpoint(str(tmp_path / "a-{step:03d}.npz"), every_n_steps=6,
                                          keep=3)])
    assert sorted(p for p in os.listdir(tmp_path)) == ["a-030.npz", "a-036.npz", "a-040.npz"]
    # numbered: the fixed path is the newest, .1 the one before, .2 the one before that
    path = str(tmp_path / "b.npz")
    fit(make(), X, y, [fd.ModelCheckpoint(path, every_n_steps=6, keep=3)])
    steps = [fio.read(p)["counter/steps_trained"]
             for p in (path, str(tmp_path / "b.1.npz"), str(tmp_path / "b.2.npz"))]
    assert steps == [40, 36, 30] and not os.path.exists(str(tmp_path / "b.3.npz"))
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    # a resumed run continues the rotation of the files its checkpoint lists
    src = str(tmp_path / "a-036.npz")
    fit(make(), X, y, [fd.ModelCheckpoint(str(tmp_path / "a-{step:03d}.npz"), every_n_steps=6,
                                          keep=3)], epochs=6, optimizer=None, resume_from=src)
    # (saves at 40, 42, 48, 50, 54, 60; a-036, listed by its own state, is rotated out too)
    assert sorted(p for p in os.listdir(tmp_path) if p.startswith("a-")) == \
        ["a-050.npz", "a-054.npz", "a-060.npz"]


def test_steps_only(tmp_path):
    X, y = data()
    fit(make(), X, y, [fd.ModelCheckpoint(str(tmp_path / "s-{step}.npz"), every_n_steps=7,
                                          every_n_epochs=None)])
    assert sorted(os.listdir(tmp_path)) == [f"s-{k}.npz" for k in (14, 21, 28, 35, 7)]


def test_every_seconds_saves_on_the_clock(tmp_path, monkeypatch):
    from fastdl.train import checkpoint
    clock = [0.0]

    def tick():                 # each call: 1 s later (one call per step and per save)
        clock[0] += 1.0
        return clock[0]
    monkeypatch.setattr(checkpoint.time, "monotonic", tick)
    X, y = data()
    path = str(tmp_path / "t-{step}.npz")
    fit(make(), X, y, [fd.ModelCheckpoint(path, every_seconds=4.5)], epochs=1)
    # train begin t=1; steps at t=2,3,4,5 -> 5 - 1 >= 4.5? no; t=6: step 5 saves (t=7);
    # then steps 6..9 at t=8..11, step 10 at t=12 >= 7 + 4.5: saves; and the epoch end
    assert sorted(os.listdir(tmp_path)) == ["t-10.npz", "t-5.npz"]


def test_a_failed_write_keeps_the_previous_checkpoint_and_training_goes_on(tmp_path,
                                                                             monkeypatch):
    X, y = data()
    path = str(tmp_path / "ck.npz")
    real, calls = fio._write_npz, [0]

    def disk_full(f, arrays):
        calls[0] += 1
        if calls[0] == 3:               # the third save: half written, then ENOSPC
            f.write(b"PK\x03\x04 partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(f, arrays)
    monkeypatch.setattr(fio, "_write_npz", disk_full)
    model = make()
    with pytest.warns(RuntimeWarning, match=r"could not write .*ck\.npz.* \(epoch 1, batch 9\).*"
                      r"No space left on device.*previous checkpoint .*ck\.npz.* is intact.*"
                      r"training goes on"):
        h = fit(model, X, y, [fd.ModelCheckpoint(path, every_n_steps=3)], epochs=1)
    assert h.epoch == [0] and model.steps_trained == 10        # training went on
    assert fio.read(path)["counter/steps_trained"] == 10         # the epoch end was saved
    assert not [p for p in os.listdir(tmp_path) if p != "ck.npz"]   # no temp file left
    # on_save_error="raise": the error stops fit; the file holds the save before it
    calls[0] = 0
    os.remove(path)
    with pytest.raises(OSError, match="No space left on device") as info:
        fit(make(), X, y, [fd.ModelCheckpoint(path, every_n_steps=3, on_save_error="raise")])
    assert info.value.errno == errno.ENOSPC
    assert fio.read(path)["counter/steps_trained"] == 6


def test_resuming_inside_an_epoch_with_other_batches_is_refused(tmp_path):
    X, y = data()
    fit(make(), X, y, [fd.ModelCheckpoint(str(tmp_path / "m-{step}.npz"), every_n_steps=5)],
        epochs=1)
    mid = str(tmp_path / "m-5.npz")
    assert fio.read(mid)["position/batch"] == 5
    for kw, what in ((dict(batch_size=64), "batch_size=32 there and 64 here"),
                     (dict(shuffle=False), "shuffle=True there and False here")):
        model = make()
        with pytest.raises(ValueError, match=f"stopped inside epoch 1, after batch 5.*{what}"):
            fit(model, X, y, [], resume_from=mid, **kw)
        assert model.steps_trained == 5                 # loaded, but no step taken
    with pytest.raises(ValueError, match="rows=300 there and 200 here"):
        fit(make(), X[:200], y[:200], [], resume_from=mid)


# ================================================================ a signal during a save
class InterruptingFile:
    """A file whose third write sends ``sig`` to this process: the signal lands while
    zipfile holds an open member (the race of the flaky Ctrl-C test, made certain)."""

    def __init__(self, f, sig):
        self.f, self.sig, self.n = f, sig, 0

    def write(self, b):
        self.n += 1
        if self.n == 3:
            os.kill(os.getpid(), self.sig)
        return self.f.write(b)

    def __getattr__(self, name):
        return getattr(self.f, name)


def interrupt_save(monkeypatch, sig, which):
    real, calls = fio._write_npz, [0]

    def write(f, arrays):
        calls[0] += 1
        return real(InterruptingFile(f, sig) if calls[0] == which else f, arrays)
    monkeypatch.setattr(fio, "_write_npz", write)


def test_ctrl_c_during_a_save_is_delivered_after_the_file_is_complete(tmp_path, monkeypatch):
    X, y = data()
    path = str(tmp_path / "ck.npz")
    interrupt_save(monkeypatch, signal.SIGINT, which=2)
    model = make()
    with pytest.raises(KeyboardInterrupt):
        fit(model, X, y, [fd.ModelCheckpoint(path, monitor="loss")])
    assert fd.load(path).epochs_trained == 2                   # the interrupted save completed
    assert model.epochs_trained == 2 and model.history.epoch == [0, 1]
    assert os.listdir(tmp_path) == ["ck.npz"]


def test_sigterm_during_a_save_preempts_after_it(tmp_path, monkeypatch, unbroken):
    X, y = data()
    path = str(tmp_path / "ck.npz")
    interrupt_save(monkeypatch, signal.SIGTERM, which=3)    # saves at 7, 10, 14: step 14's
    with pytest.raises(fd.Preempted) as info:
        fit(make(), X, y, callbacks(path, every_n_steps=7))
    assert info.value.step == 14 and info.value.checkpoint == path
    assert fio.read(path)["counter/steps_trained"] == 14
    monkeypatch.undo()
    resumed = make(seed=1)
    fit(resumed, X, y, callbacks(), optimizer=None, resume_from=path)
    same(resumed, unbroken)


def test_a_signal_during_a_failed_save_comes_after_the_temp_file_is_removed(tmp_path,
                                                                              monkeypatch):
    path = str(tmp_path / "m.npz")
    model = make()
    model.save(path)

    def fail(f, arrays):
        os.kill(os.getpid(), signal.SIGINT)
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(fio, "_write_npz", fail)
    with pytest.raises(KeyboardInterrupt) as info:
        model.save(path)
    assert isinstance(info.value.__context__, OSError)          # the write failed first
    assert os.listdir(tmp_path) == ["m.npz"] and fd.load(path).steps_trained == 0


# ================================================================================ bad input
@pytest.mark.parametrize("value, error, match", [
    (("SIGFOO",), ValueError, "preemption_signals contains 'SIGFOO', which is not a signal"),
    (("TERM",), ValueError, "preemption_signals contains 'TERM'"),
    (("SIGKILL",), ValueError, "SIGKILL, which no process can handle"),
    (("SIGSTOP",), ValueError, "SIGSTOP, which no process can handle"),
    (("SIGSEGV",), ValueError, "SIGSEGV, a signal that reports a fault"),
    ("SIGTERM", TypeError, "preemption_signals='SIGTERM' is invalid; expected a tuple"),
    ((15,), TypeError, "preemption_signals contains 15; expected signal names"),
])
def test_bad_preemption_signals_are_refused_before_training(value, error, match):
    X, y = data()
    model, cb = make(), Steps()
    before = model.get_weights()
    with pytest.raises(error, match=match):
        fit(model, X, y, [cb], preemption_signals=value)
    assert model.steps_trained == 0 and cb.ended == []
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kw, error, match", [
    (dict(every_n_steps=0), ValueError, "every_n_steps=0"),
    (dict(every_n_steps=2.5), TypeError, "every_n_steps=2.5"),
    (dict(keep=0), ValueError, "keep=0"),
    (dict(every_seconds=0), ValueError, "every_seconds=0 is invalid"),
    (dict(every_seconds=float("nan")), ValueError, "every_seconds=nan is invalid"),
    (dict(on_save_error="ignore"), ValueError, "on_save_error='ignore' is invalid"),
    (dict(every_n_steps=5, save_best_only=True), ValueError, "cannot be combined"),
    (dict(every_n_epochs=None), ValueError, "every_n_epochs=None saves at no epoch end"),
    (dict(every_n_epochs=0), ValueError, "every_n_epochs=0"),
])
def test_bad_checkpoint_arguments(tmp_path, kw, error, match):
    with pytest.raises(error, match=match):
        fd.ModelCheckpoint(str(tmp_path / "ck.npz"), **kw)


def test_a_path_that_needs_epoch_logs_cannot_save_inside_epochs(tmp_path):
    with pytest.raises(ValueError, match=r"cannot be formatted inside an epoch.*\{epoch\}, "
                                         r"\{step\} and \{batch\}"):
        fd.ModelCheckpoint(str(tmp_path / "ck-{val_loss:.3f}.npz"), every_n_steps=10)
    with pytest.raises(TypeError):      # the options after keep are keyword-only
        fd.ModelCheckpoint(str(tmp_path / "ck.npz"), None, None, None, "loss")


def unwritable_dir(tmp_path):
    """A directory in which this process cannot create a file (root ignores permissions:
    then sysfs, where nobody can)."""
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        open(d / "probe", "w").close()
    except OSError:
        return str(d)
    if os.path.isdir("/sys"):
        try:
            open("/sys/fastdl-probe", "w").close()
        except OSError:
            return "/sys"
    pytest.skip("running as root without a read-only directory to write to")


def test_an_unwritable_checkpoint_path_is_refused_before_training(tmp_path):
    X, y = data()
    (tmp_path / "file").write_text("x")
    (tmp_path / "adir").mkdir()
    cases = [(str(tmp_path / "missing" / "ck.npz"), FileNotFoundError, "does not exist"),
             (str(tmp_path / "file" / "ck.npz"), NotADirectoryError, "is not a directory"),
             (str(tmp_path / "adir"), IsADirectoryError, "is a directory"),
             (os.path.join(unwritable_dir(tmp_path), "ck.npz"), PermissionError,
              "cannot be written: creating a file in")]
    for path, error, match in cases:
        model, cb = make(), Steps()
        with pytest.raises(error, match=re.escape(f"ModelCheckpoint path={path!r}") + ".*"
                           + match):
            fit(model, X, y, [cb, fd.ModelCheckpoint(path)])
        assert model.steps_trained == 0
        with pytest.raises(error, match=re.escape(f"preempt_path={path!r}") + ".*" + match):
            fit(model, X, y, [cb], preempt_path=path)
        assert model.steps_trained == 0
    with pytest.raises(TypeError, match="preempt_path=3 is invalid"):
        fit(make(), X, y, [], preempt_path=3)


# =============================================================================== the CLI
def cli_env():
    return {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}


TRAIN = ["train", "--dataset", "moons", "--n", "300", "--layers", "8", "--verbose", "0",
         "--epochs", "100000"]


def test_cli_ctrl_c_during_a_save_prints_how_to_resume(tmp_path):
    """Ctrl-C lands inside the second checkpoint's zip writing, every time (a write that
    sends SIGINT to the process): the CLI exits 130 with the resume command and the
    checkpoint holds epoch 2, complete (the signal waited for the file)."""
    ck = str(tmp_path / "ck.npz")
    code = ("import os, signal, sys\n"
            "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
            "sys.path.insert(0, sys.argv[1])\n"
            "import fastdl.io as fio\n"
            "from test_long_jobs import InterruptingFile\n"
            "real, calls = fio._write_npz, [0]\n"
            "def write(f, arrays):\n"
            "    calls[0] += 1\n"
            "    return real(InterruptingFile(f, signal.SIGINT) if calls[0] == 2 else f, arrays)\n"
            "fio._write_npz = write\n"
            "from fastdl.cli import main\n"
            "sys.exit(main(sys.argv[2:]))\n")
    p = subprocess.run([sys.executable, "-c", code, os.path.join(ROOT, "tests"), *TRAIN,
                        "--checkpoint", ck], capture_output=True, text=True, env=cli_env(),
                       cwd=str(tmp_path), timeout=120)
    assert p.returncode == cli.EXIT_INTERRUPTED, p.stdout + p.stderr
    assert fd.load(ck).epochs_trained == 2
    assert f"{ck} holds the model after epoch 2." in p.stderr
    assert f"fastdl {' '.join(TRAIN)} --checkpoint {ck} --resume\n" in p.stderr
    assert "--resume --lr" in p.stderr


def test_cli_sigterm_exits_75_with_the_resume_command_which_resumes(tmp_path):
    ck = str(tmp_path / "ck.npz")
    code = ("import os, signal, sys\n"
            "import fastdl as fd\n"
            "class Term(fd.Callback):\n"
            "    def on_batch_end(self, batch, logs=None):\n"
            "        if self.model.steps_trained == 23:\n"
            "            os.kill(os.getpid(), signal.SIGTERM)\n"
            "import fastdl.train.loop as loop\n"
            "fit = loop.fit\n"
            "loop.fit = lambda *a, **k: fit(*a, **{**k, 'callbacks': k['callbacks'] + [Term()]})\n"
            "from fastdl.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    # 240 training rows, 8 batches of 32 per epoch, 40 steps
    args = ["train", "--dataset", "moons", "--n", "300", "--layers", "8", "--verbose", "0",
            "--batch-size", "32", "--epochs", "5", "--checkpoint", ck, "--checkpoint-steps",
            "10"]
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                       env=cli_env(), cwd=str(tmp_path), timeout=120)
    assert p.returncode == cli.EXIT_PREEMPTED == 75, p.stdout + p.stderr
    assert "preempted: SIGTERM arrived; training stopped after step 23" in p.stderr
    assert f"{ck} holds the model after epoch 2, batch 7 of epoch 3 (step 23)." in p.stderr
    resume = f"fastdl {' '.join(args)} --resume"
    assert resume in p.stderr
    # the printed command continues the run; it ends as an unbroken run does
    rc = cli.main(resume.split()[1:])
    assert rc == 0
    ref = str(tmp_path / "ref.npz")
    assert cli.main(args[:-4] + ["-o", ref, "--checkpoint-steps", "10", "--checkpoint",
                                 str(tmp_path / "ref-ck.npz")]) == 0
    got, want = fd.load(ck), fd.load(str(tmp_path / "ref-ck.npz"))
    assert got.epochs_trained == want.epochs_trained == 5
    for a, b in zip(got.get_weights(), want.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_cli_bad_preemption_signals(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--preemption-signals", "SIGFOO"])
    assert info.value.code == 2
    assert "--preemption-signals contains 'SIGFOO'" in capsys.readouterr().err
    assert cli._signals_arg("none") == ()
    assert cli._signals_arg("term,sigusr1") == ("SIGTERM", "SIGUSR1")


def test_warnings_module_is_quiet_on_a_normal_run(tmp_path):
    X, y = data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(make(), X, y, [fd.ModelCheckpoint(str(tmp_path / "ck.npz"), every_n_steps=4)],
            epochs=1)
