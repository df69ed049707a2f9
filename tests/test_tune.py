"""fastdl.tune: sampler scales, validation, random / coarse-to-fine search, executors, storage."""

import math
import os
import re
import sqlite3

import numpy as np
import pytest

from fastdl.tune import (choice, coarse_to_fine, int_uniform, log_int, log_uniform, one_minus_log,
                         random_search, uniform)

# ---------------------------------------------------------------- module-level (picklable) objectives


def lr_objective(config):
    """Best at lr = 1e-2."""
    return -(math.log10(config["lr"]) + 2.0) ** 2


def two_dim_objective(config):
    return -(math.log10(config["lr"]) + 2.5) ** 2 - (math.log10(1 - config["beta"]) + 2.0) ** 2


def flaky_objective(config):
    if config["lr"] > 0.1:
        raise RuntimeError("diverged")
    return lr_objective(config)


def counting_objective(config):
    """Appends a line per call to the file named by config['log'] (counts real executions)."""
    with open(config["log"], "a") as f:
        f.write(f"{config['lr']!r}\n")
    return lr_objective(config)


def interrupting_objective(config):
    if config["lr"] > 0.1:
        os._exit(1)  # noqa: SLF001 - kills the worker: simulates a crash
    return lr_objective(config)


def threads_objective(config):
    import numba
    return float(numba.get_num_threads())


def moons_objective(config):
    import fastdl as fd
    X, y = fd.data.make_moons(200, noise=0.2, seed=0)
    s = fd.data.split(X, y, ratios=(0.7, 0.3), seed=0)
    (Xt, yt), (Xd, yd) = s.train, s.dev
    model = fd.Sequential([fd.Dense(config["units"], activation="relu"),
                           fd.Dense(1, activation="sigmoid")],
                          input_dim=2, loss="binary_crossentropy", seed=0)
    h = model.fit(Xt, yt, optimizer=fd.optim.Adam(lr=config["lr"], beta1=config["beta1"]),
                  epochs=3, batch_size=32, validation_data=(Xd, yd), verbose=0)
    return h.history["val_accuracy"][-1]


def asha_objective(config, trial):
    """9 epochs; the score at every step is monotone in q, so rungs rank trials by q."""
    import time as _time
    for step in range(1, 10):
        if config.get("sleep"):
            _time.sleep(config["sleep"])
        trial.report(config["q"] * step / 9, step=step)
        if trial.should_prune():
            return None
    return config["q"]


def pruned_by_raising(config, trial):
    from fastdl.tune import TrialPruned
    trial.report(config["q"], step=1)
    if trial.should_prune():
        raise TrialPruned()
    return config["q"] + 1.0


def moons_report_objective(config, trial):
    import fastdl as fd
    X, y = fd.data.make_moons(200, noise=0.2, seed=0)
    s = fd.data.split(X, y, ratios=(0.7, 0.3), seed=0)
    (Xt, yt), (Xd, yd) = s.train, s.dev
    model = fd.Sequential([fd.Dense(8, activation="relu"), fd.Dense(1, activation="sigmoid")],
                          input_dim=2, loss="binary_crossentropy", seed=0)
    h = model.fit(Xt, yt, optimizer=fd.optim.SGD(lr=config["lr"]), epochs=9, batch_size=32,
                  validation_data=(Xd, yd), verbose=0,
                  callbacks=[fd.tune.ReportCallback(trial, monitor="val_loss")])
    return h.history["val_loss"][-1]


def _dask_record(board, rung, idx, score):
    return board.record(rung, idx, score)


# ---------------------------------------------------------------- scales


def test_log_uniform_log10_is_uniform():
    rng = np.random.default_rng(0)
    d = log_uniform(1e-4, 1.0)
    x = np.array([d.sample(rng) for _ in range(20000)])
    assert x.min() >= 1e-4 and x.max() <= 1.0
    u = np.sort((np.log10(x) + 4) / 4)          # should be U(0, 1)
    ks = np.max(np.abs(u - np.arange(1, len(u) + 1) / len(u)))
    assert ks < 1.63 / math.sqrt(len(u))        # KS test at the 1% level
    # as many draws per decade
    counts = np.histogram(np.log10(x), bins=[-4, -3, -2, -1, 0])[0]
    assert np.all(np.abs(counts / len(x) - 0.25) < 0.02)


