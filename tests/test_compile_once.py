"""Compile once: fd.warmup, the cross-process compile lock around Numba's cache, and the
cache directory's fallbacks (missing, unwritable, read-only but warm)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastdl as fd
from fastdl import config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: a child that builds a net, then warms it up or trains it, and prints its compile counts
CHILD = textwrap.dedent("""
    import json, sys
    import numpy as np
    import fastdl as fd
    from fastdl.kernels.cpu._jit import compile_counts
    model = fd.Sequential([fd.Dense(16), fd.BatchNorm(), fd.Activation("relu"),
                           fd.Dropout(keep_prob=0.9), fd.Dense(3, activation="softmax")],
                          input_dim=30, seed=0)
    if sys.argv[1] == "warmup":
        fd.warmup(model, optimizer=fd.optim.Adam())
    else:
        rng = np.random.default_rng(0)
        X, y = rng.standard_normal((600, 30)), rng.integers(0, 3, 600)
        model.fit(X, y, optimizer=fd.optim.Adam(), epochs=1, batch_size=200, verbose=0,
                  validation_data=(X[:50], y[:50]))
        model.predict(X[:5])
    print(json.dumps({f"{k[0]} {k[1]}": v for k, v in compile_counts().items()}))
""")


def _start(mode, cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache, FASTDL_CACHE_DIR=cache,
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    env.pop("FASTDL_NO_CACHE", None)
    return subprocess.Popen([sys.executable, "-c", CHILD, mode], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _counts(proc):
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])      # {kernel signature: [hits, compiled]}


@pytest.mark.skipif(not config.JIT_CACHE, reason="no writable JIT cache directory here")
def test_after_warmup_a_new_process_trains_without_compiling(tmp_path):
    cache = str(tmp_path / "cache")
    warmed = _counts(_start("warmup", cache))
    assert sum(c for _, c in warmed.values()) > 0
    trained = _counts(_start("fit", cache))
    assert sum(c for _, c in trained.values()) == 0, trained
    assert sum(h for h, _ in trained.values()) > 0                      # loaded instead


@pytest.mark.skipif(not config.JIT_CACHE, reason="no writable JIT cache directory here")
def test_concurrent_processes_compile_each_kernel_once(tmp_path):
    """Three processes start on one empty cache at once (as MPI ranks on one machine do):
    every kernel signature is compiled by one of them, the others load it."""
    cache = str(tmp_path / "cache")
    procs = [_start("fit", cache) for _ in range(3)]
    total = {}
    for p in procs:
        for key, (_hits, compiled) in _counts(p).items():
            total[key] = total.get(key, 0) + compiled
    assert total and max(total.values()) == 1, {k: n for k, n in total.items() if n > 1}


def test_warmup_leaves_the_model_alone_and_reports():
    model = fd.Sequential([fd.Dense(8, activation="tanh"), fd.Dense(1, activation="sigmoid")],
                          input_dim=4, seed=1)
    before = model.get_weights()
    report = fd.warmup(model, optimizer=fd.optim.RMSprop(global_clipnorm=1.0))
    assert report.seconds > 0 and report.compiled >= 0 and report.loaded >= 0
    assert report.cache_dir == (config.CACHE_DIR if config.JIT_CACHE else None)
    assert "kernel signatures compiled" in repr(report)
    future = fd.warmup(model, background=True)
    assert isinstance(future.result(timeout=600), type(report))
    assert model.steps_trained == 0 and model.optimizer is None
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_warmup_bad_arguments():
    model = fd.Sequential([fd.Dense(1)], input_dim=2)
    with pytest.raises(TypeError, match="model=.*fd.Sequential"):
        fd.warmup("model")
    with pytest.raises(TypeError, match="background=1"):
        fd.warmup(model, background=1)
    with pytest.raises(TypeError, match="optimizer="):
        fd.warmup(model, optimizer="adam")


def test_cli_warmup(capsys):
    from fastdl.cli import main
    assert main(["warmup", "--input-dim", "6", "--layers", "5", "--outputs", "3",
                 "--optimizer", "sgd", "--dtype", "float64"]) == 0
    assert "float64 sgd: WarmupReport(" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["warmup", "--layers", "5"])                 # --input-dim is required


# ---------------------------------------------------------------- cache directory fallbacks ----
def test_unwritable_cache_dirs_fall_back_to_the_next_candidate(tmp_path, monkeypatch):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(a_file / "numba"))         # cannot be created
    monkeypatch.setenv("FASTDL_CACHE_DIR", str(tmp_path / "fastdl"))
    assert config._resolve_cache_dir() == str(tmp_path / "fastdl")
    monkeypatch.setenv("FASTDL_CACHE_DIR", str(a_file / "fastdl"))
    monkeypatch.setenv("HOME", str(a_file))
    monkeypatch.setattr(config, "_private_temp_cache", lambda: None)
    assert config._resolve_cache_dir() is None                          # caching off


def test_a_read_only_warm_cache_seeds_the_writable_one(tmp_path, monkeypatch):
    """A cache baked into a read-only image: its files are copied to the first writable
    candidate (never over files already there)."""
    warm = tmp_path / "image-cache"
    (warm / "cpu_ab").mkdir(parents=True)
    (warm / "cpu_ab" / "dense.f-12.py311.nbi").write_bytes(b"index")
    (warm / "cpu_ab" / "dense.f-12.py311.1.nbc").write_bytes(b"code")
    (warm / "cpu_ab" / "notes.txt").write_text("not a cache file")
    home = tmp_path / "home"
    (home / ".cache" / "fastdl" / "numba" / "cpu_ab").mkdir(parents=True)
    (home / ".cache" / "fastdl" / "numba" / "cpu_ab" / "dense.f-12.py311.nbi").write_bytes(b"mine")
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("FASTDL_CACHE_DIR", str(warm))
    monkeypatch.setenv("HOME", str(home))
    real = config._writable_dir
    monkeypatch.setattr(config, "_writable_dir", lambda p: p != str(warm) and real(p))
    got = config._resolve_cache_dir()
    assert got == str(home / ".cache" / "fastdl" / "numba")
    assert sorted(os.listdir(os.path.join(got, "cpu_ab"))) == ["dense.f-12.py311.1.nbc",
                                                               "dense.f-12.py311.nbi"]
    assert (home / ".cache/fastdl/numba/cpu_ab/dense.f-12.py311.nbi").read_bytes() == b"mine"


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX file ownership")
def test_the_temporary_cache_must_be_private(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path))
    assert config._private_temp_cache() == str(tmp_path / f"fastdl-{os.getuid()}" / "numba")
    os.chmod(tmp_path / f"fastdl-{os.getuid()}", 0o777)      # others could plant pickles
    assert config._private_temp_cache() is None
