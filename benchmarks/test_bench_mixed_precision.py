"""Mixed precision (issue 14) as pytest-benchmark rows: one group per (net, batch), one row per
trainer, so ``pytest benchmarks --benchmark-only`` prints them side by side and
``--benchmark-save`` / ``--benchmark-compare`` track each.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest \\
        benchmarks/test_bench_mixed_precision.py --benchmark-only --benchmark-columns=median

Rows (``_mixed.py``): fastdl float32, fastdl bfloat16, PyTorch float32 and PyTorch autocast
bfloat16 (both with fused Adam), same data and initial weights. A row's time is one epoch;
``extra_info`` holds samples/s, the bfloat16 GEMM provider and the ratio to the group's fastdl
float32 row and PyTorch autocast row measured earlier in the same run (rows run in that order).
``mixed_precision_check.py`` interleaves the four round by round and prints the GEMM ceilings:
use it for the figures in ``RESULTS.md``. Small mode (``--benchmark-disable``, CI): tiny data,
one epoch per row, PyTorch rows skipped without torch.
"""

from __future__ import annotations

import pytest

import _peers as P  # first: records the user's OMP_WAIT_POLICY
import _mixed as MX  # noqa: E402

CASES = [("784-256-128-10", 64), ("784-256-128-10", 256), ("784-256-128-10", 1024),
         ("784-2048-2048-10", 256)]
M = 1024 if P.SMALL else 16384
ROUNDS = 1 if P.SMALL else 5
_seconds: dict = {}


@pytest.fixture(scope="module", autouse=True)
def _threads():
    P.set_threads(P.THREADS)


@pytest.mark.parametrize("row", MX.ROWS)
@pytest.mark.parametrize("net,batch", CASES if not P.SMALL else CASES[:2],
                         ids=lambda v: str(v))
def test_adam_training(benchmark, net, batch, row):
    X, y = MX.data(M)
    rn = MX.runner(row, net, X, y, batch)
    try:
        benchmark.group = f"adam {net} batch {batch}"
        times = []
        benchmark.pedantic(lambda: times.append(rn.epoch()), rounds=ROUNDS, iterations=1)
        t = sorted(times)[len(times) // 2]
        _seconds[(net, batch, row)] = t
        info = {"samples_per_s": M / t, "label": rn.label, "rows": M}
        for ref in ("fastdl_f32", "torch_bf16"):
            if (net, batch, ref) in _seconds and ref != row:
                info[f"x_{ref}"] = _seconds[(net, batch, ref)] / t
        if row.startswith("fastdl"):
            model = rn.model
            info["gemm"] = model.precision.gemm
            info["gemm_gflops"] = MX.step_flops(net) * M / t / 1e9
            assert model.params.shadow.size == (model.params.n_decay if model.precision.low
                                                else 0)
            assert all(__import__("numpy").isfinite(w).all() for w in model.get_weights())
        benchmark.extra_info.update(info)
    finally:
        rn.close()