def test_one_minus_log_matches_course_rule():
    rng = np.random.default_rng(1)
    d = one_minus_log(0.9, 0.999)
    b = np.array([d.sample(rng) for _ in range(20000)])
    assert b.min() >= 0.9 and b.max() <= 0.999
    low = np.mean((b >= 0.9) & (b < 0.99))
    high = np.mean((b >= 0.99) & (b <= 0.999))
    assert abs(low - 0.5) < 0.02 and abs(high - 0.5) < 0.02
    assert abs(np.median(1 - b) - 0.01) < 0.001
    assert d.scale == "one_minus_log" and d.bounds == (0.9, 0.999)


def test_uniform_int_and_choice_samplers():
    rng = np.random.default_rng(2)
    u = np.array([uniform(-1, 3).sample(rng) for _ in range(5000)])
    assert -1 <= u.min() and u.max() <= 3 and abs(np.median(u) - 1) < 0.15
    ints = [int_uniform(2, 4).sample(rng) for _ in range(3000)]
    assert set(ints) == {2, 3, 4} and all(isinstance(i, int) for i in ints)
    li = np.array([log_int(1, 999).sample(rng) for _ in range(20000)])
    assert li.min() >= 1 and li.max() <= 999
    assert abs(np.mean(li < 10) - 1 / 3) < 0.02 and abs(np.mean(li >= 100) - 1 / 3) < 0.02
    c = [choice(["relu", "tanh"]).sample(rng) for _ in range(2000)]
    assert abs(c.count("relu") / 2000 - 0.5) < 0.05
    assert log_uniform(1e-3, 1).scale == "log" and log_int(2, 8).scale == "log"
    assert uniform(0, 1).scale == "linear" and choice([1]).scale == "categorical"


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("make, exc, words", [
    (lambda: uniform(1, 1), ValueError, ["lo=1", "hi=1", "lo < hi"]),
    (lambda: uniform(2, 1), ValueError, ["inverted"]),
    (lambda: uniform("a", 1), TypeError, ["lo='a'"]),
    (lambda: uniform(0, float("nan")), TypeError, ["hi=nan"]),
    (lambda: log_uniform(0, 1), ValueError, ["lo=0.0", "> 0"]),
    (lambda: log_uniform(-1, 1), ValueError, ["lo=-1.0"]),
    (lambda: log_uniform(1, 0.1), ValueError, ["inverted"]),
    (lambda: one_minus_log(0.9, 1.0), ValueError, ["hi=1.0", "(0, 1)"]),
    (lambda: one_minus_log(0.0, 0.9), ValueError, ["lo=0.0"]),
    (lambda: one_minus_log(0.999, 0.9), ValueError, ["inverted"]),
    (lambda: int_uniform(1.5, 3), TypeError, ["lo=1.5", "integer"]),
    (lambda: int_uniform(5, 3), ValueError, ["inverted"]),
    (lambda: log_int(0, 10), ValueError, ["lo=0", ">= 1"]),
    (lambda: choice([]), ValueError, ["empty"]),
    (lambda: choice("abc"), TypeError, ["list"]),
    (lambda: choice([object()]), TypeError, ["JSON"]),
])
def test_bad_dimensions(make, exc, words):
    with pytest.raises(exc) as e:
        make()
    for w in words:
        assert w in str(e.value)


def test_bad_search_arguments():
    sp = {"lr": log_uniform(1e-4, 1)}
    with pytest.raises(ValueError, match="n_trials=0"):
        random_search(lr_objective, sp, 0, executor="serial")
    with pytest.raises(ValueError, match="mode='best'"):
        random_search(lr_objective, sp, 2, executor="serial", mode="best")
    with pytest.raises(ValueError, match="space=.*non-empty dict"):
        random_search(lr_objective, {}, 2, executor="serial")
    with pytest.raises(TypeError, match="space\\['lr'\\]"):
        random_search(lr_objective, {"lr": [1, 2]}, 2, executor="serial")
    with pytest.raises(TypeError, match="executor='gpu'"):
        random_search(lr_objective, sp, 2, executor="gpu")
    with pytest.raises(TypeError, match="objective=3"):
        random_search(3, sp, 2, executor="serial")
    with pytest.raises(ValueError, match="top_k=0"):
        coarse_to_fine(lr_objective, sp, 2, rounds=2, top_k=0, executor="serial")


