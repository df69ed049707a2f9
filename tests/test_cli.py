"""The ``fastdl`` command end to end on small data, and every error path (exit status 2)."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import fastdl as fd
from fastdl import cli


def run(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def metric(out, part, name="accuracy"):
    return float(re.search(rf"{part}: loss ([\d.]+)  accuracy ([\d.]+)", out).group(
        2 if name == "accuracy" else 1))


# =========================================================================== train
def test_no_arguments_runs_the_default_job(monkeypatch):
    seen = {}
    monkeypatch.setitem(cli.COMMANDS, "train", lambda a: seen.setdefault("a", a) and 0)
    assert cli.main([]) == 0
    a = seen["a"]
    assert (a.dataset, a.layers, a.optimizer, a.epochs, a.batch_size, a.split) == \
        ("spirals", [64, 64], "adam", 60, 64, (0.8, 0.1, 0.1))
    seen.clear()
    assert cli.main(["--epochs", "3"]) == 0 and seen["a"].epochs == 3


def test_train_builtin_prints_metrics_diagnosis_and_saves(tmp_path, capsys):
    model_path = str(tmp_path / "m.npz")
    rc, out, err = run(capsys, "train", "--dataset", "moons", "--n", "400", "--epochs", "20",
                       "--layers", "16,8", "--lr", "0.01", "--verbose", "2", "-o", model_path)
    assert rc == 0, err
    assert out.count("Epoch ") == 20 and "Epoch 20/20" in out
    for part in ("train", "dev", "test"):
        assert 0.7 < metric(out, part) <= 1.0
    assert "verdict:" in out and "avoidable bias" in out
    model = fd.load(model_path)
    assert model.standardizer is not None and model.epochs_trained == 20
    # evaluate reproduces the train command's test figure on the regenerated dataset
    rc, out2, _ = run(capsys, "evaluate", model_path, "moons", "--n", "400")
    assert rc == 0
    X, y = fd.data.make_moons(400, seed=0)
    assert metric(out2, "moons") == pytest.approx(model.evaluate(X, y)["accuracy"], abs=1e-4)


def test_train_csv_with_header_target_dropout_batchnorm_schedule(tmp_path, capsys):
    X, y = fd.data.make_blobs(300, n_classes=3, n_features=4, seed=1)
    path = tmp_path / "d.csv"
    with open(path, "w") as f:
        f.write("label,a,b,c,d\n")
        for row, label in zip(X, y):
            f.write(f"{label}," + ",".join(f"{v:.6f}" for v in row) + "\n")
    rc, out, err = run(capsys, "train", "--data", str(path), "--target", "label", "--epochs",
                       "15", "--layers", "16", "--dropout", "0.9", "--batch-norm",
                       "--schedule", "exponential", "--decay-rate", "0.9", "--optimizer",
                       "momentum", "--lr", "0.05", "--verbose", "0")
    assert rc == 0, err
    assert "BatchNorm" in out and "Dropout" in out and "lr schedule exponential" in out
    assert metric(out, "test") > 0.9                 # separable blobs


def test_train_npz_and_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    X, y = fd.data.make_circles(300, seed=0)
    np.savez(tmp_path / "c.npz", X=X, y=y)
    png = str(tmp_path / "curves.png")
    rc, out, err = run(capsys, "train", "--data", str(tmp_path / "c.npz"), "--epochs", "3",
                       "--verbose", "0", "--plot", png, "--split", "0.8,0.2")
    assert rc == 0, err
    assert open(png, "rb").read(4) == b"\x89PNG" and "test:" not in out


def test_make_data_stream_train_evaluate_out_of_core(tmp_path, capsys):
    px = str(tmp_path / "t.npy")
    rc, out, _ = run(capsys, "make-data", "teacher", "--n", "6000", "--features", "12",
                     "--classes", "3", "--out", px)
    assert rc == 0 and "t.labels.npy" in out
    X, y = np.load(px), np.load(str(tmp_path / "t.labels.npy"))
    Xr, yr = fd.data.make_teacher(6000, n_features=12, n_classes=3, dtype=np.float32)
    np.testing.assert_array_equal(X, Xr)
    np.testing.assert_array_equal(y, yr)
    model_path = str(tmp_path / "m.npz")
    ck = str(tmp_path / "ck.npz")
    rc, out, err = run(capsys, "train", "--data", px, "--stream", "--epochs", "4", "--layers",
                       "32", "--verbose", "0", "-o", model_path, "--checkpoint", ck)
    assert rc == 0, err
    assert "4,800 train (streamed from disk) / 600 dev / 600 test" in out
    assert metric(out, "test") > 0.6
    assert fd.load(ck).epochs_trained == 4
    rc, out2, _ = run(capsys, "evaluate", model_path, px)
    assert rc == 0 and "(6,000 examples)" in out2
    model = fd.load(model_path)
    assert metric(out2, "t.npy") == pytest.approx(model.evaluate(Xr, yr)["accuracy"], abs=1e-4)
    # --resume continues from the checkpoint: 2 more epochs to reach 6
    rc, out3, err = run(capsys, "train", "--data", px, "--stream", "--epochs", "6", "--layers",
                        "32", "--verbose", "2", "--checkpoint", ck, "--resume")
    assert rc == 0, err
    assert "Epoch 5/6" in out3 and "Epoch 1/6" not in out3 and "resumed from" in out3


def test_make_data_csv_npz_npy_round_trips(tmp_path, capsys):
    for ext in ("csv", "npz", "npy"):
        out = str(tmp_path / f"moons.{ext}")
        rc, _, err = run(capsys, "make-data", "moons", "--n", "50", "--out", out,
                         "--dtype", "float64")
        assert rc == 0, err
        X, y, _ = cli.load_data(cli._parser().parse_args(["train", "--data", out]))
        Xr, yr = fd.data.make_moons(50, seed=0)
        np.testing.assert_allclose(np.asarray(X), Xr, rtol=1e-8)
        np.testing.assert_array_equal(np.asarray(y), yr)


def test_gradcheck_command(capsys):
    rc, out, _ = run(capsys, "gradcheck", "--layers", "4,3")
    assert rc == 0 and "passed" in out


@pytest.mark.parametrize("command", [None, "train", "evaluate", "gradcheck", "make-data"])
def test_help(capsys, command):
    with pytest.raises(SystemExit) as e:
        cli.main(([command] if command else []) + ["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fastdl")


def test_console_entry_point_runs():
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fd.__file__)))
    r = subprocess.run([sys.executable, "-m", "fastdl", "make-data", "--help"], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "teacher" in r.stdout


# =========================================================================== errors
def _csv(tmp_path, text, name="d.csv"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


@pytest.mark.parametrize("text, match", [
    ("a,b,y\n1,2,0\n1,x,1\n", r"line 3, column 2 \('b'\): 'x' is not a number"),
    ("1,2,0\n3,,1\n", r"line 2, column 2: an empty cell is not a number"),
    ("1,2,0\n3,4\n", r"line 2: 2 cells; expected 3"),
    ("", "is empty"),
    ("a,b\n", "header but no data rows"),
    ("1\n2\n", "expected features and a label column"),
])
def test_bad_csv(tmp_path, capsys, text, match):
    rc, out, err = run(capsys, "train", "--data", _csv(tmp_path, text), "--epochs", "1")
    assert rc == 2 and out == ""
    assert err.startswith("fastdl: error: ") and re.search(match, err)


def test_bad_target_column(tmp_path, capsys):
    p = _csv(tmp_path, "a,b,y\n1,2,0\n3,4,1\n")
    rc, _, err = run(capsys, "train", "--data", p, "--target", "zz")
    assert rc == 2 and "--target='zz' is not a column" in err
    rc, _, err = run(capsys, "train", "--data", p, "--target", "7")
    assert rc == 2 and "out of range for 3 columns" in err


@pytest.mark.parametrize("argv, match", [
    (["train", "--data", "nope.csv"], "data file 'nope.csv' does not exist"),
    (["train", "--data", "nope.npy"], "does not exist"),
    (["evaluate", "nope.npz", "moons"], "model file 'nope.npz' does not exist"),
    (["train", "--resume"], "--resume needs --checkpoint"),
    (["train", "--stream"], "--stream needs a .npy feature file"),
    (["train", "--epochs", "-1"], "--epochs=-1 is invalid"),
    (["make-data", "moons", "--out", "x.txt"], "expected a .npz, .csv or .npy"),
    (["make-data", "moons", "--out", "no/such/dir/x.npz"], "does not exist"),
    (["make-data", "moons", "--features", "3", "--out", "x.npz"], "--features applies"),
])
def test_error_paths_exit_2(tmp_path, capsys, monkeypatch, argv, match):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and match in err


def test_npy_without_labels_and_bad_npz(tmp_path, capsys):
    np.save(tmp_path / "X.npy", np.zeros((10, 2)))
    rc, _, err = run(capsys, "train", "--data", str(tmp_path / "X.npy"))
    assert rc == 2 and "X.labels.npy' does not exist (pass --labels)" in err
    np.save(tmp_path / "X.labels.npy", np.zeros(9))
    rc, _, err = run(capsys, "train", "--data", str(tmp_path / "X.npy"))
    assert rc == 2 and "has 10 rows but its labels" in err
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04garbage")
    rc, _, err = run(capsys, "train", "--data", str(tmp_path / "bad.npz"))
    assert rc == 2 and "not a readable .npz file" in err
    np.savez(tmp_path / "three.npz", a=1, b=2, c=3)
    rc, _, err = run(capsys, "train", "--data", str(tmp_path / "three.npz"))
    assert rc == 2 and "expected 'X' and 'y'" in err
    (tmp_path / "d.txt").write_text("1,2")
    rc, _, err = run(capsys, "train", "--data", str(tmp_path / "d.txt"))
    assert rc == 2 and "unknown file type '.txt'" in err


def test_corrupt_model_and_mismatched_data(tmp_path, capsys):
    (tmp_path / "m.npz").write_bytes(b"\x00" * 100)
    rc, _, err = run(capsys, "evaluate", str(tmp_path / "m.npz"), "moons")
    assert rc == 2 and "truncated or corrupt" in err
    m = fd.Sequential([fd.Dense(1, activation="sigmoid")], input_dim=3)
    m.save(str(tmp_path / "m3.npz"))
    rc, _, err = run(capsys, "evaluate", str(tmp_path / "m3.npz"), "moons")
    assert rc == 2 and "has 2 features; the model expects 3" in err


def test_plot_without_matplotlib_fails_before_training(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    rc, out, err = run(capsys, "train", "--plot", "x.png")
    assert rc == 2 and "fastdl[plot]" in err and "Epoch" not in out


@pytest.mark.parametrize("argv", [["train", "--layers", "a,b"], ["train", "--layers", "0"],
                                  ["train", "--split", "0.5"], ["train", "--dropout", "0"],
                                  ["train", "--optimizer", "lbfgs"], ["train", "--batch-size", "0"],
                                  ["evaluate"], ["make-data", "moons"]])
def test_bad_arguments_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    assert e.value.code == 2
    assert "usage: fastdl" in capsys.readouterr().err


# ====================================================================== schedule flags
_REAL_SCHEDULE = cli._schedule


def _schedule_of(capsys, monkeypatch, *flags):
    """The lr schedule cmd_train builds from the flags (training itself is skipped)."""
    seen = {}

    def stop(a, n_default=None):
        raise cli.CLIError("stop")
    monkeypatch.setattr(cli, "load_data", stop)
    monkeypatch.setattr(cli, "_schedule",
                        lambda a, lr0: seen.setdefault("s", _REAL_SCHEDULE(a, lr0)))
    rc, out, err = run(capsys, "train", *flags)
    return rc, err, seen.get("s")


def test_decay_rate_goes_to_the_schedule_and_its_check_names_the_flag(capsys, monkeypatch):
    rc, err, s = _schedule_of(capsys, monkeypatch, "--schedule", "exponential", "--decay-rate",
                              "0.9")
    assert s.rate == 0.9
    rc, err, s = _schedule_of(capsys, monkeypatch, "--schedule", "exponential")
    assert s.rate == 0.95                                   # the exponential default
    rc, err, s = _schedule_of(capsys, monkeypatch, "--schedule", "exponential", "--decay-rate",
                              "1.5")
    assert rc == 2 and "--decay-rate=1.5 (--schedule exponential): rate=1.5 is invalid" in err
    rc, err, s = _schedule_of(capsys, monkeypatch, "--schedule", "inverse_time", "--decay-rate",
                              "-1")
    assert rc == 2 and "--decay-rate=-1" in err


def test_decay_flags_without_their_schedule_are_errors(capsys, monkeypatch):
    rc, err, _ = _schedule_of(capsys, monkeypatch, "--decay-rate", "0.9")
    assert rc == 2 and "--decay-rate=0.9 needs --schedule" in err
    rc, err, _ = _schedule_of(capsys, monkeypatch, "--schedule", "exponential",
                              "--decay-interval", "5")
    assert rc == 2 and "--decay-interval=5 applies to --schedule staircase" in err
    rc, err, s = _schedule_of(capsys, monkeypatch, "--schedule", "staircase",
                              "--decay-interval", "5")
    assert s.interval == 5


def test_diagnosis_prints_advice_once(capsys, monkeypatch):
    monkeypatch.setattr(cli, "evaluate_rows", lambda model, X, y: {
        "loss": 1.0, "accuracy": 0.85 if X.shape[0] > 100 else 0.70, "n": X.shape[0]})
    rc, out, err = run(capsys, "train", "--dataset", "moons", "--n", "400", "--epochs", "1",
                       "--verbose", "0")
    assert rc == 0 and "high bias and high variance" in out
    assert out.count("try another architecture") == 1
