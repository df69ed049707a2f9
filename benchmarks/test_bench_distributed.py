"""Data-parallel training over MPI (issue 10): the pytest entry of distributed_check.py.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest \\
        benchmarks/test_bench_distributed.py --benchmark-only [-s]   # full (-s: the report)
    python -m pytest benchmarks --benchmark-disable -q               # CI: --quick smoke

The work happens in ``mpiexec`` subprocesses (``distributed_check.py``: 2 ranks x 1 thread vs
1 rank x 1 thread on 784-256-128-10, Adam, global batch 1024; allreduce time and bandwidth for
235,146 and 10,000,000 float32). Correctness is asserted (ranks bitwise identical, the 2-rank
final loss equal to the 1-rank one within float32 summation noise); speed is printed, never
asserted unless ``FASTDL_BENCH_ASSERT=1`` (target: ratio >= 1.7).

Rows (pytest-benchmark groups, so ``--benchmark-only`` prints them side by side and
``--benchmark-save`` / ``--benchmark-compare`` track each):

* "distributed: 784-256-128-10, Adam, global batch 1024": ``1 rank``, ``2 ranks`` and
  ``2 independent processes`` (the ceiling: two plain fits on half the data, no
  communication); a row's time is seconds per epoch of all the rows, one value per round, as
  rank 0 timed its epochs (a callback's ``perf_counter``); the three alternate round by round
  in ``distributed_check.drive``. ``extra_info``: ``samples_per_s``, ``ratio_vs_1_rank``.
* "distributed: allreduce <n> float32, 2 ranks": ``polled Iallreduce`` (what ``fit`` uses) and
  ``blocking Allreduce``; a row's time is one call (per round: the slowest rank's median over
  ``--reps`` calls); ``extra_info``: ``algbw_GB_per_s``.

pytest-benchmark receives those per-round times (``_peers.record_seconds``) rather than timing
the ``mpiexec`` runs itself (process start-up, warm-up epoch and checks are not the figure).
"""

import os
import shutil
import statistics
import sys

import pytest

import _peers as P

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
ASSERT_TARGETS = os.environ.get("FASTDL_BENCH_ASSERT", "") not in ("", "0")
TRAIN_ROWS = {"1 rank": "1", "2 ranks": "2", "2 independent processes": "independent"}
ALLREDUCE_ROWS = {"polled Iallreduce": "rounds_polled_s", "blocking Allreduce":
                  "rounds_blocking_s"}
SIZES = [25_000, 100_000] if P.SMALL else [235_146, 10_000_000]


def _need_mpi():
    pytest.importorskip("mpi4py")
    if not (os.path.exists(os.path.join(os.path.dirname(sys.executable), "mpiexec"))
            or shutil.which("mpiexec")):
        pytest.skip("no mpiexec (pip install 'fastdl[mpi]')")


def _measure():
    import distributed_check
    s = distributed_check.main(["--quick"] if P.SMALL else [])
    assert s["ranks_identical"]
    assert abs(s["final_loss_2ranks"] - s["final_loss_1rank"]) <= \
        1e-4 * abs(s["final_loss_1rank"])
    for v in s["allreduce"].values():
        assert v["polled_ms"] > 0 and v["algbw_GBs"] > 0
    assert sorted(s["allreduce"]) == SIZES, (sorted(s["allreduce"]), SIZES)
    return s


@pytest.mark.parametrize("row", list(TRAIN_ROWS))
def test_two_ranks_vs_one_rank(benchmark, row):
    _need_mpi()
    benchmark.group = "distributed: 784-256-128-10, Adam, global batch 1024"
    s = P.group_rows("distributed", _measure)
    rounds = s["rounds_epoch_s"]
    mine, one = rounds[TRAIN_ROWS[row]], rounds["1"]
    P.record_seconds(benchmark, mine)
    ratio = [a / b for a, b in zip(one, mine)]
    benchmark.extra_info.update(
        row=row, unit="epoch", rows=s["rows"], batch=s["batch"], params=s["params"],
        samples_per_s=s["rows"] / statistics.median(mine),
        ratio_vs_1_rank=statistics.median(ratio), rounds_epoch_s=mine,
        cpu_ratio=s["cpu_ratio"], ceiling_ratio=s["ceiling_ratio"],
        final_loss_1rank=s["final_loss_1rank"], final_loss_2ranks=s["final_loss_2ranks"])
    if ASSERT_TARGETS and not P.SMALL and row == "2 ranks":
        assert s["ratio"] >= 1.7, s


@pytest.mark.parametrize("row", list(ALLREDUCE_ROWS))
@pytest.mark.parametrize("n", SIZES, ids=[f"{n:,}" for n in SIZES])
def test_allreduce(benchmark, n, row):
    _need_mpi()
    benchmark.group = f"distributed: allreduce {n:,} float32, 2 ranks"
    s = P.group_rows("distributed", _measure)
    a = s["allreduce"][n]
    mine = a[ALLREDUCE_ROWS[row]]
    P.record_seconds(benchmark, mine)
    med = statistics.median(mine)
    benchmark.extra_info.update(
        row=row, unit="call", elements=n, algbw_GB_per_s=4 * n / med / 1e9,
        share_of_2rank_step=a["share_of_2rank_step"] if row.startswith("polled") else None,
        rounds_s=mine)