def test_unpicklable_objective_is_a_clear_error():
    with pytest.raises(TypeError, match="cannot be sent to worker processes"):
        random_search(lambda c: 0.0, {"lr": log_uniform(1e-4, 1)}, 2, n_workers=2)


def test_interactive_main_objective_is_a_clear_error(tmp_path):
    import subprocess
    import sys
    code = ("import fastdl as fd\n"
            "def f(c):\n    return 0.0\n"
            "try:\n"
            "    fd.tune.random_search(f, {'x': fd.tune.uniform(0, 1)}, 2, n_workers=2)\n"
            "except TypeError as e:\n    print('TypeError:', e)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=root)
    assert "interactive __main__" in out.stdout, out.stdout + out.stderr


# ---------------------------------------------------------------- random search


def test_random_search_finds_optimum_region_and_same_seed_same_trials():
    sp = {"lr": log_uniform(1e-5, 1), "act": choice(["relu", "tanh"]), "fixed": 7}
    r = random_search(lr_objective, sp, 60, seed=3, executor="serial")
    assert len(r.trials) == 60 and all(t["status"] == "ok" for t in r.trials)
    assert 10 ** -2.5 < r.best["config"]["lr"] < 10 ** -1.5
    assert r.best["score"] == max(t["score"] for t in r.trials)
    assert all(t["config"]["fixed"] == 7 for t in r.trials)
    assert set(r.trials[0]) >= {"config", "score", "status", "error", "duration", "index", "round"}
    r2 = random_search(lr_objective, sp, 60, seed=3, executor="serial")
    assert [t["config"] for t in r2.trials] == [t["config"] for t in r.trials]
    r3 = random_search(lr_objective, sp, 60, seed=4, executor="serial")
    assert [t["config"] for t in r3.trials] != [t["config"] for t in r.trials]
    rmin = random_search(lambda c: -lr_objective(c), sp, 60, seed=3, executor="serial", mode="min")
    assert rmin.best["config"] == r.best["config"]


def test_failed_trials_are_recorded_and_search_goes_on():
    r = random_search(flaky_objective, {"lr": log_uniform(1e-4, 1)}, 30, seed=0, executor="serial")
    failed = [t for t in r.trials if t["status"] == "failed"]
    assert failed and len(failed) < 30
    for t in failed:
        assert t["config"]["lr"] > 0.1 and t["score"] is None and "diverged" in t["error"]
    assert r.best["config"]["lr"] <= 0.1


def test_process_pool_equals_serial():
    sp = {"lr": log_uniform(1e-4, 1), "beta": one_minus_log(0.9, 0.999)}
    serial = random_search(two_dim_objective, sp, 8, seed=5, executor="serial")
    pooled = random_search(two_dim_objective, sp, 8, seed=5, n_workers=2)
    assert [t["config"] for t in pooled.trials] == [t["config"] for t in serial.trials]
    assert [t["score"] for t in pooled.trials] == [t["score"] for t in serial.trials]


def test_any_executor_and_worker_crash_recorded(tmp_path):
    import concurrent.futures as cf
    import multiprocessing
    sp = {"lr": log_uniform(1e-4, 1)}
    with cf.ThreadPoolExecutor(2) as ex:
        r = random_search(lr_objective, sp, 6, seed=0, executor=ex)
    assert [t["score"] for t in r.trials] == [
        t["score"] for t in random_search(lr_objective, sp, 6, seed=0, executor="serial").trials]
    # a worker process that dies: its trial (and the ones the broken pool could not run) are failed
    with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as ex:
        r = random_search(interrupting_objective, sp, 12, seed=0, executor=ex)
    assert len(r.trials) == 12
    assert any(t["status"] == "failed" and "worker error" in t["error"] for t in r.trials)


def test_pool_workers_split_numba_threads():
    cores = os.cpu_count() or 1
    r = random_search(threads_objective, {"x": uniform(0, 1)}, 4, n_workers=2)
    assert all(t["status"] == "ok" for t in r.trials)
    assert all(2 * t["score"] <= max(2, cores) for t in r.trials)


def test_default_pool_worker_crash_is_a_failed_trial():
    r = random_search(interrupting_objective, {"lr": log_uniform(1e-4, 1)}, 6, seed=0, n_workers=2)
    assert len(r.trials) == 6
    crashed = [t for t in r.trials if t["config"]["lr"] > 0.1]
    assert crashed and all(t["status"] == "failed" for t in crashed)


def test_bad_n_workers():
    with pytest.raises(ValueError, match="n_workers=0"):
        random_search(lr_objective, {"lr": log_uniform(1e-4, 1)}, 2, n_workers=0)


def test_dask_local_cluster_search(tmp_path):
    distributed = pytest.importorskip("distributed")
    sp = {"lr": log_uniform(1e-4, 1), "beta": one_minus_log(0.9, 0.999)}
    serial = random_search(two_dim_objective, sp, 6, seed=7, executor="serial")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, local_directory=str(tmp_path)) as cluster, \
            distributed.Client(cluster) as client:
        r = random_search(two_dim_objective, sp, 6, seed=7, executor=client,
                          storage=tmp_path / "dask.sqlite")
        f = random_search(flaky_objective, {"lr": log_uniform(1e-4, 1)}, 12, seed=0, executor=client)
        # ASHA on the cluster: the rungs live on the scheduler (a Variable under a Lock) ...
        from fastdl.tune import ASHA
        from fastdl.tune.pruning import DaskBoard
        a = random_search(asha_objective, {"q": uniform(0, 1)}, 8, seed=3, executor=client,
                          pruner=ASHA(1, 3, max_resource=9))
        # ... and every worker process sees the scores the others entered
        board = DaskBoard()
        board.setup(client)
        workers = sorted(client.scheduler_info()["workers"])
        sizes = [len(client.submit(_dask_record, board, 1, i, 0.1 * i, workers=[workers[i % 2]],
                                   pure=False).result()) for i in range(4)]
        board.teardown(client)
    assert [t["score"] for t in r.trials] == [t["score"] for t in serial.trials]
    assert any(t["status"] == "failed" and "diverged" in t["error"] for t in f.trials)
    assert len(workers) == 2 and sizes == [1, 2, 3, 4]
    assert a.pruned_trials and a.ok_trials and len(a.trials) == 8
    assert all(len(t["reports"]) in (1, 3) and t["score"] == t["reports"][-1][1]
               for t in a.pruned_trials)
    assert all(len(t["reports"]) == 9 for t in a.ok_trials)
    assert max(t["config"]["q"] for t in a.trials) == a.best["config"]["q"]


