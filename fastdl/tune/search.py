"""Random search and coarse-to-fine search ("caviar": many models at once).

Trials run on a local process pool by default (spawn start method; each worker sets Numba's
thread count so workers × threads ≤ cores), in-process with ``executor="serial"``, on any
``concurrent.futures.Executor``, or on a Dask cluster through a ``distributed.Client`` (the
``dist`` extra). Objectives sent to processes must be picklable: a module-level
function (not a lambda, a closure or a function defined in an interactive ``__main__``).

The k-th trial's config is drawn from ``numpy.random.default_rng([seed, round, k])``, so it depends
only on (seed, round, k): the same seed gives the same trials on every executor, and a stored
search resumes exactly where it stopped.

An objective ``objective(config, trial)`` may report per-epoch scores (``trial.report``, or
``fd.tune.ReportCallback`` in ``fit``); with ``pruner=fd.tune.ASHA()`` poor trials are stopped at
the rungs of asynchronous successive halving (``pruning.py``, ``trial.py``).
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import math
import multiprocessing
import numbers
import os
import pickle
import sys
import tempfile
import time
import traceback

import numpy as np

from .pruning import DaskBoard, SQLiteBoard, check_pruner
from .space import Dimension, check_space, describe_space, sample_config
from .storage import TrialStore
from .trial import Trial, TrialPruned, wants_trial

__all__ = ["random_search", "coarse_to_fine", "SearchResult"]


# --------------------------------------------------------------------------------------------
# worker side


def _init_worker(threads):
    """Runs once in every new pool process: Numba and BLAS get ``threads`` threads each, so
    workers × threads ≤ cores (two workers each running 2 OpenBLAS threads on 2 cores would
    oversubscribe them)."""
    for var in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)      # for runtimes that start later in the worker
    try:
        import numba
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    except Exception:  # pragma: no cover - numba missing or threads already fixed
        pass
    from threadpoolctl import threadpool_limits     # a dependency of fastdl
    threadpool_limits(threads, user_api="blas")


def _run_trial(objective, config, ctx=None):
    """Runs one trial; never raises (the error becomes the trial's record). ``ctx``: index,
    round, mode, pruner, board (the shared rung scores) and whether the objective takes the
    trial. Returns (score, status, error, duration, reports)."""
    t0 = time.perf_counter()
    ctx = ctx or {}
    board = ctx.get("board")
    trial = Trial(ctx.get("index", 0), ctx.get("round", 0), dict(config), ctx.get("mode", "max"),
                  ctx.get("pruner"), board)
    try:
        if ctx.get("wants_trial"):
            score = objective(dict(config), trial)
        else:
            score = objective(dict(config))
        if trial.pruned:      # asked should_prune() and stopped: its last report is its score
            return trial.last_score, "pruned", None, time.perf_counter() - t0, trial.reports
        if score is None and trial.reports:
            score = trial.last_score
        if isinstance(score, bool) or not isinstance(score, numbers.Real) or not math.isfinite(score):
            raise ValueError(f"objective returned {score!r}; expected a finite real score")
        return float(score), "ok", None, time.perf_counter() - t0, trial.reports
    except TrialPruned:
        trial.pruned = True
        return trial.last_score, "pruned", None, time.perf_counter() - t0, trial.reports
    except Exception as e:  # noqa: BLE001 - a failing trial must not stop the search
        err = f"{type(e).__name__}: {e}"
        tb = traceback.format_exc(limit=3)
        return None, "failed", f"{err}\n{tb}", time.perf_counter() - t0, trial.reports
    finally:
        if board is not None:
            board.close()


# --------------------------------------------------------------------------------------------
# result


class SearchResult:
    """``trials``: list of dicts (index, round, config, score, status, error, duration, reports),
    in trial order; ``status`` is "ok" (finished), "pruned" (stopped early by the pruner; ``score``
    is its last reported score) or "failed" (``score`` None, ``error`` set); ``reports`` lists the
    ``(step, score)`` pairs the trial reported. ``best``: ``{"config", "score", "index", "round"}``
    of the best finished trial (None if none finished; pruned trials never count). ``top(k)``,
    ``to_dataframe()`` (pandas), ``plot(path)`` (matplotlib)."""

    def __init__(self, trials, space, mode):
        self.trials = trials
        self.space = space
        self.mode = mode

    @property
    def ok_trials(self):
        return [t for t in self.trials if t["status"] == "ok"]

    @property
    def pruned_trials(self):
        return [t for t in self.trials if t["status"] == "pruned"]

    @property
    def best(self):
        ok = self.ok_trials
        if not ok:
            return None
        key = (lambda t: t["score"]) if self.mode == "max" else (lambda t: -t["score"])
        t = max(ok, key=key)
        return {"config": dict(t["config"]), "score": t["score"], "index": t["index"],
                "round": t["round"]}

    def top(self, k):
        """The k best successful trials, best first."""
        return sorted(self.ok_trials, key=lambda t: t["score"], reverse=self.mode == "max")[:k]

    def to_dataframe(self):
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("SearchResult.to_dataframe() needs pandas, which is not installed; "
                              "`pip install pandas` (or use result.trials, a list of dicts)") from None
        rows = []
        for t in self.trials:
            row = {"index": t["index"], "round": t["round"]}
            row.update({f"config.{k}": v for k, v in t["config"].items()})
            row.update({"score": t["score"], "status": t["status"], "error": t["error"],
                        "duration": t["duration"], "reports": list(t.get("reports", []))})
            rows.append(row)
        return pd.DataFrame(rows)

    def plot(self, path=None):
        """Score against each sampled hyperparameter, one panel each; log x-axis where it was
        sampled on a log scale (``one_minus_log`` dims are shown as 1 − x on a log axis). Saves to
        ``path`` when given; returns the ``matplotlib.figure.Figure`` (no pyplot state, no backend
        switch)."""
        try:
            from matplotlib.figure import Figure
            from matplotlib.ticker import NullFormatter
        except ImportError:
            raise ImportError("SearchResult.plot() needs matplotlib: `pip install fastdl[plot]`") from None
        dims = [(k, d) for k, d in self.space.items() if isinstance(d, Dimension)]
        ok = self.ok_trials
        fig = Figure(figsize=(4 * max(1, len(dims)), 3.4))
        axes = fig.subplots(1, max(1, len(dims)), squeeze=False)
        for ax, (name, dim) in zip(axes[0], dims):
            xs = [t["config"][name] for t in ok]
            ys = [t["score"] for t in ok]
            label = name
            if dim.scale == "categorical":
                pos = {repr(o): i for i, o in enumerate(dim.options)}
                ax.set_xticks(range(len(dim.options)), [str(o) for o in dim.options])
                xs = [pos.get(repr(x), -1) for x in xs]
            elif dim.scale == "one_minus_log":
                xs = [1.0 - x for x in xs]
                label = f"1 - {name}"
                ax.set_xscale("log")
                ax.set_xlim(1.0 - dim.hi, 1.0 - dim.lo)
            elif dim.scale == "log":
                ax.set_xscale("log")
                ax.set_xlim(dim.lo, dim.hi)
            else:
                ax.set_xlim(dim.lo, dim.hi)
            if dim.scale in ("log", "one_minus_log"):
                ax.xaxis.set_minor_formatter(NullFormatter())
            ax.scatter(xs, ys, s=14, alpha=0.75, label="finished")
            pr = [t for t in self.pruned_trials if t["score"] is not None]
            if pr:    # stopped early: shown at their last reported score
                px = [t["config"][name] for t in pr]
                if dim.scale == "categorical":
                    px = [pos.get(repr(x), -1) for x in px]
                elif dim.scale == "one_minus_log":
                    px = [1.0 - x for x in px]
                ax.scatter(px, [t["score"] for t in pr], s=14, marker="x", alpha=0.6,
                           color="grey", label="pruned")
                ax.legend(fontsize=7)
            ax.set_xlabel(label)
            ax.set_ylabel("score")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path)
        return fig

    def __repr__(self):
        n_ok, n_pr = len(self.ok_trials), len(self.pruned_trials)
        return (f"SearchResult({len(self.trials)} trials, {n_ok} ok, {n_pr} pruned, "
                f"best={self.best!r})")


# --------------------------------------------------------------------------------------------
# driver


def _check_common(objective, space, n_trials, mode, n_workers):
    if not callable(objective):
        raise TypeError(f"objective={objective!r} must be callable: objective(config) -> score")
    check_space(space)
    if isinstance(n_trials, bool) or not isinstance(n_trials, numbers.Integral) or n_trials < 1:
        raise ValueError(f"n_trials={n_trials!r} is invalid; expected an integer >= 1")
    if mode not in ("max", "min"):
        raise ValueError(f"mode={mode!r} is invalid; expected 'max' or 'min'")
    if n_workers is not None and (isinstance(n_workers, bool) or not isinstance(n_workers, numbers.Integral)
                                  or n_workers < 1):
        raise ValueError(f"n_workers={n_workers!r} is invalid; expected an integer >= 1 or None")


def _default_workers(n_trials):
    cores = os.cpu_count() or 1
    return max(1, min(cores, n_trials))


def _make_executor(executor, n_trials, n_workers):
    """Returns (executor or None for serial, owned flag)."""
    if executor == "serial":
        return None, False
    if executor is None or executor == "process":
        workers = n_workers or _default_workers(n_trials)
        threads = max(1, (os.cpu_count() or 1) // workers)
        ex = cf.ProcessPoolExecutor(max_workers=workers,
                                    mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_init_worker, initargs=(threads,))
        return ex, True
    if isinstance(executor, cf.Executor):
        return executor, False
    if _is_dask_client(executor):
        # Dask's concurrent.futures view of the cluster; the client stays the caller's
        return executor.get_executor(), False
    raise TypeError(f"executor={executor!r} is invalid; expected None (local process pool), "
                    "'serial', 'process', a concurrent.futures.Executor or a dask "
                    "distributed.Client")


def _is_dask_client(obj):
    return (type(obj).__module__.split(".")[0] == "distributed" and type(obj).__name__ == "Client"
            and hasattr(obj, "get_executor"))


def _check_picklable(objective, ex):
    if ex is None or isinstance(ex, cf.ThreadPoolExecutor):
        return
    if type(ex).__module__.split(".")[0] == "distributed":
        try:  # Dask sends functions with cloudpickle (lambdas and closures are fine)
            import cloudpickle
            cloudpickle.dumps(objective)
        except Exception as e:  # noqa: BLE001
            raise TypeError(f"objective={objective!r} cannot be sent to the Dask workers ({e})") from None
        return
    hint = ("define it as a module-level function of an importable module (not a lambda, closure "
            "or function typed into an interactive session), or pass executor='serial'")
    try:
        pickle.dumps(objective)
    except Exception as e:  # noqa: BLE001
        raise TypeError(f"objective={objective!r} cannot be sent to worker processes ({e}); "
                        f"{hint}") from None
    main = sys.modules.get("__main__")
    if getattr(objective, "__module__", None) == "__main__" and not getattr(main, "__file__", None):
        raise TypeError(f"objective={objective!r} is defined in an interactive __main__, which spawned "
                        f"worker processes cannot import; {hint}")


def _search_key(kind, seed, space, mode, extra):
    blob = json.dumps({"kind": kind, "seed": seed, "space": describe_space(space), "mode": mode,
                       **extra}, sort_keys=True, default=repr)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class _Pruning:
    """The pruner and the board of shared rung scores for one search (see ``pruning.py``):
    a Dask board when the executor is a Dask client, else the ``rungs`` table of the storage
    file, or of a temporary SQLite file removed at the end."""

    def __init__(self, pruner, executor, storage, key):
        self.pruner, self.client, self._tmp = pruner, None, None
        if _is_dask_client(executor):
            self.client = executor
            self.board = DaskBoard()
            self.board.setup(executor)
        else:
            if storage is None:
                fd_, self._tmp = tempfile.mkstemp(prefix="fastdl-asha-", suffix=".sqlite")
                os.close(fd_)
                storage = self._tmp
            self.board = SQLiteBoard(storage, key, 0)

    def seed(self, round_, done):
        """Enter the rung scores of trials finished in an earlier run (a resumed search)."""
        board = self.board.for_round(round_)
        try:
            for t in done.values():
                prev = 0
                for step, score in t.get("reports", ()):
                    for rung in self.pruner.rungs_passed(prev, step):
                        board.add(rung, t["index"], score)
                    prev = step
        finally:
            board.close()

    def close(self):
        if self.client is not None:
            self.board.teardown(self.client)
        if self._tmp is not None:
            for suffix in ("", "-wal", "-shm"):
                try:
                    os.remove(self._tmp + suffix)
                except OSError:
                    pass


def _run_round(objective, space, n_trials, seed, round_, ex, store, key, mode="max",
               pruning=None):
    """Runs trials 0..n_trials-1 of one round (skipping stored ones); returns them in index order."""
    configs = [sample_config(space, np.random.default_rng([seed, round_, k])) for k in range(n_trials)]
    done = store.load(key, round_) if store is not None else {}
    trials = {k: t for k, t in done.items() if k < n_trials}
    if pruning is not None and trials:
        pruning.seed(round_, trials)
    takes_trial = wants_trial(objective)

    def ctx(k):
        c = {"index": k, "round": round_, "mode": mode, "wants_trial": takes_trial}
        if pruning is not None:
            c.update(pruner=pruning.pruner, board=pruning.board.for_round(round_))
        return c

    def record(k, out):
        score, status, error, dur = out[:4]
        t = {"index": k, "round": round_, "config": configs[k], "score": score, "status": status,
             "error": error, "duration": dur,
             "reports": [(int(a), float(b)) for a, b in (out[4] if len(out) > 4 else ())]}
        trials[k] = t
        if store is not None:
            store.save(key, t)

    todo = [k for k in range(n_trials) if k not in trials]
    if ex is None:
        for k in todo:
            record(k, _run_trial(objective, configs[k], ctx(k)))
    else:
        futures = {}
        for k in todo:
            try:
                futures[ex.submit(_run_trial, objective, configs[k], ctx(k))] = k
            except Exception as e:  # noqa: BLE001 - e.g. a broken pool
                record(k, (None, "failed", f"could not submit: {type(e).__name__}: {e}", 0.0))
        for fut in cf.as_completed(futures):
            k = futures[fut]
            try:
                out = fut.result()
            except Exception as e:  # noqa: BLE001 - worker died, unpicklable result, ...
                out = (None, "failed", f"worker error: {type(e).__name__}: {e}", 0.0)
            record(k, out)
    return [trials[k] for k in range(n_trials)]


def random_search(objective, space, n_trials, seed=0, executor=None, storage=None, mode="max",
                  n_workers=None, pruner=None):
    """Random search (never a grid): ``n_trials`` configs drawn from ``space``, each scored by
    ``objective(config) -> float`` — or ``objective(config, trial)``, which may report per-epoch
    scores (``trial.report(score, step)``, ``fd.tune.ReportCallback``) and return None to use
    the last one.

    ``mode``: ``"max"`` (accuracy) or ``"min"`` (loss). ``executor``: None = local spawn process
    pool with ``n_workers`` workers (default min(cores, n_trials)); ``"serial"``; any
    ``concurrent.futures.Executor`` (not shut down here); or a Dask ``distributed.Client``. ``storage``: path of an SQLite file; each
    finished trial (ok or failed) is written as it completes, and rerunning the same search (same
    seed, space, mode) skips the stored trials. A trial that raises is recorded as failed and the
    search goes on. ``pruner``: None, ``"asha"`` or ``fd.tune.ASHA(min_resource, eta)``: trials
    whose reported score at a rung is not in the top 1/eta so far are told to stop
    (``trial.should_prune()``) and recorded as "pruned". Returns a :class:`SearchResult`.
    """
    _check_common(objective, space, n_trials, mode, n_workers)
    pruner = check_pruner(pruner)
    ex, owned = _make_executor(executor, n_trials, n_workers)
    store = TrialStore(storage) if storage is not None else None
    pruning = None
    try:
        _check_picklable(objective, ex)
        key = _search_key("random", seed, space, mode, _pruner_key(pruner))
        if pruner is not None:
            pruning = _Pruning(pruner, executor, storage, key)
        trials = _run_round(objective, space, n_trials, seed, 0, ex, store, key, mode, pruning)
    finally:
        if owned:
            ex.shutdown(wait=True, cancel_futures=True)
        if store is not None:
            store.close()
        if pruning is not None:
            pruning.close()
    return SearchResult(trials, space, mode)


def _pruner_key(pruner):
    # no entry without a pruner, so searches stored before pruning existed keep their key
    return {} if pruner is None else {"pruner": pruner.describe()}


def coarse_to_fine(objective, space, n_trials, rounds=3, top_k=5, seed=0, executor=None,
                   storage=None, mode="max", n_workers=None, pruner=None):
    """Coarse-to-fine search: round 0 is a random search over ``space``; every later round narrows
    each dimension's box around the ``top_k`` best trials so far (on its own scale: log10 for log
    dimensions, log10(1 − x) for ``one_minus_log``; a ``choice`` keeps the options the top trials
    used) and draws ``n_trials`` new configs. Returns a :class:`SearchResult` with all
    ``rounds × n_trials`` trials (each has a ``round`` field); ``result.spaces`` lists each round's
    space. ``pruner`` as in :func:`random_search`; each round has its own rungs, and only finished
    trials steer the zoom."""
    _check_common(objective, space, n_trials, mode, n_workers)
    pruner = check_pruner(pruner)
    for name, v in (("rounds", rounds), ("top_k", top_k)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ValueError(f"{name}={v!r} is invalid; expected an integer >= 1")
    ex, owned = _make_executor(executor, n_trials, n_workers)
    store = TrialStore(storage) if storage is not None else None
    all_trials, spaces = [], []
    cur = dict(space)
    pruning = None
    try:
        _check_picklable(objective, ex)
        key = _search_key("coarse_to_fine", seed, space, mode,
                          {"n_trials": n_trials, "top_k": top_k, **_pruner_key(pruner)})
        if pruner is not None:
            pruning = _Pruning(pruner, executor, storage, key)
        for r in range(rounds):
            spaces.append(cur)
            all_trials += _run_round(objective, cur, n_trials, seed, r, ex, store, key, mode,
                                     pruning)
            top = SearchResult(all_trials, space, mode).top(top_k)
            if not top:
                continue  # nothing succeeded: sample the same box again
            cur = {k: (d.narrow([t["config"][k] for t in top]) if isinstance(d, Dimension) else d)
                   for k, d in cur.items()}
    finally:
        if owned:
            ex.shutdown(wait=True, cancel_futures=True)
        if store is not None:
            store.close()
        if pruning is not None:
            pruning.close()
    res = SearchResult(all_trials, space, mode)
    res.spaces = spaces
    return res
