"""Hyperparameter search (issue 6, "Benchmarks"); the measurements live in ``tune_bench.py``
(also a script: ``python benchmarks/tune_bench.py``), whose docstring says what is measured.

    python -m pytest benchmarks/test_bench_tune.py -q -s           # full: 16 trials of ~1-2 s
    python -m pytest benchmarks --benchmark-disable -q             # CI: 4 tiny trials, once

Targets (checked only with ``FASTDL_BENCH_ASSERT=1``; the figures go to RESULTS_tune.md):
2 local workers give >= 1.8x the trials per minute of 1 worker; per-trial overhead on a Dask
LocalCluster <= 50 ms.
"""

from __future__ import annotations

import importlib.util
import math
import os

import pytest

import tune_bench as TB

ASSERT_TARGETS = os.environ.get("FASTDL_BENCH_ASSERT", "") not in ("", "0")


def test_process_pool_scaling(benchmark):
    benchmark.group = "tune: 16 trials, 1 vs 2 workers"
    res = benchmark.pedantic(TB.scaling, rounds=1, iterations=1)
    TB.print_scaling(res)
    one, two = res[1], res[2]
    # correctness: both pools ran the same configs and got the same scores (training is
    # deterministic), in as many worker processes as asked
    assert one["scores"] == two["scores"] and len(one["scores"]) == TB.TRIALS
    assert one["processes"] == 1 and two["processes"] == 2
    assert one["threads"] * 1 <= max(1, TB.CORES) and two["threads"] * 2 <= max(2, TB.CORES)
    ratio = two["trials_per_min"] / one["trials_per_min"]
    benchmark.extra_info.update({"ratio_2_vs_1": ratio, "startup_s": {1: one["startup_s"],
                                                                      2: two["startup_s"]},
                                 "trials_per_min": {1: one["trials_per_min"],
                                                    2: two["trials_per_min"]},
                                 "trial_s": one["trial_s"]})
    if ASSERT_TARGETS and not TB.SMALL:
        assert ratio >= 1.8, f"2 workers gave {ratio:.2f}x the trials/min of 1 (target 1.8x)"


def test_per_trial_overhead(benchmark):
    benchmark.group = "tune: per-trial overhead"
    have_dask = importlib.util.find_spec("distributed") is not None
    rows = benchmark.pedantic(TB.overhead, kwargs={"dask": have_dask}, rounds=1, iterations=1)
    TB.print_overhead(rows)
    for r in rows.values():                  # every trial ran and was timed (checked inside)
        assert r["wall_s"] > 0 and math.isfinite(r["overhead_ms"])
    benchmark.extra_info.update({k: v["overhead_ms"] for k, v in rows.items()})
    if not have_dask:
        pytest.skip("distributed is not installed: the Dask row was not measured")
    if ASSERT_TARGETS and not TB.SMALL:
        ms = rows["Dask LocalCluster, 2 workers"]["overhead_ms"]
        assert ms <= 50, f"Dask per-trial overhead {ms:.1f} ms (target <= 50 ms)"