# ---------------------------------------------------------------- storage


def test_storage_resume_does_not_rerun_finished_trials(tmp_path):
    log = tmp_path / "calls.txt"
    db = tmp_path / "search.sqlite"
    sp = {"lr": log_uniform(1e-4, 1), "log": str(log)}
    # "interrupted" search: only the first 5 of the 12 trials ran
    first = random_search(counting_objective, sp, 5, seed=1, executor="serial", storage=db)
    assert len(log.read_text().splitlines()) == 5
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert con.execute("SELECT COUNT(*) FROM trials").fetchone()[0] == 5
    con.close()
    full = random_search(counting_objective, sp, 12, seed=1, n_workers=2, storage=db)
    assert len(log.read_text().splitlines()) == 12        # only the 7 missing trials ran
    assert [t["config"] for t in full.trials[:5]] == [t["config"] for t in first.trials]
    again = random_search(counting_objective, sp, 12, seed=1, executor="serial", storage=db)
    assert len(log.read_text().splitlines()) == 12        # nothing reran
    assert [t["score"] for t in again.trials] == [t["score"] for t in full.trials]
    # a different seed is a different search in the same file
    random_search(counting_objective, sp, 2, seed=2, executor="serial", storage=db)
    assert len(log.read_text().splitlines()) == 14


