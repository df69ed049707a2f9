"""Issue 16's sparse target as benchmark rows: fastdl.sklearn vs scikit-learn's MLPClassifier
fitting a tf-idf-like CSR (``_sparse_data.make_sparse_text``).

    python -m pytest benchmarks/test_bench_sparse.py -q -s     # scaled issue shape, timed
    python -m pytest benchmarks --benchmark-disable -q          # CI: tiny problem, once

Full mode: 20,000 train rows x 50,000 columns at 50 entries per row (the issue's columns and
density; a fifth of its 100,000 rows so that scikit-learn's rounds fit a few minutes: per-step
costs do not depend on the row count), 10 classes, hidden (256,), relu, adam (lr 1e-3),
batch 256, alpha 1e-4, one epoch, ``FASTDL_BENCH_ROUNDS`` (3) rounds per peer. The issue's
full size, peak RSS and a profile: ``benchmarks/sparse_check.py``. Small mode (CI): 2,000 rows
x 2,000 columns at 20 entries per row, hidden (64,), lr 1e-2, 5 epochs (the net converges
there; 1,000 dev rows).

Each peer is its own row (scikit-learn first); ``extra_info`` holds every time, samples/s,
``ratio_vs_sklearn`` (scikit-learn's median / this peer's, same run) and the dev accuracy.
Checked before timing: one SGD epoch without shuffling gives scikit-learn's ``loss_`` (rel.
1e-4), i.e. both train the same network on the same sparse input. Asserted in both modes:
fastdl's dev accuracy is within ``ACC_TOL`` points of scikit-learn's after the same epochs
from the same initial weights (the shuffles differ), and above chance by far. Targets
(>= 3x, within 1 point) are printed met / MISSED; ``FASTDL_BENCH_ASSERT=1`` turns a miss into
a failure (never in CI).
"""

from __future__ import annotations

import os
import statistics
import time
import warnings

import numpy as np
import pytest

pytest.importorskip("scipy")
sklearn = pytest.importorskip("sklearn")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLP  # noqa: E402

import _peers as P  # noqa: E402
from _sparse_data import make_sparse_text  # noqa: E402
from fastdl.sklearn import MLPClassifier as FdMLP  # noqa: E402

ASSERT_TARGETS = os.environ.get("FASTDL_BENCH_ASSERT", "") not in ("", "0")
ROUNDS = 1 if P.SMALL else int(os.environ.get("FASTDL_BENCH_ROUNDS", 3))
if P.SMALL:
    DATA = dict(n=2_000, dev=1_000, n_features=2_000, nnz_per_row=20, topic_size=40,
                pool_size=200, topic_frac=0.2)
    HIDDEN, LR, EPOCHS = 64, 1e-2, 5
else:
    DATA = dict(n=20_000, dev=5_000, n_features=50_000, nnz_per_row=50)
    HIDDEN, LR, EPOCHS = 256, 1e-3, 1
PARAMS = dict(hidden_layer_sizes=(HIDDEN,), activation="relu", solver="adam",
              learning_rate_init=LR, batch_size=256, alpha=1e-4, tol=0.0, random_state=0,
              max_iter=EPOCHS, n_iter_no_change=EPOCHS + 1)
#: points of dev accuracy fastdl may trail or lead scikit-learn by (asserted): the two
#: trajectories differ only by shuffles and Adam's epsilon placement; measured gaps 0.0-0.8
#: points on the small problem (4 seeds) and 0.03 at the issue's size
ACC_TOL = 2.0
TARGET_SPEED, TARGET_ACC = 3.0, 1.0
GROUP = (f"issue 16: sparse fit ({DATA['n']:,} x {DATA['n_features']:,} CSR, "
         f"{DATA['nnz_per_row']} per row, {HIDDEN} hidden, adam, batch 256)")
_MEDIANS: dict = {}
_ACC: dict = {}


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kw)


@pytest.fixture(scope="module")
def data():
    kw = {k: v for k, v in DATA.items() if k not in ("n", "dev")}
    X, y = make_sparse_text(DATA["n"] + DATA["dev"], seed=0, **kw)
    n = DATA["n"]
    return X[:n], y[:n], X[n:], y[n:]


