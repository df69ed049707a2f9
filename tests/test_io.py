"""Saving, loading, checkpoints and exact resume (fastdl/io.py, ModelCheckpoint)."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

import fastdl as fd
import fastdl.io as fio

OPTIMIZERS = [lambda: fd.optim.SGD(lr=0.1), lambda: fd.optim.Momentum(lr=0.05, nesterov=True),
              lambda: fd.optim.RMSprop(lr=0.01), lambda: fd.optim.Adam(lr=0.01),
              lambda: fd.optim.AdamW(lr=0.01, weight_decay=0.1)]


def every_layer_net(seed=0, dtype="float32"):
    """Dense (with and without bias), Activation, BatchNorm, Dropout, softmax output."""
    return fd.Sequential([fd.Dense(16, init="he"), fd.BatchNorm(), fd.Activation("relu"),
                          fd.Dropout(keep_prob=0.8),
                          fd.Dense(8, activation="tanh", use_bias=False),
                          fd.Dense(3, activation="softmax")],
                         input_dim=2, seed=seed, dtype=dtype)


def spirals():
    return fd.data.make_spirals(300, seed=0)


def same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


# =========================================================================== round trips
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_of_every_layer_type(tmp_path, dtype):
    X, y = spirals()
    model = every_layer_net(dtype=dtype)
    model.standardizer = fd.Standardizer()
    model.fit(X, y, optimizer=fd.optim.Adam(lr=0.01), epochs=3, batch_size=32, verbose=0)
    path = str(tmp_path / "m.npz")
    model.save(path)
    back = fd.load(path)
    assert back.get_config() == model.get_config()
    same_weights(model, back)                 # BatchNorm running statistics included
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))
    assert back.epochs_trained == 3 and back.steps_trained == model.steps_trained
    np.testing.assert_array_equal(back.standardizer.mean, model.standardizer.mean)
    sa, sb = model.optimizer.state_dict(), back.optimizer.state_dict()
    assert sorted(sa) == sorted(sb)
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k])


@pytest.mark.parametrize("make_opt", OPTIMIZERS)
def test_round_trip_of_every_optimizer(tmp_path, make_opt):
    X, y = fd.data.make_moons(200, seed=0)
    model = fd.Sequential([fd.Dense(6, activation="relu"), fd.Dense(1, activation="sigmoid")],
                          input_dim=2, seed=1)
    opt = make_opt()
    model.fit(X, y, optimizer=opt, epochs=2, verbose=0)
    path = str(tmp_path / "m.npz")
    model.save(path)
    back = fd.load(path)
    assert type(back.optimizer) is type(opt) and repr(back.optimizer) == repr(opt)
    assert back.optimizer.iterations == opt.iterations
    sa, sb = opt.state_dict(), back.optimizer.state_dict()
    assert sorted(sa) == sorted(sb)
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k])
    # both continue identically
    model.fit(X, y, optimizer=opt, epochs=1, verbose=0)
    back.fit(X, y, optimizer=back.optimizer, epochs=1, verbose=0)
    same_weights(model, back)


def test_a_loaded_model_saved_again_loads_and_resumes(tmp_path):
    """fd.load does not bring the History back, so its file has the counters alone."""
    X, y = spirals()
    model, path = _saved(tmp_path)
    again = str(tmp_path / "again.npz")
    fd.load(path).save(again)
    with np.load(again) as z:
        assert "counter/_fit_start_epoch" in z.files and "history" not in z.files
    same_weights(model, fd.load(again))
    a, b = every_layer_net(), every_layer_net()
    a.fit(X, y, epochs=3, verbose=0, resume_from=path)
    b.fit(X, y, epochs=3, verbose=0, resume_from=again)
    same_weights(a, b)


def test_regression_model_and_untrained_model_round_trip(tmp_path):
    m = fd.Sequential([fd.Dense(4, activation="leaky_relu", alpha=0.2), fd.Dense(2)],
                      input_dim=3, loss="mse", seed=5, dtype="float64")
    path = str(tmp_path / "r.npz")
    m.save(path)                                  # no optimizer, never trained
    back = fd.load(path)
    same_weights(m, back)
    assert back.optimizer is None and back.standardizer is None and back.loss.name == "mse"


def test_file_is_plain_arrays_readable_without_pickle(tmp_path):
    X, y = spirals()
    model = every_layer_net()
    model.fit(X, y, optimizer=fd.optim.Adam(), epochs=1, verbose=0)
    path = str(tmp_path / "m.npz")
    model.save(path)
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.files)
        arch = json.loads(str(z["architecture"]))
        assert str(z["fastdl_format"]) == "fastdl.model"
        assert z["param/1/running_var"].shape == (16,)
    assert arch["layers"][1]["type"] == "BatchNorm"
    assert {"param/0/W", "param/4/W", "optimizer/state", "optimizer/iterations",
            "counter/epochs_trained", "counter/steps_trained", "history"} <= keys
    assert "param/4/b" not in keys                # use_bias=False


def test_save_writes_exactly_the_given_path(tmp_path):
    model = every_layer_net()
    path = str(tmp_path / "model.ckpt")           # no .npz appended
    model.save(path)
    assert os.listdir(tmp_path) == ["model.ckpt"]
    same_weights(model, fd.load(path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.save(str(tmp_path / "missing" / "m.npz"))


# =========================================================================== atomic writes
def test_a_write_killed_midway_leaves_the_previous_file(tmp_path, monkeypatch):
    model = every_layer_net()
    path = str(tmp_path / "ckpt.npz")
    model.save(path)
    before = open(path, "rb").read()
    other = every_layer_net(seed=9)

    def half_then_die(f, arrays):
        f.write(b"PK\x03\x04 partial zip bytes")  # some bytes reach the temp file ...
        raise KeyboardInterrupt                    # ... then the process is interrupted
    monkeypatch.setattr(fio, "_write_npz", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        other.save(path)
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["ckpt.npz"]    # the temp file was removed
    same_weights(model, fd.load(path))

    def disk_full(f, arrays):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(fio, "_write_npz", disk_full)
    with pytest.raises(OSError, match="No space"):
        other.save(path)
    assert open(path, "rb").read() == before


def test_a_process_killed_while_writing_never_corrupts_the_target(tmp_path):
    """SIGKILL a child that rewrites the same checkpoint in a loop: whatever instant it dies,
    the file at the target name is a complete, loadable model."""
    path = str(tmp_path / "ckpt.npz")
    script = textwrap.dedent(f"""
        import fastdl as fd
        m = fd.Sequential([fd.Dense(512, activation="relu"), fd.Dense(1, activation="sigmoid")],
                          input_dim=512, seed=0)
        m.save({path!r})
        print("ready", flush=True)
        while True:
            m.save({path!r})
    """)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fd.__file__)))
    for delay in (0.05, 0.23):
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env)
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        child.wait()
        back = fd.load(path)
        assert back.count_params() == 512 * 512 + 512 + 513


# =========================================================================== load errors
def _saved(tmp_path, name="m.npz"):
    model = every_layer_net()
    model.fit(*spirals(), optimizer=fd.optim.Adam(), epochs=1, verbose=0)
    path = str(tmp_path / name)
    model.save(path)
    return model, path


def _rewrite(path, out, edit):
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    edit(arrays)
    np.savez(out, **arrays)
    return out


def test_missing_directory_and_not_a_zip(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fd.load(str(tmp_path / "nope.npz"))
    with pytest.raises(ValueError, match="is a directory"):
        fd.load(str(tmp_path))
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        fd.load(str(tmp_path / "text.npz"))
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(ValueError, match="single .npy array"):
        fd.load(str(tmp_path / "a.npy"))
    with pytest.raises(TypeError, match="file path"):
        fd.load(3)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_truncated_file(tmp_path, keep):
    _, path = _saved(tmp_path)
    raw = open(path, "rb").read()
    cut = str(tmp_path / "cut.npz")
    open(cut, "wb").write(raw[:int(len(raw) * keep)])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        fd.load(cut)


def test_corrupted_bytes_are_caught_by_the_zip_checksums(tmp_path):
    _, path = _saved(tmp_path)
    raw = bytearray(open(path, "rb").read())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("param/0/W.npy")
    pos = info.header_offset + 30 + len(info.filename) + 200   # inside W's data
    raw[pos] ^= 0xFF
    bad = str(tmp_path / "bad.npz")
    open(bad, "wb").write(bytes(raw))
    with pytest.raises(ValueError, match="truncated or corrupt"):
        fd.load(bad)


def test_arrays_that_do_not_match_the_architecture(tmp_path):
    """Each refusal is a ModelFileError naming the file, the member and what was expected."""
    model, path = _saved(tmp_path)
    n = model.count_params()
    arch = lambda **kw: np.array(json.dumps({"input_dim": 2, "loss": "mse", "dtype": "float32",
                                             "seed": 0, "layers": [{"type": "Dense", "units": 1}],
                                             **kw}))
    cases = [
        (lambda a: a.__setitem__("param/0/W", np.zeros((15, 2), np.float32)), "param/0/W",
         r"found a float32 array of shape \(15, 2\); expected a float32 array of shape "
         r"\(16, 2\) \(the saved architecture's\)"),
        (lambda a: a.pop("param/5/b"), "param/5/b", "is missing; expected a float32 array"),
        (lambda a: a.__setitem__("param/4/b", np.zeros(8, np.float32)), "param/4/b",
         r"is not a member fastdl writes \(unknown: \['param/4/b'\]\)"),
        (lambda a: a.__setitem__("param/5/W", a["param/5/W"].astype(np.float64)), "param/5/W",
         "found a float64 array of shape .*; expected a float32 array"),
        (lambda a: a.__setitem__("param/5/b", np.full(3, np.nan, np.float32)), "param/5/b",
         "found 3 NaN or infinite value"),
        (lambda a: a.__setitem__("param/1/running_var", -a["param/1/running_var"]),
         "param/1/running_var", r"with entries >= 0 \(variances\)"),
        (lambda a: a.__setitem__("architecture", np.array("{not json")), "architecture",
         "found text that is not valid JSON"),
        (lambda a: a.pop("architecture"), "architecture", "is missing; expected JSON text"),
        (lambda a: a.__setitem__("architecture", arch(layers=[{"type": "Conv2D"}])),
         "architecture", r"layers\[0\] to be a layer's get_config\(\), with a 'type' among"),
        (lambda a: a.__setitem__("architecture", arch(input_dim="2")), "architecture",
         "found 'input_dim': '2'; expected 'input_dim' to be an integer >= 1"),
        (lambda a: a.__setitem__("architecture", arch(dropout=0.5)), "architecture",
         r"found the unknown keys \['dropout'\]"),
        (lambda a: a.__setitem__("architecture", np.array(json.dumps(
            {**json.loads(str(a["architecture"])), "loss": "binary_crossentropy"}))),
         "architecture", "describes a model that cannot be built .*needs a sigmoid output"),
        (lambda a: a.pop("fastdl_format"), None, "without a 'fastdl_format' member"),
        (lambda a: a.__setitem__("fastdl_format", np.array("keras.model")), "fastdl_format",
         r"found the text 'keras.model'; expected a text scalar \(0-d unicode array\), one of "
         r"\('fastdl.model',\)"),
        (lambda a: a.__setitem__("format_version", np.array(99)), "format_version",
         "format_version 99; this fastdl reads 1 to 1"),
        (lambda a: a.__setitem__("format_version", np.array([1])), "format_version",
         r"found a int64 array of shape \(1,\); expected a scalar"),
        (lambda a: a.__setitem__("optimizer/state", np.zeros((2, 5), np.float32)),
         "optimizer/state", r"found a float32 array of shape \(2, 5\); expected a float32 "
         rf"array of shape \(2, {n}\) \(rows \('m', 'v'\) over the architecture's {n} "),
        (lambda a: a.__setitem__("optimizer/optimizer", np.array("Lion")), "optimizer/optimizer",
         "found the text 'Lion'; expected a text scalar .* one of .*'Adam'"),
        (lambda a: a.__setitem__("optimizer/lr", np.array(-1.0)), "optimizer/lr",
         r"Adam's hyperparameter lr \(lr=-1.0 is invalid; expected a finite number > 0\)"),
        (lambda a: a.pop("optimizer/optimizer"), "optimizer/optimizer", "is missing"),
        (lambda a: a.update({"standardizer_class": np.array("Standardizer"),
                             "standardizer/mean": np.zeros(2), "standardizer/std": np.zeros(2)}),
         "standardizer/std", "with entries > 0"),
        (lambda a: a.update({"standardizer_class": np.array("Standardizer"),
                             "standardizer/std": np.ones(2)}), "standardizer/mean", "is missing"),
        (lambda a: a.update({"standardizer/std": np.ones(2), "standardizer/mean": np.ones(2)}),
         "standardizer_class", "is missing"),
        (lambda a: a.__setitem__("counter/_fit_start_epoch", np.array(5)),
         "counter/_fit_start_epoch", "expected an integer scalar .* >= 0 and <= 1"),
        (lambda a: a.__setitem__("counter/steps_trained", np.array(2.0)),
         "counter/steps_trained", "found the float64 scalar 2.0; expected an integer scalar"),
        (lambda a: a.__setitem__("history", np.array('{"epoch": [0], "history": [1]}')),
         "history", r"expected JSON text: \{'epoch'"),
    ]
    for i, (edit, member, match) in enumerate(cases):
        bad = _rewrite(path, str(tmp_path / f"bad{i}.npz"), edit)
        with pytest.raises(fd.ModelFileError, match=match) as e:
            fd.load(bad)
        assert e.value.path == bad and e.value.member == member, (i, str(e.value))
        assert str(e.value).startswith(f"model file {bad!r}")


def test_fortran_order_members_load_the_same_model(tmp_path):
    """.npy members in Fortran order (np.save writes fortran_order=True for them) are valid."""
    model, path = _saved(tmp_path)
    out = _rewrite(path, str(tmp_path / "f.npz"),
                   lambda a: a.update({k: np.asfortranarray(v) for k, v in a.items()
                                       if v.ndim == 2}))
    with zipfile.ZipFile(out) as z:
        assert b"'fortran_order': True" in z.read("param/0/W.npy")[:128]
    same_weights(model, fd.load(out))
    W = fio.read(out)["param/0/W"]
    np.testing.assert_array_equal(W, model.get_weights()[0])
    assert W.flags.c_contiguous and W.flags.writeable


def test_damaged_containers_name_the_member(tmp_path):
    """Members that are not .npy arrays, pickles and object arrays, forged sizes."""
    _, path = _saved(tmp_path)
    with zipfile.ZipFile(path) as z:
        members = {i.filename: z.read(i) for i in z.infolist()}

    def write(name, edit):
        m = dict(members)
        edit(m)
        out = str(tmp_path / name)
        with zipfile.ZipFile(out, "w") as z:
            for k, v in m.items():
                z.writestr(k, v)
        return out
    import io
    import pickle
    obj = io.BytesIO()
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    huge = io.BytesIO()
    np.lib.format.write_array_header_1_0(huge, {"descr": "<f4", "fortran_order": False,
                                                "shape": (10**12, 16)})
    cases = [
        (lambda m: m.__setitem__("param/0/W.npy", pickle.dumps({"W": 1})), "param/0/W",
         "is not a .npy array"),
        (lambda m: m.__setitem__("param/0/W.npy", obj.getvalue()), "param/0/W",
         r"is an object array \(dtype object: pickled Python objects\); expected a .npy array "
         "of plain numbers or text"),
        (lambda m: m.__setitem__("param/0/W.npy", huge.getvalue() + b"\0" * 128), "param/0/W",
         "declares 64000000000000 bytes of data .* but holds 128"),
        (lambda m: m.__setitem__("notes.txt", b"hello"), "notes.txt", "is not a .npy file"),
    ]
    for i, (edit, member, match) in enumerate(cases):
        with pytest.raises(fd.ModelFileError, match=match) as e:
            fd.load(write(f"c{i}.npz", edit))
        assert e.value.member == member
    # deflated members load; one declaring more than deflate can expand to is refused unread
    deflated = str(tmp_path / "deflated.npz")
    with zipfile.ZipFile(deflated, "w", zipfile.ZIP_DEFLATED) as z:
        for k, v in members.items():
            z.writestr(k, v)
    same_weights(fd.load(path), fd.load(deflated))
    raw = bytearray(open(deflated, "rb").read())
    with zipfile.ZipFile(deflated) as z:
        info = z.getinfo("param/0/W.npy")
        cd_start = z.start_dir
    pos = raw.index(b"PK\x01\x02", cd_start)        # the central directory's first entry
    while raw[pos + 46:pos + 46 + len(info.filename)] != info.filename.encode():
        pos = raw.index(b"PK\x01\x02", pos + 4)
    raw[pos + 24:pos + 28] = (info.compress_size * 2000).to_bytes(4, "little")  # APPNOTE 4.3.12
    bomb = str(tmp_path / "bomb.npz")
    open(bomb, "wb").write(bytes(raw))
    with pytest.raises(fd.ModelFileError, match="is deflated and declares .* at most 1032 "
                       "times the compressed size") as e:
        fd.load(bomb)
    assert e.value.member == "param/0/W"


# =========================================================================== resume
class Kill(fd.Callback):
    """Simulates the process dying right after the checkpoint of epoch ``after``."""

    def __init__(self, after):
        self.after = after

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.after:
            raise KeyboardInterrupt


def _resume_case(tmp_path, make_model, make_opt, X, y, epochs=7, kill_after=3, **fit):
    ref = make_model()
    ref.fit(X, y, optimizer=make_opt(), epochs=epochs, verbose=0, **fit)
    path = str(tmp_path / "ckpt.npz")
    run = make_model()
    with pytest.raises(KeyboardInterrupt):
        run.fit(X, y, optimizer=make_opt(), epochs=epochs, verbose=0,
                callbacks=[fd.ModelCheckpoint(path, monitor="loss"), Kill(kill_after)], **fit)
    fresh = make_model()
    hist = fresh.fit(X, y, optimizer=make_opt(), epochs=epochs, verbose=0, resume_from=path,
                     **fit)
    same_weights(ref, fresh)
    assert fresh.epochs_trained == epochs and hist.epoch == list(range(epochs))
    return ref, fresh


def test_resume_equals_an_uninterrupted_run_fused_path(tmp_path):
    X, y = spirals()
    make = lambda: fd.Sequential([fd.Dense(16, activation="relu"), fd.Dense(16, activation="relu"),
                                  fd.Dense(3, activation="softmax")], input_dim=2, seed=3)
    _resume_case(tmp_path, make, lambda: fd.optim.Adam(lr=0.01), X, y, batch_size=32,
                 lr_schedule=fd.optim.InverseTimeDecay(0.01, decay_rate=0.5))


def test_resume_equals_an_uninterrupted_run_dropout_batchnorm_standardizer(tmp_path):
    X, y = spirals()
    X = X * 5 + 3

    def make():
        m = every_layer_net(seed=7)
        m.standardizer = fd.Standardizer()
        return m
    ref, fresh = _resume_case(tmp_path, make, lambda: fd.optim.Momentum(lr=0.05), X, y,
                              batch_size=16, l2=0.01)
    assert fresh.steps_trained == ref.steps_trained


def test_resume_out_of_core(tmp_path, monkeypatch):
    from fastdl import config
    monkeypatch.setattr(config, "STREAM_BLOCK_BYTES", 2 * 8 * 40)
    monkeypatch.setattr(config, "STREAM_BUFFER_BLOCKS", 2)
    X, y = spirals()
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    make = lambda: fd.Sequential([fd.Dense(32, activation="relu"), fd.Dense(3, activation="softmax")],
                                 input_dim=2, seed=3, dtype="float64")
    _resume_case(tmp_path, make, lambda: fd.optim.RMSprop(lr=0.01), str(tmp_path / "X.npy"),
                 str(tmp_path / "y.npy"), batch_size=20)


def test_resume_rebuilds_the_optimizer_and_adopts_the_saved_seed(tmp_path):
    X, y = spirals()
    make = lambda seed: fd.Sequential([fd.Dense(8, activation="tanh"),
                                       fd.Dense(3, activation="softmax")], input_dim=2, seed=seed)
    ref = make(11)
    ref.fit(X, y, optimizer=fd.optim.AdamW(lr=0.02), epochs=5, verbose=0)
    path = str(tmp_path / "c.npz")
    run = make(11)
    with pytest.raises(KeyboardInterrupt):
        run.fit(X, y, optimizer=fd.optim.AdamW(lr=0.02), epochs=5, verbose=0,
                callbacks=[fd.ModelCheckpoint(path, monitor="loss"), Kill(2)])
    fresh = make(None)                                 # any seed: the checkpoint's wins
    fresh.fit(X, y, optimizer=None, epochs=5, verbose=0, resume_from=path)
    assert fresh.seed == 11 and type(fresh.optimizer) is fd.optim.AdamW
    same_weights(ref, fresh)


def test_resume_after_the_last_epoch_trains_nothing(tmp_path):
    X, y = spirals()
    m = every_layer_net()
    m.fit(X, y, optimizer=fd.optim.SGD(lr=0.1), epochs=2, verbose=0,
          callbacks=[fd.ModelCheckpoint(str(tmp_path / "c.npz"))])
    fresh = every_layer_net()
    hist = fresh.fit(X, y, optimizer=fd.optim.SGD(lr=0.1), epochs=2, verbose=0,
                     resume_from=str(tmp_path / "c.npz"))
    same_weights(m, fresh)
    assert hist.epoch == [0, 1] and len(hist["loss"]) == 2


def test_resume_errors(tmp_path):
    X, y = spirals()
    m, path = _saved(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        every_layer_net().fit(X, y, epochs=1, verbose=0, resume_from=str(tmp_path / "x.npz"))
    other = fd.Sequential([fd.Dense(16), fd.Dense(3, activation="softmax")], input_dim=2)
    with pytest.raises(fd.ModelFileError, match="member 'architecture': was saved from a "
                       "different model: a model with 6 layers; this one has 2"):
        other.fit(X, y, epochs=1, verbose=0, resume_from=path)
    wider = fd.Sequential([fd.Dense(17, init="he"), fd.BatchNorm(), fd.Activation("relu"),
                           fd.Dropout(keep_prob=0.8),
                           fd.Dense(8, activation="tanh", use_bias=False),
                           fd.Dense(3, activation="softmax")], input_dim=2)
    with pytest.raises(ValueError, match="layer 0 is"):
        wider.fit(X, y, epochs=1, verbose=0, resume_from=path)
    f64 = every_layer_net(dtype="float64")
    with pytest.raises(ValueError, match="dtype is 'float32' there and 'float64' here"):
        f64.fit(X, y, epochs=1, verbose=0, resume_from=path)
    fresh = every_layer_net()
    before = fresh.get_weights()
    with pytest.raises(fd.ModelFileError, match="holds the state of a Adam optimizer; expected a "
                       "SGD, the optimizer fit was given"):
        fresh.fit(X, y, optimizer=fd.optim.SGD(lr=0.1), epochs=2, verbose=0, resume_from=path)
    for a, b in zip(before, fresh.get_weights()):     # validated before anything changed
        np.testing.assert_array_equal(a, b)


# =========================================================================== ModelCheckpoint
def test_checkpoint_every_n_epochs_and_formatted_paths(tmp_path):
    X, y = spirals()
    m = every_layer_net()
    cb = fd.ModelCheckpoint(str(tmp_path / "c-{epoch:02d}-{loss:.2f}.npz"), every_n_epochs=2)
    m.fit(X, y, optimizer=fd.optim.SGD(lr=0.1), epochs=5, verbose=0, callbacks=[cb])
    names = sorted(os.listdir(tmp_path))
    assert [n[:4] for n in names] == ["c-02", "c-04"]
    assert fd.load(cb.last_path).epochs_trained == 4


def test_checkpoint_save_best_only(tmp_path):
    X, y = spirals()
    path = str(tmp_path / "best.npz")
    cb = fd.ModelCheckpoint(path, monitor="val_accuracy", save_best_only=True)
    m = every_layer_net()
    hist = m.fit(X, y, optimizer=fd.optim.Adam(lr=0.03), epochs=8, verbose=0,
                 validation_data=(X, y), callbacks=[cb])
    acc = hist["val_accuracy"]
    best_epoch = int(np.argmax(acc))                # first epoch reaching the maximum
    assert cb.mode == "max" and cb.best == max(acc)
    assert fd.load(path).epochs_trained == best_epoch + 1
    with pytest.raises(ValueError, match="found no such value"):
        every_layer_net().fit(X, y, epochs=1, verbose=0,
                              callbacks=[fd.ModelCheckpoint(path, save_best_only=True)])


def test_checkpoint_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="mode="):
        fd.ModelCheckpoint("x.npz", mode="up")
    with pytest.raises(ValueError, match="every_n_epochs"):
        fd.ModelCheckpoint("x.npz", every_n_epochs=0)
    with pytest.raises(TypeError, match="path"):
        fd.ModelCheckpoint(None)
    X, y = spirals()
    with pytest.raises(ValueError, match="cannot be formatted"):
        every_layer_net().fit(X, y, epochs=1, verbose=0,
                              callbacks=[fd.ModelCheckpoint(str(tmp_path / "{nope}.npz"))])