def test_coarse_to_fine_resumes_from_storage(tmp_path):
    log = tmp_path / "calls.txt"
    db = tmp_path / "c2f.sqlite"
    sp = {"lr": log_uniform(1e-4, 1), "log": str(log)}
    a = coarse_to_fine(counting_objective, sp, 4, rounds=3, top_k=2, seed=0, executor="serial",
                       storage=db)
    assert len(log.read_text().splitlines()) == 12
    b = coarse_to_fine(counting_objective, sp, 4, rounds=3, top_k=2, seed=0, executor="serial",
                       storage=db)
    assert len(log.read_text().splitlines()) == 12
    assert [t["config"] for t in b.trials] == [t["config"] for t in a.trials]
    assert [t["round"] for t in b.trials] == [0] * 4 + [1] * 4 + [2] * 4


def test_storage_records_failed_trials(tmp_path):
    db = tmp_path / "s.sqlite"
    random_search(flaky_objective, {"lr": log_uniform(1e-4, 1)}, 20, executor="serial", storage=db)
    con = sqlite3.connect(db)
    rows = con.execute("SELECT status, error, config FROM trials WHERE status='failed'").fetchall()
    con.close()
    assert rows and all("diverged" in e for _, e, _ in rows)


def test_bad_storage_is_a_clear_error(tmp_path):
    bad = tmp_path / "not.sqlite"
    bad.write_bytes(b"this is not a database at all, definitely not" * 100)
    with pytest.raises(ValueError, match="storage="):
        random_search(lr_objective, {"lr": log_uniform(1e-4, 1)}, 2, executor="serial", storage=bad)


# ---------------------------------------------------------------- coarse to fine


def test_coarse_to_fine_improves_and_narrows_on_its_scale():
    sp = {"lr": log_uniform(1e-6, 1), "beta": one_minus_log(0.5, 0.9999), "act": choice(["a", "b"])}
    r = coarse_to_fine(two_dim_objective, sp, n_trials=10, rounds=4, top_k=3, seed=0,
                       executor="serial")
    assert len(r.trials) == 40 and [t["round"] for t in r.trials] == [i // 10 for i in range(40)]
    best_by_round = [max(t["score"] for t in r.trials if t["round"] <= k) for k in range(4)]
    assert best_by_round[-1] > best_by_round[0]
    assert best_by_round[-1] > -0.05
    # each round's box sits inside the previous one, on the log scale
    for a, b in zip(r.spaces, r.spaces[1:]):
        assert a["lr"].lo <= b["lr"].lo <= b["lr"].hi <= a["lr"].hi
        assert a["beta"].lo <= b["beta"].lo <= b["beta"].hi <= a["beta"].hi
        assert type(b["lr"]) is log_uniform and type(b["beta"]) is one_minus_log
    last = r.spaces[-1]["lr"]
    assert math.log10(last.hi) - math.log10(last.lo) < 6 / 2
    # same seed → same trials; a pool gives the same trials too
    r2 = coarse_to_fine(two_dim_objective, sp, n_trials=10, rounds=4, top_k=3, seed=0, n_workers=2)
    assert [t["config"] for t in r2.trials] == [t["config"] for t in r.trials]


def test_narrow_int_dimensions():
    d = int_uniform(1, 100).narrow([10, 20])
    assert type(d) is int_uniform and 1 <= d.lo <= 10 and 20 <= d.hi <= 100 and d.hi - d.lo < 60
    d = log_int(1, 1024).narrow([32, 64])
    assert type(d) is log_int and d.lo <= 32 and d.hi >= 64 and d.hi < 1024
    assert choice(["a", "b", "c"]).narrow(["c", "a"]).options == ["a", "c"]


# ---------------------------------------------------------------- outputs


def test_to_dataframe_or_clear_import_error():
    r = random_search(lr_objective, {"lr": log_uniform(1e-4, 1)}, 4, executor="serial")
    import importlib.util
    if importlib.util.find_spec("pandas") is None:
        with pytest.raises(ImportError, match="pandas"):
            r.to_dataframe()
    else:
        df = r.to_dataframe()
        assert len(df) == 4 and "config.lr" in df.columns and "score" in df.columns


def test_plot_uses_log_axes(tmp_path):
    pytest.importorskip("matplotlib")
    sp = {"lr": log_uniform(1e-4, 1), "beta": one_minus_log(0.9, 0.999), "units": int_uniform(2, 9),
          "act": choice(["relu", "tanh"])}
    r = random_search(lambda c: lr_objective(c), sp, 12, executor="serial")
    path = tmp_path / "search.png"
    fig = r.plot(path)
    assert path.stat().st_size > 1000
    scales = [ax.get_xscale() for ax in fig.axes]
    assert scales == ["log", "log", "linear", "linear"]


def test_plot_without_matplotlib_is_a_clear_error(monkeypatch):
    import sys
    r = random_search(lr_objective, {"lr": log_uniform(1e-4, 1)}, 2, executor="serial")
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match="fastdl\\[plot\\]"):
        r.plot()


