"""Hyperparameter search (issue 6, "Benchmarks"); the measurements live in ``tune_bench.py``
(also a script: ``python benchmarks/tune_bench.py``), whose docstring says what is measured.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest \\
        benchmarks/test_bench_tune.py --benchmark-only [-s]     # full: 16 trials of ~1-2 s
    python -m pytest benchmarks --benchmark-disable -q             # CI: 4 tiny trials, once

Rows: each comparison is a pytest-benchmark group whose variants are its rows, so
``--benchmark-only`` prints them side by side and ``--benchmark-save`` / ``--benchmark-compare``
track each:

* "tune: 16 trials, 1 vs 2 workers": rows ``1 worker`` and ``2 workers``; a row's time is the
  wall time of one search divided by its trials (seconds per trial), one value per round, as
  ``tune_bench.scaling`` measured it (``perf_counter`` around ``random_search``; the pool is
  started and warmed before). The rounds of the two rows are not interleaved: each worker count
  has its own pool, and ``scaling`` runs all rounds of one before the other. ``extra_info``:
  ``trials_per_min``, ``ratio_vs_1_worker`` (this row's trials per minute / 1 worker's).
* "tune: per-trial overhead": rows ``in-process (serial)``, ``process pool, 2 workers`` and
  ``Dask LocalCluster, 2 workers`` (skipped without distributed); a row's time is the wall time
  of ``N_TRIVIAL`` trivial trials divided by their number, per round; ``extra_info``:
  ``overhead_ms`` (wall minus the objectives' own time, per trial, median).

pytest-benchmark receives those per-round times (``_peers.record_seconds``) rather than timing
the whole measurement itself, which would add pool start-up and warm-up to the rows.

Targets (checked only with ``FASTDL_BENCH_ASSERT=1``; the figures go to RESULTS_tune.md):
2 local workers give >= 1.8x the trials per minute of 1 worker; per-trial overhead on a Dask
LocalCluster <= 50 ms.
"""

from __future__ import annotations

import importlib.util
import math
import os
import statistics

import pytest

import _peers as P
import tune_bench as TB

ASSERT_TARGETS = os.environ.get("FASTDL_BENCH_ASSERT", "") not in ("", "0")
WORKER_ROWS = {"1 worker": 1, "2 workers": 2}
OVERHEAD_ROWS = ["in-process (serial)", "process pool, 2 workers", "Dask LocalCluster, 2 workers"]


def _scaling():
    res = TB.scaling()
    TB.print_scaling(res)
    one, two = res[1], res[2]
    # correctness: both pools ran the same configs and got the same scores (training is
    # deterministic), in as many worker processes as asked
    assert one["scores"] == two["scores"] and len(one["scores"]) == TB.TRIALS
    assert one["processes"] == 1 and two["processes"] == 2
    assert one["threads"] * 1 <= max(1, TB.CORES) and two["threads"] * 2 <= max(2, TB.CORES)
    return res


@pytest.mark.parametrize("row", list(WORKER_ROWS))
def test_process_pool_scaling(benchmark, row):
    benchmark.group = f"tune: {TB.TRIALS} trials, 1 vs 2 workers"
    res = P.group_rows("scaling", _scaling)
    r = res[WORKER_ROWS[row]]
    P.record_seconds(benchmark, [w / TB.TRIALS for w in r["walls_s"]])
    ratio = r["trials_per_min"] / res[1]["trials_per_min"]
    benchmark.extra_info.update({
        "row": row, "unit": "trial", "trials_per_min": r["trials_per_min"],
        "ratio_vs_1_worker": ratio, "startup_s": r["startup_s"], "trial_s": r["trial_s"],
        "cores_used": r["cores_used"], "cpu_per_trial_s": r["cpu_per_trial_s"],
        "foreign_load": r["foreign_load"], "trials": TB.TRIALS, "epochs": TB.EPOCHS})
    if ASSERT_TARGETS and not TB.SMALL and row == "2 workers":
        assert ratio >= 1.8, f"2 workers gave {ratio:.2f}x the trials/min of 1 (target 1.8x)"


def _overhead():
    have_dask = importlib.util.find_spec("distributed") is not None
    rows = TB.overhead(dask=have_dask)
    TB.print_overhead(rows)
    for r in rows.values():                  # every trial ran and was timed (checked inside)
        assert r["wall_s"] > 0 and math.isfinite(r["overhead_ms"])
    return rows


@pytest.mark.parametrize("row", OVERHEAD_ROWS)
def test_per_trial_overhead(benchmark, row):
    if row.startswith("Dask"):
        pytest.importorskip("distributed", reason="distributed is not installed: no Dask row")
    benchmark.group = "tune: per-trial overhead"
    rows = P.group_rows("overhead", _overhead)
    r = rows[row]
    P.record_seconds(benchmark, [w / r["n"] for w in r["walls_s"]])
    serial = rows["in-process (serial)"]
    benchmark.extra_info.update({
        "row": row, "unit": "trial", "overhead_ms": r["overhead_ms"],
        "overheads_ms": r["overheads_ms"], "startup_s": r["startup_s"], "trials": r["n"],
        "ratio_vs_serial": statistics.median(serial["walls_s"]) / statistics.median(
            r["walls_s"])})
    if ASSERT_TARGETS and not TB.SMALL and row.startswith("Dask"):
        ms = r["overhead_ms"]
        assert ms <= 50, f"Dask per-trial overhead {ms:.1f} ms (target <= 50 ms)"