@pytest.fixture(scope="module", autouse=True)
def _threads():
    P.set_threads(P.THREADS)
    if not P.SMALL:
        P.wait_until_quiet(float(os.environ.get("FASTDL_BENCH_WAIT_QUIET", 60)))


def _fit_score(cls, data):
    Xtr, ytr, Xdev, ydev = data
    est = _quiet(cls(**PARAMS).fit, Xtr, ytr)
    assert est.n_iter_ == EPOCHS
    return est.score(Xdev, ydev)


@pytest.mark.parametrize("peer", ["sklearn", "fastdl"])
def test_sparse_fit(benchmark, peer, data):
    Xtr, ytr, Xdev, ydev = data
    cls = FdMLP if peer == "fastdl" else SkMLP
    if peer == "fastdl":            # correctness before timing: the same network is trained
        kw = dict(PARAMS, solver="sgd", learning_rate_init=0.01, shuffle=False, max_iter=1)
        a = _quiet(FdMLP(**kw).fit, Xtr[:512], ytr[:512])
        b = _quiet(SkMLP(**kw).fit, Xtr[:512], ytr[:512])
        assert a.loss_ == pytest.approx(b.loss_, rel=1e-4)
        _quiet(FdMLP(**dict(PARAMS, max_iter=1)).fit, Xtr[:256], ytr[:256])  # load kernels
    times = []

    def fit():
        P.settle(0.5)
        est = cls(**PARAMS)
        t0 = time.perf_counter()
        _quiet(est.fit, Xtr, ytr)
        times.append(time.perf_counter() - t0)
        assert est.n_iter_ == EPOCHS
        _ACC[peer] = est.score(Xdev, ydev)

    benchmark.group = GROUP
    benchmark.pedantic(fit, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    med = statistics.median(times)
    _MEDIANS[peer] = med
    sk = _MEDIANS.get("sklearn")
    ratio = None if sk is None else sk / med
    info = dict(median_s=med, best_s=min(times), times_s=list(times),
                samples_per_s=Xtr.shape[0] * EPOCHS / med, ratio_vs_sklearn=ratio,
                dev_accuracy=_ACC[peer], epochs=EPOCHS, threads=P.THREADS,
                date=time.strftime("%Y-%m-%d %H:%M"))
    shown = ""
    if peer == "fastdl":
        if "sklearn" not in _ACC:           # scikit-learn's row deselected: its accuracy still
            _ACC["sklearn"] = _fit_score(SkMLP, data)
        gap = 100 * (_ACC["fastdl"] - _ACC["sklearn"])
        info["accuracy_gap_points"] = gap
        chance = 100.0 / np.unique(ytr).shape[0]
        assert 100 * _ACC["fastdl"] > chance + 30, _ACC    # learned, not near chance (10%)
        assert abs(gap) <= ACC_TOL, _ACC
        info["target_accuracy"] = (f"within {TARGET_ACC:g} point of sklearn: "
                                   f"{'met' if abs(gap) <= TARGET_ACC else 'MISSED'}")
        if ratio is not None:
            info["target"] = (f">= {TARGET_SPEED:g}x sklearn: "
                              f"{'met' if ratio >= TARGET_SPEED else 'MISSED'}")
            shown = f", {ratio:.2f}x sklearn ({info['target']})"
        if ASSERT_TARGETS and not P.SMALL:
            assert abs(gap) <= TARGET_ACC, info
            assert ratio is None or ratio >= TARGET_SPEED, info
        shown += f", accuracy gap {gap:+.2f} points ({info['target_accuracy']})"
    benchmark.extra_info.update(info)
    print(f"\n{GROUP} | {peer}: median {med:.3f} s, best {min(times):.3f} s, "
          f"{Xtr.shape[0] * EPOCHS / med:,.0f} samples/s, dev accuracy "
          f"{100 * _ACC[peer]:.2f}%{shown}")