# ---------------------------------------------------------------- a real fastdl objective


def test_tiny_fastdl_training_through_process_pool():
    sp = {"lr": log_uniform(1e-3, 1e-1), "beta1": one_minus_log(0.8, 0.95), "units": log_int(4, 16)}
    r = random_search(moons_objective, sp, 4, seed=0, n_workers=2)
    assert all(t["status"] == "ok" for t in r.trials), [t["error"] for t in r.trials]
    assert all(0.0 <= t["score"] <= 1.0 for t in r.trials)
    assert r.best["score"] > 0.5


# ---------------------------------------------------------------- per-epoch reports and ASHA


def replay_asha(entries, eta, mode="max"):
    """The ASHA rule restated: entries (rung, idx, score) in arrival order -> {(rung, idx): kept}.
    Kept iff the score ranks within the top max(1, n // eta) of the n scores at the rung so far."""
    at, kept = {}, {}
    for rung, idx, score in entries:
        at.setdefault(rung, []).append(score)
        ranked = sorted(at[rung], reverse=(mode == "max"))
        cut = ranked[max(1, len(ranked) // eta) - 1]
        kept[(rung, idx)] = score >= cut if mode == "max" else score <= cut
    return kept


def check_decisions(result, kept, rungs):
    """Each trial's status follows the replayed decisions: pruned at its first rejected rung,
    with that rung's score as its score, else finished."""
    for t in result.trials:
        steps = [s for s, _ in t["reports"]]
        assert steps == list(range(1, len(steps) + 1))
        rejected = [r for r in rungs if (r, t["index"]) in kept and not kept[(r, t["index"])]]
        if rejected:
            assert t["status"] == "pruned" and steps[-1] == rejected[0], t
            assert t["score"] == t["reports"][-1][1]
        else:
            assert t["status"] == "ok", t


def rung_rows(db):
    con = sqlite3.connect(db)
    rows = con.execute("SELECT rung, idx, score FROM rungs ORDER BY rowid").fetchall()
    con.close()
    return rows


def test_asha_rule_and_rungs():
    from fastdl.tune import ASHA
    a = ASHA(min_resource=1, eta=3)
    assert a.rungs_passed(0, 1) == [1] and a.rungs_passed(1, 2) == []
    assert a.rungs_passed(2, 27) == [3, 9, 27] and a.rungs_passed(0, 0) == []
    assert ASHA(2, 2, max_resource=16).rungs_passed(0, 100) == [2, 4, 8]
    assert a.keep(0.5, [0.5], "max")                          # alone at the rung: continues
    assert not a.keep(0.4, [0.5, 0.4], "max")                 # fewer than eta: only the best
    assert a.keep(0.6, [0.5, 0.4, 0.6], "max")
    six = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]                      # top 6 // 3 = 2 continue
    assert a.keep(0.8, six, "max") and not a.keep(0.7, six, "max")
    assert a.keep(0.5, six, "min") and not a.keep(0.6, six, "min")
    assert a.keep(0.8, [0.8, 0.8, 0.8], "max")                # ties are kept


@pytest.mark.parametrize("kwargs, words", [
    ({"min_resource": 0}, "min_resource=0"),
    ({"eta": 1}, "eta=1"),
    ({"eta": 2.5}, "eta=2.5"),
    ({"min_resource": 3, "max_resource": 3}, "max_resource=3"),
])
def test_bad_asha(kwargs, words):
    from fastdl.tune import ASHA
    with pytest.raises(ValueError, match=re.escape(words)):
        ASHA(**kwargs)


def test_bad_pruner_and_reports():
    from fastdl.tune import ReportCallback, Trial
    with pytest.raises(TypeError, match="pruner='hyperband'"):
        random_search(lr_objective, {"lr": log_uniform(1e-4, 1)}, 2, executor="serial",
                      pruner="hyperband")
    t = Trial(0, 0, {})
    with pytest.raises(ValueError, match="score=nan"):
        t.report(float("nan"))
    t.report(0.5, step=2)
    with pytest.raises(ValueError, match="step=2 is invalid"):
        t.report(0.6, step=2)
    with pytest.raises(TypeError, match="step=1.5"):
        t.report(0.6, step=1.5)
    assert t.reports == [(2, 0.5)] and not t.should_prune()
    with pytest.raises(TypeError, match="trial=3"):
        ReportCallback(3)
    with pytest.raises(ValueError, match="contradicts the search's mode='max'"):
        ReportCallback(t, monitor="val_loss")


def test_reports_are_stored_and_asha_prunes_serially(tmp_path):
    from fastdl.tune import ASHA
    db = tmp_path / "asha.sqlite"
    pruner = ASHA(min_resource=1, eta=3, max_resource=9)        # rungs at epochs 1 and 3
    r = random_search(asha_objective, {"q": uniform(0, 1)}, 15, seed=0, executor="serial",
                      storage=db, pruner=pruner)
    # the decisions, replayed from the trials in the order they ran
    entries = []
    for t in r.trials:
        for rung in (1, 3):
            if len(t["reports"]) >= rung:
                entries.append((rung, t["index"], t["config"]["q"] * rung / 9))
    check_decisions(r, replay_asha(entries, 3), (1, 3))
    pruned, ok = r.pruned_trials, r.ok_trials
    assert pruned and ok and len(pruned) + len(ok) == 15
    assert {len(t["reports"]) for t in pruned} <= {1, 3}
    assert all(len(t["reports"]) == 9 and t["score"] == t["config"]["q"] for t in ok)
    assert r.best["config"]["q"] == max(t["config"]["q"] for t in ok)
    assert max(t["config"]["q"] for t in r.trials) == r.best["config"]["q"]   # never pruned
    assert "pruned" in repr(r)
    # stored: statuses, per-epoch reports and rung scores; a rerun runs nothing again
    con = sqlite3.connect(db)
    assert con.execute("SELECT COUNT(*) FROM trials WHERE status='pruned'").fetchone()[0] == \
        len(pruned)
    n_reports = con.execute("SELECT COUNT(*) FROM reports").fetchone()[0]
    con.close()
    assert n_reports == sum(len(t["reports"]) for t in r.trials)
    assert sorted(rung_rows(db)) == sorted(entries)
    again = random_search(lambda c, t: 1 / 0, {"q": uniform(0, 1)}, 15, seed=0,
                          executor="serial", storage=db, pruner=pruner)
    assert [(t["status"], t["score"], t["reports"]) for t in again.trials] == \
        [(t["status"], t["score"], [tuple(x) for x in t["reports"]]) for t in r.trials]


def test_trial_pruned_exception_and_reports_without_pruner():
    r = random_search(pruned_by_raising, {"q": uniform(0, 1)}, 8, seed=1, executor="serial",
                      pruner="asha")
    assert r.pruned_trials and all(t["score"] == t["config"]["q"] for t in r.pruned_trials)
    assert all(t["score"] == t["config"]["q"] + 1.0 for t in r.ok_trials)
    # without a pruner nothing stops, reports are still recorded, None returns the last one
    r = random_search(asha_objective, {"q": uniform(0, 1)}, 4, seed=1, executor="serial")
    assert all(t["status"] == "ok" and len(t["reports"]) == 9 for t in r.trials)


def test_asha_shares_rungs_across_pool_workers(tmp_path):
    from fastdl.tune import ASHA
    db = tmp_path / "pool.sqlite"
    r = random_search(asha_objective, {"q": uniform(0, 1), "sleep": 0.01}, 10, seed=2,
                      n_workers=2, storage=db, pruner=ASHA(1, 3, max_resource=9))
    rows = rung_rows(db)                     # written by both workers, in arrival order
    assert len({i for _, i, _ in rows}) == 10
    check_decisions(r, replay_asha(rows, 3), (1, 3))
    assert r.pruned_trials and r.ok_trials
    assert max(t["config"]["q"] for t in r.trials) == r.best["config"]["q"]


def test_asha_with_a_thread_pool_and_no_storage(tmp_path):
    import concurrent.futures as cf
    import glob
    import tempfile
    from fastdl.tune import ASHA
    db = tmp_path / "threads.sqlite"
    with cf.ThreadPoolExecutor(2) as ex:
        r = random_search(asha_objective, {"q": uniform(0, 1), "sleep": 0.002}, 9, seed=4,
                          executor=ex, storage=db, pruner=ASHA(1, 3, max_resource=9))
    check_decisions(r, replay_asha(rung_rows(db), 3), (1, 3))
    assert r.pruned_trials and r.ok_trials
    # without storage the rungs go to a temporary file, removed at the end
    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "fastdl-asha-*")))
    r = random_search(asha_objective, {"q": uniform(0, 1)}, 9, seed=4, executor="serial",
                      pruner="asha")
    assert r.pruned_trials
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "fastdl-asha-*"))) <= before


