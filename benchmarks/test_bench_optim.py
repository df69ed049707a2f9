"""Standalone optimizer step (issue 3, benchmark (a)): fastdl Adam vs torch.optim.Adam.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m pytest \\
        benchmarks/test_bench_optim.py --benchmark-only [-s]      # full sizes (-s: ratio table)
    python -m pytest benchmarks --benchmark-disable -q            # CI: once, small sizes

One Adam step over N float32 parameters held in flat arrays (params, grads, m, v). Each size is
a pytest-benchmark group ("adam step <N>") with one row per implementation, so
``--benchmark-only`` prints them side by side and ``--benchmark-save`` / ``--benchmark-compare``
track each:

* ``fastdl``: ``fd.optim.Adam(lr=1e-3).step(params, grads)`` on the cpu backend (one fused
  parallel kernel call);
* ``torch default``: ``torch.optim.Adam`` with ``foreach=False`` (the single-tensor loop, the
  default for CPU tensors), ``torch foreach`` (``foreach=True``) and ``torch fused``
  (``fused=True``): one parameter tensor of N elements with its ``.grad`` set, same thread
  count, in a worker process of their own (``_adam_peer.py``: PyTorch without fastdl's
  ``OMP_WAIT_POLICY``); skipped without torch;
* ``triad a+=s*b``: an in-place streaming pass (parallel Numba, same N, 12 bytes per element):
  the machine's practical bandwidth for an update that reads and writes in place.

A row's time is **seconds per step**, measured the same way for every row: ``perf_counter``
around the one call, in this process for fastdl and the triad, inside the worker for PyTorch
(around ``opt.step()``; the pipe round trip, ~0.1 ms or 1-2% of a 10M step, is not PyTorch's
cost). The rows run interleaved (``_peers.Rows``): every round runs one step of each peer, one
triad, then the fastdl step, each after a short pause (``SETTLE_S``: spinning OpenMP threads of
the previous call must not steal a core), so all see the same machine state; pytest-benchmark
receives those per-round times (``_peers.record_seconds``) rather than timing each row back to
back, which on this shared machine would compare different minutes. ``extra_info``:
``GB_per_s`` (28 bytes per parameter: read p, g, m, v; write p, m, v; the triad 12),
``ratio_vs_fastdl`` (this row's speed / fastdl's) and ``fastdl_speedup`` (fastdl's / this
row's), medians of per-round ratios.

The ``-s`` table: median ms per step, GB/s, ``x`` = peer time / fastdl time (median of
per-round ratios), fastdl's GB/s as a percentage of the triad's, and the CPU share other
processes used meanwhile (figures are not trustworthy when it is high). ``best-of speedup``
(fastest peer step / fastest fastdl step) is printed beside the median ratio: on a shared VM,
memory bandwidth taken by neighbours is invisible to the CPU-load figure and makes single steps
vary by 2x; targets are judged on the median ratio.

Before any timing the fastdl step is checked against the NumPy reference kernel (two steps, so
the bias correction changes), and torch fused's first step against fastdl's.

Targets on the 2-core dev machine: >= 1.0x torch fused and >= 5x torch default at both sizes,
>= 85% of the triad bandwidth at 100M. Printed as met / MISSED; ``FASTDL_BENCH_ASSERT=1`` turns a
miss into a failure (never in CI: no timed assertions there).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from numba import njit, prange

import fastdl as fd
import _peers as P
from _adam_peer import BETA1, BETA2, EPS, LR, AdamPeer, buffers
from fastdl.kernels.reference import optim as ref_optim

#: an empty bfloat16 weight shadow: the update kernels compute without mixed precision here
#: (tests/test_precision.py covers it)
NO_SHADOW = np.zeros(0, np.uint16)

ASSERT_TARGETS = os.environ.get("FASTDL_BENCH_ASSERT", "") not in ("", "0")
SIZES = [100_000, 2_000_000] if P.SMALL else [10_000_000, 100_000_000]
ROUNDS = {n: 1 if P.SMALL else (20 if n <= 10_000_000 else 8) for n in SIZES}
BYTES_PER_PARAM = 28
PEERS = {"torch default": {"foreach": False}, "torch foreach": {"foreach": True},
         "torch fused": {"fused": True}}
TARGETS = {"torch fused": 1.0, "torch default": 5.0}
TRIAD = "triad a+=s*b"
#: the rows of every group, in the order pytest runs them (the first one measures the group)
ROWS = ["fastdl", *PEERS, TRIAD]
BANDWIDTH_TARGET = (100_000_000, 0.85)
#: Pause before every timed call. PyTorch's OpenMP threads (default wait policy) keep spinning
#: for milliseconds after a step and took a core from whatever ran next: measured, a fastdl
#: 10M step right after a torch step took 9.2 ms (median), 6.2 ms after a 50 ms pause, while
#: torch's own step did not depend on it (8.6 / 8.1 ms). Every timed call gets the same pause.
SETTLE_S = 0.0 if P.SMALL else 0.05

_rows: list[dict] = []
_COLUMNS = [("n", "params", "{:,}"), ("impl", "implementation", "{}"),
            ("ms", "ms/step", "{:.2f}"), ("gbs", "GB/s", "{:.1f}"),
            ("x", "fastdl speedup", "{:.2f}x"), ("x_best", "best-of speedup", "{:.2f}x"),
            ("pct_bw", "% triad", "{:.0f}%"),
            ("target", "target", "{}"), ("foreign", "other load", "{:.0%}")]


@njit(parallel=True, nogil=True)
def _triad(a, b, s):
    for i in prange(a.shape[0]):
        a[i] += s * b[i]


@pytest.fixture(scope="module", autouse=True)
def _threads_and_summary():
    P.set_threads(P.THREADS)
    if not P.SMALL:     # a shared machine: wait (bounded) for other processes to calm down
        foreign = P.wait_until_quiet(float(os.environ.get("FASTDL_BENCH_WAIT_QUIET", 120)))
        if foreign is not None:
            print(f"\nload from other processes before the benchmarks: {foreign:.0%} of the CPUs")
    yield
    if _rows:
        P.print_table(f"Adam step, float32 ({'SMALL mode' if P.SMALL else 'full'}; "
                      f"{P.THREADS} threads)", _rows, _COLUMNS)


def _check_against_reference(p0, g):
    """Two fastdl steps == two reference-kernel steps (params and both moments)."""
    p_fd, p_ref = p0.copy(), p0.copy()
    m, v = np.zeros_like(p0), np.zeros_like(p0)
    opt = fd.optim.Adam(lr=LR, beta1=BETA1, beta2=BETA2, eps=EPS, backend="cpu")
    for step in (1, 2):
        opt.step(p_fd, g)
        ref_optim.adam_update(p_ref, NO_SHADOW, m, v, g, LR, BETA1, BETA2, EPS, step, 0.0, 0.0,
                              ref_optim.NO_SUM_SQ, np.inf, np.inf, 0.0, 0)
    np.testing.assert_allclose(p_fd, p_ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(opt.state["m"], m, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(opt.state["v"], v, rtol=1e-6, atol=1e-12)
    return {"params": float(np.max(np.abs(p_fd - p_ref))),
            "m": float(np.max(np.abs(opt.state["m"] - m))),
            "v": float(np.max(np.abs(opt.state["v"] - v)))}


def _measure(n):
    """The group of one size: correctness checks, then every row timed in turn."""
    p0, g = buffers(n)

    # 1. correctness before timing
    check = _check_against_reference(p0, g)

    # 2. fastdl: warm-up step (compiles, allocates state); the triad's buffer, compiled
    p = p0.copy()
    opt = fd.optim.Adam(lr=LR, beta1=BETA1, beta2=BETA2, eps=EPS, backend="cpu")
    opt.step(p, g)
    a = np.zeros(n, np.float32)
    _triad(a, g, np.float32(0.0))

    # 3. PyTorch peers in their worker; torch fused's first step must equal fastdl's
    peer = AdamPeer(n, P.THREADS) if P.torch_available() else None
    if peer:    # the worker's CPU time is ours, not "other load" (P.MachineLoad)
        P._LIVE_WORKERS.add(peer.proc.pid)
    rows = P.Rows(unit="step", settle_s=SETTLE_S)
    try:
        if peer:
            stride = max(1, n // 100_000)
            for name, kw in PEERS.items():
                peer.setup(name, **kw)
            np.testing.assert_allclose(peer.sample("torch fused", stride), p[::stride],
                                       rtol=1e-6, atol=1e-7)
            for name in PEERS:
                rows.add(name, lambda name=name: peer.step(name))
        rows.add(TRIAD, P.timed(lambda: _triad(a, g, np.float32(1e-3))))
        rows.add("fastdl", P.timed(lambda: opt.step(p, g)))
        # 4. interleaved rounds: the peers, the triad, then fastdl (a pause before each)
        rows.run(ROUNDS[n])
    finally:
        if peer:
            peer.close()
            P._LIVE_WORKERS.discard(peer.proc.pid)
    assert np.isfinite(p[:1000]).all()

    fd_s, triad_s = rows.median("fastdl"), rows.median(TRIAD)
    pct_bw = 100.0 * rows.ratio(TRIAD, "fastdl") * BYTES_PER_PARAM / 12.0
    table = [{"n": n, "impl": "fastdl", "ms": 1e3 * fd_s,
              "gbs": BYTES_PER_PARAM * n / fd_s / 1e9, "pct_bw": pct_bw,
              "foreign": rows.foreign}]
    if n == BANDWIDTH_TARGET[0] and not P.SMALL:
        ok = pct_bw >= 100.0 * BANDWIDTH_TARGET[1]
        table[0]["target"] = f">={100 * BANDWIDTH_TARGET[1]:.0f}% triad " + \
            ("met" if ok else "MISSED")
    table.append({"n": n, "impl": TRIAD, "ms": 1e3 * triad_s, "gbs": 12.0 * n / triad_s / 1e9})
    for name in PEERS:
        if name not in rows:
            continue
        t, x = rows.median(name), rows.ratio(name, "fastdl")
        row = {"n": n, "impl": name, "ms": 1e3 * t, "gbs": BYTES_PER_PARAM * n / t / 1e9,
               "x": x, "x_best": min(rows.times(name)) / min(rows.times("fastdl"))}
        if name in TARGETS and not P.SMALL:
            row["target"] = f">={TARGETS[name]}x " + ("met" if x >= TARGETS[name] else "MISSED")
        table.append(row)
    _rows.extend(table)
    P.print_table(f"Adam step, {n:,} float32 params", table, _COLUMNS)
    if rows.foreign is not None and rows.foreign > 0.05:
        print(f"WARNING: other processes used {100 * rows.foreign:.0f}% of the CPUs during this "
              "benchmark; its figures are not trustworthy")
    rows.table = {r["impl"]: r for r in table}
    rows.common = {"n": n, "check_max_abs_err": check, "pct_triad": pct_bw,
                   "torch_worker": peer.info if peer else None, "small": P.SMALL}
    return rows


@pytest.mark.parametrize("row", ROWS)
@pytest.mark.parametrize("n", SIZES, ids=[f"{n:,}" for n in SIZES])
def test_adam_step(benchmark, n, row):
    """One row of the group "adam step <n>": fastdl, a torch variant or the triad."""
    if row.startswith("torch"):
        P.require_torch()
    benchmark.group = f"adam step {n:,}"
    rows = P.group_rows(("adam step", n), lambda: _measure(n))
    bytes_per_step = (12.0 if row == TRIAD else BYTES_PER_PARAM) * n
    t = rows.table[row]
    rows.record(benchmark, row, ref="fastdl", per_unit={"GB_per_s": bytes_per_step / 1e9},
                ms_per_step=t["ms"], best_speedup=t.get("x_best"), target=t.get("target"),
                **rows.common)
    if ASSERT_TARGETS and not P.SMALL:
        if row in TARGETS:
            assert t["x"] >= TARGETS[row], f"{row}: {t['x']:.2f}x < target"
        if row == "fastdl" and n == BANDWIDTH_TARGET[0]:
            assert t["pct_bw"] >= 100.0 * BANDWIDTH_TARGET[1], f"{t['pct_bw']:.0f}% of the triad"
