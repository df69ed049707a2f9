"""Hyperparameter search throughput (issue 6, "Benchmarks"): process-pool scaling and the
per-trial overhead of a Dask LocalCluster.

    python benchmarks/tune_bench.py            # full: prints both tables
    python benchmarks/tune_bench.py --small    # seconds (what CI's smoke run does)
    python -m pytest benchmarks/test_bench_tune.py -q -s

1. **Scaling.** ``TRIALS`` (16) trials of a small net (moons, 1,600 train rows, 2-32-32-1 ReLU,
   Adam, batch 64, ``EPOCHS`` epochs: ~1-2 s per trial on one core) run through
   ``fd.tune.random_search`` on a spawn process pool of 1 worker, then of 2 workers, with Numba
   and BLAS threads per worker = cores // workers (as the default pool sets them). Every trial
   does the same work (lr and β1 are sampled; the architecture is fixed), and both runs draw the
   same 16 configs (same seed). The pool is started and warmed (fastdl imported and its kernels
   loaded in every worker) *before* the clock starts; that startup is reported separately.
   Reported: wall time, trials per minute, the ratio 2 workers / 1 worker (target >= 1.8), the
   median trial duration inside the workers, the workers' CPU seconds per trial and the cores
   they got (CPU / wall: ~``workers`` on a quiet machine), and the machine's foreign load.
2. **Per-trial overhead.** ``N_TRIVIAL`` trials of a trivial objective (returns a number) on
   (a) the in-process executor (``executor="serial"``), (b) the local process pool (2 workers),
   (c) a Dask ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)``:
   overhead per trial = (wall time − Σ objective time inside the workers) / N — what the search
   machinery (sampling, submission, transport, result handling, storage) costs per trial. Cluster
   startup is reported separately. Target on Dask: <= 50 ms.

Timings are medians of ``ROUNDS`` rounds; nothing is asserted about speed unless
``FASTDL_BENCH_ASSERT=1``.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import statistics
import sys
import time

SMALL = os.environ.get("FASTDL_BENCH_SMALL", "") not in ("", "0") or "--small" in sys.argv
TRIALS = 4 if SMALL else 16
EPOCHS = 10 if SMALL else 2500
ROUNDS = 1 if SMALL else 3
N_TRIVIAL = 10 if SMALL else 200
CORES = os.cpu_count() or 1


# ------------------------------------------------------------------ objectives (module level:
# spawned workers and Dask workers import them by name)

_DATA = {}


def _moons():
    if "d" not in _DATA:
        import fastdl as fd
        X, y = fd.data.make_moons(2000, noise=0.2, seed=0)
        s = fd.data.split(X, y, ratios=(0.8, 0.2), seed=0)
        _DATA["d"] = (s.train, s.dev)
    return _DATA["d"]


def small_net_objective(config):
    """One trial: a 2-32-32-1 net trained for config["epochs"] epochs; the dev accuracy."""
    import fastdl as fd
    (Xt, yt), (Xd, yd) = _moons()
    model = fd.Sequential([fd.Dense(32, activation="relu"), fd.Dense(32, activation="relu"),
                           fd.Dense(1, activation="sigmoid")], input_dim=2, seed=0)
    model.fit(Xt, yt, optimizer=fd.optim.Adam(lr=config["lr"], beta1=config["beta1"]),
              epochs=config["epochs"], batch_size=64, verbose=0)
    return model.evaluate(Xd, yd)["accuracy"]


def trivial_objective(config):
    return config["x"]


def _warm(_):
    """Run in each worker before timing: imports fastdl and loads the kernels (from Numba's
    cache after the first process compiled them)."""
    small_net_objective({"lr": 0.01, "beta1": 0.9, "epochs": 1})
    time.sleep(0.3)          # keeps this worker busy so the next warm-up lands on another one
    return os.getpid()


def _space(epochs):
    import fastdl as fd
    return {"lr": fd.tune.log_uniform(1e-3, 1e-1), "beta1": fd.tune.one_minus_log(0.8, 0.99),
            "epochs": epochs}


def _pool(workers):
    from fastdl.tune.search import _init_worker
    threads = max(1, CORES // workers)
    return cf.ProcessPoolExecutor(max_workers=workers,
                                  mp_context=multiprocessing.get_context("spawn"),
                                  initializer=_init_worker, initargs=(threads,))


def _peers():
    try:
        import _peers as P
    except ImportError:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import _peers as P
    return P


# ------------------------------------------------------------------ 1. scaling


def scaling(trials=TRIALS, epochs=EPOCHS, rounds=ROUNDS, worker_counts=(1, 2)):
    """{workers: {...}} for each worker count: startup_s, wall_s (median; walls_s: every
    round), trials_per_min,
    trial_s (median duration inside the workers), foreign load, best score (a check that both
    runs did the same work)."""
    import fastdl as fd
    P = _peers()
    out = {}
    space = _space(epochs)
    for workers in worker_counts:
        t0 = time.perf_counter()
        ex = _pool(workers)
        pids = set(ex.map(_warm, range(workers)))
        startup = time.perf_counter() - t0
        walls, durs, loads, results, cpus = [], [], [], [], []
        P._LIVE_WORKERS.update(pids)     # the pool's CPU time is ours, not foreign load
        try:
            for _ in range(rounds):
                with P.MachineLoad() as load:
                    c, t = P.process_cpu(pids), time.perf_counter()
                    r = fd.tune.random_search(small_net_objective, space, trials, seed=0,
                                              executor=ex)
                    walls.append(time.perf_counter() - t)
                    cpus.append(P.process_cpu(pids) - c)
                loads.append(load.foreign)
                durs += [tr["duration"] for tr in r.trials]
                results.append(r)
        finally:
            P._LIVE_WORKERS.difference_update(pids)
            ex.shutdown(wait=True)
        assert all(tr["status"] == "ok" for r in results for tr in r.trials), \
            [tr["error"] for r in results for tr in r.trials]
        wall = statistics.median(walls)
        out[workers] = {"workers": workers, "threads": max(1, CORES // workers),
                        "processes": len(pids), "startup_s": startup, "wall_s": wall,
                        "walls_s": walls,
                        "trials_per_min": 60.0 * trials / wall,
                        "trial_s": statistics.median(durs),
                        # CPU the workers got: cores_used near `workers` means a quiet machine;
                        # cpu_per_trial equal for 1 and 2 workers means no contention between them
                        "cores_used": statistics.median(cp / w for cp, w in zip(cpus, walls)),
                        "cpu_per_trial_s": statistics.median(cpus) / trials,
                        "foreign_load": max((x for x in loads if x is not None), default=None),
                        "scores": [tr["score"] for tr in results[0].trials]}
    return out


# ------------------------------------------------------------------ 2. overhead per trial


def _overhead(executor, n, **kw):
    import fastdl as fd
    space = {"x": fd.tune.uniform(0, 1)}
    t = time.perf_counter()
    r = fd.tune.random_search(trivial_objective, space, n, seed=0, executor=executor, **kw)
    wall = time.perf_counter() - t
    assert all(tr["status"] == "ok" for tr in r.trials), [tr["error"] for tr in r.trials]
    inside = sum(tr["duration"] for tr in r.trials)
    return {"wall_s": wall, "objective_s": inside, "overhead_ms": 1e3 * (wall - inside) / n}


def overhead(n=N_TRIVIAL, rounds=ROUNDS, dask=True):
    """{executor: {"overhead_ms" (median), "wall_s", "startup_s", "walls_s" and
    "overheads_ms" (every round), "n" (trials per round)}}."""
    rows = {}

    def median_of(fn):
        runs = [fn() for _ in range(rounds)]
        best = statistics.median(r["overhead_ms"] for r in runs)
        return {"overhead_ms": best, "wall_s": statistics.median(r["wall_s"] for r in runs),
                "walls_s": [r["wall_s"] for r in runs], "n": n,
                "overheads_ms": [r["overhead_ms"] for r in runs]}

    rows["in-process (serial)"] = {**median_of(lambda: _overhead("serial", n)), "startup_s": 0.0}
    t0 = time.perf_counter()
    ex = _pool(2)
    list(ex.map(_warm, range(2)))
    startup = time.perf_counter() - t0
    try:
        rows["process pool, 2 workers"] = {**median_of(lambda: _overhead(ex, n)),
                                           "startup_s": startup}
    finally:
        ex.shutdown(wait=True)
    if dask:
        import tempfile
        from distributed import Client, LocalCluster
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp, \
                LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                             dashboard_address=None, local_directory=tmp) as cluster, \
                Client(cluster) as client:
            _overhead(client, 4)                     # warm: first task ships the function
            startup = time.perf_counter() - t0
            rows["Dask LocalCluster, 2 workers"] = {**median_of(lambda: _overhead(client, n)),
                                                    "startup_s": startup}
    return rows


# ------------------------------------------------------------------ report


def print_scaling(res):
    print(f"\n{TRIALS} trials of the 2-32-32-1 net ({EPOCHS} epochs each), {CORES} cores:")
    print(f"{'workers':>8} {'threads':>8} {'startup s':>10} {'wall s':>8} {'trials/min':>11} "
          f"{'trial s':>8} {'cpu/trial s':>12} {'cores used':>11} {'foreign':>8}")
    for r in res.values():
        fl = "n/a" if r["foreign_load"] is None else f"{100 * r['foreign_load']:.0f}%"
        print(f"{r['workers']:>8} {r['threads']:>8} {r['startup_s']:>10.2f} {r['wall_s']:>8.2f} "
              f"{r['trials_per_min']:>11.1f} {r['trial_s']:>8.2f} {r['cpu_per_trial_s']:>12.2f} "
              f"{r['cores_used']:>11.2f} {fl:>8}")
    if 1 in res and 2 in res:
        print(f"ratio 2 workers / 1 worker (trials per minute): "
              f"{res[2]['trials_per_min'] / res[1]['trials_per_min']:.2f}x (target >= 1.8x)")


def print_overhead(rows):
    print(f"\nper-trial overhead, {N_TRIVIAL} trivial trials:")
    print(f"{'executor':<32} {'overhead ms':>12} {'wall s':>8} {'startup s':>10}")
    for name, r in rows.items():
        print(f"{name:<32} {r['overhead_ms']:>12.2f} {r['wall_s']:>8.3f} {r['startup_s']:>10.2f}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    print_scaling(scaling())
    try:
        import distributed  # noqa: F401
        have_dask = True
    except ImportError:
        have_dask = False
        print("\n(distributed is not installed: the Dask row is skipped; pip install "
              "'fastdl[dist]')")
    print_overhead(overhead(dask=have_dask))