def test_asha_resume_keeps_the_rungs(tmp_path):
    from fastdl.tune import ASHA
    from fastdl.tune.search import _Pruning
    db = tmp_path / "resume.sqlite"
    sp, pruner = {"q": uniform(0, 1)}, ASHA(1, 3, max_resource=9)
    first = random_search(asha_objective, sp, 6, seed=5, executor="serial", storage=db,
                          pruner=pruner)
    full = random_search(asha_objective, sp, 14, seed=5, n_workers=2, storage=db, pruner=pruner)
    assert [t["status"] for t in full.trials[:6]] == [t["status"] for t in first.trials]
    rows = rung_rows(db)                     # the first 6 trials' rungs come first
    n_first = sum((len(t["reports"]) >= 1) + (len(t["reports"]) >= 3) for t in first.trials)
    assert {i for _, i, _ in rows[:n_first]} == set(range(6))
    check_decisions(full, replay_asha(rows, 3), (1, 3))
    # a board without the storage file (Dask, or a temporary file) is seeded from the stored
    # reports before new trials start
    p = _Pruning(pruner, "serial", None, "k")
    try:
        p.seed(0, {t["index"]: t for t in first.trials})
        board = p.board.for_round(0)
        want = sorted(t["config"]["q"] / 9 for t in first.trials)
        assert sorted(board.scores(1)) == pytest.approx(want)
        assert len(board.scores(3)) == sum(len(t["reports"]) >= 3 for t in first.trials)
        board.close()
    finally:
        p.close()


def test_report_callback_in_fit_through_the_pool(tmp_path):
    from fastdl.tune import ASHA
    db = tmp_path / "fit.sqlite"
    r = random_search(moons_report_objective, {"lr": log_uniform(1e-3, 3)}, 6, seed=0,
                      n_workers=2, storage=db, mode="min", pruner=ASHA(1, 3, max_resource=9))
    assert all(t["status"] in ("ok", "pruned") for t in r.trials), [t["error"] for t in r.trials]
    check_decisions(r, replay_asha(rung_rows(db), 3, mode="min"), (1, 3))
    for t in r.trials:                       # one report per epoch, the fit's val_loss
        n = len(t["reports"])
        assert n == 9 if t["status"] == "ok" else n in (1, 3)
        assert t["score"] == pytest.approx(t["reports"][-1][1])


def test_more_bad_search_input():
    import concurrent.futures as cf
    import multiprocessing
    sp = {"lr": log_uniform(1e-4, 1)}
    for bad in (True, 2.5, -1):
        with pytest.raises(ValueError, match=re.escape(f"n_trials={bad!r}")):
            random_search(lr_objective, sp, bad, executor="serial")
    with pytest.raises(ValueError, match="n_trials=0"):
        coarse_to_fine(lr_objective, sp, 0, executor="serial")
    with pytest.raises(ValueError, match="rounds=0"):
        coarse_to_fine(lr_objective, sp, 2, rounds=0, executor="serial")
    with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as ex:
        with pytest.raises(TypeError, match="cannot be sent to worker processes"):
            random_search(lambda c: 0.0, sp, 2, executor=ex)
